"""Training on a Ray cluster: `RayBackend` sends each run the registry places to a node of a Ray cluster, replays the
run's events into the server's `Run` live, and passes Stop on.

How a run travels:
- The server (`RayBackend.execute`, in the registry's worker thread) starts the run's channel, a small Ray actor on the
  server's own node, then a Ray task that rebuilds the run from its config on a node with room and trains it there.
- The node writes the run's folder itself: the runs folder and the data must be on storage that every node mounts at
  the same path (NFS in a lab; one disk when all the nodes are one machine). Every page and the CLI read that folder.
- The node's copy of the run pushes its events into the channel every PUSH_S seconds, also when there are none (that
  is how the server knows the node is alive), and reads back whether Stop was pressed. The server drains the channel
  every POLL_S seconds and replays the events into its own `Run`, so pages see the run as if it trained here.
- A node that dies, or stops answering for `contact_timeout_s`, leaves its run failed with a plain message; what the
  run saved (its epochs, its last checkpoint) stays in its folder, and no other run is touched.

Ray is imported only when a backend is used: importing this module loads nothing of Ray.
"""

from __future__ import annotations

import contextlib
import functools
import json
import os
import socket
import sys
import threading
import time
from pathlib import Path
from typing import Any

from workbench.core import runfolder
from workbench.engine import TERMINAL, Event, Run, RunConfig
from workbench.models.trained import saved_epoch

ADDRESS_ENV = "WORKBENCH_RAY_ADDRESS"
"""Set to a Ray head's address ("host:6379") and the app's registry trains every run on that cluster."""
CPUS_ENV = "WORKBENCH_RAY_CPUS_PER_RUN"
"""The CPUs each run asks the cluster for (default 1); a CPU run trains with that many threads."""
NAMESPACE = "workbench"
POLL_S = 0.25  # how often the server drains a run's channel
PUSH_S = 0.25  # how often a node pushes its run's events (and with them, that it is alive)
STOP_WAIT_S = 5.0  # how long one of a node's calls waiting for Stop lasts before it asks again
CONTACT_TIMEOUT_S = 60.0  # a node silent this long is taken for dead, whatever Ray says
SLOTS_TTL_S = 5.0  # how long the cluster's size is trusted before it is read again
PROBE_TIMEOUT_S = 5.0

_connecting = threading.Lock()


class ClusterError(RuntimeError):
    """The cluster cannot take the run (unreachable, or it lacks what the run needs); the message says what to do."""


def connect(address: str) -> None:
    """Join the Ray cluster at `address` ("host:port" of the head) once per process. Raises ClusterError when nothing
    answers there: `ray.init` itself would wait for minutes."""
    import ray

    with _connecting:
        if ray.is_initialized():
            return
        host, _, port = address.rpartition(":")
        try:
            socket.create_connection((host, int(port)), timeout=PROBE_TIMEOUT_S).close()
        except (OSError, ValueError) as error:
            raise ClusterError(f"No Ray cluster answers at {address} ({error}). Start its head with `ray start --head "
                               f"--port=6379`, or fix the address.") from error
        ray.init(address=address, namespace=NAMESPACE, ignore_reinit_error=True, log_to_driver=False)


