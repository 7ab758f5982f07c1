"""The training engine: a `Run` trains one RunConfig in a background thread, emits events that any number of listeners
read, writes its record to disk as it goes, and can be stopped between batches."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import gc
import math
import random
import resource
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np
import timm.optim
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from . import runs
from .backbones import LayerGroup, WeightsSource, create_backbone, data_config, head_parameter_names, layer_groups
from .config import RunConfig
from .data import AUGMENTATIONS, CachedImages, ImageCache, ImageDataset, eval_transform, open_dataset
from .strategies import (
    Strategy,
    apply_freezing,
    apply_trainable,
    bitfit_parameter_names,
    check_freeze_depth,
    get_strategy,
    set_train_mode,
    trainable_parameter_count,
)

TERMINAL = ("finished", "stopped", "failed")
CHECKPOINT_SHARE = 0.1
"""Per-epoch checkpoints may take at most about this share of the training time (a linear probe's epochs on cached
features last milliseconds: those are checkpointed every few epochs, real training epochs every epoch)."""


class StopRequested(Exception):
    """Raised inside the loop when the user pressed Stop; the run ends cleanly and keeps what it learned."""


class Diverged(Exception):
    """The loss became NaN or infinite: training cannot recover, so the run ends and keeps its last good epoch."""


@dataclass
class Event:
    kind: str  # status | health | started | progress | epoch_start | batch | epoch_end | finished | stopped | failed
    data: dict
    time: float = field(default_factory=time.time)


@dataclass
class Prepared:
    """What a run needs before the first batch: data, model and their facts."""

    config: RunConfig  # resolved
    dataset: ImageDataset
    model: torch.nn.Module
    strategy: Strategy
    weights: WeightsSource
    frozen_groups: int
    data_cfg: dict
    groups: list[LayerGroup]
    objective: Objective | None = None  # a strategy's additions to the loop (distillation, domain adaptation)


class Objective:
    """What a strategy adds to the plain training loop: extra trainable modules, a different forward pass, extra
    loss terms and per-epoch metrics. Built while a run prepares (so bad input fails before anything is written);
    the base class adds nothing, and `distill` and `dann` override what they need."""

    indexed = False  # training batches carry each image's position in the training set as a third element

    def info(self) -> dict:
        """Facts for config.json (the teacher, the target images)."""
        return {}

    def setup(self, trainer: _Trainer) -> list[dict]:
        """Called once the images are decoded, before the first batch; returns extra optimizer parameter groups
        ({"params": ..., optionally "lr_scale": ...})."""
        return []

    def forward(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        return model(inputs)

    def loss(self, label_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
             extra: list[torch.Tensor]) -> torch.Tensor:
        """The loss to minimise, given cross-entropy against the labels; `extra` is what the batch carried."""
        return label_loss

    def epoch_metrics(self, trainer: _Trainer) -> dict:
        return {}

    def finish(self, trainer: _Trainer) -> None:
        """After the last epoch (with the weights that will be saved), before the summary is written."""

    def summary(self, final: dict) -> dict:
        """Extra summary.json entries; `final` is the evaluation of the saved weights."""
        return {}

    def close(self) -> None:
        """Release what `__init__` holds (temporary folders)."""


def make_objective(config: RunConfig, class_names: list[str]) -> Objective | None:
    """The strategy's objective, checking its inputs (the teacher run, the target images); None for the plain loop."""
    strategy = get_strategy(config.strategy)
    # imported here: both modules build on this one
    if strategy.distill:
        from .distill import DistillObjective
        return DistillObjective(config, class_names)
    if strategy.adapts_domain:
        from .dann import DannObjective
        return DannObjective(config, class_names)
    return None


# ---------------------------------------------------------------------------------------------------------------
# Small pure helpers


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, schedule: str = "cosine") -> float:
    """The learning rate at `step`.

    cosine: linear warmup to `peak`, then cosine decay to 1% of it. onecycle (Smith): the first 30% of steps rise
    from peak/25 to peak, the rest anneal to peak/10^4. constant: `peak` throughout.
    """
    if schedule == "constant":
        return peak
    if schedule == "onecycle":
        rise = max(1, int(0.3 * total_steps))
        if step < rise:
            return peak / 25 + (peak - peak / 25) * 0.5 * (1 - math.cos(math.pi * step / rise))
        progress = min(1.0, (step - rise) / max(1, total_steps - rise))
        return peak / 1e4 + (peak - peak / 1e4) * 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))


def confusion_matrix(targets: torch.Tensor, preds: torch.Tensor, num_classes: int) -> list[list[int]]:
    """Rows are true classes, columns predicted classes."""
    flat = targets * num_classes + preds
    counts = torch.bincount(flat, minlength=num_classes * num_classes)
    return counts.reshape(num_classes, num_classes).tolist()


