"""Train: start a run on the chosen data and model, and watch it learn. The run lives in the server's run registry,
so refreshing the browser, switching pages or opening a second tab finds the same run again (its id is in the URL
as ?run=...)."""

from __future__ import annotations

from pathlib import Path

import pandas as pd
import streamlit as st

from ui_common import CHOICES, DATASET, RUN_ID, SAMPLE_DATASETS, get_registry
from workbench.analysis import charts
from workbench.data import DataError
from workbench.engine.config import RunConfig
from workbench.models.backbones import hub_reachable, weights_availability
from workbench.runs.registry import RunView, planned_config
from workbench.strategies import dann, get_strategy
from workbench.strategies.distill import teacher_student_comparison

DEFAULT_CHOICES = {"backbone": "tf_efficientnet_lite0", "strategy": "linear_probe"}
SAMPLE = "shapes"
# While a run trains, its panel redraws on a timer, and every chart redraw costs the browser and the server CPU that
# training needs (on a 2-core laptop, charts redrawn every second slowed training by a quarter). So only the cheap
# progress line polls; it redraws the page, charts included, when there is something new to plot: the first point,
# then each finished epoch. Charts of a long epoch also catch up with its batches on a slow clock.
STATUS_REFRESH_SECONDS = 3.0
FIRST_POINT_REFRESH_SECONDS = 1.0
MID_EPOCH_CHART_REFRESH_SECONDS = 30.0
# With the page polling, Streamlit's animated "Running..." badge and the progress bar's easing would repaint the page
# every few seconds; in headless Chromium that alone cost about 4% of a core. The page shows the run's own status, so
# while a run is live the badge is hidden and the bar jumps instead of gliding.
LIVE_RUN_CSS = """<style>
[data-testid="stStatusWidget"] {visibility: hidden}
[data-testid="stProgress"] * {transition: none !important; animation: none !important}
</style>"""
# While the run trains, its charts are drawn without Plotly's hover and zoom layers (staticPlot): each epoch's
# redraw then costs the browser about 40% less CPU. When the run has ended they are drawn interactive.
LIVE_CHART_CONFIG = {"staticPlot": True}
WEIGHTS_WORDS = {"bundled": "bundled with the workbench", "cached": "found in the local Hugging Face cache",
                 "download": "will be downloaded from the Hugging Face hub"}


# -------------------------------------------------------------------------------------------------------------------
# What will run


def use_sample_data() -> None:
    st.session_state[DATASET] = str(SAMPLE_DATASETS[SAMPLE])


def dataset_ui(quiet: bool) -> str | None:
    """The chosen dataset, or guidance and a one-click way to the sample data (just a line when a run is shown)."""
    dataset = st.session_state.get(DATASET)
    if dataset:
        return dataset
    if quiet:
        st.caption("To start another run, choose images on the **Data** page or use the sample data.")
    else:
        st.info("No images chosen yet. Pick your own on the **Data** page, or start right away with the sample "
                "data: drawings of five shapes (circle, cross, square, star, triangle).")
    st.button("Use the sample data (shapes)", key="use_sample", type="secondary" if quiet else "primary",
              on_click=use_sample_data)
    return None


def config_ui(dataset: str) -> RunConfig | None:
    """The run the choices describe, or None (with the reason shown) if they cannot run."""
    choices = st.session_state.get(CHOICES) or DEFAULT_CHOICES
    try:
        config = RunConfig.from_dict({**choices, "data": dataset})
        planned_config(config)
    except ValueError as error:
        st.error(f"These choices cannot run: {error} Change them on the **Model & strategy** page.")
        return None
    return config