class RayBackend:
    """Trains each run the registry places on a node of the Ray cluster at `address` (see the module's docstring).

    A run on a GPU (device "cuda", "cuda:N", or "auto" on a cluster with GPUs) asks Ray for one GPU and `num_cpus`
    CPUs, any other for `num_cpus` CPUs (Ray gives the task that many threads); "cuda:N" becomes the GPU Ray gives
    it. `resources` are Ray custom resources every run also asks for (e.g. {"big_disk": 1} to keep runs on the nodes
    started with `--resources`). A node silent for `contact_timeout_s` seconds is taken for dead. `placements` says
    where each run trained: the pid, host and Ray node id its node reported. Raises ValueError for an address that is
    not host:port. Nothing is contacted until the registry asks for `slots` or a run.
    """

    def __init__(self, address: str, num_cpus: float = 1, resources: dict[str, float] | None = None,
                 contact_timeout_s: float = CONTACT_TIMEOUT_S):
        host, _, port = address.rpartition(":")
        if not host or not port.isdigit():
            raise ValueError(f"A Ray cluster's address is its head's host:port, like head.lab:6379, not '{address}'.")
        if not num_cpus > 0:
            raise ValueError(f"Each run needs a positive number of CPUs, not {num_cpus}.")
        self.address = address
        self.num_cpus = num_cpus
        self.resources = dict(resources or {})
        self.contact_timeout_s = contact_timeout_s
        self.placements: dict[str, dict] = {}
        self._channels: dict[str, Any] = {}  # run id -> its channel, while it trains
        self._lock = threading.Lock()
        self._slots: tuple[float, int] | None = None  # (when it was read, how many runs the cluster holds)

    def __repr__(self) -> str:
        return f"RayBackend({self.address!r})"

    # -- how many runs at once --------------------------------------------------------------------------------------
    @property
    def slots(self) -> int:
        """How many runs the cluster trains at once: one per GPU on a cluster with GPUs, else its CPUs // num_cpus,
        and no more than its custom resources allow. Read again every SLOTS_TTL_S seconds, so nodes that join are
        used; 1 while the cluster cannot be reached (the run then fails and says why)."""
        now = time.monotonic()
        if self._slots is None or now - self._slots[0] > SLOTS_TTL_S:
            try:
                self._slots = (now, self._slots_in(self._cluster_resources()))
            except Exception:  # noqa: BLE001 - unreachable for now: the run that tries it fails and says why
                self._slots = (now, 1)
        return self._slots[1]

    def _cluster_resources(self) -> dict[str, float]:
        import ray

        connect(self.address)
        return ray.cluster_resources()

    def _slots_in(self, total: dict[str, float]) -> int:
        counts = [int(total.get("GPU", 0)) or int(total.get("CPU", 0) // self.num_cpus)]
        counts += [int(total.get(name, 0) // amount) for name, amount in self.resources.items() if amount > 0]
        return max(1, min(counts))

    # -- the Backend protocol ---------------------------------------------------------------------------------------
    def execute(self, run: Run) -> None:
        """Train `run` on a node of the cluster, replaying its events here, until it ends. Never raises: a cluster
        that cannot be reached or a node that dies leaves the run failed with the reason."""
        import ray

        channel = None
        try:
            connect(self.address)
            channel = self._open_channel(run)
            task = self._submit(run, channel)
            self._follow(run, channel, task)
        except Exception as error:  # noqa: BLE001 - a lost node or cluster fails this run; the others go on
            if not run.done:
                self._lose(run, error)
        finally:
            with contextlib.suppress(OSError):  # the folder made for the check below, if the run wrote nothing in it
                run.dir.rmdir()
            with self._lock:
                self._channels.pop(run.id, None)
            if channel is not None:
                with contextlib.suppress(Exception):  # the channel's node is gone: so is the channel
                    ray.kill(channel)

    def stop(self, run: Run) -> None:
        """Ask the run to stop after its current batch: it reads as stopping at once, and the thread on its node that
        waits for Stop stops it there."""
        run.stop()
        with self._lock:
            channel = self._channels.get(run.id)
        if channel is not None:
            channel.request_stop.remote()

    # -- one run ----------------------------------------------------------------------------------------------------
    def _open_channel(self, run: Run) -> Any:
        import ray
        from ray.util.scheduling_strategies import NodeAffinitySchedulingStrategy

        # On the server's node, strictly (a busy node would spill a soft choice over to another): a node that dies
        # takes its run with it, never the channel that reports the loss.
        here = NodeAffinitySchedulingStrategy(ray.get_runtime_context().get_node_id(), soft=False)
        channel = _ray_channel().options(scheduling_strategy=here).remote()
        with self._lock:
            self._channels[run.id] = channel
        if run.stopping:  # Stop was pressed before the channel existed
            channel.request_stop.remote()
        return channel

    def _submit(self, run: Run, channel: Any) -> Any:
        total = self._cluster_resources()
        gpus = int(total.get("GPU", 0))
        device = run.config.device
        if device.startswith("cuda") and not gpus:
            raise ClusterError(f"--device {device} was asked for but the Ray cluster at {self.address} has no GPU. "
                               "Use --device auto or cpu.")
        options: dict[str, Any] = {"num_cpus": self.num_cpus, "max_retries": 0}
        if device.startswith("cuda") or (device == "auto" and gpus):
            options["num_gpus"] = 1
        missing = [name for name, amount in self.resources.items() if total.get(name, 0) < amount]
        if missing:
            raise ClusterError(f"No node of the Ray cluster at {self.address} has {', '.join(missing)}: start one "
                               f"with `ray start --resources=...`.")
        if self.resources:
            options["resources"] = dict(self.resources)
        # The run's folder, made here: a node that cannot see it (or the data) does not share this server's storage.
        try:
            run.dir.mkdir(parents=True, exist_ok=True)
        except OSError as error:
            raise ClusterError(f"the run's folder {run.dir} cannot be made here ({error.strerror}).") from error
        values = _config_for_node(run)
        shared = [str(run.dir.resolve()), *([values["data"]] if Path(values["data"]).exists() else [])]
        return _ray_task().options(**options).remote(values, run.id, channel, self.contact_timeout_s, shared,
                                                     run.owner)

    def _follow(self, run: Run, channel: Any, task: Any) -> None:
        """Replay the node's events into `run` until the task ends; raise when it failed or its node fell silent."""
        import ray

        while True:
            ready, _ = ray.wait([task], timeout=POLL_S)
            silent_for = self._drain(run, channel)  # after the task ended, this drain holds its last events
            if ready:
                ended = ray.get(task, timeout=self.contact_timeout_s)  # raises the task's failure (a node died…)
                if ended.get("missing"):
                    raise ClusterError(f"the node {ended['host']} cannot see {' or '.join(ended['missing'])}. Every "
                                       f"node must mount the shared runs folder and the data at the same path as "
                                       f"this server.")
                if not run.done and run.status == "queued":  # Stop was pressed before the node began
                    run.cancel()
                elif not run.done:
                    raise ClusterError("the node ended the run without saying how")
                return
            if silent_for is not None and silent_for > self.contact_timeout_s:
                with contextlib.suppress(Exception):  # the node is unreachable: there may be nothing left to cancel
                    ray.cancel(task, force=True)
                raise TimeoutError(f"no word from it for {silent_for:.0f} s")

    def _drain(self, run: Run, channel: Any) -> float | None:
        """Replay the events the node pushed since the last drain; how long ago it last pushed (None: not yet)."""
        import ray

        events, silent_for, where = ray.get(channel.drain.remote(), timeout=self.contact_timeout_s)
        if where is not None:
            self.placements[run.id] = where
        for kind, data, at, status, phase in events:
            run.replay(Event(kind, data, at), status, phase)
        return silent_for

    def _lose(self, run: Run, error: Exception) -> None:
        """End `run` as failed: say what happened in plain words, and record it in the run's folder if it has one."""
        print(f"workbench: run {run.id} lost on the Ray cluster at {self.address}: {error!r}", file=sys.stderr)
        recorded = _recorded_summary(run.dir)
        if recorded is not None:  # the node recorded how the run ended; only the news of it was lost: keep its word
            status = recorded["status"]
            run.replay(Event(status, {"summary": recorded, "error": recorded.get("error"),
                                      "hint": recorded.get("hint")}), status, status)
            return
        error_text, hint = _loss_message(run, error, self.address)
        summary = None
        if (run.dir / runfolder.CONFIG_FILE).exists():
            kept = saved_epoch(run.dir)
            last = next((m for m in run.metrics if m["epoch"] == kept), {})
            summary = {"status": "failed", "error": error_text, "hint": hint, "val_accuracy": last.get("val_acc"),
                       "val_loss": last.get("val_loss"), "epochs_completed": len(run.metrics), "best_epoch": kept,
                       "class_names": run.info.get("class_names"), "confusion_matrix": last.get("confusion_matrix"),
                       "device": run.info.get("resolved", {}).get("device")}
            with contextlib.suppress(OSError):  # on disk, the run reads as failed rather than still training
                runfolder.write_json(run.dir / runfolder.SUMMARY_FILE, summary)
                runfolder.clear_live(run.dir)
        run.end_lost(error_text, hint, summary)


def _recorded_summary(run_dir: Path) -> dict | None:
    """summary.json as the node wrote it, if it got that far."""
    try:
        summary = json.loads((run_dir / runfolder.SUMMARY_FILE).read_text())
    except (OSError, ValueError):
        return None
    return summary if isinstance(summary, dict) and summary.get("status") in TERMINAL else None


def _config_for_node(run: Run) -> dict:
    """The run's config as the node needs it: paths made absolute (they must mean the same folder on every node:
    shared storage), and "cuda:N" as "cuda", the one GPU Ray gives the task."""
    values = run.config.to_dict()
    values["runs_dir"] = str(run.dir.parent.resolve())
    for name in ("data", "weights"):
        if values.get(name) and Path(values[name]).exists():
            values[name] = str(Path(values[name]).resolve())
    if values["device"].startswith("cuda:"):
        values["device"] = "cuda"
    return values


def _loss_message(run: Run, error: Exception, address: str) -> tuple[str, str]:
    """(error, hint) for a run the cluster lost or could not take."""
    if isinstance(error, ClusterError):
        return f"The Ray cluster could not train this run: {error}", "Start the run again once the cluster is ready."
    cause = getattr(error, "cause", None)  # a RayTaskError carries the exception raised on the node
    if isinstance(cause, ImportError):
        return (f"The cluster node could not load the workbench ({cause}). Install it on every node with "
                f"`pip install -e \".[cluster]\"`, then start the run again.", "Every node needs the same workbench.")
    why = _why(error)
    if not run.info and not run.metrics:
        where = "before it began training; nothing of it was saved"
    else:
        epoch = run.progress.get("epoch") or len(run.metrics) + 1
        where = f"at epoch {epoch}; what it saved is kept in {run.dir}"
    return (f"The cluster node training this run stopped responding ({why}): the run was lost {where}. Start it "
            f"again.", f"The cluster's other runs go on; `ray status` on the head node ({address}) lists the nodes "
            f"still there.")


def _why(error: Exception) -> str:
    """What happened to the node, in a few words."""
    import ray.exceptions as rex

    known = [(rex.NodeDiedError, "its node left the cluster"), (rex.WorkerCrashedError, "its worker process died"),
             (rex.OutOfMemoryError, "the node ran out of memory"), (rex.ActorDiedError, "the run's channel was lost"),
             (rex.TaskCancelledError, "it was cancelled"), (rex.GetTimeoutError, "it did not answer in time")]
    for kind, words in known:
        if isinstance(error, kind):
            return words
    if isinstance(error, rex.RayTaskError):
        return f"it failed: {error.cause!r}" if getattr(error, "cause", None) else "it failed"
    return str(error) if isinstance(error, TimeoutError) else f"{type(error).__name__}: {error}"


# -------------------------------------------------------------------------------------------------------------------
# What runs on the cluster


@functools.cache
def _ray_task() -> Any:
    import ray

    return ray.remote(max_retries=0)(_train_on_node)


@functools.cache
def _ray_channel() -> Any:
    import ray

    # Threads: a node's call waiting for Stop must not hold up its pushes or the server's drains.
    return ray.remote(num_cpus=0, max_restarts=0, max_concurrency=8)(_channel_class())


def _channel_class() -> type:
    """The channel's class. Defined inside a function so that Ray ships the class itself: the actor's process then
    imports neither the workbench nor torch (seconds and hundreds of MB less per run)."""

    class Channel:
        """A run's mailbox: the node pushes events and waits for Stop; the server drains the events and presses
        Stop. Its methods run in threads of their own (see `_ray_channel`)."""

        def __init__(self) -> None:
            self.lock = threading.Lock()
            self.events: list[tuple] = []
            self.stop = threading.Event()
            self.contact: float | None = None  # when the node last pushed, on this actor's clock
            self.where: dict | None = None

        def push(self, events: list[tuple], where: dict | None = None) -> bool:
            with self.lock:
                self.events.extend(events)
                self.contact = time.monotonic()
                self.where = where or self.where
            return self.stop.is_set()

        def request_stop(self) -> None:
            self.stop.set()

        def wait_stop(self, timeout: float) -> bool:
            """True as soon as Stop is pressed; False after `timeout` seconds without it."""
            return self.stop.wait(timeout)

        def drain(self) -> tuple[list[tuple], float | None, dict | None]:
            with self.lock:
                events, self.events = self.events, []
                return events, None if self.contact is None else time.monotonic() - self.contact, self.where

    return Channel


def _train_on_node(values: dict, run_id: str, channel: Any, contact_timeout_s: float, shared: list[str],
                   owner: str | None = None) -> dict:
    """The Ray task: rebuild the run from its config on this node and train it, writing its folder (on the shared
    storage) and streaming its events through `channel`. Returns how it ended; "missing": the paths of `shared` (the
    server's run folder and data) this node cannot see, when it trained nothing for that reason."""
    import ray

    where = {"pid": os.getpid(), "host": socket.gethostname(), "node_id": ray.get_runtime_context().get_node_id()}
    if ray.get(channel.push.remote([], where), timeout=contact_timeout_s):
        return {"status": "not started"}  # stopped while it waited for a node
    missing = [path for path in shared if not Path(path).exists()]
    if missing:  # training anyway would write a folder on this node's own disk that nobody else ever sees
        return {"status": "not started", "missing": missing, "host": where["host"]}
    run = Run(RunConfig.from_dict(values), run_id=run_id, owner=owner)
    with _Streamer(run, channel, contact_timeout_s):
        run.run()
    return {"status": run.status}


class _Streamer:
    """On the node: pushes the run's events to its channel every PUSH_S seconds, with the run's status and phase as
    they were right after each, and stops the run the moment Stop is pressed (a second thread waits for it), or when
    the server has been unreachable for `contact_timeout_s` (nobody would see the run). The last push, on leaving the
    block, carries the terminal event."""

    def __init__(self, run: Run, channel: Any, contact_timeout_s: float):
        self.run, self.channel, self.contact_timeout_s = run, channel, contact_timeout_s
        self._pending: list[tuple] = []
        self._lock = threading.Lock()
        self._closed = threading.Event()
        self._thread = threading.Thread(target=self._loop, name=f"push-{run.id}", daemon=True)
        self._stop_watch = threading.Thread(target=self._watch_stop, name=f"stop-{run.id}", daemon=True)
        run.subscribe(self._add)

    def __enter__(self) -> _Streamer:
        self._thread.start()
        self._stop_watch.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._closed.set()
        self._thread.join()
        self._push()

    def _add(self, event: Event) -> None:
        with self._lock:
            self._pending.append((event.kind, event.data, event.time, self.run.status, self.run.phase))

    def _loop(self) -> None:
        contact = time.monotonic()
        while not self._closed.wait(PUSH_S):
            try:
                if self._push():
                    self.run.stop()
                contact = time.monotonic()
            except Exception:  # noqa: BLE001 - the server may come back; if it does not, the run stops
                if time.monotonic() - contact > self.contact_timeout_s:
                    self.run.stop()

    def _watch_stop(self) -> None:
        """Wait for Stop in the channel, one STOP_WAIT_S call after another, until it comes or the run ends (this
        thread is not waited for: it ends with its call in flight)."""
        import ray

        while not self._closed.is_set():
            try:
                if ray.get(self.channel.wait_stop.remote(STOP_WAIT_S), timeout=STOP_WAIT_S + self.contact_timeout_s):
                    self.run.stop()
                    return
            except Exception:  # noqa: BLE001 - the channel is unreachable: the push loop judges when to give up
                self._closed.wait(PUSH_S)

    def _push(self) -> bool:
        import ray

        with self._lock:
            events, self._pending = self._pending, []
        try:
            return ray.get(self.channel.push.remote(events), timeout=self.contact_timeout_s)
        except Exception:
            with self._lock:
                self._pending[:0] = events  # sent again with the next push
            raise

