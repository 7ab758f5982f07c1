"""Dataset reading, health checks, zip safety, RGB loading, the image cache and augmentation presets."""

from __future__ import annotations

import json
import shutil
import stat
import tempfile
import zipfile
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from workbench.data import AUGMENTATIONS, CachedImages, DataError, ImageCache, eval_transform, load_rgb, open_dataset
from workbench.data import zips as data_module  # where the zip limits are read

COLOURS = {"cats": (200, 30, 30), "dogs": (30, 200, 30), "owls": (30, 30, 200)}


def write_image(path: Path, size=(24, 16), colour=(128, 128, 128), seed: int = 0, fmt: str = "JPEG") -> Path:
    """A small image whose pixels depend on `seed`, so two images have different bytes unless the seed repeats."""
    path.parent.mkdir(parents=True, exist_ok=True)
    pixels = np.full((size[1], size[0], 3), colour, dtype=np.uint8)
    pixels[0, : seed % size[0] + 1] = 255 - np.array(colour, dtype=np.uint8)
    pixels[1, 0] = seed % 256
    Image.fromarray(pixels).save(path, fmt)
    return path


def make_classes(root: Path, counts: dict[str, int], first: int = 0) -> Path:
    """`first` numbers the images, so a second call (e.g. for val/) makes different ones."""
    for name, n in counts.items():
        for i in range(first, first + n):
            write_image(root / name / f"{name}_{i:02d}.jpg", colour=COLOURS.get(name, (90, 90, 90)), seed=i)
    return root


def zip_folder(folder: Path, zip_path: Path, prefix: str = "") -> Path:
    with zipfile.ZipFile(zip_path, "w") as zf:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                zf.write(path, prefix + path.relative_to(folder).as_posix())
    return zip_path


def names(samples) -> list[str]:
    return sorted(s.path.name for s in samples)


# --- layouts and splits -------------------------------------------------------------------------------------------


def test_split_is_stratified_and_seeded(tmp_path):
    root = make_classes(tmp_path / "ds", {"cats": 10, "dogs": 10, "owls": 5})
    first = open_dataset(root, val_fraction=0.2, seed=0)
    again = open_dataset(root, val_fraction=0.2, seed=0)
    other = open_dataset(root, val_fraction=0.2, seed=1)

    assert first.class_names == ["cats", "dogs", "owls"]
    assert not first.report.has_split
    assert names(first.val) == names(again.val)
    assert names(first.val) != names(other.val)
    assert first.report.counts == {"cats": {"train": 8, "val": 2, "test": 0}, "dogs": {"train": 8, "val": 2, "test": 0},
                                   "owls": {"train": 4, "val": 1, "test": 0}}
    assert {s.label for s in first.val} == {0, 1, 2}
    for sample in first.train + first.val:
        assert first.class_names[sample.label] == sample.path.parent.name
    assert not {s.path for s in first.train} & {s.path for s in first.val}
    assert first.report.problems() == []


def test_images_in_nested_folders_count_for_their_class_and_clutter_is_ignored(tmp_path):
    root = make_classes(tmp_path / "ds", {"cats": 3, "dogs": 3})
    write_image(root / "cats" / "indoor" / "deep" / "nested.jpg", seed=9)
    write_image(root / "cats" / ".hidden" / "secret.jpg", seed=10)
    write_image(root / "dogs" / ".thumb.jpg", seed=11)
    write_image(root / "__MACOSX" / "cats" / "._x.jpg", seed=12)
    ds = open_dataset(root)
    assert ds.class_names == ["cats", "dogs"]
    assert ds.report.counts["cats"]["train"] + ds.report.counts["cats"]["val"] == 4
    assert ds.report.skipped == []


def test_train_val_layout_is_used_as_given(tmp_path):
    make_classes(tmp_path / "ds" / "train", {"cats": 4, "dogs": 4, "owls": 3})
    make_classes(tmp_path / "ds" / "valid", {"cats": 2, "dogs": 2}, first=10)
    write_image(tmp_path / "ds" / "test" / "cats" / "t.jpg")
    write_image(tmp_path / "ds" / "extra" / "cats" / "e.jpg", seed=3)
    ds = open_dataset(tmp_path / "ds")

    assert ds.report.has_split
    assert ds.class_names == ["cats", "dogs", "owls"]
    assert ds.report.counts["owls"] == {"train": 3, "val": 0, "test": 0}
    assert all(s.path.parts[-3] == "train" for s in ds.train)
    assert all(s.path.parts[-3] == "valid" for s in ds.val)
    problems = "\n".join(ds.report.problems())
    assert "'owls' has no images in val/" in problems
    assert [s.path.name for s in ds.test] == ["t.jpg"]  # test/ is the held-out test set, never a class
    assert "'extra/' was not read" in problems


