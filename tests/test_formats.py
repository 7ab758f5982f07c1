"""Data as people bring it: iPhone (HEIC) and web (AVIF) photos next to JPEGs, and folders big enough to need every
core for their check."""

from __future__ import annotations

import io
import os
import sys
import zlib
from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from workbench.data import DataError, decode_resized, load_rgb, open_dataset
from workbench.data import images as images_module
from workbench.data.images import check_files, check_image_file

COLOURS = {"cat": (200, 30, 30), "dog": (30, 60, 200)}


def save(path: Path, colour: tuple[int, int, int], fmt: str, size: tuple[int, int] = (32, 32), **options) -> Path:
    """A flat-coloured image with a little noise, so no two files have the same bytes."""
    path.parent.mkdir(parents=True, exist_ok=True)
    noise = np.random.default_rng(zlib.crc32(path.name.encode())).integers(0, 8, (size[1], size[0], 3))
    Image.fromarray((np.array(colour) + noise).clip(0, 255).astype(np.uint8)).save(path, fmt, **options)
    return path


def avif_encoder_works() -> bool:
    try:
        Image.new("RGB", (8, 8)).save(io.BytesIO(), "AVIF")
    except (KeyError, OSError, ValueError):
        return False
    return True


def phone_folder(root: Path, with_avif: bool = False) -> Path:
    """cat/ and dog/, each with three JPEGs and two HEICs (one .heic, one .HEIF), and an AVIF if asked."""
    for name, colour in COLOURS.items():
        for i in range(3):
            save(root / name / f"{name}_{i}.jpg", colour, "JPEG")
        save(root / name / f"IMG_{name}_0.heic", colour, "HEIF")
        save(root / name / f"IMG_{name}_1.HEIF", colour, "HEIF")
        if with_avif:
            save(root / name / f"{name}_web.avif", colour, "AVIF")
    return root


def total(counts: dict[str, int]) -> int:
    return counts["train"] + counts["val"] + counts["test"]


def test_heic_photos_are_read_as_images_of_their_class(tmp_path):
    ds = open_dataset(phone_folder(tmp_path / "ds"))
    assert ds.report.skipped == []
    assert {name: total(n) for name, n in ds.report.counts.items()} == {"cat": 5, "dog": 5}
    assert sum(s.path.suffix.lower() in (".heic", ".heif") for s in ds.train + ds.val) == 4


@pytest.mark.skipif(not avif_encoder_works(), reason="this Pillow build cannot write AVIF to make the test file")
def test_avif_images_are_read_as_images_of_their_class(tmp_path):
    ds = open_dataset(phone_folder(tmp_path / "ds", with_avif=True))
    assert ds.report.skipped == []
    assert {name: total(n) for name, n in ds.report.counts.items()} == {"cat": 6, "dog": 6}
    avif = tmp_path / "ds" / "dog" / "dog_web.avif"
    assert np.abs(np.asarray(load_rgb(avif), dtype=int) - (30, 60, 200)).max() < 20


def test_heic_decodes_to_its_size_and_colour(tmp_path):
    path = save(tmp_path / "IMG_0001.HEIC", (30, 60, 200), "HEIF", size=(48, 32))
    rgb = load_rgb(path)
    assert rgb.mode == "RGB" and rgb.size == (48, 32)
    assert np.abs(np.asarray(rgb, dtype=int) - (30, 60, 200)).max() < 20
    square = decode_resized(path, 24)
    assert tuple(square.shape) == (3, 24, 24)
    assert np.abs(square.permute(1, 2, 0).numpy().astype(int) - (30, 60, 200)).max() < 20


