"""Few-shot prototypes and the data-efficiency curve: "how many photos do I need?".

Prototypes (the ProtoNet idea, Snell et al. 2017, without any training): a frozen pretrained backbone turns each
image into a feature vector; a class's prototype is the mean of its k example vectors; a new image belongs to the
class whose prototype is nearest. Features and prototypes are L2-normalised and compared by cosine similarity: a
pretrained network's feature norms vary with contrast and with how much of the image the object fills, while their
direction carries what the object is, so comparing directions is the robust choice. (On unit vectors the squared
Euclidean distance ProtoNet uses is 2 - 2 cos, so the two rank classes identically.)

A prototype classifier is a linear head: logits = f . p_c = |f| cos(f, p_c), whose largest entry is the nearest
prototype. So it is saved as an ordinary run (the backbone with the normalised prototypes as its classifier's
weights, no bias): it appears on Compare, predicts on Predict, exports and compresses like any trained run.

Prototypes run the backbone once per image, so they use its native input size on every device unless a size is
chosen (the CPU's smaller training default exists for strategies that run the backbone on every image every epoch).

The data-efficiency curve: for k in (1, 2, 5, 10, all) training images per class, the validation accuracy of
prototypes, a linear probe, partial fine-tuning and training from scratch, all on one fixed validation split; and,
given a meta-trained run (`strategies.protonet`), prototypes on that run's backbone instead of the pretrained one. Each
k-shot training set is a folder of links (`train/<class>/...` with k images, `val/<class>/...` with the fixed
validation images), trained through the normal engine (`train.Run`). The k images of a class are the first k of one
seeded shuffle, so the 2-shot set contains the 1-shot set and so on: the curve measures more data, not other data.
"""

from __future__ import annotations

import copy
import dataclasses
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import torch
import torch.nn.functional as F

from workbench import runs
from workbench.core.errors import StopRequested
from workbench.core.fields import help_field as _help
from workbench.core.metrics import confusion_matrix, per_class_report
from workbench.core.normalize import Normalizer
from workbench.data import ImageCache, ImageDataset, Sample, eval_transform, open_dataset
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.models.backbones import create_backbone, data_config
from workbench.models.trained import load_model
from workbench.runs.jobs import Reporter
from workbench.runs.records import RunRecord, load_run
from workbench.runs.registry import planned_config
from workbench.strategies import STRATEGIES
from workbench.strategies.protonet import ProtoNet, class_prototypes

PROTOTYPES = "prototypes"
META_PROTOTYPES = "meta_prototypes"
"""The curve's extra line when given a meta-trained run: prototypes on that run's backbone."""
TRAINED_METHODS = ("linear_probe", "partial", "scratch")
METHODS = (PROTOTYPES, *TRAINED_METHODS)
ALL = "all"
DEFAULT_SHOTS = (1, 2, 5, 10, ALL)
CURVES_DIR = "data-efficiency"
CURVE_FILE = "curve.json"
FEATURE_BATCH = 32

PROTOTYPES_EXPLANATION = (
    "No training at all. The pretrained network looks at the few example images of each class and turns each into a "
    "list of numbers describing what it sees (a feature vector); the average of a class's vectors is its prototype. "
    "A new image gets the class whose prototype points most nearly in the same direction as its own vector. With a "
    "good pretrained network this works from a single example per class and takes seconds, which is why it is the "
    "first thing to try when you only have a handful of photos.")


META_PROTOTYPES_EXPLANATION = (
    "Prototypes again, without any training on these images, but on a backbone that was meta-trained (a "
    "prototypical-networks run) to make prototypes work from few examples. If that run practised on the very classes "
    "of this curve, it has already seen all their training images, so its line says what those images taught, not "
    "how few images suffice; its held-out classes are the fair test.")


def method_explanation(name: str) -> str:
    """The plain-language paragraph for a curve method (the trained ones are the strategies' own)."""
    if name == META_PROTOTYPES:
        return META_PROTOTYPES_EXPLANATION
    return PROTOTYPES_EXPLANATION if name == PROTOTYPES else STRATEGIES[name].explanation


def method_title(name: str) -> str:
    if name == META_PROTOTYPES:
        return "Prototypes on a meta-trained backbone"
    return "Prototypes (nearest class mean)" if name == PROTOTYPES else STRATEGIES[name].title


