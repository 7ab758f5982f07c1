"""bench/gpu_check.py keeps working between the rare sessions that have a GPU: its CPU smoke run goes through every
step (the engine, the plain loop, the registry, the out-of-memory path) and fills every row of its table."""

import json
import os
import subprocess
import sys

from tests.conftest import REPO

# The rows a reader of bench/results/gpu-check.md looks for: removing one is a change to announce, not an accident.
ROWS = [
    "What this is", "Machine", "Software", "Date (UTC)", "Starting weights",
    "First chart point, cold: submit → first batch / first epoch",
    "Precision and memory format the engine trains in", "Training step alone, random batches: images/s",
    "Engine, full fine-tune: training images/s", "Plain timm + torch loop: training images/s", "Engine vs plain",
    "Val accuracy after the last epoch, engine / plain (sanity)", "Engine's peak memory", "Too-large batch",
    "Memory given back after it", "Next run after it", "Two runs queued on one GPU",
    "torch.compile, training step: compiled vs uncompiled", "torch.compile, feature pass: compiled vs uncompiled",
    "Whole check",
]


def test_cpu_smoke_run_fills_every_row_and_says_it_is_not_a_gpu_figure(tmp_path):
    result = subprocess.run([sys.executable, str(REPO / "bench" / "gpu_check.py"), "--cpu-smoke",
                             "--out-dir", str(tmp_path)], capture_output=True, text=True, timeout=240, cwd=REPO,
                            env={**os.environ, "PYTHONPATH": str(REPO), "HF_HUB_OFFLINE": "1"})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]

    table = (tmp_path / "gpu-check-cpu-smoke.md").read_text()
    assert table.strip() in result.stdout  # printed and written alike
    assert not (tmp_path / "gpu-check.md").exists()  # a smoke run never takes the GPU result's name
    lines = [line for line in table.splitlines() if line.startswith("| ")]
    assert [line.split(" | ")[0].removeprefix("| ") for line in lines[1:]] == ROWS
    assert "| What this is | CPU smoke run, not a GPU measurement |" in table

    report = json.loads((tmp_path / "gpu-check-cpu-smoke.json").read_text())
    assert report["mode"] == "CPU smoke run, not a GPU measurement" and report["problems"] == []
    results = {row["label"]: row["result"] for row in report["rows"].values()}
    assert list(results) == ROWS
    assert all(value and value not in ("error", "not reached") for value in results.values()), results
    assert results["Two runs queued on one GPU"].startswith("both finished")
    assert results["Next run after it"].startswith("finished")
    assert "out-of-memory message" in results["Too-large batch"]
    assert "simulated" in report["rows"]["oom"]["details"]  # the CPU stand-in says what it is
    assert report["raw"]["engine"]["images_per_s"] > 0 and report["raw"]["plain"]["images_per_s"] > 0
    assert 0 < report["raw"]["first_point"]["first_batch_s"] <= report["raw"]["first_point"]["first_epoch_end_s"]
