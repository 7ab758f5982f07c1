"""Images uploaded through the browser, written to disk so `open_dataset` can read them like any folder.

A directory upload arrives as (relative name, bytes) pairs, the name starting with the chosen folder's own name
("shapes/circle/a.jpg"). `save_uploads` checks every name and the totals before it writes anything, then recreates
the folder structure in a fresh folder under the uploads root. A zip is saved as it is (`save_zip_upload`):
`open_dataset` checks and extracts zips itself.
"""

from __future__ import annotations

import os
import re
import shutil
import tempfile
from collections.abc import Iterable
from pathlib import Path

from workbench.data.zips import unpack_zip

# Both bounds are stated on the Data page. MAX_UPLOAD_BYTES matches server.maxUploadSize in .streamlit/config.toml,
# which Streamlit applies to each file; this module applies it to the upload as a whole.
MAX_UPLOAD_FILES = 5000
MAX_UPLOAD_MB = 500
MAX_UPLOAD_BYTES = MAX_UPLOAD_MB * 1024 * 1024
UPLOADS_DIR_ENV = "WORKBENCH_UPLOADS_DIR"


class UploadError(ValueError):
    """An upload we refuse; the message names the file or the bound and says what to do."""


def uploads_root() -> Path:
    """Where uploads are kept: $WORKBENCH_UPLOADS_DIR, or ./uploads."""
    return Path(os.environ.get(UPLOADS_DIR_ENV) or "uploads")


def save_uploads(files: Iterable[tuple[str, bytes]], dest: Path, max_files: int = MAX_UPLOAD_FILES,
                 max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Write (relative name, bytes) pairs into a fresh folder under `dest`, keeping their folder structure, and
    return that folder. A top folder that every file shares is dropped (it is the uploaded folder itself).

    Nothing is written unless every name is a safe relative path and the upload stays within `max_files` files
    and `max_bytes` bytes in total; otherwise UploadError says which file or bound is the problem.
    """
    files = list(files)
    if not files:
        raise UploadError("No files were uploaded. Choose a folder with one subfolder of images per class.")
    if len(files) > max_files:
        raise UploadError(f"{len(files)} files were uploaded, more than the {max_files} allowed. Upload fewer "
                          "images, or type the folder's path on this computer instead.")
    total = sum(len(data) for _, data in files)
    if total > max_bytes:
        raise UploadError(f"The upload holds {total / 2**20:.0f} MB, more than the {max_bytes / 2**20:.0f} MB "
                          "allowed. Use smaller images or fewer of them, or type the folder's path on this "
                          "computer instead.")
    parts = [_relative_parts(name) for name, _ in files]
    _refuse_repeated_names(parts)
    top = _shared_top_folder(parts)
    folder = Path(tempfile.mkdtemp(prefix=f"{_safe_stem(top or 'upload')}-", dir=_made(dest)))
    try:
        for name_parts, (name, data) in zip(parts, files, strict=True):
            _write_new(folder.joinpath(*name_parts[1 if top else 0:]), data, name)
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)  # all or nothing: no half-saved upload is left to be read
        raise
    return folder


def _refuse_repeated_names(parts: list[list[str]]) -> None:
    seen = set()
    for name_parts in parts:
        name = "/".join(name_parts)
        if name in seen:
            raise UploadError(f"Upload refused: file '{name}' was sent twice. Nothing was saved. Upload the folder "
                              "again.")
        seen.add(name)


def _write_new(target: Path, data: bytes, name: str) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    try:
        with open(target, "xb") as f:  # never overwrite: a second file landing here means a name clash
            f.write(data)
    except FileExistsError:
        raise UploadError(f"Upload refused: file '{name}' has the same name as another uploaded file apart from "
                          "upper/lower case, and on this computer that is the same file. Nothing was saved. Rename "
                          "one of them and upload again.") from None


def save_zip_upload(name: str, data: bytes, dest: Path, max_bytes: int = MAX_UPLOAD_BYTES) -> Path:
    """Save an uploaded .zip into a fresh folder under `dest` and return its path (for `open_dataset`)."""
    base = Path(_relative_parts(name)[-1])
    if base.suffix.lower() != ".zip":
        raise UploadError(f"'{name}' is not a .zip file. Upload a .zip of the dataset folder, or the folder itself.")
    if len(data) > max_bytes:
        raise UploadError(f"'{name}' is {len(data) / 2**20:.0f} MB, more than the {max_bytes / 2**20:.0f} MB "
                          "allowed. Zip fewer or smaller images, or type the folder's path on this computer instead.")
    folder = Path(tempfile.mkdtemp(prefix=f"{_safe_stem(base.stem)}-", dir=_made(dest)))
    path = folder / f"{_safe_stem(base.stem)}.zip"
    path.write_bytes(data)
    return path


def unpack_zip_copy(zip_path: Path, dest: Path) -> Path:
    """Check a zip on this computer and extract it into a fresh folder under `dest`; returns the dataset folder."""
    folder = Path(tempfile.mkdtemp(prefix=f"{_safe_stem(zip_path.stem)}-", dir=_made(dest)))
    try:
        return unpack_zip(zip_path, folder / "data")
    except BaseException:
        shutil.rmtree(folder, ignore_errors=True)
        raise


def delete_upload(upload: Path, owner_folder: Path) -> None:
    """Delete one upload, which must be a folder directly inside `owner_folder` (the person's uploads folder)."""
    upload, owner_folder = Path(upload).resolve(), Path(owner_folder).resolve()
    if upload.parent != owner_folder or not upload.is_dir():
        raise UploadError(f"'{upload.name}' is not one of your uploads.")
    shutil.rmtree(upload)


def _relative_parts(name: str) -> list[str]:
    """The parts of an uploaded file's name, refused (UploadError naming it) if it could land outside its folder."""
    # Browsers send "/"; a name made on Windows may hold "\". Either way "..\x" must be caught.
    parts = [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]
    if name.startswith(("/", "\\")) or re.match(r"^[A-Za-z]:", name):
        problem = "is an absolute path"
    elif ".." in parts:
        problem = "points outside the upload with '..'"
    elif not parts or "\0" in name:
        problem = "is not a usable file name"
    else:
        return parts
    raise UploadError(f"Upload refused: file '{name}' {problem}. Nothing was saved. Upload the dataset folder itself.")


def _shared_top_folder(parts: list[list[str]]) -> str | None:
    """The first folder every file sits in, if all of them do (a directory upload names the chosen folder)."""
    tops = {p[0] for p in parts}
    if len(tops) == 1 and all(len(p) > 1 for p in parts):
        return tops.pop()
    return None


def _safe_stem(name: str) -> str:
    """A short, plain folder-name prefix derived from what the user uploaded (for recognising it on disk)."""
    return re.sub(r"[^A-Za-z0-9_-]+", "_", name)[:40] or "upload"


def _made(folder: Path) -> Path:
    folder = Path(folder)
    folder.mkdir(parents=True, exist_ok=True)
    return folder
