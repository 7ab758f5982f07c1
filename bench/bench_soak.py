"""Soak: many short runs back to back through the run registry, as a classroom server would see them, then check
that nothing leaks and nothing is lost.

Each run is submitted to one `RunRegistry` (as the Train page does) and waited for before the next one, so the
registry's worker thread starts and ends once per run. Before the first run and after the last one it records this
process's resident memory (RSS), its threads and its open file descriptors; a sampler thread records the peak RSS
in between. A first, unmeasured run warms up what stays loaded for the life of any process (imported modules,
PyTorch's allocator and thread pool), so "before" is the memory of a server that has trained once.

Passes when: every run finished, every run directory is complete (config, health, metrics with one line per epoch,
summary, model, no live marker, no temporary file), RSS after is within --rss-slack-mb of RSS before, and threads and
file descriptors are back to their starting counts.

    HF_HUB_OFFLINE=1 python bench/bench_soak.py --json-out bench/results/soak.json
"""

from __future__ import annotations

import argparse
import gc
import json
import os
import platform
import sys
import tempfile
import threading
import time
from datetime import datetime, timezone
from pathlib import Path

import psutil
import torch

from workbench import runs
from workbench.engine.config import RunConfig
from workbench.runs.registry import RunRegistry

REPO = Path(__file__).resolve().parents[1]
MB = 2**20
COMPLETE = (runs.CONFIG_FILE, runs.HEALTH_FILE, runs.METRICS_FILE, runs.BATCHES_FILE, runs.SUMMARY_FILE,
            runs.MODEL_FILE, runs.MODEL_INFO_FILE)


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--runs", type=int, default=50, help="runs back to back")
    parser.add_argument("--data", default=str(REPO / "sample_data" / "shapes"))
    parser.add_argument("--backbone", default="test_resnet", help="a tiny timm model keeps each run short")
    parser.add_argument("--strategy", default="full")
    parser.add_argument("--image-size", type=int, default=64)
    parser.add_argument("--epochs", type=int, default=1)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--rss-slack-mb", type=float, default=50.0, help="how far RSS may end above its start")
    parser.add_argument("--runs-dir", default=None, help="where the runs go (default: a temporary folder)")
    parser.add_argument("--json-out", default=None, help="also write the figures here")
    return parser.parse_args(argv)


class PeakRss:
    """Samples this process's RSS every `interval` seconds in a thread of its own, keeping the highest."""

    def __init__(self, interval: float = 0.05):
        self.process, self.interval, self.peak = psutil.Process(), interval, 0
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._sample, name="peak-rss", daemon=True)

    def _sample(self) -> None:
        while not self._stop.wait(self.interval):
            self.peak = max(self.peak, self.process.memory_info().rss)

    def __enter__(self) -> PeakRss:
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self._thread.join()


def snapshot() -> dict:
    """RSS, threads and open file descriptors of this process, after a collection (so only what is kept counts)."""
    gc.collect()
    process = psutil.Process()
    return {"rss_mb": round(process.memory_info().rss / MB, 1), "threads": threading.active_count(),
            "os_threads": process.num_threads(), "open_fds": process.num_fds() if hasattr(process, "num_fds") else None}


def incomplete(run_dir: Path, epochs: int) -> list[str]:
    """What is missing or wrong in a finished run's directory; empty when it is complete."""
    problems = [f"no {name}" for name in COMPLETE if not (run_dir / name).is_file()]
    if (run_dir / runs.LIVE_FILE).exists():
        problems.append(f"{runs.LIVE_FILE} left behind")
    problems += [f"temporary file {p.name}" for p in run_dir.glob("*.tmp")]
    record = runs.load_run(run_dir)
    if record.status != "finished":
        problems.append(f"status {record.status}")
    if len(record.metrics) != epochs:
        problems.append(f"{len(record.metrics)} metrics lines for {epochs} epochs")
    return problems


def soak(args: argparse.Namespace, runs_dir: Path) -> dict:
    registry = RunRegistry(runs_dir)
    config = RunConfig(data=args.data, backbone=args.backbone, strategy=args.strategy, image_size=args.image_size,
                       epochs=args.epochs, batch_size=args.batch_size, seed=0)

    def one_run() -> str:
        run = registry.submit(config)
        run.wait()
        return run.id

    one_run()  # warm-up, not counted
    before = snapshot()
    started = time.perf_counter()
    ids, seconds = [], []
    with PeakRss() as peak:
        for i in range(args.runs):
            t = time.perf_counter()
            ids.append(one_run())
            seconds.append(time.perf_counter() - t)
            print(f"run {i + 1}/{args.runs}: {seconds[-1]:.1f} s, RSS {psutil.Process().memory_info().rss / MB:.0f} MB",
                  file=sys.stderr)
    wall = time.perf_counter() - started
    time.sleep(0.5)  # the registry's worker thread exits once its queue is empty
    after = snapshot()
    broken = {run_id: problems for run_id in ids if (problems := incomplete(runs_dir / run_id, args.epochs))}
    return {"runs": args.runs, "complete_run_dirs": args.runs - len(broken), "broken": broken,
            "before": before, "after": after, "peak_rss_mb": round(peak.peak / MB, 1),
            "rss_growth_mb": round(after["rss_mb"] - before["rss_mb"], 1), "wall_s": round(wall, 1),
            "median_run_s": round(sorted(seconds)[len(seconds) // 2], 2), "in_memory_runs": len(registry.runs())}


def verdict(result: dict, slack_mb: float) -> list[str]:
    """The checks that failed (empty: the soak passed)."""
    before, after = result["before"], result["after"]
    failures = []
    if result["broken"]:
        failures.append(f"{len(result['broken'])} run directories incomplete: {result['broken']}")
    if result["rss_growth_mb"] > slack_mb:
        failures.append(f"RSS grew {result['rss_growth_mb']} MB (more than {slack_mb} MB)")
    if after["threads"] > before["threads"]:
        failures.append(f"threads {before['threads']} -> {after['threads']}")
    if after["open_fds"] is not None and after["open_fds"] > before["open_fds"]:
        failures.append(f"open files {before['open_fds']} -> {after['open_fds']}")
    return failures


def markdown(result: dict) -> str:
    b, a = result["before"], result["after"]
    return "\n".join([
        "| runs | complete dirs | RSS before | peak RSS | RSS after | Python threads | OS threads | open fds | wall |",
        "|---|---|---|---|---|---|---|---|---|",
        f"| {result['runs']} | {result['complete_run_dirs']} | {b['rss_mb']} MB | {result['peak_rss_mb']} MB "
        f"| {a['rss_mb']} MB | {b['threads']} → {a['threads']} | {b['os_threads']} → {a['os_threads']} "
        f"| {b['open_fds']} → {a['open_fds']} | {result['wall_s']} s |",
    ])


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="workbench-soak-") as scratch:
        result = soak(args, Path(args.runs_dir or scratch))
    failures = verdict(result, args.rss_slack_mb)
    result.update(passed=not failures, failures=failures, args=vars(args),
                  machine={"cpus": os.cpu_count(), "platform": platform.platform(), "torch": torch.__version__,
                           "load_average": os.getloadavg()},
                  date=datetime.now(timezone.utc).isoformat(timespec="seconds"))
    print(markdown(result))
    print("PASSED" if not failures else "FAILED: " + "; ".join(failures))
    if args.json_out:
        Path(args.json_out).write_text(json.dumps(result, indent=2))
    return 0 if not failures else 1


if __name__ == "__main__":
    sys.exit(main())
