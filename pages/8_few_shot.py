"""Few-shot: classify from a handful of images per class with prototypes (no training), and measure how accuracy
grows with the number of images for each way of transferring. The work is `workbench.fewshot`; the curve runs in a
background job this page polls."""

from __future__ import annotations

import streamlit as st

from ui_common import DATASET, SAMPLE_DATASETS, get_registry, owner_name, person
from workbench.analysis import charts, choices
from workbench.analysis.fewshot import (
    ALL,
    DEFAULT_SHOTS,
    META_PROTOTYPES,
    METHODS,
    CurveConfig,
    FeatureBank,
    data_efficiency,
    evaluate_prototypes,
    feature_bank,
    latest_curve,
    meta_trained_runs,
    method_explanation,
    method_title,
    save_prototype_run,
)
from workbench.data import DataError
from workbench.runs.jobs import Job

BANK = "fewshot_bank"  # session key: (data, backbone, image size) of the features computed
JOB = "fewshot_job"  # session key: the id of this session's curve job
SAVED = "fewshot_saved"  # session key: the run id of the prototypes saved last
REFRESH_SECONDS = 2.0
SAMPLE = "shapes"


@st.cache_resource
def job_board() -> dict[str, Job]:
    """Curve jobs of this server, by id: a refresh or a second tab finds a running curve again."""
    return {}


@st.cache_resource(max_entries=4, show_spinner=False)
def get_bank(data: str, backbone: str, image_size: int | None) -> FeatureBank:
    """Features of every image of a dataset, shared by every session (prototypes for any k are then instant)."""
    return feature_bank(data, backbone, image_size)


def dataset_ui() -> str:
    chosen = st.session_state.get(DATASET)
    if chosen:
        st.caption(f"Images: `{chosen}` (chosen on the **Data** page).")
        return chosen
    st.caption("No images chosen on the **Data** page: using the sample data.")
    return str(SAMPLE_DATASETS[SAMPLE])


def model_ui() -> tuple[str, int | None]:
    left, right = st.columns(2)
    backbone = left.text_input("Backbone (frozen, pretrained)", "tf_efficientnet_lite0", key="fewshot_backbone",
                               help="Any timm model; prototypes need pretrained weights to mean anything.")
    size = right.number_input("Image size (px)", 32, 512, None, step=32, key="fewshot_size",
                              placeholder="the backbone's own", help="Empty: the size the backbone was pretrained "
                              "at (224 px for tf_efficientnet_lite0). Prototypes run the backbone once per image, so "
                              "even a CPU can afford it; smaller is quicker and usually less accurate.")
    return backbone.strip(), None if size is None else int(size)


# -------------------------------------------------------------------------------------------------------------------
# Instant prototypes


def prototypes_ui(data: str, backbone: str, size: int | None) -> None:
    st.subheader("Instant prototypes")
    st.caption(method_explanation("prototypes"))
    key = (data, backbone, size)
    if st.session_state.get(BANK) != key:
        if not st.button("Compute the features", key="compute_features", type="primary"):
            return
        st.session_state[BANK] = key
    try:
        with st.spinner("The backbone looks at every image once…"):
            bank = get_bank(*key)
    except (DataError, ValueError) as error:
        st.session_state.pop(BANK, None)
        st.error(str(error))
        return
    if not bank.weights.get("pretrained"):
        st.warning(f"{backbone} has no pretrained weights here ({bank.weights['description']}): random features "
                   "make poor prototypes.")
    most = bank.shots_available()
    shots = st.slider("Images per class", 1, most, min(5, most), key="fewshot_shots",
                      help="Drawn at random (seeded) from each class's training images.")
    result = evaluate_prototypes(bank, shots)
    left, right = st.columns([1, 2])
    chance = 1 / len(bank.class_names)
    left.metric("Validation accuracy", f"{result.val_accuracy:.1%}", delta=f"{result.val_accuracy - chance:+.0%} "
                f"vs chance", help=f"On {len(bank.val)} validation images; chance is {chance:.0%}.")
    left.caption(f"From {shots} image(s) per class; features took {bank.seconds:.0f} s once, this took no training.")
    if left.button("Save as a run", key="save_prototypes",
                   help="Then it is on Compare, and Predict can classify new images with it."):
        run_dir = save_prototype_run(bank, result, get_registry().runs_dir, owner_name())
        st.session_state[SAVED] = run_dir.name
    if st.session_state.get(SAVED):
        left.success(f"Saved as run `{st.session_state[SAVED]}`.")
    right.plotly_chart(charts.confusion_figure(result.confusion_matrix, bank.class_names,
                                               f"Prototypes from {shots} per class"), key="prototype_confusion")