def per_class_report(matrix: list[list[int]], class_names: list[str]) -> dict[str, dict[str, float]]:
    m = np.asarray(matrix, dtype=float)
    tp = np.diag(m)
    precision = np.divide(tp, m.sum(0), out=np.zeros_like(tp), where=m.sum(0) > 0)
    recall = np.divide(tp, m.sum(1), out=np.zeros_like(tp), where=m.sum(1) > 0)
    return {name: {"precision": float(p), "recall": float(r), "support": int(s)}
            for name, p, r, s in zip(class_names, precision, recall, m.sum(1), strict=False)}


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; whole process


def out_of_memory(error: BaseException) -> bool:
    """A GPU or CPU allocation failure (PyTorch raises a RuntimeError for the CPU one)."""
    text = str(error).lower()
    return (isinstance(error, torch.OutOfMemoryError | MemoryError) or "out of memory" in text
            or "can't allocate memory" in text)


def disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def describe_failure(error: BaseException, config: RunConfig | None = None) -> str:
    """The error in a sentence that says what happened, for the run record and the page."""
    detail = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    if out_of_memory(error) and config is not None:
        return f"Out of memory while training with batch size {config.batch_size} at {config.image_size} px ({detail})."
    if disk_full(error):
        return f"The disk is full: '{error.filename or 'a file'}' could not be written ({error.strerror})."
    if isinstance(error, Diverged):
        return str(error)
    return f"{type(error).__name__}: {error}"


def failure_hint(error: BaseException, config: RunConfig | None = None) -> str:
    """What to try, in plain words, for the failures people actually hit."""
    if out_of_memory(error):
        if config is not None and config.batch_size > 1:
            return (f"Train again with batch size {config.batch_size // 2} (or smaller images, or a smaller "
                    "backbone). The memory this run held has been given back, so the next run can start.")
        return "The model ran out of memory: lower the batch size or the image size, or pick a smaller backbone."
    if isinstance(error, Diverged):
        lower = f" (e.g. {config.lr / 10:.1g})" if config is not None and config.lr else ""
        return (f"Training diverged: the learning rate is probably too high. Train again with one about 10 times "
                f"lower{lower}, or let the learning-rate finder on the Model page (`python -m workbench lr-find`) "
                "suggest one.")
    if disk_full(error):
        return ("Free some disk space (for example delete runs you no longer need from the runs folder) and train "
                "again. Runs saved before are untouched.")
    return "See the error above; if it mentions a file, fix or remove that file and start again."


def release_memory(device: torch.device) -> None:
    """Give back what an ended run held, so the next one starts with the memory free: collect unreachable objects
    now rather than at some later collection, and on a GPU return the blocks PyTorch's allocator keeps cached (after
    an out-of-memory error they would otherwise stay reserved and the next run would fail too)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    _trim_heap()


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _trim_heap() -> None:
    """Hand the C heap's free pages back to the operating system. glibc keeps what a run freed (decoded images,
    activations) mapped in the process, so a server's memory would ratchet up run after run (about 80 MB over 50
    tiny runs in bench/bench_soak.py) although nothing leaks. Elsewhere than glibc there is nothing to do."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)


def build_optimizer(model: torch.nn.Module, config: RunConfig, strategy: Strategy) -> torch.optim.Optimizer:
    """AdamW over the parameters that require grad (so freezing needs no special case), no decay on biases and
    norms; for discriminative LRs, timm's layer_decay sets each group's `lr_scale`, which our schedule applies."""
    return timm.optim.create_optimizer_v2(model, opt="adamw", lr=config.lr, weight_decay=config.weight_decay,
                                          layer_decay=config.layer_decay if strategy.layer_decay else None)


def layer_learning_rates(model: torch.nn.Module, lr: float, layer_decay: float) -> list[dict]:
    """Peak learning rate per timm layer (stem first) under discriminative LRs: what the UI shows."""
    groups = timm.optim.param_groups_layer_decay(model, weight_decay=0.0, layer_decay=layer_decay)
    names = {id(p): n for n, p in model.named_parameters()}
    table: dict[float, dict] = {}
    for group in groups:
        scale = group["lr_scale"]
        row = table.setdefault(scale, {"lr": lr * scale, "lr_scale": scale, "params": 0, "first": None})
        row["params"] += sum(p.numel() for p in group["params"])
        row["first"] = row["first"] or names[id(group["params"][0])]
    return sorted(table.values(), key=lambda r: r["lr_scale"])


class Normalizer:
    """uint8 NCHW batch -> normalised float batch on the device, in channels_last (faster convolutions on CPU too)."""

    def __init__(self, mean, std, device: torch.device):
        self.mean = torch.tensor(mean, device=device).view(1, -1, 1, 1) * 255
        self.std = torch.tensor(std, device=device).view(1, -1, 1, 1) * 255
        self.device = device

    def __call__(self, images: torch.Tensor) -> torch.Tensor:
        images = images.to(self.device, non_blocking=True).float()
        return ((images - self.mean) / self.std).contiguous(memory_format=torch.channels_last)


