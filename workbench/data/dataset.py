"""A user's image folder (or .zip) made ready for transfer learning.

`open_dataset` reads an ImageFolder layout, checks every file once and reports what is wrong in plain words
(`HealthReport`); `ImageCache` decodes each image once into a small uint8 tensor; `AUGMENTATIONS` are the named
training-time presets the UI lists; `CachedImages` ties samples, cache and a transform into a torch Dataset.
"""

from __future__ import annotations

import dataclasses
import hashlib
import io
import os
import random
import re
import shutil
import stat
import struct
import tempfile
import threading
import zipfile
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import IO

import numpy as np
import torch
import torch.utils.data
from PIL import Image, ImageOps
from torchvision.transforms import v2
from torchvision.transforms.v2.functional import pil_to_tensor

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff"})
VAL_FOLDER_NAMES = ("val", "valid", "validation")
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})  # OS clutter, never the user's data
ARCHIVE_EXTENSIONS = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"})

MAX_ZIP_MEMBERS = 20_000
MAX_ZIP_TOTAL_BYTES = 2 << 30
MAX_ZIP_RATIO = 200  # uncompressed / compressed, checked for members larger than ZIP_RATIO_MIN_BYTES
ZIP_RATIO_MIN_BYTES = 1 << 20

STRONG_IMBALANCE_RATIO = 3.0
VERIFY_DRAFT_SIZE = (64, 64)  # checking a file decodes is enough; JPEG draft mode makes it cheap
SHOWN_EXAMPLES = 3  # how many file names a problem line quotes before "and N more"
RESIZE_METHOD = Image.Resampling.BICUBIC  # how every image is resized, for training and prediction

# PIL raises any of these on malformed files, depending on the format and where the bytes go wrong.
_DECODE_FAILURES = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, struct.error)
_LAYOUT_HELP = "Expected layout: <folder>/<class_name>/<images>, one subfolder per class (e.g. cats/, dogs/)"


class DataError(ValueError):
    """Bad dataset input. The message names the file/folder/option and says what to do."""

    def __init__(self, message: str):
        super().__init__(_readable_name(message))  # it quotes paths, which may not be valid UTF-8


@dataclass
class Sample:
    path: Path
    label: int
    split: str  # "train" | "val"


@dataclass
class SkippedFile:
    path: str  # relative to the dataset root, with "/" separators
    reason: str


