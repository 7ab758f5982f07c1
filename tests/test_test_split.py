"""The held-out test set: training, early stopping, the LR finder and a race's choice of best never see the test
images; the saved model is measured on them once, at the end; and the result is shown beside validation's, labelled
so that one is never taken for the other. Tiny models (test_resnet at 64 px) on two classes of the sample shapes."""

import re
import shutil
import zipfile
from contextlib import contextmanager
from pathlib import Path

import pytest
import torch

from workbench import runs
from workbench.analysis import charts
from workbench.cli import RACE_COLUMNS, markdown_table
from workbench.data import ImageCache, open_dataset
from workbench.data.dataset import CachedImages
from workbench.deploy.export import export_zip
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.engine.loop import TESTING_PHASE
from workbench.engine.lr_finder import find_lr
from workbench.models.trained import Predictor
from workbench.runs.records import RunRecord

from .conftest import SHAPES, train_page_showing

CLASSES = ("circle", "cross")
IMAGES = {"train": 8, "val": 4, "test": 4}  # per class
NUM_TEST = IMAGES["test"] * len(CLASSES)
TINY = dict(backbone="test_resnet", image_size=64, batch_size=8, seed=0)


def _split_folder(root: Path, splits: tuple[str, ...] = ("train", "val", "test")) -> Path:
    """train/, val/ and (by default) test/ folders, each with the same two classes, no image in two of them."""
    for class_name in CLASSES:
        images = iter(sorted((SHAPES / class_name).iterdir()))
        for split in splits:
            (root / split / class_name).mkdir(parents=True)
            for _ in range(IMAGES[split]):
                image = next(images)
                shutil.copy(image, root / split / class_name / image.name)
    return root


def _paths(root: Path, split: str) -> set[Path]:
    return {path.absolute() for path in (root / split).rglob("*.png")} | \
        {path.absolute() for path in (root / split).rglob("*.jpg")}


@contextmanager
def decoded_by_phase(phase_of):
    """Record (path, phase) whenever the decoded-image cache is asked for an image; `phase_of()` says the phase."""
    seen: list[tuple[Path, str]] = []
    original = ImageCache.get

    def recording(cache, path):
        seen.append((Path(path).absolute(), phase_of()))
        return original(cache, path)

    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(ImageCache, "get", recording)
        yield seen


def _trained(config: RunConfig) -> tuple[Run, list[tuple[Path, str]]]:
    run = Run(config)
    with decoded_by_phase(lambda: run.phase) as seen:
        run.run()
    assert run.status == "finished", run.error
    return run, seen


@pytest.fixture(scope="module")
def split_data(tmp_path_factory) -> Path:
    return _split_folder(tmp_path_factory.mktemp("data") / "two_shapes")


@pytest.fixture(scope="module")
def tested_runs(split_data, tmp_path_factory) -> dict[str, tuple[Run, list[tuple[Path, str]]]]:
    """A fine-tune (with early stopping watching validation) and a linear probe on data with a test/ folder, with the
    images each asked the decoded-image cache for, and in which phase."""
    runs_dir = str(tmp_path_factory.mktemp("runs"))
    data = str(split_data)
    return {
        "full": _trained(RunConfig(data=data, strategy="full", epochs=3, patience=1, runs_dir=runs_dir, **TINY)),
        "linear_probe": _trained(RunConfig(data=data, strategy="linear_probe", epochs=3, runs_dir=runs_dir, **TINY)),
    }


def test_the_data_has_a_test_split(split_data):
    dataset = open_dataset(split_data)
    assert len(dataset.test) == NUM_TEST and {s.split for s in dataset.test} == {"test"}
    assert {s.path.absolute() for s in dataset.test} == _paths(split_data, "test")