def weights_ui(config: RunConfig) -> None:
    """Say where the starting weights come from, loudly when there are none."""
    strategy = get_strategy(config.strategy)
    if not strategy.pretrained or config.weights == "none":
        st.info("Starts from **random weights** on purpose: this is the no-transfer baseline.")
        return
    if config.weights != "auto":
        st.caption(f"Pretrained weights: from the file `{config.weights}`.")
        return
    available = weights_availability(config.backbone)
    if available == "none" or (available == "download" and not hub_reachable()):
        st.warning(f"**No pretrained weights for {config.backbone} on this machine.** It will start from random "
                   "weights, so this run shows no transfer learning. Pick a backbone marked *bundled* or *cached* on "
                   "the **Model & strategy** page.", icon="⚠️")
    else:
        st.caption(f"Pretrained weights: {WEIGHTS_WORDS[available]}.")


def plan_ui(config: RunConfig) -> None:
    """A short summary of what the Train button will start."""
    strategy = get_strategy(config.strategy)
    plan = planned_config(config)
    freeze = ""
    if strategy.uses_freeze_depth:
        depth = "half the body (default)" if plan.freeze_depth is None else f"the first {plan.freeze_depth} groups"
        freeze = f" · frozen: {depth}"
    st.subheader("What will run")
    with st.container(border=True):
        st.markdown(f"**Data:** {Path(plan.data).name} · **Backbone:** {plan.backbone} · "
                    f"**Strategy:** {strategy.title}, trains {strategy.trains}{freeze}")
        st.markdown(f"**Epochs:** {plan.epochs} · **Image size:** {plan.image_size} px · **Batch:** "
                    f"{plan.batch_size} · **Learning rate:** {plan.lr:g} · **Device:** {plan.device}")
        if strategy.distill:
            st.markdown(f"**Teacher:** `{plan.teacher_run or 'none chosen: pick one on the Model page'}` · "
                        f"**α** {plan.distill_alpha:g} · **T** {plan.distill_temperature:g}")
        if strategy.adapts_domain:
            st.markdown(f"**Target images:** {Path(plan.target_data).name if plan.target_data else 'none chosen'}")
        weights_ui(config)


def start_run(config: RunConfig) -> None:
    """Submit the run and attach this page to it (a button callback: it runs before the page is drawn)."""
    run = get_registry().submit(config)
    st.session_state[RUN_ID] = run.id
    st.query_params["run"] = run.id


def train_button_ui(config: RunConfig) -> None:
    """Start the run, or queue it behind the one training now."""
    busy = bool(get_registry().live())
    if busy:
        st.caption("A run is training now: a new one waits in the queue until it is done (one run at a time).")
    st.button("Queue another run" if busy else "Train", key="train", type="secondary" if busy else "primary",
              on_click=start_run, args=(config,))


# -------------------------------------------------------------------------------------------------------------------
# The run


def attached_run_id() -> str | None:
    """The run this page shows: from the URL (survives a refresh), this session, or the run training now."""
    registry = get_registry()
    run_id = st.query_params.get("run") or st.session_state.get(RUN_ID)
    if run_id is None:
        live = registry.current() or next(iter(registry.live()), None)
        run_id = live.id if live else None
    if run_id is not None:
        st.session_state[RUN_ID] = run_id
        st.query_params["run"] = run_id
    return run_id


def forget_run() -> None:
    st.session_state.pop(RUN_ID, None)
    st.query_params.pop("run", None)


def status_ui(view: RunView) -> None:
    fraction, line = view.progress_bar()
    st.progress(fraction, text=line)
    if view.status not in ("stopped", "failed", "interrupted"):  # those get a box of their own below
        st.caption(view.explanation())
    if view.live and not view.elsewhere:
        st.button("Stopping after this batch…" if view.stopping else "Stop", key="stop", disabled=view.stopping,
                  on_click=get_registry().stop, args=(view.id,),
                  help="Stops between two batches and keeps what the model has learned so far.")


def outcome_ui(view: RunView) -> None:
    if view.status == "failed":
        st.error(f"**The run failed.** {view.error}")
        if view.hint:
            st.info(f"**What to try:** {view.hint}")
    elif view.status == "stopped":
        done = len(view.metrics)
        st.warning(f"**Stopped** after {done} full epoch{'s' if done != 1 else ''}. "
                   + ("What the model learned so far is saved." if view.summary else "Nothing was trained yet."))
    elif view.status == "interrupted":
        kept = view.kept_epoch
        st.warning("**Interrupted:** the process training this run ended before the run did (the app was closed or "
                   "restarted, or the computer ran out of memory). What was recorded is shown"
                   + (f"; the model as it was after epoch {kept} is saved." if kept else "."))