# ---------------------------------------------------------------------------------------------------------------
# Features and prototypes


@dataclass
class FeatureBank:
    """Frozen pretrained features of a dataset's images, computed once; prototypes for any k are then instant."""

    data: str
    backbone: str
    image_size: int
    class_names: list[str]
    weights: dict  # WeightsSource.to_dict()
    train: list[Sample]
    train_features: torch.Tensor  # [len(train), D], L2-normalised
    val: list[Sample]
    val_features: torch.Tensor  # [len(val), D], L2-normalised
    val_fraction: float  # with `seed`: how the dataset was split, so a saved run's validation images can be found again
    seed: int
    model: torch.nn.Module = field(repr=False)  # the backbone, to save a prototype run with
    model_info: dict = field(repr=False)  # model.json of such a run: preprocessing as the features were made
    seconds: float = 0.0

    @property
    def train_labels(self) -> torch.Tensor:
        return torch.tensor([s.label for s in self.train])

    @property
    def val_labels(self) -> torch.Tensor:
        return torch.tensor([s.label for s in self.val])

    def shots_available(self) -> int:
        """The most images per class every class can give (the largest k that is really k for all)."""
        return min(sum(1 for s in self.train if s.label == c) for c in range(len(self.class_names)))


def resolved_image_size(backbone: str, image_size: int | None, strategy: str | None = None) -> int:
    """The image size a run of `strategy` (the default one if None) would use for this backbone on this device."""
    chosen = {"strategy": strategy} if strategy else {}
    return planned_config(RunConfig(data="", backbone=backbone, image_size=image_size, **chosen)).image_size


def native_image_size(model: torch.nn.Module) -> int:
    """The input size the backbone's pretrained weights were made for (224 px for tf_efficientnet_lite0)."""
    return data_config(model)["input_size"][-1]


@torch.inference_mode()
def _features(model: torch.nn.Module, samples: Sequence[Sample], cache: ImageCache, crop, normalize: Normalizer,
              reporter: Reporter, label: str) -> torch.Tensor:
    feats = []
    for start in range(0, len(samples), FEATURE_BATCH):
        reporter.progress(f"extracting {label} features: {start} of {len(samples)} images", start / len(samples))
        batch = torch.stack([crop(cache.get(s.path)) for s in samples[start:start + FEATURE_BATCH]])
        pooled = model.forward_head(model.forward_features(normalize(batch)), pre_logits=True)
        feats.append(F.normalize(pooled.float(), dim=1))
    return torch.cat(feats) if feats else torch.empty(0)


def feature_bank(data: str | Path, backbone: str = "tf_efficientnet_lite0", image_size: int | None = None,
                 weights: str = "auto", val_fraction: float = 0.2, seed: int = 0,
                 train_samples: Sequence[Sample] | None = None, reporter: Reporter | None = None) -> FeatureBank:
    """Features of the dataset's validation images and of its training images (or only `train_samples`), from the
    frozen backbone with its best pretrained weights at `image_size` (default: its native size), preprocessed
    exactly as training evaluates images."""
    started = time.perf_counter()
    dataset = open_dataset(data, val_fraction, seed)
    model, source = create_backbone(backbone, len(dataset.class_names), weights)
    cfg = data_config(model)
    size = image_size or native_image_size(model)
    info = {"backbone": backbone, "class_names": dataset.class_names, "image_size": size, "mean": list(cfg["mean"]),
            "std": list(cfg["std"]), "crop_pct": cfg.get("crop_pct", 0.875) or 0.875,
            "interpolation": cfg.get("interpolation", "bicubic")}
    bank = _bank(data, dataset, model, info, source.to_dict(), val_fraction, seed, train_samples, reporter)
    bank.seconds = round(time.perf_counter() - started, 2)
    return bank


