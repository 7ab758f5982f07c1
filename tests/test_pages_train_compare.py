"""The Train and Compare pages, driven like a user would: no data, the sample data, a finished run, a refresh, a
failed run, Stop, and a strategy race. Tiny model (test_resnet at 64 px) on the sample shapes, so they are fast."""

import json
import os
import re
import time
from pathlib import Path

import pytest
from streamlit.testing.v1 import AppTest

from ui_common import CHOICES, DATASET, RUN_ID, get_registry
from workbench.analysis import charts
from workbench.engine.config import RUNS_DIR_ENV, RunConfig
from workbench.runs.registry import RunView

from .conftest import REPO, SHAPES

TRAIN_PAGE = str(REPO / "pages" / "3_train.py")
COMPARE_PAGE = str(REPO / "pages" / "4_compare.py")
TINY = {"backbone": "test_resnet", "strategy": "full", "epochs": 1, "image_size": 64}
TIMEOUT = 60


def _page(path: str, choices: dict | None = None, dataset=SHAPES) -> AppTest:
    at = AppTest.from_file(path, default_timeout=TIMEOUT)
    if dataset is not None:
        at.session_state[DATASET] = str(dataset)
    if choices is not None:
        at.session_state[CHOICES] = choices
    return at


def _wait_until_done(run_id: str) -> None:
    run = get_registry().get(run_id)
    assert run is not None and run.wait(120), f"run {run_id} did not end"


def _stop_everything() -> None:
    registry = get_registry()
    for run in registry.live():
        registry.stop(run.id)
    for run in registry.runs():
        run.wait(60)


def _charts(at: AppTest) -> list[dict]:
    return [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]


def _heatmaps(at: AppTest) -> list[dict]:
    return [trace for spec in _charts(at) for trace in spec["data"] if trace["type"] == "heatmap"]


def _titles(at: AppTest) -> list[str]:
    return [spec["layout"].get("title", {}).get("text", "") for spec in _charts(at)]


def _run_heading(at: AppTest) -> str:
    return next(h.value for h in at.subheader if h.value.startswith("Run:"))


def _texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "warning", "error", "subheader")
    return "\n".join(str(element.value) for kind in kinds for element in at.get(kind))


@pytest.fixture(autouse=True)
def fresh_registry():
    """Every test starts with an empty run registry, as after a server restart."""
    get_registry.clear()
    yield
    _stop_everything()
    get_registry.clear()


@pytest.fixture(scope="module")
def trained(tmp_path_factory):
    """One run trained by clicking Train on the sample data: (runs dir, run id, the page after it finished)."""
    runs_dir = tmp_path_factory.mktemp("runs")
    previous = os.environ.get(RUNS_DIR_ENV)
    os.environ[RUNS_DIR_ENV] = str(runs_dir)
    get_registry.clear()
    at = _page(TRAIN_PAGE, TINY)
    at.run()
    at.button(key="train").click().run()
    assert not at.exception
    run_id = at.query_params["run"]
    assert at.session_state[RUN_ID] == run_id
    _wait_until_done(run_id)
    at.run()
    yield runs_dir, run_id, at
    _stop_everything()
    if previous is None:
        os.environ.pop(RUNS_DIR_ENV, None)
    else:
        os.environ[RUNS_DIR_ENV] = previous


@pytest.fixture
def finished_run(trained, monkeypatch) -> str:
    runs_dir, run_id, _ = trained
    monkeypatch.setenv(RUNS_DIR_ENV, str(runs_dir))
    return run_id


# -------------------------------------------------------------------------------------------------------------------
# Train page


def test_train_page_without_data_offers_the_sample_data(runs_dir):
    at = _page(TRAIN_PAGE, dataset=None)
    at.run()
    assert not at.exception
    assert "No images chosen yet" in at.info[0].value
    at.button(key="use_sample").click().run()
    assert not at.exception
    assert at.session_state[DATASET].endswith("shapes")
    assert "**Data:** shapes" in _texts(at) and "tf_efficientnet_lite0" in _texts(at)
    assert at.button(key="train").label == "Train"