# -------------------------------------------------------------------------------------------------------------------
# Data-efficiency curve


def meta_run_ui(column) -> str:
    """A meta-trained run whose backbone adds a line of prototypes to the curve, or "" for none."""
    found = {str(r.dir): choices.run_label(r) for r in meta_trained_runs(get_registry().records(person()))}
    help_text = method_explanation(META_PROTOTYPES) + (
        "" if found else " No meta-trained run yet: train one with the prototypical-networks strategy (Model page).")
    return column.selectbox(f"Also: {method_title(META_PROTOTYPES).lower()}", ["", *found], key="curve_meta_run",
                            format_func=lambda d: found.get(d, "no"), help=help_text)


def curve_settings_ui(data: str, backbone: str, size: int | None) -> CurveConfig | None:
    with st.form("curve_settings"):
        left, right = st.columns(2)
        shots = left.multiselect("Images per class", list(DEFAULT_SHOTS), default=list(DEFAULT_SHOTS),
                                 key="curve_shots", format_func=lambda k: "all" if k == ALL else str(k))
        methods = right.multiselect("Methods", list(METHODS), default=list(METHODS), key="curve_methods",
                                    format_func=method_title)
        epochs = left.number_input("Epochs per trained method", 1, 100, 3, key="curve_epochs")
        meta_run = meta_run_ui(right)
        submitted = st.form_submit_button("Measure the curve", type="primary")
    if not submitted:
        return None
    try:
        return CurveConfig(data=data, backbone=backbone, shots=tuple(shots), methods=tuple(methods),
                           epochs=int(epochs), image_size=size, runs_dir=str(get_registry().runs_dir),
                           meta_run=meta_run)
    except ValueError as error:
        st.error(str(error))
        return None


def draw_curve(points: list[dict], chance: float | None, key: str) -> None:
    if not points:
        return
    table = charts.data_efficiency_table(points)
    st.dataframe(table.style.format("{:.1%}", na_rep="–"), key=f"{key}_table")
    st.plotly_chart(charts.data_efficiency_figure(points, chance), key=f"{key}_figure")


def curve_panel(job_id: str) -> None:
    """The curve growing point by point while its job runs; a whole-page redraw when it ends."""
    job = job_board().get(job_id)
    if job is None:
        return
    if job.done:
        if st.session_state.pop("curve_waiting", False):
            st.rerun()
        if job.status == "failed":
            st.error(f"The curve failed: {job.error}")
        elif job.status == "stopped":
            st.warning("Stopped: the points measured so far are shown and kept.")
        return
    st.session_state["curve_waiting"] = True
    st.progress(job.fraction or 0.0, text=f"{job.message}…")
    st.button("Stop", key="stop_curve", on_click=job.stop)
    draw_curve(list(job.items), None, "live_curve")


def curve_sizes(curve: dict) -> str:
    """'64 px', or each method's size when they differ (prototypes at the backbone's own size by default)."""
    sizes = curve.get("image_sizes") or {}
    if len(set(sizes.values())) <= 1:
        return f"{curve['image_size']} px"
    return ", ".join(f"{method_title(m).lower()} {px} px" for m, px in sizes.items())


def curve_ui(data: str, backbone: str, size: int | None) -> None:
    st.subheader("How many images do I need?")
    st.caption("For each number of training images per class, every method is trained (or, for prototypes, "
               "computed) on the same images and scored on the same validation images. Many runs: this takes a "
               "while on a CPU and runs in the background.")
    config = curve_settings_ui(data, backbone, size)
    if config is not None:
        job = Job("curve", lambda reporter: data_efficiency(config, reporter)).start()
        job_board()[job.id] = job
        st.session_state[JOB] = job.id
    current = st.session_state.get(JOB)
    running = current in job_board() and not job_board()[current].done
    if current:
        st.fragment(curve_panel, run_every=REFRESH_SECONDS if running else None)(current)
    if not running:
        curve = latest_curve(get_registry().runs_dir)
        if curve and curve["points"]:
            st.caption(f"Latest curve: {curve['backbone']} at {curve_sizes(curve)}, {curve['epochs']} epochs per "
                       f"trained method, {curve['val_images']} validation images, measured {curve['created']}.")
            draw_curve(curve["points"], curve["chance"], "saved_curve")


# -------------------------------------------------------------------------------------------------------------------

st.title("8 · Few-shot")
st.caption("What a pretrained network knows before any training, and how many photos each way of transferring "
           "needs.")
chosen_data = dataset_ui()
chosen_backbone, chosen_size = model_ui()
prototypes_ui(chosen_data, chosen_backbone, chosen_size)
curve_ui(chosen_data, chosen_backbone, chosen_size)
