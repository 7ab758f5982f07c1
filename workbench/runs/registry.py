"""The run registry: every run this server started, a queue per device so one training at a time uses it, and a
uniform read-only view of a run, whether it is live in memory or only recorded on disk.

One registry is shared by every browser session (the app keeps it in `st.cache_resource`), so a refresh, a second tab
or a second user finds the same runs; a second run waits in the queue instead of fighting the first for the device.
"""

from __future__ import annotations

import dataclasses
import os
import threading
import traceback
from collections import deque
from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

import torch

from workbench import runs
from workbench.core.classroom import ME, Limits, Person
from workbench.engine import TERMINAL, Run
from workbench.engine.config import RUNS_DIR_ENV, RunConfig
from workbench.models.backbones import backbone_info, check_backbone_name, model_groups
from workbench.runs import access
from workbench.runs.cluster import ADDRESS_ENV, CPUS_ENV, RayBackend

LIVE = ("queued", "preparing", "running")
ELSEWHERE = "training in another process"  # the phase of a run that is live on disk but not in this registry
KEEP_IN_MEMORY = 100  # finished runs beyond this many are dropped from memory; their records stay on disk
RACE_BUDGET_STRATEGY = "full"  # a race gives every strategy the epochs and image size this one would get


def planned_config(config: RunConfig) -> RunConfig:
    """The config with every default filled in, as the run will resolve it, without building the model. Raises
    BackboneError (a ValueError) for a backbone timm does not know."""
    check_backbone_name(config.backbone)
    return config.resolved(native_image_size=backbone_info(config.backbone).input_size)


def race_budget(config: RunConfig) -> RunConfig:
    """The epochs and image size every strategy of a race gets: the config's, or what 'full' would get."""
    return planned_config(dataclasses.replace(config, strategy=RACE_BUDGET_STRATEGY))


def backbone_race_configs(config: RunConfig, backbone: str, strategies: list[str]) -> list[RunConfig]:
    """What `backbone` trains in a backbone race, one config per strategy, all at one budget: the config's epochs and
    image size where it sets them, else what `planned_config` gives this backbone (one strategy) or `race_budget`
    (several, as a strategy race). Raises BackboneError (a ValueError) for a name timm does not know."""
    config = dataclasses.replace(config, backbone=backbone)
    if len(strategies) == 1:
        budget = planned_config(dataclasses.replace(config, strategy=strategies[0]))
    else:
        budget = race_budget(config)
    # "auto" for all: a weights file belongs to one architecture, and 'scratch' turns "auto" into "none" itself
    return [dataclasses.replace(config, strategy=name, epochs=budget.epochs, image_size=budget.image_size,
                                weights="auto") for name in strategies]


CPU = "cpu"
ANY_GPU = "cuda"  # the queue of runs that take whichever GPU is free first
CLUSTER = "ray"  # the one queue of a backend with slots (a Ray cluster); its slots are the devices "ray:0", "ray:1", …


def visible_gpus() -> list[str]:
    """The GPUs this process may use, as torch names them: "cuda:0", "cuda:1", …"""
    return [f"cuda:{i}" for i in range(torch.cuda.device_count())] if torch.cuda.is_available() else []


