"""Predictions from a trained run: the same answers training's own evaluation gave, clear errors, and the CLI."""

from __future__ import annotations

import contextlib
import functools
import io
import zipfile
from pathlib import Path

import pytest
import torch
from PIL import Image

from workbench import runs
from workbench.cli import main
from workbench.core.metrics import confusion_matrix
from workbench.data import DataError
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.models.trained import Predictor, describe
from workbench.runs.records import validation_images

from .conftest import SHAPES

# A model that answers differently for different pictures (so agreement checks mean something), in seconds on a CPU.
TINY = {"backbone": "test_resnet", "strategy": "full", "epochs": 1, "lr": 0.003, "augment": "none", "image_size": 64}
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")  # torch deprecates jit; we still ship it


@functools.cache
def _train_tiny_run(runs_dir: Path) -> Path:
    run = Run(RunConfig(data=str(SHAPES), runs_dir=str(runs_dir), **TINY)).run()
    assert run.status == "finished", run.error
    return run.dir


@functools.cache
def _export_with_cli(run_dir: Path, dest: Path) -> str:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        assert main(["export", "--run", str(run_dir), "--out", str(dest)]) == 0
    return printed.getvalue()


@pytest.fixture(scope="session")
def tiny_run(tmp_path_factory) -> Path:
    """One small model trained on the sample shapes, shared by the predict, export and page tests (trained once)."""
    return _train_tiny_run(tmp_path_factory.getbasetemp() / "predict-runs")


@pytest.fixture(scope="session")
def exported(tiny_run, tmp_path_factory) -> Path:
    """The tiny run exported once with `python -m workbench export`: the zip."""
    dest = tmp_path_factory.getbasetemp() / "export" / "model.zip"
    _export_with_cli(tiny_run, dest)
    return dest


def test_validation_predictions_reproduce_the_recorded_accuracy_and_confusion_matrix(tiny_run):
    summary = runs.load_run(tiny_run).summary
    predictor = Predictor.from_run(tiny_run)
    with validation_images(tiny_run) as samples:
        predicted = predictor.logits([s.path for s in samples]).argmax(1)
    targets = torch.tensor([s.label for s in samples])

    assert confusion_matrix(targets, predicted, len(predictor.class_names)) == summary.confusion_matrix
    assert round((predicted == targets).float().mean().item(), 5) == summary.val_accuracy
    assert len(set(predicted.tolist())) > 1, "a model that always says the same class would prove nothing"


def test_predict_gives_the_top_classes_with_probabilities_for_paths_files_and_pil_images(tiny_run, tmp_path):
    png = tmp_path / "star.png"
    Image.open(SHAPES / "star" / "star_000.jpg").save(png)
    upload = io.BytesIO(png.read_bytes())
    upload.name = "star.png"
    predictor = Predictor.from_run(tiny_run)

    by_path, by_upload, by_pil = predictor.predict([png, upload, Image.open(png)], top_k=3)

    assert by_path == by_upload == by_pil
    assert len(by_path) == 3 and {name for name, _ in by_path} <= set(predictor.class_names)
    probabilities = [p for _, p in by_path]
    assert probabilities == sorted(probabilities, reverse=True) and 0 < sum(probabilities) <= 1.0001
    assert len(predictor.predict([png], top_k=10)[0]) == len(predictor.class_names)


def test_an_unreadable_image_is_named_in_the_error(tiny_run, tmp_path):
    broken = tmp_path / "holiday.jpg"
    broken.write_bytes(b"not a picture")
    upload = io.BytesIO(b"nope")
    upload.name = "camera.jpg"
    predictor = Predictor.from_run(tiny_run)
    with pytest.raises(DataError, match="holiday.jpg"):
        predictor.predict([SHAPES / "circle" / "circle_000.jpg", broken])
    with pytest.raises(DataError, match="camera.jpg"):
        predictor.predict([upload])


def test_cli_predict_prints_the_top_classes_of_each_image_and_names_a_bad_one(tiny_run, tmp_path, capsys):
    images = [SHAPES / "circle" / "circle_001.jpg", SHAPES / "cross" / "cross_001.jpg"]
    broken = tmp_path / "broken.png"
    broken.write_bytes(b"\x89PNG broken")

    code = main(["predict", "--run", str(tiny_run), *map(str, images), str(broken)])

    out, err = capsys.readouterr()
    assert code == 1
    expected = Predictor.from_run(tiny_run).predict(images)
    assert out.splitlines() == [f"{path}: {describe(top)}" for path, top in zip(images, expected, strict=True)]
    assert "broken.png" in err


def test_cli_export_writes_the_zip_and_says_how_torchscript_compares(tiny_run, exported):
    out = _export_with_cli(tiny_run, exported)  # what the command printed when the fixture ran it
    assert f"model exported to {exported}" in out
    assert "TorchScript: same top-1 on 50/50 validation images" in out
    assert "predict.py" in zipfile.ZipFile(exported).namelist()


def test_cli_predict_with_a_folder_that_is_not_a_run(tmp_path, capsys):
    assert main(["predict", "--run", str(tmp_path), str(SHAPES / "circle" / "circle_000.jpg")]) == 2
    assert "no saved model" in capsys.readouterr().err