def _bank(data: str | Path, dataset: ImageDataset, model: torch.nn.Module, info: dict, weights: dict,
          val_fraction: float, seed: int, train_samples: Sequence[Sample] | None = None,
          reporter: Reporter | None = None) -> FeatureBank:
    """The features of `dataset`'s images through `model`, preprocessed as `info` (a model.json) says."""
    reporter = reporter or Reporter()
    started = time.perf_counter()
    model.eval().to(memory_format=torch.channels_last)
    size = info["image_size"]
    cache = ImageCache(round(size / info["crop_pct"]))
    normalize = Normalizer(info["mean"], info["std"], torch.device("cpu"))
    train = list(train_samples) if train_samples is not None else dataset.train
    crop = eval_transform(size)
    return FeatureBank(
        data=str(data), backbone=info["backbone"], image_size=size, class_names=dataset.class_names,
        weights=weights, train=train,
        train_features=_features(model, train, cache, crop, normalize, reporter, "training"),
        val=dataset.val, val_features=_features(model, dataset.val, cache, crop, normalize, reporter, "validation"),
        val_fraction=val_fraction, seed=seed, model=model, model_info=info,
        seconds=round(time.perf_counter() - started, 2))


def meta_trained_runs(records: list[RunRecord]) -> list[RunRecord]:
    """Runs whose backbone was meta-trained for prototypes (finished, with a saved model), newest first."""
    return [r for r in records if r.strategy == ProtoNet.name and r.status == "finished" and r.has_model]


def meta_feature_bank(run_dir: str | Path, data: str | Path, val_fraction: float = 0.2, seed: int = 0,
                      reporter: Reporter | None = None) -> FeatureBank:
    """`feature_bank` of `data` through the backbone of a meta-trained run (at the run's image size and
    preprocessing). ValueError when that run trained on any of this split's validation images: its prototypes
    would then be scored on images the backbone learned from."""
    started = time.perf_counter()
    record = load_run(run_dir)
    dataset = open_dataset(data, val_fraction, seed)
    if record.split is not None:
        trained = {s.path.resolve() for s in record.split.open().train}
        seen = [s for s in dataset.val if s.path.resolve() in trained]
        if seen:
            raise ValueError(f"Run {record.id} meta-trained on {len(seen)} of this curve's validation images (e.g. "
                             f"{seen[0].path.name}): it split the data another way. Use the run's own seed and "
                             "validation share for the curve, or a run trained on other data.")
    loaded = load_model(run_dir)
    info = {**loaded.info, "class_names": dataset.class_names}
    bank = _bank(data, dataset, loaded.model, info, {"kind": "run", "pretrained": True, "detail": record.id,
                                                     "description": f"the backbone of run {record.id}"},
                 val_fraction, seed, reporter=reporter)
    bank.seconds = round(time.perf_counter() - started, 2)
    return bank


def sample_shots(train: Sequence[Sample], shots: int | str, seed: int = 0) -> list[Sample]:
    """k training images per class (all of a class's images if it has fewer, or for 'all'): the first k of one
    seeded shuffle per class, so smaller sets are contained in larger ones."""
    chosen = []
    for label in sorted({s.label for s in train}):
        mine = sorted((s for s in train if s.label == label), key=lambda s: str(s.path))
        order = torch.randperm(len(mine), generator=torch.Generator().manual_seed(seed + label)).tolist()
        k = len(mine) if shots == ALL else int(shots)
        chosen += [mine[i] for i in order[:k]]
    return chosen


def prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[num_classes, D]: each class's mean normalised feature, L2-normalised (the rule a prototypical-networks run
    meta-trains for). A class with no example gets a zero row."""
    return class_prototypes(features, labels, num_classes)


def cosine_scores(protos: torch.Tensor, features: torch.Tensor) -> torch.Tensor:
    """[N, num_classes] cosine similarity of each (normalised) feature to each prototype."""
    return F.normalize(features, dim=1) @ protos.T


@dataclass
class PrototypeResult:
    shots: int | str
    images_per_class: dict[str, int]
    val_accuracy: float
    confusion_matrix: list[list[int]]
    prototypes: torch.Tensor = field(repr=False)

    def to_dict(self) -> dict:
        return {"shots": self.shots, "images_per_class": self.images_per_class, "val_accuracy": self.val_accuracy,
                "confusion_matrix": self.confusion_matrix}


def evaluate_prototypes(bank: FeatureBank, shots: int | str, seed: int = 0) -> PrototypeResult:
    """Prototypes from `shots` training images per class of the bank, scored on its validation images (instant)."""
    chosen = sample_shots(bank.train, shots, seed)
    index = {id(s): i for i, s in enumerate(bank.train)}
    rows = torch.tensor([index[id(s)] for s in chosen], dtype=torch.long)
    num_classes = len(bank.class_names)
    protos = prototypes(bank.train_features[rows], bank.train_labels[rows], num_classes)
    preds = cosine_scores(protos, bank.val_features).argmax(1)
    targets = bank.val_labels
    counts = {name: sum(1 for s in chosen if s.label == c) for c, name in enumerate(bank.class_names)}
    return PrototypeResult(shots, counts, round(float((preds == targets).float().mean()), 5),
                           confusion_matrix(targets, preds, num_classes), protos)


def save_prototype_run(bank: FeatureBank, result: PrototypeResult, runs_dir: str | Path,
                       owner: str | None = None) -> Path:
    """Record prototypes as a finished run: the backbone with the prototypes as its classifier (see module doc),
    config.json, summary.json with accuracy and confusion matrix. Returns the run directory. `owner`: who saved it,
    on a classroom server."""
    head = bank.model.get_classifier()
    if not isinstance(head, torch.nn.Linear) or head.weight.shape != result.prototypes.shape:
        raise ValueError(f"{bank.backbone}'s classifier is not one linear layer on the pooled features, so "
                         "prototypes cannot be saved as its head. Pick a backbone such as tf_efficientnet_lite0.")
    run_dir = Path(runs_dir) / runs.new_run_id(PROTOTYPES, bank.backbone)
    run_dir.mkdir(parents=True)
    model = copy.deepcopy(bank.model)  # the bank's backbone stays as it is for the next k
    head = model.get_classifier()
    with torch.no_grad():
        head.weight.copy_(result.prototypes)
        if head.bias is not None:
            head.bias.zero_()
    runs.save_run_model(run_dir, model, bank.model_info)
    total = sum(p.numel() for p in model.parameters())
    runs.write_json(run_dir / runs.SUMMARY_FILE, {
        "status": "finished", "error": None, "hint": None, "val_accuracy": result.val_accuracy, "val_loss": None,
        "epochs_completed": 0, "class_names": bank.class_names, "confusion_matrix": result.confusion_matrix,
        "per_class": per_class_report(result.confusion_matrix, bank.class_names), "trainable_params": 0,
        "total_params": total, "pretrained": bank.weights, "train_seconds": bank.seconds, "device": "cpu",
        "shots": result.shots, "images_per_class": result.images_per_class,
    })
    # config.json last: a run directory is listed once it has one
    runs.write_json(run_dir / runs.CONFIG_FILE, {
        "data": bank.data, "backbone": bank.backbone, "strategy": PROTOTYPES, "shots": result.shots,
        "val_fraction": bank.val_fraction, "seed": bank.seed,
        "epochs": 0, "image_size": bank.image_size, "class_names": bank.class_names, "weights_source": bank.weights,
        "num_train": sum(result.images_per_class.values()), "num_val": len(bank.val), "trainable_params": 0,
        "total_params": total, "frozen_groups": None, "created": time.time(), **({"owner": owner} if owner else {}),
    })
    return run_dir


def prototype_run(data: str | Path, backbone: str, shots: int | str, runs_dir: str | Path,
                  image_size: int | None = None, weights: str = "auto", val_fraction: float = 0.2, seed: int = 0,
                  reporter: Reporter | None = None) -> tuple[Path, PrototypeResult]:
    """Prototypes from `shots` images per class (features of only those and the validation images), evaluated and
    saved as a run. Returns (run directory, result)."""
    dataset = open_dataset(data, val_fraction, seed)
    chosen = sample_shots(dataset.train, shots, seed)
    bank = feature_bank(data, backbone, image_size, weights, val_fraction, seed, chosen, reporter)
    result = evaluate_prototypes(bank, shots, seed)
    return save_prototype_run(bank, result, runs_dir), result


# ---------------------------------------------------------------------------------------------------------------
# k-shot folders


def _link(source: Path, dest: Path) -> None:
    try:
        os.symlink(source.resolve(), dest)
    except OSError:  # no symlinks here (some Windows setups, some mounts): a copy does the same job
        shutil.copy2(source, dest)


def kshot_folder(dataset: ImageDataset, shots: int | str, dest: Path, seed: int = 0) -> Path:
    """`dest/train/<class>/` with the k-shot sample and `dest/val/<class>/` with the dataset's own validation
    images (the same for every k), as links; the engine reads it as a folder with its own split."""
    shutil.rmtree(dest, ignore_errors=True)
    for split, samples in (("train", sample_shots(dataset.train, shots, seed)), ("val", dataset.val)):
        for name in dataset.class_names:
            (dest / split / name).mkdir(parents=True, exist_ok=True)
        for i, sample in enumerate(samples):
            # numbered: two images of a class can share a file name when they came from different subfolders
            _link(sample.path, dest / split / dataset.class_names[sample.label] / f"{i:05d}-{sample.path.name}")
    return dest


# ---------------------------------------------------------------------------------------------------------------
# The curve


@dataclass
class CurveConfig:
    """A data-efficiency curve: which shots, which methods, what budget. Validated once."""

    data: str = field(**_help("Image folder or .zip (one subfolder per class, optionally inside train/ and val/)."))
    backbone: str = field(default="tf_efficientnet_lite0", **_help("Any timm model name."))
    shots: tuple = field(default=DEFAULT_SHOTS, **_help("Training images per class, one point each ('all' too)."))
    methods: tuple[str, ...] = field(default=METHODS, **_help(f"Methods to compare: {', '.join(METHODS)}."))
    epochs: int = field(default=5, **_help("Epochs of every trained method (same budget for each)."))
    image_size: int | None = field(default=None, **_help("Square input size in pixels (default: the backbone's "
                                                         "native size for prototypes, as training for the others)."))
    seed: int = field(default=0, **_help("Seed of the validation split, the k-shot samples and training."))
    val_fraction: float = field(default=0.2, **_help("Share of each class held out when there is no val/ folder."))
    weights: str = field(default="auto", **_help("'auto' (best available pretrained weights) or a weights file."))
    runs_dir: str | None = field(default=None, **_help("Where the curve and its runs are written (default: runs)."))
    meta_run: str = field(default="", **_help("A meta-trained run's folder: adds prototypes on its backbone."))

    def __post_init__(self) -> None:
        self.shots = tuple(parse_shots(self.shots))
        self.methods = tuple(self.methods)
        unknown = [m for m in self.methods if m not in METHODS]
        if unknown or not self.methods:
            raise ValueError(f"Unknown --methods '{','.join(unknown)}'. Choose from: {', '.join(METHODS)}.")
        if self.epochs < 1:
            raise ValueError(f"--epochs must be at least 1, got {self.epochs}.")
        if self.meta_run and not Path(self.meta_run).is_dir():
            raise ValueError(f"--meta-run '{self.meta_run}' is not a run folder. Give the folder of a finished "
                             "prototypical-networks run (runs/<run id>).")

    def all_methods(self) -> tuple[str, ...]:
        """The methods measured: `methods`, then prototypes on the meta-trained backbone when there is a `meta_run`."""
        return (*self.methods, *([META_PROTOTYPES] if self.meta_run else []))

    def runs_path(self) -> Path:
        return RunConfig(data=self.data, runs_dir=self.runs_dir).runs_path()


def parse_shots(values) -> list[int | str]:
    """'1,2,5,all' or a sequence -> [1, 2, 5, 'all'], checked and in increasing order."""
    if isinstance(values, str):
        values = [v.strip() for v in values.split(",") if v.strip()]
    parsed: list[int | str] = []
    for value in values:
        if str(value).lower() == ALL:
            parsed.append(ALL)
            continue
        try:
            k = int(value)
        except ValueError:
            raise ValueError(f"--shots takes whole numbers of images per class or 'all', got '{value}'.") from None
        if k < 1:
            raise ValueError(f"--shots values must be at least 1, got {k}.")
        parsed.append(k)
    if not parsed:
        raise ValueError("--shots needs at least one value, e.g. 1,2,5,10,all.")
    numbers = sorted({v for v in parsed if v != ALL})
    return [*numbers, *([ALL] if ALL in parsed else [])]


def _train_point(config: CurveConfig, method: str, folder: Path, image_size: int | None, out: Path,
                 reporter: Reporter, label: str) -> dict:
    """One trained method on one k-shot folder, through the engine; StopRequested if the user stopped it."""
    run_config = RunConfig(data=str(folder), backbone=config.backbone, strategy=method, epochs=config.epochs,
                           image_size=image_size, seed=config.seed, weights=config.weights,
                           runs_dir=str(out / "runs"))
    run = Run(run_config)

    def listen(event) -> None:
        if reporter.stopping:
            run.stop()
        elif event.kind == "epoch_end":
            m = event.data["metrics"]
            reporter.progress(f"{label}: epoch {m['epoch']} of {config.epochs}, val accuracy {m['val_acc']:.0%}")

    run.subscribe(listen)
    run.run()
    if run.status == "stopped":
        raise StopRequested
    summary = run.summary or {}
    return {"val_accuracy": summary.get("val_accuracy"), "seconds": summary.get("train_seconds"),
            "run_id": run.id, "status": run.status, "error": run.error}


def data_efficiency(config: CurveConfig, reporter: Reporter | None = None) -> dict:
    """Accuracy of every method at every k on one fixed validation split. Each point is passed to
    `reporter.item` as soon as it is measured; the whole curve is written to `<runs_dir>/data-efficiency/<id>/
    curve.json` (after every point, so a stopped curve keeps what it measured) and returned."""
    reporter = reporter or Reporter()
    dataset = open_dataset(config.data, config.val_fraction, config.seed)
    methods = config.all_methods()
    banks = {}  # the feature banks of the prototype methods, computed once for every k
    if PROTOTYPES in methods:
        banks[PROTOTYPES] = feature_bank(config.data, config.backbone, config.image_size, config.weights,
                                         config.val_fraction, config.seed, reporter=reporter)
    if META_PROTOTYPES in methods:
        banks[META_PROTOTYPES] = meta_feature_bank(config.meta_run, config.data, config.val_fraction, config.seed,
                                                   reporter)
    sizes = {m: banks[m].image_size if m in banks else resolved_image_size(config.backbone, config.image_size, m)
             for m in methods}
    curve_id = f"{time.strftime('%Y%m%d-%H%M%S')}-{config.backbone}"
    out = config.runs_path() / CURVES_DIR / curve_id
    out.mkdir(parents=True)
    # image_size: the one size of every method when chosen, else the pretrained prototypes' (sizes: each method's)
    curve = {"id": curve_id, "data": config.data, "backbone": config.backbone,
             "image_size": config.image_size or next(iter(sizes.values())), "image_sizes": sizes,
             "epochs": config.epochs, "settings": {**dataclasses.asdict(config), "shots": list(config.shots)},
             "class_names": dataset.class_names, "chance": 1 / len(dataset.class_names),
             "val_images": len(dataset.val), "val_paths": sorted(str(s.path) for s in dataset.val), "points": [],
             "created": time.strftime("%Y-%m-%d %H:%M:%S")}
    todo = len(config.shots) * len(methods)
    for shots in config.shots:
        chosen = sample_shots(dataset.train, shots, config.seed)
        per_class = len(chosen) / len(dataset.class_names)
        folder = kshot_folder(dataset, shots, out / f"k-{shots}", config.seed)
        for method in methods:
            label = f"{method_title(method)}, {shots} per class"
            reporter.progress(label, len(curve["points"]) / todo)
            started = time.perf_counter()
            if method in banks:
                result = evaluate_prototypes(banks[method], shots, config.seed)
                measured = {"val_accuracy": result.val_accuracy, "seconds": round(time.perf_counter() - started, 3),
                            "run_id": None, "status": "finished", "error": None}
            else:
                measured = _train_point(config, method, folder, config.image_size, out, reporter, label)
            point = {"method": method, "shots": shots, "images_per_class": round(per_class, 2),
                     "train_images": len(chosen), "image_size": sizes[method], **measured}
            curve["points"].append(point)
            runs.write_json(out / CURVE_FILE, curve)
            reporter.item(point)
    return curve


def latest_curve(runs_dir: str | Path) -> dict | None:
    """The most recent data-efficiency curve recorded under `runs_dir` (finished or not), if any."""
    files = sorted(Path(runs_dir).glob(f"{CURVES_DIR}/*/{CURVE_FILE}"))
    return json.loads(files[-1].read_text()) if files else None


def kshot_counts(folder: Path) -> dict[str, dict[str, int]]:
    """split -> class -> number of images in a k-shot folder (what the engine will read)."""
    return {split: {c.name: len(list(c.iterdir())) for c in sorted((folder / split).iterdir())}
            for split in ("train", "val")}
