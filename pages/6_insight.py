"""Inside the model: the validation images behind each confusion-matrix cell and the most confidently wrong ones,
Grad-CAM heatmaps, the validation set in feature space before and after training, how far each layer group moved,
the per-class report, and for a model that answers several tasks each task's results. Everything is computed by
`workbench.insight`; this page picks and draws."""

from __future__ import annotations

import streamlit as st

from ui_common import IMAGE_TYPES, RUN_ID, loaded_model, model_stamp, pick_run, runs_with_model
from workbench.analysis import charts, insight
from workbench.data import DataError
from workbench.models.heads import TASKS_KEY
from workbench.runs.records import RunRecord

PICKED = "insight_run"  # session key: the run id chosen on this page
LAST_CLICK = "insight_last_click"  # session key: the matrix cell clicked last (the chart keeps it selected)
TABS = ("Confusion & mistakes", "Grad-CAM", "Feature map", "Weight drift", "Per-class report")
TASKS_TAB = "Every task"  # only for a run whose model answers several tasks
GRID_COLUMNS = 6
PREDICTED = "the predicted class"
CAM_WIDTH = 320  # pixels: the network's input is often 64-224 px, shown larger but not page-wide


# -------------------------------------------------------------------------------------------------------------------
# Cached library calls: keyed by run directory and the time its model was saved


@st.cache_data(max_entries=16, show_spinner="Running the model over the validation images…")
def cached_predictions(run_dir: str, stamp: float) -> list[insight.ValPrediction]:
    return insight.validation_predictions(run_dir)


@st.cache_data(max_entries=64, show_spinner="Computing the heatmap…")
def cached_explanation(run_dir: str, stamp: float, image: str | bytes, class_name: str | None) -> insight.Explanation:
    return insight.explain(loaded_model(run_dir, stamp), image, class_name)


@st.cache_data(max_entries=16, show_spinner="Computing the features before and after training…")
def cached_feature_map(run_dir: str, stamp: float, method: str) -> insight.FeatureMap:
    return insight.feature_map(run_dir, method)


@st.cache_data(max_entries=16, show_spinner="Rebuilding the starting weights…")
def cached_drift(run_dir: str, stamp: float) -> list[insight.GroupDrift]:
    return insight.weight_drift(run_dir)


def computed(view: str, call, record: RunRecord, *args):
    """`call(run directory, model stamp, *args)`, one of the cached calls above, or None after saying why this `view`
    cannot be computed for the run."""
    try:
        return call(str(record.dir), model_stamp(record), *args)
    except (insight.InsightError, DataError) as error:
        level, text = insight.problem_note(view, error)
        getattr(st, level)(text)
        return None


# -------------------------------------------------------------------------------------------------------------------
# Which run


def run_ui(records: list[RunRecord]) -> RunRecord | None:
    if not records:
        st.info("No trained model to look inside yet. Train one on the **Train** page (the sample shapes train in "
                "about a minute), then come back here.")
        st.page_link("pages/3_train.py", label="Go to the Train page", icon="🏋️")
        return None
    # the run in the URL, else the Train page's run, else the newest finished one
    default = insight.default_run(records, st.query_params.get("run"), st.session_state.get(RUN_ID))
    chosen = pick_run(records, "Run", PICKED, default=default,
                      help="Every run that ended with a saved model, newest first.")
    st.query_params["run"] = chosen.id
    return chosen


# -------------------------------------------------------------------------------------------------------------------
# Confusion & mistakes


def image_grid(predictions: list[insight.ValPrediction], caption) -> None:
    """Thumbnails (what the network saw) in rows of GRID_COLUMNS, each with its caption; the first few only."""
    shown, more = insight.first_shown(predictions)
    for start in range(0, len(shown), GRID_COLUMNS):
        for column, prediction in zip(st.columns(GRID_COLUMNS), shown[start:start + GRID_COLUMNS], strict=False):
            column.image(prediction.thumbnail, caption=caption(prediction), width="stretch")
    if more:
        st.caption(more)


def selected_points(event) -> list[dict]:
    """The points picked on a chart drawn with `on_select` (its state reads like a dict)."""
    return list(((event or {}).get("selection") or {}).get("points") or [])


