"""Speed of the workbench engine against plain timm + torch loops: same backbone, images, split, epochs, batch size,
image size and starting weights.

1. Fine-tuning throughput: `Run(strategy="full")` against the loop a tutorial would write (a Dataset over the split's
   files + DataLoader, PIL decode and augment every epoch, NCHW fp32, AdamW, cross-entropy). Headline: training
   images/s per epoch, data loading included on both sides; also the engine's rate with its one-time decode counted in.
2. Linear probe time to result: `Run(strategy="linear_probe")` (backbone once per image, head on cached features)
   against a frozen-backbone loop that runs the backbone forward on every batch of every epoch, then one val pass.
   Both clocks run from building the model to a validation accuracy; the engine's also covers its dataset check.

Every measurement runs in a fresh spawned process, so neither side inherits the other's warmed caches and each has
its own peak RSS. With --repeats N the engine/plain pairs run N times in alternating order; medians are reported.

    HF_HUB_OFFLINE=1 python bench/bench_train.py --json-out bench/results/run.json
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import platform
import resource
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import timm
import torch
import torch.nn.functional as F
import torchvision
from torch.utils.data import DataLoader, Dataset
from torchvision import transforms
from torchvision.datasets.folder import default_loader

from workbench.data import ImageDataset, Sample, open_dataset
from workbench.engine import Event, Run
from workbench.engine.config import RunConfig
from workbench.models.backbones import backbone_info, create_backbone, data_config
from workbench.strategies import get_strategy

REPO = Path(__file__).resolve().parents[1]
VAL_FRACTION = 0.2  # RunConfig's default, so the plain loops read the engine's exact split
SEED = 0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", default=str(REPO / "sample_data" / "shapes"),
                        help="any dataset the workbench reads: a class folder, train/ and val/, a label file, a .zip")
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name")
    parser.add_argument("--epochs", type=int, default=2, help="fine-tuning epochs, both sides")
    parser.add_argument("--image-size", type=int, default=160, help="fine-tuning image size, both sides")
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--probe-epochs", type=int, default=5, help="linear-probe epochs, both sides")
    parser.add_argument("--probe-image-size", type=int, default=None,
                        help="linear-probe image size, both sides (default: the backbone's native size)")
    parser.add_argument("--plain-workers", type=int, default=0,
                        help="DataLoader workers of the plain loops (0: on 2 cores, workers compete with the 2 "
                             "compute threads instead of overlapping with them)")
    parser.add_argument("--repeats", type=int, default=1, help="engine/plain pairs per benchmark, order alternating")
    parser.add_argument("--skip", choices=["fine_tune", "probe"], help="leave one benchmark out")
    parser.add_argument("--json-out", type=Path, help="also write every number, the machine and the args here")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------
# Facts about the machine and the measurement


def cpu_model() -> str:
    for line in Path("/proc/cpuinfo").read_text().splitlines() if Path("/proc/cpuinfo").exists() else []:
        if line.lower().startswith("model name"):
            return line.split(":", 1)[1].strip()
    return platform.processor() or platform.machine()


def _git(*command: str) -> str:
    return subprocess.run(["git", *command], cwd=REPO, capture_output=True, text=True, check=False).stdout.strip()


def code_version() -> str:
    """The commit measured, marked '+changes' when workbench/ differs from it."""
    commit = _git("rev-parse", "--short", "HEAD") or "unknown"
    return commit + ("+changes" if _git("status", "--porcelain", "--", "workbench") else "")


def engine_code() -> str:
    """What the engine's code is, whatever else gets committed: the tree of workbench/ plus uncommitted edits."""
    return _git("rev-parse", "HEAD:workbench") + _git("diff", "HEAD", "--", "workbench")


def machine_info() -> dict:
    cuda = torch.cuda.is_available()
    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "workbench_commit": code_version(),
        "cpu": cpu_model(),
        "cpu_cores": os.cpu_count(),
        "torch_threads": torch.get_num_threads(),
        "gpu": torch.cuda.get_device_name(0) if cuda else None,
        "platform": platform.platform(),
        "python": platform.python_version(),
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
        "timm": timm.__version__,
    }


