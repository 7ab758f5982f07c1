"""Compare: every run recorded on disk (from this app session and earlier ones) plus the ones queued now, in one
table; overlay the curves of the runs you pick and put their confusion matrices side by side; race several strategies
on the same data and backbone in one click, or several backbones, and see accuracy against speed and size."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pandas as pd
import streamlit as st

from ui_common import CHOICES, DATASET, dataset_choices, get_registry, person, serving
from workbench.analysis import charts
from workbench.deploy import tradeoff
from workbench.engine.config import RunConfig
from workbench.models import backbones
from workbench.models.backbones import model_groups
from workbench.runs import access
from workbench.runs.records import RunRecord
from workbench.runs.registry import backbone_race_configs, latest_confusion_matrix, race_budget
from workbench.strategies import STRATEGIES

RACE_STRATEGIES = [name for name, strategy in STRATEGIES.items() if strategy.race]  # those needing only the data
RACE_DEFAULT = [name for name in RACE_STRATEGIES if STRATEGIES[name].race_default]
REFRESH_SECONDS = 2.0
PICKED = "compare_picked"  # session_state: run ids whose curves are overlaid
SHOWN_BY_DEFAULT = 4
MATRICES_PER_ROW = 3
RACED = "backbone_race.runs"  # session_state: run ids of this session's latest backbone race
BUNDLED = list(backbones.BUNDLED_WEIGHTS)  # pretrained offline: the race's default field
PICTURE_X = {"latency_ms": "Latency per image", "size_mb": "Size on disk"}

catalogue_of = st.cache_data(show_spinner=False, ttl="10m")(backbones.catalogue)


# -------------------------------------------------------------------------------------------------------------------
# Strategy race


def base_config() -> RunConfig | None:
    dataset = st.session_state.get(DATASET)
    if not dataset:
        return None
    choices = st.session_state.get(CHOICES) or {}  # none yet: RunConfig's defaults
    return RunConfig.from_dict({**choices, **dataset_choices(), "data": dataset})


def race_ui() -> None:
    """Queue one run per chosen strategy with the same budget; their curves fill in above as they train."""
    st.subheader("Strategy race")
    try:
        config = base_config()
        budget = race_budget(config) if config else None
    except ValueError as error:
        st.error(f"The current choices cannot run: {error}")
        return
    if config is None:
        st.info("Choose images on the **Data** page (or use the sample data on the **Train** page) to start a race.")
        return
    st.caption(f"Every strategy trains **{config.backbone}** on **{Path(config.data).name}** with the "
               "same seed, epochs and image size, one after another; each keeps its own learning rate.")
    with st.form("race"):
        strategies = st.multiselect("Strategies", RACE_STRATEGIES, default=RACE_DEFAULT, key="race_strategies",
                                    format_func=lambda name: STRATEGIES[name].title)
        left, right = st.columns(2)
        epochs = left.number_input("Epochs (each)", min_value=1, max_value=200, value=budget.epochs)
        image_size = right.number_input("Image size (px)", min_value=32, max_value=1024, value=budget.image_size,
                                        step=32)
        started = st.form_submit_button("Start the race", type="primary")
    if started and strategies:
        race = dataclasses.replace(config, epochs=int(epochs), image_size=int(image_size))
        runs = get_registry().race(race, strategies, person())
        st.session_state[PICKED] = [run.id for run in runs]  # the table above is drawn after this, live
    elif started:
        st.warning("Pick at least one strategy.")


def sweep_ui() -> None:
    """Queue `partial` at each chosen freeze depth; the accuracy-and-time-against-depth plot fills in above."""
    st.subheader("Freeze-depth sweep: how much should I freeze?")
    config = base_config()
    if config is None:
        st.info("Choose images on the **Data** page to run a sweep.")
        return
    try:
        budget = race_budget(config)
        depths_available = list(range(len(model_groups(config.backbone, 2))))
    except ValueError as error:
        st.error(f"The current choices cannot run: {error}")
        return
    st.caption(f"**{config.backbone}** fine-tuned with 0 (train everything) up to {depths_available[-1]} (only the "
               "head) layer groups frozen, same epochs and image size for each.")
    with st.form("sweep"):
        depths = st.multiselect("Freeze depths", depths_available, default=depths_available, key="sweep_depths")
        epochs = st.number_input("Epochs (each)", min_value=1, max_value=200, value=budget.epochs)
        started = st.form_submit_button("Run the sweep", type="primary")
    if started and depths:
        sweep = dataclasses.replace(config, epochs=int(epochs), image_size=budget.image_size)
        runs = get_registry().freeze_sweep(sweep, sorted(depths), person())
        st.session_state[PICKED] = [run.id for run in runs]


def sweep_plot(records: list[RunRecord]) -> None:
    config = base_config()
    if config is None:
        return
    points = charts.freeze_sweep_points(records, config.data, config.backbone)
    if len(points) >= 2:
        st.markdown(f"**Accuracy and time against freeze depth** ({config.backbone})")
        st.plotly_chart(charts.freeze_sweep_figure(points), key="sweep_plot")


# -------------------------------------------------------------------------------------------------------------------
# Backbone race: which backbone for my images and my device?


def backbone_badge(entry: backbones.CatalogueEntry) -> str:
    if entry.pretrained_here:
        return "✅ pretrained here"
    return "⬇ pretrained if online, else random weights" if entry.weights == "download" else "⚠ random weights"


def backbone_race_ui() -> None:
    """Choose backbones and strategies, queue every pair with one click; the trade-off picture follows."""
    st.subheader("Backbone race: which backbone for my images and my device?")
    config = base_config()
    if config is None:
        st.info("Choose images on the **Data** page to race backbones on them.")
        return
    entries = {entry.name: entry for entry in catalogue_of(count=False)}
    chosen = st.multiselect("Backbones", list(entries), default=[name for name in BUNDLED if name in entries],
                            key="backbone_race.backbones",
                            format_func=lambda n: f"{n} · {entries[n].family} · {backbone_badge(entries[n])}",
                            help="Any timm model. Those pretrained here train offline; the others start from random "
                                 "weights unless this computer can download theirs, and the picture says which.")
    default = [config.strategy] if config.strategy in RACE_STRATEGIES else RACE_DEFAULT[:1]
    strategies = st.multiselect("Strategies (each backbone trains with each)", RACE_STRATEGIES, default=default,
                                key="backbone_race.strategies", format_func=lambda name: STRATEGIES[name].title)
    if chosen and strategies:
        start_ui(config, chosen, strategies)
    else:
        st.caption("Pick at least one backbone and one strategy.")
    picture_ui(config)


def start_ui(config: RunConfig, chosen: list[str], strategies: list[str]) -> None:
    """The budget of the race (epochs; image size, by default each backbone's own) and its start button."""
    try:
        unset = dataclasses.replace(config, epochs=None, image_size=None)  # the race's own budget, not the Model page's
        plans = [backbone_race_configs(unset, name, strategies)[0] for name in chosen]
    except ValueError as error:
        st.error(f"These choices cannot run: {error}")
        return
    left, right = st.columns(2)
    epochs = left.number_input("Epochs per run", min_value=1, max_value=200, value=plans[0].epochs,
                               key=f"backbone_race.epochs.{'.'.join(strategies)}")  # a new default for new strategies
    size = right.number_input("Image size per run (px; 0: each backbone's own)", min_value=0, max_value=1024, value=0,
                              step=32, key="backbone_race.image_size")
    sizes = ", ".join(f"{plan.backbone} {plan.image_size} px" for plan in plans)
    st.caption(f"Same data, seed and epochs for every run; image size {f'{size} px for all' if size else sizes}. "
               "Runs queue like any others and train one per free device.")
    if st.button("Start the backbone race", type="primary", key="backbone_race.start"):
        race = dataclasses.replace(config, epochs=int(epochs), image_size=int(size) or None)
        try:
            runs = get_registry().backbone_race(race, chosen, strategies, person())
        except (ValueError, access.AccessError) as error:
            st.error(str(error))
        else:
            st.session_state[RACED] = [run.id for run in runs]
            st.session_state[PICKED] = [run.id for run in runs]


def pictured_records(records: list[RunRecord], data: str) -> list[RunRecord]:
    """The runs of this session's latest backbone race; without one, the newest run of each backbone and strategy
    on this data."""
    raced = st.session_state.get(RACED)
    if raced:
        return [record for record in records if record.id in raced]
    newest: dict[tuple[str, str], RunRecord] = {}
    for record in records:  # newest first
        if record.data == data and record.status in ("finished", "stopped"):
            newest.setdefault((record.backbone, record.strategy), record)
    return list(newest.values())


def picture_ui(config: RunConfig) -> None:
    st.fragment(trade_off_panel, run_every=REFRESH_SECONDS if get_registry().live() else None)(config.data)


def trade_off_panel(data: str) -> None:
    """Accuracy against latency or size for the pictured runs, their table and one sentence of advice. Latency is
    measured only while nothing trains here: training on the same CPU would slow every clock."""
    registry = get_registry()
    records = pictured_records(registry.records(person()), data)
    waiting = [record for record in records if record.status in ("queued", "preparing", "running")]
    busy = bool(registry.live())
    with st.spinner("Measuring the saved models on this computer…"):
        points = tradeoff.points_for_runs([record.dir for record in records if record.status not in
                                           ("queued", "preparing", "running")], timed=not busy)
    if waiting:
        st.caption(f"{len(records) - len(waiting)} of {len(records)} runs done; the picture fills in as they end.")
    if not points:
        return
    st.markdown("**Accuracy against cost**: one point per saved model (compressed variants too); the dashed line "
                "is the Pareto front, the models nothing beats on both.")
    axes = list(PICTURE_X) if not busy else ["size_mb"]
    # a key of its own while busy: once latency is measured, the picture opens on it
    x = st.radio("Cost", axes, format_func=PICTURE_X.get, horizontal=True, key=f"backbone_race.x.{busy}")
    if busy:
        st.caption("Latency is measured once nothing trains on this computer (training would slow the clock).")
    st.plotly_chart(tradeoff.tradeoff_figure(points, x), key="tradeoff_plot")
    table = tradeoff.tradeoff_table(points).drop(columns=["backbone", "strategy", "run id"])
    st.dataframe(table.style.format({"val accuracy": "{:.1%}", "test accuracy": "{:.1%}", "parameters": "{:,.0f}",
                                     "latency ms": "{:.2f}", "CPU ms": "{:.2f}", "size MB": "{:.2f}",
                                     "train s": "{:.1f}", "MACs (M)": "{:,.1f}"}, na_rep="–"),
                 hide_index=True, key="tradeoff_table")
    if not busy:
        st.success(tradeoff.advice(points))
        note = tradeoff.busy_note(points)
        if note:
            st.caption(note)


# -------------------------------------------------------------------------------------------------------------------
# Runs table, overlays, confusion matrices


def filters_ui(table: pd.DataFrame) -> pd.DataFrame:
    """The rows matching the chosen strategies, backbones and statuses (nothing chosen: all)."""
    columns = st.columns(3)
    for column, (name, label) in zip(columns, (("strategy", "Strategy"), ("backbone", "Backbone"),
                                               ("status", "Status")), strict=True):
        chosen = column.multiselect(label, sorted(table[name].dropna().unique()), key=f"filter_{name}",
                                    placeholder="all")
        if chosen:
            table = table[table[name].isin(chosen)]
    return table


def default_pick(records: list[RunRecord]) -> list[str]:
    """The latest few runs that got at least one epoch done."""
    return [record.id for record in records if record.metrics][:SHOWN_BY_DEFAULT]


def pick_ui(records: list[RunRecord], shown: pd.DataFrame, labels: dict[str, str]) -> list[str]:
    """Run ids to overlay: chosen among the runs in the table (and the ones already picked)."""
    if PICKED not in st.session_state:
        st.session_state[PICKED] = default_pick(records)
    picked = [run_id for run_id in st.session_state[PICKED] if run_id in labels]
    st.session_state[PICKED] = picked
    options = list(dict.fromkeys([*picked, *shown["run id"]]))
    return st.multiselect("Runs to compare", options, key=PICKED, format_func=labels.get,
                          help="Their validation curves are drawn on top of each other below.")


def overlays_ui(picked: list[RunRecord], labels: dict[str, str]) -> None:
    with_metrics = {labels[r.id]: r.metrics for r in picked if r.metrics}
    if not with_metrics:
        st.caption("The curves appear once a picked run has finished its first epoch.")
        return
    left, right = st.columns(2)
    left.plotly_chart(charts.overlay_curves(with_metrics, "val_acc"), key="overlay_acc")
    right.plotly_chart(charts.overlay_curves(with_metrics, "val_loss"), key="overlay_loss")


def matrices_ui(picked: list[RunRecord], labels: dict[str, str]) -> None:
    """The latest confusion matrix of each picked run, side by side."""
    with_matrix = [(r, latest_confusion_matrix(r.summary, r.metrics)) for r in picked]
    with_matrix = [(r, matrix) for r, matrix in with_matrix if matrix]
    if not with_matrix:
        return
    st.markdown("**Confusion matrices** (validation; rows: true class, columns: predicted)")
    for start in range(0, len(with_matrix), MATRICES_PER_ROW):
        row = with_matrix[start:start + MATRICES_PER_ROW]
        for column, (record, matrix) in zip(st.columns(MATRICES_PER_ROW), row, strict=False):
            names = record.class_names
            title = labels[record.id].replace(" · ", "<br>", 1)  # narrow columns: strategy on its own line
            figure = charts.confusion_figure(matrix, names, title, colour_scale=False)
            column.plotly_chart(figure, key=f"cm_{record.id}")


def runs_panel(live: bool) -> None:
    """The table and the comparison; redrawn every few seconds while any run is queued or training."""
    registry = get_registry()
    if live and not registry.live():
        st.rerun()  # everything finished: redraw once as a whole page, without the timer
    records = registry.records(person())
    if not records:
        st.info("No runs yet. Train one on the **Train** page, or start a strategy race below.")
        return
    table = charts.runs_table(records, registry.statuses())
    shown = filters_ui(table)
    st.dataframe(charts.highlight_best(shown), hide_index=True, key="runs_table")
    st.caption(f"{len(shown)} of {len(table)} runs · best value of a column in green · test accuracy (measured "
               "once, at the end, on held-out images; None when the data had no test set) is never highlighted: "
               f"pick a run by validation, then read its test accuracy · runs are read from `{registry.runs_dir}`.")
    labels = charts.run_labels(records)
    picked_ids = pick_ui(records, shown, labels)
    by_id = {record.id: record for record in records}
    picked = [by_id[run_id] for run_id in picked_ids]
    overlays_ui(picked, labels)
    matrices_ui(picked, labels)
    sweep_plot(records)
    manage_ui([r for r in records if r.status not in ("queued", "preparing", "running")], labels)


def manage_ui(ended: list, labels: dict[str, str]) -> None:
    """Delete a run you may change; on a classroom server the teacher also shares runs with the class."""
    me, classroom = person(), serving().classroom
    mine = [r for r in ended if access.can_change(me, r)]
    if not mine:
        return
    with st.expander("Delete runs" + (" or share them with the class" if classroom and me.is_teacher else "")):
        run_id = st.selectbox("Run", [r.id for r in mine], format_func=lambda i: labels.get(i, i), key="manage.run")
        record = next(r for r in mine if r.id == run_id)
        left, right = st.columns(2)
        if left.button("Delete this run", key="manage.delete", help="Its folder and model are deleted for good."):
            try:
                get_registry().delete(run_id, me)
            except (access.AccessError, FileNotFoundError) as error:
                st.error(str(error))
            else:
                st.rerun()
        if classroom and me.is_teacher:
            shared = access.is_shared(record)
            if right.button("Stop sharing" if shared else "Share with the class", key="manage.share"):
                get_registry().share(run_id, me, not shared)
                st.rerun()
            right.caption("Shared: every student can open it." if shared else "Only its owner and you see it.")


# -------------------------------------------------------------------------------------------------------------------

st.title("4 · Compare")
st.caption("Every run so far, side by side. Pick runs to overlay their curves, or race strategies on your data.")
runs_area = st.container()
race_ui()
sweep_ui()
backbone_race_ui()
with runs_area:
    any_live = bool(get_registry().live())
    st.fragment(runs_panel, run_every=REFRESH_SECONDS if any_live else None)(any_live)
