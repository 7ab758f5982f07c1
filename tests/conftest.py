import os
from pathlib import Path

import pytest

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