class RunRegistry:
    """Thread-safe home of this server's runs. `submit` returns at once; one worker thread per device (the CPU and
    each GPU) trains the queued runs one after another, so N GPUs train N runs at once and a CPU run never waits
    behind a GPU run. A run for "any GPU" goes to the first GPU that is free; a run for "cuda:N" waits for that GPU.
    Workers exit when there is nothing left for them and are restarted by the next submit.

    `gpus` replaces the GPUs torch sees (tests fake several GPUs here, at the registry's boundary); `backend` runs a
    placed run (default: `backend_from_env()`, else in the worker thread itself). A backend with `slots` (a Ray
    cluster) gets every run in one queue, trained up to `slots` at once; each run keeps its device as chosen, for the
    node that trains it to resolve.
    """

    def __init__(self, runs_dir: str | Path | None = None, gpus: list[str] | None = None,
                 backend: Backend | None = None, limits: Limits | None = None):
        self._runs_dir = Path(runs_dir) if runs_dir is not None else None
        self.limits = limits or Limits()  # a classroom's per-person limits (the teacher, and ME, have none)
        self._gpus = list(gpus) if gpus is not None else visible_gpus()
        self.backend = backend or backend_from_env() or LocalBackend()
        self._lock = threading.Lock()
        self._runs: dict[str, Run] = {}  # in submission order
        self._queues: dict[str, deque[Run]] = {}  # "cpu", "cuda" (any GPU), "cuda:N" (that GPU), "ray" -> waiting runs
        self._workers: dict[str, threading.Thread] = {}  # device -> its worker
        self._current: dict[str, Run] = {}  # device -> the run it trains now

    @property
    def runs_dir(self) -> Path:
        """Where this registry's runs are recorded (read when asked, so tests can point it elsewhere)."""
        return self._runs_dir or Path(os.environ.get(RUNS_DIR_ENV) or "runs")

    @property
    def devices(self) -> list[str]:
        """Where this registry trains: the CPU, then each GPU ("cuda:0", …), each with a queue of its own."""
        return [CPU, *self._gpus]

    # -- starting and stopping ------------------------------------------------------------------------------------
    def submit(self, config: RunConfig, owner: Person = ME) -> Run:
        """Queue a run on its device; it starts when that device (for "auto" or "cuda": the first free GPU) is done
        with the runs queued before it. Raises ValueError for a device this computer does not have, AccessError when
        `owner` already has as many runs queued or training as the class allows, or too little disk left."""
        if config.runs_dir is None:
            config = dataclasses.replace(config, runs_dir=str(self.runs_dir))
        queue = self._queue_for(config.device)
        serving = self._serving(queue)  # outside the lock: a cluster may take a moment to say how big it is
        if owner is not ME:
            access.check_submit(owner, self.limits, sum(r.owner == owner.name for r in self.live()))
            access.check_disk(owner, self.limits, access.disk_used(owner, runs.list_runs(self.runs_dir)), 0,
                              "Another run")
        run = Run(config, owner=None if owner is ME else owner.name)
        with self._lock:
            self._runs[run.id] = run
            self._queues.setdefault(queue, deque()).append(run)
            for device in serving:
                if device not in self._workers:
                    worker = threading.Thread(target=self._work, args=(device,), name=f"runs-{device}", daemon=True)
                    self._workers[device] = worker
                    worker.start()
            self._forget_old_runs()
        return run

    def _queue_for(self, device: str) -> str:
        if self._slots() is not None:
            return CLUSTER
        if device == CPU or (device == "auto" and not self._gpus):
            return CPU
        if not self._gpus:
            raise ValueError(f"--device {device} was asked for but no CUDA GPU is visible. Use --device auto or cpu.")
        if device in ("auto", ANY_GPU):
            return ANY_GPU
        if device not in self._gpus:
            raise ValueError(f"--device {device}: this computer's GPUs are {', '.join(self._gpus)}. Use --device cuda "
                             "to take the first free one.")
        return device

    def _serving(self, queue: str) -> list[str]:
        """The devices whose workers take runs from `queue`."""
        if queue == CLUSTER:
            return [f"{CLUSTER}:{i}" for i in range(self._slots() or 1)]
        return list(self._gpus) if queue == ANY_GPU else [queue]

    def _slots(self) -> int | None:
        """How many runs the backend trains at once, if it says (a cluster); None: one per device of this computer."""
        return getattr(self.backend, "slots", None)

    def race(self, config: RunConfig, strategies: list[str], owner: Person = ME) -> list[Run]:
        """Queue one run per strategy on the same data, backbone, seed, epochs and image size. Epochs and image size
        are the config's, or what the 'full' strategy would get; each strategy keeps its own learning rate unless
        the config sets one. With several GPUs the runs train at once, one per free GPU."""
        budget = race_budget(config)
        # 'scratch' turns weights 'auto' into 'none'; the pretrained strategies of the race need it back.
        weights = "auto" if config.weights == "none" else config.weights
        return [self.submit(dataclasses.replace(config, strategy=name, epochs=budget.epochs,
                                                image_size=budget.image_size, weights=weights), owner)
                for name in strategies]

    def backbone_race(self, config: RunConfig, backbones: list[str], strategies: list[str] | None = None,
                      owner: Person = ME) -> list[Run]:
        """Queue one run per backbone (per backbone and strategy for a grid) on the same data, seed and epochs, each
        backbone's image size by the same rule: the config's, else what `planned_config` gives that backbone (one
        strategy) or `race_budget` (several, as in `race`). `strategies` defaults to the config's own. Each backbone
        starts from the best weights available here (random ones when it has none: its record says so). Every name
        is checked before anything is queued, so a typo queues nothing (BackboneError, a ValueError)."""
        strategies = strategies or [config.strategy]
        plans = [backbone_race_configs(config, backbone, strategies) for backbone in backbones]  # may raise: first
        return [self.submit(run_config, owner) for plan in plans for run_config in plan]

    def freeze_sweep(self, config: RunConfig, depths: list[int] | None = None, owner: Person = ME) -> list[Run]:
        """Queue `partial` at each freeze depth (default: every depth the backbone has), same budget for all: the
        runs behind the "how much to freeze" plot of accuracy and time against depth."""
        if depths is None:
            check_backbone_name(config.backbone)
            depths = list(range(len(model_groups(config.backbone, 2))))
        return [self.submit(dataclasses.replace(config, strategy="partial", freeze_depth=depth), owner)
                for depth in depths]

    def stop(self, run_id: str, viewer: Person = ME) -> None:
        """Stop a run: a running one after its current batch (keeping what it learned), a queued one at once.
        AccessError unless `viewer` may stop it (the teacher, or whoever started it)."""
        with self._lock:
            run = self._runs.get(run_id)
            if run is None or run.done:
                return
        access.check_change(viewer, run.owner, run.dir, run.id, "stop")
        with self._lock:
            if run.done:
                return
            queue = next((q for q in self._queues.values() if run in q), None)
            if queue is not None:
                queue.remove(run)
                run.cancel()
                return
        self.backend.stop(run)

    def _next_for(self, device: str) -> Run | None:
        """The next run `device` trains: one queued for it by name first, then one for any GPU."""
        if device.startswith(f"{CLUSTER}:"):
            queues: tuple[str, ...] = (CLUSTER,)
        else:
            queues = (device, ANY_GPU) if device != CPU else (CPU,)
        for queue in queues:
            if self._queues.get(queue):
                return self._queues[queue].popleft()
        return None

    def _work(self, device: str) -> None:
        while True:
            with self._lock:
                run = self._next_for(device)
                if run is None:
                    del self._workers[device]
                    self._current.pop(device, None)
                    return
                self._current[device] = run
                if run.config.device != device and not device.startswith(f"{CLUSTER}:"):
                    # placed: "auto" or "cuda" becomes the device that trains it (a cluster's node resolves it there)
                    run.config = dataclasses.replace(run.config, device=device)
            try:
                self.backend.execute(run)  # reports failures in the run's status; anything else is a bug
            except Exception:  # noqa: BLE001 - one broken run must not stall the runs queued behind it
                traceback.print_exc()

    def _forget_old_runs(self) -> None:
        finished = [run_id for run_id, run in self._runs.items() if run.done]
        for run_id in finished[:max(0, len(finished) - KEEP_IN_MEMORY)]:
            del self._runs[run_id]

    # -- reading --------------------------------------------------------------------------------------------------
    def get(self, run_id: str) -> Run | None:
        with self._lock:
            return self._runs.get(run_id)

    def runs(self) -> list[Run]:
        """Runs in memory, newest first."""
        with self._lock:
            return list(reversed(self._runs.values()))

    def live(self) -> list[Run]:
        """Queued and training runs, newest first."""
        return [run for run in self.runs() if run.status in LIVE]

    def current(self) -> Run | None:
        """The run training now (on any device), if any."""
        with self._lock:
            return next((run for run in self._current.values() if not run.done), None)

    def training(self) -> dict[str, Run]:
        """device -> the run it trains now."""
        with self._lock:
            return {device: run for device, run in self._current.items() if not run.done}

    def latest(self) -> Run | None:
        """The most recently submitted run."""
        with self._lock:
            return next(reversed(self._runs.values()), None)

    def queue_position(self, run_id: str) -> int | None:
        """How many runs will train before this queued one (the one training now included); None if not queued."""
        serving_of = {name: self._serving(name) for name in list(self._queues)}  # outside the lock, as in submit
        with self._lock:
            for name, queue in self._queues.items():
                ids = [run.id for run in queue]
                if run_id in ids:
                    serving = serving_of.get(name) or []
                    all_busy = all(d in self._current and not self._current[d].done for d in serving)
                    return ids.index(run_id) + int(all_busy)
        return None

    def view(self, run_id: str, viewer: Person = ME) -> RunView | None:
        """The run from memory if it is there, else from its record on disk; None if it is in neither, or if
        `viewer` may not see it (the same answer, so nobody can probe for other people's run ids)."""
        run = self.get(run_id)
        if run is not None:
            if not access.visible(viewer, run.owner, run.dir):
                return None
            return RunView.of_run(run, self.queue_position(run_id))
        run_dir = runs.run_folder(self.runs_dir, run_id)  # the id may come from a URL: never a path
        if run_dir is None or not (run_dir / runs.CONFIG_FILE).exists():
            return None
        record = runs.load_run(run_dir)
        return RunView.of_record(record) if access.can_see(viewer, record) else None

    def records(self, viewer: Person = ME) -> list[runs.RunRecord]:
        """Every run `viewer` may see, newest first: those on disk, plus the live ones not written yet (queued or
        preparing)."""
        on_disk = runs.list_runs(self.runs_dir)
        known = {record.id for record in on_disk}
        fresh = [_record_of(run) for run in self.runs() if run.id not in known and run.status in LIVE]
        mine = [record for record in fresh + on_disk if access.can_see(viewer, record)]
        return sorted(mine, key=lambda record: record.id, reverse=True)

    def delete(self, run_id: str, viewer: Person = ME) -> None:
        """Delete an ended run's folder (AccessError unless `viewer` may: the teacher, or whoever started it)."""
        run_dir = runs.run_folder(self.runs_dir, run_id)
        record = runs.load_run(run_dir) if run_dir is not None and (run_dir / runs.CONFIG_FILE).exists() else None
        access.require_visible(viewer, record, run_id)
        access.delete_run(viewer, run_dir)
        with self._lock:
            self._runs.pop(run_id, None)

    def share(self, run_id: str, viewer: Person, shared: bool = True) -> None:
        """The teacher shares a run with the class, or stops sharing it."""
        run_dir = runs.run_folder(self.runs_dir, run_id)
        if run_dir is None or not (run_dir / runs.CONFIG_FILE).exists():
            raise access.AccessError(f"There is no run '{run_id}' to share.")
        access.share(viewer, run_dir, shared)

    def statuses(self) -> dict[str, str]:
        """run id -> status, for the runs in memory (queued and preparing runs have nothing on disk yet)."""
        return {run.id: run.status for run in self.runs()}