@pytest.mark.parametrize("strategy", ["full", "linear_probe"])
def test_test_images_are_decoded_only_in_the_final_testing_phase(tested_runs, split_data, strategy):
    run, seen = tested_runs[strategy]
    test_paths = _paths(split_data, "test")
    touched = {path for path, _ in seen}
    assert test_paths <= touched  # the saved model was measured on every test image
    phases = {phase for path, phase in seen if path in test_paths}
    assert phases == {TESTING_PHASE}
    training = _paths(split_data, "train") | _paths(split_data, "val")
    assert {path for path, phase in seen if phase != TESTING_PHASE} <= training
    assert seen[-1][1] == TESTING_PHASE  # nothing was looked at after the test


@pytest.mark.parametrize("strategy", ["full", "linear_probe"])
def test_the_summary_has_the_saved_models_test_accuracy_and_confusion_matrix(tested_runs, split_data, strategy):
    run, _ = tested_runs[strategy]
    summary = runs.load_run(run.dir).summary
    matrix = summary.test_confusion_matrix
    assert sum(map(sum, matrix)) == NUM_TEST == summary.num_test == run.info["num_test"]
    assert summary.test_accuracy == pytest.approx(sum(matrix[i][i] for i in range(len(CLASSES))) / NUM_TEST)
    assert summary.test_loss > 0
    assert {name: row["support"] for name, row in summary.test_per_class.items()} == \
        dict.fromkeys(CLASSES, IMAGES["test"])
    assert sum(map(sum, summary.confusion_matrix)) == IMAGES["val"] * len(CLASSES)  # validation is still validation
    # the model measured is the one saved: the predictor reloaded from disk gives the same answers
    samples = open_dataset(split_data).test
    predicted = Predictor.from_run(run.dir).logits([s.path for s in samples]).argmax(1)
    labels = torch.tensor([s.label for s in samples])
    assert summary.test_accuracy == pytest.approx((predicted == labels).float().mean().item())


def test_a_test_fraction_split_off_a_plain_folder_is_held_out_the_same_way(tmp_path):
    data = tmp_path / "plain"
    for class_name in CLASSES:
        shutil.copytree(SHAPES / class_name, data / class_name)
    config = RunConfig(data=str(data), strategy="full", epochs=1, test_fraction=0.25, runs_dir=str(tmp_path / "runs"),
                       **TINY)
    run, seen = _trained(config)
    test_paths = {s.path.absolute() for s in config.data_spec().open().test}
    assert len(test_paths) == run.summary["num_test"] == sum(map(sum, run.summary["test_confusion_matrix"])) > 0
    assert {phase for path, phase in seen if path in test_paths} == {TESTING_PHASE}


def test_a_run_without_a_test_set_records_none_and_says_how_to_get_one(tmp_path, monkeypatch):
    data = _split_folder(tmp_path / "no_test", splits=("train", "val"))
    run, seen = _trained(RunConfig(data=str(data), strategy="linear_probe", epochs=1,
                                   runs_dir=str(tmp_path / "runs"), **TINY))
    summary = runs.load_run(run.dir).summary
    assert (summary.test_accuracy, summary.test_confusion_matrix, summary.num_test) == (None, None, 0)
    assert TESTING_PHASE not in {phase for _, phase in seen}
    at = train_page_showing(run, monkeypatch)
    assert "Test accuracy (held-out)" not in [m.label for m in at.metric]
    assert any("No test set" in c.value and "test/" in c.value for c in at.caption)


def test_old_summaries_without_test_fields_still_load():
    summary = runs.RunSummary.from_dict({"status": "finished", "val_accuracy": 0.8})
    assert summary.test_accuracy is None and summary.num_test is None and summary.extra == {}


def test_the_lr_finder_trains_on_training_images_only(split_data, tmp_path):
    train = _paths(split_data, "train")
    fed: list[Path] = []
    original = CachedImages.__getitem__

    def feeding(images, index):
        fed.append(Path(images.samples[index].path).absolute())
        return original(images, index)

    config = RunConfig(data=str(split_data), strategy="full", runs_dir=str(tmp_path / "runs"), **TINY)
    with decoded_by_phase(lambda: "lr finder") as seen, pytest.MonkeyPatch.context() as patch:
        patch.setattr(CachedImages, "__getitem__", feeding)
        result = find_lr(config, steps=4)
    assert len(result.lrs) == 4
    assert fed and set(fed) <= train  # every image the sweep trained on
    assert not _paths(split_data, "test") & {path for path, _ in seen}  # test images are not even decoded


