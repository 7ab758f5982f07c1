"""One queue per GPU: with N GPUs the registry trains N runs at once, a run takes the first free GPU (or waits for the
one it asked for), a race fans out over every GPU, and CPU runs never wait behind GPU runs.

This machine has no GPU: the tests fake the GPU list at the registry's boundary (`RunRegistry(gpus=[...])`) and train
stand-in runs that wait until the test lets them finish, recording which device they were given.
"""

from __future__ import annotations

import threading
import time

import pytest

from workbench.engine.config import RunConfig
from workbench.runs import registry as registry_module
from workbench.runs.registry import RunRegistry

from .conftest import SHAPES

WAIT_S = 10


class StandInRun:
    """A run that trains until `release()`: enough of `Run` for the registry, and a record of where it trained."""

    made: list[StandInRun] = []

    def __init__(self, config: RunConfig, owner: str | None = None):
        self.config, self.owner = config, owner
        self.id = f"run-{len(self.made)}"
        self.dir = config.runs_path() / self.id
        self.status, self.phase, self.metrics, self.summary = "queued", "waiting to start", [], None
        self.trained_on: str | None = None
        self.started = threading.Event()
        self._release = threading.Event()
        self._done = threading.Event()
        self.made.append(self)

    @property
    def done(self) -> bool:
        return self._done.is_set()

    def run(self) -> None:
        self.status, self.trained_on = "running", self.config.device
        self.started.set()
        self._release.wait(WAIT_S)
        self.status = "finished"
        self._done.set()

    def release(self) -> None:
        self._release.set()
        assert self._done.wait(WAIT_S)

    def stop(self) -> None:
        self._release.set()

    def cancel(self) -> None:
        self.status = "stopped"
        self._done.set()


@pytest.fixture
def two_gpus(monkeypatch, tmp_path):
    StandInRun.made = []
    monkeypatch.setattr(registry_module, "Run", StandInRun)
    registry = RunRegistry(tmp_path / "runs", gpus=["cuda:0", "cuda:1"])
    yield registry
    for run in StandInRun.made:
        run.stop()


def config(device: str = "auto", strategy: str = "linear_probe") -> RunConfig:
    return RunConfig(data=str(SHAPES), backbone="test_resnet", strategy=strategy, weights="none", device=device,
                     epochs=1, image_size=64)


def started(*runs: StandInRun) -> None:
    for run in runs:
        assert run.started.wait(WAIT_S), f"{run.id} never started"


def test_each_gpu_trains_a_run_at_once_and_the_next_takes_the_first_free_gpu(two_gpus):
    first, second, third = (two_gpus.submit(config()) for _ in range(3))
    started(first, second)
    assert {first.trained_on, second.trained_on} == {"cuda:0", "cuda:1"}
    assert not third.started.is_set() and two_gpus.queue_position(third.id) == 1
    freed = second.trained_on
    second.release()
    started(third)
    assert third.trained_on == freed
    assert set(two_gpus.training()) == {"cuda:0", "cuda:1"}


def test_a_cpu_run_never_waits_behind_gpu_runs(two_gpus):
    gpu_runs = [two_gpus.submit(config("cuda")) for _ in range(3)]
    started(*gpu_runs[:2])
    cpu_run = two_gpus.submit(config("cpu"))
    started(cpu_run)
    assert cpu_run.trained_on == "cpu" and not gpu_runs[2].started.is_set()


def test_a_run_for_one_gpu_waits_for_it_while_others_take_the_free_one(two_gpus):
    busy = two_gpus.submit(config("cuda:1"))
    started(busy)
    pinned = two_gpus.submit(config("cuda:1"))
    anywhere = two_gpus.submit(config())
    started(anywhere)
    assert anywhere.trained_on == "cuda:0" and not pinned.started.is_set()
    busy.release()
    started(pinned)
    assert pinned.trained_on == "cuda:1"


def test_a_race_fans_out_over_every_gpu(two_gpus):
    runs = two_gpus.race(config(), ["linear_probe", "partial", "full"])
    started(*runs[:2])
    assert sorted(r.trained_on for r in runs[:2]) == ["cuda:0", "cuda:1"]
    for run in runs[:2]:
        run.release()
    started(runs[2])
    assert all(r.config.device.startswith("cuda:") for r in runs)


def test_a_queued_run_can_be_stopped_before_it_starts(two_gpus):
    runs = [two_gpus.submit(config("cuda:0")) for _ in range(2)]
    started(runs[0])
    two_gpus.stop(runs[1].id)
    assert runs[1].status == "stopped" and runs[1].trained_on is None
    runs[0].release()
    time.sleep(0.2)
    assert runs[1].trained_on is None


def test_devices_this_computer_lacks_are_refused_in_words(tmp_path):
    with pytest.raises(ValueError, match=r"cuda:5: this computer's GPUs are cuda:0, cuda:1"):
        RunRegistry(tmp_path, gpus=["cuda:0", "cuda:1"]).submit(config("cuda:5"))
    with pytest.raises(ValueError, match=r"--device cuda was asked for but no CUDA GPU is visible"):
        RunRegistry(tmp_path, gpus=[]).submit(config("cuda"))
    assert RunRegistry(tmp_path, gpus=[]).devices == ["cpu"]


def test_a_finished_run_says_which_device_trained_it_on_train_and_compare(runs_dir, monkeypatch):
    from workbench.analysis.charts import runs_table
    from workbench.runs import list_runs

    from .conftest import train_page_showing

    registry = RunRegistry(runs_dir, gpus=[])
    run = registry.submit(config())
    assert run.wait(120) and run.status == "finished", run.error
    assert run.summary["device"] == "cpu"
    assert runs_table(list_runs(runs_dir))["device"].tolist() == ["cpu"]
    at = train_page_showing(run, monkeypatch)
    assert any("Device: **cpu**" in c.value for c in at.caption)


def test_the_train_page_offers_each_gpu_on_a_server_with_several(monkeypatch, runs_dir):
    from streamlit.testing.v1 import AppTest

    from ui_common import DATASET, get_registry

    from .conftest import REPO

    monkeypatch.setattr(registry_module, "visible_gpus", lambda: ["cuda:0", "cuda:1"])
    get_registry.clear()
    at = AppTest.from_file(str(REPO / "pages" / "3_train.py"), default_timeout=60)
    at.session_state[DATASET] = str(SHAPES)
    at.run()
    assert at.selectbox(key="train.device").options == ["the first free GPU", "cuda:0", "cuda:1", "the CPU (slow)"]
    get_registry.clear()  # the GPUs are fake: the next test's page gets the real (none)
