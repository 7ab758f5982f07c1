"""What every page shares: the one run registry of this server, the names of the few session values, and the
models loaded from runs.

`st.session_state` holds only ids and choices; runs live in the registry (shared by every browser session) and on
disk, so a refresh, a page switch or a second tab re-attaches to the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from workbench.analysis import charts, choices
from workbench.core.classroom import ME, AccessError, Person, ServerMode, server_mode
from workbench.data import IMAGE_EXTENSIONS, uploads
from workbench.engine.config import RunConfig
from workbench.models.trained import Predictor
from workbench.runs import access
from workbench.runs.records import RunRecord
from workbench.runs.registry import RunRegistry
from workbench.strategies import Alert, Figure, Panel, Strategy, Table, get_strategy

REPO = Path(__file__).resolve().parent
SAMPLE_DATASETS = {p.name: p for p in sorted((REPO / "sample_data").iterdir()) if p.is_dir()}

# session_state keys
DATASET = "dataset"  # str: path of the chosen dataset folder or zip
CHOICES = "choices"  # dict: RunConfig fields chosen on the Model page (everything but `data`)
DATA_CHOICES = "data.choices"  # dict: RunConfig fields chosen on the Data page (test share, layout choices)
RUN_ID = "run_id"  # str: the run the Train page shows (mirrored in the URL as ?run=...)
PERSON = "person"  # Person: who signed in on this browser (classroom mode)

IMAGE_TYPES = sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS)  # what a picture uploader accepts


@st.cache_resource
def serving() -> ServerMode:
    """This server's mode, read once from $WORKBENCH_CLASSROOM (a broken classroom file stops the app, loudly)."""
    return server_mode()


def person() -> Person:
    """Who uses this browser: on a personal server, its one user; in a classroom, whoever signed in."""
    return st.session_state[PERSON] if serving().classroom else ME


def owner_name() -> str | None:
    """The name a run saved from this browser records as its owner (None on a personal server)."""
    return person().name if serving().classroom else None


def signed_in() -> Person | None:
    """The person on this browser; in classroom mode, the sign-in form until their code is accepted (None)."""
    mode = serving()
    if not mode.classroom:
        return ME
    if st.session_state.get(PERSON) is not None:
        return st.session_state[PERSON]
    known = st.user.get("is_logged_in") and mode.person_named(str(st.user.get("email") or st.user.get("name") or ""))
    if known:  # an identity provider (st.login, configured in secrets.toml) vouched for a class member
        st.session_state[PERSON] = known
        return known
    st.title("Transfer Learning Workbench")
    if identity_provider():
        st.button("Sign in with your school account", on_click=st.login, type="primary")
    with st.form("sign_in"):
        st.markdown("This workbench is shared by a class. Sign in with the access code your teacher gave you.")
        code = st.text_input("Access code", type="password", key="sign_in.code")
        if st.form_submit_button("Sign in", type="primary"):
            try:
                st.session_state[PERSON] = mode.sign_in(code)
                st.rerun()
            except AccessError as e:
                st.error(str(e))
    return None


def uploads_dir() -> Path:
    """Where this browser's uploads go: the uploads folder, or in a classroom the person's own folder in it."""
    root = uploads.uploads_root()
    return root / person().name if serving().classroom else root


def identity_provider() -> bool:
    """Whether secrets.toml configures an identity provider for `st.login`."""
    try:
        return "auth" in st.secrets
    except Exception:  # noqa: BLE001 - no secrets file at all: Streamlit raises its own not-found error
        return False


def check_upload_room(size: int) -> None:
    """On a classroom server: clean uploads no run uses that are older than the class's limit, then AccessError if
    an upload of `size` bytes would take this person past their limits."""
    mode, me = serving(), person()
    if not mode.classroom:
        return
    registry = get_registry()
    everyone = registry.records(ME)
    in_use = {Path(r.data).resolve() for r in everyone if r.data}
    in_use |= {p for path in in_use for p in path.parents}  # a run's data may sit inside the upload's folder
    access.clean_uploads(uploads.uploads_root(), mode.limits, in_use)
    access.check_upload(me, mode.limits, uploads_dir(), size, access.disk_used(me, everyone, uploads_dir()))


def mode_sidebar() -> None:
    """Who is signed in, and what this server's mode allows."""
    mode, me = serving(), person()
    with st.sidebar:
        if mode.classroom:
            st.markdown(f"Signed in as **{me.name}** ({me.role})")
            if st.button("Sign out", key="sign_out"):
                st.session_state.clear()
                st.rerun()
        for line in mode.describe():
            st.caption(line)


