"""Run records read back as typed objects: folders written by the previous version of the workbench still load,
predict and list, and one rule says which runs have a usable model (a live run, an interrupted run with a checkpoint,
a failed run with none, an imported model)."""

from __future__ import annotations

import json
import shutil
import zipfile
from pathlib import Path

import pytest
import torch
from streamlit.testing.v1 import AppTest

from ui_common import get_registry
from workbench import runs
from workbench.analysis import charts
from workbench.data import DataSpec
from workbench.deploy.export import INFO_MEMBER, WEIGHTS_MEMBER, exported_info, import_zip
from workbench.engine.config import RunConfig
from workbench.models.trained import Predictor
from workbench.runs.records import RunSummary
from workbench.runs.registry import RunRegistry
from workbench.strategies.gradual import GradualOptions
from workbench.strategies.linear_probe import LinearProbe

from .conftest import REPO

# Written by the workbench before its layered package (commit 1b26c11); see tests/fixtures/README.md.
PREVIOUS_RUNS = REPO / "tests" / "fixtures" / "previous_runs"
GRADUAL = "20261201-164300-gradual-test_efficientnet-e477"
PROBE = "20261201-164305-linear_probe-test_efficientnet-b859"
CLASSES = ["circle", "cross", "square", "star", "triangle"]
TIMEOUT = 60


@pytest.fixture
def previous_runs(runs_dir, monkeypatch) -> Path:
    """The previous version's run folders, copied into this test's runs folder (the pages write caches beside a
    run). Their dataset is recorded as `sample_data/shapes`, relative to the repository, as the CLI was run there."""
    shutil.copytree(PREVIOUS_RUNS, runs_dir)
    monkeypatch.chdir(REPO)
    return runs_dir


# ---------------------------------------------------------------------------------------------------------------
# A run folder of the previous version


def test_a_gradual_run_of_the_previous_version_reads_back_typed(previous_runs):
    record = runs.load_run(previous_runs / GRADUAL)
    config = record.config
    assert isinstance(config, RunConfig)
    assert (config.strategy, config.backbone, config.data) == ("gradual", "test_efficientnet", "sample_data/shapes")
    assert (config.epochs, config.image_size, config.lr, config.weights) == (2, 64, 1e-3, "none")
    # the old config.json kept every strategy's options flat; gradual's own is read, the others' are dropped
    assert config.options == GradualOptions(epochs_per_phase=2)
    assert "l2sp_alpha" in record.facts and not hasattr(config.options, "l2sp_alpha")
    assert isinstance(record.summary, RunSummary)
    assert record.summary.status == record.status == "finished"
    assert record.summary.val_accuracy == 0.4 and record.summary.epochs_completed == 2
    assert record.summary.pretrained["description"] == "none (random init)"
    assert record.class_names == CLASSES and record.split == DataSpec("sample_data/shapes", 0.2, 0)
    assert len(record.metrics) == 2 and record.has_model


def test_a_linear_probe_of_the_previous_version_reads_back_typed(previous_runs):
    record = runs.load_run(previous_runs / PROBE)
    assert record.config.strategy == "linear_probe" and record.config.options == LinearProbe.Options()
    assert record.summary.val_accuracy == 0.28 and record.summary.feature_seconds is not None
    assert record.class_names == CLASSES and record.has_model


@pytest.mark.parametrize("run_id", [GRADUAL, PROBE])
def test_a_model_of_the_previous_version_predicts_as_its_run_measured(previous_runs, run_id):
    run_dir = previous_runs / run_id
    record = runs.load_run(run_dir)
    predictor = Predictor.from_run(run_dir)
    assert predictor.class_names == CLASSES
    with record.validation_images() as samples:
        predicted = predictor.logits([s.path for s in samples]).argmax(1)
        targets = torch.tensor([s.label for s in samples])
    assert (predicted == targets).float().mean().item() == pytest.approx(record.summary.val_accuracy, abs=1e-4)


def test_runs_of_the_previous_version_are_listed_in_the_runs_table_and_on_the_compare_page(previous_runs):
    table = charts.runs_table(runs.list_runs(previous_runs)).set_index("run id")
    gradual, probe = table.loc[GRADUAL], table.loc[PROBE]
    assert (gradual["strategy"], gradual["status"], gradual["epochs"], gradual["image size"]) == \
        ("gradual", "finished", 2, 64)
    assert gradual["val accuracy"] == 0.4 and gradual["dataset"] == "shapes"
    assert gradual["weight source"] == "none (random init)"
    assert (probe["strategy"], probe["val accuracy"]) == ("linear_probe", 0.28)
    view = RunRegistry(previous_runs).view(GRADUAL)
    assert view.config.options.epochs_per_phase == 2 and view.class_names == CLASSES and view.val_accuracy == 0.4

    get_registry.clear()
    at = AppTest.from_file(str(REPO / "pages" / "4_compare.py"), default_timeout=TIMEOUT).run()
    assert not at.exception
    shown = at.dataframe[0].value.set_index("run id")
    assert shown.loc[GRADUAL, "strategy"] == "gradual" and shown.loc[PROBE, "strategy"] == "linear_probe"
    get_registry.clear()