@dataclass
class HealthReport:
    class_names: list[str]
    counts: dict[str, dict[str, int]]
    """class -> {"train": n, "val": n}, readable images only."""
    skipped: list[SkippedFile]
    tiny_classes: list[str]
    """Classes with fewer than 2 readable images in total."""
    duplicates: list[list[str]]
    """Groups (>= 2) of relative paths whose bytes are identical."""
    leakage: list[list[str]]
    """The duplicate groups that have copies in both train and val."""
    imbalance_ratio: float
    """Largest class total / smallest class total, >= 1."""
    has_split: bool
    """True if the folder had its own train/ and val/ subfolders."""
    label_conflicts: list[list[str]] = field(default_factory=list)
    """The duplicate groups whose copies sit in different classes."""
    ignored_folders: list[str] = field(default_factory=list)
    """Top-level folders next to train/ and val/ that were not read (e.g. test/)."""
    case_conflicts: list[list[str]] = field(default_factory=list)
    """Class names that differ only in upper/lower case: two classes here, one folder on Windows and macOS."""

    def problems(self) -> list[str]:
        """One plain-language line per problem: what is wrong and what to do about it."""
        return [
            *self._skipped_problems(),
            *self._split_problems(),
            *self._case_problems(),
            *self._tiny_problems(),
            *self._duplicate_problems(),
            *self._imbalance_problems(),
        ]

    def to_dict(self) -> dict:
        """JSON-serialisable copy of the report, with the problem lines included."""
        return {**dataclasses.asdict(self), "problems": self.problems()}

    def total(self, class_name: str) -> int:
        return sum(self.counts[class_name].values())

    def _skipped_problems(self) -> list[str]:
        if not self.skipped:
            return []
        shown = _examples([f"{s.path} ({s.reason})" for s in self.skipped], sep="; ")
        return [f"{_plural(len(self.skipped), 'file')} skipped and not used: {shown}. Fix, convert or remove them."]

    def _split_problems(self) -> list[str]:
        lines = [f"Folder '{name}/' was not read: only train/ and val/ are used." for name in self.ignored_folders]
        if not self.has_split:
            return lines
        for name in self.class_names:
            if self.counts[name]["train"] == 0:
                lines.append(f"Class '{name}' has no images in train/: the model cannot learn it. Add some to "
                             f"train/{name}/.")
            elif self.counts[name]["val"] == 0:
                lines.append(f"Class '{name}' has no images in val/: its accuracy cannot be measured. Add some to "
                             f"val/{name}/.")
        return lines

    def _case_problems(self) -> list[str]:
        return [f"Class folders {' and '.join(repr(n) for n in names)} differ only in upper/lower case: they are read "
                "as separate classes (and on Windows or macOS they would be one folder). If they are one class, move "
                "their images into one folder; otherwise give them clearly different names."
                for names in self.case_conflicts]

    def _tiny_problems(self) -> list[str]:
        return [f"Class '{name}' has only {_plural(self.total(name), 'readable image')}: a class needs at least 2 "
                "(one to learn from, one to check with), and 20 or more to learn well. Add more images."
                for name in self.tiny_classes]

    def _duplicate_problems(self) -> list[str]:
        lines = []
        if self.duplicates:
            lines.append(f"{_plural(len(self.duplicates), 'group')} of identical files, e.g. "
                         f"{' = '.join(self.duplicates[0])}: copies add nothing and skew the counts. Delete the "
                         "extra copies.")
        if self.leakage:
            lines.append(f"{_plural(len(self.leakage), 'image')} in both train and val, e.g. "
                         f"{' = '.join(self.leakage[0])}: validation accuracy will look better than it really is. "
                         "Keep each image on one side only.")
        if self.label_conflicts:
            lines.append(f"{_plural(len(self.label_conflicts), 'image')} filed under different classes, e.g. "
                         f"{' = '.join(self.label_conflicts[0])}: the model is given two answers for one picture. "
                         "Keep it in the right class only.")
        return lines

    def _imbalance_problems(self) -> list[str]:
        if self.imbalance_ratio < STRONG_IMBALANCE_RATIO:
            return []
        biggest = max(self.class_names, key=self.total)
        smallest = min(self.class_names, key=self.total)
        return [f"Classes are imbalanced ({self.imbalance_ratio:.1f}x): '{biggest}' has {self.total(biggest)} "
                f"images, '{smallest}' only {self.total(smallest)}. The model will favour the big classes: add "
                "images to the small ones, or train with class-balanced sampling."]


@dataclass
class ImageDataset:
    root: Path
    """The folder actually read (for a zip: where it was extracted)."""
    source: str
    """What the user gave: a folder or a .zip path."""
    class_names: list[str]
    train: list[Sample]
    val: list[Sample]
    report: HealthReport