@pytest.mark.parametrize("split_layout", [False, True], ids=["class-folders", "train-val"])
@pytest.mark.parametrize("prefix", ["", "my_photos/"], ids=["flat", "wrapped-in-one-folder"])
def test_zip_of_either_layout(tmp_path, split_layout, prefix):
    folder = tmp_path / "ds"
    if split_layout:
        make_classes(folder / "train", {"cats": 3, "dogs": 3})
        make_classes(folder / "val", {"cats": 1, "dogs": 1}, first=10)
    else:
        make_classes(folder, {"cats": 4, "dogs": 4})
    zip_path = zip_folder(folder, tmp_path / "ds.zip", prefix)
    with zipfile.ZipFile(zip_path, "a") as zf:  # what macOS Finder adds to every zip
        zf.writestr("__MACOSX/._ds", b"\x00\x05\x16\x07")
        zf.writestr(prefix + ".DS_Store", b"junk")

    ds = open_dataset(zip_path, extract_to=tmp_path / "out")
    assert ds.source == str(zip_path)
    assert ds.root.is_relative_to(tmp_path / "out")
    assert ds.class_names == ["cats", "dogs"]
    assert ds.report.has_split is split_layout
    assert len(ds.train) + len(ds.val) == 8
    assert ds.report.skipped == []
    assert all(s.path.is_file() for s in ds.train + ds.val)


def test_zip_extracts_into_a_fresh_temporary_folder_by_default(tmp_path):
    zip_path = zip_folder(make_classes(tmp_path / "ds", {"cats": 2, "dogs": 2}), tmp_path / "ds.zip")
    ds = open_dataset(zip_path)
    try:
        assert ds.root.name.startswith("workbench-zip-")
        assert len(ds.train) == 2
    finally:
        shutil.rmtree(ds.root)


# --- loading images as RGB ----------------------------------------------------------------------------------------


def _rgba():
    img = Image.new("RGBA", (30, 20), (255, 0, 0, 255))
    img.putpixel((0, 0), (0, 0, 0, 0))  # fully transparent: must come out white
    return img


def _palette_with_transparency():
    img = Image.new("P", (30, 20), 1)
    img.putpalette([0, 0, 0, 255, 0, 0] + [0] * 762)
    img.putpixel((0, 0), 0)
    img.info["transparency"] = 0
    return img


@pytest.mark.parametrize(
    ("make", "fmt", "corner"),
    [
        (_rgba, "PNG", (255, 255, 255)),
        (lambda: Image.new("LA", (30, 20), (0, 0)), "PNG", (255, 255, 255)),
        (_palette_with_transparency, "PNG", (255, 255, 255)),
        (lambda: Image.new("RGB", (30, 20), (0, 0, 255)).convert("P"), "GIF", (0, 0, 255)),
        (lambda: Image.new("L", (30, 20), 77), "PNG", (77, 77, 77)),
        (lambda: Image.new("1", (30, 20), 1), "BMP", (255, 255, 255)),
        (lambda: Image.new("CMYK", (30, 20), (0, 255, 255, 0)), "JPEG", (255, 0, 0)),
        (lambda: Image.new("RGB", (30, 20), (10, 200, 30)), "WEBP", (10, 200, 30)),
    ],
    ids=["RGBA", "LA", "P-transparent", "P", "L", "1-bit", "CMYK", "webp"],
)
def test_load_rgb_converts_every_mode(tmp_path, make, fmt, corner):
    path = tmp_path / f"img.{fmt.lower()}"
    make().save(path, fmt)
    img = load_rgb(path)
    assert img.mode == "RGB"
    assert img.size == (30, 20)
    assert np.abs(np.subtract(img.getpixel((0, 0)), corner)).max() <= 8  # JPEG/CMYK round trips are lossy