def cell_choice_ui(matrix: list[list[int]], class_names: list[str], event) -> tuple[str, str]:
    """The cell to show: clicked on the matrix or picked in the two boxes (a click sets the boxes)."""
    clicked = insight.clicked_cell(selected_points(event), class_names)
    if clicked is not None and clicked != st.session_state.get(LAST_CLICK):  # a new click, not the kept selection
        st.session_state[LAST_CLICK] = clicked
        st.session_state["insight_true"], st.session_state["insight_pred"] = clicked
    picked = (st.session_state.get("insight_true"), st.session_state.get("insight_pred"))
    true, pred = insight.cell_or_first(picked, matrix, class_names)  # a cell of this run, however it was picked
    st.session_state["insight_true"], st.session_state["insight_pred"] = true, pred
    left, right = st.columns(2)
    true = left.selectbox("True class", class_names, key="insight_true")
    pred = right.selectbox("Predicted as", class_names, key="insight_pred")
    return true, pred


def confusion_ui(record: RunRecord) -> None:
    predictions = computed("predictions", cached_predictions, record)
    if predictions is None:
        return
    class_names = record.class_names
    matrix = insight.prediction_matrix(predictions, class_names)
    recount = insight.recount_note(record.summary.confusion_matrix if record.summary else None, matrix)
    if recount:
        st.warning(recount)
    st.caption("Rows are the true classes, columns what the model said. Click a cell (or pick the two classes below) "
               "to see the validation images behind it, with how sure the model was.")
    figure = charts.clickable_confusion_figure(matrix, class_names, title="Confusion matrix (validation images)")
    event = st.plotly_chart(figure, key="insight_confusion", on_select="rerun", selection_mode="points")
    true, pred = cell_choice_ui(matrix, class_names, event)
    cell = insight.in_cell(predictions, true, pred)
    st.markdown(insight.cell_heading(true, pred, len(cell)))
    image_grid(cell, insight.cell_caption)
    st.subheader("Top losses: the most confidently wrong")
    wrong = insight.most_wrong(predictions, 12)
    if not wrong:
        st.success("The model gets every validation image right.")
        return
    st.caption(insight.VIEWS_EXPLAINED["top_losses"])
    image_grid(wrong, insight.mistake_caption)


# -------------------------------------------------------------------------------------------------------------------
# Grad-CAM


def cam_image_ui(record: RunRecord) -> str | bytes | None:
    """The picture to explain: a validation image (its path) or an upload (its bytes)."""
    source = st.radio("Picture", ["A validation image", "Upload a picture"], key="insight_cam_source",
                      horizontal=True)
    if source == "Upload a picture":
        upload = st.file_uploader("Picture", type=IMAGE_TYPES, key="insight_cam_upload")
        return upload.getvalue() if upload is not None else None
    predictions = computed("predictions", cached_predictions, record)
    if not predictions:
        return None
    by_index = {p.index: p for p in insight.mistakes_first(predictions)}
    chosen = st.selectbox("Validation image", list(by_index), key="insight_cam_image",
                          format_func=lambda i: insight.image_label(by_index[i]))
    return insight.validation_image(record.dir, by_index[chosen])


def gradcam_ui(record: RunRecord, records: list[RunRecord]) -> None:
    st.caption("Grad-CAM colours the parts of the picture that raised the score of a class: red is where the "
               "evidence is strongest, blue where there is none. Pick a class to ask *why not this one?*")
    image = cam_image_ui(record)
    left, right = st.columns(2)
    class_name = left.selectbox("Heat for", [PREDICTED, *record.class_names], key="insight_cam_class")
    others = insight.comparable_runs(record, records)
    labels = charts.run_labels(records)
    other_id = right.selectbox("Side by side with", ["none", *[r.id for r in others]], key="insight_cam_other",
                               format_func=lambda i: "no other run" if i == "none" else labels[i],
                               help="Another run with the same classes, on the same picture: what training changed.")
    if image is None:
        st.info("Upload a picture to see where the model looks.")
        return
    wanted = None if class_name == PREDICTED else class_name
    chosen = [record] + [r for r in others if r.id == other_id]
    found = [(run, computed("grad_cam", cached_explanation, run, image, wanted)) for run in chosen]
    found = [(run, explanation) for run, explanation in found if explanation is not None]
    if not found:
        return
    columns = st.columns(1 + len(found))
    columns[0].image(found[0][1].image, caption="What the network sees", width=CAM_WIDTH)
    for column, (run, explanation) in zip(columns[1:], found, strict=True):
        column.image(explanation.overlay(), caption=labels[run.id], width=CAM_WIDTH)
        column.markdown(explanation.sentence())
        column.caption(explanation.method)


# -------------------------------------------------------------------------------------------------------------------
# Feature map


