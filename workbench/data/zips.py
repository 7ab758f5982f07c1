"""Zips refused before anything is written if a member could escape its folder or blow up in size, then extracted
member by member."""

from __future__ import annotations

import re
import shutil
import stat
import zipfile
from pathlib import Path

from workbench.data.images import IGNORED_NAMES, DataError

MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_TOTAL_BYTES = 2 << 30
MAX_ZIP_RATIO = 200  # uncompressed / compressed, checked for members larger than ZIP_RATIO_MIN_BYTES
ZIP_RATIO_MIN_BYTES = 1 << 20


def check_zip(zip_path: Path, remedy: str = "Re-create the zip from the dataset folder itself.") -> None:
    """Refuse the whole zip (DataError ending with `remedy`) if any member could escape the folder it is extracted
    into or blow up in size. Nothing is extracted here."""
    members = _zip_members(zip_path)
    if len(members) > MAX_ZIP_MEMBERS:
        raise DataError(f"Zip '{zip_path}' holds {len(members)} entries, more than the {MAX_ZIP_MEMBERS} allowed. "
                        "Split it into smaller zips or give the folder instead.")
    total = sum(info.file_size for info in members)
    if total > MAX_ZIP_TOTAL_BYTES:
        raise DataError(f"Zip '{zip_path}' would unpack to {total / 2**30:.1f} GiB, more than the "
                        f"{MAX_ZIP_TOTAL_BYTES / 2**30:.1f} GiB allowed. Use smaller images or fewer of them.")
    for info in members:
        problem = _unsafe_member(info)
        if problem:
            raise DataError(f"Zip '{zip_path}' was refused: member '{info.filename}' {problem}. Nothing was "
                            f"extracted. {remedy}")
    twice = _repeated_member(members)
    if twice:
        raise DataError(f"Zip '{zip_path}' was refused: it holds '{twice}' twice, so one copy would silently replace "
                        f"the other. Nothing was extracted. {remedy}")


def _repeated_member(members: list[zipfile.ZipInfo]) -> str | None:
    """A file name the zip holds more than once (zips allow it; extracting keeps only the last copy)."""
    seen = set()
    for info in members:
        key = "/".join(_member_parts(info.filename))
        if info.is_dir() or not key:
            continue
        if key in seen:
            return info.filename
        seen.add(key)
    return None


def _zip_members(zip_path: Path) -> list[zipfile.ZipInfo]:
    try:
        with zipfile.ZipFile(zip_path) as zf:
            return zf.infolist()
    except Exception as e:  # noqa: BLE001 - BadZipFile, OSError, NotImplementedError, a name flagged UTF-8 that is not...
        raise DataError(f"'{zip_path}' is not a readable .zip file ({e}). Re-create the zip, or give the folder.") \
            from None


def _member_parts(name: str) -> list[str]:
    # Zips made on Windows sometimes use backslashes; treat them as separators so "..\\x" is caught too.
    return [part for part in re.split(r"[/\\]", name) if part not in ("", ".")]


def _unsafe_member(info: zipfile.ZipInfo) -> str | None:
    name = info.filename
    if name.startswith(("/", "\\")):
        return "has an absolute path"
    if re.match(r"^[A-Za-z]:", name):
        return "starts with a drive letter"
    if ".." in _member_parts(name):
        return "points outside the zip with '..'"
    if stat.S_ISLNK(info.external_attr >> 16):
        return "is a symbolic link"
    ratio = info.file_size / max(info.compress_size, 1)
    if info.file_size > ZIP_RATIO_MIN_BYTES and ratio > MAX_ZIP_RATIO:
        return f"is compressed {ratio:.0f}x (more than {MAX_ZIP_RATIO}x: a zip bomb)"
    return None


def extract_zip(zip_path: Path, target: Path) -> None:
    """Copy members one by one, each to a path checked to lie inside `target` (members were checked already)."""
    target.mkdir(parents=True, exist_ok=True)
    inside = target.resolve()
    try:
        with zipfile.ZipFile(zip_path) as zf:
            for info in zf.infolist():
                parts = _member_parts(info.filename)
                if not parts or IGNORED_NAMES.intersection(parts):
                    continue
                dest = inside.joinpath(*parts).resolve()
                if not dest.is_relative_to(inside):
                    raise DataError(f"Zip '{zip_path}': member '{info.filename}' would land outside {inside}.")
                if info.is_dir():
                    dest.mkdir(parents=True, exist_ok=True)
                    continue
                dest.parent.mkdir(parents=True, exist_ok=True)
                # ZipExtFile stops at the declared size and checks the CRC, so a lying header cannot overflow.
                # "x": never overwrite. Names differing only in case are one file on Windows and macOS.
                try:
                    with zf.open(info) as src, open(dest, "xb") as dst:
                        shutil.copyfileobj(src, dst)
                except FileExistsError:
                    raise DataError(f"Zip '{zip_path}': member '{info.filename}' would overwrite another member "
                                    f"('{dest.relative_to(inside).as_posix()}'): on this computer names that differ "
                                    "only in upper/lower case are the same file. Rename one of them and re-create "
                                    "the zip.") from None
    except DataError:
        raise
    except Exception as e:  # noqa: BLE001 - however a damaged zip fails (BadZipFile, zlib.error, EOFError,
        # NotImplementedError for an unknown compression, RuntimeError for a password), it means the same to the user
        raise DataError(f"Could not extract zip '{zip_path}': {e}. Re-create the zip (without a password) from the "
                        "dataset folder.") from None



def unpack_zip(zip_path: Path, target: Path) -> Path:
    """`check_zip`, then extract every member into `target` (a new or empty folder); returns `target`."""
    check_zip(zip_path)
    extract_zip(zip_path, target)
    return target
