"""Reading a big folder: `open_dataset` (find the files, check every image, split) against the plain way to load a
folder once, on the same freshly written images.

Sides, each run in a fresh spawned process (its own peak RSS, nothing inherited from another side; imports happen
before the clock starts):
- workbench: `open_dataset(folder, progress=...)`, as a training run calls it (the check uses every core);
- workbench on one core: the same, with the process pinned to one core, to show what the worker processes add;
- workbench with threads: the same, its files checked by a thread per core as `check_files` did before (kept here
  to show why it no longer does);
- plain: `torchvision.datasets.ImageFolder(folder)`, then every image decoded once with PIL (`dataset[i]`), one thread.

The folder is written once (by default into a temporary folder, removed at the end), so every side reads it from the
page cache. Each side's process tree is sampled from outside every 0.25 s for its memory: PSS, which counts the pages
the forked workers share with their parent once, not once per process.

    python bench/bench_scan.py --json-out bench/results/scan-20k.json
"""

from __future__ import annotations

import argparse
import contextlib
import json
import multiprocessing
import os
import platform
import queue
import resource
import statistics
import sys
import tempfile
import time
from concurrent.futures import ThreadPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import psutil
from PIL import Image

SIDES = ("workbench", "one_core", "threads", "plain")
SIDE_TITLES = {"workbench": "Workbench `open_dataset`", "one_core": "Workbench, pinned to one core",
               "threads": "Workbench, checked by threads", "plain": "Plain ImageFolder + PIL decode"}
SAMPLE_EVERY_S = 0.25  # reading a torch process's PSS takes ~8 ms of the cores measured


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--images", type=int, default=20_000, help="images to write, spread over the classes")
    parser.add_argument("--classes", type=int, default=10)
    parser.add_argument("--size", type=int, default=96, help="width and height of every JPEG, in pixels")
    parser.add_argument("--data-dir", type=Path,
                        help="write the images here and keep them (reused when it already holds them); default: a "
                             "temporary folder, removed at the end")
    parser.add_argument("--repeats", type=int, default=1, help="runs of every side, in rotating order")
    parser.add_argument("--json-out", type=Path, help="also write every number here, and the table beside it (.md)")
    return parser.parse_args(argv)


# ---------------------------------------------------------------------------------------------------------------
# The images


def write_images(root: Path, images: int, classes: int, size: int) -> float:
    """`images` JPEGs in `classes` class folders: each class a noisy texture of its own. Seconds taken (0 if reused)."""
    paths = [root / f"class_{i % classes:02d}" / f"img_{i:05d}.jpg" for i in range(images)]
    if all(p.is_file() for p in paths) and sum(1 for _ in root.rglob("*.jpg")) == images:
        return 0.0
    start, rng = time.perf_counter(), np.random.default_rng(0)
    textures = rng.integers(0, 180, (classes, size, size, 3))
    for i, path in enumerate(paths):
        path.parent.mkdir(parents=True, exist_ok=True)
        pixels = textures[i % classes] + rng.integers(0, 76, (size, size, 3))
        Image.fromarray(pixels.astype(np.uint8)).save(path, quality=85)
    return time.perf_counter() - start


# ---------------------------------------------------------------------------------------------------------------
# One side, in its own process