class Backend(Protocol):
    """Where a placed run trains: `execute` trains it to the end (its status says how it ended), `stop` asks it to
    stop after its current batch. `slots`, when not None, is how many runs it trains at once (a cluster): the
    registry then keeps one queue for every run and trains up to that many side by side."""

    slots: int | None

    def execute(self, run: Run) -> None: ...

    def stop(self, run: Run) -> None: ...


def backend_from_env() -> Backend | None:
    """A RayBackend for the cluster named in $WORKBENCH_RAY_ADDRESS ("host:6379"), each run asking for
    $WORKBENCH_RAY_CPUS_PER_RUN CPUs (default 1); None when no address is set."""
    address = os.environ.get(ADDRESS_ENV, "").strip()
    if not address:
        return None
    cpus = os.environ.get(CPUS_ENV, "").strip() or "1"
    try:
        num_cpus = float(cpus)
    except ValueError:
        raise ValueError(f"${CPUS_ENV} must be a number of CPUs such as 4, not '{cpus}'.") from None
    return RayBackend(address, num_cpus=num_cpus)


class LocalBackend:
    """Trains in the registry's worker thread, in this process."""

    slots = None  # one run at a time per device of this computer

    def execute(self, run: Run) -> None:
        run.run()

    def stop(self, run: Run) -> None:
        run.stop()


