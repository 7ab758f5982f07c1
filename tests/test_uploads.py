"""Browser uploads written to disk: folder structure kept, unsafe names refused, bounds enforced."""

from __future__ import annotations

import pytest

from workbench.data import open_dataset, uploads
from workbench.data.uploads import UploadError, save_uploads, save_zip_upload

from .conftest import SHAPES


def test_directory_upload_keeps_the_class_folders_and_drops_the_uploaded_folder_itself(tmp_path):
    folder = save_uploads([("shapes/circle/a.jpg", b"1"), ("shapes/square/b.jpg", b"22"),
                           ("shapes/square/more/c.jpg", b"333")], tmp_path)
    assert folder.parent == tmp_path and folder.name.startswith("shapes-")
    assert (folder / "circle" / "a.jpg").read_bytes() == b"1"
    assert (folder / "square" / "b.jpg").read_bytes() == b"22"
    assert (folder / "square" / "more" / "c.jpg").read_bytes() == b"333"


def test_files_without_a_shared_top_folder_keep_their_names(tmp_path):
    folder = save_uploads([("circle/a.jpg", b"1"), ("square/b.jpg", b"2")], tmp_path)
    assert sorted(p.relative_to(folder).as_posix() for p in folder.rglob("*.jpg")) == ["circle/a.jpg", "square/b.jpg"]


def test_each_upload_gets_a_fresh_folder(tmp_path):
    files = [("x/circle/a.jpg", b"1"), ("x/square/b.jpg", b"2")]
    assert save_uploads(files, tmp_path) != save_uploads(files, tmp_path)


@pytest.mark.parametrize("bad", ["../evil.jpg", "shapes/../../evil.jpg", "/etc/evil.jpg", "C:\\evil.jpg",
                                 "shapes\\..\\..\\evil.jpg", ""])
def test_unsafe_names_are_refused_by_name_and_nothing_is_written(tmp_path, bad):
    dest = tmp_path / "uploads"
    with pytest.raises(UploadError, match="Upload refused") as refused:
        save_uploads([("shapes/circle/a.jpg", b"1"), (bad, b"2")], dest)
    assert f"'{bad}'" in str(refused.value)
    assert not dest.exists() or not any(dest.iterdir())
    assert not (tmp_path / "evil.jpg").exists()


def test_too_many_files_are_refused_before_anything_is_written(tmp_path):
    with pytest.raises(UploadError, match="3 files were uploaded, more than the 2 allowed"):
        save_uploads([(f"d/c/{i}.jpg", b"x") for i in range(3)], tmp_path / "u", max_files=2)
    assert not (tmp_path / "u").exists()


def test_too_many_bytes_are_refused(tmp_path):
    with pytest.raises(UploadError, match="more than the 1 MB allowed"):
        save_uploads([("d/c/a.jpg", b"x" * 2**20), ("d/c/b.jpg", b"y")], tmp_path, max_bytes=2**20)


def test_an_empty_upload_is_refused(tmp_path):
    with pytest.raises(UploadError, match="No files"):
        save_uploads([], tmp_path)


def test_uploaded_sample_folder_opens_as_the_same_dataset(tmp_path):
    files = [(f"shapes/{p.relative_to(SHAPES).as_posix()}", p.read_bytes()) for p in sorted(SHAPES.rglob("*.jpg"))]
    dataset = open_dataset(save_uploads(files, tmp_path))
    assert dataset.class_names == ["circle", "cross", "square", "star", "triangle"]
    assert len(dataset.train) + len(dataset.val) == len(files)


def test_zip_upload_is_saved_as_a_zip(tmp_path):
    path = save_zip_upload("my data.zip", b"PK-bytes", tmp_path)
    assert path.suffix == ".zip" and path.read_bytes() == b"PK-bytes"
    assert path.parent.parent == tmp_path


@pytest.mark.parametrize(("name", "data", "message"), [
    ("photos.tar", b"x", "not a .zip"),
    ("../../evil.zip", b"x", "Upload refused"),
    ("big.zip", b"x" * (2**20 + 1), "more than the 1 MB allowed"),
])
def test_bad_zip_uploads_are_refused(tmp_path, name, data, message):
    with pytest.raises(UploadError, match=message):
        save_zip_upload(name, data, tmp_path, max_bytes=2**20)


def test_the_uploads_folder_follows_the_environment(tmp_path, monkeypatch):
    monkeypatch.setenv(uploads.UPLOADS_DIR_ENV, str(tmp_path))
    assert uploads.uploads_root() == tmp_path
    monkeypatch.delenv(uploads.UPLOADS_DIR_ENV)
    assert uploads.uploads_root().name == "uploads"


def test_the_size_bound_matches_the_server_upload_limit():
    config = (SHAPES.parents[1] / ".streamlit" / "config.toml").read_text()
    assert f"maxUploadSize = {uploads.MAX_UPLOAD_MB}" in config
