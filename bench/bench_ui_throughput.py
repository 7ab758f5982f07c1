"""Training throughput with the app's Train page open and streaming, against the same run from the CLI.

The same config (backbone, strategy, epochs, image size, sample data) runs once as `python -m workbench train` and
once through `streamlit run app.py`, chosen by clicks in headless Chromium with the Train page left open (it streams
progress and redraws its charts each epoch) until the run finishes. Both read training images/s from the run's
summary.json (the mean of the epochs' rates; data decoding and validation are not in it). With --repeats N the pairs
run N times, alternating which side goes first, so that the load other work puts on a shared machine falls on both
sides alike.

    HF_HUB_OFFLINE=1 python bench/bench_ui_throughput.py --repeats 2 --markdown bench/results/ui_throughput.md
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime, timezone
from pathlib import Path

import torch

from workbench import runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser test's helpers drive the app here too: one way to click through it

from tests.test_browser import (  # noqa: E402
    BACKBONE,
    choose_model,
    chromium_page,
    ready_to_train,
    run_heading,
    run_id_in_url,
    streamlit_server,
    use_sample_data,
)

SAMPLE = REPO / "sample_data" / "shapes"
RUN_TIMEOUT_S = 1800


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--strategy", default="full", help="a strategy that trains every batch (not linear_probe)")
    parser.add_argument("--epochs", type=int, default=2)
    parser.add_argument("--image-size", type=int, default=160)
    parser.add_argument("--repeats", type=int, default=1, help="CLI/UI pairs, alternating which goes first")
    parser.add_argument("--markdown", type=Path, help="write the results table here")
    return parser.parse_args(argv)


def measured(summary: runs.RunSummary, side: str, load_before: float, seconds: float) -> dict:
    return {"side": side, "images_per_s": summary.images_per_s, "train_seconds": summary.train_seconds,
            "val_accuracy": summary.val_accuracy, "load_before": round(load_before, 2),
            "wall_seconds": round(seconds, 1)}


def cli_run(args: argparse.Namespace, folder: Path) -> dict:
    """`python -m workbench train ...` in its own process; its summary.json."""
    load, start = os.getloadavg()[0], time.monotonic()
    command = [sys.executable, "-m", "workbench", "train", "--data", str(SAMPLE), "--backbone", BACKBONE,
               "--strategy", args.strategy, "--epochs", str(args.epochs), "--image-size", str(args.image_size),
               "--runs-dir", str(folder / "runs")]
    subprocess.run(command, cwd=REPO, env={**os.environ, "HF_HUB_OFFLINE": "1"}, check=True,
                   stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    (run_dir,) = (folder / "runs").iterdir()
    summary = runs.load_run(run_dir).summary
    return measured(summary, "CLI", load, time.monotonic() - start)


def ui_run(args: argparse.Namespace, folder: Path) -> dict:
    """The same run chosen by clicks in the app, watched on the Train page until it finishes; its summary.json."""
    with streamlit_server(folder) as server, chromium_page() as page:
        use_sample_data(page, server.url)
        choose_model(page, args.strategy, {"Epochs": args.epochs, "Image size (px)": args.image_size})
        plan = f"Epochs: {args.epochs} · Image size: {args.image_size} px · Batch: 32"
        train = ready_to_train(page, args.strategy, plan)
        load, start = os.getloadavg()[0], time.monotonic()
        train.click()
        run_heading(page).filter(has_text="— finished").wait_for(timeout=RUN_TIMEOUT_S * 1000)
        summary = runs.load_run(server.runs_dir / run_id_in_url(page)).summary
    return measured(summary, "UI", load, time.monotonic() - start)


def pairs(args: argparse.Namespace) -> list[dict]:
    results = []
    for repeat in range(args.repeats):
        order = (cli_run, ui_run) if repeat % 2 == 0 else (ui_run, cli_run)
        for measure in order:
            with tempfile.TemporaryDirectory() as folder:
                result = {"repeat": repeat + 1, **measure(args, Path(folder))}
            print(json.dumps(result), flush=True)
            results.append(result)
    return results


def pair_ratios(results: list[dict]) -> list[float]:
    """UI/CLI within each repeat: the two runs of a pair ran minutes apart, so drift in the machine's speed (which
    on a shared VM moved single runs by +-10%) falls on both."""
    by_repeat: dict[int, dict[str, float]] = {}
    for r in results:
        by_repeat.setdefault(r["repeat"], {})[r["side"]] = r["images_per_s"]
    return [pair["UI"] / pair["CLI"] for pair in by_repeat.values() if {"UI", "CLI"} <= set(pair)]


def table(args: argparse.Namespace, results: list[dict]) -> str:
    """The results as markdown: every measurement, then the medians and their ratio."""
    cli = statistics.median(r["images_per_s"] for r in results if r["side"] == "CLI")
    ui = statistics.median(r["images_per_s"] for r in results if r["side"] == "UI")
    ratios = pair_ratios(results)
    rows = [f"| {r['repeat']} | {r['side']} | {r['images_per_s']:.2f} | {r['train_seconds']:.1f} | "
            f"{r['val_accuracy']:.1%} | {r['load_before']:.2f} |" for r in results]
    return "\n".join([
        f"`{BACKBONE}`, strategy `{args.strategy}`, {args.epochs} epochs, {args.image_size} px, batch 32, "
        f"sample data (shapes), CPU. Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on "
        f"{platform.machine()}, {os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} "
        "threads), Chromium headless with the Train page open.",
        "",
        "| repeat | side | training images/s | training s | val accuracy | load average (1 min) before |",
        "|---|---|---|---|---|---|",
        *rows,
        "",
        f"Median: CLI {cli:.2f} images/s, UI {ui:.2f} images/s, **UI/CLI = {ui / cli:.3f}**. "
        f"UI/CLI within each pair: {', '.join(f'{r:.3f}' for r in ratios)} "
        f"(median {statistics.median(ratios):.3f}).",
    ])


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = pairs(args)
    report = table(args, results)
    print(report)
    if args.markdown:
        args.markdown.parent.mkdir(parents=True, exist_ok=True)
        args.markdown.write_text(f"# Training throughput: app page open vs CLI\n\n{report}\n")


if __name__ == "__main__":
    main()