def cpu_seconds() -> float:
    """CPU time used so far by this process and its reaped children (DataLoader workers). Unlike wall time it
    hardly moves when other jobs share the cores, so it separates "our code does less work" from "we got less CPU"."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def peak_rss_mb() -> float:
    return round(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024, 1)  # KiB on Linux


def phase_seconds(events: list[Event], end: float) -> dict[str, float]:
    """Seconds spent in each phase the engine announced (status events), the last one closed at `end`."""
    marks = [(e.data["phase"], e.time) for e in events if e.kind == "status"] + [("end", end)]
    return {phase: round(t_next - t, 2) for (phase, t), (_, t_next) in zip(marks, marks[1:], strict=False)}


class EventLog:
    """A run's events, each with the CPU time at its arrival (listeners are called in the training thread)."""

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.cpu: list[float] = []

    def __call__(self, event: Event) -> None:
        self.events.append(event)
        self.cpu.append(cpu_seconds())


def engine_training_cpu(log: EventLog) -> float:
    """CPU seconds from each epoch's start to its last training batch: the window of the engine's epoch timing."""
    total, start, last = 0.0, None, None
    for event, cpu in zip(log.events, log.cpu, strict=True):
        if event.kind == "epoch_start":
            total += (last - start) if start is not None else 0.0
            start = last = cpu
        elif event.kind == "batch" and event.data["phase"] == "training":
            last = cpu
    return total + ((last - start) if start is not None else 0.0)


def engine_batch_rates(events: list[Event], num_train: int, batch_size: int) -> list[float]:
    """images/s of each training batch, from the engine's own epoch_start and batch events (data loading
    included: each batch is timed from the end of the one before)."""
    rates, mark = [], None
    for e in events:
        if e.kind == "epoch_start":
            mark = e.time
        elif e.kind == "batch" and e.data["phase"] == "training":
            images = min(batch_size, num_train - (e.data["batch"] - 1) * batch_size)
            rates.append(images / (e.time - mark))
            mark = e.time
    return rates


def probe_image_size(args: argparse.Namespace) -> int:
    """Given to both sides explicitly: the engine's own default on a CPU is smaller than the native size."""
    return args.probe_image_size or backbone_info(args.backbone).input_size


def in_fresh_process(measure: Callable[[argparse.Namespace], dict], args: argparse.Namespace) -> dict:
    """Run one measurement in a new interpreter: cold caches for both sides alike, and a peak RSS of its own."""
    with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
        return pool.submit(measure, args).result()


# ---------------------------------------------------------------------------------------------------------------
# The workbench engine


def run_engine(config: RunConfig) -> tuple[Run, float, EventLog]:
    """Train `config` in this thread: (run, wall seconds, its events)."""
    run = Run(config)
    log = EventLog()
    run.subscribe(log)
    start = time.perf_counter()
    run.run()
    wall = time.perf_counter() - start
    if run.status != "finished":
        raise RuntimeError(f"engine run {run.status}: {run.error}")
    return run, wall, log


