"""The Inside the model page, driven like a user would (streamlit.testing.v1.AppTest)."""

# The trained runs are a fixture of test_insight.py, imported and then named as test arguments.
# ruff: noqa: F401, F811

from __future__ import annotations

import shutil

import pytest
from streamlit.testing.v1 import AppTest

from ui_common import RUN_ID, get_registry
from workbench import runs
from workbench.analysis import insight

from .conftest import REPO
from .test_insight import trained

PAGE = str(REPO / "pages" / "6_insight.py")
TIMEOUT = 120
TABS = ("Confusion & mistakes", "Grad-CAM", "Feature map", "Weight drift", "Per-class report")


@pytest.fixture(autouse=True)
def fresh_registry():
    get_registry.clear()
    yield
    get_registry.clear()


def _copy(trained, name: str, runs_dir, run_id: str):
    """A trained run of test_insight.py under this test's runs folder, with an id that sorts as we need."""
    runs_dir.mkdir(parents=True, exist_ok=True)
    return shutil.copytree(trained(name), runs_dir / run_id)


def _open(tab: str, at: AppTest | None = None) -> AppTest:
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT) if at is None else at
    at.session_state["insight_tab"] = tab
    at.run()
    assert not at.exception, at.exception
    return at


def _opened_tab(at: AppTest):
    return next(tab for tab in at.tabs if tab.children)


def _plotly_charts(node) -> int:
    return len(node.get("plotly_chart"))


def _captions(node) -> list[str]:
    return [caption for image in node.get("image") for caption in image.captions]


def test_without_a_trained_model_the_page_points_to_the_train_page(runs_dir):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/6_insight.py").run()
    assert not at.exception
    assert at.title[0].value == "6 · Inside the model"
    assert "No trained model to look inside yet" in at.info[0].value and "**Train**" in at.info[0].value
    assert not at.tabs
    assert at.get("page_link")[0].label == "Go to the Train page"


@pytest.mark.parametrize("name, method", [("full", insight.CNN_METHOD), ("vit", insight.TOKEN_METHOD)])
def test_every_view_renders_for_a_cnn_and_a_vit_run(trained, runs_dir, name, method):
    run_dir = _copy(trained, name, runs_dir, f"20000101-000000-full-{name}-aaaa")
    wrong = [p for p in insight.validation_predictions(run_dir) if not p.correct]

    confusion = _opened_tab(_open(TABS[0]))
    assert _plotly_charts(confusion) == 1
    losses = [c for c in _captions(confusion) if "→" in c]
    assert len(losses) == min(12, len(wrong))  # the top-losses grid

    gradcam = _opened_tab(_open(TABS[1]))
    assert [c for c in _captions(gradcam)][0] == "What the network sees" and len(gradcam.get("image")) == 2
    assert any(method == caption.value for caption in gradcam.caption)
    assert any("Heat for" in m.value for m in gradcam.markdown)

    features = _opened_tab(_open(TABS[2]))
    assert [m.label for m in features.get("metric")] == ["Class separation before", "Class separation after"]
    assert _plotly_charts(features) == 1

    assert _plotly_charts(_opened_tab(_open(TABS[3]))) == 1  # weight drift bars

    report = _opened_tab(_open(TABS[4]))
    table = report.dataframe[0].value
    assert list(table.columns) == ["precision", "recall", "f1", "support"] and table["support"].sum() == 50


def _check_cell_shown(at: AppTest, run_dir, true_class: str, predicted_class: str, count: int) -> None:
    assert not at.exception
    assert (at.selectbox(key="insight_true").value, at.selectbox(key="insight_pred").value) == \
        (true_class, predicted_class)
    cell = [c for c in _captions(_opened_tab(at)) if "→" not in c]  # the top-losses grid has "true → predicted"
    expected = insight.cell_images(run_dir, true_class, predicted_class)
    assert len(cell) == count == len(expected)
    assert cell == [f"{image.name.split('/')[-1]} · {image.confidence:.0%} sure" for image in expected]
    assert f"**{count} image(s)** of **{true_class}** predicted as **{predicted_class}**" in at.markdown[0].value


def test_clicking_a_cell_or_picking_it_shows_exactly_the_images_of_that_cell(trained, runs_dir):
    run_dir = _copy(trained, "full", runs_dir, "20000101-000000-full-test_resnet-aaaa")
    summary = runs.load_run(run_dir).summary
    names, matrix = summary.class_names, summary.confusion_matrix
    (t1, p1), (t2, p2) = [(t, p) for t in range(len(names)) for p in range(len(names)) if t != p and matrix[t][p]][:2]
    at = _open(TABS[0])
    # a click on the matrix: Streamlit hands the page the clicked point (x: predicted, y: true)
    at.session_state["insight_confusion"] = {"selection": {"points": [{"x": names[p1], "y": names[t1]}]}}
    at.run()
    _check_cell_shown(at, run_dir, names[t1], names[p1], matrix[t1][p1])
    # the two boxes: the earlier click, still selected on the chart, does not take over again
    at.selectbox(key="insight_true").set_value(names[t2])
    at.selectbox(key="insight_pred").set_value(names[p2])
    at.run()
    _check_cell_shown(at, run_dir, names[t2], names[p2], matrix[t2][p2])


def test_the_train_pages_run_is_chosen_and_grad_cam_compares_two_runs(trained, runs_dir):
    older = _copy(trained, "partial", runs_dir, "20000101-000000-partial-test_resnet-aaaa")
    _copy(trained, "full", runs_dir, "20000101-000001-full-test_resnet-bbbb")
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state[RUN_ID] = older.name
    at = _open(TABS[1], at)
    assert at.selectbox(key="insight_run").value == older.name
    assert at.query_params["run"] == older.name
    at.selectbox(key="insight_cam_other").set_value("20000101-000001-full-test_resnet-bbbb").run()
    assert not at.exception
    captions = _captions(_opened_tab(at))
    assert len(captions) == 3 and captions[1].startswith("partial") and captions[2].startswith("full")
