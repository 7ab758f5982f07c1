"""Compression of a trained run's model: magnitude pruning and int8 quantisation, each variant measured honestly.

`compress_run(CompressConfig(run=DIR, ...))` builds the variants asked for, saves each under
`<run_dir>/compressed/<variant>/`, then loads every saved file back and measures it: validation accuracy on the run's
own validation images (preprocessed exactly as in training, via `predict.Predictor`), size on disk (and zipped),
CPU latency per image, share of zero weights, and how its confusion matrix differs from the original's. The
trade-off table lands in `<run_dir>/compressed/report.json`.

- Pruning uses `torch.nn.utils.prune`: global unstructured L1 magnitude pruning over every convolution and linear
  weight, or L2 structured pruning of whole output channels layer by layer; the masks are made permanent
  (`prune.remove`) before saving. An optional short fine-tune keeps the masks fixed (pruned weights stay zero).
- Quantisation uses torch's int8 CPU kernels (`torch.ao.quantization`): dynamic (weights of linear layers in int8,
  activations quantised on the fly) and static (weights and activations in int8, activation ranges calibrated on
  training images, FX graph mode). torch marks `torch.ao.quantization` deprecated in favour of torchao, whose CPU
  int8 path needs torch.compile to run fast; the eager kernels here are what gives a measurable int8 model on a
  laptop CPU today, so the deprecation warnings are silenced around these calls only.
- Quantised models are saved as a state_dict (`torch.save`) and read back with `torch.load(weights_only=True)` into
  the same int8 structure rebuilt from the backbone name: nothing is unpickled.
"""

from __future__ import annotations

import contextlib
import copy
import dataclasses
import io
import json
import shutil
import tempfile
import time
import warnings
import zipfile
import zlib
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import timm
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from torch.nn.utils import prune
from torch.utils.data import DataLoader

from workbench import runs
from workbench.core.errors import StopRequested
from workbench.core.fields import help_field as _help
from workbench.core.latency import latency
from workbench.core.metrics import confusion_matrix
from workbench.data import AUGMENTATIONS, CachedImages, ImageCache, ImageDataset, Sample
from workbench.models.heads import attach_task_heads, tasks_of
from workbench.models.trained import Predictor, resize_size
from workbench.runs.jobs import Reporter

COMPRESSED_DIR = "compressed"
REPORT_FILE = "report.json"
QUANTIZED_FILE = "model.int8.pt"
QUANTIZATIONS = ("dynamic", "static")
FINETUNE_AUGMENT = "light"  # mild crops and flips: the fine-tune only repairs what pruning broke
EVAL_BATCH = 32


@dataclass(frozen=True)
class Technique:
    name: str
    title: str
    explanation: str
    """One plain-language paragraph a teacher could read aloud."""


TECHNIQUES: dict[str, Technique] = {t.name: t for t in [
    Technique("unstructured", "Magnitude pruning (unstructured)",
              "The smallest weights of the whole network, by absolute value, are set to zero: at 50% sparsity half "
              "of all convolution and linear weights become zero. Most trained networks have many weights close to "
              "zero that barely matter, so accuracy often survives surprisingly high sparsity. The file keeps its "
              "size (the zeros are still stored), but it compresses much better, and sparse-aware hardware can "
              "skip the zeros; a normal CPU does not, so latency stays the same."),
    Technique("structured", "Channel pruning (structured)",
              "Instead of single weights, whole output channels (filters) with the smallest L2 norm are zeroed, the "
              "same share in every layer. A zeroed channel is a feature the layer no longer computes, which is what "
              "would make a network genuinely smaller and faster once the channel is cut out, but it hurts accuracy "
              "more than unstructured pruning at the same sparsity. Here channels are zeroed, not cut out: cutting "
              "means rewiring every layer that reads them (normalisation, residual additions), which "
              "torch.nn.utils.prune does not do."),
    Technique("finetune", "Fine-tuning after pruning",
              "A few epochs of training on the run's training images after pruning, with the pruned weights held "
              "at zero. The remaining weights adjust to make up for the ones removed, which usually wins back most "
              "of the accuracy lost at high sparsity."),
    Technique("dynamic", "Dynamic int8 quantisation",
              "The weights of linear (fully connected) layers are stored as 8-bit integers instead of 32-bit floats, "
              "four times smaller, and each input is converted to 8 bits on the fly when it arrives. It needs no "
              "data and no preparation. Transformers, which are mostly linear layers, shrink about four times; a "
              "convolutional network keeps its convolutions in float and barely changes."),
    Technique("static", "Static int8 quantisation",
              "Weights and activations of convolutions and linear layers both become 8-bit integers. The ranges of "
              "the activations are measured once on a calibration set of training images, so the model needs a "
              "few images before it can be converted. The whole model is about four times smaller; whether it is "
              "faster depends on the CPU's int8 support and on the layers (depthwise convolutions are often slow "
              "in int8). It needs the model as a traceable graph, which not every architecture allows."),
]}