def dataset_choices() -> dict:
    """How the Data page said to read the chosen dataset (RunConfig fields: test share, layout choices)."""
    return dict(st.session_state.get(DATA_CHOICES) or {})


@st.cache_resource
def get_registry() -> RunRegistry:
    """One registry per server process, shared by every session and thread-safe; on a classroom server, with the
    class's per-person limits."""
    return RunRegistry(limits=serving().limits)


def attached_run_id() -> str | None:
    """The run the Train page shows: from the URL (survives a refresh), this session, or the run training now. Kept
    in both, so a refresh and the other pages find it."""
    registry = get_registry()
    run_id = st.query_params.get("run") or st.session_state.get(RUN_ID)
    if run_id is None:
        me = person()  # a classroom student is attached only to a run they may see
        candidates = [registry.current(), *registry.live()]  # the run training now first, then the newest queued
        live = next((run for run in candidates if run and access.visible(me, run.owner, run.dir)), None)
        run_id = live.id if live else None
    if run_id is not None:
        st.session_state[RUN_ID] = run_id
        st.query_params["run"] = run_id
    return run_id


def forget_run() -> None:
    """Detach this session from its run (it is not there any more)."""
    st.session_state.pop(RUN_ID, None)
    st.query_params.pop("run", None)


def runs_with_model() -> list[RunRecord]:
    """Every run that has ended with a usable model (imported ones included), newest first."""
    return [record for record in get_registry().records(person()) if record.has_model]


def model_stamp(record: RunRecord) -> float:
    """When the run's model was saved: with the run's folder, the key of what is cached from that model."""
    return record.model_files[0].stat().st_mtime


@st.cache_resource(max_entries=4, show_spinner="Loading the model…")
def loaded_model(run_dir: str, stamp: float) -> Predictor:
    """One loaded model per run and `model_stamp`, shared by every session and page (predicting and explaining do
    not change it)."""
    return Predictor.from_run(run_dir)


def pick_run(records: list[RunRecord], label: str, key: str, *, default: str | None = None,
             describe: Callable[[RunRecord, str], str] | None = None, help: str | None = None) -> RunRecord:
    """A selectbox of `records` (not empty) that keeps its choice in session_state[key]: the run picked there
    before, else `default`, else the Train page's run, else the newest. `describe(record, short_label)` words an
    option; the short label alone by default."""
    by_id = {record.id: record for record in records}
    if st.session_state.get(key) not in by_id:
        trained = st.session_state.get(RUN_ID)
        st.session_state[key] = default if default in by_id else trained if trained in by_id else records[0].id
    labels = charts.run_labels(records)
    run_id = st.selectbox(label, list(by_id), key=key, help=help,
                          format_func=lambda i: describe(by_id[i], labels[i]) if describe else labels[i])
    return by_id[run_id]


def draw_panels(panels: list[Panel], chart_config: dict | None = None) -> None:
    """A strategy's panels (`Strategy.panels`), block by block: a title as a subheader, text as a caption, an Alert
    as a warning, a Figure as a plotly chart (with `chart_config`, e.g. static while a run trains), a Table as a
    table with its formats."""
    for panel in panels:
        st.subheader(panel.title)
        for number, block in enumerate(panel.blocks):
            if isinstance(block, Alert):
                st.warning(block.text)
            elif isinstance(block, Figure):
                st.plotly_chart(block.figure, key=block.key, config=chart_config)
            elif isinstance(block, Table):
                st.dataframe(block.frame.style.format(block.formats), key=f"{panel.title}:{number}")
            else:
                st.caption(block)


# -------------------------------------------------------------------------------------------------------------------
# Run choices (the Model page's): widgets that keep their value across pages, and a strategy's options as widgets

OTHER_FOLDER = "another folder or .zip"


def choice_key(name: str) -> str:
    """The widget key of the run choice `name` (a RunConfig field or a strategy option)."""
    return f"model.{name}"


def seed_choice(name: str, default) -> None:
    """Give the widget of choice `name` its value: the saved choice, else `default`. Streamlit forgets widget values
    when the user opens another page; CHOICES remembers them."""
    if choice_key(name) not in st.session_state:
        saved = st.session_state.get(CHOICES, {}).get(name)
        st.session_state[choice_key(name)] = default if saved is None else saved


def forget_choices(*names: str) -> None:
    """Drop saved values so their widgets start again from the new defaults."""
    for name in names:
        st.session_state.pop(choice_key(name), None)
        st.session_state.get(CHOICES, {}).pop(name, None)