def open_dataset(path: str | Path, val_fraction: float = 0.2, seed: int = 0,
                 extract_to: Path | None = None) -> ImageDataset:
    """Folder (ImageFolder layout, with train/ and val/ subfolders or without) or a .zip of either.

    Without train/ and val/ subfolders, each class is split on its own: `val_fraction` of its images (seeded by
    `seed`) go to val. A zip is checked member by member before anything is written, then extracted into
    `extract_to` (a new or empty folder: extraction never overwrites a file; by default a fresh temporary folder,
    removed again if the dataset turns out unusable).
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1, got {val_fraction}. Use e.g. 0.2 to keep 20% of "
                        "each class for validation.")
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"Dataset path '{source}' does not exist. Check the spelling, or give the folder that "
                        "holds one subfolder per class.")
    if source.is_dir():
        return _open_folder(source.absolute(), str(path), val_fraction, seed)
    if source.suffix.lower() != ".zip":
        raise DataError(f"'{source}' is a file, not a folder or a .zip. Give the dataset folder, or a .zip of it.")
    return _open_zip(source, str(path), val_fraction, seed, extract_to)


def load_rgb(path: Path) -> Image.Image:
    """Open an image as RGB: EXIF orientation applied; grayscale (L, I;16, I, F), LA, RGBA/PA/P-with-transparency
    (composited on white), palette, CMYK converted. Raises DataError naming the file on failure."""
    return _load_rgb(path, None)


def decode_resized(image: str | Path | IO[bytes] | Image.Image, size: int) -> torch.Tensor:
    """uint8 [3, size, size]: the image as RGB (see `load_rgb`), its short side resized to `size` (bicubic) and the
    centre cropped square. This is what training keeps of every image before augmentation or the evaluation crop.

    `image` is a file path, an open binary file read from its start (an upload; its `name` is used in errors) or a PIL
    image. Files decode like the training cache decodes them (JPEGs in draft mode at about `size`), so predictions
    match training's own evaluation exactly. Raises DataError naming the image if it cannot be read."""
    if isinstance(image, Image.Image):
        try:
            rgb = _to_rgb(ImageOps.exif_transpose(image))
        except _Unreadable as e:
            raise DataError(f"Cannot use the image given: {e}.") from None
    elif isinstance(image, str | Path):
        rgb = _load_rgb(Path(image), (size, size))
    else:
        image.seek(0)  # an upload may have been read before (by an earlier rerun of the page, or st.image)
        rgb = _load_rgb(image, (size, size))
    square = ImageOps.fit(rgb, (size, size), method=RESIZE_METHOD)
    return pil_to_tensor(square).contiguous()


def _load_rgb(source: Path | IO[bytes], draft_size: tuple[int, int] | None) -> Image.Image:
    try:
        return _decode(source, draft_size)
    except _Unreadable as e:
        name = source if isinstance(source, Path) else getattr(source, "name", "the uploaded image")
        raise DataError(f"Cannot read image '{name}': {e}. Fix, convert or remove this file.") from None


# --- zip safety ---------------------------------------------------------------------------------------------------


def _open_zip(zip_path: Path, source: str, val_fraction: float, seed: int, extract_to: Path | None) -> ImageDataset:
    check_zip(zip_path)
    target = Path(extract_to) if extract_to is not None else Path(tempfile.mkdtemp(prefix="workbench-zip-"))
    try:
        _extract_zip(zip_path, target)
        try:
            return _open_folder(target.absolute(), source, val_fraction, seed)
        except DataError as e:
            raise DataError(f"In zip '{zip_path}': {e}") from None
    except BaseException:
        if extract_to is None:
            shutil.rmtree(target, ignore_errors=True)  # a failed open leaves no temporary copy behind
        raise


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


def _extract_zip(zip_path: Path, target: Path) -> None:
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


# --- scanning the folder ------------------------------------------------------------------------------------------


@dataclass
class _Found:
    path: Path
    rel: str
    class_name: str
    class_folder: Path
    split: str | None  # None: the stratified split decides


@dataclass
class _Checked:
    found: _Found
    problem: str | None
    sha256: str | None


def _visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name not in IGNORED_NAMES


def _subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and _visible(p))


def _loose_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and _visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def _split_folders(root: Path) -> dict[str, Path] | None:
    by_name = {p.name.lower(): p for p in _subfolders(root)}
    val = next((by_name[name] for name in VAL_FOLDER_NAMES if name in by_name), None)
    if "train" in by_name and val is not None:
        return {"train": by_name["train"], "val": val}
    return None


def _unwrap(root: Path) -> Path:
    """Descend through wrapper folders (e.g. a zip of `shapes/` holding `shapes/<class>/...`)."""
    while _split_folders(root) is None and not _loose_images(root):
        folders = _subfolders(root)
        if len(folders) != 1 or folders[0].is_symlink() or not _subfolders(folders[0]):
            break  # several folders = classes; a single folder of images = one class (reported later)
        root = folders[0]
    return root


