"""The run registry: one training at a time per device, in submission order; stop works queued or running; a race
gives every strategy the same budget."""

import time

import pytest

from workbench.core.runfolder import run_folder
from workbench.engine.config import RunConfig
from workbench.runs.registry import RunRegistry
from workbench.strategies import get_strategy

from .conftest import SHAPES

FAST = dict(data=str(SHAPES), backbone="test_resnet", image_size=64, batch_size=32, seed=0)


def _training_interval(run) -> tuple[float, float]:
    """From the run's first event (it left the queue) to its last (finished, stopped or failed)."""
    events = run.events_since(0)
    return events[0].time, events[-1].time


def _wait_for_batch(run, timeout: float = 60) -> None:
    deadline = time.time() + timeout
    while not run.batches:
        assert time.time() < deadline, f"no batch within {timeout} s ({run.status}: {run.error})"
        time.sleep(0.05)


@pytest.fixture
def registry(runs_dir):
    registry = RunRegistry(runs_dir)
    yield registry
    for run in registry.live():
        registry.stop(run.id)
    for run in registry.runs():
        run.wait(60)


def test_submitted_runs_train_one_at_a_time_in_order(registry, runs_dir):
    first = registry.submit(RunConfig(**FAST, strategy="full", epochs=1))
    second = registry.submit(RunConfig(**FAST, strategy="scratch", epochs=1))
    assert second.status == "queued"
    assert registry.runs() == [second, first] and registry.latest() is second
    assert first.wait(120) and second.wait(120)
    assert first.status == second.status == "finished", (first.error, second.error)
    first_start, first_end = _training_interval(first)
    second_start, second_end = _training_interval(second)
    assert first_end <= second_start, "the second run started before the first one ended"
    # a fresh registry (e.g. after a server restart) finds both on disk
    fresh = RunRegistry(runs_dir)
    assert [r.id for r in fresh.records()] == sorted([first.id, second.id], reverse=True)
    view = fresh.view(first.id)
    assert view.status == "finished" and view.terminal and len(view.metrics) == 1
    assert view.class_names == ["circle", "cross", "square", "star", "triangle"]


def test_stop_removes_a_queued_run_and_stops_a_running_one_within_a_batch(registry, runs_dir):
    running = registry.submit(RunConfig(**{**FAST, "batch_size": 8}, strategy="full", epochs=50))
    queued = registry.submit(RunConfig(**FAST, strategy="full", epochs=1))
    _wait_for_batch(running)
    assert registry.current() is running
    assert registry.queue_position(queued.id) == 1
    assert registry.view(queued.id).explanation().startswith("Waiting in the queue: 1 run before this one")

    registry.stop(queued.id)
    assert queued.done and queued.status == "stopped"
    assert not queued.dir.exists()  # nothing written for a run that never started

    batches_when_stopped = len(running.batches)
    registry.stop(running.id)
    assert running.wait(30)
    assert running.status == "stopped"
    assert len(running.batches) <= batches_when_stopped + 1
    assert running.summary["status"] == "stopped" and running.summary["val_accuracy"] is not None
    assert registry.live() == [] and registry.current() is None


def test_a_submit_after_the_queue_emptied_still_runs(registry):
    run = registry.submit(RunConfig(**FAST, strategy="partial", freeze_depth=99))
    assert run.wait(60) and run.status == "failed" and "--freeze-depth 99" in run.error
    again = registry.submit(RunConfig(**FAST, strategy="partial", freeze_depth=98))
    assert again.wait(60) and again.status == "failed"  # a new worker picked it up


def test_race_gives_every_strategy_the_same_budget(registry):
    strategies = ["linear_probe", "partial", "full", "scratch"]
    runs = registry.race(RunConfig(data=str(SHAPES), backbone="test_resnet", strategy="scratch", seed=3),
                         strategies)
    for run in runs:
        registry.stop(run.id)
    assert [r.config.strategy for r in runs] == strategies
    full = get_strategy("full")
    assert {r.config.epochs for r in runs} == {full.default_epochs}
    assert {r.config.image_size for r in runs} == {160}  # test_resnet's native size, the CPU cap for 'full'
    assert {(r.config.data, r.config.backbone, r.config.seed, r.config.batch_size) for r in runs} == {
        (str(SHAPES), "test_resnet", 3, 32)}
    assert all(r.config.lr is None for r in runs)  # each strategy keeps its own default
    weights = {r.config.strategy: r.config.weights for r in runs}
    assert weights == {"linear_probe": "auto", "partial": "auto", "full": "auto", "scratch": "none"}
    assert all(r.wait(60) for r in runs)
    assert all(r.status == "stopped" for r in runs)


def test_race_keeps_epochs_and_image_size_that_were_chosen(registry):
    runs = registry.race(RunConfig(**FAST, strategy="full", epochs=2), ["linear_probe", "full"])
    for run in runs:
        registry.stop(run.id)
    assert [(r.config.epochs, r.config.image_size) for r in runs] == [(2, 64), (2, 64)]


def test_freeze_sweep_queues_partial_at_every_depth(registry):
    runs = registry.freeze_sweep(RunConfig(**FAST, epochs=1), depths=None)
    assert [run.config.freeze_depth for run in runs] == list(range(len(runs)))
    assert {run.config.strategy for run in runs} == {"partial"} and len(runs) >= 3
    for run in runs:
        registry.stop(run.id)


def test_a_run_id_from_a_url_never_reaches_outside_the_runs_folder(tmp_path):
    """?run= is whatever the browser sends: only a plain run id under the runs folder is ever read."""
    runs_dir = tmp_path / "runs"
    (runs_dir / "20261201-120000-full-x-0000").mkdir(parents=True)
    outside = tmp_path / "secret"
    outside.mkdir()
    (outside / "config.json").write_text("{}")
    (runs_dir / "link").symlink_to(outside)
    registry = RunRegistry(runs_dir)
    for hostile in ("../secret", str(outside), "..", ".", "link", "a/../../secret", "", "x\x00y"):
        assert registry.view(hostile) is None, hostile
    assert run_folder(runs_dir, "20261201-120000-full-x-0000") == (runs_dir / "20261201-120000-full-x-0000").resolve()
