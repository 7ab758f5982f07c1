"""Export a run's model as a zip that works without the workbench, and import such a zip back as a run."""

# The trained run and its export are fixtures of test_predict.py, imported and then named as test arguments.
# ruff: noqa: F401, F811

from __future__ import annotations

import json
import os
import subprocess
import sys
import zipfile
from pathlib import Path

import onnxruntime
import pytest
import torch

from workbench import runs
from workbench.data import DataError
from workbench.deploy.export import (
    EXPORT_FILE,
    ExportError,
    cached_export,
    existing_export,
    export_zip,
    import_upload,
    import_zip,
    read_report,
)
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.models.trained import Predictor

from .conftest import SHAPES
from .test_predict import TINY, exported, tiny_run

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning"),
              pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")]


@pytest.fixture(scope="module")
def vit_export(tmp_path_factory) -> Path:
    """A tiny ViT trained for one epoch at 64 px, exported."""
    runs_dir = tmp_path_factory.mktemp("vit-runs")
    run = Run(RunConfig(data=str(SHAPES), runs_dir=str(runs_dir), **{**TINY, "backbone": "test_vit"})).run()
    assert run.status == "finished", run.error
    return export_zip(run.dir, runs_dir / "vit.zip")


def _copy_zip(source: Path, dest: Path, extra: dict[str, bytes] | None = None, drop: tuple[str, ...] = ()) -> Path:
    with zipfile.ZipFile(source) as src, zipfile.ZipFile(dest, "w") as out:
        for name in src.namelist():
            if name not in drop:
                out.writestr(name, src.read(name))
        for name, data in (extra or {}).items():
            out.writestr(name, data)
    return dest


def test_zip_holds_the_model_its_description_and_torchscript_and_onnx_copies_that_agree(exported, tiny_run):
    names = set(zipfile.ZipFile(exported).namelist())
    assert names == {"model.safetensors", "model.json", "predict.py", "README.txt", "model.torchscript.pt",
                     "model.onnx", "export_report.json"}
    info = json.loads(zipfile.ZipFile(exported).read("model.json"))
    assert info["backbone"] == "test_resnet"
    assert info["class_names"] == ["circle", "cross", "square", "star", "triangle"]
    assert {"image_size", "crop_pct", "mean", "std", "interpolation"} <= set(info["preprocessing"])
    report = read_report(exported)
    for copy in (report.torchscript, report.onnx):
        assert copy.exported and copy.checked == 50 and copy.same_top1 == 50 and copy.agreement == 1.0
    assert report.onnx.how == "TorchScript-based exporter"  # the fast exporter handles a plain CNN
    readme = zipfile.ZipFile(exported).read("README.txt").decode()
    assert "TorchScript: same top-1 on 50/50" in readme and "ONNX: same top-1 on 50/50" in readme


def _onnx_top1(zip_path: Path, batch: torch.Tensor) -> torch.Tensor:
    """The ONNX copy run straight from the zip with onnxruntime, as a user without torch or timm would."""
    session = onnxruntime.InferenceSession(zipfile.ZipFile(zip_path).read("model.onnx"))
    return torch.from_numpy(session.run(None, {"images": batch.contiguous().numpy()})[0]).argmax(1)


def test_the_onnx_copy_gives_the_original_top1_for_any_batch_size(exported, tiny_run):
    predictor = Predictor.from_run(tiny_run)
    paths = sorted(SHAPES.glob("*/*_00[0-4].jpg"))  # 25 images; batches of 25 and 1 on a graph traced with 2
    batch = next(predictor.batches(paths))
    assert torch.equal(_onnx_top1(exported, batch), predictor.logits(paths).argmax(1))
    assert torch.equal(_onnx_top1(exported, batch[:1]), predictor.logits(paths[:1]).argmax(1))


def test_a_vit_at_a_non_native_size_is_exported_by_the_other_onnx_exporter_and_agrees(vit_export):
    # test_vit is made for 160 px: at 64 px its position embedding is resized with an operator the fast
    # exporter does not know, so the torch.export-based one takes over.
    report = read_report(vit_export)
    assert report.onnx.how == "torch.export-based exporter"
    assert report.onnx.checked == 50 and report.onnx.agreement == 1.0
    assert report.torchscript.agreement == 1.0
    assert "model.onnx" in zipfile.ZipFile(vit_export).namelist()


def test_a_model_that_no_onnx_exporter_takes_is_reported_with_the_reason(tiny_run, tmp_path, monkeypatch):
    def refuse(*args, **kwargs):
        raise RuntimeError("Exporting the operator 'aten::made_up' to ONNX is not supported.\nmore detail")

    monkeypatch.setattr(torch.onnx, "export", refuse)
    report = read_report(export_zip(tiny_run, tmp_path / "model.zip"))
    assert not report.onnx.exported and "model.onnx" not in zipfile.ZipFile(tmp_path / "model.zip").namelist()
    assert report.onnx.sentence() == (
        "ONNX: not exported (RuntimeError: Exporting the operator 'aten::made_up' to ONNX is not supported.; "
        "RuntimeError: Exporting the operator 'aten::made_up' to ONNX is not supported.). "
        "The safetensors model works as usual.")
    assert report.torchscript.agreement == 1.0  # the other copies are still made and checked


