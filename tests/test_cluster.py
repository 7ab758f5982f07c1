"""Training on a Ray cluster (`workbench.runs.cluster.RayBackend`), on a real two-node cluster.

The cluster lives on 127.0.0.1 inside a private network and process namespace (`unshare`), so nothing of it is seen
from outside and everything in it dies with it. A namespace holds a process and its children, so the test starts one
`unshare` process that starts a head node and a second node (the only one with the custom resource "worker_node"),
then runs `tests/cluster_driver.py`, which trains tiny runs on the cluster through the registry and writes what it saw
as JSON; the tests below read that JSON, one scenario each. Starting Ray takes seconds, so every scenario shares one
cluster; the last one kills the second node.

The first tests need no cluster: the backend's wiring (the environment variable, the CLI flag, the registry's slots),
an address where nothing answers, and a finished record that a lost connection must not rewrite.
"""

from __future__ import annotations

import json
import os
import shlex
import shutil
import socket
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import pytest

from workbench.cli import build_parser, registry_for
from workbench.core import runfolder
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.runs.cluster import ADDRESS_ENV, RayBackend
from workbench.runs.registry import LocalBackend, RunRegistry, backend_from_env

from .conftest import REPO, SHAPES

ray = pytest.importorskip("ray", reason="the Ray backend needs ray: pip install -e '.[cluster]'")

