"""What every page shares: the one run registry of this server, and the names of the few session values.

`st.session_state` holds only ids and choices; runs live in the registry (shared by every browser session) and on
disk, so a refresh, a page switch or a second tab re-attaches to the same run.
"""

from __future__ import annotations

from pathlib import Path

import streamlit as st
from streamlit.runtime.pages_manager import PagesManager

from workbench.registry import RunRegistry

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