def engine_fine_tune(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as runs_dir:
        config = RunConfig(data=args.data, backbone=args.backbone, strategy="full", epochs=args.epochs,
                           image_size=args.image_size, batch_size=args.batch_size, augment="light", weights="auto",
                           device="cpu", seed=SEED, val_fraction=VAL_FRACTION, runs_dir=runs_dir)
        run, wall, log = run_engine(config)
    phases = phase_seconds(log.events, log.events[-1].time)
    seconds = [m["seconds"] for m in run.metrics]
    images = [round(m["images_per_s"] * m["seconds"]) for m in run.metrics]
    decode = phases.get("decoding images", 0.0)
    batch_rates = engine_batch_rates(log.events, run.info["num_train"], args.batch_size)
    return {
        "images": sum(images),
        "train_seconds": round(sum(seconds), 2),
        "images_per_s": round(sum(images) / sum(seconds), 2),
        "epoch_images_per_s": [m["images_per_s"] for m in run.metrics],
        "median_batch_images_per_s": round(statistics.median(batch_rates), 2),
        "images_per_cpu_s": round(sum(images) / engine_training_cpu(log), 2),
        "decode_seconds": decode,
        "images_per_s_with_decode": round(sum(images) / (sum(seconds) + decode), 2),
        "wall_seconds": round(wall, 2),
        "phases": phases,
        "val_acc": run.summary["val_accuracy"],
        "weights": run.summary["pretrained"]["description"],
        "peak_rss_mb": peak_rss_mb(),
    }


def engine_probe(args: argparse.Namespace) -> dict:
    with tempfile.TemporaryDirectory() as runs_dir:
        config = RunConfig(data=args.data, backbone=args.backbone, strategy="linear_probe", epochs=args.probe_epochs,
                           image_size=probe_image_size(args), batch_size=args.batch_size, weights="auto", device="cpu",
                           seed=SEED, val_fraction=VAL_FRACTION, runs_dir=runs_dir)
        start_cpu = cpu_seconds()
        run, wall, log = run_engine(config)
    return {
        "seconds_to_result": round(wall, 2),
        "cpu_seconds_to_result": round(log.cpu[-1] - start_cpu, 2),
        "image_size": run.info["resolved"]["image_size"],
        "phases": phase_seconds(log.events, log.events[-1].time),
        "val_acc": run.summary["val_accuracy"],
        "weights": run.summary["pretrained"]["description"],
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------------------------
# The plain loops, written the way a tutorial writes them


def engine_split(args: argparse.Namespace) -> ImageDataset:
    """The engine's seeded train/val split, so both loops read the same files. Not timed on the plain side: it is
    our dataset check, not part of a tutorial loop."""
    return open_dataset(args.data, VAL_FRACTION, SEED)


class SplitImages(Dataset):
    """The plain loops' dataset: exactly the split's files and labels, each decoded with torchvision's PIL loader (what
    ImageFolder does) and transformed on every read. Not ImageFolder itself: it takes every subfolder of one folder for
    a class, so it cannot read a dataset with its own train/ and val/ folders, a label file or a zip."""

    def __init__(self, samples: list[Sample], transform: Callable) -> None:
        self.samples, self.transform = samples, transform

    def __len__(self) -> int:
        return len(self.samples)

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int]:
        sample = self.samples[index]
        return self.transform(default_loader(str(sample.path))), sample.label


def split_datasets(split: ImageDataset, train_transform: Callable, val_transform: Callable) -> tuple[SplitImages, ...]:
    """The plain loops' train and val datasets over the split's files."""
    return SplitImages(split.train, train_transform), SplitImages(split.val, val_transform)


def plain_model(args: argparse.Namespace, num_classes: int) -> tuple[torch.nn.Module, dict]:
    """The engine's starting weights (bundled/cached ImageNet), in plain NCHW fp32."""
    model, _ = create_backbone(args.backbone, num_classes, "auto")
    return model, data_config(model)


def eval_transform(cfg: dict, image_size: int):
    return timm.data.create_transform(**{**cfg, "input_size": (3, image_size, image_size)}, is_training=False)


def train_epoch(model: torch.nn.Module, loader: DataLoader, optimizer: torch.optim.Optimizer) -> list[float]:
    """One epoch of the textbook loop; returns images/s of each batch, timed from the end of the batch before
    (so data loading is included, as in the engine's numbers)."""
    running_loss, rates, mark = 0.0, [], time.perf_counter()
    for images, labels in loader:
        loss = F.cross_entropy(model(images), labels)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        running_loss += loss.item() * len(labels)
        now = time.perf_counter()
        rates.append(len(labels) / (now - mark))
        mark = now
    return rates


@torch.no_grad()
def accuracy(model: torch.nn.Module, loader: DataLoader) -> float:
    model.eval()
    correct = sum((model(images).argmax(1) == labels).sum().item() for images, labels in loader)
    return round(correct / len(loader.dataset), 5)


def train_transform(cfg: dict, image_size: int) -> transforms.Compose:
    """The plain loop's training transform: torchvision's take on the engine's "light" preset."""
    return transforms.Compose([
        transforms.RandomResizedCrop(image_size, scale=(0.5, 1.0)),
        transforms.RandomHorizontalFlip(),
        transforms.ToTensor(),
        transforms.Normalize(cfg["mean"], cfg["std"]),
    ])


def plain_fine_tune(args: argparse.Namespace) -> dict:
    torch.manual_seed(SEED)
    split = engine_split(args)
    model, cfg = plain_model(args, len(split.class_names))
    train_set, val_set = split_datasets(split, train_transform(cfg, args.image_size),
                                       eval_transform(cfg, args.image_size))
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, num_workers=args.plain_workers)
    optimizer = torch.optim.AdamW(model.parameters(), lr=get_strategy("full").default_lr, weight_decay=0.01)
    images, seconds, batch_rates, cpu = [], [], [], 0.0
    for _ in range(args.epochs):
        model.train()
        start, start_cpu = time.perf_counter(), cpu_seconds()
        batch_rates += train_epoch(model, loader, optimizer)
        seconds.append(time.perf_counter() - start)
        cpu += cpu_seconds() - start_cpu
        images.append(len(train_set))
    val_loader = DataLoader(val_set, batch_size=args.batch_size, num_workers=args.plain_workers)
    return {
        "images": sum(images),
        "train_seconds": round(sum(seconds), 2),
        "images_per_s": round(sum(images) / sum(seconds), 2),
        "epoch_images_per_s": [round(n / s, 2) for n, s in zip(images, seconds, strict=True)],
        "median_batch_images_per_s": round(statistics.median(batch_rates), 2),
        "images_per_cpu_s": round(sum(images) / cpu, 2),
        "val_acc": accuracy(model, val_loader),
        "workers": args.plain_workers,
        "peak_rss_mb": peak_rss_mb(),
    }


