"""Train: start a run on the chosen data and model, and watch it learn. The run lives in the server's run registry,
so refreshing the browser, switching pages or opening a second tab finds the same run again (its id is in the URL
as ?run=...)."""

from __future__ import annotations

import dataclasses
import threading
import time
import uuid
from dataclasses import dataclass

import plotly.graph_objects as go
import streamlit as st

from ui_common import (
    CHOICES,
    DATASET,
    RUN_ID,
    SAMPLE_DATASETS,
    attached_run_id,
    dataset_choices,
    draw_panels,
    forget_run,
    get_registry,
    person,
)
from workbench.analysis import charts, choices, run_notes
from workbench.core.classroom import AccessError
from workbench.engine.config import RunConfig
from workbench.models.backbones import hub_reachable, model_groups, weights_availability
from workbench.runs.registry import RunView, planned_config
from workbench.strategies import Panel, get_strategy

SAMPLE = "shapes"
DEVICE = "train.device"
COMPILE = "train.compile"
REFUSED = "train.refused"  # why the last Train click was refused (a classroom limit)
# While a run trains, its panel redraws on a timer, and every chart redraw costs the browser and the server CPU that
# training needs (on a 2-core laptop, charts redrawn every second slowed training by a quarter). So only the cheap
# progress line polls; it redraws the page, charts included, when there is something new to plot: the first point,
# then each finished epoch. Charts of a long epoch also catch up with its batches on a slow clock.
STATUS_REFRESH_SECONDS = 3.0
FIRST_POINT_REFRESH_SECONDS = 1.0
MID_EPOCH_CHART_REFRESH_SECONDS = 30.0
# A class watching one run redraws its charts together: every session at each new epoch, within one status refresh of
# each other. Building the three figures was most of what a watcher cost the server (30 watchers slowed training to
# half speed on 2 cores), so while a run trains its figures are built once and shared for this long.
SHARED_FIGURES_SECONDS = STATUS_REFRESH_SECONDS
# Even so every page run is Python in the process that trains, and the training thread waits for Python's lock while
# pages run: the more sessions watch, the longer it waits. So a session refreshes its progress line every
# POLL_GAP_PER_WATCHER_SECONDS times the number of sessions watching the run (at least every STATUS_REFRESH_SECONDS;
# 30 watchers: every 6 s), and redraws the page for a new epoch at most every CHART_GAP_PER_WATCHER_SECONDS times that
# number (alone: every epoch; 30 watchers: every 9 s): however many watch, the class makes about five refreshes and
# three redraws a second.
POLL_GAP_PER_WATCHER_SECONDS = 0.2
CHART_GAP_PER_WATCHER_SECONDS = 0.3
SESSION = "train.session"  # this session's name among a run's watchers
CHARTS_DRAWN_AT = "train.charts_drawn_at"  # when this session last drew the page with its charts (time.monotonic())
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

TESTED_ONCE = ("The test images were held out: training, early stopping and every choice used only the training and "
               "validation images, and the saved model was measured on the test images once, at the end.")


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


def device_ui() -> dict:
    """Which GPU to train on, on a server with GPUs: the first free one (the default), a given one, or the CPU."""
    gpus = get_registry().devices[1:]
    if not gpus:
        return {}
    names = {"cuda": "the first free GPU", "cpu": "the CPU (slow)"}
    device = st.selectbox("Train on", ["cuda", *gpus, "cpu"], key=DEVICE, format_func=lambda d: names.get(d, d),
                          help="Each GPU trains one run at a time; runs on different GPUs train side by side.")
    return {"device": device}


def compile_ui() -> dict:
    """Whether to compile the model first (torch.compile): off unless asked for, since it did not pay on a CPU."""
    help_text = next(f.metadata["help"] for f in dataclasses.fields(RunConfig) if f.name == "compile")
    return {"compile": st.checkbox("Compile the model first (torch.compile)", key=COMPILE, help=help_text)}


def config_ui(dataset: str) -> RunConfig | None:
    """The run the choices describe, or None (with the reason shown) if they cannot run."""
    chosen = st.session_state.get(CHOICES) or {}  # none yet: RunConfig's defaults
    try:
        config = RunConfig.from_dict({**chosen, **dataset_choices(), **device_ui(), **compile_ui(), "data": dataset})
        planned_config(config)
    except ValueError as error:
        st.error(f"These choices cannot run: {error} Change them on the **Model & strategy** page.")
        return None
    return config