def test_train_page_with_sample_data_summarises_the_run_and_warns_about_random_weights(runs_dir):
    at = _page(TRAIN_PAGE, TINY)
    at.run()
    assert not at.exception
    texts = _texts(at)
    assert "**Backbone:** test_resnet" in texts and "**Epochs:** 1" in texts and "**Image size:** 64 px" in texts
    assert any("No pretrained weights for test_resnet" in w.value for w in at.warning)  # offline: random init


def test_finished_run_shows_curves_confusion_matrix_and_result(trained):
    _, run_id, at = trained
    assert not at.exception
    assert at.query_params["run"] == run_id
    assert _run_heading(at).endswith("finished")
    specs = _charts(at)
    assert len(specs) == 3  # curves, confusion matrix, learning rate
    heatmap = _heatmaps(at)[0]
    assert heatmap["x"] == heatmap["y"] == ["circle", "cross", "square", "star", "triangle"]
    assert sum(int(cell.split("<br>")[0]) for row in heatmap["text"] for cell in row) == 50  # every val image
    assert [m.label for m in at.metric][0] == "Validation accuracy"
    assert list(at.dataframe[0].value.index) == ["circle", "cross", "square", "star", "triangle"]
    assert at.button(key="train").label == "Train"  # nothing live: a new run can start


def test_refresh_reattaches_to_the_run_from_the_url(finished_run):
    at = _page(TRAIN_PAGE, TINY, dataset=None)  # a new browser session: nothing in session_state
    at.query_params["run"] = finished_run
    at.run()
    assert not at.exception
    assert at.session_state[RUN_ID] == finished_run
    assert _run_heading(at).endswith("finished")  # found on disk: the registry is new
    assert len(_heatmaps(at)) == 1


def test_a_new_session_attaches_to_the_live_run_and_stop_stops_it(runs_dir):
    run = get_registry().submit(RunConfig(data=str(SHAPES), **{**TINY, "epochs": 50}, batch_size=8))
    deadline = time.time() + TIMEOUT
    while not run.batches:
        assert time.time() < deadline and not run.done, run.error
        time.sleep(0.1)
    at = _page(TRAIN_PAGE, dataset=None)
    at.run()
    assert not at.exception
    assert at.query_params["run"] == run.id
    assert re.match(r"Epoch \d+ of 50 · batch", at.get("progress")[0].proto.text)
    at.button(key="stop").click().run()
    assert run.wait(30) and run.status == "stopped"
    at.run()
    assert not at.exception
    assert any("Stopped" in w.value for w in at.warning)
    assert run.summary["status"] == "stopped" and run.summary["val_accuracy"] is not None


def _live_view(run_dir: Path, epochs_done: int) -> RunView:
    """A run in its epoch `epochs_done + 1` of 10, as the registry shows it (nothing trains: the test moves it on)."""
    names = ["circle", "cross", "square", "star", "triangle"]
    diagonal = [[2 if i == j else 0 for j in range(5)] for i in range(5)]
    metrics = [{"epoch": e, "train_loss": 1 / e, "val_loss": 1 / e, "train_acc": 0.5, "val_acc": 0.5,
                "confusion_matrix": diagonal} for e in range(1, epochs_done + 1)]
    batches = [{"epoch": e, "step": 3 * e + b, "batch": b, "batches": 3, "loss": 1.0, "lr": 1e-3, "images_per_s": 50.0,
                "seconds_left": 10.0, "phase": "training"} for e in range(1, epochs_done + 2) for b in (1, 2, 3)][:-2]
    return RunView(id=run_dir.name, status="running", phase="training",
                   config=RunConfig(data=str(SHAPES), **{**TINY, "epochs": 10}), facts={"class_names": names},
                   metrics=metrics, batches=batches, progress=dict(batches[-1]), summary=None, health=None,
                   error=None, hint=None, dir=run_dir)


def _watching(run_id: str) -> AppTest:
    at = _page(TRAIN_PAGE, dataset=None)
    at.query_params["run"] = run_id
    at.run()
    assert not at.exception
    return at