def plain_probe(args: argparse.Namespace) -> dict:
    torch.manual_seed(SEED)
    split = engine_split(args)
    start, start_cpu = time.perf_counter(), cpu_seconds()
    model, cfg = plain_model(args, len(split.class_names))
    for param in model.parameters():
        param.requires_grad = False
    head = model.get_classifier()
    for param in head.parameters():
        param.requires_grad = True
    image_size = probe_image_size(args)
    # No augmentation: features that are cached cannot be augmented, so both sides see the same centre crop.
    transform = eval_transform(cfg, image_size)
    train_set, val_set = split_datasets(split, transform, transform)
    loader = DataLoader(train_set, batch_size=args.batch_size, shuffle=True, num_workers=args.plain_workers)
    optimizer = torch.optim.AdamW(head.parameters(), lr=get_strategy("linear_probe").default_lr, weight_decay=0.01)
    for _ in range(args.probe_epochs):
        model.eval()  # frozen BatchNorm keeps its pretrained statistics, as the engine's cached features do
        train_epoch(model, loader, optimizer)
    val_acc = accuracy(model, DataLoader(val_set, batch_size=args.batch_size, num_workers=args.plain_workers))
    return {
        "seconds_to_result": round(time.perf_counter() - start, 2),
        "cpu_seconds_to_result": round(cpu_seconds() - start_cpu, 2),
        "image_size": image_size,
        "val_acc": val_acc,
        "workers": args.plain_workers,
        "peak_rss_mb": peak_rss_mb(),
    }


# ---------------------------------------------------------------------------------------------------------------
# Running the pairs and reporting


