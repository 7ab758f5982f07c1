"""Run configuration: one typed dataclass, validated once, serialised into every run directory, driving the CLI."""

from __future__ import annotations

import dataclasses
import importlib.util
import os
import re
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

import torch

from workbench.core.fields import help_field as _help
from workbench.data import AUGMENTATIONS, DataSpec
from workbench.strategies import DEFAULT_STRATEGY, get_strategy

# Training the backbone on a laptop CPU at 224 px is slow; 160 px does it in about half the time for a few points of
# accuracy. A strategy that leaves the backbone frozen runs it once per image, so it keeps the native size: on four
# real photo datasets a lite0 linear probe scored 2.5-5 points higher at 224 px than at 160, for 1.3-1.6x the time.
CPU_IMAGE_SIZE = 160
RUNS_DIR_ENV = "WORKBENCH_RUNS_DIR"
# Measured with bench/bench_compile.py (bench/README.md): off by default, since a run of the default length does not
# win back the compile on the CPU we measured, and no GPU has been measured yet.
COMPILE_HELP = ("Compile the model with torch.compile: its training batches, or its feature pass when only the head "
                "trains; the first batch waits for the compile. On 2 CPU cores (lite0, batch 32) the feature pass ran "
                "1.7x faster after a 50 s compile (worth it from about 4,600 images; from about 650 when compiled "
                "before), the training step 0.8x (slower) after 145 s.")
SCHEDULES = ("cosine", "onecycle", "constant")