def weights_ui(config: RunConfig) -> None:
    """Say where the starting weights come from, loudly when there are none."""
    available = weights_availability(config.backbone)
    level, text = choices.weights_note(config.backbone, available, available == "download" and hub_reachable(),
                                       get_strategy(config.strategy).pretrained, config.weights)
    (st.warning if level == "warning" else st.caption)(text)


groups_of = st.cache_resource(show_spinner=False)(model_groups)


def plan_ui(config: RunConfig) -> None:
    """A short summary of what the Train button will start, with the strategy's own lines."""
    plan = planned_config(config)
    st.subheader("What will run")
    with st.container(border=True):
        for line in choices.plan_lines(plan, groups_of(plan.backbone, 2)):  # any head gives the same groups
            st.markdown(line)
        weights_ui(config)


def start_run(config: RunConfig) -> None:
    """Submit the run and attach this page to it (a button callback: it runs before the page is drawn). A limit
    reached is kept to be shown on the page."""
    try:
        run = get_registry().submit(config, person())
    except AccessError as error:
        st.session_state[REFUSED] = str(error)
        return
    st.session_state[RUN_ID] = run.id
    st.query_params["run"] = run.id


def train_button_ui(config: RunConfig) -> None:
    """Start the run, or queue it behind the one training now."""
    if st.session_state.get(REFUSED):
        st.error(st.session_state.pop(REFUSED))
    registry = get_registry()
    busy = bool(registry.live())
    gpus = len(registry.devices) - 1
    if gpus > 1:
        st.caption(f"This server has {gpus} GPUs: runs train side by side, one per GPU, and a new run waits only "
                   "when every GPU is busy.")
    elif busy:
        st.caption("A run is training now: a new one waits in the queue until it is done (one run at a time).")
    st.button("Queue another run" if busy else "Train", key="train", type="secondary" if busy else "primary",
              on_click=start_run, args=(config,))


# -------------------------------------------------------------------------------------------------------------------
# The run


def notes_ui(view: RunView) -> None:
    """How the run ended (when it did not finish), the problems found in its images, the weights it started from."""
    for level, text in run_notes.outcome_notes(view):
        getattr(st, level)(text)
    problems = (view.health or {}).get("problems") or []
    if problems:
        with st.expander(f"⚠️ {len(problems)} problem{'s' if len(problems) > 1 else ''} found in the images"):
            st.markdown("\n".join(f"- {problem}" for problem in problems))
    for level, text in run_notes.weights_used_notes(view):
        getattr(st, level)(text)


def chart_config(view: RunView) -> dict | None:
    """Plotly's config for the run's charts: static while it trains, interactive once it has ended."""
    return LIVE_CHART_CONFIG if view.live else None


@dataclass(frozen=True)
class RunFigures:
    """The charts of a run: its loss and accuracy curves, its latest validation confusion matrix and its learning
    rate (None while the run has nothing for them yet)."""

    curves: go.Figure
    validation: go.Figure | None
    lr: go.Figure | None


def run_figures(view: RunView) -> RunFigures:
    planned = view.config.epochs if view.config else None
    matrix = view.confusion_matrix
    when = "saved model" if view.summary else f"epoch {len(view.metrics)}"
    return RunFigures(
        curves=charts.training_curves(view.metrics, view.batches, planned),
        validation=charts.confusion_figure(matrix, view.class_names, f"Validation confusion matrix, {when}")
        if matrix else None,
        lr=charts.lr_curve(view.batches, planned) if view.batches else None)


@st.cache_resource(show_spinner=False, ttl=SHARED_FIGURES_SECONDS, max_entries=16)
def shared_live_figures(run_id: str, epochs: int, _view: RunView) -> RunFigures:
    """The figures of a live run at `epochs` finished epochs, built once for every session that draws them within
    SHARED_FIGURES_SECONDS (their batches are those of the first session's view; a new epoch is a new entry)."""
    return run_figures(_view)


def curves_ui(view: RunView) -> None:
    if not view.metrics and not view.batches:
        st.caption("The curves appear after the first batch.")
        return
    figures = shared_live_figures(view.id, len(view.metrics), view) if view.live else run_figures(view)
    config = chart_config(view)
    st.plotly_chart(figures.curves, key="curves", config=config)
    left, right = st.columns([3, 2])
    with left:
        matrices_ui(view, figures.validation, config)
    with right:
        if figures.lr is not None:
            st.plotly_chart(figures.lr, key="lr", config=config)