def _files_under(folder: Path) -> list[Path]:
    """All visible files below `folder`, recursively, in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if _visible(Path(d))]
        found += [Path(dirpath, f) for f in filenames if _visible(Path(f))]
    return sorted(found)


@dataclass
class _Scan:
    root: Path
    class_names: list[str]
    found: list[_Found]
    skipped: list[SkippedFile]  # files skipped for where they are, before any is opened
    has_split: bool
    ignored_folders: list[str]


def _scan(root: Path) -> _Scan:
    """Find the classes and every candidate file; errors for layouts that cannot be a dataset."""
    splits = _split_folders(root)
    if splits is None:
        class_dirs = {None: _subfolders(root)}
        if not class_dirs[None]:
            raise _no_classes_error(root)
    else:
        class_dirs = {split: _subfolders(folder) for split, folder in splits.items()}
    class_names = sorted({_readable_name(d.name) for dirs in class_dirs.values() for d in dirs})
    if len(class_names) < 2:
        found = ", ".join(f"'{n}'" for n in class_names) or "none"
        raise DataError(f"Dataset '{root}' needs at least 2 classes, found {len(class_names)}: {found}. "
                        f"{_LAYOUT_HELP}.")
    found = [_Found(path, _readable_name(path.relative_to(root).as_posix()), _readable_name(d.name), d, split)
             for split, dirs in class_dirs.items() for d in dirs for path in _files_under(d)]
    for name in class_names:
        if not any(f.class_name == name for f in found):
            folders = [d for dirs in class_dirs.values() for d in dirs if _readable_name(d.name) == name]
            raise DataError(f"Class folder '{folders[0]}' is empty. Add images of '{name}' or remove the folder.")
    loose = [p for folder in [root, *(splits or {}).values()] for p in _loose_images(folder)]
    return _Scan(
        root=root,
        class_names=class_names,
        found=found,
        skipped=[SkippedFile(_readable_name(p.relative_to(root).as_posix()), "image not inside a class folder")
                 for p in loose],
        has_split=splits is not None,
        ignored_folders=[p.name for p in _subfolders(root) if splits and p not in splits.values()],
    )


def _readable_name(name: str) -> str:
    """A file or folder name as text that can be shown and saved anywhere. Names that are not valid UTF-8 on disk
    (e.g. Latin-1 from an old USB stick) reach Python with surrogate escapes, which a web page cannot display."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")