@pytest.mark.parametrize("fmt", ["PNG", "TIFF"])
def test_16_bit_grayscale_is_scaled_not_clipped(tmp_path, fmt):
    path = tmp_path / f"depth.{fmt.lower()}"
    Image.fromarray(np.array([[0, 32768, 65535]] * 4, dtype=np.uint16)).save(path, fmt)
    pixels = np.asarray(load_rgb(path))
    assert pixels.shape == (4, 3, 3)
    assert list(pixels[0, :, 0]) == [0, 128, 255]


def test_float_and_32_bit_grayscale_load(tmp_path):
    Image.fromarray(np.linspace(0, 1, 12, dtype=np.float32).reshape(3, 4)).save(tmp_path / "f.tiff")
    Image.fromarray(np.arange(12, dtype=np.int32).reshape(3, 4) * 1000).save(tmp_path / "i.tiff")
    for name in ("f.tiff", "i.tiff"):
        pixels = np.asarray(load_rgb(tmp_path / name))
        assert pixels.shape == (3, 4, 3)
        assert pixels.min() == 0 and pixels.max() == 255


def test_exif_orientation_is_applied(tmp_path):
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display"
    path = tmp_path / "phone.jpg"
    Image.new("RGB", (40, 20), "red").save(path, exif=exif.tobytes())
    assert Image.open(path).size == (40, 20)
    assert load_rgb(path).size == (20, 40)
    assert ImageCache(size=8).get(path).shape == (3, 8, 8)


def test_load_rgb_names_the_file_it_cannot_read(tmp_path):
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"not a png at all")
    with pytest.raises(DataError, match="bad.png"):
        load_rgb(bad)
    with pytest.raises(DataError, match="gone.jpg"):
        load_rgb(tmp_path / "gone.jpg")


# --- health report ------------------------------------------------------------------------------------------------