CLUSTER_TIMEOUT_S = 480  # the whole session: start, five scenarios, stop (25 s on 2 cores; 2 min under heavy load)
NAMESPACES = [  # root makes the namespaces itself; anyone else through a user namespace, where that is allowed
    ["unshare", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"],
    ["unshare", "--map-root-user", "--net", "--pid", "--fork", "--mount-proc", "--kill-child"],
]


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def config(**changes) -> RunConfig:
    return RunConfig(**{**dict(data=str(SHAPES), backbone="test_resnet", weights="none", epochs=1, image_size=32),
                        **changes})


# -------------------------------------------------------------------------------------------------------------------
# Without a cluster


def test_the_backend_comes_from_the_environment_and_the_cli_flag(monkeypatch, tmp_path):
    monkeypatch.delenv(ADDRESS_ENV, raising=False)
    assert backend_from_env() is None
    assert isinstance(RunRegistry(tmp_path).backend, LocalBackend)
    monkeypatch.setenv(ADDRESS_ENV, "head.lab:6379")
    assert isinstance(RunRegistry(tmp_path).backend, RayBackend)
    assert RunRegistry(tmp_path).backend.address == "head.lab:6379"
    monkeypatch.delenv(ADDRESS_ENV)
    for command in ("race", "sweep"):
        args = build_parser().parse_args([command, "--data", str(SHAPES), "--ray-address", "10.0.0.5:6379"])
        backend = registry_for(args, config()).backend
        assert isinstance(backend, RayBackend) and backend.address == "10.0.0.5:6379"
    args = build_parser().parse_args(["race", "--data", str(SHAPES)])
    assert isinstance(registry_for(args, config()).backend, LocalBackend)


def test_importing_the_workbench_loads_nothing_of_ray():
    code = "import sys, workbench.cli, workbench.runs.registry, ui_common; sys.exit('ray' in sys.modules)"
    assert subprocess.run([sys.executable, "-c", code], cwd=REPO, timeout=120).returncode == 0


class SlotsBackend:
    """A cluster stand-in with two slots: each run waits until the test lets it go, and says where it was placed."""

    slots = 2

    def __init__(self):
        self.go = threading.Event()
        self.training: list[tuple[str, str]] = []  # (run id, its config's device) while it trains
        self.most_at_once = 0
        self.lock = threading.Lock()

    def execute(self, run) -> None:
        with self.lock:
            self.training.append((run.id, run.config.device))
            self.most_at_once = max(self.most_at_once, len(self.training))
        self.go.wait(30)
        with self.lock:
            self.training.remove((run.id, run.config.device))
        run.cancel()  # it never really trained: ended as "stopped before it started"

    def stop(self, run) -> None:
        self.go.set()


def test_a_cluster_backend_trains_up_to_its_slots_at_once_and_leaves_the_device_to_the_node(tmp_path):
    backend = SlotsBackend()
    registry = RunRegistry(tmp_path, gpus=[], backend=backend)
    runs = [registry.submit(config(device=device)) for device in ("auto", "cuda", "cuda:3")]  # no GPU here: fine
    deadline = time.monotonic() + 10
    while len(backend.training) < 2 and time.monotonic() < deadline:
        time.sleep(0.02)
    assert set(registry.training()) == {"ray:0", "ray:1"}
    assert registry.queue_position(runs[2].id) == 1 and runs[2].status == "queued"
    backend.go.set()
    assert all(run.wait(10) for run in runs)
    assert backend.most_at_once == 2
    assert [run.config.device for run in runs] == ["auto", "cuda", "cuda:3"]  # as chosen, not "ray:0"


def test_an_address_where_nothing_answers_fails_the_run_with_a_plain_message(tmp_path):
    address = f"127.0.0.1:{free_port()}"
    registry = RunRegistry(tmp_path / "runs", backend=RayBackend(address))
    run = registry.submit(config())
    assert run.wait(30), "the run did not fail within 30 s"
    assert run.status == "failed"
    assert f"No Ray cluster answers at {address}" in run.error and "ray start --head" in run.error
    assert not run.dir.exists()


def test_a_run_whose_node_recorded_its_end_is_never_rewritten_as_lost(tmp_path):
    """When only the news of the end is lost (the node's last push), the record the node wrote stands."""
    run = Run(config(runs_dir=str(tmp_path)))
    run.dir.mkdir(parents=True)
    (run.dir / runfolder.CONFIG_FILE).write_text("{}")
    recorded = {"status": "finished", "error": None, "hint": None, "val_accuracy": 0.9}
    runfolder.write_json(run.dir / runfolder.SUMMARY_FILE, recorded)
    RayBackend("127.0.0.1:1")._lose(run, TimeoutError("no word from it for 61 s"))
    assert run.done and run.status == "finished" and run.summary == recorded
    assert json.loads((run.dir / runfolder.SUMMARY_FILE).read_text()) == recorded


# -------------------------------------------------------------------------------------------------------------------
# On a real two-node cluster


def namespace_prefix() -> list[str] | None:
    """The `unshare` command that makes a private network and process namespace here, or None if none is allowed."""
    if not shutil.which("unshare") or not shutil.which("ip"):
        return None
    for prefix in NAMESPACES:
        try:
            probe = subprocess.run([*prefix, "ip", "link", "set", "lo", "up"], capture_output=True, timeout=30)
        except (OSError, subprocess.TimeoutExpired):
            continue
        if probe.returncode == 0:
            return prefix
    return None


def cluster_script(port: int, worker_port: int, temp: Path, out: Path) -> str:
    """Inside the namespace: bring up loopback, start the head and a second node, run the driver, stop Ray. The second
    node has a mount namespace of its own, where a tmpfs hides the folder `unshared` from it."""
    ray_cli = Path(sys.executable).with_name("ray")  # this venv's: the nodes' workers run this Python
    common = "--node-ip-address=127.0.0.1 --num-cpus=1 --disable-usage-stats"
    runs, unshared = temp / "runs", temp / "unshared"
    resources = shlex.quote(json.dumps({"worker_node": 1}))
    second_node = (f"mount -t tmpfs tmpfs {unshared} && {ray_cli} start --address=127.0.0.1:{port} {common} "
                   f"--node-manager-port={worker_port} --resources={resources}")
    return (f"ip link set lo up && mkdir -p {runs} {unshared} && "
            f"{ray_cli} start --head --port={port} {common} --temp-dir={temp}/ray --include-dashboard=false && "
            f"unshare --mount bash -c {shlex.quote(second_node)} && "
            f"{sys.executable} {REPO / 'tests' / 'cluster_driver.py'} 127.0.0.1:{port} {SHAPES} {runs} {worker_port} "
            f"{out} {unshared}; rc=$?; {ray_cli} stop --force >/dev/null 2>&1; exit $rc")


@pytest.fixture(scope="module")
def cluster() -> dict:
    """What the driver saw, scenario by scenario, on a two-node cluster it had to itself."""
    prefix = namespace_prefix()
    if prefix is None:
        pytest.skip("a private network namespace (unshare -n) is not allowed here: the cluster tests need one")
    temp = Path(tempfile.mkdtemp(prefix="wbray", dir="/tmp"))  # short: Ray's socket paths must fit in 107 bytes
    out, log = temp / "results.json", temp / "cluster.log"
    script = cluster_script(free_port(), free_port(), temp, out)
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0"}
    env.pop(ADDRESS_ENV, None)
    started = time.monotonic()
    try:
        with log.open("w") as sink:
            completed = subprocess.run([*prefix, "bash", "-c", script], cwd=REPO, env=env, stdout=sink,
                                       stderr=subprocess.STDOUT, timeout=CLUSTER_TIMEOUT_S)
        results = json.loads(out.read_text()) if out.exists() else {}
        if not results:
            pytest.fail(f"the cluster session wrote no results (exit {completed.returncode}):\n"
                        f"{log.read_text()[-4000:]}")
        results["_seconds"] = round(time.monotonic() - started, 1)
        results["_log"] = log.read_text()[-4000:]
        yield results
    finally:
        shutil.rmtree(temp, ignore_errors=True)


def scenario(cluster: dict, name: str) -> dict:
    found = cluster.get(name)
    if found is None:
        pytest.fail(f"the driver never got to {name}:\n{cluster['_log']}")
    if "traceback" in found:
        pytest.fail(f"{name} failed on the cluster:\n{found['traceback']}")
    return found


def test_a_run_trains_on_the_second_node_and_its_epochs_stream_to_the_view(cluster):
    seen = scenario(cluster, "placed_and_streamed")
    assert seen["status"] == "finished", seen["error"]
    placement = seen["placement"]
    assert placement["pid"] != seen["driver_pid"]
    assert placement["node_id"] == seen["worker_node"] != seen["head_node"] == seen["driver_node"]
    assert seen["running_with_epochs"], f"no view while running showed an epoch: {seen['statuses']}"
    assert seen["statuses"][-1] == "finished" and "running" in seen["statuses"]
    assert seen["epochs"] == seen["view_epochs"] == 4


def test_a_run_from_the_cluster_reads_exactly_like_one_trained_here(cluster):
    seen = scenario(cluster, "placed_and_streamed")
    assert seen["metrics_match_disk"] and seen["batches_match_disk"] and seen["summary_matches_disk"]
    assert seen["milestones"] == seen["local_milestones"]
    assert (seen["status"], seen["phase"]) == (seen["local_status"], seen["local_phase"])
    assert seen["info_keys_match_local"] and seen["health_matches_local"]
    assert seen["progress_keys"] == seen["local_progress_keys"]


def test_stop_ends_a_cluster_run_within_a_batch_and_it_is_recorded_as_stopped(cluster):
    seen = scenario(cluster, "stopped")
    assert seen["stopping_at_once"]
    assert seen["status"] == seen["disk_status"] == seen["view_status"] == "stopped"
    assert seen["batches_after_stop"] <= 1, f"{seen['batches_after_stop']} batches ended after Stop was pressed"
    assert seen["seconds_to_stop"] < 10
    assert seen["batches_at_end"] == seen["batches_on_disk"]
    assert not seen["live_marker_left"]


def test_a_race_trains_side_by_side_on_two_nodes(cluster):
    seen = scenario(cluster, "raced")
    assert seen["statuses"] == {"full": "finished", "partial": "finished", "linear_probe": "finished"}, seen["errors"]
    assert seen["slots"] == 2
    assert seen["overlapping_pairs"], f"no two runs trained at the same time: {seen['spans']}"
    assert len(seen["nodes"]) == 2


def test_a_node_that_cannot_see_the_runs_folder_trains_nothing_and_says_so(cluster):
    seen = scenario(cluster, "storage_not_shared")
    assert seen["status"] == "failed"
    assert "cannot see" in seen["error"] and "mount the shared runs folder" in seen["error"]
    assert not seen["folder_left"]


def test_a_node_that_dies_fails_its_run_plainly_and_touches_nothing_else(cluster):
    seen = scenario(cluster, "node_killed")
    assert seen["killed_processes"], "the second node's raylet was not found"
    assert seen["ended"], "the run on the dead node never ended"
    assert seen["seconds_to_fail"] < 60
    assert seen["status"] == seen["view_status"] == seen["disk_status"] == "failed"
    assert seen["error"].startswith("The cluster node training this run stopped responding (")
    assert "Start it again." in seen["error"] and "what it saved is kept in" in seen["error"]
    assert not seen["live_marker_left"]
    assert seen["bystander_ended"] and seen["bystander_status"] == "finished", seen["bystander_error"]
    assert seen["first_run_files_unchanged"] and seen["first_run_disk_status"] == "finished"