def test_heic_with_a_thumbnail_decodes_the_photo_in_the_colour_of_the_photo(tmp_path):
    # iPhones embed a small thumbnail: decoding for training may use it (as JPEGs decode at a reduced scale)
    path = save(tmp_path / "IMG_0002.heic", (200, 30, 30), "HEIF", size=(256, 192), thumbnails=[128])
    square = decode_resized(path, 64)
    assert tuple(square.shape) == (3, 64, 64)
    assert np.abs(square.permute(1, 2, 0).numpy().astype(int) - (200, 30, 30)).max() < 20
    assert check_image_file(path)[0] is None


@pytest.mark.parametrize("thumbnails", [[], [128]], ids=["plain", "with thumbnail"])
def test_truncated_heic_is_skipped_and_named_with_a_plain_reason(tmp_path, thumbnails):
    root = phone_folder(tmp_path / "ds")
    whole = save(tmp_path / "whole.heic", (30, 60, 200), "HEIF", size=(256, 192), thumbnails=thumbnails).read_bytes()
    (root / "dog" / "IMG_cut.heic").write_bytes(whole[: len(whole) // 2])  # a transfer that stopped half-way

    ds = open_dataset(root)
    reasons = {str(s.path): s.reason for s in ds.report.skipped}
    assert list(reasons) == ["dog/IMG_cut.heic"]
    assert reasons["dog/IMG_cut.heic"].startswith("corrupt or truncated image")
    assert "dog/IMG_cut.heic" in "\n".join(ds.report.problems())
    assert {name: total(n) for name, n in ds.report.counts.items()} == {"cat": 5, "dog": 5}
    with pytest.raises(DataError, match="IMG_cut.heic"):
        load_rgb(root / "dog" / "IMG_cut.heic")


# --- big folders: checked by worker processes -----------------------------------------------------------------------


@pytest.fixture
def pool_from_four_files(monkeypatch):
    """check_files uses worker processes from 4 files on, so a small test exercises what big folders run."""
    if sys.platform != "linux" or len(os.sched_getaffinity(0)) < 2:
        pytest.skip("worker processes are used on Linux machines with 2 or more cores")
    monkeypatch.setattr(images_module, "_POOL_MIN_FILES", 4)


def test_worker_processes_give_every_file_its_answer_in_order(tmp_path, pool_from_four_files):
    paths = [save(tmp_path / f"{i:02d}.jpg", (10 * i, 100, 50), "JPEG") for i in range(18)]  # chunks of 8
    paths.insert(3, tmp_path / "cut.jpg")
    paths[3].write_bytes(paths[0].read_bytes()[:200])
    paths.append(tmp_path / "notes.txt")
    paths[-1].write_text("not a picture")
    calls = []

    results = check_files(paths, lambda done, n: calls.append((done, n)))
    assert results == [check_image_file(p) for p in paths]
    assert results[3][0].startswith("corrupt or truncated image") and results[-1][0] == "not an image (.txt)"
    assert calls[-1] == (20, 20) and [done for done, _ in calls] == sorted(done for done, _ in calls)


def test_a_worker_process_that_dies_is_reported_in_plain_words(tmp_path, pool_from_four_files, monkeypatch):
    paths = [save(tmp_path / f"{i}.jpg", (90, 90, 90), "JPEG") for i in range(6)]
    monkeypatch.setattr(images_module, "check_image_file", lambda path: os._exit(1))  # as a decoder crash would
    with pytest.raises(DataError, match="worker process ended abruptly"):
        check_files(paths)


def test_the_generated_script_reads_heic_through_the_same_plugin(tmp_path):
    from workbench.data import DataSpec
    from workbench.deploy.codegen import HEIF_CODE, data_plan

    assert data_plan(DataSpec(str(phone_folder(tmp_path / "phone")))).has_heif
    assert HEIF_CODE.startswith("pillow_heif.register_heif_opener()")
    jpegs = tmp_path / "jpegs"
    for name in ("cat", "dog"):
        for i in range(2):
            save(jpegs / name / f"{i}.jpg", (40 * i, 90, 200), "JPEG")
    assert not data_plan(DataSpec(str(jpegs))).has_heif
