"""Inside the model: the validation images behind each confusion-matrix cell and the most confidently wrong ones,
Grad-CAM heatmaps, the validation set in feature space before and after training, how far each layer group moved,
and the per-class report. Everything is computed by `workbench.insight`; this page picks and draws."""

from __future__ import annotations

import io
from pathlib import Path

import streamlit as st

from ui_common import RUN_ID, get_registry, pick_run
from workbench.analysis import charts, insight
from workbench.core.runfolder import MODEL_FILE
from workbench.data import IMAGE_EXTENSIONS, DataError
from workbench.models.trained import Predictor
from workbench.runs.records import RunRecord

PICKED = "insight_run"  # session key: the run id chosen on this page
TABS = ("Confusion & mistakes", "Grad-CAM", "Feature map", "Weight drift", "Per-class report")
GRID_COLUMNS = 6
MAX_SHOWN = 36  # images in one grid: a cell of a big validation set can hold thousands
IMAGE_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)
PREDICTED = "the predicted class"
CAM_WIDTH = 320  # pixels: the network's input is often 64-224 px, shown larger but not page-wide


# -------------------------------------------------------------------------------------------------------------------
# Cached library calls: keyed by run directory and the time its model was saved


def model_stamp(record: RunRecord) -> float:
    return (record.dir / MODEL_FILE).stat().st_mtime


@st.cache_data(max_entries=16, show_spinner="Running the model over the validation images…")
def cached_predictions(run_dir: str, stamp: float) -> list[insight.ValPrediction]:
    return insight.validation_predictions(run_dir)


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def cached_predictor(run_dir: str, stamp: float) -> Predictor:
    return Predictor.from_run(run_dir)


@st.cache_data(max_entries=64, show_spinner="Computing the heatmap…")
def cached_explanation(run_dir: str, stamp: float, image: str | bytes, class_name: str | None) -> insight.Explanation:
    source = io.BytesIO(image) if isinstance(image, bytes) else image
    return insight.explain(cached_predictor(run_dir, stamp), source, class_name)


@st.cache_data(max_entries=16, show_spinner="Computing the features before and after training…")
def cached_feature_map(run_dir: str, stamp: float, method: str) -> insight.FeatureMap:
    return insight.feature_map(run_dir, method)


@st.cache_data(max_entries=16, show_spinner="Rebuilding the starting weights…")
def cached_drift(run_dir: str, stamp: float) -> list[insight.GroupDrift]:
    return insight.weight_drift(run_dir)


def predictions_of(record: RunRecord) -> list[insight.ValPrediction] | None:
    """The run's validation predictions, or None after saying why there are none."""
    try:
        return cached_predictions(str(record.dir), model_stamp(record))
    except insight.InsightError as error:
        st.info(str(error))
    except DataError as error:
        st.error(f"{error} The validation images of this run cannot be read any more.")
    return None


# -------------------------------------------------------------------------------------------------------------------
# Which run


def runs_with_model() -> list[RunRecord]:
    """Runs that ended with a saved model, newest first (imported models too: Grad-CAM works on an uploaded picture)."""
    return [r for r in get_registry().records() if r.has_model]


def default_run(records: list[RunRecord]) -> str:
    """The run in the URL, else the Train page's run, else the newest finished one."""
    ids = {r.id for r in records}
    for candidate in (st.query_params.get("run"), st.session_state.get(RUN_ID)):
        if candidate in ids:
            return candidate
    finished = [r for r in records if r.status == "finished"]
    return (finished or records)[0].id


def run_ui(records: list[RunRecord]) -> RunRecord | None:
    if not records:
        st.info("No trained model to look inside yet. Train one on the **Train** page (the sample shapes train in "
                "about a minute), then come back here.")
        st.page_link("pages/3_train.py", label="Go to the Train page", icon="🏋️")
        return None
    chosen = pick_run(records, "Run", PICKED, default=default_run(records),
                      help="Every run that ended with a saved model, newest first.")
    st.query_params["run"] = chosen.id
    return chosen