def matrices_ui(view: RunView, validation: go.Figure | None, config: dict | None) -> None:
    """The validation confusion matrix (the latest epoch's while training), and once the run has been tested the
    held-out test set's beside it, in tabs."""
    if validation is None:
        st.caption("The confusion matrix appears after the first epoch.")
        return
    test_matrix = view.summary.test_confusion_matrix if view.summary else None
    if not test_matrix:
        st.plotly_chart(validation, key="confusion", config=config)
        return
    on_validation, on_test = st.tabs(["Validation", "Test (held-out)"])
    on_validation.plotly_chart(validation, key="confusion", config=config)
    title = "Test confusion matrix (held-out), saved model"
    on_test.plotly_chart(charts.confusion_figure(test_matrix, view.class_names, title), key="test_confusion",
                         config=config)
    on_test.caption(TESTED_ONCE)


def result_ui(view: RunView) -> None:
    """The headline numbers of a run that has ended with a model: validation accuracy and, when the data had a test
    split, the held-out test accuracy beside it."""
    summary = view.summary
    if not summary or summary.val_accuracy is None:
        return
    tested = summary.test_accuracy is not None
    cols = iter(st.columns(5 if tested else 4))
    next(cols).metric("Validation accuracy", f"{summary.val_accuracy:.1%}",
                      help="On the validation images, which also chose the epochs and the weights kept.")
    if tested:
        next(cols).metric("Test accuracy (held-out)", f"{summary.test_accuracy:.1%}",
                          help=f"On {summary.num_test} test images the model never saw while training.")
    next(cols).metric("Epochs", summary.epochs_completed)
    next(cols).metric("Training time", f"{summary.train_seconds:.0f} s")
    next(cols).metric("Trainable weights", f"{summary.trainable_params:,}")
    if tested:
        st.caption(TESTED_ONCE)
    elif summary.num_test:
        st.caption(f"The {summary.num_test} held-out test images were not used: the run ended without a model to "
                   "test.")
    elif view.config is not None:
        st.caption("No test set: validation accuracy is the only measure, and it helped choose the model. For an "
                   "unbiased one, put test images in a test/ folder beside train/, or set some aside with **Hold out "
                   "for the final test** on the **Data** page.")


def per_class_ui(view: RunView) -> None:
    summary = view.summary
    if not summary or not summary.per_class:
        return
    st.markdown("**Per class:** precision = of the images predicted as this class, the share that were; "
                "recall = of this class's images, the share found.")
    percent = {"precision": "{:.0%}", "recall": "{:.0%}"}
    validation = charts.per_class_table(summary.per_class).style.format(percent)
    if summary.test_per_class:
        on_validation, on_test = st.tabs(["Validation", "Test (held-out)"])
        on_validation.dataframe(validation, key="per_class")
        on_test.dataframe(charts.per_class_table(summary.test_per_class, "test images").style.format(percent),
                          key="test_per_class")
    else:
        st.dataframe(validation, key="per_class")
    st.caption(f"Saved in `{view.dir}`. Compare it with other runs on the **Compare** page.")