class IndexedImages(CachedImages):
    """CachedImages whose items also carry their position in the training set: distillation looks up the
    teacher's cached answer for each image of a shuffled batch by it."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label = super().__getitem__(index)
        return image, label, index


# ---------------------------------------------------------------------------------------------------------------
# The run


class Run:
    """One training run. `start()` trains in a background thread; `run()` trains in the calling thread.

    Listeners (`subscribe`) are called from the training thread: they must not call UI code directly. Pollers read
    `events_since(i)`, `metrics`, `progress` and `status`, which are safe to read from any thread.
    """

    def __init__(self, config: RunConfig, run_id: str | None = None):
        self.config = config
        self.id = run_id or runs.new_run_id(config.strategy, config.backbone)
        self.dir = config.runs_path() / self.id
        self.status = "queued"
        self.phase = "waiting to start"
        self.error: str | None = None
        self.hint: str | None = None
        self.metrics: list[dict] = []
        self.batches: list[dict] = []
        self.progress: dict = {}
        self.summary: dict | None = None
        self.info: dict = {}  # facts known after preparation: classes, weights source, groups, resolved config
        self.health: dict | None = None
        self.created = time.time()
        self._events: list[Event] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- observing ----------------------------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def events_since(self, index: int) -> list[Event]:
        with self._lock:
            return self._events[index:]

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def stopping(self) -> bool:
        """Stop was asked for and the run has not ended yet."""
        return self._stop.is_set() and not self.done

    def wait(self, timeout: float | None = None) -> bool:
        finished = self._done.wait(timeout)
        if finished and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()  # let the worker unwind fully before the caller (maybe the interpreter) moves on
        return finished

    def _emit(self, kind: str, **data) -> None:
        event = Event(kind, data)
        with self._lock:
            self._events.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not kill the training
                traceback.print_exc()

    def _report_progress(self, progress: dict) -> None:
        """Progress of work that is not a training batch (decoding, feature extraction)."""
        self.progress = progress
        self._emit("progress", **progress)

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self._emit("status", phase=phase)

    # -- controlling --------------------------------------------------------------------------------------------
    def start(self) -> Run:
        self._thread = threading.Thread(target=self.run, name=f"run-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current batch."""
        self._stop.set()

    def cancel(self) -> None:
        """Mark a run that never started as stopped; nothing is written. The caller makes sure it will not start."""
        if self.status != "queued":
            raise RuntimeError(f"Run {self.id} has already started ({self.status}): use stop().")
        self._stop.set()
        self._finish_without_record("stopped", "Stopped before it started.")

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested

    def run(self) -> Run:
        """Train to the end (or until stopped / failed). Never raises: the outcome is in `status` and `summary`."""
        self.status = "preparing"
        try:
            prepared = self.prepare()
        except StopRequested:
            self._finish_without_record("stopped", "Stopped before training started.")
            return self
        except Exception as error:  # noqa: BLE001 - bad input is reported, nothing is written
            self._finish_without_record("failed", str(error), failure_hint(error))
            return self
        device = torch.device(prepared.config.device)
        self._train(prepared)
        del prepared  # the model and the decoded images: the last references, so release_memory can free them
        release_memory(device)
        return self

    def _finish_without_record(self, status: str, error: str, hint: str | None = None) -> None:
        self.status, self.error, self.hint = status, error, hint
        self.phase = status
        self._emit(status, error=error, hint=hint)
        self._done.set()

    # -- preparation: validate everything before writing anything -----------------------------------------------
    def prepare(self) -> Prepared:
        """Read the data, build the model and apply the strategy's freezing. Writes nothing; raises on bad input."""
        config = self.config
        strategy = get_strategy(config.strategy)
        seed_everything(config.seed)
        self._set_phase("reading the dataset")
        dataset = open_dataset(config.data, config.val_fraction, config.seed)
        self.health = dataset.report.to_dict()
        self._emit("health", report=self.health)
        self._check_stop()
        self._set_phase("loading the backbone")
        weights = "none" if not strategy.pretrained else config.weights
        model, source = create_backbone(config.backbone, len(dataset.class_names), weights)
        groups = layer_groups(model)
        frozen = strategy.frozen_groups(groups, config.freeze_depth, 1, config.epochs_per_phase)
        if strategy.uses_freeze_depth or (strategy.gradual and config.freeze_depth is not None):
            check_freeze_depth(config.freeze_depth if strategy.gradual else frozen, groups, config.backbone)
        if strategy.bitfit:
            apply_trainable(model, bitfit_parameter_names(model, head_parameter_names(model), config.bitfit_norms))
        else:
            apply_freezing(model, groups, frozen)
        cfg = data_config(model)
        resolved = config.resolved(native_image_size=cfg["input_size"][-1])
        objective = make_objective(resolved, dataset.class_names)
        trainable, total = trainable_parameter_count(model)
        self.info = {
            "run_id": self.id,
            "class_names": dataset.class_names,
            "num_train": len(dataset.train),
            "num_val": len(dataset.val),
            "weights_source": source.to_dict(),
            "layer_groups": [{"name": g.name, "num_params": g.num_params, "frozen": g.index < frozen}
                             for g in groups],
            "frozen_groups": frozen,
            "trainable_params": trainable,
            "total_params": total,
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
            "resolved": resolved.to_dict(),
            **(objective.info() if objective else {}),
        }
        return Prepared(resolved, dataset, model, strategy, source, frozen, cfg, groups, objective)

    # -- training -----------------------------------------------------------------------------------------------
    def _start_record(self, p: Prepared) -> None:
        """The run's folder: the live marker first, config.json (which makes the run listed) last."""
        self.dir.mkdir(parents=True, exist_ok=True)
        runs.mark_live(self.dir)
        runs.write_json(self.dir / runs.HEALTH_FILE, self.health or {})
        runs.write_json(self.dir / runs.CONFIG_FILE, {**p.config.to_dict(), **self.info, "created": self.created})

    def model_info(self, p: Prepared) -> dict:
        """model.json: what is needed to rebuild the trained model and prepare images for it."""
        return {
            "backbone": p.config.backbone, "class_names": p.dataset.class_names,
            "image_size": p.config.image_size, "mean": list(p.data_cfg["mean"]),
            "std": list(p.data_cfg["std"]), "crop_pct": p.data_cfg.get("crop_pct", 0.875),
            "interpolation": p.data_cfg.get("interpolation", "bicubic"),
        }

    def _train(self, p: Prepared) -> None:
        try:
            self._start_record(p)
        except OSError as e:  # e.g. a full disk: a run that cannot record its config is not kept at all
            shutil.rmtree(self.dir, ignore_errors=True)
            self._finish_without_record("failed", describe_failure(e, p.config), failure_hint(e, p.config))
            return
        device = torch.device(p.config.device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.status = "running"
        self._emit("started", info=self.info, run_dir=str(self.dir))
        started = time.perf_counter()
        status, error, hint = "finished", None, None
        trainer = _Trainer(self, p, device)
        try:
            trainer.fit()
        except StopRequested:
            status = "stopped"
        except Exception as e:  # noqa: BLE001 - the run record keeps the metrics and says why it stopped
            status, error, hint = "failed", describe_failure(e, p.config), failure_hint(e, p.config)
            if not isinstance(e, Diverged):
                traceback.print_exc()
        finally:
            if p.objective is not None:
                p.objective.close()
        self._write_summary(p, trainer, status, error, hint, time.perf_counter() - started, device)

    def _write_summary(self, p: Prepared, trainer: _Trainer, status: str, error: str | None, hint: str | None,
                       seconds: float, device: torch.device) -> None:
        try:
            if status != "failed":
                self._set_phase("saving the model")
                final = trainer.final_evaluation()
                runs.save_run_model(self.dir, p.model, self.model_info(p), final.get("epoch"))
            else:
                final = self._kept_metrics()
        except Exception as e:  # noqa: BLE001
            status, error, hint = "failed", describe_failure(e, p.config), failure_hint(e, p.config)
            final = self._kept_metrics()
        if status == "failed":
            kept = runs.saved_epoch(self.dir)
            hint = f"{hint} The model as it was after epoch {kept} is kept." if kept else hint
        matrix = final.get("confusion_matrix")
        last = self.metrics[-1] if self.metrics else {}
        trainable, total = trainable_parameter_count(p.model)
        self.summary = {
            "status": status,
            "error": error,
            "hint": hint,
            "val_accuracy": final.get("val_acc"),
            "val_loss": final.get("val_loss"),
            "epochs_completed": len(self.metrics),
            "best_epoch": final.get("epoch"),
            "class_names": p.dataset.class_names,
            "confusion_matrix": matrix,
            "per_class": per_class_report(matrix, p.dataset.class_names) if matrix else None,
            # gradual unfreezing changes these epoch by epoch: the record keeps where the run ended
            "trainable_params": last.get("trainable_params", self.info.get("trainable_params", trainable)),
            "frozen_groups": last.get("frozen_groups", p.frozen_groups),
            "total_params": total,
            "pretrained": p.weights.to_dict(),
            "train_seconds": round(seconds, 2),
            "feature_seconds": trainer.feature_seconds,
            "images_per_s": self._backbone_images_per_s(p, trainer),
            "peak_memory_mb": round(peak_memory_mb(device), 1),
            "device": device.type,
            **(p.objective.summary(final) if p.objective else {}),
        }
        try:
            runs.write_json(self.dir / runs.SUMMARY_FILE, self.summary)
        except OSError as e:  # a full disk: the run still ends, and says why; on disk it reads as interrupted
            status, error, hint = "failed", describe_failure(e, p.config), failure_hint(e, p.config)
            self.summary.update(status=status, error=error, hint=hint)
        finally:
            runs.clear_live(self.dir)
        self.status, self.error, self.hint, self.phase = status, error, hint, status
        self._emit(status, summary=self.summary, error=error, hint=hint)
        self._done.set()


    def _kept_metrics(self) -> dict:
        """The metrics of the epoch whose weights are saved (a failed run keeps its last checkpoint)."""
        epoch = runs.saved_epoch(self.dir)
        return next((m for m in self.metrics if m["epoch"] == epoch), {})

    def _backbone_images_per_s(self, p: Prepared, trainer: _Trainer) -> float | None:
        """Images per second through the backbone: the training epochs' mean, or for a linear probe its one
        feature-extraction pass (its head epochs run on cached features and say nothing about the backbone)."""
        if p.strategy.caches_features:
            images = len(p.dataset.train) + len(p.dataset.val)
            return round(images / trainer.feature_seconds, 2) if trainer.feature_seconds else None
        return _mean([m["images_per_s"] for m in self.metrics if m.get("images_per_s")])


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


class _Trainer:
    """The loops of one run; reports through the Run it belongs to."""

    def __init__(self, run: Run, p: Prepared, device: torch.device):
        self.run, self.p, self.device = run, p, device
        self.config = p.config
        self.model = p.model.to(device, memory_format=torch.channels_last)
        self.normalize = Normalizer(p.data_cfg["mean"], p.data_cfg["std"], device)
        crop_pct = p.data_cfg.get("crop_pct", 0.875) or 0.875
        self.cache = ImageCache(round(self.config.image_size / crop_pct))
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.num_classes = len(p.dataset.class_names)
        self.feature_seconds: float | None = None
        self.val_features: torch.Tensor | None = None
        # bf16 autocast on GPUs that have it: roughly doubles throughput; the CPU path stays fp32.
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        self.step = 0
        self.frozen_now = p.frozen_groups
        self.best: tuple[float, dict, dict] | None = None  # (val loss, metrics, weights) for early stopping
        self.restored_best = False
        self.mixup: timm.data.Mixup | None = None
        self.objective = p.objective
        self.total_steps = 0  # optimisation steps planned for the run (DANN's lambda follows its progress)
        self.checkpoint_seconds: float | None = None  # how long the last per-epoch checkpoint took to write
        self.checkpointed_at = 0.0

    # -- data ---------------------------------------------------------------------------------------------------
    def _decode_all(self) -> None:
        paths = [s.path for s in self.p.dataset.train + self.p.dataset.val]
        self.run._set_phase("decoding images")

        def progress(done: int, total: int) -> None:
            self.run._report_progress({"phase": "decoding images", "done": done, "total": total})
            self.run._check_stop()

        self.cache.warm(paths, progress)

    def _loader(self, samples, transform, shuffle: bool, indexed: bool = False) -> DataLoader:
        dataset = (IndexedImages if indexed else CachedImages)(samples, self.cache, transform)
        # Drop a last batch of 1: BatchNorm cannot train on a single image.
        drop_last = shuffle and len(samples) % self.config.batch_size == 1
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=shuffle, generator=self.generator,
                          drop_last=drop_last, pin_memory=self.device.type == "cuda")

    def fit(self) -> None:
        self._decode_all()
        if self.p.strategy.caches_features:
            self._fit_linear_probe()
        else:
            self._fit_backbone()

    # -- evaluation ---------------------------------------------------------------------------------------------
    @torch.inference_mode()
    def _predict(self, inputs, from_features: bool) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, targets) over the validation set."""
        self.model.eval()
        if from_features:
            features, targets = inputs
            return self.model.get_classifier()(features.to(self.device)).float().cpu(), targets
        return self.logits_of(self.p.dataset.val)

    @torch.inference_mode()
    def logits_of(self, samples) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) of `samples` through the model as it is now, seen as in evaluation."""
        self.model.eval()
        logits, targets = [], []
        for images, labels in self._loader(samples, eval_transform(self.config.image_size), False):
            with torch.autocast(**self.autocast):
                logits.append(self.model(self.normalize(images)).float().cpu())
            targets.append(labels)
        return torch.cat(logits), torch.cat(targets)

    def _evaluate(self) -> dict:
        from_features = self.val_features is not None
        inputs = (self.val_features, self.val_targets) if from_features else None
        logits, targets = self._predict(inputs, from_features)
        preds = logits.argmax(1)
        return {
            "val_loss": round(F.cross_entropy(logits, targets).item(), 5),
            "val_acc": round((preds == targets).float().mean().item(), 5),
            "confusion_matrix": confusion_matrix(targets, preds, self.num_classes),
        }

    def final_evaluation(self) -> dict:
        """Metrics of the weights being saved: the best epoch's (early stopping), the last epoch's, or fresh ones
        when stopped mid-epoch."""
        if self.restored_best:
            return self.best[1]
        if self.run.metrics and self.run.metrics[-1]["step"] == self.step:
            return self.run.metrics[-1]
        return self._evaluate() if self.step > 0 or self.val_features is not None else {}

    def _end_epoch(self, epoch: int, loss_sum: float, correct: int, seen: int, seconds: float, lr: float) -> None:
        metrics = {
            "epoch": epoch,
            "train_loss": round(loss_sum / max(1, seen), 5),
            "train_acc": round(correct / max(1, seen), 5),
            **self._evaluate(),
            **(self.objective.epoch_metrics(self) if self.objective else {}),
            "lr": lr,
            "seconds": round(seconds, 3),
            "images_per_s": round(seen / seconds, 2) if seconds > 0 else None,
            "step": self.step,
            "frozen_groups": self.frozen_now,
            "trainable_params": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
        }
        if not math.isfinite(metrics["val_loss"]):
            raise Diverged(f"The validation loss became {metrics['val_loss']} after epoch {epoch} (learning rate "
                           f"{lr:.2g}): the weights have blown up.")
        # Checkpoint first, then the metrics line: a run killed in between has an epoch's weights but no line for
        # it, never a line whose weights are missing (unless _checkpoint skipped that epoch to save time).
        self._checkpoint(epoch)
        self.run.metrics.append(metrics)
        runs.append_jsonl(self.run.dir / runs.METRICS_FILE, metrics)
        self.run._emit("epoch_end", metrics=metrics)

    def _checkpoint(self, epoch: int) -> None:
        """Save this epoch's weights (atomically), so a crash, a kill or a later failure keeps them. Skipped while
        the last checkpoint is recent next to the time saving takes, so checkpoints cost at most CHECKPOINT_SHARE of
        the training time."""
        started = time.perf_counter()
        if self.checkpoint_seconds is not None and \
                started - self.checkpointed_at < self.checkpoint_seconds / CHECKPOINT_SHARE:
            return
        runs.save_run_model(self.run.dir, self.model, self.run.model_info(self.p), epoch)
        self.checkpointed_at = time.perf_counter()
        self.checkpoint_seconds = self.checkpointed_at - started

    def _early_stop(self, module: torch.nn.Module) -> bool:
        """Remember the best epoch by validation loss; True once `patience` epochs brought no improvement."""
        if self.config.patience <= 0:
            return False
        metrics = self.run.metrics[-1]
        if self.best is None or metrics["val_loss"] < self.best[0]:
            weights = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            self.best = (metrics["val_loss"], metrics, weights)
            return False
        if metrics["epoch"] - self.best[1]["epoch"] >= self.config.patience:
            self.run._emit("status", phase=f"early stopping: no better validation loss since epoch "
                                           f"{self.best[1]['epoch']}")
            return True
        return False

    def _restore_best(self, module: torch.nn.Module) -> None:
        if self.best is not None and self.best[1]["epoch"] != self.run.metrics[-1]["epoch"]:
            module.load_state_dict(self.best[2])
            self.restored_best = True

    def _report_batch(self, epoch: int, index: int, steps: int, loss: float, images_per_s: float,
                      seconds_left: float, lr: float, phase: str) -> None:
        batch = {"epoch": epoch, "step": self.step, "batch": index, "batches": steps, "loss": round(loss, 5),
                 "images_per_s": round(images_per_s, 2), "seconds_left": round(seconds_left, 1), "lr": lr,
                 "phase": phase}
        self.run.progress = batch
        self.run.batches.append(batch)
        runs.append_jsonl(self.run.dir / runs.BATCHES_FILE, batch)
        self.run._emit("batch", **batch)

    # -- linear probe: the backbone runs once per image -----------------------------------------------------------
    @torch.inference_mode()
    def _features(self, samples, label: str) -> tuple[torch.Tensor, torch.Tensor]:
        self.model.eval()
        loader = self._loader(samples, eval_transform(self.config.image_size), False)
        feats, targets, start = [], [], time.perf_counter()
        for _index, (images, labels) in enumerate(loader):
            self.run._check_stop()
            with torch.autocast(**self.autocast):
                x = self.model.forward_features(self.normalize(images))
                feats.append(self.model.forward_head(x, pre_logits=True).float())
            targets.append(labels)
            done = sum(len(t) for t in targets)
            rate = done / (time.perf_counter() - start)
            self.run._report_progress({
                "phase": f"extracting {label} features", "done": done, "total": len(samples),
                "images_per_s": round(rate, 2), "seconds_left": round((len(samples) - done) / rate, 1)})
        return torch.cat(feats), torch.cat(targets)

    def _fit_linear_probe(self) -> None:
        self.run._set_phase("extracting features (the backbone runs once per image)")
        start = time.perf_counter()
        train_x, train_y = self._features(self.p.dataset.train, "training")
        self.val_features, self.val_targets = self._features(self.p.dataset.val, "validation")
        self.feature_seconds = round(time.perf_counter() - start, 2)
        head = self.model.get_classifier()
        optimizer = torch.optim.AdamW(head.parameters(), lr=self.config.lr, weight_decay=self.config.weight_decay)
        loader = DataLoader(TensorDataset(train_x, train_y), batch_size=self.config.batch_size, shuffle=True,
                            generator=self.generator)
        self._run_epochs(head, optimizer, loader, phase="training the head on cached features", inputs_ready=True)

    # -- everything else: the backbone runs every batch -------------------------------------------------------------
    def _fit_backbone(self) -> None:
        strategy = self.p.strategy
        if strategy.gradual:
            # The optimizer must hold every group that will ever unfreeze; frozen ones get no gradient, so AdamW
            # leaves them (and their weight decay) alone until their phase comes.
            apply_freezing(self.model, self.p.groups, self.config.freeze_depth or 0)
        if strategy.l2sp:
            head = head_parameter_names(self.model)
            self.l2sp_start = {n: p.detach().clone() for n, p in self.model.named_parameters()
                               if p.requires_grad and n not in head}
            self.l2sp_head = [p for n, p in self.model.named_parameters() if n in head]
        optimizer = build_optimizer(self.model, self.config, strategy)
        if self.objective is not None:
            for group in self.objective.setup(self):  # e.g. DANN's domain classifier
                optimizer.add_param_group({"weight_decay": self.config.weight_decay, **group})
        preset = AUGMENTATIONS[self.config.augment]
        loader = self._loader(self.p.dataset.train, preset.train_transform(self.config.image_size), shuffle=True,
                              indexed=self.objective is not None and self.objective.indexed)
        if preset.mixes_images:
            self.mixup = timm.data.Mixup(mixup_alpha=0.2, cutmix_alpha=1.0, num_classes=self.num_classes,
                                         label_smoothing=0.0)
        self._run_epochs(self.model, optimizer, loader, phase="training", inputs_ready=False)
        if self.objective is not None:
            self.objective.finish(self)

    def _begin_epoch(self, epoch: int) -> None:
        """Gradual unfreezing: the groups trainable in this epoch."""
        if self.p.strategy.gradual:
            frozen = self.p.strategy.frozen_groups(self.p.groups, self.config.freeze_depth, epoch,
                                                   self.config.epochs_per_phase)
            apply_freezing(self.model, self.p.groups, frozen)
            self.frozen_now = frozen

    def _penalty(self) -> torch.Tensor | None:
        """L2-SP: alpha/2 * ||w - w0||^2 over the backbone + beta/2 * ||w_head||^2."""
        if not self.p.strategy.l2sp:
            return None
        params = dict(self.model.named_parameters())
        drift = sum(((params[n] - w0) ** 2).sum() for n, w0 in self.l2sp_start.items())
        head = sum((p**2).sum() for p in self.l2sp_head)
        return self.config.l2sp_alpha / 2 * drift + self.config.l2sp_beta / 2 * head

    def _run_epochs(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                    phase: str, inputs_ready: bool) -> None:
        steps = len(loader)
        total_steps = steps * self.config.epochs
        self.total_steps = total_steps
        warmup = int(self.config.warmup_epochs * steps)
        self.run._set_phase(phase)
        started = time.perf_counter()
        for epoch in range(1, self.config.epochs + 1):
            self.run._emit("epoch_start", epoch=epoch, epochs=self.config.epochs)
            self._begin_epoch(epoch)
            if inputs_ready:
                module.train()
            else:
                set_train_mode(self.model)
            loss_sum, correct, seen, epoch_start = 0.0, 0, 0, time.perf_counter()
            for index, (inputs, targets, *extra) in enumerate(loader):
                self.run._check_stop()
                lr = lr_at(self.step, total_steps, warmup, self.config.lr, self.config.schedule)
                for group in optimizer.param_groups:
                    group["lr"] = lr * group.get("lr_scale", 1.0)
                inputs = inputs.to(self.device) if inputs_ready else self.normalize(inputs)
                targets = targets.to(self.device, non_blocking=True)
                soft_targets = None
                if self.mixup is not None and len(targets) % 2 == 0:  # timm mixes pairs: needs an even batch
                    inputs, soft_targets = self.mixup(inputs, targets)
                objective = None if inputs_ready else self.objective
                with torch.autocast(**self.autocast):
                    logits = module(inputs) if objective is None else objective.forward(module, inputs)
                    # with mixed images the label is a mix too: cross-entropy against the soft targets
                    loss = F.cross_entropy(logits.float(), targets if soft_targets is None else soft_targets)
                    if objective is not None:
                        loss = objective.loss(loss, logits.float(), targets, extra)
                penalty = None if inputs_ready else self._penalty()
                if penalty is not None:
                    loss = loss + penalty
                optimizer.zero_grad(set_to_none=True)
                loss.backward()
                optimizer.step()
                self.step += 1
                # .item() is a CPU-GPU sync point; once per batch is cheap next to a backbone's forward/backward.
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise Diverged(f"The training loss became {loss_value} at epoch {epoch}, batch {index + 1} "
                                   f"(learning rate {lr:.2g}).")
                loss_sum += loss_value * len(targets)
                correct += (logits.argmax(1) == targets).sum().item()
                seen += len(targets)
                elapsed = time.perf_counter() - started
                rate = seen / (time.perf_counter() - epoch_start)
                seconds_left = elapsed / self.step * (total_steps - self.step)
                if not inputs_ready or index == steps - 1:
                    self._report_batch(epoch, index + 1, steps, loss_value, rate, seconds_left, lr, phase)
            self._end_epoch(epoch, loss_sum, correct, seen, time.perf_counter() - epoch_start, lr)
            if self._early_stop(module):
                break
        self._restore_best(module)

    def lr_sweep(self, min_lr: float, max_lr: float, steps: int,
                 on_step: Callable[[int, int], None] | None) -> LRFinderResult:
        if self.p.strategy.caches_features:
            features, targets = self._features(self.p.dataset.train, "training")
            module = self.model.get_classifier()
            optimizer = torch.optim.AdamW(module.parameters(), lr=min_lr, weight_decay=self.config.weight_decay)
            loader = DataLoader(TensorDataset(features, targets), batch_size=self.config.batch_size, shuffle=True,
                                generator=self.generator)
        else:
            module = self.model
            optimizer = build_optimizer(self.model, self.config, self.p.strategy)
            augment = AUGMENTATIONS[self.config.augment].train_transform(self.config.image_size)
            loader = self._loader(self.p.dataset.train, augment, shuffle=True)
        lrs, losses, smoothed, best = [], [], None, math.inf
        batches = iter(loader)
        for step in range(steps):
            try:
                inputs, labels = next(batches)
            except StopIteration:
                batches = iter(loader)
                inputs, labels = next(batches)
            lr = min_lr * (max_lr / min_lr) ** (step / max(1, steps - 1))
            for group in optimizer.param_groups:
                group["lr"] = lr * group.get("lr_scale", 1.0)
            if module is self.model:
                set_train_mode(self.model)
                inputs = self.normalize(inputs)
            else:
                module.train()
                inputs = inputs.to(self.device)
            with torch.autocast(**self.autocast):
                loss = F.cross_entropy(module(inputs).float(), labels.to(self.device))
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
            # An exponential moving average: single-batch losses are too noisy to read a curve from.
            smoothed = loss.item() if smoothed is None else 0.7 * smoothed + 0.3 * loss.item()
            lrs.append(lr)
            losses.append(smoothed)
            best = min(best, smoothed)
            if on_step:
                on_step(step + 1, steps)
            if not math.isfinite(smoothed) or smoothed > 4 * best:
                break
        return LRFinderResult(lrs, losses, suggest_lr(lrs, losses))