def _case_conflicts(class_names: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for name in class_names:
        groups[name.casefold()].append(name)
    return [names for names in groups.values() if len(names) > 1]


def _no_classes_error(root: Path) -> DataError:
    if _loose_images(root):
        return DataError(f"Folder '{root}' has images but no class subfolders. Move each class's images into its own "
                         f"subfolder. {_LAYOUT_HELP}.")
    return DataError(f"Folder '{root}' has no class subfolders. {_LAYOUT_HELP}.")


# --- checking each file once ----------------------------------------------------------------------------------------


class _Unreadable(Exception):
    """An image that cannot be decoded; the message is the plain-language reason."""


def _check_file(found: _Found) -> _Checked:
    suffix = found.path.suffix.lower()
    if not found.path.is_file():  # a named pipe or device would block or never end when read
        return _Checked(found, "not a regular file", None)
    if suffix in ARCHIVE_EXTENSIONS:
        return _Checked(found, f"an archive inside the dataset ({suffix}), not opened: unpack its images into the "
                               "class folder", None)
    if suffix not in IMAGE_EXTENSIONS:
        return _Checked(found, f"not an image ({suffix or 'no extension'})", None)
    try:
        data = found.path.read_bytes()
        _decode(io.BytesIO(data), VERIFY_DRAFT_SIZE)
    except OSError as e:
        return _Checked(found, f"cannot read file: {e.strerror}", None)
    except _Unreadable as e:
        return _Checked(found, str(e), None)
    return _Checked(found, None, hashlib.sha256(data).hexdigest())


def _check_files(found: list[_Found]) -> list[_Checked]:
    # Decoding and hashing release the GIL, so threads give a real speed-up on big folders.
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        return list(pool.map(_check_file, found))


def _decode(source: Path | IO[bytes], draft_size: tuple[int, int] | None) -> Image.Image:
    """Decode to RGB, raising _Unreadable with a plain reason. `draft_size` lets JPEGs decode at reduced scale."""
    try:
        with Image.open(source) as img:
            _check_pixels(img)
            if draft_size:
                img.draft("RGB", draft_size)
            ImageOps.exif_transpose(img, in_place=True)
            return _to_rgb(img)
    except Image.DecompressionBombError as e:
        raise _Unreadable(f"image too large (decompression-bomb limit): {e}") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise _Unreadable(f"cannot read file: {e.strerror}") from None
    except Image.UnidentifiedImageError:
        raise _Unreadable("corrupt or truncated image: not a format PIL recognises") from None
    except _DECODE_FAILURES as e:
        raise _Unreadable(f"corrupt or truncated image: {e}") from None


def _check_pixels(img: Image.Image) -> None:
    # PIL only warns between 1x and 2x its limit; turning that warning into an error with warnings.catch_warnings()
    # would change process-wide state from worker threads, so compare against the same limit here instead.
    limit = Image.MAX_IMAGE_PIXELS
    if limit and img.width * img.height > limit:
        raise _Unreadable(f"image too large (decompression-bomb limit): {img.width}x{img.height} = "
                          f"{img.width * img.height:,} pixels, limit {limit:,}")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        img.load()
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
        return _high_depth_to_l(img).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError:
        raise _Unreadable(f"unreadable image mode {img.mode}") from None


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit and float grayscale to 0..255 (PIL's own convert('L') clips everything above 255)."""
    values = np.asarray(img, dtype=np.float32)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode.startswith("I;16"):
        values = values / 257.0
    elif img.mode == "F" and low >= 0 and high <= 1:
        values = values * 255.0
    elif low < 0 or high > 255:
        values = (values - low) * (255.0 / (high - low))  # unknown range: stretch to fill 0..255
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))


# --- splitting and reporting --------------------------------------------------------------------------------------


def _open_folder(folder: Path, source: str, val_fraction: float, seed: int) -> ImageDataset:
    scan = _scan(_unwrap(folder))
    checked = _check_files(scan.found)
    _require_readable_classes(scan, checked)
    readable = [c for c in checked if not c.problem]
    split_of = _assign_splits(readable, val_fraction, seed)
    samples = [Sample(c.found.path, scan.class_names.index(c.found.class_name), split_of[c.found.rel])
               for c in readable]
    return ImageDataset(
        root=scan.root,
        source=source,
        class_names=scan.class_names,
        train=[s for s in samples if s.split == "train"],
        val=[s for s in samples if s.split == "val"],
        report=_health_report(scan, checked, split_of),
    )


def _require_readable_classes(scan: _Scan, checked: list[_Checked]) -> None:
    for name in scan.class_names:
        mine = [c for c in checked if c.found.class_name == name]
        if all(c.problem for c in mine):
            why = _examples([f"{c.found.rel} ({c.problem})" for c in mine], sep="; ")
            raise DataError(f"Class folder '{mine[0].found.class_folder}' has no readable images: {why}. Add images "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))}) or remove the folder.")


def _assign_splits(readable: list[_Checked], val_fraction: float, seed: int) -> dict[str, str]:
    """rel path -> "train" | "val". Folders that came split keep theirs; the rest is split per class, seeded."""
    split_of = {c.found.rel: c.found.split for c in readable if c.found.split}
    by_class: dict[str, list[str]] = defaultdict(list)
    for c in readable:
        if not c.found.split:
            by_class[c.found.class_name].append(c.found.rel)
    for rels in by_class.values():
        rels.sort()
        random.Random(seed).shuffle(rels)
        n_val = 0 if len(rels) < 2 else min(len(rels) - 1, max(1, round(len(rels) * val_fraction)))
        split_of.update({rel: "val" if i < n_val else "train" for i, rel in enumerate(rels)})
    return split_of