def facts_ui(view: RunView) -> None:
    """The data's health problems and the weights the run actually started from."""
    problems = (view.health or {}).get("problems") or []
    if problems:
        with st.expander(f"⚠️ {len(problems)} problem{'s' if len(problems) > 1 else ''} found in the images"):
            for problem in problems:
                st.markdown(f"- {problem}")
    source = view.config.get("weights_source")
    if source and not source.get("pretrained") and get_strategy(view.config["strategy"]).pretrained:
        st.warning(f"Started from **random weights** ({source['description']}): no pretrained knowledge.")
    elif source:
        st.caption(f"Starting weights: {source['description']}.")


def chart_config(view: RunView) -> dict | None:
    """Plotly's config for the run's charts: static while it trains, interactive once it has ended."""
    return LIVE_CHART_CONFIG if view.live else None


def curves_ui(view: RunView) -> None:
    if not view.metrics and not view.batches:
        st.caption("The curves appear after the first batch.")
        return
    planned = view.config.get("epochs")
    config = chart_config(view)
    st.plotly_chart(charts.training_curves(view.metrics, view.batches, planned), key="curves", config=config)
    left, right = st.columns([3, 2])
    with left:
        matrix = view.confusion_matrix
        if matrix:
            when = "saved model" if view.summary else f"epoch {len(view.metrics)}"
            title = f"Validation confusion matrix, {when}"
            st.plotly_chart(charts.confusion_figure(matrix, view.class_names, title), key="confusion",
                            config=config)
        else:
            st.caption("The confusion matrix appears after the first epoch.")
    with right:
        if view.batches:
            st.plotly_chart(charts.lr_curve(view.batches, planned), key="lr", config=config)


def result_ui(view: RunView) -> None:
    """The headline numbers of a run that has ended with a model."""
    summary = view.summary
    if not summary or summary.get("val_accuracy") is None:
        return
    cols = st.columns(4)
    cols[0].metric("Validation accuracy", f"{summary['val_accuracy']:.1%}")
    cols[1].metric("Epochs", summary["epochs_completed"])
    cols[2].metric("Training time", f"{summary['train_seconds']:.0f} s")
    cols[3].metric("Trainable weights", f"{summary['trainable_params']:,}")


def per_class_ui(view: RunView) -> None:
    per_class = (view.summary or {}).get("per_class")
    if not per_class:
        return
    st.markdown("**Per class:** precision = of the images predicted as this class, the share that were; "
                "recall = of this class's images, the share found.")
    table = charts.per_class_table(per_class)
    st.dataframe(table.style.format({"precision": "{:.0%}", "recall": "{:.0%}"}), key="per_class")
    st.caption(f"Saved in `{view.dir}`. Compare it with other runs on the **Compare** page.")


def status_panel(run_id: str, drawn: tuple[int, bool] | None) -> None:
    """Where the run is and its Stop button. While the run is live this redraws every few seconds, and redraws the
    whole page when the charts, drawn at `drawn` (epochs, any point), have something new to show."""
    view = get_registry().view(run_id)
    if view is None:
        st.warning(f"Run `{run_id}` is not here any more.")
        forget_run()
        return
    if drawn is not None and (view.terminal or chart_progress(view) != drawn):
        st.rerun()  # the charts' new point or epoch; a run that has ended is drawn once more without the timers
    st.subheader(f"Run: {view.config.get('strategy')} · {view.config.get('backbone')} — {view.status}")
    status_ui(view)


def charts_panel(run_id: str) -> None:
    """The run's curves, confusion matrix and strategy-specific views."""
    view = get_registry().view(run_id)
    if view is None:
        return
    curves_ui(view)
    distill_ui(view)
    dann_ui(view)
    per_class_ui(view)


