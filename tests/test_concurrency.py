"""Several browser sessions at once: they share the server's one run registry, their runs queue on the device (one
trains at a time), none is lost or duplicated, and each user's Stop stops only that user's run."""

from __future__ import annotations

import threading
import time
from concurrent.futures import ThreadPoolExecutor

import pytest
from streamlit.runtime.scriptrunner.script_cache import ScriptCache
from streamlit.testing.v1 import AppTest

from ui_common import CHOICES, DATASET, RUN_ID, get_registry

from .conftest import REPO
from .test_faults import copy_tiny_shapes

TRAIN_PAGE = str(REPO / "pages" / "3_train.py")
USERS = 3
LONG = {"backbone": "test_resnet", "strategy": "full", "epochs": 200, "image_size": 64, "batch_size": 8}


@pytest.fixture
def registry(runs_dir):
    get_registry.clear()  # as after a server start
    yield get_registry()
    registry = get_registry()
    for run in registry.live():
        registry.stop(run.id)
    for run in registry.runs():
        run.wait(60)
    get_registry.clear()


@pytest.fixture
def compile_like_a_server(monkeypatch):
    """A Streamlit server compiles page scripts in one ScriptCache, under its lock, for every session. AppTest gives
    each run a cache of its own, and CPython 3.11's AST construction is not thread-safe (python/cpython#106905:
    "AST constructor recursion depth mismatch"), so the sessions here share one lock as they would in the server."""
    lock = threading.Lock()
    get_bytecode = ScriptCache.get_bytecode

    def locked(self, script_path):
        with lock:
            return get_bytecode(self, script_path)

    monkeypatch.setattr(ScriptCache, "get_bytecode", locked)


# AppTest swaps a stand-in Streamlit Runtime in and out of a process-wide slot around each script run, so two AppTest
# runs at the same moment can pull it from under each other ("Runtime hasn't been created!"): in a real server each
# session has the one runtime. The users' threads still race each other to the registry; their page runs take turns.
APPTEST_TURN = threading.Lock()


def _user_clicks_train(data: str) -> AppTest:
    """One browser session: open the Train page with its choices and press Train."""
    at = AppTest.from_file(TRAIN_PAGE, default_timeout=120)
    at.session_state[DATASET] = data
    at.session_state[CHOICES] = LONG
    with APPTEST_TURN:
        at.run()
    with APPTEST_TURN:
        at.button(key="train").click().run()
    assert not at.exception, at.exception
    return at


def _wait_for(condition, what: str, timeout: float = 120) -> None:
    deadline = time.time() + timeout
    while not condition():
        assert time.time() < deadline, f"timed out waiting for {what}"
        time.sleep(0.05)


def _press_stop(at: AppTest) -> None:
    at.run()
    at.button(key="stop").click().run()
    assert not at.exception, at.exception


def _training_interval(run) -> tuple[float, float]:
    events = run.events_since(0)
    return events[0].time, events[-1].time


def test_sessions_share_one_queue_and_stop_only_their_own_run(registry, compile_like_a_server, tmp_path):
    data = str(copy_tiny_shapes(tmp_path / "shapes"))
    with ThreadPoolExecutor(USERS) as pool:  # three users press Train at the same moment
        users = list(pool.map(lambda _: _user_clicks_train(data), range(USERS)))

    ids = [at.session_state[RUN_ID] for at in users]
    assert len(set(ids)) == USERS, "two sessions were attached to the same run"
    assert sorted(run.id for run in registry.runs()) == sorted(ids), "a run was lost or duplicated"
    _wait_for(lambda: registry.current() is not None and registry.current().batches, "the first batch")
    by_user = {id_: registry.get(id_) for id_ in ids}
    running = [id_ for id_, run in by_user.items() if run.status == "running"]
    queued = sorted((id_ for id_ in ids if by_user[id_].status == "queued"), key=registry.queue_position)
    assert len(running) == 1 and len(queued) == USERS - 1, "the device trains one run at a time"
    assert [registry.queue_position(id_) for id_ in queued] == [1, 2]
    user_of = dict(zip(ids, users, strict=True))
    last = user_of[queued[1]]
    last.run()
    assert "Waiting in the queue: 2 runs before this one" in "\n".join(c.value for c in last.caption)

    # the last user in the queue gives up: only that run goes, the one training does not notice
    _press_stop(last)
    assert by_user[queued[1]].status == "stopped" and not by_user[queued[1]].dir.exists()
    assert by_user[running[0]].status == "running" and not by_user[running[0]].stopping

    # the user whose run trains stops it: the next user's run starts, and is then stopped by its own user
    _press_stop(user_of[running[0]])
    assert by_user[running[0]].wait(60) and by_user[running[0]].status == "stopped"
    _wait_for(lambda: by_user[queued[0]].batches, "the queued run to start")
    assert by_user[queued[0]].status == "running"
    _press_stop(user_of[queued[0]])
    assert by_user[queued[0]].wait(60) and by_user[queued[0]].status == "stopped"

    first, second = _training_interval(by_user[running[0]]), _training_interval(by_user[queued[0]])
    assert first[1] <= second[0], "two runs trained at the same time"
    assert sorted(p.name for p in registry.runs_dir.iterdir()) == sorted([running[0], queued[0]])
    assert all(registry.view(id_).summary.status == "stopped" for id_ in (running[0], queued[0]))