def _health_report(scan: _Scan, checked: list[_Checked], split_of: dict[str, str]) -> HealthReport:
    readable = [c for c in checked if not c.problem]
    counts = {name: {"train": 0, "val": 0} for name in scan.class_names}
    for c in readable:
        counts[c.found.class_name][split_of[c.found.rel]] += 1
    totals = {name: sum(split_counts.values()) for name, split_counts in counts.items()}
    by_hash: dict[str, list[_Found]] = defaultdict(list)
    for c in readable:
        by_hash[c.sha256].append(c.found)
    groups = [group for group in by_hash.values() if len(group) > 1]
    skipped = scan.skipped + [SkippedFile(c.found.rel, c.problem) for c in checked if c.problem]
    return HealthReport(
        class_names=scan.class_names,
        counts=counts,
        skipped=sorted(skipped, key=lambda s: s.path),
        tiny_classes=[name for name, total in totals.items() if total < 2],
        duplicates=[[f.rel for f in g] for g in groups],
        leakage=[[f.rel for f in g] for g in groups if {split_of[f.rel] for f in g} == {"train", "val"}],
        imbalance_ratio=max(totals.values()) / min(totals.values()),
        has_split=scan.has_split,
        label_conflicts=[[f.rel for f in g] for g in groups if len({f.class_name for f in g}) > 1],
        ignored_folders=scan.ignored_folders,
        case_conflicts=_case_conflicts(scan.class_names),
    )


def _examples(items: list[str], sep: str = ", ") -> str:
    shown = sep.join(items[:SHOWN_EXAMPLES])
    return shown if len(items) <= SHOWN_EXAMPLES else f"{shown}{sep}and {len(items) - SHOWN_EXAMPLES} more"


def _plural(n: int, word: str) -> str:
    return f"{n} {word}" if n == 1 else f"{n} {word}s"


# --- decoded-image cache ------------------------------------------------------------------------------------------


class ImageCache:
    """Decodes each image once, resized (short side to `size`, then centre-cropped to size x size) into uint8 CHW
    torch tensors held in memory, up to `max_bytes` (default 2 GiB); images beyond the bound are decoded on demand
    each time (still correct, just slower). JPEGs decode in draft mode, so big photos are fast. Thread-safe.

    The tensors returned are shared with the cache: transform them into new tensors, never modify them in place.
    With DataLoader worker processes, call `warm()` first so the workers inherit a full cache.
    """

    def __init__(self, size: int, max_bytes: int = 2 << 30):
        if size < 1:
            raise ValueError(f"ImageCache size must be a positive number of pixels, got {size}")
        self.size = size
        self.max_bytes = max_bytes
        self._tensors: dict[Path, torch.Tensor] = {}
        self._lock = threading.Lock()

    @property
    def item_bytes(self) -> int:
        return 3 * self.size * self.size

    @property
    def nbytes(self) -> int:
        with self._lock:
            return len(self._tensors) * self.item_bytes

    def get(self, path: Path) -> torch.Tensor:
        """uint8 [3, size, size] for the image at `path`; DataError naming the file if it cannot be read."""
        path = Path(path)
        with self._lock:
            cached = self._tensors.get(path)
        if cached is not None:
            return cached
        tensor = self._load(path)
        with self._lock:
            if path not in self._tensors and (len(self._tensors) + 1) * self.item_bytes <= self.max_bytes:
                self._tensors[path] = tensor
        return tensor

    def warm(self, paths: Sequence[Path], progress: Callable[[int, int], None] | None = None) -> None:
        """Decode now every image that fits in the bound, calling progress(done, total) as they complete."""
        with self._lock:
            room = self.max_bytes // self.item_bytes - len(self._tensors)
            todo = [Path(p) for p in dict.fromkeys(paths) if Path(p) not in self._tensors][:max(room, 0)]
        total = len(paths)
        done = total - len(todo)
        if progress and done:
            progress(done, total)
        with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
            for _ in pool.map(self.get, todo):
                done += 1
                if progress:
                    progress(done, total)

    def _load(self, path: Path) -> torch.Tensor:
        return decode_resized(path, self.size)


