"""What a dataset folder holds and how its owner meant it.

Folders named train/, val/ (valid/, validation/) and test/ are splits, never classes. `unwrap` descends through outer
folders (a zip of `birds/` holding `birds/train/...`); `folder_layout` reads class folders, either at the top or
inside split folders, and `workbench.data.labels` reads a folder of images plus a label file. Both return a `Layout`:
the classes, every candidate file with its class and the split its place gives it, and where each split came from,
which `Layout.sentence` turns into the one plain sentence the Data page and the CLI show.
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from pathlib import Path

from workbench.data.images import IGNORED_NAMES, IMAGE_EXTENSIONS, DataError, readable_name

SPLIT_FOLDER_NAMES = {
    "train": ("train", "training"),
    "val": ("val", "valid", "validation", "dev"),
    "test": ("test", "testing"),
}
VAL_FOLDER_NAMES = SPLIT_FOLDER_NAMES["val"]
SPLIT_NAMES = frozenset(name for names in SPLIT_FOLDER_NAMES.values() for name in names)
TABLE_EXTENSIONS = frozenset({".csv", ".tsv"})
SHOWN_EXAMPLES = 3  # how many file names a problem line quotes before "and N more"
NO_FOLDER = "-"
"""A LayoutChoice folder set to this means "there is none": e.g. a test/ folder read as part of the training data is
not wanted, so it is left out."""
LAYOUT_HELP = ("Accepted layouts: <folder>/<class>/<images> (one subfolder per class); the same inside train/ plus "
               "val/ and/or test/; or a folder of images with a CSV/TSV label file (a file-name column and a label "
               "column)")


@dataclass(frozen=True)
class LayoutChoice:
    """What the user says about their data's layout; an empty field means "recognise it"."""

    val_folder: str = ""
    """Top-level folder to validate on (its name), or "-" for none (the workbench then splits validation off)."""
    test_folder: str = ""
    """Top-level folder held out for the final test, or "-" for none."""
    label_file: str = ""
    """Label file (CSV/TSV) to read, relative to the dataset folder."""
    file_column: str = ""
    """Label-file column holding the image file names."""
    label_column: str = ""
    """Label-file column holding the class of each image."""
    split_column: str = ""
    """Label-file column saying train / val / test for each image ("-" to ignore one that was recognised)."""

    @classmethod
    def from_values(cls, values: dict) -> LayoutChoice:
        """The choice among `values` (e.g. a run's flat config); other keys are ignored, missing ones recognised."""
        return cls(**{name: str(values.get(name) or "").strip() for name in cls.__dataclass_fields__})

    def is_empty(self) -> bool:
        return not any(getattr(self, name) for name in self.__dataclass_fields__)


@dataclass
class SkippedFile:
    path: str  # relative to the dataset root, with "/" separators
    reason: str


@dataclass
class Candidate:
    """A file that may be an image of a class."""

    path: Path
    rel: str
    """Relative to the dataset root, with "/" separators."""
    class_name: str
    origin: str
    """Where its class comes from, for messages: a class folder ("train/cat/") or a label file's row."""
    split: str | None
    """The split its place gives it ("train", "val", "test"), or None: the workbench splits it."""


@dataclass
class Layout:
    root: Path
    kind: str
    """"class folders", "split folders" or "label file"."""
    class_names: list[str]
    found: list[Candidate]
    skipped: list[SkippedFile] = field(default_factory=list)
    """Files skipped for where they are, before any is opened."""
    given: dict[str, str] = field(default_factory=dict)
    """split -> where its images come from ("valid/", "rows marked test"), for the splits the data brings."""
    ignored_folders: list[str] = field(default_factory=list)
    problems: list[str] = field(default_factory=list)
    """Plain-language lines about the layout itself (an empty test folder, label-file rows naming no file...)."""
    class_folders: dict[str, Path] = field(default_factory=dict)
    """class -> its (first) folder, for messages; empty for a label file."""
    describe_source: str = ""
    """How the classes were found, as it reads after "N classes" (", one folder each", " from labels.csv (...)")."""

    def sentence(self, val_fraction: float, test_fraction: float) -> str:
        """One plain sentence of what was recognised, e.g. "3 classes; train/ used for training, valid/ for
        validation, test/ held out for the final test"."""
        classes = f"{len(self.class_names)} classes{self.describe_source}"
        uses = []
        if "train" in self.given:
            uses.append(f"{self.given['train']} used for training")
        if "val" in self.given:
            uses.append(f"{self.given['val']} for validation" if uses else f"{self.given['val']} used for validation")
        else:
            uses.append(f"{val_fraction:.0%} of each class set aside for validation")
        if "test" in self.given:
            uses.append(f"{self.given['test']} held out for the final test")
        elif test_fraction:
            uses.append(f"{test_fraction:.0%} of each class held out for the final test")
        else:
            uses.append("no test set")
        return f"{classes}; {', '.join(uses)}"