# -------------------------------------------------------------------------------------------------------------------
# Confusion & mistakes


def image_grid(predictions: list[insight.ValPrediction], caption) -> None:
    """Thumbnails (what the network saw) in rows of GRID_COLUMNS, each with its caption."""
    shown = predictions[:MAX_SHOWN]
    for start in range(0, len(shown), GRID_COLUMNS):
        for column, prediction in zip(st.columns(GRID_COLUMNS), shown[start:start + GRID_COLUMNS], strict=False):
            column.image(prediction.thumbnail, caption=caption(prediction), width="stretch")
    if len(predictions) > MAX_SHOWN:
        st.caption(f"… and {len(predictions) - MAX_SHOWN} more.")


def selected_points(event) -> list[dict]:
    """The points picked on a chart drawn with `on_select` (its state reads like a dict)."""
    return list(((event or {}).get("selection") or {}).get("points") or [])


def clicked_cell(event) -> tuple[str, str] | None:
    """(true, predicted) of the matrix cell newly clicked (the chart keeps a selection across reruns)."""
    points = selected_points(event)
    if not points:
        return None
    cell = (str(points[0]["y"]), str(points[0]["x"]))
    if st.session_state.get("insight_last_click") == cell:
        return None
    st.session_state["insight_last_click"] = cell
    return cell


def cell_choice_ui(matrix: list[list[int]], class_names: list[str], event) -> tuple[str, str]:
    """The cell to show: clicked on the matrix or picked in the two boxes (a click sets the boxes)."""
    cell = clicked_cell(event)
    if cell is not None and set(cell) <= set(class_names):
        st.session_state["insight_true"], st.session_state["insight_pred"] = cell
    if "insight_true" not in st.session_state or st.session_state["insight_true"] not in class_names:
        worst = insight.most_confused(matrix, class_names, 1)
        true, pred = (worst[0][0], worst[0][1]) if worst else (class_names[0], class_names[0])
        st.session_state["insight_true"], st.session_state["insight_pred"] = true, pred
    left, right = st.columns(2)
    true = left.selectbox("True class", class_names, key="insight_true")
    pred = right.selectbox("Predicted as", class_names, key="insight_pred")
    return true, pred


def confusion_ui(record: RunRecord) -> None:
    predictions = predictions_of(record)
    if predictions is None:
        return
    class_names = record.class_names
    matrix = insight.prediction_matrix(predictions, class_names)
    recorded = record.summary.confusion_matrix if record.summary else None
    if recorded and recorded != matrix:
        st.warning("These predictions, made again now, differ from the matrix the run recorded at its end: the "
                   "dataset may have changed since, or the run trained on a GPU (whose bfloat16 arithmetic rounds "
                   "differently). The images below are the ones behind the matrix shown here.")
    st.caption("Rows are the true classes, columns what the model said. Click a cell (or pick the two classes below) "
               "to see the validation images behind it, with how sure the model was.")
    figure = charts.clickable_confusion_figure(matrix, class_names, title="Confusion matrix (validation images)")
    event = st.plotly_chart(figure, key="insight_confusion", on_select="rerun", selection_mode="points")
    true, pred = cell_choice_ui(matrix, class_names, event)
    cell = insight.in_cell(predictions, true, pred)
    verdict = "right" if true == pred else "wrong"
    st.markdown(f"**{len(cell)} image(s)** of **{true}** predicted as **{pred}** ({verdict}), most confident first.")
    image_grid(cell, lambda p: f"{p.name.split('/')[-1]} · {p.confidence:.0%} sure")
    st.subheader("Top losses: the most confidently wrong")
    wrong = insight.most_wrong(predictions, 12)
    if not wrong:
        st.success("The model gets every validation image right.")
        return
    st.caption("The mistakes the model was surest about, worst first. Look for mislabelled images, confusing "
               "backgrounds or classes that really do look alike.")
    image_grid(wrong, lambda p: f"{p.true_class} → {p.predicted_class} · {p.confidence:.0%} sure")