# --- augmentation presets -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Augmentation:
    name: str
    title: str
    explanation: str
    """One plain-language paragraph a teacher could read aloud: what it does and why it helps."""
    steps: Callable[[int], list[torch.nn.Module]] = field(repr=False, compare=False)
    """image_size -> the torchvision.transforms.v2 steps, applied to uint8 CHW tensors."""
    mixes_images: bool = False
    """Also blend pairs of images in each batch (timm's mixup / cutmix), training on the mixed labels."""

    def train_transform(self, image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
        """uint8 CHW (cache size) -> uint8 CHW image_size x image_size, random each call (except 'none')."""
        return v2.Compose(self.steps(image_size))


def eval_transform(image_size: int) -> Callable[[torch.Tensor], torch.Tensor]:
    """CenterCrop(image_size) on uint8 tensors: the same view of each image every time."""
    return v2.CenterCrop(image_size)


AUGMENTATIONS: dict[str, Augmentation] = {
    a.name: a
    for a in [
        Augmentation(
            "none", "None",
            "Every training image is shown exactly as it is, cropped to the centre. Training is fastest and the "
            "results are easy to compare, but with few images the model can simply memorise them: accuracy on the "
            "training images climbs while accuracy on new images stalls.",
            lambda size: [v2.CenterCrop(size)],
        ),
        Augmentation(
            "light", "Light",
            "Each time an image is shown, the model sees a slightly different part of it (at least half of it), "
            "sometimes mirrored left-to-right. A cat is still a cat when it is off-centre or facing the other way, "
            "so this teaches the model to ignore position and direction at almost no cost.",
            lambda size: [v2.RandomResizedCrop(size, scale=(0.5, 1.0)), v2.RandomHorizontalFlip()],
        ),
        Augmentation(
            "standard", "Standard",
            "Crops can zoom in to a quarter of the image, images are mirrored, and brightness, contrast and colour "
            "saturation are changed a little. Photos of the same thing are taken from different distances and in "
            "different light; showing those changes during training makes the model rely on shape and texture "
            "instead of lighting. A good default for small datasets.",
            lambda size: [v2.RandomResizedCrop(size, scale=(0.25, 1.0)), v2.RandomHorizontalFlip(),
                          v2.ColorJitter(0.3, 0.3, 0.3)],
        ),
        Augmentation(
            "strong", "Strong",
            "Crops can be tiny parts of the image, images are mirrored, and two random edits (rotation, shearing, "
            "colour and contrast changes and more) are applied to every image; then pairs of images in a batch are "
            "blended (mixup) or a patch of one is pasted into the other (cutmix), and the label becomes the same "
            "mix, e.g. 70% cat and 30% dog. The model almost never sees the same picture twice, which fights "
            "memorising very well, but training needs more epochs and can get worse if the edits destroy what "
            "tells the classes apart.",
            lambda size: [v2.RandomResizedCrop(size, scale=(0.08, 1.0)), v2.RandomHorizontalFlip(), v2.RandAugment()],
            mixes_images=True,
        ),
    ]
}


def augmentation_preview(path: Path, preset: str, image_size: int, count: int = 8, seed: int = 0) -> list[Image.Image]:
    """The same training image as the network would see it `count` times under `preset` (mixup / cutmix, which
    blend two images, are not shown)."""
    torch.manual_seed(seed)
    source = ImageCache(round(image_size / 0.875)).get(Path(path))
    transform = AUGMENTATIONS[preset].train_transform(image_size)
    return [v2.functional.to_pil_image(transform(source)) for _ in range(count)]


class CachedImages(torch.utils.data.Dataset):
    """(samples, cache, transform) -> items (uint8 tensor [3, image_size, image_size], label int). Normalisation is
    NOT done here: the training loop normalises whole batches on the device (faster)."""

    def __init__(self, samples: Sequence[Sample], cache: ImageCache, transform: Callable):
        self.samples = list(samples)
        self.cache = cache
        self.transform = transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        return self.transform(self.cache.get(sample.path)), sample.label
