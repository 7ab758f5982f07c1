"""Datasets as people bring them: every accepted layout read as meant (from a folder, a zip and a browser upload),
the sentence that says what was recognised, the user's overrides, and the bad inputs refused or listed in words."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui_common import DATA_CHOICES, DATASET
from workbench.data import DataError, DataSpec, LayoutChoice, layout_options, open_dataset, recognise
from workbench.data.uploads import save_uploads

from .conftest import REPO
from .test_data import make_classes, write_image, zip_folder

CLASSES = {"cats": 6, "dogs": 6, "owls": 6}


def split_names(samples) -> set[str]:
    """The top folder each sample came from (train, valid, test...)."""
    return {s.path.parent.parent.name for s in samples}


# --- one builder per layout -----------------------------------------------------------------------------------------


def class_folders(root: Path) -> Path:
    return make_classes(root, CLASSES)


def train_valid(root: Path) -> Path:
    make_classes(root / "train", CLASSES)
    make_classes(root / "valid", {name: 2 for name in CLASSES}, first=20)
    return root


def train_test(root: Path) -> Path:
    make_classes(root / "train", CLASSES)
    make_classes(root / "test", {name: 2 for name in CLASSES}, first=40)
    return root


def train_val_test(root: Path) -> Path:
    make_classes(root / "train", CLASSES)
    make_classes(root / "val", {name: 2 for name in CLASSES}, first=20)
    make_classes(root / "test", {name: 2 for name in CLASSES}, first=40)
    return root


def label_file(root: Path) -> Path:
    """images/ holding every image loose, labels.csv naming them (without extension for some, with a subpath for
    others), plus a split column sending two images of each class to test."""
    rows = ["image,label,split"]
    for name in CLASSES:
        for i in range(8):
            write_image(root / "images" / f"{name}_{i}.jpg", seed=i + 10 * len(rows))
            shown = f"images/{name}_{i}.jpg" if i % 2 else f"{name}_{i}"
            rows.append(f"{shown},{name},{'test' if i >= 6 else ''}")
    (root / "labels.csv").write_text("\n".join(rows) + "\n")
    return root


LAYOUTS = {
    "class folders": (class_folders, "3 classes, one folder each; 20% of each class set aside for validation, "
                                     "no test set", 0),
    "train+valid": (train_valid, "3 classes; train/ used for training, valid/ for validation, no test set", 0),
    "train+test": (train_test, "3 classes; train/ used for training, 20% of each class set aside for validation, "
                               "test/ held out for the final test", 6),
    "train+val+test": (train_val_test, "3 classes; train/ used for training, val/ for validation, test/ held out "
                                       "for the final test", 6),
    "label file": (label_file, "3 classes from labels.csv (file names in 'image', labels in 'label'); 20% of each "
                               "class set aside for validation, rows marked test held out for the final test", 6),
}


def wrapped(tmp_path: Path, build, how: str) -> Path:
    """The dataset as given: the folder itself, inside two outer folders, or a zip of those outer folders."""
    if how == "folder":
        return build(tmp_path / "ds")
    build(tmp_path / "outer" / "photos" / "birds")
    if how == "wrapped folder":
        return tmp_path / "outer"
    return zip_folder(tmp_path / "outer", tmp_path / "birds.zip")


@pytest.mark.parametrize("how", ["folder", "wrapped folder", "zip"])
@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_every_layout_is_read_as_meant(tmp_path, layout, how):
    build, sentence, num_test = LAYOUTS[layout]
    ds = open_dataset(wrapped(tmp_path, build, how))

    assert ds.class_names == ["cats", "dogs", "owls"]  # never "train", "test" or "images"
    assert ds.report.layout == sentence
    assert len(ds.test) == num_test and ds.report.has_test == bool(num_test)
    assert ds.train and ds.val and not ds.report.skipped
    assert not {s.path for s in ds.test} & {s.path for s in ds.train + ds.val}
    if layout.startswith("train"):
        assert split_names(ds.train) == {"train"}
        assert split_names(ds.test) <= {"test"}


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_an_uploaded_folder_is_read_like_the_folder(tmp_path, layout):
    build, sentence, num_test = LAYOUTS[layout]
    source = build(tmp_path / "mine")
    files = [(f"mine/{p.relative_to(source).as_posix()}", p.read_bytes()) for p in source.rglob("*") if p.is_file()]
    saved = save_uploads(files, tmp_path / "uploads")
    ds = open_dataset(saved)
    assert ds.class_names == ["cats", "dogs", "owls"]
    assert ds.report.layout == sentence and len(ds.test) == num_test


def test_a_test_fraction_holds_out_a_share_of_each_class_and_is_seeded(tmp_path):
    root = make_classes(tmp_path / "ds", {"cats": 10, "dogs": 10})
    ds = open_dataset(root, test_fraction=0.2)
    again = open_dataset(root, test_fraction=0.2)
    assert [s.path for s in ds.test] == [s.path for s in again.test]
    assert {c: counts["test"] for c, counts in ds.report.counts.items()} == {"cats": 2, "dogs": 2}
    assert "20% of each class held out for the final test" in ds.report.layout
    without = open_dataset(root)  # the same seed without a test set: validation is what it always was
    assert without.test == [] and len(without.val) == 4


def test_a_test_fraction_is_ignored_when_the_data_has_its_own_test_folder(tmp_path):
    ds = open_dataset(train_test(tmp_path / "ds"), test_fraction=0.3)
    assert split_names(ds.test) == {"test"} and len(ds.test) == 6


def test_a_data_spec_opens_the_same_split_again(tmp_path):
    root = label_file(tmp_path / "ds")
    spec = DataSpec(str(root), 0.25, 3, 0.0, LayoutChoice(split_column="-"))
    first, again = spec.open(), DataSpec.from_values({"data": str(root), "val_fraction": 0.25, "seed": 3,
                                                      "split_column": "-"}).open()
    assert first.test == [] and [s.path for s in first.val] == [s.path for s in again.val]


# --- overrides ----------------------------------------------------------------------------------------------------


def test_the_user_can_say_which_folder_validates_and_which_tests(tmp_path):
    root = tmp_path / "ds"
    make_classes(root / "train", CLASSES)
    make_classes(root / "holdout", {name: 2 for name in CLASSES}, first=30)
    make_classes(root / "check", {name: 1 for name in CLASSES}, first=50)
    guessed = open_dataset(root)
    assert guessed.test == [] and any("'holdout/' was not read" in p for p in guessed.report.problems())

    chosen = open_dataset(root, layout=LayoutChoice(val_folder="check", test_folder="holdout"))
    assert split_names(chosen.val) == {"check"} and split_names(chosen.test) == {"holdout"}
    assert chosen.report.layout.endswith("check/ for validation, holdout/ held out for the final test")

    with pytest.raises(DataError, match=r"test folder was set to 'nope'.*'check/', 'holdout/', 'train/'"):
        open_dataset(root, layout=LayoutChoice(test_folder="nope"))


def test_a_test_folder_can_be_left_out(tmp_path):
    ds = open_dataset(train_val_test(tmp_path / "ds"), layout=LayoutChoice(test_folder="-"))
    assert ds.test == [] and "'test/' was not read" in " ".join(ds.report.problems())


def test_label_columns_can_be_chosen_when_their_names_say_nothing(tmp_path):
    root = tmp_path / "ds"
    for i in range(2 * 4):
        write_image(root / f"p{i}.png", seed=i, fmt="PNG")
    (root / "meta.csv").write_text("a;b\n" + "".join(f"p{i}.png;{n}\n" for i, n in enumerate(["cat", "dog"] * 4)))
    with pytest.raises(DataError, match=r"meta.csv has no recognisable columns.*'a', 'b'.*--file-column"):
        open_dataset(root)
    ds = open_dataset(root, layout=LayoutChoice(file_column="a", label_column="b"))
    assert ds.class_names == ["cat", "dog"] and len(ds.train) + len(ds.val) == 8
    assert layout_options(root).columns == ["a", "b"] and layout_options(root).label_files == ["meta.csv"]


def test_a_tsv_with_one_file_per_split(tmp_path):
    root = tmp_path / "ds"
    for split, first in (("train", 0), ("test", 50)):
        lines = ["filename\tclass"]
        for name in ("cats", "dogs"):
            for i in range(first, first + 4):
                write_image(root / "img" / f"{name}{i}.jpg", seed=i)
                lines.append(f"{name}{i}.jpg\t{name}")
        (root / f"{split}.tsv").write_text("\n".join(lines))
    ds = open_dataset(root)
    assert len(ds.test) == 8 and all(s.path.stem[-2:].isdigit() and int(s.path.stem[4:]) >= 50 for s in ds.test)
    assert "train.tsv used for training" in ds.report.layout and "test.tsv held out" in ds.report.layout


def test_folders_named_like_splits_are_never_classes(tmp_path):
    root = tmp_path / "ds"
    make_classes(root / "test", {"cats": 2, "dogs": 2})
    make_classes(root / "val", {"cats": 2, "dogs": 2}, first=10)
    with pytest.raises(DataError, match=r"has val/, test/ but no training images.*train/<class>/"):
        open_dataset(root)
    make_classes(root / "train", {"cats": 3, "test": 3}, first=20)
    with pytest.raises(DataError, match=r"'train/test/' is named like a split.*Rename it"):
        open_dataset(root)


def test_a_folder_with_class_folders_ignores_a_stray_csv_and_says_so(tmp_path):
    root = class_folders(tmp_path / "ds")
    (root / "notes.csv").write_text("filename,label\nx.jpg,cats\n")
    ds = open_dataset(root)
    assert ds.report.kind == "class folders"
    assert any("notes.csv not used" in p for p in ds.report.problems())


# --- bad input: each refused or listed, in words ------------------------------------------------------------------


def test_label_rows_naming_missing_files_and_files_without_rows_are_listed(tmp_path):
    root = label_file(tmp_path / "ds")
    with (root / "labels.csv").open("a") as f:
        f.write("ghost.jpg,cats,\nimages/phantom,dogs,\n")
    write_image(root / "images" / "stray.jpg", seed=99)
    ds = open_dataset(root)
    problems = " ".join(ds.report.problems())
    assert "2 row(s) of labels.csv name files that are not in the folder: 'ghost.jpg' (labels.csv row 26)" in problems
    skipped = {s.path: s.reason for s in ds.report.skipped}
    assert skipped["images/stray.jpg"] == "no row in labels.csv"
    assert "no such file" in skipped["ghost.jpg"]
    assert len(ds.train) + len(ds.val) + len(ds.test) == 24  # the rest is used


def test_a_file_given_two_labels_is_listed_and_not_used(tmp_path):
    root = label_file(tmp_path / "ds")
    with (root / "labels.csv").open("a") as f:
        f.write("cats_1.jpg,dogs,\n")
    ds = open_dataset(root)
    problems = " ".join(ds.report.problems())
    assert "1 file(s) given two different labels, e.g. images/cats_1.jpg ('cats' (labels.csv row" in problems
    assert "images/cats_1.jpg" not in {s.path.relative_to(ds.root).as_posix() for s in ds.train + ds.val + ds.test}


def test_a_label_file_with_no_recognisable_columns_is_refused_with_its_columns(tmp_path):
    root = tmp_path / "ds"
    write_image(root / "a.jpg")
    write_image(root / "b.jpg", seed=1)
    (root / "data.csv").write_text("x,y\na.jpg,cat\nb.jpg,dog\n")
    with pytest.raises(DataError, match=r"Label file data.csv has no recognisable columns: cannot tell which column "
                                        r"holds the image file names \(its columns: 'x', 'y'\)"):
        open_dataset(root)


def test_a_class_only_in_test_is_refused(tmp_path):
    root = train_test(tmp_path / "ds")
    make_classes(root / "test", {"emus": 2}, first=70)
    with pytest.raises(DataError, match=r"Class 'emus' is in test/ but has no training images.*Add images of 'emus' "
                                        r"to train/emus/"):
        open_dataset(root)


def test_an_empty_test_folder_is_reported_and_nothing_is_held_out(tmp_path):
    root = make_classes(tmp_path / "ds" / "train", CLASSES).parent
    (root / "test").mkdir()
    ds = open_dataset(root)
    assert ds.test == [] and "no test set" in ds.report.layout
    assert any("Folder 'test/' is empty, so there is no held-out test set" in p for p in ds.report.problems())


def test_a_split_column_with_an_unknown_value_names_the_row(tmp_path):
    root = label_file(tmp_path / "ds")
    text = (root / "labels.csv").read_text().replace("owls,test", "owls,later", 1)
    (root / "labels.csv").write_text(text)
    with pytest.raises(DataError, match=r"labels.csv row \d+: the 'split' column says 'later'"):
        open_dataset(root)


def test_recognise_opens_no_file(tmp_path, monkeypatch):
    root = train_test(tmp_path / "ds")
    monkeypatch.setattr(Path, "read_bytes", lambda self: pytest.fail("recognise read a file"))
    assert recognise(root).given == {"train": "train/", "test": "test/"}


# --- the Data page --------------------------------------------------------------------------------------------------


def data_page(path: Path) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60).run()
    at.radio(key="data.source").set_value("local").run()
    return at.text_input(key="data.local_path").set_value(str(path)).run()


def recognised(at: AppTest) -> str:
    return next(i.value for i in at.info if i.value.startswith("**Recognised:**"))


@pytest.mark.parametrize("layout", list(LAYOUTS))
def test_the_data_page_says_what_it_recognised(tmp_path, layout):
    build, sentence, num_test = LAYOUTS[layout]
    at = data_page(build(tmp_path / "ds"))
    assert not at.exception and not at.error
    assert recognised(at) == f"**Recognised:** {sentence}."
    assert next(m.value for m in at.metric if m.label == "Held-out test") == str(num_test)


def test_the_data_page_reads_a_zip_and_lets_the_user_choose_the_test_folder(tmp_path):
    root = tmp_path / "outer"
    make_classes(root / "train", CLASSES)
    make_classes(root / "holdout", {name: 2 for name in CLASSES}, first=30)
    at = data_page(zip_folder(root, tmp_path / "mine.zip"))
    assert "no test set" in recognised(at)
    at.selectbox(key="data.test_folder").set_value("holdout").run()
    assert not at.exception
    assert "holdout/ held out for the final test" in recognised(at)
    assert at.session_state[DATA_CHOICES] == {"test_fraction": 0.0, "test_folder": "holdout"}
    assert next(m.value for m in at.metric if m.label == "Held-out test") == "6"


def test_the_data_page_offers_columns_when_a_label_file_cannot_be_read(tmp_path):
    root = tmp_path / "ds"
    for i in range(2 * 3):
        write_image(root / f"p{i}.jpg", seed=i)
    (root / "meta.csv").write_text("a,b\n" + "".join(f"p{i}.jpg,{n}\n" for i, n in enumerate(["cat", "dog"] * 3)))
    at = data_page(root)
    assert "no recognisable columns" in at.error[0].value
    at.selectbox(key="data.file_column").set_value("a").run()
    at.selectbox(key="data.label_column").set_value("b").run()
    assert not at.exception and not at.error
    assert recognised(at).startswith("**Recognised:** 2 classes from meta.csv (file names in 'a', labels in 'b')")
    assert at.session_state[DATASET] == str(root)


def test_the_test_slider_holds_out_images_for_every_later_page(tmp_path):
    at = data_page(class_folders(tmp_path / "ds"))
    at.slider(key="data.test_percent").set_value(20).run()
    assert "20% of each class held out for the final test" in recognised(at)
    assert at.session_state[DATA_CHOICES]["test_fraction"] == 0.2
    shutil.rmtree(tmp_path / "ds" / "owls")  # choices are kept with the dataset they were made for
    at.text_input(key="data.local_path").set_value(str(train_test(tmp_path / "other"))).run()
    assert at.session_state[DATA_CHOICES] == {"test_fraction": 0.0}


def test_the_cli_says_what_it_recognised_and_honours_the_choices(tmp_path, capsys):
    from workbench.cli import main

    root = train_test(tmp_path / "ds")
    assert main(["data", "--data", str(root)]) == 0
    out = capsys.readouterr().out
    assert "recognised: 3 classes; train/ used for training, 20% of each class set aside for validation, test/ held " \
           "out for the final test" in out
    assert "classes (train+val+test): cats: 5+1+2" in out
    assert main(["data", "--data", str(root), "--test-folder", "-", "--test-fraction", "0.2"]) == 0
    assert "20% of each class held out for the final test" in capsys.readouterr().out
