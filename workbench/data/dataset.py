"""A user's image folder (or .zip) made ready for transfer learning.

`open_dataset` recognises the layout (`layouts`, `labels`), checks every file once and reports what is wrong in plain
words (`HealthReport`), and splits the images into training, validation and (when asked or given) a held-out test
set; `ImageCache` decodes each image once into a small uint8 tensor; `AUGMENTATIONS` are the named training-time
presets the UI lists; `CachedImages` ties samples, cache and a transform into a torch Dataset.
"""

from __future__ import annotations

import dataclasses
import os
import random
import shutil
import tempfile
import threading
from collections import defaultdict
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.utils.data
from PIL import Image
from torchvision.transforms import v2

from workbench.data import labels
from workbench.data.images import IMAGE_EXTENSIONS, DataError, check_files, decode_resized
from workbench.data.layouts import (
    Candidate,
    Layout,
    LayoutChoice,
    SkippedFile,
    examples,
    folder_layout,
    require_trainable_classes,
    subfolders,
    tables,
    unwrap,
)
from workbench.data.zips import unpack_zip

STRONG_IMBALANCE_RATIO = 3.0
SPLITS = ("train", "val", "test")


@dataclass
class Sample:
    path: Path
    label: int
    split: str  # "train" | "val" | "test"


@dataclass
class HealthReport:
    class_names: list[str]
    counts: dict[str, dict[str, int]]
    """class -> {"train": n, "val": n, "test": n}, readable images only."""
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
    """True if the data brought its own validation images (a val/ folder, a split column)."""
    label_conflicts: list[list[str]] = field(default_factory=list)
    """The duplicate groups whose copies sit in different classes."""
    ignored_folders: list[str] = field(default_factory=list)
    """Top-level folders next to train/ and val/ that were not read (e.g. test/)."""
    case_conflicts: list[list[str]] = field(default_factory=list)
    """Class names that differ only in upper/lower case: two classes here, one folder on Windows and macOS."""
    layout: str = ""
    """One plain sentence: what was recognised and which images each split uses."""
    kind: str = ""
    """The layout recognised: "class folders", "split folders" or "label file"."""
    has_test: bool = False
    """True if a held-out test set was made (given by the data or split off with a test fraction)."""
    layout_problems: list[str] = field(default_factory=list)
    """Lines about the layout itself: an empty test folder, label-file rows naming no file, two labels for a file."""

    def problems(self) -> list[str]:
        """One plain-language line per problem: what is wrong and what to do about it."""
        return [
            *self.layout_problems,
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

    def in_split(self, split: str) -> int:
        """How many readable images the split holds (0 for a split older reports do not have)."""
        return sum(counts.get(split, 0) for counts in self.counts.values())

    def _skipped_problems(self) -> list[str]:
        if not self.skipped:
            return []
        shown = examples([f"{s.path} ({s.reason})" for s in self.skipped], sep="; ")
        return [f"{_plural(len(self.skipped), 'file')} skipped and not used: {shown}. Fix, convert or remove them."]

    def _split_problems(self) -> list[str]:
        lines = [f"Folder '{name}/' was not read: next to train/, only the val/ and test/ folders are used. Move its "
                 "images into those folders, or choose it as the validation or test folder."
                 for name in self.ignored_folders]
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
            lines.append(f"{_plural(len(self.leakage), 'image')} in both training and validation or test, e.g. "
                         f"{' = '.join(self.leakage[0])}: validation (or test) accuracy will look better than it "
                         "really is. Keep each image on one side only.")
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
    test: list[Sample] = field(default_factory=list)
    """The held-out test images: never used for training or any choice, only for the final test."""


def open_dataset(path: str | Path, val_fraction: float = 0.2, seed: int = 0, extract_to: Path | None = None, *,
                 test_fraction: float = 0.0, layout: LayoutChoice | None = None,
                 progress: Callable[[int, int], None] | None = None) -> ImageDataset:
    """A folder or a .zip in any layout `layouts` / `labels` recognise (or as `layout` says), checked and split.

    Images the data does not assign to a split are split per class, seeded by `seed`: `test_fraction` of each class
    is held out for the final test (only when the data has no test set of its own), `val_fraction` set aside for
    validation (when it has no validation images of its own), the rest trains. A zip is checked member by member
    before anything is written, then extracted into `extract_to` (a new or empty folder: extraction never overwrites
    a file; by default a fresh temporary folder, removed again if the dataset turns out unusable). `progress(done,
    total)` is called as files are checked.
    """
    if not 0 < val_fraction < 1:
        raise DataError(f"--val-fraction must be between 0 and 1, got {val_fraction}. Use e.g. 0.2 to keep 20% of "
                        "each class for validation.")
    if not 0 <= test_fraction < 1 or val_fraction + test_fraction >= 1:
        raise DataError(f"--test-fraction must be 0 (no test set) or more, and leave images for training with "
                        f"--val-fraction {val_fraction}; got {test_fraction}. Use e.g. 0.1 to hold out 10% of each "
                        "class for the final test.")
    choice = layout or LayoutChoice()
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"Dataset path '{source}' does not exist. Check the spelling, or give the folder that "
                        "holds one subfolder per class.")
    if source.is_dir():
        return _open_folder(source.absolute(), str(path), _Split(val_fraction, test_fraction, seed), choice, progress)
    if source.suffix.lower() != ".zip":
        raise DataError(f"'{source}' is a file, not a folder or a .zip. Give the dataset folder, or a .zip of it.")
    return _open_zip(source, str(path), _Split(val_fraction, test_fraction, seed), choice, progress, extract_to)