# --- finding things in a folder -----------------------------------------------------------------------------------


def visible(p: Path) -> bool:
    return not p.name.startswith(".") and p.name not in IGNORED_NAMES


def subfolders(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_dir() and visible(p))


def loose_images(folder: Path) -> list[Path]:
    return sorted(p for p in folder.iterdir() if p.is_file() and visible(p) and p.suffix.lower() in IMAGE_EXTENSIONS)


def tables(folder: Path) -> list[Path]:
    """The label files (CSV/TSV) lying directly in `folder`."""
    return sorted(p for p in folder.iterdir() if p.is_file() and visible(p) and p.suffix.lower() in TABLE_EXTENSIONS)


def files_under(folder: Path) -> list[Path]:
    """All visible files below `folder`, recursively, in a stable order."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [d for d in dirnames if visible(Path(d))]
        found += [Path(dirpath, f) for f in filenames if visible(Path(f))]
    return sorted(found)


def relative(path: Path, root: Path) -> str:
    return readable_name(path.relative_to(root).as_posix())


def examples(items: list[str], sep: str = ", ") -> str:
    """The first SHOWN_EXAMPLES of `items`, then "and N more": what a problem line quotes."""
    shown = sep.join(items[:SHOWN_EXAMPLES])
    return shown if len(items) <= SHOWN_EXAMPLES else f"{shown}{sep}and {len(items) - SHOWN_EXAMPLES} more"


def split_of_name(name: str) -> str | None:
    """The split a folder (or a label-file value) of this name stands for, if any."""
    lowered = name.strip().lower()
    return next((split for split, names in SPLIT_FOLDER_NAMES.items() if lowered in names), None)


def unwrap(root: Path) -> Path:
    """Descend through wrapper folders (a zip of `shapes/` holding `shapes/<class>/...`, or `data/birds/train/...`):
    a folder holding nothing but one subfolder that itself holds folders."""
    while not loose_images(root) and not tables(root):
        folders = subfolders(root)
        if (len(folders) != 1 or folders[0].is_symlink() or split_of_name(folders[0].name)
                or not subfolders(folders[0])):
            break  # several folders = classes or splits; a single folder of images = one class (reported later)
        root = folders[0]
    return root


# --- class folders, at the top or inside split folders ------------------------------------------------------------


def folder_layout(root: Path, choice: LayoutChoice) -> Layout:
    """Class folders at the top (`<class>/...`), or inside split folders (`train/<class>/...` with `val/` and/or
    `test/`); DataError if the folder is neither."""
    folders = subfolders(root)
    splits = _split_folders(root, folders, choice)
    others = [f for f in folders if f not in splits.values()]
    if "train" in splits:
        class_parents = dict(splits)
        ignored = [f.name for f in others]
    else:
        # No train/: the class folders are at the top, beside any val/ or test/ (never read as classes).
        class_parents = {"": root, **splits}
        ignored = [f.name for f in others if split_of_name(f.name)]
    layout = Layout(root=root, kind="split folders" if "train" in splits else "class folders", class_names=[],
                    found=[], ignored_folders=ignored)
    skip = {root / name for name in ignored} | set(splits.values())
    for split, parent in class_parents.items():
        _read_class_folders(layout, parent, split or None, skip)
    if root not in class_parents.values():
        layout.skipped += [SkippedFile(relative(p, root), "image not inside a class folder")
                           for p in loose_images(root)]
    layout.class_names = sorted(layout.class_folders)
    _require_classes(layout, splits)
    for name, folder in layout.class_folders.items():
        if not any(c.class_name == name for c in layout.found):
            raise DataError(f"Class folder '{folder}' is empty. Add images of '{name}' or remove the folder.")
    if layout.kind == "class folders" and not layout.given:
        layout.describe_source = ", one folder each"
    return layout


def _split_folders(root: Path, folders: list[Path], choice: LayoutChoice) -> dict[str, Path]:
    """split -> its folder, as recognised by name or as the user chose."""
    by_name = {f.name.lower(): f for f in folders}
    splits = {}
    for split, names in SPLIT_FOLDER_NAMES.items():
        chosen = {"val": choice.val_folder, "test": choice.test_folder}.get(split, "")
        if chosen == NO_FOLDER:
            continue
        if chosen:
            folder = by_name.get(chosen.strip("/").lower())
            if folder is None:
                names_here = ", ".join(f"'{f.name}/'" for f in folders) or "none"
                raise DataError(f"The {split} folder was set to '{chosen}', but '{root}' has no such folder (folders "
                                f"there: {names_here}). Choose one of those, or leave it empty to recognise it.")
        else:
            folder = next((by_name[name] for name in names if name in by_name), None)
        if folder is not None and folder not in splits.values():
            splits[split] = folder
    return splits


def _read_class_folders(layout: Layout, parent: Path, split: str | None, skip: set[Path]) -> None:
    """Add the class folders under `parent` (a split folder, or the top) and the images lying loose beside them."""
    root = layout.root
    prefix = f"{relative(parent, root)}/" if parent != root else ""
    classes = [d for d in subfolders(parent) if d not in skip]
    if split and parent != root:
        if not classes and not loose_images(parent):
            layout.problems.append(_empty_split_line(prefix, split))
            return
        layout.given.setdefault(split, prefix)
    for d in classes:
        if split_of_name(d.name) and parent != root:
            raise DataError(f"Folder '{prefix}{d.name}/' is named like a split ({d.name}), so it is not read as a "
                            f"class. Rename it after the class it holds, or move it next to {prefix.rstrip('/')}/.")
        name = readable_name(d.name)
        layout.found += [Candidate(path, relative(path, root), name, f"{prefix}{name}/", split)
                         for path in files_under(d)]
        layout.class_folders.setdefault(name, d)
    loose = loose_images(parent)
    if loose and not classes:
        where = f"'{prefix}'" if prefix else f"'{root}'"
        raise DataError(f"Folder {where} has images but no class subfolders. Move each class's images into its own "
                        f"subfolder ({prefix}<class>/), or add a label file (CSV with a file-name column and a label "
                        f"column). {LAYOUT_HELP}.")
    layout.skipped += [SkippedFile(relative(p, root), "image not inside a class folder") for p in loose]


def _empty_split_line(prefix: str, split: str) -> str:
    if split == "test":
        return (f"Folder '{prefix}' is empty, so there is no held-out test set. Put test images in "
                f"{prefix}<class>/, or remove the empty folder.")
    if split == "val":
        return (f"Folder '{prefix}' is empty, so validation images are set aside from the training images instead. "
                f"Put validation images in {prefix}<class>/, or remove the empty folder.")
    return f"Folder '{prefix}' is empty. Put training images in {prefix}<class>/."


def _require_classes(layout: Layout, splits: dict[str, Path]) -> None:
    root = layout.root
    if "train" not in splits and splits and not any(c.split is None for c in layout.found):
        found = ", ".join(f"{f.name}/" for f in splits.values())
        raise DataError(f"Dataset '{root}' has {found} but no training images: put them in train/<class>/ (or in "
                        f"one folder per class next to {found}). {LAYOUT_HELP}.")
    if not layout.class_names and not layout.found:
        raise DataError(f"Folder '{root}' has no class subfolders. {LAYOUT_HELP}.")
    if len(layout.class_names) < 2:
        found = ", ".join(f"'{n}'" for n in layout.class_names) or "none"
        raise DataError(f"Dataset '{root}' needs at least 2 classes, found {len(layout.class_names)}: {found}. "
                        f"{LAYOUT_HELP}.")


def require_trainable_classes(layout: Layout) -> None:
    """A class seen only in the test (or validation) images cannot be learned: refuse a test-only class, which would
    make the final test score meaningless."""
    trained = {c.class_name for c in layout.found if c.split in (None, "train")}
    for name in layout.class_names:
        if name in trained:
            continue
        splits = sorted({c.split for c in layout.found if c.class_name == name})
        if splits == ["test"]:
            where = layout.given.get("test", "the test images")
            train = layout.given.get("train", "")
            raise DataError(f"Class '{name}' is in {where} but has no training images: the model cannot learn a "
                            f"class it never sees, so its test images could only be wrong. Add images of '{name}' "
                            f"to {train}{name}/ (the training images), or remove it from {where}.".replace("  ", " "))
