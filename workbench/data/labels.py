"""A folder of images plus a label file: a CSV or TSV with one row per image, a file-name column and a label column,
and optionally a split column (train / val / test), or one label file per split (train.csv, test.csv).

Columns are found by their header (`FILE_COLUMNS`, `LABEL_COLUMNS`, `SPLIT_COLUMNS`) or named by the user
(`LayoutChoice`). A row's file name may leave out the extension and may be a path relative to the dataset folder or to
any folder below it (`img1`, `img1.jpg`, `images/img1.jpg` all find `images/img1.jpg`). Rows naming no file, files with
no row and files given two labels are all listed in the health report; none of them stops the others being used.
"""

from __future__ import annotations

import csv
import re
from collections import defaultdict
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from workbench.data.images import DataError, readable_name
from workbench.data.layouts import (
    LAYOUT_HELP,
    NO_FOLDER,
    TABLE_EXTENSIONS,
    Candidate,
    Layout,
    LayoutChoice,
    SkippedFile,
    examples,
    files_under,
    relative,
    split_of_name,
    tables,
)

FILE_COLUMNS = ("file", "filename", "file_name", "files", "image", "images", "image_name", "image_file", "image_id",
                "image_path", "img", "img_name", "path", "filepath", "file_path", "fname", "id", "name")
LABEL_COLUMNS = ("label", "labels", "class", "class_name", "classname", "category", "category_name", "target",
                 "species", "breed", "y")
SPLIT_COLUMNS = ("split", "set", "subset", "partition", "data_split")
MAX_ROWS = 1_000_000


def table_columns(path: Path) -> list[str]:
    """The header of a label file, for the Data page's column choices; DataError if it cannot be read."""
    return _read_table(path)[0]


def label_tables(root: Path) -> list[str]:
    """The label files a dataset folder offers (relative names), for the Data page's choice."""
    return [p.name for p in tables(root)]


@dataclass(frozen=True)
class LabelTable:
    """A label file as it is read: which split its rows are (None: the split column's, or the workbench's), which
    columns hold what (`label_column` None: it has none, so it is not used), and its delimiter."""

    path: Path
    split: str | None
    file_column: str
    label_column: str | None
    split_column: str | None
    delimiter: str


def label_tables_read(root: Path, choice: LayoutChoice) -> list[LabelTable]:
    """The label files `label_layout` reads for `root`, with their columns; DataError as it would raise."""
    read = []
    for table, split in _chosen_tables(root, choice):
        header, _, delimiter = _read_table(table)
        columns = _columns(table, header, choice, split is None)
        file_col, label_col, split_col = columns if columns else (header[0] if header else "", None, None)
        read.append(LabelTable(table, split, file_col, label_col, None if split else split_col, delimiter))
    return read


def label_layout(root: Path, choice: LayoutChoice) -> Layout:
    """The dataset as its label file(s) describe it; DataError naming the file and the fix when they cannot."""
    chosen = _chosen_tables(root, choice)
    files = [p for p in files_under(root) if p.suffix.lower() not in TABLE_EXTENSIONS]
    index = _FileIndex(root, files)
    layout = Layout(root=root, kind="label file", class_names=[], found=[])
    labels_of: dict[Path, dict[str, list[str]]] = defaultdict(lambda: defaultdict(list))
    split_of: dict[Path, str | None] = {}
    missing, unlabelled = [], []
    columns = None
    for table, table_split in chosen:
        header, rows, _ = _read_table(table)
        columns = _columns(table, header, choice, table_split is None)
        if columns is None:  # a per-split table without labels (e.g. a competition's test.csv): not a test set
            layout.problems.append(f"{table.name} has no label column, so its images are not used. Add a "
                                   "label column to use them as a test set.")
            continue
        file_col, label_col, split_col = (header.index(c) if c is not None else None for c in columns)
        for number, row in enumerate(rows, start=2):  # row 1 is the header
            name = _cell(row, file_col)
            if not name:
                continue
            label = _cell(row, label_col)
            where = f"{table.name} row {number}"
            path, matches = index.find(name)
            if path is None:
                missing.append((name, where if matches == 0 else f"{where}, fits {matches} files: give its folder"))
                continue
            if not label:
                unlabelled.append(path)
                continue
            labels_of[path][readable_name(label)].append(where)
            split_of[path] = table_split or (_split_value(_cell(row, split_col), table, number, columns[2])
                                             if split_col is not None else None)
            if split_of[path]:
                layout.given.setdefault(split_of[path], f"{table.name}" if table_split else
                                        f"rows marked {split_of[path]}")
    _fill(layout, root, files, labels_of, split_of, unlabelled, [t for t, _ in chosen])
    _missing_line(layout, missing, chosen)
    layout.class_names = sorted({c.class_name for c in layout.found})
    if len(layout.class_names) < 2:
        found = ", ".join(f"'{n}'" for n in layout.class_names) or "none"
        names = ", ".join(t.name for t, _ in chosen)
        raise DataError(f"{names} gives {len(layout.class_names)} class(es) for the images found ({found}); at least "
                        f"2 are needed. Check that its file names match the images in '{root}' and that the label "
                        "column is the right one.")
    if columns is not None:
        layout.describe_source = (f" from {', '.join(t.name for t, _ in chosen)} (file names in '{columns[0]}', "
                                  f"labels in '{columns[1]}')")
    return layout