@dataclass(frozen=True)
class DataSpec:
    """Everything that decides which images a run trains, validates and tests on: open it again and the split is
    exactly the same."""

    data: str
    val_fraction: float = 0.2
    seed: int = 0
    test_fraction: float = 0.0
    layout: LayoutChoice = field(default_factory=LayoutChoice)

    @classmethod
    def from_values(cls, values: dict) -> DataSpec:
        """From flat values such as a run's config.json (keys an older record lacks take their defaults)."""
        return cls(str(values["data"]), float(values.get("val_fraction") or 0.2), int(values.get("seed") or 0),
                   float(values.get("test_fraction") or 0.0), LayoutChoice.from_values(values))

    def open(self, extract_to: Path | None = None, progress: Callable[[int, int], None] | None = None
             ) -> ImageDataset:
        return open_dataset(self.data, self.val_fraction, self.seed, extract_to, test_fraction=self.test_fraction,
                            layout=self.layout, progress=progress)


@dataclass(frozen=True)
class _Split:
    val_fraction: float
    test_fraction: float
    seed: int


def recognise(folder: Path, choice: LayoutChoice | None = None) -> Layout:
    """How the dataset in `folder` is laid out (no file is opened): class folders, split folders or a label file.
    A label file is read when chosen, or when the folder has one and no class folders."""
    choice = choice or LayoutChoice()
    root = unwrap(folder)
    if choice.label_file:
        return labels.label_layout(root, choice)
    try:
        layout = folder_layout(root, choice)
    except DataError:
        if not tables(root):
            raise
        return labels.label_layout(root, choice)
    unused = [t.name for t in tables(root)]
    if unused:
        layout.problems.append(f"Label file(s) {', '.join(unused)} not used: the class folders give the labels. To use "
                               "a label file instead, choose it (Data page: 'Label file'; CLI: --label-file).")
    return layout


@dataclass
class LayoutOptions:
    """What can be chosen about a dataset folder's layout (the Data page's choices)."""

    folders: list[str]
    """Its top-level folders (after outer wrapper folders), any of which may be chosen for validation or test."""
    label_files: list[str]
    columns: list[str]
    """The columns of the chosen label file (or of the only one)."""


def layout_options(folder: str | Path, label_file: str = "") -> LayoutOptions:
    """The folders, label files and label-file columns a user may choose among for `folder` (not a zip). A label
    file that cannot be read offers no columns."""
    root = unwrap(Path(folder))
    offered = labels.label_tables(root)
    chosen = label_file if label_file in offered else (offered[0] if len(offered) == 1 else "")
    try:
        columns = labels.table_columns(root / chosen) if chosen else []
    except DataError:
        columns = []
    return LayoutOptions([f.name for f in subfolders(root)], offered, columns)


# --- zips ---------------------------------------------------------------------------------------------------------


def _open_zip(zip_path: Path, source: str, split: _Split, choice: LayoutChoice,
              progress: Callable[[int, int], None] | None, extract_to: Path | None) -> ImageDataset:
    target = Path(extract_to) if extract_to is not None else Path(tempfile.mkdtemp(prefix="workbench-zip-"))
    try:
        unpack_zip(zip_path, target)
        try:
            return _open_folder(target.absolute(), source, split, choice, progress)
        except DataError as e:
            raise DataError(f"In zip '{zip_path}': {e}") from None
    except BaseException:
        if extract_to is None:
            shutil.rmtree(target, ignore_errors=True)  # a failed open leaves no temporary copy behind
        raise


# --- checking, splitting and reporting ----------------------------------------------------------------------------


@dataclass
class _Checked:
    found: Candidate
    problem: str | None
    sha256: str | None