# -------------------------------------------------------------------------------------------------------------------
# Grad-CAM


def cam_image_ui(record: RunRecord) -> str | bytes | None:
    """The picture to explain: a validation image (its path) or an upload (its bytes)."""
    source = st.radio("Picture", ["A validation image", "Upload a picture"], key="insight_cam_source",
                      horizontal=True)
    if source == "Upload a picture":
        upload = st.file_uploader("Picture", type=IMAGE_TYPES, key="insight_cam_upload")
        return upload.getvalue() if upload is not None else None
    predictions = predictions_of(record)
    if not predictions:
        return None
    # the mistakes first: they are the interesting ones to explain
    ordered = insight.most_wrong(predictions, len(predictions)) + [p for p in predictions if p.correct]
    by_index = {p.index: p for p in ordered}
    chosen = st.selectbox("Validation image", list(by_index), key="insight_cam_image",
                          format_func=lambda i: f"{by_index[i].name} (predicted {by_index[i].predicted_class}, "
                                                f"{by_index[i].confidence:.0%})")
    image = insight.validation_image(record.dir, by_index[chosen])
    return image if isinstance(image, str) else _png_bytes(image)


def _png_bytes(image) -> bytes:
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def comparable_runs(record: RunRecord, records: list[RunRecord]) -> list[RunRecord]:
    """Other runs with the same classes: the same picture can be explained by both."""
    return [r for r in records if r.id != record.id and r.class_names == record.class_names]


def explanation_of(record: RunRecord, image: str | bytes, class_name: str | None) -> insight.Explanation | None:
    try:
        return cached_explanation(str(record.dir), model_stamp(record), image, class_name)
    except (insight.InsightError, DataError) as error:
        st.error(str(error))
        return None


def show_explanation(found: insight.Explanation, label: str) -> None:
    st.image(found.overlay(), caption=label, width=CAM_WIDTH)
    st.markdown(f"Heat for **{found.class_name}** ({found.probability:.0%}); the model predicts "
                f"**{found.predicted_class}** ({found.predicted_probability:.0%}).")
    st.caption(found.method)


def gradcam_ui(record: RunRecord, records: list[RunRecord]) -> None:
    st.caption("Grad-CAM colours the parts of the picture that raised the score of a class: red is where the "
               "evidence is strongest, blue where there is none. Pick a class to ask *why not this one?*")
    image = cam_image_ui(record)
    left, right = st.columns(2)
    class_name = left.selectbox("Heat for", [PREDICTED, *record.class_names], key="insight_cam_class")
    others = comparable_runs(record, records)
    labels = charts.run_labels(records)
    other_id = right.selectbox("Side by side with", ["none", *[r.id for r in others]], key="insight_cam_other",
                               format_func=lambda i: "no other run" if i == "none" else labels[i],
                               help="Another run with the same classes, on the same picture: what training changed.")
    if image is None:
        st.info("Upload a picture to see where the model looks.")
        return
    wanted = None if class_name == PREDICTED else class_name
    chosen = [record] + [r for r in others if r.id == other_id]
    found = [(run, explanation_of(run, image, wanted)) for run in chosen]
    found = [(run, explanation) for run, explanation in found if explanation is not None]
    if not found:
        return
    columns = st.columns(1 + len(found))
    columns[0].image(found[0][1].image, caption="What the network sees", width=CAM_WIDTH)
    for column, (run, explanation) in zip(columns[1:], found, strict=True):
        with column:
            show_explanation(explanation, labels[run.id])


# -------------------------------------------------------------------------------------------------------------------
# Feature map