BENCHMARKS = {"fine_tune": (engine_fine_tune, plain_fine_tune), "probe": (engine_probe, plain_probe)}


def measure_pairs(args: argparse.Namespace, name: str) -> list[dict]:
    """`args.repeats` engine/plain pairs, the engine first in even repeats and second in odd ones."""
    engine, plain = BENCHMARKS[name]
    pairs = []
    for repeat in range(args.repeats):
        order = [("engine", engine), ("plain", plain)]
        pair = {}
        for side, measure in order if repeat % 2 == 0 else order[::-1]:
            print(f"[{name} {repeat + 1}/{args.repeats}] {side} …", file=sys.stderr, flush=True)
            pair[side] = in_fresh_process(measure, args)
        pairs.append(pair)
    return pairs


def median_of(pairs: list[dict], side: str, key: str) -> float:
    return round(statistics.median(p[side][key] for p in pairs), 2)


def summarize(results: dict) -> dict:
    summary = {}
    if "fine_tune" in results:
        pairs = results["fine_tune"]
        summary["fine_tune"] = {
            "engine_images_per_s": median_of(pairs, "engine", "images_per_s"),
            "engine_images_per_s_with_decode": median_of(pairs, "engine", "images_per_s_with_decode"),
            "plain_images_per_s": median_of(pairs, "plain", "images_per_s"),
            "engine_median_batch_images_per_s": median_of(pairs, "engine", "median_batch_images_per_s"),
            "plain_median_batch_images_per_s": median_of(pairs, "plain", "median_batch_images_per_s"),
            "engine_images_per_cpu_s": median_of(pairs, "engine", "images_per_cpu_s"),
            "plain_images_per_cpu_s": median_of(pairs, "plain", "images_per_cpu_s"),
            "ratio_per_cpu_s": round(statistics.median(
                p["engine"]["images_per_cpu_s"] / p["plain"]["images_per_cpu_s"] for p in pairs), 2),
            "ratio_median_batch": round(statistics.median(
                p["engine"]["median_batch_images_per_s"] / p["plain"]["median_batch_images_per_s"] for p in pairs), 2),
            "ratio": round(statistics.median(p["engine"]["images_per_s"] / p["plain"]["images_per_s"]
                                             for p in pairs), 2),
            "ratio_with_decode": round(statistics.median(
                p["engine"]["images_per_s_with_decode"] / p["plain"]["images_per_s"] for p in pairs), 2),
            "engine_val_acc": median_of(pairs, "engine", "val_acc"),
            "plain_val_acc": median_of(pairs, "plain", "val_acc"),
            "engine_peak_rss_mb": median_of(pairs, "engine", "peak_rss_mb"),
            "plain_peak_rss_mb": median_of(pairs, "plain", "peak_rss_mb"),
        }
    if "probe" in results:
        pairs = results["probe"]
        summary["probe"] = {
            "engine_seconds": median_of(pairs, "engine", "seconds_to_result"),
            "plain_seconds": median_of(pairs, "plain", "seconds_to_result"),
            "speedup": round(statistics.median(p["plain"]["seconds_to_result"] / p["engine"]["seconds_to_result"]
                                               for p in pairs), 2),
            "engine_cpu_seconds": median_of(pairs, "engine", "cpu_seconds_to_result"),
            "plain_cpu_seconds": median_of(pairs, "plain", "cpu_seconds_to_result"),
            "speedup_cpu": round(statistics.median(
                p["plain"]["cpu_seconds_to_result"] / p["engine"]["cpu_seconds_to_result"] for p in pairs), 2),
            "engine_val_acc": median_of(pairs, "engine", "val_acc"),
            "plain_val_acc": median_of(pairs, "plain", "val_acc"),
            "engine_peak_rss_mb": median_of(pairs, "engine", "peak_rss_mb"),
            "plain_peak_rss_mb": median_of(pairs, "plain", "peak_rss_mb"),
        }
    return summary


