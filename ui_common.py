"""What every page shares: the one run registry of this server, and the names of the few session values.

`st.session_state` holds only ids and choices; runs live in the registry (shared by every browser session) and on
disk, so a refresh, a page switch or a second tab re-attaches to the same run.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from workbench.analysis import charts
from workbench.runs.records import RunRecord
from workbench.runs.registry import RunRegistry

REPO = Path(__file__).resolve().parent
SAMPLE_DATASETS = {p.name: p for p in sorted((REPO / "sample_data").iterdir()) if p.is_dir()}

# session_state keys
DATASET = "dataset"  # str: path of the chosen dataset folder or zip
CHOICES = "choices"  # dict: RunConfig fields chosen on the Model page (everything but `data`)
RUN_ID = "run_id"  # str: the run the Train page shows (mirrored in the URL as ?run=...)


@st.cache_resource
def get_registry() -> RunRegistry:
    """One registry per server process, shared by every session and thread-safe."""
    return RunRegistry()


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