def feature_map_ui(record: RunRecord) -> None:
    st.caption("Every validation image is a point: the features the classifier reads, squeezed into 2-D and "
               "coloured by true class. Before training (left) and after (right): fine-tuning should pull the "
               "classes apart. Hover a point for its file; click or lasso points to see their pictures.")
    method = st.radio("Projection", list(insight.PROJECTIONS), key="insight_projection", horizontal=True,
                      format_func=insight.PROJECTIONS.get,
                      help="PCA: the two directions of largest spread (fast, faithful to distances). t-SNE: keeps "
                           "neighbours together (shows clusters better, distances between clusters mean little).")
    try:
        found = cached_feature_map(str(record.dir), model_stamp(record), method)
    except (insight.InsightError, DataError) as error:
        st.info(str(error))
        return
    st.caption(f"Before = {found.before_label}.")
    left, right = st.columns(2)
    left.metric("Class separation before", f"{found.separation_before:.2f}")
    right.metric("Class separation after", f"{found.separation_after:.2f}",
                 delta=f"{found.separation_after - found.separation_before:+.2f}")
    st.caption("Class separation: the silhouette score of the classes in the full feature space (cosine "
               "distance), from −1 (mixed up) through 0 (overlapping) to 1 (far apart). It measures how tight and "
               "far apart the clusters are, not whether the head can cut between them: a run can be 100% right "
               "with a modest score.")
    figure = charts.class_feature_map_figure(found.before, found.after, found.points,
                                             (found.separation_before, found.separation_after),
                                             insight.PROJECTIONS[method])
    event = st.plotly_chart(figure, key="insight_feature_chart", on_select="rerun",
                            selection_mode=("points", "box", "lasso"))
    rows = sorted({int(p["customdata"][0]) for p in selected_points(event) if p.get("customdata")})
    if rows:
        st.markdown(f"**{len(rows)} point(s) picked:**")
        image_grid([found.points[r] for r in rows], lambda p: f"{p.true_class} → {p.predicted_class}")


# -------------------------------------------------------------------------------------------------------------------
# Weight drift and per-class report


def drift_ui(record: RunRecord) -> None:
    st.caption("How far training moved each layer group from its starting weights, as a share of their size "
               "(‖w − w₀‖ / ‖w₀‖), from the stem (left) to the head (right). Frozen groups stay at exactly 0; in a "
               "fine-tune the lower layers usually move least, and L2-SP holds the whole backbone closer to its "
               "start. The head starts from random weights, so it usually moves most.")
    try:
        drifts = cached_drift(str(record.dir), model_stamp(record))
    except (insight.InsightError, DataError) as error:
        st.info(str(error))
        return
    st.plotly_chart(charts.weight_drift_figure(drifts), key="insight_drift")


def report_ui(record: RunRecord) -> None:
    predictions = predictions_of(record)
    if predictions is None:
        return
    class_names = record.class_names
    report = insight.class_report(insight.prediction_matrix(predictions, class_names), class_names)
    st.caption("Precision: of the images predicted as this class, the share that were. Recall: of this class's "
               "images, the share found. F1: the harmonic mean of the two. Support: validation images of the class.")
    st.dataframe(report.style.format({"precision": "{:.1%}", "recall": "{:.1%}", "f1": "{:.1%}"}),
                 key="insight_report")
    st.plotly_chart(charts.class_report_figure(report), key="insight_report_chart")


# -------------------------------------------------------------------------------------------------------------------

st.title("6 · Inside the model")
st.caption("Why the model answers what it answers, and what training changed inside it.")
all_runs = runs_with_model()
chosen = run_ui(all_runs)
if chosen is not None:
    st.caption(f"Run directory: `{Path(chosen.dir)}`")
    tabs = st.tabs(list(TABS), key="insight_tab", on_change="rerun")
    views = (lambda: confusion_ui(chosen), lambda: gradcam_ui(chosen, all_runs), lambda: feature_map_ui(chosen),
             lambda: drift_ui(chosen), lambda: report_ui(chosen))
    for tab, view in zip(tabs, views, strict=True):
        if tab.open:  # only the open tab computes: the others can take seconds on a big validation set
            with tab:
                view()
