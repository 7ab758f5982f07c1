import os
from pathlib import Path

import pytest
from hypothesis import settings

# Tests never reach the network: weights come from files, the bundled package, or random init.
os.environ["HF_HUB_OFFLINE"] = "1"

REPO = Path(__file__).resolve().parents[1]
SHAPES = REPO / "sample_data" / "shapes"
SHAPES_SHIFTED = REPO / "sample_data" / "shapes_shifted"


@pytest.fixture
def runs_dir(tmp_path, monkeypatch) -> Path:
    path = tmp_path / "runs"
    monkeypatch.setenv("WORKBENCH_RUNS_DIR", str(path))
    return path


# The property tests draw the same examples on every run, so a CI result can be reproduced.
settings.register_profile("workbench", derandomize=True)
settings.load_profile("workbench")