def latest_confusion_matrix(summary: runs.RunSummary | None, metrics: list[dict]) -> list[list[int]] | None:
    """The final matrix when there is one, else the latest epoch's."""
    if summary and summary.confusion_matrix:
        return summary.confusion_matrix
    return metrics[-1]["confusion_matrix"] if metrics else None


def _record_of(run: Run) -> runs.RunRecord:
    """A run in memory as the record it is writing (or will write) on disk."""
    facts = {**run.config.to_dict(), **run.info.get("resolved", {}), **run.info, "created": run.created,
             **({"owner": run.owner} if run.owner else {})}
    return runs.RunRecord(id=run.id, dir=run.dir, facts=facts, config=runs.typed_config(facts) or run.config,
                          metrics=list(run.metrics), summary=runs.RunSummary.from_dict(run.summary) if run.summary
                          else None, live=not run.done)


# -------------------------------------------------------------------------------------------------------------------
# What a page draws for one run


PHASE_EXPLANATIONS = {
    "waiting to start": "Getting ready to start.",
    "reading the dataset": "Reading the dataset: checking that every image opens and splitting train from validation.",
    "loading the backbone": "Loading the backbone: building the network and putting in its pretrained weights.",
    "decoding images": "Decoding images: each picture is read and resized once, then kept in memory.",
    "extracting features": "Extracting features: the backbone looks at each image once; its answers are cached.",
    "training the head": "Training the head: only the last layer learns, from the cached features, so it is quick.",
    "training": "Training: each batch goes through the network, the error flows back, and the unfrozen weights move "
                "a little.",
    "saving the model": "Saving the trained model and the run's record.",
    "finished": "Finished: the model and its record are saved.",
    "stopped": "Stopped: training ended early; what was learned so far is kept.",
    "failed": "Failed: see the error below.",
    "interrupted": "Interrupted: the app stopped while this run was training; what was recorded is shown.",
    ELSEWHERE: "Training in another process (the command line or another app server): what it has recorded so far "
               "is shown. Stop it where it was started.",
}