def cpu_seconds() -> float:
    """CPU time of this process and its reaped children (the check's worker processes)."""
    own, children = resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def measure(side: str, folder: str, ready, results) -> None:
    """Import, tell the parent to start sampling memory, then time `side` on `folder` and send back its numbers."""
    if side == "plain":
        import torchvision
    else:
        from workbench.data import open_dataset
    if side == "threads":
        from workbench.data import dataset as dataset_module

        dataset_module.check_files = check_files_with_threads
    if side == "one_core":
        os.sched_setaffinity(0, {min(os.sched_getaffinity(0))})
    rss_before = psutil.Process().memory_info().rss
    ready.set()
    progress_calls = []
    start, start_cpu = time.perf_counter(), cpu_seconds()
    if side == "plain":
        dataset = torchvision.datasets.ImageFolder(folder)
        for i in range(len(dataset)):
            dataset[i]  # noqa: B018 - the loader opens and decodes the file: that is the work measured
        images, skipped, classes = len(dataset), None, len(dataset.classes)
    else:
        dataset = open_dataset(folder, progress=lambda done, total: progress_calls.append(done))
        images = len(dataset.train) + len(dataset.val) + len(dataset.test)
        skipped, classes = len(dataset.report.skipped), len(dataset.class_names)
    seconds, cpu = time.perf_counter() - start, cpu_seconds() - start_cpu
    own = resource.getrusage(resource.RUSAGE_SELF)
    results.put({
        "side": side,
        "seconds": round(seconds, 3),
        "images": images,
        "images_per_s": round(images / seconds, 1),
        "cpu_seconds": round(cpu, 3),
        "cpu_per_wall": round(cpu / seconds, 2),
        "classes": classes,
        "skipped": skipped,
        "progress_calls": len(progress_calls),
        "rss_before_mb": round(rss_before / 2**20, 1),
        "peak_rss_mb": round(own.ru_maxrss / 1024, 1),  # KiB on Linux
        "rss_growth_mb": round(own.ru_maxrss / 1024 - rss_before / 2**20, 1),
    })


def check_files_with_threads(paths: list[Path], progress=None) -> list:
    """`check_files` as it was: `check_image_file` of every path on a thread per core."""
    from workbench.data.images import check_image_file

    results = []
    with ThreadPoolExecutor(max_workers=min(8, os.cpu_count() or 1)) as pool:
        for result in pool.map(check_image_file, paths):
            results.append(result)
            if progress:
                progress(len(results), len(paths))
    return results


def tree_pss_mb(process: psutil.Process) -> float:
    """Proportional set size of a process and its children: shared pages counted once between them."""
    total = 0
    for p in [process, *process.children(recursive=True)]:
        with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):  # a worker that just ended
            total += p.memory_full_info().pss
    return total / 2**20


def run_side(side: str, folder: Path) -> dict:
    context = multiprocessing.get_context("spawn")
    ready, results = context.Event(), context.Queue()
    process = context.Process(target=measure, args=(side, str(folder), ready, results))
    process.start()
    ready.wait()
    watched, peak_pss = psutil.Process(process.pid), 0.0
    result = None
    while result is None:
        with contextlib.suppress(psutil.NoSuchProcess):
            peak_pss = max(peak_pss, tree_pss_mb(watched))
        try:
            result = results.get(timeout=SAMPLE_EVERY_S)
        except queue.Empty:  # still measuring
            if not process.is_alive():
                raise RuntimeError(f"the {side} process ended without a result (exit code {process.exitcode})"
                                   ) from None
    process.join()
    return {**result, "peak_tree_pss_mb": round(peak_pss, 1)}


# ---------------------------------------------------------------------------------------------------------------
# The report


def machine_info() -> dict:
    import torch
    import torchvision
    from bench_train import code_version, cpu_model  # here: the measuring processes need none of its imports

    return {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "workbench_commit": code_version(),
        "cpu": cpu_model(),
        "cpu_cores": len(os.sched_getaffinity(0)),
        "load_average_at_start": [round(x, 2) for x in os.getloadavg()],
        "platform": platform.platform(),
        "python": platform.python_version(),
        "pillow": Image.__version__,
        "torch": torch.__version__,
        "torchvision": torchvision.__version__,
    }


def median_or_none(values: list) -> float | None:
    return statistics.median(values) if None not in values else None


def summarize(runs: list[dict]) -> dict:
    """Per side, the median of each number over the repeats; and the speed-ups of the workbench."""
    summary = {side: {key: median_or_none([r[key] for r in runs if r["side"] == side])
                      for key in runs[0] if key != "side"}
               for side in SIDES}
    summary["speedup_vs_plain"] = round(summary["plain"]["seconds"] / summary["workbench"]["seconds"], 2)
    summary["speedup_vs_one_core"] = round(summary["one_core"]["seconds"] / summary["workbench"]["seconds"], 2)
    summary["speedup_vs_threads"] = round(summary["threads"]["seconds"] / summary["workbench"]["seconds"], 2)
    return summary