@dataclass
class CompressConfig:
    """What to build from a finished run. Validated once; the CLI's options carry the same help."""

    run: str = field(**_help("The finished run to compress (its directory, runs/<run id>)."))
    sparsities: tuple[float, ...] = field(default=(0.5, 0.9), **_help(
        "Shares of weights set to zero, one pruned variant each (e.g. 0.5,0.9). Empty: no pruning."))
    structured: bool = field(default=False, **_help(
        "Also prune whole output channels (smallest L2 norm, each layer) at every sparsity."))
    finetune_epochs: int = field(default=0, **_help(
        "Epochs of fine-tuning after pruning, pruned weights held at zero (0: none)."))
    finetune_lr: float = field(default=1e-4, **_help("Learning rate of that fine-tuning (AdamW)."))
    quantize: tuple[str, ...] = field(default=QUANTIZATIONS, **_help(
        "int8 quantisations to build: dynamic, static (comma-separated; empty: none)."))
    calibration_images: int = field(default=64, **_help("Training images used to calibrate static int8."))
    latency_repeats: int = field(default=20, **_help("Timed single-image forwards per model; the median is kept."))
    latency_threads: int = field(default=1, **_help(
        "CPU threads while timing latency (1 gives figures that hold on a busy machine)."))

    def __post_init__(self) -> None:
        self.sparsities = tuple(float(s) for s in self.sparsities)
        self.quantize = tuple(self.quantize)
        for s in self.sparsities:
            if not 0.0 < s < 1.0:
                raise ValueError(f"--sparsity values must be between 0 and 1 (exclusive), got {s}. "
                                 "Use e.g. 0.5 for half of the weights.")
        unknown = [q for q in self.quantize if q not in QUANTIZATIONS]
        if unknown:
            raise ValueError(f"Unknown --quantize '{','.join(unknown)}'. Choose from: {', '.join(QUANTIZATIONS)}.")
        if self.structured and not self.sparsities:
            raise ValueError("--structured prunes at the --sparsity values: give at least one.")
        if self.finetune_epochs < 0 or self.finetune_lr <= 0:
            raise ValueError("--finetune-epochs must be 0 or more and --finetune-lr positive.")
        if self.calibration_images < 1 or self.latency_repeats < 1 or self.latency_threads < 1:
            raise ValueError("--calibration-images, --latency-repeats and --latency-threads must be at least 1.")
        if not self.sparsities and not self.quantize:
            raise ValueError("Nothing to build: give --sparsity values, --quantize kinds, or both.")

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)


def config_help(name: str) -> str:
    """The one-line help of a CompressConfig field (the CLI's option text)."""
    return next(f.metadata["help"] for f in dataclasses.fields(CompressConfig) if f.name == name)


# ---------------------------------------------------------------------------------------------------------------
# Pruning


