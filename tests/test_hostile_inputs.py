"""Hostile and broken input that tests/test_data.py, test_uploads.py, test_backbones.py and test_export.py do not
already cover: odd zips, odd names, odd images, broken weights files and exports from other versions, and a
property-based test that throws random file trees and random bytes at the loader. Whatever comes in, the user gets
a dataset or a message naming the file and the fix, and nothing is written outside the folder meant for it."""

from __future__ import annotations

import io
import json
import os
import re
import tempfile
import warnings
import zipfile
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from PIL import Image
from safetensors.torch import save, save_file

from workbench.data import DataError, ImageCache, decode_resized, open_dataset
from workbench.data.uploads import UploadError, save_uploads
from workbench.deploy import export
from workbench.deploy.export import ExportError, import_zip
from workbench.models.backbones import BackboneError, create_backbone


def image_bytes(colour=(200, 30, 30), size=(16, 16), fmt="PNG", **save_args) -> bytes:
    buffer = io.BytesIO()
    Image.new("RGB", size, colour).save(buffer, fmt, **save_args)
    return buffer.getvalue()


def make_zip(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    return path


def two_classes(prefix: str = "", n: int = 2) -> dict[str, bytes]:
    return {f"{prefix}{name}/{i}.png": image_bytes((40 * i, 100, 0) if name == "cats" else (0, 40 * i, 200))
            for name in ("cats", "dogs") for i in range(n)}


def all_text(report) -> str:
    text = "\n".join(report.problems())
    text.encode("utf-8")  # would raise on names a web page cannot show
    json.dumps(report.to_dict())
    return text


# -------------------------------------------------------------------------------------------------------------------
# Zips and names


def test_a_zip_inside_the_zip_is_reported_not_opened(tmp_path):
    inner = make_zip(tmp_path / "inner.zip", two_classes())
    outer = make_zip(tmp_path / "outer.zip", {**two_classes(), "cats/more_cats.zip": inner.read_bytes()})
    ds = open_dataset(outer, extract_to=tmp_path / "out")
    assert len(ds.train) + len(ds.val) == 4
    assert [(s.path, s.reason) for s in ds.report.skipped] == [
        ("cats/more_cats.zip", "an archive inside the dataset (.zip), not opened: unpack its images into the class "
                               "folder")]
    assert "cats/more_cats.zip" in all_text(ds.report)
    extracted = sorted(p.name for p in (tmp_path / "out").rglob("*") if p.is_file())
    assert extracted == ["0.png", "0.png", "1.png", "1.png", "more_cats.zip"]  # the inner zip stays closed


def test_zip_member_names_in_the_old_dos_encoding_load(tmp_path):
    path = make_zip(tmp_path / "legacy.zip", {**two_classes(), "cats/cafX.png": image_bytes((1, 2, 3))})
    # Old zip tools store names in code page 437 without the UTF-8 flag: byte 0x82 is "é" there.
    path.write_bytes(path.read_bytes().replace(b"cafX", b"caf\x82"))
    ds = open_dataset(path, extract_to=tmp_path / "out")
    assert sorted(p.path.name for p in ds.train + ds.val if p.path.parent.name == "cats") == ["0.png", "1.png",
                                                                                              "café.png"]


def test_a_zip_whose_names_claim_utf8_but_are_not_is_refused_by_name(tmp_path):
    path = make_zip(tmp_path / "broken_names.zip", {**two_classes(), "cats/café.png": image_bytes()})
    path.write_bytes(path.read_bytes().replace("café".encode(), b"ca\xff\xfe\xfd"))
    with pytest.raises(DataError, match=r"broken_names.zip' is not a readable .zip file.*Re-create the zip"):
        open_dataset(path, extract_to=tmp_path / "out")
    assert not (tmp_path / "out").exists()


@pytest.mark.parametrize("second", ["cats/0.png", "cats//0.png", "cats/./0.png", "cats\\0.png"])
def test_a_zip_holding_one_name_twice_is_refused(tmp_path, second):
    members = two_classes()
    with zipfile.ZipFile(tmp_path / "twice.zip", "w") as zf, warnings.catch_warnings():
        warnings.simplefilter("ignore")  # zipfile warns about an exact duplicate, then writes it anyway
        for name, content in members.items():
            zf.writestr(name, content)
        zf.writestr(second, image_bytes((0, 0, 0)))
    with pytest.raises(DataError, match=f"refused: it holds '{re.escape(second)}' twice") as err:
        open_dataset(tmp_path / "twice.zip", extract_to=tmp_path / "out")
    assert "one copy would silently replace the other. Nothing was extracted" in str(err.value)
    assert not (tmp_path / "out").exists()


def test_class_folders_differing_only_in_case_are_flagged(tmp_path):
    members = {**two_classes(), "Cats/x.png": image_bytes((9, 9, 9)), "Cats/y.png": image_bytes((8, 8, 8))}
    ds = open_dataset(make_zip(tmp_path / "case.zip", members), extract_to=tmp_path / "out")
    assert ds.class_names == ["Cats", "cats", "dogs"]
    assert ds.report.case_conflicts == [["Cats", "cats"]]
    assert "'Cats' and 'cats' differ only in upper/lower case" in all_text(ds.report)


def test_names_that_are_not_utf8_on_disk_load_and_can_be_shown(tmp_path):
    root = tmp_path / "usb_stick"
    for name in (b"chats_\xe9t\xe9", b"dogs"):  # Latin-1 folder and file names, as on an old FAT stick
        folder = os.path.join(os.fsencode(root), name)
        os.makedirs(folder)
        for i in range(2):
            Path(os.fsdecode(os.path.join(folder, b"photo_\xe0_%d.png" % i))).write_bytes(
                image_bytes((60 * i, 50, 50)))
    Path(os.fsdecode(os.path.join(os.fsencode(root), b"dogs", b"notes_\xe9.txt"))).write_text("not an image")
    ds = open_dataset(root)
    assert ds.class_names == ["chats_\ufffdt\ufffd", "dogs"]
    assert len(ds.train) + len(ds.val) == 4
    assert all(s.path.is_file() for s in ds.train + ds.val)  # the real files, whatever their bytes
    assert "dogs/notes_\ufffd.txt (not an image (.txt))" in all_text(ds.report)


def test_an_upload_naming_one_file_twice_is_refused(tmp_path):
    files = [("shapes/cats/a.png", image_bytes()), ("shapes/dogs/b.png", image_bytes()),
             ("shapes/cats/a.png", image_bytes((0, 0, 0)))]
    with pytest.raises(UploadError, match="file 'shapes/cats/a.png' was sent twice. Nothing was saved"):
        save_uploads(files, tmp_path / "uploads")
    assert not list((tmp_path / "uploads").rglob("*.png"))


# -------------------------------------------------------------------------------------------------------------------
# Images


def _truncated(data: bytes) -> bytes:
    return data[: len(data) // 2]


def test_every_broken_image_is_skipped_with_its_reason_and_the_rest_loads(tmp_path):
    root = tmp_path / "ds"
    good = {f"{c}/{i}.png": image_bytes((30 * i, 90, 9) if c == "cats" else (9, 90, 30 * i))
            for c in ("cats", "dogs") for i in range(3)}
    broken = {
        "cats/empty.jpg": b"",
        "cats/notes.jpg": b"Remember to buy cat food\n",
        "dogs/page.png": b"<!DOCTYPE html><html><body>404 Not Found</body></html>",
        "dogs/cut.jpg": _truncated(image_bytes(size=(200, 200), fmt="JPEG")),
        "dogs/cut.png": _truncated(image_bytes(size=(200, 200))),
    }
    for name, content in {**good, **broken}.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_bytes(content)
    ds = open_dataset(root)
    assert len(ds.train) + len(ds.val) == 6
    reasons = {s.path: s.reason for s in ds.report.skipped}
    assert set(reasons) == set(broken)
    assert all(r.startswith("corrupt or truncated image") for r in reasons.values())
    assert "5 files skipped" in all_text(ds.report) and "Fix, convert or remove them" in all_text(ds.report)
    for name in broken:  # the prediction path names the file too
        with pytest.raises(DataError, match=rf"Cannot read image '.*{Path(name).name}'.*Fix, convert or remove"):
            decode_resized(root / name, 32)


def test_animated_gif_uses_its_first_frame(tmp_path):
    frames = [Image.new("RGB", (20, 20), colour) for colour in ((255, 0, 0), (0, 0, 255), (0, 255, 0))]
    path = tmp_path / "blink.gif"
    frames[0].save(path, save_all=True, append_images=frames[1:], duration=100, loop=0)
    assert Image.open(path).n_frames == 3
    pixels = decode_resized(path, 16).float()
    assert pixels[0].mean() > 240 and pixels[2].mean() < 15  # red, like frame one


def test_exif_rotation_turns_the_pixels_not_just_the_size(tmp_path):
    pixels = np.zeros((30, 60, 3), dtype=np.uint8)
    pixels[:, :30] = (255, 0, 0)  # stored left half red, right half blue
    pixels[:, 30:] = (0, 0, 255)
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90° clockwise to display": the left half ends up on top
    path = tmp_path / "phone.png"
    Image.fromarray(pixels).save(path, exif=exif.tobytes())
    shown = ImageCache(size=20).get(path).float()
    assert shown[0, :8].mean() > 240 and shown[2, :8].mean() < 15  # top: red
    assert shown[2, -8:].mean() > 240 and shown[0, -8:].mean() < 15  # bottom: blue


@pytest.mark.parametrize("size", [(1, 1), (20000, 3), (3, 20000)], ids=["1x1", "very-wide", "very-tall"])
def test_tiny_and_extreme_aspect_images_become_ordinary_squares(tmp_path, size):
    path = tmp_path / "odd.png"
    Image.new("RGB", size, (10, 200, 30)).save(path)
    tensor = decode_resized(path, 32)
    assert tensor.shape == (3, 32, 32) and tensor.dtype == torch.uint8
    assert abs(tensor[1].float().mean() - 200) < 2


@pytest.mark.filterwarnings("ignore::PIL.Image.DecompressionBombWarning")
def test_a_decompression_bomb_given_for_prediction_is_refused_by_name(tmp_path, monkeypatch):
    path = tmp_path / "bomb.png"
    Image.new("RGB", (100, 100)).save(path)
    monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)
    with pytest.raises(DataError, match=r"bomb.png'.*image too large \(decompression-bomb limit\)"):
        decode_resized(path, 32)


# -------------------------------------------------------------------------------------------------------------------
# Weights files and exported models


@pytest.fixture(scope="module")
def resnet_state() -> dict[str, torch.Tensor]:
    return {k: v.contiguous() for k, v in timm.create_model("test_resnet", num_classes=2).state_dict().items()}


@pytest.mark.parametrize("name", ["cut.safetensors", "cut.pth", "pickle_in_disguise.safetensors"])
def test_broken_weights_files_are_refused_by_name(tmp_path, resnet_state, name):
    path = tmp_path / name
    if name == "cut.pth":
        torch.save(resnet_state, path)
        path.write_bytes(_truncated(path.read_bytes()))
    elif name == "cut.safetensors":
        save_file(resnet_state, str(path))
        path.write_bytes(_truncated(path.read_bytes()))
    else:
        torch.save({"model": torch.nn.Linear(2, 2)}, path)
    with pytest.raises(BackboneError, match=rf"Could not read weights file '.*{name}'"):
        create_backbone("test_resnet", num_classes=2, weights=str(path))


def _export(tmp_path: Path, state: dict, fmt: str | None = export.FORMAT, weights: bytes | None = None) -> Path:
    info = {"backbone": "test_resnet", "class_names": ["cats", "dogs"],
            "preprocessing": {"image_size": 64, "resize_to": 73, "crop_pct": 0.875, "mean": [0.5] * 3,
                              "std": [0.25] * 3, "interpolation": "bicubic"}}
    if fmt is not None:
        info["format"] = fmt
    return make_zip(tmp_path / "model.zip", {"model.json": json.dumps(info).encode(),
                                             "model.safetensors": weights if weights is not None else save(state)})


def test_an_export_of_this_version_imports(tmp_path, resnet_state):
    run_dir = import_zip(_export(tmp_path, resnet_state), tmp_path / "runs")
    assert json.loads((run_dir / "model.json").read_text())["class_names"] == ["cats", "dogs"]


@pytest.mark.parametrize(("fmt", "message"), [
    ("workbench-model/2", r"exported by a newer version of the workbench \(format 2; this one reads format 1\)"),
    ("workbench-model/0", r"exported by an older version of the workbench \(format 0.*Export the model again"),
    (None, r"not a model exported by the workbench: its model.json has no 'format'"),
    ("keras-model/1", r"not a model exported by the workbench"),
])
def test_an_export_from_another_version_is_refused_with_what_to_do(tmp_path, resnet_state, fmt, message):
    with pytest.raises(ExportError, match=message) as err:
        import_zip(_export(tmp_path, resnet_state, fmt), tmp_path / "runs")
    assert "'model.zip'" in str(err.value)
    assert not (tmp_path / "runs").exists()


@pytest.mark.parametrize("weights", ["pickle", "truncated"])
def test_an_export_with_pickled_or_truncated_weights_is_refused(tmp_path, resnet_state, weights):
    if weights == "pickle":
        buffer = io.BytesIO()
        torch.save(resnet_state, buffer)
        content = buffer.getvalue()
    else:
        content = _truncated(save(resnet_state))
    with pytest.raises(ExportError, match="'model.zip': the weights do not fit"):
        import_zip(_export(tmp_path, resnet_state, weights=content), tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


# -------------------------------------------------------------------------------------------------------------------
# Property: random trees, random bytes


VALID = [image_bytes((200, 20, 20)), image_bytes((20, 200, 20), fmt="JPEG"), image_bytes((20, 20, 200), fmt="GIF"),
         image_bytes((90, 90, 90), size=(1, 1), fmt="BMP")]
PARTS = st.sampled_from(["cats", "dogs", "Cats", "train", "val", "deep", ".hidden", "__MACOSX", "é", "a.jpg",
                         "b.png", "c.gif", "d.txt", "e.zip", ".DS_Store", "Thumbs.db"])
HOSTILE_PARTS = st.sampled_from(["..", ".", "", "C:", "\\..", "/tmp"])
CONTENT = st.one_of(st.sampled_from(VALID), st.sampled_from(VALID).map(_truncated), st.binary(max_size=64))
ESCAPE_NAME = "workbench_hypothesis_escape.png"


def _tree(parts, hostile: bool):
    part = st.one_of(PARTS, HOSTILE_PARTS) if hostile else PARTS
    path = st.lists(part, min_size=1, max_size=4).map(lambda ps: [*ps, ESCAPE_NAME] if "/tmp" in ps else ps)
    return st.lists(st.tuples(path, CONTENT), max_size=14)


def _snapshot(folder: Path) -> set[str]:
    return {p.relative_to(folder).as_posix() for p in folder.rglob("*")}


def _check_outcome(source: Path, out: Path | None, val_fraction: float = 0.2):
    try:
        ds = open_dataset(source, val_fraction, extract_to=out)
    except DataError as error:
        assert str(error).strip()
        str(error).encode("utf-8")
        return
    root = ds.root.resolve()
    for sample in ds.train + ds.val:
        assert sample.path.resolve().is_relative_to(root)
        assert decode_resized(sample.path, 8).shape == (3, 8, 8)  # "loaded" means every image is usable
    all_text(ds.report)


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=_tree(PARTS, hostile=False), val_fraction=st.sampled_from([0.2, 0.5]))
def test_random_folders_load_or_report_per_file(files, val_fraction):
    with tempfile.TemporaryDirectory() as sandbox:
        root = Path(sandbox) / "dataset"
        root.mkdir()
        for parts, content in files:
            path = root.joinpath(*parts)
            if path.exists() or any(p.is_file() for p in path.parents if p.is_relative_to(root)):
                continue  # the same name twice, or a file where this one needs a folder
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(content)
        before = _snapshot(Path(sandbox))
        _check_outcome(root, None, val_fraction)
        assert _snapshot(Path(sandbox)) == before  # reading a folder writes nothing


@pytest.mark.filterwarnings("ignore:Duplicate name")
@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(files=_tree(PARTS, hostile=True), damage=st.one_of(st.none(), st.tuples(st.integers(0, 10**6),
                                                                                st.binary(min_size=1, max_size=8))))
def test_random_zips_extract_only_into_their_folder_or_are_refused(files, damage):
    with tempfile.TemporaryDirectory() as sandbox:
        sandbox = Path(sandbox)
        zip_path = sandbox / "upload.zip"
        with zipfile.ZipFile(zip_path, "w", compression=zipfile.ZIP_DEFLATED) as zf:
            for parts, content in files:
                if "/".join(parts):
                    zf.writestr("/".join(parts), content)
        if damage is not None:  # a download cut short or flipped bytes: the zip itself is broken
            raw = bytearray(zip_path.read_bytes())
            at = damage[0] % max(1, len(raw))
            raw[at:at + len(damage[1])] = damage[1]
            zip_path.write_bytes(bytes(raw))
        out = sandbox / "a" / "b" / "out"  # deep, so that a few ".." could still land inside the sandbox
        _check_outcome(zip_path, out)
        outside = {name for name in _snapshot(sandbox) if not name.startswith("a/b/out") and name not in ("a", "a/b")}
        assert outside == {"upload.zip"}, f"written outside the extraction folder: {outside}"
        assert not Path("/tmp", ESCAPE_NAME).exists()