def _fill(layout: Layout, root: Path, files: list[Path], labels_of: dict, split_of: dict, unlabelled: list[Path],
          chosen: list[Path]) -> None:
    table_names = " / ".join(t.name for t in chosen)
    for path in files:
        rel = relative(path, root)
        labels = labels_of.get(path)
        if not labels:
            reason = f"no label in {table_names}" if path in unlabelled else f"no row in {table_names}"
            layout.skipped.append(SkippedFile(rel, reason))
        elif len(labels) > 1:
            given = "; ".join(f"'{label}' ({', '.join(rows)})" for label, rows in labels.items())
            layout.skipped.append(SkippedFile(rel, f"given two labels, {given}: keep one row for it"))
        else:
            label, rows = next(iter(labels.items()))
            layout.found.append(Candidate(path, rel, label, rows[0], split_of[path]))
    conflicts = [s for s in layout.skipped if s.reason.startswith("given two labels")]
    if conflicts:
        layout.problems.append(f"{len(conflicts)} file(s) given two different labels, e.g. {conflicts[0].path} "
                               f"({conflicts[0].reason.removeprefix('given two labels, ')}). They are not used until "
                               f"{table_names} gives each one label.")


def _missing_line(layout: Layout, missing: list[tuple[str, str]], chosen: list[tuple[Path, str | None]]) -> None:
    if not missing:
        return
    listed = [f"'{name}' ({where})" for name, where in missing]
    shown = examples(listed)
    layout.problems.append(f"{len(missing)} row(s) of {' / '.join(t.name for t, _ in chosen)} name files that are "
                           f"not in the folder: {shown}. Check those names (and extensions), or add the files.")
    layout.skipped += [SkippedFile(name, f"named in {where}, but there is no such file") for name, where in missing]


# --- which table, which columns -----------------------------------------------------------------------------------


def _chosen_tables(root: Path, choice: LayoutChoice) -> list[tuple[Path, str | None]]:
    """(label file, the split every row of it belongs to or None) pairs to read."""
    if choice.label_file:
        return [(_named_table(root, choice.label_file), None)]
    found = tables(root)
    if not found:
        raise DataError(f"'{root}' has no class folders and no label file. {LAYOUT_HELP}.")
    per_split = [(t, split_of_name(t.stem)) for t in found if split_of_name(t.stem)]
    if per_split and len(per_split) == len(found) and any(split == "train" for _, split in per_split):
        return per_split
    if len(found) == 1:
        return [(found[0], None)]
    readable = [t for t in found if _columns_or_none(t, choice)]
    if len(readable) == 1:
        return [(readable[0], None)]
    names = ", ".join(t.name for t in found)
    raise DataError(f"'{root}' has several label files ({names}) and it is not clear which one labels the images. "
                    "Choose one (Data page: 'Label file'; CLI: --label-file NAME).")


def _named_table(root: Path, name: str) -> Path:
    path = (root / name.strip().lstrip("/\\")).resolve()
    if not path.is_relative_to(root.resolve()) or ".." in PurePosixPath(name.replace("\\", "/")).parts:
        raise DataError(f"Label file '{name}' must be a file inside the dataset folder '{root}'.")
    if not path.is_file() or path.suffix.lower() not in TABLE_EXTENSIONS:
        offered = ", ".join(p.name for p in tables(root)) or "none"
        raise DataError(f"Label file '{name}' is not a .csv or .tsv file in '{root}' (label files there: {offered}).")
    return path


def _columns_or_none(table: Path, choice: LayoutChoice) -> tuple | None:
    try:
        return _columns(table, _read_table(table)[0], choice, True)
    except DataError:
        return None


