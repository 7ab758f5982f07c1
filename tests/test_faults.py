"""Faults during training: the loss blows up, memory runs out, the process is killed, the disk fills up. Each time
the run ends with a plain explanation, the last good weights stay loadable, and other runs are not touched."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest
import timm.models.resnet
import torch
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest

from ui_common import RUN_ID, get_registry
from workbench import runs
from workbench.analysis import charts
from workbench.core import runfolder
from workbench.engine import Run, loop
from workbench.engine import run as train
from workbench.engine.config import RunConfig
from workbench.runs.registry import RunRegistry

from .conftest import REPO, SHAPES

FAST = dict(backbone="test_resnet", strategy="full", image_size=64, batch_size=32, seed=0)


def copy_tiny_shapes(dest: Path, classes: int = 3, per_class: int = 8) -> Path:
    """A few images of a few classes of the sample shapes: enough to train on, cheap to decode and train on."""
    for folder in sorted(SHAPES.iterdir())[:classes]:
        (dest / folder.name).mkdir(parents=True)
        for image in sorted(folder.iterdir())[:per_class]:
            shutil.copy(image, dest / folder.name / image.name)
    return dest


@pytest.fixture(scope="module")
def tiny(tmp_path_factory) -> dict:
    """FAST on the tiny dataset (18 training and 6 validation images)."""
    return {**FAST, "data": str(copy_tiny_shapes(tmp_path_factory.mktemp("data") / "shapes"))}


def _after_epoch(run: Run, epoch: int) -> threading.Event:
    """An event set as soon as `epoch` has ended (from the training thread, before the next batch)."""
    reached = threading.Event()
    run.subscribe(lambda e: reached.set() if e.kind == "epoch_end" and e.data["metrics"]["epoch"] == epoch else None)
    return reached


def _files(folder: Path) -> dict[str, str]:
    return {p.relative_to(folder).as_posix(): hashlib.sha256(p.read_bytes()).hexdigest()
            for p in sorted(folder.rglob("*")) if p.is_file()}


# -------------------------------------------------------------------------------------------------------------------
# NaN / inf loss


def test_a_loss_that_becomes_nan_stops_the_run_keeps_the_last_good_epoch_and_says_lower_the_lr(runs_dir, monkeypatch,
                                                                                               tiny):
    run = Run(RunConfig(**{**tiny, "batch_size": 8}, epochs=4, lr=5e-4))
    blown_up = _after_epoch(run, 1)
    saved: dict[int, dict[str, torch.Tensor]] = {}
    save = runs.save_run_model

    def record(run_dir, model, info, epoch=None):
        saved[epoch] = {k: v.detach().clone() for k, v in model.state_dict().items()}
        save(run_dir, model, info, epoch)

    step = torch.optim.AdamW.step

    def exploding_step(self, *args, **kwargs):
        out = step(self, *args, **kwargs)
        if blown_up.is_set():  # what a far too high learning rate does: the weights overflow
            for group in self.param_groups:
                for p in group["params"]:
                    p.data.fill_(float("inf"))
        return out

    # the loop saves each better epoch, the run saves the end; both look the function up in their own module
    monkeypatch.setattr(loop, "save_run_model", record)
    monkeypatch.setattr(train, "save_run_model", record)
    monkeypatch.setattr(torch.optim.AdamW, "step", exploding_step)
    run.run()

    assert run.status == "failed"
    assert "became nan at epoch 2, batch 2" in run.error
    assert "learning rate is probably too high" in run.hint and "lr-find" in run.hint
    assert "after epoch 1 is kept" in run.hint
    summary = json.loads((run.dir / runs.SUMMARY_FILE).read_text())
    assert summary["status"] == "failed" and summary["error"] == run.error
    assert summary["epochs_completed"] == 1 and summary["best_epoch"] == 1
    assert summary["val_accuracy"] == run.metrics[0]["val_acc"]
    # the file on disk holds exactly the weights of epoch 1, all finite, and they load into a fresh model
    weights = load_file(str(run.dir / runs.MODEL_FILE))
    assert list(saved) == [1] and runs.saved_epoch(run.dir) == 1
    assert all(torch.equal(weights[k], saved[1][k]) for k in weights)
    assert all(torch.isfinite(w.float()).all() for w in weights.values())
    runs.load_model(run.dir)
    assert not (run.dir / runs.LIVE_FILE).exists()


# -------------------------------------------------------------------------------------------------------------------
# Out of memory


@pytest.mark.parametrize("error", [
    torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB"),
    RuntimeError("[enforce fail at alloc_cpu.cpp:117] DefaultCPUAllocator: can't allocate memory: you tried to "
                 "allocate 4294967296 bytes. Error code 12 (Cannot allocate memory)"),
], ids=["gpu", "cpu"])
def test_out_of_memory_names_the_batch_size_suggests_a_smaller_one_and_the_next_run_trains(runs_dir, monkeypatch,
                                                                                            tiny, error):
    calls = {"train": 0, "released": 0}
    forward = timm.models.resnet.ResNet.forward

    def hungry_forward(self, x):
        if self.training:
            calls["train"] += 1
            if calls["train"] == 2:
                raise error
        return forward(self, x)

    release = train.release_memory
    monkeypatch.setattr(train, "release_memory", lambda device: calls.__setitem__("released", 1) or release(device))
    monkeypatch.setattr(timm.models.resnet.ResNet, "forward", hungry_forward)
    registry = RunRegistry(runs_dir)
    failed = registry.submit(RunConfig(**{**tiny, "batch_size": 16}, epochs=1))
    assert failed.wait(120)
    assert failed.status == "failed"
    assert failed.error.startswith("Out of memory while training with batch size 16 at 64 px")
    assert "batch size 8" in failed.hint and "given back" in failed.hint
    assert calls["released"] == 1
    assert registry.view(failed.id).error == failed.error

    monkeypatch.setattr(timm.models.resnet.ResNet, "forward", forward)
    after = registry.submit(RunConfig(**{**tiny, "batch_size": 8}, epochs=1))
    assert after.wait(120) and after.status == "finished", after.error


def test_release_memory_empties_the_gpu_cache(monkeypatch):
    emptied = []
    monkeypatch.setattr(torch.cuda, "empty_cache", lambda: emptied.append(True))
    train.release_memory(torch.device("cpu"))
    assert emptied == []
    train.release_memory(torch.device("cuda"))
    assert emptied == [True]


# -------------------------------------------------------------------------------------------------------------------
# Killed mid-run


def test_a_run_killed_mid_training_shows_as_interrupted_with_its_epochs_and_a_loadable_checkpoint(runs_dir, tiny):
    command = [sys.executable, "-m", "workbench", "train", "--data", tiny["data"], "--backbone", "test_resnet",
               "--strategy", "full", "--epochs", "500", "--image-size", "64", "--batch-size", "32",
               "--runs-dir", str(runs_dir)]
    process = subprocess.Popen(command, cwd=REPO, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL,
                               env={**os.environ, "HF_HUB_OFFLINE": "1"})
    try:
        deadline = time.time() + 180
        while not any(runs.read_jsonl(p) for p in runs_dir.glob(f"*/{runs.METRICS_FILE}")):
            assert process.poll() is None, "the training process ended early"
            assert time.time() < deadline, "no epoch was recorded in time"
            time.sleep(0.2)
        [live] = runs.list_runs(runs_dir)
        assert live.status == "running"  # another process trains it: not mistaken for an interrupted run
        assert RunRegistry(runs_dir).view(live.id).elsewhere
    finally:
        process.send_signal(signal.SIGKILL)
        process.wait(30)

    [record] = runs.list_runs(runs_dir)
    assert record.summary is None and record.status == "interrupted"
    assert len(record.metrics) >= 1 and [m["epoch"] for m in record.metrics] == list(range(1, len(record.metrics) + 1))
    assert runs.saved_epoch(record.dir) >= 1
    loaded = runs.load_model(record.dir)
    assert loaded.class_names == ["circle", "cross", "square"]
    view = RunRegistry(runs_dir).view(record.id)
    assert view.status == "interrupted" and view.terminal and not view.live
    assert view.explanation().startswith("Interrupted")
    assert len(view.metrics) == len(record.metrics) and view.kept_epoch == runs.saved_epoch(record.dir)
    assert list(charts.runs_table([record])["status"]) == ["interrupted"]
    assert not list(runs_dir.rglob("*.tmp"))

    get_registry.clear()  # the app starting again after the kill
    page = AppTest.from_file(str(REPO / "pages" / "3_train.py"), default_timeout=60)
    page.session_state[RUN_ID] = record.id
    page.run()
    assert not page.exception
    warning = "\n".join(w.value for w in page.warning)
    assert "**Interrupted:**" in warning and f"after epoch {view.kept_epoch} is saved" in warning
    assert all(button.key != "stop" for button in page.button)
    get_registry.clear()


def test_a_live_marker_counts_only_while_its_own_process_runs(tmp_path, monkeypatch):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    runs.write_json(run_dir / runs.CONFIG_FILE, {"strategy": "full"})
    assert runs.load_run(run_dir).status == "interrupted"  # no marker: whatever trained it is gone
    runs.mark_live(run_dir)
    assert runs.load_run(run_dir).status == "running"
    marker = json.loads((run_dir / runs.LIVE_FILE).read_text())
    # the same pid, but a process started at another time (after a restart the app may get the old pid back)
    runs.write_json(run_dir / runs.LIVE_FILE, {**marker, "started": marker["started"] - 3600})
    assert runs.load_run(run_dir).status == "interrupted"
    runs.write_json(run_dir / runs.LIVE_FILE, {**marker, "host": "elsewhere"})  # a shared runs folder
    assert runs.load_run(run_dir).status == "running"  # written just now
    old = time.time() - 2 * runs.STALE_AFTER_S
    for path in run_dir.iterdir():
        os.utime(path, (old, old))
    assert runs.load_run(run_dir).status == "interrupted"
    runs.clear_live(run_dir)
    assert not (run_dir / runs.LIVE_FILE).exists()


def test_a_torn_last_log_line_is_skipped(tmp_path):
    log = tmp_path / runs.METRICS_FILE
    runs.append_jsonl(log, {"epoch": 1})
    runs.append_jsonl(log, {"epoch": 2})
    with log.open("a") as f:
        f.write('{"epoch": 3, "val_a')  # the process died in the middle of this write
    assert runs.read_jsonl(log) == [{"epoch": 1}, {"epoch": 2}]


# -------------------------------------------------------------------------------------------------------------------
# Disk full


def _disk_full_for(monkeypatch, applies) -> None:
    """Writes of files for which `applies(path)` is true fail as on a full disk, once their data is written."""
    flush = runfolder._flush_to_disk

    def full(path: Path) -> None:
        if applies(path):
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        flush(path)

    monkeypatch.setattr(runfolder, "_flush_to_disk", full)


def test_an_atomic_write_that_fails_leaves_the_old_file_and_no_temporary_file(tmp_path, monkeypatch):
    path = tmp_path / "summary.json"
    runs.write_json(path, {"status": "finished"})
    _disk_full_for(monkeypatch, lambda p: True)
    with pytest.raises(OSError, match="No space left"):
        runs.write_json(path, {"status": "failed"})
    assert json.loads(path.read_text()) == {"status": "finished"}
    assert [p.name for p in tmp_path.iterdir()] == ["summary.json"]


def test_disk_full_while_saving_is_reported_and_older_runs_are_untouched(runs_dir, monkeypatch, tiny):
    older = Run(RunConfig(**tiny, epochs=1)).run()
    assert older.status == "finished", older.error
    before = _files(runs_dir)

    # 1. The weights (13 MB for a real backbone) no longer fit; the small summary still does.
    with pytest.MonkeyPatch.context() as patch:
        _disk_full_for(patch, lambda p: runs.MODEL_FILE in p.name)
        no_room = Run(RunConfig(**tiny, epochs=1)).run()
    assert no_room.status == "failed"
    assert no_room.error.startswith("The disk is full:") and runs.MODEL_FILE in no_room.error
    assert "Free some disk space" in no_room.hint and "untouched" in no_room.hint
    assert runs.load_run(no_room.dir).summary.error == no_room.error
    assert not (no_room.dir / runs.MODEL_FILE).exists()

    # 2. The disk fills up after the first epoch: nothing more can be written, not even the summary.
    run = Run(RunConfig(**tiny, epochs=3))
    filled = _after_epoch(run, 1)
    _disk_full_for(monkeypatch, lambda p: filled.is_set())
    run.run()
    assert run.done and run.status == "failed" and run.error.startswith("The disk is full:")
    record = runs.load_run(run.dir)
    assert record.status == "interrupted" and len(record.metrics) >= 1  # the epochs logged before it stopped
    assert runs.saved_epoch(run.dir) == 1  # the last checkpoint written before the disk filled up
    runs.load_model(run.dir)

    assert {k: v for k, v in _files(runs_dir).items() if k.startswith(older.id)} == before
    assert not list(runs_dir.rglob("*.tmp"))


def test_reading_an_interrupted_run_removes_what_a_killed_write_left_half_done(tmp_path):
    """A kill in the middle of a checkpoint leaves the old weights and a half-written temporary copy: reading the run
    as interrupted removes the copy of the dead writer, never a live writer's."""
    run_dir = tmp_path / "20261201-000000-full-x-0000"
    run_dir.mkdir()
    runs.write_json(run_dir / runs.CONFIG_FILE, {"data": "x", "strategy": "full", "backbone": "test_resnet"})
    dead = run_dir / f".{runs.MODEL_FILE}.{2**22 + 12345}-1.tmp"  # above Linux's default pid_max: no such process
    alive = run_dir / f".{runs.MODEL_FILE}.{os.getpid()}-1.tmp"
    dead.write_bytes(b"half")
    alive.write_bytes(b"being written")
    assert runs.load_run(run_dir).status == "interrupted"
    assert not dead.exists() and alive.exists()