def markdown(report: dict) -> str:
    m, a, s = report["machine"], report["args"], report["summary"]
    lines = [
        f"{m['date']} · {m['cpu']} · {m['cpu_cores']} cores ({m['torch_threads']} torch threads) · "
        f"{m['gpu'] or 'no GPU'} · torch {m['torch']} · timm {m['timm']} · workbench {m['workbench_commit']}",
        f"{a['backbone']} on {a['data']} · batch {a['batch_size']} · plain DataLoader workers {a['plain_workers']} · "
        f"median of {a['repeats']} alternating pair(s), each side in a fresh process",
        "",
        "| Benchmark | Workbench engine | Plain timm + torch loop | Engine vs plain |",
        "|---|---|---|---|",
    ]
    if "fine_tune" in s:
        f = s["fine_tune"]
        size, epochs = a["image_size"], a["epochs"]
        lines += [
            f"| Full fine-tune, {epochs} epochs at {size}px: training images/s | {f['engine_images_per_s']} | "
            f"{f['plain_images_per_s']} | **{f['ratio']:.2f}×** |",
            f"| … counting the engine's one-time decode | {f['engine_images_per_s_with_decode']} | "
            f"{f['plain_images_per_s']} | {f['ratio_with_decode']:.2f}× |",
            f"| … per-batch median images/s (robust to load spikes) | {f['engine_median_batch_images_per_s']} | "
            f"{f['plain_median_batch_images_per_s']} | {f['ratio_median_batch']:.2f}× |",
            f"| … training images per CPU-second (load-robust) | {f['engine_images_per_cpu_s']} | "
            f"{f['plain_images_per_cpu_s']} | {f['ratio_per_cpu_s']:.2f}× |",
            f"| … val accuracy (sanity) | {f['engine_val_acc']:.1%} | {f['plain_val_acc']:.1%} | |",
            f"| … peak RSS (MB) | {f['engine_peak_rss_mb']:.0f} | {f['plain_peak_rss_mb']:.0f} | |",
        ]
    if "probe" in s:
        p = s["probe"]
        size = report["results"]["probe"][0]["engine"]["image_size"]
        lines += [
            f"| Linear probe, {a['probe_epochs']} epochs at {size}px: seconds to result | {p['engine_seconds']} | "
            f"{p['plain_seconds']} | **{p['speedup']:.1f}× faster** |",
            f"| … CPU-seconds to result (load-robust) | {p['engine_cpu_seconds']} | {p['plain_cpu_seconds']} | "
            f"{p['speedup_cpu']:.1f}× less |",
            f"| … val accuracy (sanity) | {p['engine_val_acc']:.1%} | {p['plain_val_acc']:.1%} | |",
            f"| … peak RSS (MB) | {p['engine_peak_rss_mb']:.0f} | {p['plain_peak_rss_mb']:.0f} | |",
        ]
    return "\n".join(lines)


def publish(report: dict, table: str, json_out: Path | None) -> None:
    """Print the table and the bench's whole time; with `json_out`, write every number there (shared by the
    benches in this folder)."""
    print(table)
    print(f"\n(whole benchmark: {report['bench_seconds']:.0f} s)")
    if json_out:
        json_out.parent.mkdir(parents=True, exist_ok=True)
        json_out.write_text(json.dumps(report, indent=2) + "\n")


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")  # inherited by the measuring processes
    args = parse_args(argv)
    machine, code, started = machine_info(), engine_code(), time.perf_counter()
    results = {name: measure_pairs(args, name) for name in BENCHMARKS if name != args.skip}
    if engine_code() != code:
        machine["workbench_commit_at_end"] = code_version()
        print(f"warning: workbench/ changed during the benchmark ({machine['workbench_commit']} -> "
              f"{machine['workbench_commit_at_end']}): measure again", file=sys.stderr)
    report = {
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": summarize(results),
        "results": results,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    publish(report, markdown(report), args.json_out)
    return 0


if __name__ == "__main__":
    sys.exit(main())
