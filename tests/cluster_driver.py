"""The driver of tests/test_cluster.py: runs inside the private network (and process) namespace where the test started
a two-node Ray cluster on 127.0.0.1, trains tiny runs on it through the registry, and writes what it saw as JSON.

Usage: python tests/cluster_driver.py ADDRESS DATA RUNS_DIR WORKER_NODE_MANAGER_PORT OUT_JSON UNSHARED_RUNS_DIR

UNSHARED_RUNS_DIR is a runs folder the second node cannot see (the test hides it under a tmpfs on that node only).

The scenarios share one cluster (starting Ray takes seconds) and run in order; the last one kills the second node.
Each writes its findings under its own key as soon as it ends, so a timeout still leaves the earlier ones; a scenario
that raises records its traceback under "traceback" and the next one runs.
"""

from __future__ import annotations

import json
import os
import sys
import time
import traceback
from pathlib import Path

import psutil
import ray
import torch

from workbench.core import runfolder
from workbench.engine import Run, RunConfig
from workbench.runs.cluster import RayBackend
from workbench.runs.registry import RunRegistry

WORKER_RESOURCE = "worker_node"  # the custom resource only the second node has
TIMEOUT_S = 120


def tiny(data: str, runs_dir: str, **changes) -> RunConfig:
    values = dict(data=data, backbone="test_resnet", strategy="full", weights="none", image_size=32, batch_size=16,
                  epochs=3, device="cpu", seed=0, runs_dir=runs_dir)
    return RunConfig(**{**values, **changes})


def wait_until(condition, timeout: float = TIMEOUT_S, every: float = 0.05) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(every)
    return False


def interval(run: Run) -> tuple[float, float]:
    """From the run's first event on its node to its last."""
    events = run.events_since(0)
    return events[0].time, events[-1].time


def milestones(run: Run) -> list[str]:
    """The run's event kinds in order, without the many progress and batch events."""
    return [e.kind for e in run.events_since(0) if e.kind not in ("progress", "batch")]