def test_corrupt_and_non_image_files_are_skipped_with_reasons(tmp_path):
    root = make_classes(tmp_path / "ds", {"cats": 4, "dogs": 4})
    (root / "cats" / "notes.txt").write_text("my cats")
    (root / "dogs" / "garbage.jpg").write_bytes(b"\xff\xd8\xff\xe0 this is no jpeg")
    good = (root / "dogs" / "dogs_00.jpg").read_bytes()
    (root / "dogs" / "truncated.jpg").write_bytes(good[: len(good) // 2])
    write_image(root / "loose.jpg")

    ds = open_dataset(root)
    reasons = {s.path: s.reason for s in ds.report.skipped}
    assert reasons["cats/notes.txt"] == "not an image (.txt)"
    assert reasons["dogs/garbage.jpg"].startswith("corrupt or truncated image")
    assert reasons["dogs/truncated.jpg"].startswith("corrupt or truncated image")
    assert reasons["loose.jpg"] == "image not inside a class folder"
    assert len(ds.train) + len(ds.val) == 8
    assert ds.report.counts["dogs"] == {"train": 3, "val": 1, "test": 0}
    assert "4 files skipped" in ds.report.problems()[0]
    assert "cats/notes.txt" in ds.report.problems()[0]


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_decompression_bombs_are_reported_per_file(tmp_path, monkeypatch):
    root = tmp_path / "ds"
    for name in ("cats", "dogs"):
        for i in range(2):
            write_image(root / name / f"{i}.png", size=(20, 20), seed=i, fmt="PNG")
    write_image(root / "cats" / "big.png", size=(40, 40), fmt="PNG")  # 1600 px: over the limit (PIL only warns)
    write_image(root / "dogs" / "huge.png", size=(64, 64), fmt="PNG")  # 4096 px: over twice the limit (PIL raises)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)

    ds = open_dataset(root)
    reasons = {s.path: s.reason for s in ds.report.skipped}
    assert set(reasons) == {"cats/big.png", "dogs/huge.png"}
    assert all(r.startswith("image too large (decompression-bomb limit)") for r in reasons.values())
    assert len(ds.train) + len(ds.val) == 4


def test_duplicates_leakage_and_label_conflicts(tmp_path):
    root = tmp_path / "ds"
    make_classes(root / "train", {"cats": 3, "dogs": 3})
    make_classes(root / "val", {"cats": 1, "dogs": 1}, first=10)
    shutil.copy(root / "train/cats/cats_01.jpg", root / "val/cats/copy_in_val.jpg")
    shutil.copy(root / "train/dogs/dogs_02.jpg", root / "train/dogs/copy_in_train.jpg")
    shutil.copy(root / "train/cats/cats_02.jpg", root / "train/dogs/cat_filed_as_dog.jpg")

    report = open_dataset(root).report
    as_sets = [set(group) for group in report.duplicates]
    assert {"train/cats/cats_01.jpg", "val/cats/copy_in_val.jpg"} in as_sets
    assert {"train/dogs/dogs_02.jpg", "train/dogs/copy_in_train.jpg"} in as_sets
    assert [set(g) for g in report.leakage] == [{"train/cats/cats_01.jpg", "val/cats/copy_in_val.jpg"}]
    assert [set(g) for g in report.label_conflicts] == [{"train/cats/cats_02.jpg", "train/dogs/cat_filed_as_dog.jpg"}]
    problems = "\n".join(report.problems())
    assert "identical files" in problems
    assert "in both training and validation" in problems and "val/cats/copy_in_val.jpg" in problems
    assert "different classes" in problems


def test_duplicates_split_apart_by_the_automatic_split_are_leakage(tmp_path):
    root = make_classes(tmp_path / "ds", {"cats": 1, "dogs": 2})
    for i in range(5):
        shutil.copy(root / "cats/cats_00.jpg", root / f"cats/copy_{i}.jpg")
    report = open_dataset(root, val_fraction=0.5).report
    assert len(report.duplicates) == 1 and len(report.duplicates[0]) == 6
    assert report.leakage == report.duplicates


def test_imbalance_and_tiny_classes_are_reported(tmp_path):
    report = open_dataset(make_classes(tmp_path / "ds", {"cats": 12, "dogs": 4, "owls": 1})).report
    assert report.imbalance_ratio == 12.0
    assert report.tiny_classes == ["owls"]
    assert report.counts["owls"] == {"train": 1, "val": 0, "test": 0}
    problems = "\n".join(report.problems())
    assert "'owls' has only 1 readable image" in problems
    assert "imbalanced (12.0x)" in problems and "'cats' has 12" in problems
    json.dumps(report.to_dict())
    assert report.to_dict()["problems"] == report.problems()


def test_mild_imbalance_is_not_a_problem(tmp_path):
    report = open_dataset(make_classes(tmp_path / "ds", {"cats": 5, "dogs": 2})).report
    assert report.imbalance_ratio == 2.5
    assert report.problems() == []


# --- bad input: every message names what is wrong -----------------------------------------------------------------


def test_missing_path(tmp_path):
    with pytest.raises(DataError, match=r"'.*nowhere' does not exist"):
        open_dataset(tmp_path / "nowhere")


def test_empty_folder_explains_the_layout(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(DataError, match=r"empty' has no class subfolders.*<class>/<images>"):
        open_dataset(tmp_path / "empty")


def test_images_without_class_folders(tmp_path):
    write_image(tmp_path / "flat" / "a.jpg")
    with pytest.raises(DataError, match=r"'.*flat' has images but no class subfolders"):
        open_dataset(tmp_path / "flat")


def test_one_class(tmp_path):
    root = make_classes(tmp_path / "ds", {"cats": 3})
    with pytest.raises(DataError, match="needs at least 2 classes, found 1: 'cats'"):
        open_dataset(root)


def test_class_with_no_readable_image(tmp_path):
    root = make_classes(tmp_path / "ds", {"cats": 3})
    (root / "dogs").mkdir()
    (root / "dogs" / "readme.txt").write_text("todo")
    (root / "dogs" / "broken.png").write_bytes(b"\x89PNG nope")
    with pytest.raises(DataError, match=r"'.*ds/dogs' has no readable images") as err:
        open_dataset(root)
    assert "dogs/readme.txt (not an image (.txt))" in str(err.value)
    assert "dogs/broken.png (corrupt or truncated image" in str(err.value)


def test_empty_class_folder(tmp_path):
    root = make_classes(tmp_path / "ds", {"cats": 3})
    (root / "dogs").mkdir()
    with pytest.raises(DataError, match=r"'.*ds/dogs' is empty"):
        open_dataset(root)


def test_file_that_is_not_a_zip(tmp_path):
    path = tmp_path / "photo.jpg"
    write_image(path)
    with pytest.raises(DataError, match=r"photo.jpg' is a file, not a folder or a .zip"):
        open_dataset(path)


def test_broken_zip(tmp_path):
    path = tmp_path / "data.zip"
    path.write_bytes(b"PK but not really a zip")
    with pytest.raises(DataError, match=r"data.zip' is not a readable .zip file"):
        open_dataset(path)


def test_zip_with_one_class_names_the_zip(tmp_path):
    zip_path = zip_folder(make_classes(tmp_path / "ds", {"cats": 2}), tmp_path / "cats.zip")
    tempfile_dir = tmp_path / "tmp"
    tempfile_dir.mkdir()
    with pytest.MonkeyPatch.context() as mp:
        mp.setattr(tempfile, "tempdir", str(tempfile_dir))
        with pytest.raises(DataError, match=r"In zip '.*cats.zip'.*found 1: 'cats'"):
            open_dataset(zip_path)
    assert list(tempfile_dir.iterdir()) == []  # the temporary extraction was cleaned up


@pytest.mark.parametrize("fraction", [0, 1, -0.1, 1.5, float("nan")])
def test_val_fraction_out_of_range(tmp_path, fraction):
    root = make_classes(tmp_path / "ds", {"cats": 2, "dogs": 2})
    with pytest.raises(DataError, match="--val-fraction"):
        open_dataset(root, val_fraction=fraction)


# --- zip safety: refused before anything is written ---------------------------------------------------------------


def _symlink(zf: zipfile.ZipFile) -> str:
    info = zipfile.ZipInfo("ds/cats/link.jpg")
    info.external_attr = (stat.S_IFLNK | 0o777) << 16
    zf.writestr(info, "/etc/passwd")
    return "ds/cats/link.jpg"


def _bomb(zf: zipfile.ZipFile) -> str:
    zf.writestr("ds/cats/bomb.jpg", b"\x00" * 200_000, compress_type=zipfile.ZIP_DEFLATED)
    return "ds/cats/bomb.jpg"


@pytest.mark.parametrize(
    ("add_bad_member", "why"),
    [
        (lambda zf: zf.writestr("../x.jpg", b"evil") or "../x.jpg", "outside the zip"),
        (lambda zf: zf.writestr("ds/../../x.jpg", b"evil") or "ds/../../x.jpg", "outside the zip"),
        (lambda zf: zf.writestr("..\\x.jpg", b"evil") or "..\\x.jpg", "outside the zip"),
        (lambda zf: zf.writestr(zipfile.ZipInfo("/tmp/x.jpg"), b"evil") or "/tmp/x.jpg", "absolute path"),
        (lambda zf: zf.writestr(zipfile.ZipInfo("C:/x.jpg"), b"evil") or "C:/x.jpg", "drive letter"),
        (_symlink, "symbolic link"),
        (_bomb, "zip bomb"),
    ],
    ids=["dotdot", "nested-dotdot", "backslash-dotdot", "absolute", "drive-letter", "symlink", "ratio-bomb"],
)
def test_unsafe_zip_is_refused_before_extracting_anything(tmp_path, monkeypatch, add_bad_member, why):
    monkeypatch.setattr(data_module, "ZIP_RATIO_MIN_BYTES", 1024)
    source = make_classes(tmp_path / "src" / "ds", {"cats": 2, "dogs": 2})
    zip_path = tmp_path / "upload" / "data.zip"
    zip_path.parent.mkdir()
    zip_folder(source.parent, zip_path)  # good members first: a naive extractor would already have written them
    with zipfile.ZipFile(zip_path, "a") as zf:
        bad_name = add_bad_member(zf)
    target = tmp_path / "work" / "out"

    with pytest.raises(DataError, match=why) as err:
        open_dataset(zip_path, extract_to=target)
    assert f"'{bad_name}'" in str(err.value)
    assert "data.zip" in str(err.value)
    assert not (tmp_path / "work").exists()
    assert sorted(p.name for p in tmp_path.rglob("*x.jpg")) == []
    assert [p.name for p in zip_path.parent.iterdir()] == ["data.zip"]


@pytest.mark.parametrize(
    ("constant", "value", "message"),
    [("MAX_ZIP_MEMBERS", 3, r"holds 4 entries, more than the 3 allowed"),
     ("MAX_ZIP_TOTAL_BYTES", 100, r"would unpack to .* GiB, more than")],
)
def test_oversized_zip_is_refused(tmp_path, monkeypatch, constant, value, message):
    monkeypatch.setattr(data_module, constant, value)
    zip_path = zip_folder(make_classes(tmp_path / "ds", {"cats": 2, "dogs": 2}), tmp_path / "big.zip")
    with pytest.raises(DataError, match=message) as err:
        open_dataset(zip_path, extract_to=tmp_path / "out")
    assert "big.zip" in str(err.value)
    assert not (tmp_path / "out").exists()


# --- image cache --------------------------------------------------------------------------------------------------


def test_cache_resizes_short_side_then_crops_the_centre(tmp_path):
    pixels = np.zeros((20, 60, 3), dtype=np.uint8)
    pixels[:, :20], pixels[:, 20:40], pixels[:, 40:] = (255, 0, 0), (0, 255, 0), (0, 0, 255)
    path = tmp_path / "wide.png"
    Image.fromarray(pixels).save(path)

    tensor = ImageCache(size=10).get(path)
    assert tensor.shape == (3, 10, 10) and tensor.dtype == torch.uint8
    assert tensor[1].float().mean() > 250 and tensor[0].float().mean() < 5  # only the green middle is left


def test_cache_decodes_big_jpegs(tmp_path):
    path = write_image(tmp_path / "photo.jpg", size=(1600, 1200), colour=(10, 20, 200))
    tensor = ImageCache(size=32).get(path)
    assert tensor.shape == (3, 32, 32)
    assert abs(int(tensor[2, 16, 16]) - 200) < 10


def test_cache_respects_its_memory_bound(tmp_path):
    paths = [write_image(tmp_path / f"{i}.png", size=(20, 30), seed=i, fmt="PNG") for i in range(5)]
    one_image = 3 * 16 * 16
    bounded = ImageCache(size=16, max_bytes=2 * one_image + 10)
    unbounded = ImageCache(size=16)
    for _ in range(2):
        for path in paths:
            assert torch.equal(bounded.get(path), unbounded.get(path))
    assert bounded.nbytes == 2 * one_image
    assert unbounded.nbytes == 5 * one_image


def test_warm_reports_progress_and_fills_the_cache(tmp_path):
    paths = [write_image(tmp_path / f"{i}.jpg", seed=i) for i in range(6)]
    calls = []
    cache = ImageCache(size=12)
    cache.warm(paths, progress=lambda done, total: calls.append((done, total)))
    assert calls == [(i, 6) for i in range(1, 7)]
    assert cache.nbytes == 6 * 3 * 12 * 12


def test_cached_images_dataset_gives_uint8_images_and_labels(tmp_path):
    ds = open_dataset(make_classes(tmp_path / "ds", {"cats": 3, "dogs": 3}))
    images = CachedImages(ds.train, ImageCache(size=20), AUGMENTATIONS["light"].train_transform(16))
    assert len(images) == len(ds.train)
    image, label = images[0]
    assert image.shape == (3, 16, 16) and image.dtype == torch.uint8
    assert label == ds.train[0].label
    batch, labels = next(iter(torch.utils.data.DataLoader(images, batch_size=4)))
    assert batch.shape == (4, 3, 16, 16) and labels.tolist() == [s.label for s in ds.train[:4]]


# --- augmentation presets -----------------------------------------------------------------------------------------


@pytest.mark.parametrize("name", ["none", "light", "standard", "strong"])
def test_augmentation_presets_give_the_requested_size(name):
    preset = AUGMENTATIONS[name]
    assert preset.name == name and preset.title and len(preset.explanation) > 80
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    transform = preset.train_transform(32)
    for _ in range(3):
        out = transform(image)
        assert out.shape == (3, 32, 32) and out.dtype == torch.uint8


def test_no_augmentation_is_deterministic_and_matches_evaluation():
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    none = AUGMENTATIONS["none"].train_transform(32)
    assert torch.equal(none(image), none(image))
    assert torch.equal(none(image), eval_transform(32)(image))
    assert torch.equal(eval_transform(32)(image), image[:, 4:36, 4:36])


def test_random_presets_vary():
    image = torch.randint(0, 256, (3, 40, 40), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    torch.manual_seed(0)
    transform = AUGMENTATIONS["standard"].train_transform(32)
    assert not torch.equal(transform(image), transform(image))