def prunable_layers(model: torch.nn.Module) -> list[tuple[str, torch.nn.Module]]:
    """Every convolution and linear layer but the classifier (name, module): what pruning works on. The classifier
    stays whole: its weights are few and small, so a network-wide threshold would zero all of them (every image
    would get the same answer), and its output rows are the classes themselves."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    return [(name, m) for name, m in model.named_modules()
            if isinstance(m, torch.nn.Conv2d | torch.nn.Linear) and m is not head]


def prunable_weight_names(model: torch.nn.Module) -> list[str]:
    return [f"{name}.weight" for name, _ in prunable_layers(model)]


def prune_unstructured(model: torch.nn.Module, amount: float) -> str:
    """Global L1 pruning: the `amount` smallest weights of all conv and linear layers together become zero."""
    layers = prunable_layers(model)
    prune.global_unstructured([(m, "weight") for _, m in layers], pruning_method=prune.L1Unstructured, amount=amount)
    return (f"{amount:.0%} of the weights of {len(layers)} convolution and linear layers, the smallest in the whole "
            "network, set to zero (the classifier is kept whole).")


def structured_layers(model: torch.nn.Module) -> tuple[list[tuple[str, torch.nn.Module]], int]:
    """The layers whose output channels can be pruned, and how many depthwise convolutions were left out."""
    chosen, depthwise = [], 0
    for name, m in prunable_layers(model):
        if isinstance(m, torch.nn.Conv2d) and m.groups > 1:
            depthwise += 1
        else:
            chosen.append((name, m))
    return chosen, depthwise


def prune_structured(model: torch.nn.Module, amount: float) -> str:
    """L2 channel pruning: in every eligible layer, the `amount` share of output channels with the smallest norm."""
    layers, depthwise = structured_layers(model)
    if not layers:
        raise ValueError("this model has no convolution or linear layer whose output channels can be pruned")
    for _, m in layers:
        prune.ln_structured(m, "weight", amount=amount, n=2, dim=0)
    left_out = ["the classifier (its outputs are the classes)"]
    if depthwise:
        left_out.append(f"{depthwise} depthwise convolutions (each of their channels belongs to one input channel "
                        "and goes when the layer before drops it)")
    note = (f"{amount:.0%} of the output channels (smallest L2 norm) zeroed in each of {len(layers)} layers; "
            f"left out: {' and '.join(left_out)}.")
    return note + (" Channels are zeroed, not cut out: tensors keep their shapes, so latency does not change and "
                   "the file shrinks only when compressed.")


def make_permanent(model: torch.nn.Module) -> None:
    """Fold each pruning mask into its weight (prune.remove), leaving plain parameters that are zero where pruned."""
    for _, m in prunable_layers(model):
        if prune.is_pruned(m) and hasattr(m, "weight_orig"):
            prune.remove(m, "weight")


def zero_fraction(state: dict[str, torch.Tensor], names: list[str]) -> float:
    """Share of exact zeros among the named tensors, counted in the weights as given (e.g. read back from disk)."""
    zeros = sum(int((state[n] == 0).sum()) for n in names)
    total = sum(state[n].numel() for n in names)
    return zeros / total if total else 0.0


def zeroed_channel_fraction(weight: torch.Tensor) -> float:
    """Share of output channels (dim 0) whose weights are all zero."""
    return float((weight.flatten(1).abs().sum(1) == 0).float().mean())


# ---------------------------------------------------------------------------------------------------------------
# Quantisation


@contextlib.contextmanager
def _quiet_quantization() -> Iterator[None]:
    # torch.ao.quantization warns on every call that it is deprecated (see the module docstring for why it is used).
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", DeprecationWarning)
        warnings.filterwarnings("ignore", message=".*quantize_per_tensor.*")
        warnings.filterwarnings("ignore", message=".*must run observer before calling calculate_qparams.*")
        warnings.filterwarnings("ignore", message=".*reduce_range will be deprecated.*")
        warnings.filterwarnings("ignore", message=".*TypedStorage is deprecated.*")  # reading int8 tensors back
        yield


def quantized_engine() -> str:
    """The int8 kernel library used on this CPU: x86 (fbgemm + oneDNN) where available, else fbgemm or qnnpack."""
    supported = torch.backends.quantized.supported_engines
    engine = next((e for e in ("x86", "fbgemm", "qnnpack") if e in supported), None)
    if engine is None:
        raise RuntimeError(f"this build of torch has no int8 CPU kernels (engines: {supported})")
    torch.backends.quantized.engine = engine
    return engine


def quantize_dynamic(model: torch.nn.Module) -> torch.nn.Module:
    quantized_engine()
    with _quiet_quantization():
        return torch.ao.quantization.quantize_dynamic(model, {torch.nn.Linear}, dtype=torch.qint8)


def static_padding(model: torch.nn.Module, image_size: int) -> torch.nn.Module:
    """Replace timm's TensorFlow-style 'same' convolutions (padding computed from the input size at every call, which
    FX cannot trace) by a fixed zero padding + plain convolution, exact for inputs of `image_size`."""
    from timm.layers import Conv2dSame
    from timm.layers.padding import pad_same_arg

    sizes: dict[str, list[int]] = {}
    same = {name: m for name, m in model.named_modules() if isinstance(m, Conv2dSame)}
    if not same:
        return model
    hooks = [m.register_forward_pre_hook(lambda _m, inputs, n=name: sizes.__setitem__(n, list(inputs[0].shape[-2:])))
             for name, m in same.items()]
    with torch.no_grad():
        model(torch.zeros(1, 3, image_size, image_size))
    for hook in hooks:
        hook.remove()
    for name, m in same.items():
        conv = torch.nn.Conv2d(m.in_channels, m.out_channels, m.kernel_size, m.stride, 0, m.dilation, m.groups,
                               m.bias is not None)
        conv.load_state_dict(m.state_dict())
        padded = torch.nn.Sequential(torch.nn.ZeroPad2d(pad_same_arg(sizes[name], m.kernel_size, m.stride,
                                                                      m.dilation)), conv)
        parent, _, child = name.rpartition(".")
        setattr(model.get_submodule(parent) if parent else model, child, padded)
    return model


def prepare_static(model: torch.nn.Module, image_size: int) -> torch.nn.Module:
    """The model with observers inserted (FX graph mode, the engine's default int8 recipe), ready to calibrate."""
    from torch.ao.quantization import get_default_qconfig_mapping
    from torch.ao.quantization.quantize_fx import prepare_fx

    engine = quantized_engine()
    example = (torch.zeros(1, 3, image_size, image_size),)
    with _quiet_quantization():
        return prepare_fx(static_padding(model.eval(), image_size), get_default_qconfig_mapping(engine), example)


def convert_static(prepared: torch.nn.Module) -> torch.nn.Module:
    from torch.ao.quantization.quantize_fx import convert_fx

    with _quiet_quantization():
        return convert_fx(prepared)


def static_failure(error: Exception, backbone: str) -> str:
    """Why static int8 could not be built for this model, in plain words."""
    if type(error).__name__ == "TraceError":
        return (f"Static int8 needs the model as a graph, and torch.fx could not trace {backbone}: its forward makes "
                "Python decisions from the input (for example checking the image size), which a traced graph "
                "cannot hold. Dynamic int8 works for it.")
    return f"Static int8 could not be built for {backbone} on this CPU ({type(error).__name__}: {error})."


def linear_share(model: torch.nn.Module) -> float:
    """Share of the model's weights that sit in linear layers (what dynamic int8 converts)."""
    linear = sum(m.weight.numel() for m in model.modules() if isinstance(m, torch.nn.Linear))
    return linear / max(1, sum(p.numel() for p in model.parameters()))


# ---------------------------------------------------------------------------------------------------------------
# Saving and loading variants


def save_quantized(variant_dir: Path, model: torch.nn.Module, info: dict) -> Path:
    path = variant_dir / QUANTIZED_FILE
    with runs.replacing(path) as tmp:
        torch.save(model.state_dict(), tmp)
    runs.write_json(variant_dir / runs.MODEL_INFO_FILE, info)
    return path


def load_variant(variant_dir: str | Path) -> tuple[torch.nn.Module, dict]:
    """A saved variant back as a model in eval mode, with its model.json. Quantised ones are rebuilt as the same
    int8 structure and filled from the file with `torch.load(weights_only=True)`."""
    variant_dir = Path(variant_dir)
    info = json.loads((variant_dir / runs.MODEL_INFO_FILE).read_text())
    kind = info.get("compression", {}).get("quantization")
    if kind is None:
        return runs.load_model(variant_dir).model, info
    model = timm.create_model(info["backbone"], pretrained=False, num_classes=len(info["class_names"])).eval()
    attach_task_heads(model, tasks_of(info))  # a multi-task model's extra heads, quantised like the rest
    rebuild = quantize_dynamic if kind == "dynamic" else lambda m: convert_static(prepare_static(m, info["image_size"]))
    model = rebuild(model)
    with _quiet_quantization():
        state = torch.load(variant_dir / QUANTIZED_FILE, map_location="cpu", weights_only=True)
    model.load_state_dict(state)
    return model.eval(), info


def model_file(variant_dir: Path) -> Path:
    quantized = variant_dir / QUANTIZED_FILE
    return quantized if quantized.exists() else variant_dir / runs.MODEL_FILE


def zipped_bytes(path: Path) -> int:
    """Size after deflate compression (what a zip of the file takes): where pruning's zeros show up on disk."""
    return len(zlib.compress(path.read_bytes(), 6))


def variant_zip(variant_dir: str | Path) -> bytes:
    """The variant's weights and model.json as one zip, for a download."""
    variant_dir = Path(variant_dir)
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name in (model_file(variant_dir).name, runs.MODEL_INFO_FILE):
            zf.write(variant_dir / name, name)
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Measuring


class Evaluation:
    """The run's validation images, preprocessed once as training evaluated them (uint8, then normalised per batch),
    and the original model's answers on them, against which each variant is compared."""

    def __init__(self, predictor: Predictor, samples: list[Sample], cache: ImageCache):
        self.predictor = predictor
        self.images = torch.stack([predictor.crop(cache.get(s.path)) for s in samples])
        self.targets = torch.tensor([s.label for s in samples])
        self.num_classes = len(predictor.class_names)

    def batches(self) -> Iterator[torch.Tensor]:
        for start in range(0, len(self.images), EVAL_BATCH):
            yield self.predictor.normalize(self.images[start:start + EVAL_BATCH])

    def one_image(self) -> torch.Tensor:
        return self.predictor.normalize(self.images[:1])

    @torch.inference_mode()
    def predictions(self, model: torch.nn.Module) -> torch.Tensor:
        return torch.cat([model(batch).float().argmax(1) for batch in self.batches()])


def measure(model: torch.nn.Module, path: Path, evaluation: Evaluation, config: CompressConfig,
            reference: torch.Tensor | None) -> dict:
    """Accuracy, confusion matrix, agreement with the reference predictions, size and latency of a loaded model."""
    preds = evaluation.predictions(model)
    matrix = confusion_matrix(evaluation.targets, preds, evaluation.num_classes)
    return {
        "val_accuracy": round(float((preds == evaluation.targets).float().mean()), 5),
        "confusion_matrix": matrix,
        "changed_predictions": None if reference is None else int((preds != reference).sum()),
        "size_bytes": path.stat().st_size,
        "zipped_bytes": zipped_bytes(path),
        **latency(model, evaluation.one_image(), config.latency_repeats, config.latency_threads),
        "_preds": preds,
    }


# ---------------------------------------------------------------------------------------------------------------
# Fine-tuning with fixed masks


def finetune(model: torch.nn.Module, train: list[Sample], cache: ImageCache, info: dict, config: CompressConfig,
             reporter: Reporter, label: str, seed: int = 0) -> None:
    """A few epochs of AdamW on the training images. The pruning masks are still attached (weight = weight_orig *
    mask at every forward), so pruned weights stay zero whatever the gradients do."""
    predictor = Predictor(model, info["class_names"], info)  # the run's normalisation, channels_last
    transform = AUGMENTATIONS[FINETUNE_AUGMENT].train_transform(info["image_size"])
    batch_size = 32
    loader = DataLoader(CachedImages(train, cache, transform), batch_size=batch_size, shuffle=True,
                        generator=torch.Generator().manual_seed(seed), drop_last=len(train) % batch_size == 1)
    optimizer = torch.optim.AdamW([p for p in model.parameters() if p.requires_grad], lr=config.finetune_lr,
                                  weight_decay=0.0)
    model.train()
    steps = config.finetune_epochs * len(loader)
    for epoch in range(config.finetune_epochs):
        for index, (images, labels) in enumerate(loader):
            reporter.progress(f"{label}: fine-tuning, epoch {epoch + 1} of {config.finetune_epochs}",
                              (epoch * len(loader) + index) / max(1, steps))
            loss = F.cross_entropy(model(predictor.normalize(images)), labels)
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    model.eval()


# ---------------------------------------------------------------------------------------------------------------
# The whole trade-off


@contextlib.contextmanager
def run_dataset(run_dir: str | Path) -> Iterator[ImageDataset]:
    """The run's dataset split again exactly as the run split it (a zip is extracted for as long as the context)."""
    split = runs.load_run(run_dir).split
    if split is None:
        raise ValueError(f"Run '{Path(run_dir).name}' has no recorded dataset (an imported model): compression "
                         "measures accuracy on the run's validation images, so it needs a run trained here.")
    with tempfile.TemporaryDirectory(prefix="workbench-compress-") as scratch:
        yield split.open(extract_to=Path(scratch) / "data")


@dataclass
class Plan:
    name: str
    kind: str  # unstructured | structured | dynamic | static
    sparsity: float | None = None


def plans(config: CompressConfig) -> list[Plan]:
    """The variants to build, in the order they are built and listed."""
    pruned = [Plan(f"pruned-{round(s * 100)}", "unstructured", s) for s in config.sparsities]
    channels = [Plan(f"channels-{round(s * 100)}", "structured", s) for s in config.sparsities] \
        if config.structured else []
    quantized = [Plan(f"int8-{q}", q) for q in config.quantize]
    return pruned + channels + quantized


class _Builder:
    """Builds, saves, reloads and measures the variants of one run."""

    def __init__(self, config: CompressConfig, reporter: Reporter, dataset: ImageDataset):
        self.config, self.reporter, self.dataset = config, reporter, dataset
        self.run_dir = Path(config.run)
        self.out = self.run_dir / COMPRESSED_DIR
        self.original = runs.load_model(self.run_dir)
        self.info = self.original.info
        self.backbone = self.info["backbone"]
        # every image is decoded once, as training decodes it, and shared by evaluation, fine-tuning and calibration
        self.cache = ImageCache(resize_size(self.info))
        self.evaluation = Evaluation(Predictor(self.original.model, self.original.class_names, self.info),
                                     dataset.val, self.cache)
        self.weight_names = prunable_weight_names(self.original.model)
        self.reference: torch.Tensor | None = None
        self.reference_matrix: list[list[int]] | None = None

    def fresh_model(self) -> torch.nn.Module:
        return copy.deepcopy(self.original.model).to(memory_format=torch.contiguous_format).eval()

    def measure_original(self) -> dict:
        self.reporter.progress("original: measuring", 0.0)
        path = self.run_dir / runs.MODEL_FILE
        row = measure(self.original.model, path, self.evaluation, self.config, None)
        self.reference, self.reference_matrix = row.pop("_preds"), row["confusion_matrix"]
        state = load_file(str(path))
        return {"name": "original", "kind": "original", "status": "ok", "file": str(path.relative_to(self.run_dir)),
                "sparsity": round(zero_fraction(state, self.weight_names), 5), "finetune_epochs": 0,
                "note": f"The trained model as saved by the run ({self.backbone}, float32).", **row,
                "confusion_difference": [[0] * len(r) for r in row["confusion_matrix"]]}

    def build(self, plan: Plan, fraction: float) -> dict:
        self.reporter.progress(f"{plan.name}: building", fraction)
        variant_dir = self.out / plan.name
        shutil.rmtree(variant_dir, ignore_errors=True)
        variant_dir.mkdir(parents=True)
        started = time.perf_counter()
        try:
            note, path, finetuned = self._make(plan, variant_dir)
        except StopRequested:
            shutil.rmtree(variant_dir, ignore_errors=True)
            raise
        except Exception as error:  # noqa: BLE001 - one variant failing must not lose the others
            shutil.rmtree(variant_dir, ignore_errors=True)
            reason = static_failure(error, self.backbone) if plan.kind == "static" else \
                f"{plan.name} could not be built for {self.backbone}: {type(error).__name__}: {error}"
            return {"name": plan.name, "kind": plan.kind, "status": "failed", "note": reason, "error": str(error)}
        self.reporter.progress(f"{plan.name}: measuring the saved file", fraction)
        model, _ = load_variant(variant_dir)
        row = measure(model, path, self.evaluation, self.config, self.reference)
        row.pop("_preds")
        sparsity = None
        if plan.kind in ("unstructured", "structured"):
            sparsity = round(zero_fraction(load_file(str(path)), self.weight_names), 5)
        result = {"name": plan.name, "kind": plan.kind, "status": "ok", "file": str(path.relative_to(self.run_dir)),
                  "sparsity": sparsity, "target_sparsity": plan.sparsity, "finetune_epochs": finetuned,
                  "note": note, "build_seconds": round(time.perf_counter() - started, 2), **row,
                  "confusion_difference": (np.asarray(row["confusion_matrix"])
                                           - np.asarray(self.reference_matrix)).tolist()}
        runs.write_json(variant_dir / "variant.json", result)
        return result

    def _make(self, plan: Plan, variant_dir: Path) -> tuple[str, Path, int]:
        model = self.fresh_model()
        info = {**self.info, "compression": {"variant": plan.name, "kind": plan.kind, "source_run": self.run_dir.name}}
        if plan.kind in ("unstructured", "structured"):
            prune_fn = prune_unstructured if plan.kind == "unstructured" else prune_structured
            note = prune_fn(model, plan.sparsity)
            if self.config.finetune_epochs:
                finetune(model, self.dataset.train, self.cache, self.info, self.config, self.reporter, plan.name)
                note += f" Then fine-tuned for {self.config.finetune_epochs} epoch(s), pruned weights held at zero."
            make_permanent(model)
            info["compression"]["finetune_epochs"] = self.config.finetune_epochs
            runs.save_run_model(variant_dir, model, info)
            return note, variant_dir / runs.MODEL_FILE, self.config.finetune_epochs
        info["compression"].update(quantization=plan.kind, engine=quantized_engine())
        if plan.kind == "dynamic":
            share = linear_share(model)
            model = quantize_dynamic(model)
            note = (f"Linear layers in int8 ({share:.1%} of the weights); convolutions and everything else stay "
                    "float32.")
        else:
            model = self._static(model)
            note = (f"Convolutions and linear layers in int8, activation ranges calibrated on "
                    f"{min(self.config.calibration_images, len(self.dataset.train))} training images "
                    f"({info['compression']['engine']} kernels).")
        return note, save_quantized(variant_dir, model, info), 0

    @torch.inference_mode()
    def _static(self, model: torch.nn.Module) -> torch.nn.Module:
        prepared = prepare_static(model, self.info["image_size"])
        # a seeded sample of training images, seen as in evaluation: calibration measures typical activations
        generator = torch.Generator().manual_seed(0)
        order = torch.randperm(len(self.dataset.train), generator=generator)[:self.config.calibration_images]
        samples = [self.dataset.train[i] for i in order.tolist()]
        predictor = self.evaluation.predictor
        for start in range(0, len(samples), EVAL_BATCH):
            images = torch.stack([predictor.crop(self.cache.get(s.path)) for s in samples[start:start + EVAL_BATCH]])
            prepared(predictor.normalize(images).contiguous())
        return convert_static(prepared)


def compress_run(config: CompressConfig, reporter: Reporter | None = None) -> dict:
    """Build every variant `config` asks for, measure each from its saved file next to the original, and write the
    trade-off report to `<run_dir>/compressed/report.json`. A variant that cannot be built is listed as failed with
    the reason; the others go on. Raises FileNotFoundError / ValueError for a run that cannot be compressed."""
    reporter = reporter or Reporter()
    run_dir = Path(config.run)
    record = runs.load_run(run_dir)
    if not record.has_model:
        raise FileNotFoundError(f"Run '{record.id}' has no saved model to compress (it may have failed before the "
                                "end). Pick a finished run.")
    todo = plans(config)
    started = time.perf_counter()
    with run_dataset(run_dir) as dataset:
        builder = _Builder(config, reporter, dataset)
        variants = [builder.measure_original()]
        for index, plan in enumerate(todo):
            variants.append(builder.build(plan, (index + 1) / (len(todo) + 1)))
    report = {
        "run_id": record.id,
        "backbone": builder.backbone,
        "class_names": builder.original.class_names,
        "image_size": builder.info["image_size"],
        "recorded_val_accuracy": record.summary.val_accuracy if record.summary else None,
        "val_images": len(builder.evaluation.targets),
        "settings": config.to_dict(),
        "latency": f"median of {config.latency_repeats} single-image forwards on the CPU, {config.latency_threads} "
                   f"thread(s), after 3 untimed ones: wall clock, and CPU time of the thread (robust to load)",
        "torch": torch.__version__,
        "created": time.strftime("%Y-%m-%d %H:%M:%S"),
        "seconds": round(time.perf_counter() - started, 1),
        "variants": variants,
    }
    runs.write_json(builder.out / REPORT_FILE, report)
    reporter.progress("done", 1.0)
    return report


def read_report(run_dir: str | Path) -> dict | None:
    """The latest compression report of a run, if it has one."""
    path = Path(run_dir) / COMPRESSED_DIR / REPORT_FILE
    return json.loads(path.read_text()) if path.exists() else None


def progress_printer() -> Callable[[str, float | None], None]:
    """A progress callback for the CLI: one line each time the message changes."""
    last = [""]

    def show(message: str, fraction: float | None) -> None:
        if message != last[0]:
            print(f"· {message}", flush=True)
            last[0] = message

    return show