class Watchers:
    """Which sessions watch which live run: each refresh of a session's progress line checks it in until its next
    one is overdue (a closed tab stops refreshing and soon no longer counts)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._until: dict[str, dict[str, float]] = {}  # run id -> session -> time.monotonic() it counts until

    def check_in(self, run_id: str, session: str, pace: float | None) -> int:
        """Note that `session` watches `run_id`, refreshing every `pace` seconds (None: it stopped, the run has
        ended); how many sessions watch it."""
        now = time.monotonic()
        with self._lock:
            watching = self._until.setdefault(run_id, {})
            watching[session] = now + 2 * pace + STATUS_REFRESH_SECONDS if pace else now
            for other, until in list(watching.items()):
                if until <= now:
                    del watching[other]
            if not watching:
                del self._until[run_id]
            return len(watching)

    def count(self, run_id: str) -> int:
        now = time.monotonic()
        with self._lock:
            return sum(until > now for until in self._until.get(run_id, {}).values())


@st.cache_resource(show_spinner=False)
def run_watchers() -> Watchers:
    """The watchers of every run, one record per server process."""
    return Watchers()


def charts_due(view: RunView, drawn: tuple[int, bool], watching: int) -> bool:
    """Whether to redraw the page for its charts, drawn at `drawn`: at once for the first point, for a new epoch once
    this session's share of the class's redraws allows (CHART_GAP_PER_WATCHER_SECONDS)."""
    now = chart_progress(view)
    if now == drawn:
        return False
    if not drawn[1]:
        return True
    return time.monotonic() - st.session_state.get(CHARTS_DRAWN_AT, 0.0) >= watching * CHART_GAP_PER_WATCHER_SECONDS


def status_panel(run_id: str, drawn: tuple[int, bool] | None, pace: float | None) -> None:
    """Where the run is and its Stop button. While the run is live this redraws every `pace` seconds, and redraws the
    whole page when the charts, drawn at `drawn` (epochs, any point), have something new to show."""
    view = get_registry().view(run_id, person())
    if view is None:
        st.warning(f"There is no run `{run_id}` that you can open: it was deleted, or it is not yours (and not "
                   "shared with you).")
        forget_run()
        return
    watching = run_watchers().check_in(run_id, st.session_state.setdefault(SESSION, uuid.uuid4().hex),
                                       pace if view.live else None)
    if drawn is not None and (view.terminal or charts_due(view, drawn, watching)):
        st.rerun()  # the charts' new point or epoch; a run that has ended is drawn once more without the timers
    st.subheader(f"Run: {view.facts.get('strategy')} · {view.facts.get('backbone')} — {view.status}")
    fraction, line = view.progress_bar()
    st.progress(fraction, text=line)
    if view.status not in ("stopped", "failed", "interrupted"):  # those get a box of their own below
        st.caption(f"{view.explanation()} · Device: **{view.device}**")
    if view.live and not view.elsewhere:
        st.button("Stopping after this batch…" if view.stopping else "Stop", key="stop", disabled=view.stopping,
                  on_click=get_registry().stop, args=(view.id, person()),
                  help="Stops between two batches and keeps what the model has learned so far.")


def charts_panel(run_id: str) -> None:
    """The run's curves, confusion matrix and strategy-specific views."""
    view = get_registry().view(run_id, person())
    if view is None:
        return
    curves_ui(view)
    panels_ui(view)
    per_class_ui(view)


def chart_progress(view: RunView) -> tuple[int, bool]:
    """What the charts show of a run: its finished epochs, and whether it has any point at all."""
    return len(view.metrics), bool(view.metrics or view.batches)


@st.cache_data(show_spinner="Measuring and drawing what this strategy shows of the run…", max_entries=16)
def ended_panels(run_dir: str, status: str, _view: RunView) -> list[Panel]:
    """The panels of a run that has ended, worked out once: they no longer change, and one may measure the run's
    models (the first time only: the measurement is kept in the run's folder)."""
    return get_strategy(_view.config.strategy).panels(_view.record)


def panels_ui(view: RunView) -> None:
    """What the run's strategy draws beyond the common charts (its `panels`)."""
    if view.config is None:  # an imported model: no strategy of this version
        return
    try:
        panels = (ended_panels(str(view.dir), view.status, view) if view.terminal
                  else get_strategy(view.config.strategy).panels(view.record))
    except (ValueError, FileNotFoundError) as error:  # DataError is a ValueError
        st.warning(f"What the {view.config.strategy} strategy shows of this run cannot be drawn: {error}")
        return
    draw_panels(panels, chart_config(view))


def status_pace(view: RunView | None, drawn: tuple[int, bool] | None) -> float | None:
    """How often the progress line refreshes: only while the run is live, fast until its first point unless other
    runs train first (their owner's training needs the CPU), slower the more sessions watch it."""
    if view is None or not view.live:
        return None
    waiting_for_first_point = not view.queue_position and not drawn[1]
    pace = FIRST_POINT_REFRESH_SECONDS if waiting_for_first_point else STATUS_REFRESH_SECONDS
    return max(pace, run_watchers().count(view.id) * POLL_GAP_PER_WATCHER_SECONDS)


def show_run(run_id: str) -> None:
    view = get_registry().view(run_id, person())
    live = view is not None and view.live
    drawn = chart_progress(view) if live else None
    if live:
        st.html(LIVE_RUN_CSS)
        st.session_state[CHARTS_DRAWN_AT] = time.monotonic()
    st.fragment(status_panel, run_every=(pace := status_pace(view, drawn)))(run_id, drawn, pace)
    if view is not None:  # what changes only when a run ends, when the whole page is drawn again
        notes_ui(view)
        result_ui(view)
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