def _columns(table: Path, header: list[str], choice: LayoutChoice, need_label: bool
             ) -> tuple[str, str, str | None] | None:
    """(file column, label column, split column or None). DataError listing the header when one cannot be found; None
    for a per-split table without a label column (`need_label` False)."""
    file_col = _column(table, header, choice.file_column, FILE_COLUMNS, "file-name", "--file-column")
    if file_col is None:
        raise _columns_error(table, header, "which column holds the image file names")
    label_col = _column(table, header, choice.label_column, LABEL_COLUMNS, "label", "--label-column",
                        exclude=file_col)
    if label_col is None:
        if not need_label:
            return None
        raise _columns_error(table, header, "which column holds the labels")
    split_col = None
    if choice.split_column != NO_FOLDER:
        split_col = _column(table, header, choice.split_column, SPLIT_COLUMNS, "split", "--split-column",
                            exclude=label_col)
    return file_col, label_col, split_col


def _column(table: Path, header: list[str], chosen: str, names: tuple[str, ...], what: str, flag: str,
            exclude: str | None = None) -> str | None:
    if chosen:
        if chosen not in header:
            raise DataError(f"{table.name} has no column '{chosen}' (its columns: {_listed(header)}). Choose the "
                            f"{what} column among those ({flag}).")
        return chosen
    by_key = {_key(h): h for h in header if h != exclude}
    return next((by_key[n] for n in names if n in by_key), None)


def _columns_error(table: Path, header: list[str], missing: str) -> DataError:
    return DataError(f"Label file {table.name} has no recognisable columns: cannot tell {missing} (its columns: "
                     f"{_listed(header)}). Name the columns e.g. 'filename' and 'label', or choose them (Data page: "
                     "'File-name column' and 'Label column'; CLI: --file-column and --label-column).")


def _key(header: str) -> str:
    return re.sub(r"[\s\-]+", "_", header.strip().lower())


def _listed(header: list[str]) -> str:
    return ", ".join(f"'{h}'" for h in header) or "none"


def _split_value(value: str, table: Path, number: int, column: str) -> str | None:
    if not value:
        return None
    split = split_of_name(value)
    if split is None:
        raise DataError(f"{table.name} row {number}: the '{column}' column says '{value}', which is not a split. Use "
                        "train, val or test (or leave it empty to let the workbench split the image), or ignore the "
                        "column (--split-column -).")
    return split


# --- reading the table --------------------------------------------------------------------------------------------


def _read_table(path: Path) -> tuple[list[str], list[list[str]], str]:
    """(header, rows, delimiter)."""
    try:
        text = path.read_text(encoding="utf-8-sig", errors="replace")
    except OSError as e:
        raise DataError(f"Cannot read label file '{path}': {e.strerror}.") from None
    delimiter = "\t" if path.suffix.lower() == ".tsv" else _sniff(text)
    rows = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if any(cell.strip() for cell in row)]
    if not rows:
        raise DataError(f"Label file '{path.name}' is empty. Give it a header row (e.g. filename,label) and one row "
                        "per image.")
    if len(rows) > MAX_ROWS:
        raise DataError(f"Label file '{path.name}' has {len(rows):,} rows, more than the {MAX_ROWS:,} allowed.")
    return [h.strip() for h in rows[0]], rows[1:], delimiter


def _sniff(text: str) -> str:
    try:
        return csv.Sniffer().sniff(text[:8192], delimiters=",;\t|").delimiter
    except csv.Error:
        return ","


def _cell(row: list[str], column: int | None) -> str:
    return row[column].strip() if column is not None and column < len(row) else ""


class _FileIndex:
    """Finds the file a row names: by its path from the dataset folder or from any folder below, with or without
    the extension; a name that fits several files finds none."""

    def __init__(self, root: Path, files: list[Path]):
        self.keys: dict[str, list[Path]] = defaultdict(list)
        for path in files:
            parts = PurePosixPath(path.relative_to(root).as_posix()).parts
            for start in range(len(parts)):
                tail = "/".join(parts[start:])
                self.keys[tail].append(path)
                self.keys[str(PurePosixPath(tail).with_suffix(""))].append(path)

    def find(self, name: str) -> tuple[Path | None, int]:
        """(the file, 1), or (None, how many files the name fits: 0 or several)."""
        name = name.replace("\\", "/").strip().lstrip("/")
        while name.startswith("./"):
            name = name[2:]
        matches = list(dict.fromkeys(self.keys.get(name, [])))
        return (matches[0], 1) if len(matches) == 1 else (None, len(matches))