def chart_progress(view: RunView) -> tuple[int, bool]:
    """What the charts show of a run: its finished epochs, and whether it has any point at all."""
    return len(view.metrics), bool(view.metrics or view.batches)


@st.cache_data(show_spinner="Measuring teacher and student on this computer…", max_entries=16)
def comparison(run_dir: str) -> pd.DataFrame:
    return teacher_student_comparison(run_dir)


def distill_ui(view: RunView) -> None:
    """A distillation run: its teacher, and once finished both models measured side by side."""
    if view.config.get("strategy") != "distill":
        return
    teacher = view.config.get("teacher") or {}
    st.subheader("Teacher and student")
    st.caption(f"Teacher: run `{teacher.get('run_id')}` ({teacher.get('backbone')}, {teacher.get('strategy')}). "
               "Its answers for the training images were computed once, before the first epoch.")
    if view.status != "finished":
        st.caption("Both models are measured side by side when the run has finished.")
        return
    try:
        table = comparison(str(view.dir))
    except (FileNotFoundError, ValueError, DataError) as error:
        st.warning(f"The teacher and the student cannot be compared: {error}")
        return
    st.dataframe(table.style.format({"val accuracy": "{:.1%}", "parameters": "{:,.0f}", "size on disk MB": "{:.2f}",
                                     "CPU latency ms": "{:.1f}"}), key="distill_table")
    st.plotly_chart(charts.teacher_student_figure(table), key="distill_bars")
    st.caption("Accuracy on the student's validation images (the same images for both); size of each "
               "model.safetensors; latency: median of single-image forward passes on one thread of this computer's "
               "CPU, measured when this page first showed the run (other work on the computer slows it).")


def dann_ui(view: RunView) -> None:
    """A DANN run: source, target and domain accuracy and lambda per epoch, and the feature map before and after."""
    if view.config.get("strategy") != "dann":
        return
    target = view.config.get("target") or {}
    st.subheader("Domain adaptation")
    st.caption(f"Target images: `{target.get('data')}`: {target.get('note', '').rstrip('.')}.")
    if view.metrics:
        st.plotly_chart(charts.dann_curves(view.metrics, view.config.get("epochs")), key="dann_curves",
                        config=chart_config(view))
        st.caption("The domain classifier tries to tell source from target features; the backbone is trained to "
                   "fool it (λ weighs how hard). Near 50% it can no longer tell them apart.")
    maps = dann.feature_map(view.dir)
    if maps:
        st.plotly_chart(charts.feature_map_figure(maps), key="feature_map")
        st.caption("Each dot is an image: its pooled features projected to 2-D (PCA), source in blue, target in red. "
                   "Adaptation should bring the two clouds together while each class stays a group of its own."
                   + ("" if "after" in maps else " The map after adaptation appears when training has finished."))


def show_run(run_id: str) -> None:
    view = get_registry().view(run_id)
    live = view is not None and view.live
    drawn = chart_progress(view) if live else None
    if live:
        st.html(LIVE_RUN_CSS)
    # Fast polling until the first point, unless other runs train first (their owner's training needs the CPU).
    waiting_for_first_point = live and not view.queue_position and not drawn[1]
    status_pace = (FIRST_POINT_REFRESH_SECONDS if waiting_for_first_point else STATUS_REFRESH_SECONDS) if live else None
    st.fragment(status_panel, run_every=status_pace)(run_id, drawn)
    if view is not None:  # what changes only when a run ends, when the whole page is drawn again
        outcome_ui(view)
        result_ui(view)
        facts_ui(view)
    st.fragment(charts_panel, run_every=MID_EPOCH_CHART_REFRESH_SECONDS if live else None)(run_id)


# -------------------------------------------------------------------------------------------------------------------

st.title("3 · Train")
st.caption("Start the run and watch it learn: the curves and the confusion matrix fill in as it trains.")
run_id = attached_run_id()
dataset = dataset_ui(quiet=run_id is not None)
config = config_ui(dataset) if dataset else None
if config is not None:
    plan_ui(config)
    train_button_ui(config)
if run_id:
    show_run(run_id)
