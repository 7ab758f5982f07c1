import os
from pathlib import Path

import pytest
from hypothesis import settings

# Tests never reach the network: weights come from files, the bundled package, or random init.
os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "sample_data" / "shapes"
SHAPES_SHIFTED = REPO / "sample_data" / "shapes_shifted"


def train_page_showing(run, monkeypatch, timeout: float = 60):
    """The Train page as a fresh app session opens it on `run` (from its record on disk, through ?run=), drawn once
    and checked for Streamlit's exception box."""
    from streamlit.testing.v1 import AppTest

    from ui_common import get_registry
    from workbench.engine.config import RUNS_DIR_ENV

    monkeypatch.setenv(RUNS_DIR_ENV, str(run.dir.parent))
    get_registry.clear()
    at = AppTest.from_file(str(REPO / "pages" / "3_train.py"), default_timeout=timeout)
    at.query_params["run"] = run.id
    at.run()
    assert not at.exception
    return at


@pytest.fixture(scope="module")
def server(tmp_path_factory):
    """A browser test module's own `streamlit run app.py` (tests/test_browser.py), its log printed at the end."""
    from .test_browser import logged_server  # playwright is imported only where a browser test runs

    with logged_server(tmp_path_factory.mktemp("app")) as running:
        yield running


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(path))
    return path


# The property tests draw the same examples on every run, so a CI result can be reproduced.
settings.register_profile("workbench", derandomize=True)
settings.load_profile("workbench")