def _open_folder(folder: Path, source: str, split: _Split, choice: LayoutChoice,
                 progress: Callable[[int, int], None] | None) -> ImageDataset:
    layout = recognise(folder, choice)
    require_trainable_classes(layout)
    results = check_files([c.path for c in layout.found], progress)
    checked = [_Checked(c, problem, sha) for c, (problem, sha) in zip(layout.found, results, strict=True)]
    _require_readable_classes(layout, checked)
    readable = [c for c in checked if not c.problem]
    split_of = _assign_splits(readable, split, given=set(layout.given))
    samples = [Sample(c.found.path, layout.class_names.index(c.found.class_name), split_of[c.found.rel])
               for c in readable]
    by_split = {name: [s for s in samples if s.split == name] for name in SPLITS}
    return ImageDataset(
        root=layout.root,
        source=source,
        class_names=layout.class_names,
        train=by_split["train"],
        val=by_split["val"],
        test=by_split["test"],
        report=_health_report(layout, checked, split_of, split),
    )


def _require_readable_classes(layout: Layout, checked: list[_Checked]) -> None:
    for name in layout.class_names:
        mine = [c for c in checked if c.found.class_name == name]
        if all(c.problem for c in mine):
            why = examples([f"{c.found.rel} ({c.problem})" for c in mine], sep="; ")
            where = layout.class_folders.get(name)
            subject = f"Class folder '{where}'" if where else f"Class '{name}'"
            raise DataError(f"{subject} has no readable images: {why}. Add images "
                            f"({', '.join(sorted(IMAGE_EXTENSIONS))}) or remove the folder.")


def _assign_splits(readable: list[_Checked], split: _Split, given: set[str]) -> dict[str, str]:
    """rel path -> "train" | "val" | "test". Images the data puts in val or test keep their split; the rest (the
    data's own training images too, when something must be split off them) is split per class, seeded: first the
    test images (only if the data has none and a test fraction is asked for), then validation (only if the data has
    none), the rest trains."""
    need_test = "test" not in given and split.test_fraction > 0
    need_val = "val" not in given
    split_of, by_class = {}, defaultdict(list)
    for c in readable:
        if c.found.split in ("val", "test") or (c.found.split == "train" and not (need_val or need_test)):
            split_of[c.found.rel] = c.found.split
        else:
            by_class[c.found.class_name].append(c.found.rel)
    for rels in by_class.values():
        rels.sort()
        random.Random(split.seed).shuffle(rels)
        n = len(rels)
        n_test = 0 if not need_test or n < 3 else min(n - 2, max(1, round(n * split.test_fraction)))
        n_val = 0 if not need_val or n - n_test < 2 else min(n - n_test - 1, max(1, round(n * split.val_fraction)))
        for i, rel in enumerate(rels):
            split_of[rel] = "test" if i < n_test else "val" if i < n_test + n_val else "train"
    return split_of


def _health_report(layout: Layout, checked: list[_Checked], split_of: dict[str, str], split: _Split
                   ) -> HealthReport:
    readable = [c for c in checked if not c.problem]
    counts = {name: dict.fromkeys(SPLITS, 0) for name in layout.class_names}
    for c in readable:
        counts[c.found.class_name][split_of[c.found.rel]] += 1
    totals = {name: sum(split_counts.values()) for name, split_counts in counts.items()}
    by_hash: dict[str, list[Candidate]] = defaultdict(list)
    for c in readable:
        by_hash[c.sha256].append(c.found)
    groups = [group for group in by_hash.values() if len(group) > 1]
    skipped = layout.skipped + [SkippedFile(c.found.rel, c.problem) for c in checked if c.problem]
    return HealthReport(
        class_names=layout.class_names,
        counts=counts,
        skipped=sorted(skipped, key=lambda s: s.path),
        tiny_classes=[name for name, total in totals.items() if total < 2],
        duplicates=[[f.rel for f in g] for g in groups],
        leakage=[[f.rel for f in g] for g in groups if len({split_of[f.rel] for f in g}) > 1],
        imbalance_ratio=max(totals.values()) / max(min(totals.values()), 1),
        has_split="val" in layout.given,
        label_conflicts=[[f.rel for f in g] for g in groups if len({f.class_name for f in g}) > 1],
        ignored_folders=layout.ignored_folders,
        case_conflicts=_case_conflicts(layout.class_names),
        layout=layout.sentence(split.val_fraction, split.test_fraction),
        kind=layout.kind,
        has_test=any(s == "test" for s in split_of.values()),
        layout_problems=layout.problems,
    )


def _case_conflicts(class_names: list[str]) -> list[list[str]]:
    groups: dict[str, list[str]] = defaultdict(list)
    for name in class_names:
        groups[name.casefold()].append(name)
    return [names for names in groups.values() if len(names) > 1]


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
