"""Run configuration: one typed dataclass, validated once, serialised into every run directory, driving the CLI."""

from __future__ import annotations

import os
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

import torch

from .data import AUGMENTATIONS
from .strategies import get_strategy

# On a laptop CPU 224 px is slow; 160 px keeps most of the accuracy at half the cost (and puts the first chart
# point of a linear probe on the sample data within seconds).
CPU_IMAGE_SIZE = 160
RUNS_DIR_ENV = "WORKBENCH_RUNS_DIR"
SCHEDULES = ("cosine", "onecycle", "constant")


def _help(text: str, **kwargs) -> dict:
    return {"metadata": {"help": text}, **kwargs}


@dataclass
class RunConfig:
    """Everything that defines a training run. Fields left as None are filled by `resolved()`."""

    data: str = field(**_help("Image folder (one subfolder per class, optionally inside train/ and val/) or .zip."))
    backbone: str = field(default="tf_efficientnet_lite0", **_help("Any timm model name."))
    strategy: str = field(default="linear_probe", **_help("Transfer strategy (see `workbench strategies`)."))
    freeze_depth: int | None = field(default=None, **_help("Layer groups frozen from the stem up (partial)."))
    epochs: int | None = field(default=None, **_help("Passes over the training images (default: per strategy)."))
    lr: float | None = field(default=None, **_help("Peak learning rate (default: per strategy)."))
    batch_size: int = field(default=32, **_help("Images per optimisation step; lower it if memory runs out."))
    image_size: int | None = field(default=None, **_help("Square input size in pixels (default: model/device)."))
    augment: str = field(default="light", **_help(f"Augmentation preset: {', '.join(AUGMENTATIONS)}."))
    val_fraction: float = field(default=0.2, **_help("Share of each class held out when there is no val/ folder."))
    seed: int = field(default=0, **_help("Random seed for the split, init and batch order."))
    weights: str = field(default="auto", **_help("'auto' (best available), 'none' (random), or a weights file."))
    device: str = field(default="auto", **_help("'auto', 'cpu' or 'cuda'."))
    weight_decay: float = field(default=0.01, **_help("AdamW weight decay (not applied to biases and norms)."))
    warmup_epochs: float = field(default=0.5, **_help("Linear LR warmup before the cosine decay, in epochs."))
    schedule: str = field(default="cosine", **_help(f"Learning-rate schedule: {', '.join(SCHEDULES)}."))
    patience: int = field(default=0, **_help("Early stopping: epochs without a better val loss (0: off). "
                                             "The best epoch's weights are kept."))
    epochs_per_phase: int = field(default=1, **_help("Gradual unfreezing: epochs before the next group unfreezes."))
    layer_decay: float = field(default=0.7, **_help("Discriminative LR: each group below the head gets this "
                                                    "factor times the LR of the group above it."))
    l2sp_alpha: float = field(default=0.1, **_help("L2-SP: pull of the backbone towards its pretrained weights."))
    l2sp_beta: float = field(default=0.01, **_help("L2-SP: plain L2 penalty on the new head."))
    bitfit_norms: bool = field(default=True, **_help("BitFit: also train the normalisation layers' scales."))
    teacher_run: str = field(default="", **_help("Distillation: the teacher, a finished run's directory or id "
                                                 "(same classes as --data)."))
    distill_alpha: float = field(default=0.7, **_help("Distillation: weight of matching the teacher (KL) against "
                                                      "the labels (1 - alpha)."))
    distill_temperature: float = field(default=4.0, **_help("Distillation: temperature T softening both models' "
                                                            "answers (1 = as they are)."))
    target_data: str = field(default="", **_help("DANN: target-domain images (folder or .zip); class subfolders, "
                                                 "if any, are used only to measure target accuracy."))
    runs_dir: str | None = field(default=None, **_help(f"Where runs are written (default: ${RUNS_DIR_ENV} or ./runs)."))

    def __post_init__(self) -> None:
        strategy = get_strategy(self.strategy)  # raises with the list of names
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"Unknown --augment '{self.augment}'. Choose one of: {', '.join(AUGMENTATIONS)}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be between 0 and 1 (exclusive), got {self.val_fraction}.")
        for name in ("epochs", "batch_size", "image_size"):
            value = getattr(self, name)
            if value is not None and value < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {value}.")
        if self.lr is not None and self.lr <= 0:
            raise ValueError(f"--lr must be positive, got {self.lr}.")
        if self.freeze_depth is not None and self.freeze_depth < 0:
            raise ValueError(f"--freeze-depth must be 0 or more, got {self.freeze_depth}.")
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Unknown --schedule '{self.schedule}'. Choose one of: {', '.join(SCHEDULES)}.")
        if self.patience < 0 or self.epochs_per_phase < 1:
            raise ValueError("--patience must be 0 or more and --epochs-per-phase at least 1.")
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"--layer-decay must be in (0, 1], got {self.layer_decay}.")
        if self.l2sp_alpha < 0 or self.l2sp_beta < 0:
            raise ValueError("--l2sp-alpha and --l2sp-beta must be 0 or more.")
        self._check_distill_and_dann()
        if self.device not in ("auto", "cpu", "cuda"):
            raise ValueError(f"--device must be auto, cpu or cuda, got '{self.device}'.")
        if self.device == "cuda" and not torch.cuda.is_available():
            raise ValueError("--device cuda was asked for but no CUDA GPU is visible. Use --device auto or cpu.")
        if not strategy.pretrained and self.weights == "auto":
            self.weights = "none"

    def _check_distill_and_dann(self) -> None:
        """Ranges only: whether the teacher run and the target images exist is checked when a run prepares."""
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ValueError(f"--distill-alpha must be between 0 and 1, got {self.distill_alpha}.")
        if self.distill_temperature <= 0:
            raise ValueError(f"--distill-temperature must be positive, got {self.distill_temperature}.")
        if self.strategy == "distill" and AUGMENTATIONS[self.augment].mixes_images:
            # the teacher's answers are cached per image; for a blend of two images there is no cached answer
            raise ValueError(f"--augment {self.augment} blends pairs of images, which distillation cannot use: the "
                             "teacher's answers are computed once per image. Choose none, light or standard.")

    def resolved(self, native_image_size: int) -> RunConfig:
        """A copy with every default filled in for this strategy, model and device."""
        strategy = get_strategy(self.strategy)
        device = self.torch_device()
        image_size = self.image_size
        if image_size is None:
            small = device.type == "cpu"
            image_size = min(native_image_size, CPU_IMAGE_SIZE) if small else native_image_size
        return RunConfig(**{
            **asdict(self),
            "epochs": self.epochs or strategy.default_epochs,
            "lr": self.lr or strategy.default_lr,
            # L2-SP replaces weight decay: decay would pull weights to zero, L2-SP pulls them to where they started
            "weight_decay": 0.0 if strategy.l2sp else self.weight_decay,
            "image_size": image_size,
            "device": device.type,
            "runs_dir": str(self.runs_path()),
        })

    def torch_device(self) -> torch.device:
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        return torch.device(self.device)

    def runs_path(self) -> Path:
        return Path(self.runs_dir or os.environ.get(RUNS_DIR_ENV) or "runs")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        known = {f.name for f in fields(cls)}
        return cls(**{k: v for k, v in values.items() if k in known})
