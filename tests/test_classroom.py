"""Classroom mode: the teacher's classroom.toml, signing in, data roots nobody can climb out of, who sees which run,
and each person's limits; each refusal's message asserted."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from workbench.core.classroom import CLASSROOM_ENV, ME, AccessError, Limits, Person, inside_roots, server_mode
from workbench.deploy.export import export_zip
from workbench.engine.config import RunConfig
from workbench.runs import access
from workbench.runs.records import RunRecord
from workbench.runs.registry import RunRegistry

from .conftest import REPO, SHAPES
from .test_faults import FAST, copy_tiny_shapes

TEACHER, ADA, BOB = Person("teacher", "teacher"), Person("ada"), Person("bob")


def classroom_file(tmp_path: Path, roots: list[Path], **limits) -> Path:
    lines = [f"data_roots = {[str(r) for r in roots]!r}".replace("'", '"'), "[limits]",
             *(f"{k} = {v}" for k, v in limits.items()),
             "[[people]]", 'name = "teacher"', 'role = "teacher"',
             f'code_sha256 = "{hashlib.sha256(b"owl-1").hexdigest()}"',
             "[[people]]", 'name = "ada"', 'code = "maple-7"',
             "[[people]]", 'name = "bob"', 'code = "birch-3"']
    path = tmp_path / "classroom.toml"
    path.write_text("\n".join(lines) + "\n")
    return path


def test_personal_is_the_default_and_allows_everything():
    mode = server_mode({})
    assert not mode.classroom and mode.sign_in("anything") == ME
    assert "Personal mode" in mode.describe()[0]


def test_the_classroom_file_names_people_roots_and_limits(tmp_path):
    mode = server_mode({CLASSROOM_ENV: str(classroom_file(tmp_path, [tmp_path], queued_runs=1))})
    assert mode.classroom and mode.limits.queued_runs == 1 and mode.data_roots == (tmp_path.resolve(),)
    assert mode.sign_in("owl-1").is_teacher and mode.sign_in(" maple-7 ").name == "ada"
    with pytest.raises(AccessError, match="That access code is not one of this class's"):
        mode.sign_in("Maple-7")


@pytest.mark.parametrize("broken, message", [
    ('[[people]]\nname = "ada"\ncode = "x"\n', "names no teacher"),
    ('[[people]]\nname = "../t"\nrole = "teacher"\ncode = "x"\n', "cannot be a name"),
    ('[[people]]\nname = "t"\nrole = "admin"\ncode = "x"\n', "role must be teacher or student"),
    ('[limits]\nqueue = 3\n[[people]]\nname = "t"\nrole = "teacher"\ncode = "x"\n', "unknown limit"),
    ('data_roots = ["/no/such/folder"]\n[[people]]\nname = "t"\nrole = "teacher"\ncode = "x"\n', "not folders"),
])
def test_a_broken_classroom_file_stops_the_server_with_the_reason(tmp_path, broken, message):
    path = tmp_path / "classroom.toml"
    path.write_text(broken)
    with pytest.raises(ValueError, match=message):
        server_mode({CLASSROOM_ENV: str(path)})


def test_paths_outside_the_data_roots_are_refused_however_they_are_written(tmp_path):
    root = (tmp_path / "class-data").resolve()
    (root / "birds").mkdir(parents=True)
    (tmp_path / "secret").mkdir()
    (root / "shortcut").symlink_to(tmp_path / "secret")
    roots = (root,)
    assert inside_roots(root / "birds", roots) == root / "birds"
    with pytest.raises(AccessError, match=r"outside the folders this class may read \(it climbs out with '\.\.'\)"):
        inside_roots(f"{root}/birds/../../secret", roots)
    with pytest.raises(AccessError, match=r"outside the folders this class may read \(it leads through a symbolic"):
        inside_roots(root / "shortcut", roots)
    with pytest.raises(AccessError, match=rf"'/etc' is outside the folders this class may read\. Folders the teacher "
                                          rf"opened: {root}"):
        inside_roots("/etc", roots)


def record(tmp_path: Path, owner: str | None, name: str = "run") -> RunRecord:
    folder = tmp_path / name
    folder.mkdir()
    return RunRecord(id=name, dir=folder, facts={"owner": owner} if owner else {})


def test_students_see_their_own_runs_and_shared_ones_and_change_only_their_own(tmp_path):
    adas, bobs = record(tmp_path, "ada", "a"), record(tmp_path, "bob", "b")
    assert access.can_see(ADA, adas) and not access.can_see(ADA, bobs) and access.can_see(TEACHER, bobs)
    with pytest.raises(AccessError, match="There is no run 'b' that you can open"):
        access.require_visible(ADA, bobs, "b")
    with pytest.raises(AccessError, match="Only the teacher can share"):
        access.share(ADA, adas.dir)
    access.share(TEACHER, bobs.dir)
    assert access.can_see(ADA, bobs)
    with pytest.raises(AccessError, match="Only bob or the teacher may stop run 'b'"):
        access.require_change(ADA, bobs, "stop")
    access.require_change(TEACHER, bobs, "delete")


def test_limits_refuse_with_what_to_do(tmp_path):
    limits = Limits(queued_runs=2, upload_mb=1, uploads=1, disk_mb=2)
    with pytest.raises(AccessError, match="You have 2 runs queued or training, the most this class allows"):
        access.check_submit(ADA, limits, 2)
    access.check_submit(TEACHER, limits, 9)
    mine = tmp_path / "uploads" / "ada"
    with pytest.raises(AccessError, match=r"This upload is 2 MB, more than the 1 MB one upload may be"):
        access.check_upload(ADA, limits, mine, 2 * 2**20, 0)
    (mine / "first").mkdir(parents=True)
    with pytest.raises(AccessError, match="You keep 1 uploads, the most this class allows"):
        access.check_upload(ADA, limits, mine, 10, 0)
    with pytest.raises(AccessError, match=r"past the 2 MB each person may use"):
        access.check_disk(ADA, limits, 2 * 2**20, 1, "This run")


def test_old_unused_uploads_are_cleaned_and_used_ones_kept(tmp_path):
    root = tmp_path / "uploads"
    old, used, fresh = root / "ada" / "old", root / "ada" / "used", root / "bob" / "fresh"
    for folder in (old, used, fresh):
        folder.mkdir(parents=True)
    week_ago = os.path.getmtime(fresh) - 8 * 86400
    for folder in (old, used):
        os.utime(folder, (week_ago, week_ago))
    deleted = access.clean_uploads(root, Limits(upload_days=7), in_use={used.resolve()})
    assert deleted == [old] and used.exists() and fresh.exists()


def _signed_in_app() -> None:
    """app.py's gate, alone (AppTest cannot rerun app.py's hidden navigation the way a server does; the browser test
    tests/test_browser_classroom.py signs in through the whole app)."""
    import streamlit as st

    from ui_common import mode_sidebar, signed_in

    if signed_in() is None:
        st.stop()
    mode_sidebar()
    st.markdown("inside the app")


def test_a_classroom_server_asks_for_a_code_and_says_what_it_allows(monkeypatch, tmp_path):
    from ui_common import PERSON, serving

    monkeypatch.setenv(CLASSROOM_ENV, str(classroom_file(tmp_path, [SHAPES.parent])))
    serving.clear()
    at = AppTest.from_function(_signed_in_app, default_timeout=60).run()
    assert not at.exception and at.text_input(key="sign_in.code")
    at.text_input(key="sign_in.code").set_value("wrong")
    at.button[0].click().run()
    assert "That access code is not one of this class's" in at.error[0].value
    assert "inside the app" not in [m.value for m in at.markdown]
    at.text_input(key="sign_in.code").set_value("maple-7")
    at.button[0].click().run()
    assert not at.exception and "inside the app" in [m.value for m in at.markdown]
    sidebar = " ".join(c.value for c in at.sidebar.caption)
    assert "Classroom mode" in sidebar and str(SHAPES.parent) in sidebar
    assert "Signed in as **ada** (student)" in " ".join(m.value for m in at.sidebar.markdown)

    data = AppTest.from_file(str(REPO / "pages" / "1_data.py"), default_timeout=60)
    data.session_state[PERSON] = at.session_state[PERSON]
    data.run()
    data.radio(key="data.source").set_value("local").run()
    data.text_input(key="data.local_path").set_value("/etc").run()
    assert "'/etc' is outside the folders this class may read" in data.error[0].value
    serving.clear()


# --- the rule in the registry and on the pages --------------------------------------------------------------------


def tiny_config(tmp_path: Path, **changes) -> RunConfig:
    data = tmp_path / "shapes"
    if not data.exists():
        copy_tiny_shapes(data)
    return RunConfig(**{**FAST, "data": str(data), **changes})


def test_a_student_cannot_see_stop_delete_or_export_another_students_run(tmp_path, runs_dir):
    registry = RunRegistry(runs_dir, gpus=[])
    run = registry.submit(tiny_config(tmp_path), ADA)
    assert run.wait(120) and run.status == "finished", run.error
    assert json.loads((run.dir / "config.json").read_text())["owner"] == "ada"
    assert registry.view(run.id, ADA) is not None and [r.id for r in registry.records(ADA)] == [run.id]
    assert registry.view(run.id, BOB) is None and registry.records(BOB) == []
    with pytest.raises(AccessError, match=f"There is no run '{run.id}' that you can open"):
        registry.delete(run.id, BOB)
    with pytest.raises(AccessError, match=f"There is no run '{run.id}' that you can open"):
        export_zip(run.dir, tmp_path / "x.zip", BOB)
    registry.share(run.id, TEACHER)
    assert registry.view(run.id, BOB) is not None  # shared: bob may look, not change
    with pytest.raises(AccessError, match=f"Only ada or the teacher may delete run '{run.id}'"):
        registry.delete(run.id, BOB)
    registry.delete(run.id, TEACHER)
    assert not run.dir.exists() and registry.view(run.id, TEACHER) is None


def test_a_run_past_the_queue_limit_is_refused_and_stop_is_the_owners(tmp_path, runs_dir):
    registry = RunRegistry(runs_dir, gpus=[], limits=Limits(queued_runs=1))
    long = registry.submit(tiny_config(tmp_path, epochs=200), ADA)
    with pytest.raises(AccessError, match="You have 1 runs queued or training, the most this class allows"):
        registry.submit(tiny_config(tmp_path), ADA)
    with pytest.raises(AccessError, match=f"There is no run '{long.id}' that you can open"):
        registry.stop(long.id, BOB)
    registry.submit(tiny_config(tmp_path), TEACHER).wait(0)  # the teacher has no limit
    registry.stop(long.id, ADA)
    assert long.wait(120) and long.status == "stopped"
    for run in registry.runs():
        registry.stop(run.id)
        run.wait(120)


def test_a_run_that_would_not_fit_the_disk_is_refused_before_it_starts(tmp_path, runs_dir, monkeypatch):
    from workbench.engine import run as run_module

    monkeypatch.setattr(run_module.shutil, "disk_usage", lambda path: shutil._ntuple_diskusage(10**9, 10**9, 2**20))
    run = RunRegistry(runs_dir, gpus=[]).submit(tiny_config(tmp_path), ADA)
    assert run.wait(120) and run.status == "failed"
    assert "has 1 MB free, and this run needs about" in run.error and not run.dir.exists()


def test_a_student_opening_another_students_run_by_url_sees_nothing_of_it(tmp_path, runs_dir, monkeypatch):
    from ui_common import PERSON, get_registry, serving

    monkeypatch.setenv(CLASSROOM_ENV, str(classroom_file(tmp_path, [tmp_path])))
    serving.clear()
    get_registry.clear()
    run = get_registry().submit(tiny_config(tmp_path), ADA)
    assert run.wait(120) and run.status == "finished", run.error
    at = AppTest.from_file(str(REPO / "pages" / "3_train.py"), default_timeout=60)
    at.session_state[PERSON] = serving().sign_in("birch-3")
    at.query_params["run"] = run.id
    at.run()
    assert not at.exception
    assert f"There is no run `{run.id}` that you can open" in at.warning[0].value
    assert not at.get("plotly_chart") and not at.metric
    serving.clear()
    get_registry.clear()