def median_gap(times: list[float]) -> float | None:
    gaps = sorted(b - a for a, b in zip(times, times[1:], strict=False))
    return round(gaps[len(gaps) // 2], 4) if gaps else None


def head_node_id() -> str:
    return next(n["NodeID"] for n in ray.nodes() if "node:__internal_head__" in n["Resources"])


def worker_node_id() -> str:
    return next(n["NodeID"] for n in ray.nodes() if WORKER_RESOURCE in n["Resources"])


# -------------------------------------------------------------------------------------------------------------------
# Scenarios


def placed_and_streamed(ctx: dict) -> dict:
    """A run trains on the second node's worker process; its epochs reach a registry view while it trains; what the
    server's Run holds at the end is what the node wrote, and reads like the same run trained here."""
    backend = RayBackend(ctx["address"], resources={WORKER_RESOURCE: 1}, contact_timeout_s=30)
    registry = RunRegistry(ctx["runs"], backend=backend)
    run = registry.submit(tiny(ctx["data"], ctx["runs"], epochs=4, image_size=64, batch_size=8))
    seen = {"running_with_epochs": False, "statuses": []}

    def look() -> bool:
        view = registry.view(run.id)
        if view.status not in seen["statuses"]:
            seen["statuses"].append(view.status)
        if view.status == "running" and view.metrics and not run.done:
            seen["running_with_epochs"] = True
            seen.setdefault("epochs_seen_while_running", len(view.metrics))
        return run.done

    submitted = time.time()
    assert wait_until(look, every=0.02), f"the run did not end within {TIMEOUT_S} s"
    on_disk = registry.view(run.id)
    summary = json.loads((run.dir / runfolder.SUMMARY_FILE).read_text())
    local_started = time.monotonic()
    local = Run(tiny(ctx["data"], ctx["runs"], epochs=4, image_size=64, batch_size=8)).run()  # the same, trained here
    seen["local_run_seconds"] = round(time.monotonic() - local_started, 1)
    seen["seconds_to_first_event"] = round(run.events_since(0)[0].time - submitted, 1)
    seen["training_seconds"] = round(interval(run)[1] - interval(run)[0], 1)
    ctx["first_run_dir"] = str(run.dir)
    return {
        **seen,
        "status": run.status, "error": run.error, "phase": run.phase,
        "placement": backend.placements.get(run.id), "driver_pid": os.getpid(),
        "driver_node": ray.get_runtime_context().get_node_id(), "head_node": head_node_id(),
        "worker_node": worker_node_id(),
        "metrics_match_disk": run.metrics == runfolder.read_jsonl(run.dir / runfolder.METRICS_FILE),
        "batches_match_disk": run.batches == runfolder.read_jsonl(run.dir / runfolder.BATCHES_FILE),
        "summary_matches_disk": run.summary == summary,
        "info_keys_match_local": sorted(run.info) == sorted(local.info),
        "health_matches_local": run.health == local.health,
        "milestones": milestones(run), "local_milestones": milestones(local),
        "local_status": local.status, "local_phase": local.phase,
        "epochs": len(run.metrics), "view_status": on_disk.status, "view_epochs": len(on_disk.metrics),
        "progress_keys": sorted(run.progress), "local_progress_keys": sorted(local.progress),
    }


def stopped(ctx: dict) -> dict:
    """Stop ends a running run within about a batch; it is recorded as stopped."""
    registry = RunRegistry(ctx["runs"], backend=RayBackend(ctx["address"], contact_timeout_s=30))
    run = registry.submit(tiny(ctx["data"], ctx["runs"], epochs=200, image_size=96, batch_size=32))
    assert wait_until(lambda: run.phase == "training" and len(run.batches) >= 3 or run.done), "it never trained"
    batches_at_stop = len(run.batches)
    pressed_at = time.time()  # the node shares this machine's clock: its batch events say when each batch ended
    registry.stop(run.id)
    stopping = registry.view(run.id).stopping
    pressed = time.monotonic()
    assert wait_until(lambda: run.done, timeout=60), "Stop did not end the run within 60 s"
    seconds = time.monotonic() - pressed
    summary = json.loads((run.dir / runfolder.SUMMARY_FILE).read_text())
    return {"status": run.status, "stopping_at_once": stopping, "seconds_to_stop": round(seconds, 2),
            "batches_at_stop": batches_at_stop, "batches_at_end": len(run.batches),
            "batches_after_stop": sum(e.kind == "batch" and e.time > pressed_at for e in run.events_since(0)),
            "median_batch_seconds": median_gap([e.time for e in run.events_since(0) if e.kind == "batch"]),
            "batches_on_disk": len(runfolder.read_jsonl(run.dir / runfolder.BATCHES_FILE)),
            "disk_status": summary["status"], "view_status": registry.view(run.id).status,
            "epochs_completed": summary["epochs_completed"],
            "live_marker_left": (run.dir / runfolder.LIVE_FILE).exists()}


def raced(ctx: dict) -> dict:
    """A race of three strategies on two nodes: all complete, and runs train side by side."""
    backend = RayBackend(ctx["address"], contact_timeout_s=30)
    registry = RunRegistry(ctx["runs"], backend=backend)
    runs = registry.race(tiny(ctx["data"], ctx["runs"], epochs=3, image_size=64), ["full", "partial", "linear_probe"])
    assert wait_until(lambda: all(run.done for run in runs), timeout=2 * TIMEOUT_S), "the race did not end"
    spans = {run.config.strategy: interval(run) for run in runs}
    names = list(spans)
    overlaps = [[a, b] for i, a in enumerate(names) for b in names[i + 1:]
                if spans[a][0] < spans[b][1] and spans[b][0] < spans[a][1]]
    return {"statuses": {run.config.strategy: run.status for run in runs},
            "errors": {run.config.strategy: run.error for run in runs}, "slots": backend.slots,
            "spans": spans, "overlapping_pairs": overlaps,
            "nodes": sorted({backend.placements[run.id]["node_id"] for run in runs if run.id in backend.placements})}


def storage_not_shared(ctx: dict) -> dict:
    """A node that cannot see the runs folder trains nothing (it would write where nobody looks) and says so."""
    registry = RunRegistry(ctx["unshared"], backend=RayBackend(ctx["address"], resources={WORKER_RESOURCE: 1}))
    run = registry.submit(tiny(ctx["data"], ctx["unshared"]))
    assert wait_until(lambda: run.done), "the run did not end"
    return {"status": run.status, "error": run.error, "folder_left": run.dir.exists()}


def node_killed(ctx: dict) -> dict:
    """Killing the second node mid-run leaves its run failed with a plain message, in bounded time; a run on the head
    node trains on, and the first scenario's finished run keeps its folder."""
    on_worker = RunRegistry(ctx["runs"], backend=RayBackend(ctx["address"], resources={WORKER_RESOURCE: 1},
                                                            contact_timeout_s=20))
    anywhere = RunRegistry(ctx["runs"], backend=RayBackend(ctx["address"], contact_timeout_s=20))
    victim = on_worker.submit(tiny(ctx["data"], ctx["runs"], epochs=200, image_size=64, batch_size=8))
    assert wait_until(lambda: len(victim.metrics) >= 1 or victim.done), "the run on the second node never trained"
    bystander = anywhere.submit(tiny(ctx["data"], ctx["runs"], epochs=3))  # the head node is the one with room
    first_dir = Path(ctx["first_run_dir"])
    before = {p.name: p.stat().st_size for p in first_dir.iterdir()}
    killed = kill_node(ctx["worker_port"])
    t0 = time.monotonic()
    ended = wait_until(lambda: victim.done, timeout=TIMEOUT_S)
    seconds = time.monotonic() - t0
    bystander_ended = wait_until(lambda: bystander.done, timeout=TIMEOUT_S)
    summary_path = victim.dir / runfolder.SUMMARY_FILE
    return {"killed_processes": killed, "ended": ended, "seconds_to_fail": round(seconds, 2),
            "status": victim.status, "error": victim.error, "hint": victim.hint,
            "epochs_before_kill": len(victim.metrics),
            "view_status": on_worker.view(victim.id).status,
            "disk_status": json.loads(summary_path.read_text())["status"] if summary_path.exists() else None,
            "live_marker_left": (victim.dir / runfolder.LIVE_FILE).exists(),
            "bystander_ended": bystander_ended, "bystander_status": bystander.status,
            "bystander_error": bystander.error,
            "first_run_files_unchanged": before == {p.name: p.stat().st_size for p in first_dir.iterdir()},
            "first_run_disk_status": json.loads((first_dir / runfolder.SUMMARY_FILE).read_text())["status"]}


def kill_node(node_manager_port: int) -> list[str]:
    """kill -9 the second node's raylet and everything it started (its workers, the run's among them)."""
    raylet = next(p for p in psutil.process_iter(["cmdline"])
                  if p.info["cmdline"] and p.info["cmdline"][0].endswith("raylet")
                  and f"--node_manager_port={node_manager_port}" in p.info["cmdline"])
    doomed = [raylet, *raylet.children(recursive=True)]
    names = []
    for process in doomed:
        try:
            names.append(" ".join(process.cmdline())[:60])
            process.kill()
        except psutil.NoSuchProcess:
            continue
    return names


SCENARIOS = [placed_and_streamed, stopped, raced, storage_not_shared, node_killed]


def main() -> int:
    address, data, runs_dir, worker_port, out, unshared = sys.argv[1:7]
    torch.set_num_threads(1)  # as Ray's workers do: the run trained here for comparison must not fight them for cores
    ctx = {"address": address, "data": data, "runs": runs_dir, "worker_port": int(worker_port), "unshared": unshared}
    results: dict = {}
    for scenario in SCENARIOS:
        started = time.monotonic()
        try:
            results[scenario.__name__] = scenario(ctx)
        except Exception:  # noqa: BLE001 - recorded for the test to show; the next scenario still runs
            results[scenario.__name__] = {"traceback": traceback.format_exc()}
        results[scenario.__name__]["seconds"] = round(time.monotonic() - started, 1)
        Path(out).write_text(json.dumps(results, indent=2, default=str))
        print(f"{scenario.__name__}: {results[scenario.__name__]['seconds']} s", flush=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