def feature_map_ui(record: RunRecord) -> None:
    st.caption("Every validation image is a point: the features the classifier reads, squeezed into 2-D and "
               "coloured by true class. Before training (left) and after (right): fine-tuning should pull the "
               "classes apart. Hover a point for its file; click or lasso points to see their pictures.")
    method = st.radio("Projection", list(insight.PROJECTIONS), key="insight_projection", horizontal=True,
                      format_func=insight.PROJECTIONS.get, help=insight.VIEWS_EXPLAINED["projections"])
    found = computed("feature_map", cached_feature_map, record, method)
    if found is None:
        return
    st.caption(f"Before = {found.before_label}.")
    left, right = st.columns(2)
    left.metric("Class separation before", f"{found.separation_before:.2f}")
    right.metric("Class separation after", f"{found.separation_after:.2f}",
                 delta=f"{found.separation_after - found.separation_before:+.2f}")
    st.caption(insight.VIEWS_EXPLAINED["separation"])
    figure = charts.class_feature_map_figure(found.before, found.after, found.points,
                                             (found.separation_before, found.separation_after),
                                             insight.PROJECTIONS[method])
    event = st.plotly_chart(figure, key="insight_feature_chart", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    picked = insight.picked_points(selected_points(event), found)
    if picked:
        st.markdown(f"**{len(picked)} point(s) picked:**")
        image_grid(picked, insight.point_caption)


# -------------------------------------------------------------------------------------------------------------------
# Weight drift and per-class report


def drift_ui(record: RunRecord) -> None:
    st.caption(insight.VIEWS_EXPLAINED["drift"])
    drifts = computed("drift", cached_drift, record)
    if drifts is not None:
        st.plotly_chart(charts.weight_drift_figure(drifts), key="insight_drift")


def report_ui(record: RunRecord) -> None:
    predictions = computed("predictions", cached_predictions, record)
    if predictions is None:
        return
    class_names = record.class_names
    report = insight.class_report(insight.prediction_matrix(predictions, class_names), class_names)
    st.caption(insight.VIEWS_EXPLAINED["report"])
    st.dataframe(report.style.format({"precision": "{:.1%}", "recall": "{:.1%}", "f1": "{:.1%}"}),
                 key="insight_report")
    st.plotly_chart(charts.class_report_figure(report), key="insight_report_chart")


# -------------------------------------------------------------------------------------------------------------------
# Several tasks


def recorded_tasks(record: RunRecord) -> list[dict]:
    """The tasks a run's summary measured (name, classes, weight, validation accuracy, confusion matrix, per-class
    report); empty for a run with one task."""
    tasks = record.summary.get(TASKS_KEY) if record.summary else None
    return tasks if tasks and len(tasks) > 1 else []


def tasks_ui(record: RunRecord, tasks: list[dict]) -> None:
    st.caption(f"This model answers {len(tasks)} tasks with one shared backbone and one head per task. The other "
               f"tabs look at the first task ({tasks[0]['name']}); here is every task, measured on the validation "
               "images that have a label for it, with the weights that were saved.")
    columns = st.columns(len(tasks))
    for column, task in zip(columns, tasks, strict=True):
        accuracy = task.get("val_accuracy")
        column.metric(f"{task['name']} accuracy", "—" if accuracy is None else f"{accuracy:.1%}",
                      help=f"{task.get('val_images', '?')} validation images have a label for this task.")
        if task.get("weight") == 0:
            column.caption("Weight 0: measured, never trained (its head kept its starting weights).")
    for index, task in enumerate(tasks):
        st.markdown(f"#### {task['name']}")
        if task.get("confusion_matrix"):
            st.plotly_chart(charts.confusion_figure(task["confusion_matrix"], task["class_names"],
                                                    f"Confusion matrix, {task['name']} (validation images)"),
                            key=f"insight_task_confusion_{index}")
        if task.get("per_class"):
            percent = {"precision": "{:.0%}", "recall": "{:.0%}"}
            st.dataframe(charts.per_class_table(task["per_class"]).style.format(percent),
                         key=f"insight_task_report_{index}")


# -------------------------------------------------------------------------------------------------------------------

st.title("6 · Inside the model")
st.caption("Why the model answers what it answers, and what training changed inside it.")
all_runs = runs_with_model()  # imported models too: Grad-CAM works on an uploaded picture
chosen = run_ui(all_runs)
if chosen is not None:
    st.caption(f"Run directory: `{chosen.dir}`")
    tasks = recorded_tasks(chosen)
    tabs = st.tabs([*TABS, *([TASKS_TAB] if tasks else [])], key="insight_tab", on_change="rerun")
    views = (lambda: confusion_ui(chosen), lambda: gradcam_ui(chosen, all_runs), lambda: feature_map_ui(chosen),
             lambda: drift_ui(chosen), lambda: report_ui(chosen), *([lambda: tasks_ui(chosen, tasks)] if tasks else []))
    for tab, view in zip(tabs, views, strict=True):
        if tab.open:  # only the open tab computes: the others can take seconds on a big validation set
            with tab:
                view()