# ---------------------------------------------------------------------------------------------------------------
# One rule for "this run has a usable model"


def _variant(source: Path, runs_dir: Path, run_id: str, status: str | None, keep_model: bool = True) -> Path:
    """A copy of a finished run as another outcome: `status` in its summary (None: no summary, as while training or
    after the app died), with or without its saved model."""
    run_dir = Path(shutil.copytree(source, runs_dir / run_id))
    summary = run_dir / runs.SUMMARY_FILE
    if status is None:
        summary.unlink()
    else:
        runs.write_json(summary, {**json.loads(summary.read_text()), "status": status})
    if not keep_model:
        for path in runs.load_run(run_dir).model_files:
            path.unlink()
    return run_dir


def _imported(run_dir: Path, runs_dir: Path, tmp_path: Path) -> Path:
    """The run's model brought in from a zip, as `export_zip` writes it (the model and its description suffice)."""
    zip_path = tmp_path / "model.zip"
    with zipfile.ZipFile(zip_path, "w") as zf:
        zf.writestr(INFO_MEMBER, json.dumps(exported_info(Predictor.from_run(run_dir).info, runs.load_run(run_dir))))
        zf.writestr(WEIGHTS_MEMBER, (run_dir / runs.MODEL_FILE).read_bytes())
    return import_zip(zip_path, runs_dir)


@pytest.fixture
def outcomes(previous_runs, tmp_path) -> dict[str, Path]:
    """One run folder per outcome, all from the same trained run: name -> folder."""
    source = previous_runs / GRADUAL
    made = {
        "finished": source,
        "live": _variant(source, previous_runs, "20300101-000001-gradual-test_efficientnet-live", None),
        "interrupted": _variant(source, previous_runs, "20300101-000002-gradual-test_efficientnet-intr", None),
        "stopped": _variant(source, previous_runs, "20300101-000003-gradual-test_efficientnet-stop", "stopped"),
        "failed with a checkpoint": _variant(source, previous_runs, "20300101-000004-gradual-test_efficientnet-fail",
                                             "failed"),
        "failed before a checkpoint": _variant(source, previous_runs, "20300101-000005-gradual-test_efficientnet-none",
                                               "failed", keep_model=False),
    }
    runs.mark_live(made["live"])  # this process trains it, as far as the record can tell
    made["imported"] = _imported(source, previous_runs, tmp_path)
    return made


USABLE = {"finished", "interrupted", "stopped", "failed with a checkpoint", "imported"}


def test_a_run_has_a_usable_model_once_it_ended_with_its_model_on_disk(outcomes):
    records = {name: runs.load_run(path) for name, path in outcomes.items()}
    assert {name: record.status for name, record in records.items()} == {
        "finished": "finished", "live": "running", "interrupted": "interrupted", "stopped": "stopped",
        "failed with a checkpoint": "failed", "failed before a checkpoint": "failed", "imported": "finished"}
    # a live run's files are still being written: its model file is a checkpoint that may change under a reader
    assert {name for name, record in records.items() if record.has_model} == USABLE
    imported = records["imported"]
    assert imported.config is None and imported.strategy == "imported" and imported.data is None
    assert imported.split is None and imported.class_names == CLASSES and imported.backbone == "test_efficientnet"
    # weights without their model.json are not a usable model
    (outcomes["finished"] / runs.MODEL_INFO_FILE).unlink()
    assert not runs.load_run(outcomes["finished"]).has_model


def _offered(page: str, key: str) -> set[str]:
    """The runs a page offers in its run picker, by their short labels (`charts.run_labels`, before the accuracy a
    page may add)."""
    get_registry.clear()
    at = AppTest.from_file(str(REPO / "pages" / page), default_timeout=TIMEOUT).run()
    get_registry.clear()
    assert not at.exception
    return {" · ".join(option.split(" · ")[:3]) for option in at.selectbox(key=key).options}


def test_every_page_that_uses_a_model_offers_the_runs_the_rule_allows(outcomes):
    labels = charts.run_labels(runs.list_runs(outcomes["finished"].parent))
    usable = {labels[outcomes[name].name] for name in USABLE} | {labels[PROBE]}
    assert _offered("5_predict.py", "predict_run") == usable
    assert _offered("6_insight.py", "insight_run") == usable  # Grad-CAM works on an uploaded picture
    # compression measures accuracy on the run's validation images: an imported model has none
    assert _offered("7_compress.py", "compress_run") == usable - {labels[outcomes["imported"].name]}