# ---------------------------------------------------------------------------------------------------------------
# Learning-rate finder (Smith 2015; fastai's lr_find)


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]  # smoothed training loss at each lr
    suggestion: float  # where the loss falls fastest

    def to_dict(self) -> dict:
        return {"lrs": self.lrs, "losses": self.losses, "suggestion": self.suggestion}


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest (steepest negative slope against log lr), before its minimum."""
    lowest = int(np.argmin(losses))
    if lowest < 2:  # the loss never fell: the smallest rates are the safe ones
        return lrs[lowest]
    slopes = np.gradient(np.asarray(losses[: lowest + 1]), np.log(np.asarray(lrs[: lowest + 1])))
    return float(lrs[int(np.argmin(slopes))])


def find_lr(config: RunConfig, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 40,
            on_step: Callable[[int, int], None] | None = None) -> LRFinderResult:
    """A short sweep: train with the learning rate growing exponentially from `min_lr` to `max_lr`, record the
    smoothed loss, stop when it explodes. Uses the strategy's freezing; writes nothing and keeps no weights."""
    run = Run(config)
    prepared = run.prepare()
    trainer = _Trainer(run, prepared, torch.device(prepared.config.device))
    trainer._decode_all()
    return trainer.lr_sweep(min_lr, max_lr, steps, on_step)