ROWS = [
    ("seconds (find, check, split; plain: find, decode)", "seconds", ".2f"),
    ("images/s", "images_per_s", ".0f"),
    ("CPU-seconds", "cpu_seconds", ".2f"),
    ("CPU-seconds per second (cores busy)", "cpu_per_wall", ".2f"),
    ("peak RSS of the measuring process (MB)", "peak_rss_mb", ".0f"),
    ("… of which before the clock started: imports (MB)", "rss_before_mb", ".0f"),
    ("… growth while the clock ran (MB)", "rss_growth_mb", ".0f"),
    ("peak memory of process + workers (PSS, MB)", "peak_tree_pss_mb", ".0f"),
    ("progress reports", "progress_calls", ".0f"),
    ("images read / skipped", "images", "d"),
]


def markdown(report: dict) -> str:
    m, a, s = report["machine"], report["args"], report["summary"]
    lines = [
        f"{m['date']} · {m['cpu']} · {m['cpu_cores']} cores · load average at start "
        f"{', '.join(map(str, m['load_average_at_start']))} · Python {m['python']} · Pillow {m['pillow']} · "
        f"torchvision {m['torchvision']} · workbench {m['workbench_commit']}",
        f"{a['images']:,} JPEGs of {a['size']}x{a['size']} px in {a['classes']} class folders, read from the page "
        f"cache · median of {a['repeats']} run(s) per side, each in a fresh process",
        "",
        "| | " + " | ".join(SIDE_TITLES[side] for side in SIDES) + " |",
        "|---|" + "---|" * len(SIDES),
    ]
    for title, key, spec in ROWS:
        cells = []
        for side in SIDES:
            value = s[side].get(key)
            if key == "images" and value is not None:
                skipped = s[side].get("skipped")
                cells.append(f"{value:,}" + (f" / {skipped:.0f}" if skipped is not None else ""))
            else:
                cells.append("–" if value is None or (key == "progress_calls" and side == "plain")
                             else format(value, spec))
        lines.append(f"| {title} | " + " | ".join(cells) + " |")
    lines += ["", "Speed-up (the other side's seconds ÷ the workbench's): "
                  f"vs plain **{s['speedup_vs_plain']:.2f}×**; vs itself pinned to one core "
                  f"{s['speedup_vs_one_core']:.2f}×; vs its checks run by threads {s['speedup_vs_threads']:.2f}×."]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    started = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix="bench-scan-") as scratch:
        folder = args.data_dir or Path(scratch) / "images"
        written = write_images(folder, args.images, args.classes, args.size)
        how = f"written in {written:.1f} s" if written else "reused"
        print(f"{args.images:,} images in {folder} ({how})", file=sys.stderr)
        machine = machine_info()
        runs = []
        for repeat in range(args.repeats):
            order = SIDES[repeat % len(SIDES):] + SIDES[:repeat % len(SIDES)]
            for side in order:
                runs.append(run_side(side, folder))
                print(f"  {side}: {runs[-1]['seconds']:.2f} s, {runs[-1]['cpu_per_wall']:.2f} CPU-s/s",
                      file=sys.stderr)
    report = {
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": summarize(runs),
        "runs": runs,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    table = markdown(report)
    print(table)
    print(f"\n(whole benchmark: {report['bench_seconds']:.0f} s)")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(report, indent=2) + "\n")
        command = "python bench/bench_scan.py " + " ".join(argv if argv is not None else sys.argv[1:])
        args.json_out.with_suffix(".md").write_text(f"Command: `{command}`\n\n{table}\n\n"
                                                    f"(whole benchmark: {report['bench_seconds']:.0f} s)\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