def test_a_class_watching_a_live_run_shares_its_charts_until_the_next_epoch(tmp_path, monkeypatch):
    """Every session on a live run redraws its charts at each new epoch: the figures are built once for all of
    them (30 students each building them slowed the training to half speed), and the next epoch is drawn anew."""
    view = _live_view(tmp_path / "runs" / "watched-run", epochs_done=2)
    monkeypatch.setattr(get_registry(), "view", lambda run_id, viewer=None: view if run_id == view.id else None)
    built = []
    curves = charts.training_curves
    monkeypatch.setattr(charts, "training_curves", lambda *args: built.append(args) or curves(*args))
    first, second = _watching(view.id), _watching(view.id)
    assert len(built) == 1
    assert _charts(first) == _charts(second)
    assert "Validation confusion matrix, epoch 2" in _titles(second)
    view.metrics.append({**view.metrics[-1], "epoch": 3})
    third = _watching(view.id)
    assert len(built) == 2
    assert "Validation confusion matrix, epoch 3" in _titles(third)


def test_a_failed_run_says_why_and_what_to_try(runs_dir):
    at = _page(TRAIN_PAGE, {**TINY, "strategy": "partial", "freeze_depth": 99})
    at.run()
    at.button(key="train").click().run()
    _wait_until_done(at.query_params["run"])
    at.run()
    assert not at.exception
    assert "The run failed" in at.error[0].value and "--freeze-depth 99" in at.error[0].value
    assert "What to try" in at.info[0].value


def test_choices_that_cannot_run_are_refused_before_training(runs_dir):
    at = _page(TRAIN_PAGE, {**TINY, "backbone": "resnet5000"})
    at.run()
    assert not at.exception
    assert "These choices cannot run" in at.error[0].value and "resnet5000" in at.error[0].value
    assert all(button.key != "train" for button in at.button)


# -------------------------------------------------------------------------------------------------------------------
# Compare page


def test_compare_page_without_runs_or_data(runs_dir):
    at = _page(COMPARE_PAGE, dataset=None)
    at.run()
    assert not at.exception
    assert "No runs yet" in _texts(at) and "to start a race" in _texts(at)


def test_compare_page_lists_runs_from_disk_and_overlays_them(finished_run):
    at = _page(COMPARE_PAGE, dataset=None)
    at.run()
    assert not at.exception
    table = at.dataframe[0].value
    row = table[table["run id"] == finished_run].iloc[0]
    assert row["status"] == "finished" and row["strategy"] == "full" and row["backbone"] == "test_resnet"
    assert row["epochs"] == 1 and row["image size"] == 64 and 0 <= row["val accuracy"] <= 1
    assert at.multiselect(key="compare_picked").value == [finished_run]
    titles = [spec["layout"]["title"]["text"] for spec in _charts(at)]
    assert titles[:2] == ["Validation accuracy", "Validation loss"] and len(_heatmaps(at)) == 1


def test_strategy_race_queues_one_run_per_strategy_and_picks_them(runs_dir):
    at = _page(COMPARE_PAGE, TINY)
    at.run()
    assert not at.exception
    race = at.multiselect(key="race_strategies")
    race.set_value(["linear_probe", "scratch"])
    at.number_input[0].set_value(1)
    at.number_input[1].set_value(64)
    at.button[0].click().run()
    assert not at.exception
    runs = get_registry().runs()
    assert [r.config.strategy for r in runs] == ["scratch", "linear_probe"]
    assert {(r.config.epochs, r.config.image_size) for r in runs} == {(1, 64)}
    assert set(at.multiselect(key="compare_picked").value) == {r.id for r in runs}
    table = at.dataframe[0].value
    assert set(table["strategy"]) == {"linear_probe", "scratch"}
    assert set(table["status"]) <= {"queued", "preparing", "running", "finished"}


def test_freeze_sweep_queues_partial_at_the_chosen_depths(runs_dir):
    at = _page(COMPARE_PAGE, TINY)
    at.run()
    at.multiselect(key="sweep_depths").set_value([0, 2])
    at.number_input[2].set_value(1)
    at.button[1].click().run()
    assert not at.exception
    runs = get_registry().runs()
    assert sorted((r.config.strategy, r.config.freeze_depth) for r in runs) == [("partial", 0), ("partial", 2)]