# -------------------------------------------------------------------------------------------------------------------
# Where a run's result is shown


def test_train_page_shows_test_accuracy_beside_validation(tested_runs, monkeypatch):
    run, _ = tested_runs["full"]
    at = train_page_showing(run, monkeypatch)
    labels = [m.label for m in at.metric]
    assert labels[:2] == ["Validation accuracy", "Test accuracy (held-out)"]
    assert at.metric[1].value == f"{run.summary['test_accuracy']:.1%}"
    assert [tab.label for tab in at.tabs][:2] == ["Validation", "Test (held-out)"]
    titles = [chart.proto.spec for chart in at.get("plotly_chart")]
    assert any("Validation confusion matrix" in spec for spec in titles)
    assert any("Test confusion matrix (held-out)" in spec for spec in titles)
    assert any("once, at the end" in c.value for c in at.caption)
    test_table = at.dataframe[1].value  # the per-class table of the test tab
    assert list(test_table["test images"]) == [IMAGES["test"]] * len(CLASSES)


def test_compare_table_has_a_test_accuracy_column(tested_runs, monkeypatch):
    from streamlit.testing.v1 import AppTest

    from ui_common import get_registry
    from workbench.engine.config import RUNS_DIR_ENV

    from .conftest import REPO

    run, _ = tested_runs["full"]
    monkeypatch.setenv(RUNS_DIR_ENV, str(run.dir.parent))
    get_registry.clear()
    at = AppTest.from_file(str(REPO / "pages" / "4_compare.py"), default_timeout=60)
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    columns = list(table.columns)
    assert columns.index("test accuracy") == columns.index("val accuracy") + 1
    row = table[table["run id"] == run.id].iloc[0]
    assert row["test accuracy"] == pytest.approx(run.summary["test_accuracy"])
    get_registry.clear()


def test_a_race_picks_its_best_run_by_validation_never_by_test():
    def record(run_id: str, val: float, test: float) -> RunRecord:
        summary = {"status": "finished", "val_accuracy": val, "test_accuracy": test, "num_test": 8,
                   "train_seconds": 1.0, "images_per_s": 10.0}
        return RunRecord.from_dicts(Path("/runs") / run_id, {"backbone": "test_resnet", "strategy": "full"}, summary)

    table = charts.runs_table([record("20250101-120000-full-test_resnet-aaaa", val=0.9, test=0.5),
                               record("20250101-120100-full-test_resnet-bbbb", val=0.8, test=0.95)])
    css = charts.highlight_best(table).to_html().split("</style>")[0]
    column = {name: i for i, name in enumerate(table.columns)}
    assert f"_row0_col{column['val accuracy']}" in css and f"_row1_col{column['val accuracy']}" not in css
    assert not re.search(rf"_col{column['test accuracy']}\b", css)  # the better test accuracy is not highlighted
    markdown = markdown_table(table[RACE_COLUMNS])
    assert "**90.0%**" in markdown and "95.0%" in markdown and "**95.0%**" not in markdown


def test_the_exported_model_card_gives_test_accuracy_beside_validation(tested_runs, tmp_path):
    run, _ = tested_runs["linear_probe"]
    card = zipfile.ZipFile(export_zip(run.dir, tmp_path / "model.zip")).read("README.txt").decode()
    summary = run.summary
    assert f"Validation accuracy when it was trained: {summary['val_accuracy']:.1%}" in card
    assert f"Test accuracy (held-out): {summary['test_accuracy']:.1%} on {NUM_TEST} test images" in card
    assert "Test confusion matrix (held-out)" in card and "Validation confusion matrix" in card
    assert "true circle" in card