def options_ui(strategy: Strategy, class_names: list[str] | None, data: str | None) -> dict:
    """One widget per field of the strategy's own settings (its `Options`), side by side: option name -> value."""
    widgets = choices.option_widgets(strategy)
    return {w.name: option_ui(w, column, class_names, data)
            for w, column in zip(widgets, st.columns(len(widgets)) if widgets else [], strict=True)}


def option_ui(widget: choices.OptionWidget, column, class_names: list[str] | None, data: str | None):
    if widget.kind == "run":
        return run_ui(widget, column, class_names)
    if widget.kind == "images":
        return images_ui(widget, column, data)
    seed_choice(widget.name, widget.default)
    args = dict(label=widget.label, key=choice_key(widget.name),
                help=f"Setting `{widget.name}` (`--{widget.name.replace('_', '-')}` on the command line).")
    if widget.kind == "bool":
        return column.checkbox(**args)
    if widget.kind == "int":
        return column.number_input(min_value=0, step=1, **args)
    if widget.kind == "float":
        return column.number_input(min_value=0.0, step=0.01, format="%g", **args)
    return column.text_input(**args).strip()


def run_ui(widget: choices.OptionWidget, column, class_names: list[str] | None) -> str:
    """A finished run with a model on the same classes, the most accurate first."""
    candidates = choices.option_runs(get_registry().records(person()), class_names) if class_names else []
    if not candidates:
        column.warning("No finished run with a saved model on these classes yet. Train one first on the **Train** "
                       "page, then come back.")
        return ""
    labels = {r.id: choices.run_label(r) for r in candidates}
    seed_choice(widget.name, next(iter(labels)))
    if st.session_state[choice_key(widget.name)] not in labels:  # a run deleted, or one on other data
        st.session_state[choice_key(widget.name)] = next(iter(labels))
    return column.selectbox(widget.label, list(labels), key=choice_key(widget.name), format_func=labels.get,
                            help="Backbone · strategy · validation accuracy · end of the run id.")


def images_ui(widget: choices.OptionWidget, column, data: str | None) -> str:
    """A sample data folder, or another folder or .zip on this computer."""
    stem = choice_key(widget.name.split("_")[0])  # keys named after the field's first word, as sessions know them
    samples = {str(p): f"sample data: {name}" for name, p in SAMPLE_DATASETS.items()}
    seed_choice(widget.name, choices.images_default(data, SAMPLE_DATASETS))
    chosen = st.session_state[choice_key(widget.name)]
    st.session_state.setdefault(f"{stem}_choice", chosen if chosen in samples else OTHER_FOLDER)
    st.session_state.setdefault(f"{stem}_path", "" if chosen in samples else chosen)
    path = column.selectbox(widget.label, [*samples, OTHER_FOLDER], key=f"{stem}_choice",
                            format_func=lambda v: samples.get(v, v))
    if path == OTHER_FOLDER:
        path = column.text_input("Folder or .zip of images", key=f"{stem}_path").strip()
    st.session_state[choice_key(widget.name)] = path
    return path


@st.cache_data(show_spinner="Reading the strategy's inputs…", max_entries=32)
def option_notes(config: RunConfig, class_names: tuple[str, ...]) -> list[str]:
    return get_strategy(config.strategy).option_notes(config, list(class_names))


def notes_ui(config: RunConfig, class_names: list[str] | None) -> None:
    """What the strategy says of its options once chosen (e.g. what it found in a folder)."""
    try:
        for line in option_notes(config, tuple(class_names)) if class_names else []:
            st.caption(line)
    except ValueError as error:  # a DataError too: the folder cannot be read
        st.error(str(error))


def leave_legacy_pages_mode() -> None:
    """Route every page through app.py's `st.navigation`, even when the first visit after a server start opens a
    page's URL directly (a refresh on /train?run=...).

    Streamlit starts in its legacy mode whenever a `pages/` folder sits next to app.py: it runs the page file alone
    (no page config, a sidebar of file names) until some session runs `st.navigation`. Every page imports this
    module first thing, so ending that mode here and rerunning gets app.py to draw the page instead; the page's URL
    path, hence the page, and its query parameters are kept. Streamlit has no public switch for this.
    """
    if PagesManager.uses_pages_directory:
        PagesManager.uses_pages_directory = False  # what st.navigation does, for every session of this server
        st.rerun()


leave_legacy_pages_mode()