def test_the_standalone_script_gives_the_same_top1_as_the_workbench(exported, tiny_run, tmp_path):
    folder = tmp_path / "unzipped"
    zipfile.ZipFile(exported).extractall(folder)
    images = [SHAPES / name / f"{name}_002.jpg" for name in ("circle", "cross", "square", "star", "triangle")]
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # it must not need the workbench

    done = subprocess.run([sys.executable, "predict.py", *map(str, images)], cwd=folder, env=env,
                          capture_output=True, text=True, timeout=120)

    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    expected = Predictor.from_run(tiny_run).predict(images)
    for path, line, top in zip(images, lines, expected, strict=True):
        assert line.startswith(f"{path}: {top[0][0]} ")
        assert line.count("%") == 3


def test_import_round_trips_predictions_and_is_listed_as_an_imported_run(exported, tiny_run, tmp_path):
    runs_dir = tmp_path / "runs"
    run_dir = import_zip(exported, runs_dir)

    record = runs.list_runs(runs_dir)[0]
    assert record.dir == run_dir and record.has_model
    assert record.strategy == "imported" and record.config is None and record.summary.get("imported") is True
    assert record.summary.val_accuracy == runs.load_run(tiny_run).summary.val_accuracy
    paths = sorted(SHAPES.glob("*/*_01*.jpg"))
    assert torch.equal(Predictor.from_run(run_dir).logits(paths), Predictor.from_run(tiny_run).logits(paths))
    again = read_report(export_zip(run_dir, tmp_path / "again.zip"))
    assert again.onnx.exported and "not checked" in again.onnx.sentence()


def test_a_browser_upload_is_imported_under_its_own_name(exported, tmp_path):
    run_dir = import_upload("../../my model.zip", exported.read_bytes(), tmp_path / "runs")
    assert run_dir.parent == tmp_path / "runs"
    assert runs.load_run(run_dir).facts["imported_from"] == "my model.zip"


@pytest.mark.parametrize("bad_name", ["../x", "folder/../../x", "/tmp/x"])
def test_a_zip_with_a_member_outside_itself_is_refused(exported, tmp_path, bad_name):
    evil = _copy_zip(exported, tmp_path / "evil.zip", extra={bad_name: b"evil"})
    with pytest.raises(DataError, match="was refused"):
        import_zip(evil, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_a_zip_without_weights_with_weights_that_do_not_fit_or_a_backbone_from_elsewhere_is_refused(exported, tmp_path):
    no_weights = _copy_zip(exported, tmp_path / "no_weights.zip", drop=("model.safetensors",))
    with pytest.raises(ExportError, match="weights are missing"):
        import_zip(no_weights, tmp_path / "runs")
    info = json.loads(zipfile.ZipFile(exported).read("model.json"))
    info["class_names"] = ["a", "b", "c"]
    wrong = _copy_zip(exported, tmp_path / "wrong.zip", extra={"model.json": json.dumps(info).encode()},
                      drop=("model.json",))
    with pytest.raises(ExportError, match="do not fit a test_resnet with 3 classes"):
        import_zip(wrong, tmp_path / "runs")
    info["backbone"] = "hf-hub:someone/something"
    elsewhere = _copy_zip(exported, tmp_path / "hub.zip", extra={"model.json": json.dumps(info).encode()},
                          drop=("model.json",))
    with pytest.raises(ExportError, match="Unknown backbone 'hf-hub:someone/something'"):
        import_zip(elsewhere, tmp_path / "runs")
    assert not (tmp_path / "runs").exists()


def test_the_export_kept_in_the_run_directory_is_reused_until_the_model_changes(exported, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runs.MODEL_FILE).write_bytes(b"weights")
    (run_dir / EXPORT_FILE).write_bytes(exported.read_bytes())
    assert existing_export(run_dir) == cached_export(run_dir) == run_dir / EXPORT_FILE
    os.utime(run_dir / runs.MODEL_FILE, (1e10, 1e10))  # the model was saved again after the export
    assert existing_export(run_dir) is None


def test_an_export_made_before_the_onnx_copy_existed_is_made_again(exported, tmp_path):
    run_dir = tmp_path / "run"
    run_dir.mkdir()
    (run_dir / runs.MODEL_FILE).write_bytes(b"weights")
    old_report = {"run_id": "r", "torchscript": True, "same_top1": 50, "checked": 50}
    _copy_zip(exported, run_dir / EXPORT_FILE, extra={"export_report.json": json.dumps(old_report).encode()},
              drop=("export_report.json", "model.onnx"))
    assert existing_export(run_dir) is None