@dataclass
class RunConfig:
    """Everything that defines a training run. Fields left as None are filled by `resolved()`."""

    data: str = field(**_help("Image folder (one subfolder per class, optionally inside train/ and val/) or .zip."))
    backbone: str = field(default="tf_efficientnet_lite0", **_help("Any timm model name."))
    strategy: str = field(default=DEFAULT_STRATEGY, **_help("Transfer strategy (see `workbench strategies`)."))
    freeze_depth: int | None = field(default=None, **_help("Layer groups frozen from the stem up (partial)."))
    epochs: int | None = field(default=None, **_help("Passes over the training images (default: per strategy)."))
    lr: float | None = field(default=None, **_help("Peak learning rate (default: per strategy)."))
    batch_size: int = field(default=32, **_help("Images per optimisation step; lower it if memory runs out."))
    image_size: int | None = field(default=None, **_help("Square input size in pixels (default: model/device)."))
    augment: str = field(default="light", **_help(f"Augmentation preset: {', '.join(AUGMENTATIONS)}."))
    val_fraction: float = field(default=0.2, **_help("Share of each class held out when there is no val/ folder."))
    test_fraction: float = field(default=0.0, **_help("Share of each class held out for the final test when the data "
                                                      "has no test/ folder (0: no test set)."))
    val_folder: str = field(default="", **_help("Folder to validate on, if not recognised (e.g. holdout; '-': none)."))
    test_folder: str = field(default="", **_help("Folder held out for the final test, if not recognised ('-': "
                                                 "none)."))
    label_file: str = field(default="", **_help("CSV/TSV label file in the dataset folder (default: recognised)."))
    file_column: str = field(default="", **_help("Label-file column with the image file names (default: "
                                                 "recognised)."))
    label_column: str = field(default="", **_help("Label-file column with the labels (default: recognised)."))
    split_column: str = field(default="", **_help("Label-file column saying train/val/test (default: recognised; "
                                                  "'-': ignore)."))
    seed: int = field(default=0, **_help("Random seed for the split, init and batch order."))
    weights: str = field(default="auto", **_help("'auto' (best available), 'none' (random), or a weights file."))
    device: str = field(default="auto", **_help("'auto', 'cpu', 'cuda' (any GPU) or 'cuda:N' (GPU number N)."))
    weight_decay: float = field(default=0.01, **_help("AdamW weight decay (not applied to biases and norms)."))
    warmup_epochs: float = field(default=0.5, **_help("Linear LR warmup before the cosine decay, in epochs."))
    schedule: str = field(default="cosine", **_help(f"Learning-rate schedule: {', '.join(SCHEDULES)}."))
    patience: int = field(default=0, **_help("Early stopping: epochs without a better val loss (0: off). "
                                             "The best epoch's weights are kept."))
    compile: bool = field(default=False, **_help(COMPILE_HELP))
    runs_dir: str | None = field(default=None, **_help(f"Where runs are written (default: ${RUNS_DIR_ENV} or ./runs)."))
    options: Any = field(default=None, **_help("The strategy's own settings: an instance of its `Options` dataclass "
                                               "(a dict, or None for its defaults, is turned into one)."))

    def __post_init__(self) -> None:
        strategy = get_strategy(self.strategy)  # raises with the list of names
        self.options = strategy.make_options(self.options)  # the strategy's own checks, in its Options dataclass
        if self.augment not in AUGMENTATIONS:
            raise ValueError(f"Unknown --augment '{self.augment}'. Choose one of: {', '.join(AUGMENTATIONS)}.")
        if not 0.0 < self.val_fraction < 1.0:
            raise ValueError(f"--val-fraction must be between 0 and 1 (exclusive), got {self.val_fraction}.")
        if not 0.0 <= self.test_fraction < 1.0 or self.val_fraction + self.test_fraction >= 0.9:
            raise ValueError(f"--test-fraction must be 0 (no test set) or more, and --val-fraction plus "
                             f"--test-fraction must leave at least 10% for training; got {self.test_fraction}.")
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
        if self.patience < 0:
            raise ValueError("--patience must be 0 or more.")
        strategy.check(self)
        if self.device not in ("auto", "cpu", "cuda") and not re.fullmatch(r"cuda:\d+", self.device):
            raise ValueError(f"--device must be auto, cpu, cuda or cuda:N (a GPU's number), got '{self.device}'.")
        if not strategy.pretrained and self.weights == "auto":
            self.weights = "none"

    def resolved(self, native_image_size: int) -> RunConfig:
        """A copy with every default filled in for this strategy, model and device."""
        strategy = get_strategy(self.strategy)
        device = self.torch_device()
        image_size = self.image_size
        if image_size is None:
            small = device.type == "cpu" and strategy.trains_backbone(self)
            image_size = min(native_image_size, CPU_IMAGE_SIZE) if small else native_image_size
        return dataclasses.replace(self, **{
            "epochs": self.epochs or strategy.default_epochs,
            "lr": self.lr or strategy.default_lr,
            "image_size": image_size,
            "device": str(device),  # "cuda:1" on the GPU it was given, so the record says which one
            "runs_dir": str(self.runs_path()),
            **strategy.resolve(self),
        })

    def compile_problem(self) -> str | None:
        """Why `compile` cannot work on this config's device here (what torch.compile needs is missing), or None."""
        if not self.compile:
            return None
        if self.torch_device().type == "cuda":
            if importlib.util.find_spec("triton") is None:
                return "--compile on a GPU needs the triton package (pip install triton); or train without --compile."
            return None
        try:
            from torch._inductor.cpp_builder import get_cpp_compiler
            get_cpp_compiler()
        except Exception as error:  # noqa: BLE001 - any failure to find one means the same to the user
            return (f"--compile on the CPU needs a C++ compiler, and none was found ({error}). Install one (e.g. "
                    "apt-get install g++) or train without --compile.")
        return None

    def data_spec(self) -> DataSpec:
        """What decides the run's images and their split (see `DataSpec.open`)."""
        return DataSpec.from_values(self.to_dict())

    def torch_device(self) -> torch.device:
        """The device this config trains on, here. Checked when asked, not when the config is built, so a record of
        a GPU run still reads back on a machine without one."""
        if self.device == "auto":
            return torch.device("cuda" if torch.cuda.is_available() else "cpu")
        if self.device.startswith("cuda") and not torch.cuda.is_available():
            raise ValueError(f"--device {self.device} was asked for but no CUDA GPU is visible. Use --device auto or "
                             "cpu.")
        device = torch.device(self.device)
        if device.index is not None and device.index >= torch.cuda.device_count():
            raise ValueError(f"--device {self.device}: this computer has {torch.cuda.device_count()} GPU(s), numbered "
                             f"from 0. Use --device cuda to take any free one.")
        return device

    def runs_path(self) -> Path:
        return Path(self.runs_dir or os.environ.get(RUNS_DIR_ENV) or "runs")

    def to_dict(self) -> dict:
        """Flat, as config.json and the pages keep it: the strategy's options sit beside the common fields."""
        common = {f.name: getattr(self, f.name) for f in fields(self) if f.name != "options"}
        return {**common, **dataclasses.asdict(self.options)}

    @classmethod
    def from_dict(cls, values: dict) -> RunConfig:
        """The inverse of `to_dict`: keys that are neither a common field nor one of the strategy's options are
        ignored (the facts config.json records beside the config; other strategies' options in older records)."""
        common = {f.name for f in fields(cls)} - {"options"}
        options = {k: v for k, v in values.items() if k not in common}
        return cls(**{k: v for k, v in values.items() if k in common}, options=options)