@dataclass
class RunView:
    """A read-only snapshot of one run, the same whether it is live in memory or only on disk."""

    id: str
    status: str  # queued | preparing | running | finished | stopped | failed | interrupted (see runs.RunRecord)
    phase: str
    config: RunConfig | None  # the resolved config once known (None for an imported model)
    facts: dict  # config.json: the config plus the facts learned while preparing (classes, weights, teacher…)
    metrics: list[dict]
    batches: list[dict]
    progress: dict
    summary: runs.RunSummary | None
    health: dict | None
    error: str | None
    hint: str | None
    dir: Path
    queue_position: int | None = None
    stopping: bool = False  # Stop was pressed; the run ends after the current batch
    elsewhere: bool = False  # live in another process: this server can show it but not stop it

    @classmethod
    def of_run(cls, run: Run, queue_position: int | None = None) -> RunView:
        record = _record_of(run)
        return cls(id=run.id, status=run.status, phase=run.phase, config=record.config, facts=record.facts,
                   metrics=record.metrics, batches=list(run.batches), progress=dict(run.progress),
                   summary=record.summary, health=run.health,
                   error=run.error, hint=run.hint, dir=run.dir, queue_position=queue_position,
                   stopping=run.stopping)

    @classmethod
    def of_record(cls, record: runs.RunRecord) -> RunView:
        """A run this registry does not hold: ended, interrupted, or training in another process."""
        batches = record.batches()
        live = record.status in LIVE
        return cls(id=record.id, status=record.status, phase=ELSEWHERE if live else record.status,
                   config=record.config, facts=record.facts, metrics=record.metrics, batches=batches,
                   progress=dict(batches[-1]) if live and batches else {}, summary=record.summary,
                   health=record.health(), error=record.summary.error if record.summary else None,
                   hint=record.summary.hint if record.summary else None, dir=record.dir, elsewhere=live)

    @property
    def live(self) -> bool:
        return self.status in LIVE

    @property
    def terminal(self) -> bool:
        return self.status in (*TERMINAL, "interrupted")

    @property
    def record(self) -> runs.RunRecord:
        """The run as a record (what a strategy's `panels` hook reads)."""
        return runs.RunRecord(id=self.id, dir=self.dir, facts=self.facts, config=self.config, metrics=self.metrics,
                              summary=self.summary, live=self.live)

    @property
    def class_names(self) -> list[str]:
        return self.facts.get("class_names") or (self.summary.class_names if self.summary else None) or []

    @property
    def device(self) -> str:
        """Where it trains or trained ("cpu", "cuda:1"), or where it will while it waits ("the first free GPU")."""
        device = (self.summary.device if self.summary else None) or (self.config.device if self.config else None) \
            or self.facts.get("device") or "auto"
        return {"auto": "the first free device", ANY_GPU: "the first free GPU"}.get(device, device)

    @property
    def kept_epoch(self) -> int | None:
        """The epoch whose weights are saved (an interrupted or failed run keeps its last checkpoint)."""
        return runs.saved_epoch(self.dir)

    @property
    def confusion_matrix(self) -> list[list[int]] | None:
        return latest_confusion_matrix(self.summary, self.metrics)

    @property
    def val_accuracy(self) -> float | None:
        if self.summary:
            return self.summary.val_accuracy
        return self.metrics[-1]["val_acc"] if self.metrics else None

    def explanation(self) -> str:
        """One plain sentence: what is happening now."""
        if self.status == "queued":
            n = self.queue_position or 0
            ahead = f"{n} run{'s' if n != 1 else ''} before this one; " if n else ""
            return f"Waiting in the queue: {ahead}the device trains one run at a time."
        phase = self.status if self.terminal else self.phase
        for start, sentence in PHASE_EXPLANATIONS.items():
            if phase.startswith(start):
                return sentence
        return phase.capitalize() + "."

    def progress_bar(self) -> tuple[float, str]:
        """(fraction done, one line: where it is, images/s, time left) for a progress bar."""
        if self.terminal:
            return 1.0, f"{len(self.metrics)} epoch{'s' if len(self.metrics) != 1 else ''} done."
        p = self.progress
        if not p:
            return 0.0, "Starting…"
        if "batch" in p:
            epochs = (self.config.epochs if self.config else None) or p["epoch"]
            done = (p["epoch"] - 1) * p["batches"] + p["batch"]
            where = f"Epoch {p['epoch']} of {epochs} · batch {p['batch']} of {p['batches']}"
            fraction = done / (epochs * p["batches"])
        else:
            where = f"{p['phase'].capitalize()}: {p['done']} of {p['total']} images"
            fraction = p["done"] / max(1, p["total"])
        rate = f" · {p['images_per_s']:.0f} images/s" if p.get("images_per_s") else ""
        left = f" · about {short_duration(p['seconds_left'])} left" if p.get("seconds_left") is not None else ""
        return min(1.0, fraction), where + rate + left


def short_duration(seconds: float) -> str:
    """A duration as the pages print it: '12 s', '2 min 05 s'."""
    seconds = round(seconds)
    return f"{seconds} s" if seconds < 90 else f"{seconds // 60} min {seconds % 60:02d} s"
