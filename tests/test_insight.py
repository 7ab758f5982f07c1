"""Inside a finished run: confusion cells and top losses, Grad-CAM, the feature map, weight drift, the per-class
report, what the page picks and says, and their CLI commands. The tiny runs are trained once per session and shared
with test_page_insight.py."""

from __future__ import annotations

import contextlib
import dataclasses
import functools
import io
import json
import math
import os
import shutil
from pathlib import Path

import numpy as np
import pytest
import timm
import torch
from PIL import Image

from workbench import runs
from workbench.analysis import insight
from workbench.cli import main
from workbench.data import DataError, load_rgb
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.models.backbones import create_backbone, data_config
from workbench.models.trained import Predictor
from workbench.runs.records import validation_images

from .conftest import SHAPES

TINY = dict(data=str(SHAPES), image_size=64, epochs=2, lr=0.003, augment="none", seed=0)
RUNS = {
    "full": dict(backbone="test_resnet", strategy="full"),
    "partial": dict(backbone="test_resnet", strategy="partial", freeze_depth=2),
    "l2sp": dict(backbone="test_resnet", strategy="l2sp"),
    "vit": dict(backbone="test_vit", strategy="full"),
    # pretrained (bundled ImageNet weights), only the last block and the head train: a fine-tune that works in seconds
    "lite0": dict(backbone="tf_efficientnet_lite0", strategy="partial", freeze_depth=7),
}


@functools.cache
def _train(name: str, runs_dir: Path) -> Path:
    run = Run(RunConfig(**TINY, **RUNS[name], runs_dir=str(runs_dir))).run()
    assert run.status == "finished", run.error
    return run.dir


@pytest.fixture(scope="session")
def trained(tmp_path_factory):
    """`trained(name)`: the run directory of one of RUNS, trained the first time it is asked for."""
    runs_dir = tmp_path_factory.getbasetemp() / "insight-runs"
    return lambda name: _train(name, runs_dir)


def _predictions_from_scratch(run_dir: Path) -> dict[str, tuple[str, str]]:
    """file name -> (true class, predicted class), straight from the Predictor, without the insight module."""
    predictor = Predictor.from_run(run_dir)
    with validation_images(run_dir) as samples:
        top = predictor.predict([s.path for s in samples], top_k=1)
        return {f"{s.path.parent.name}/{s.path.name}": (predictor.class_names[s.label], answer[0][0])
                for s, answer in zip(samples, top, strict=True)}


# ---------------------------------------------------------------------------------------------------------------
# Confusion cells and top losses


def test_confusion_cells_hold_exactly_their_images_and_add_up_to_the_recorded_matrix(trained):
    run_dir = trained("full")
    summary = runs.load_run(run_dir).summary
    names = summary.class_names
    truth = _predictions_from_scratch(run_dir)
    mistakes = 0
    for t, true_class in enumerate(names):
        for p, predicted_class in enumerate(names):
            cell = insight.cell_images(run_dir, true_class, predicted_class)
            assert len(cell) == summary.confusion_matrix[t][p]
            expected = {name for name, pair in truth.items() if pair == (true_class, predicted_class)}
            assert {image.name for image in cell} == expected
            assert [image.confidence for image in cell] == sorted((i.confidence for i in cell), reverse=True)
            mistakes += len(cell) if t != p else 0
    assert mistakes > 0  # a 2-epoch tiny model: the off-diagonal cells were really checked
    assert all(Image.open(image.thumbnail).size == (64, 64) for image in insight.validation_predictions(run_dir))


def test_top_losses_are_the_most_confidently_wrong_images(trained):
    run_dir = trained("full")
    predictions = insight.validation_predictions(run_dir)
    top = insight.top_losses(run_dir, 5)
    wrong = [p for p in predictions if not p.correct]
    assert len(top) == 5 and all(not p.correct for p in top)
    assert [p.loss for p in top] == sorted((p.loss for p in top), reverse=True)
    assert top[0].loss == max(p.loss for p in wrong)
    assert min(p.loss for p in top) >= sorted((p.loss for p in wrong), reverse=True)[4]
    for p in top:
        assert p.loss == pytest.approx(-math.log(p.true_probability), abs=1e-4)
        assert p.confidence > p.true_probability


def test_validation_predictions_are_cached_until_the_model_changes(trained, monkeypatch):
    run_dir = trained("full")
    first = insight.validation_predictions(run_dir)
    assert (run_dir / insight.PREDICTIONS_FILE).exists()

    def no_model(*_args, **_kwargs):
        raise AssertionError("the model ran again")

    monkeypatch.setattr(insight.Predictor, "from_run", no_model)
    assert insight.validation_predictions(run_dir) == first  # from the cache: the model did not run
    model = run_dir / runs.MODEL_FILE
    stat = model.stat()
    os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns + 1_000_000_000))  # as if the model were saved again
    try:
        with pytest.raises(AssertionError, match="ran again"):
            insight.validation_predictions(run_dir)
    finally:
        os.utime(model, ns=(stat.st_atime_ns, stat.st_mtime_ns))


# ---------------------------------------------------------------------------------------------------------------
# Per-class report


def test_class_report_matches_hand_computed_precision_recall_f1():
    matrix = [[5, 1, 0, 0],
              [2, 3, 1, 0],
              [0, 0, 4, 0],
              [0, 0, 0, 0]]
    report = insight.class_report(matrix, ["a", "b", "c", "d"])
    assert list(report.columns) == ["precision", "recall", "f1", "support"]
    expected = {"a": (5 / 7, 5 / 6, 10 / 13, 6), "b": (3 / 4, 1 / 2, 6 / 10, 6), "c": (4 / 5, 1.0, 8 / 9, 4),
                "d": (0.0, 0.0, 0.0, 0)}  # a class never seen nor predicted: zeros, not a division by zero
    for name, (precision, recall, f1, support) in expected.items():
        row = report.loc[name]
        assert row["precision"] == pytest.approx(precision)
        assert row["recall"] == pytest.approx(recall)
        assert row["f1"] == pytest.approx(f1)
        assert row["support"] == support
    assert insight.most_confused(matrix, ["a", "b", "c", "d"]) == [("b", "a", 2), ("a", "b", 1), ("b", "c", 1)]


# ---------------------------------------------------------------------------------------------------------------
# Grad-CAM


def _check_heatmap(found: insight.Explanation, size: int) -> None:
    assert found.heatmap.shape == (size, size) and found.image.shape == (size, size, 3)
    assert found.heatmap.min() >= 0.0 and found.heatmap.max() == pytest.approx(1.0)
    assert found.heatmap.std() > 0.01  # not constant
    assert found.overlay().size == (size, size)


@pytest.mark.parametrize("run_name, method", [("full", insight.CNN_METHOD), ("vit", insight.TOKEN_METHOD)])
def test_grad_cam_of_a_run_for_the_predicted_and_a_chosen_class(trained, run_name, method):
    predictor = Predictor.from_run(trained(run_name))
    image = SHAPES / "star" / "star_004.jpg"
    found = insight.explain(predictor, image)
    _check_heatmap(found, 64)
    assert found.method == method
    probabilities = predictor.logits([image]).softmax(1)[0]
    assert found.class_name == found.predicted_class == predictor.class_names[int(probabilities.argmax())]
    assert found.probability == pytest.approx(float(probabilities.max()), abs=1e-5)
    other = next(name for name in predictor.class_names if name != found.predicted_class)
    chosen = insight.explain(predictor, image, other)
    assert chosen.class_name == other and chosen.predicted_class == found.predicted_class
    assert chosen.probability == pytest.approx(float(probabilities[predictor.class_names.index(other)]), abs=1e-5)
    with pytest.raises(insight.InsightError, match="does not know the class 'giraffe'"):
        insight.explain(predictor, image, "giraffe")


def test_grad_cam_works_for_an_efficientnet_too():
    torch.manual_seed(0)
    model = timm.create_model("test_efficientnet", num_classes=3)
    info = {"image_size": 64, "mean": [0.5] * 3, "std": [0.25] * 3, "crop_pct": 1.0}
    _check_heatmap(insight.explain(Predictor(model, ["a", "b", "c"], info), SHAPES / "circle" / "circle_000.jpg"), 64)


@pytest.fixture(scope="module")
def imagenet_lite0() -> Predictor:
    """The bundled pretrained EfficientNet-Lite0 with its own 1000-class ImageNet head, on uncropped 224 px input."""
    model, source = create_backbone("tf_efficientnet_lite0", 1000)
    assert source.kind == "bundled"
    cfg = data_config(model)
    info = {"image_size": 224, "mean": list(cfg["mean"]), "std": list(cfg["std"]), "crop_pct": 1.0}
    return Predictor(model, [f"imagenet-{i}" for i in range(1000)], info)


@pytest.mark.parametrize("corner", [(0, 0), (112, 112)])
def test_grad_cam_heat_falls_on_the_cat_wherever_it_sits(imagenet_lite0, corner):
    """A real photo of a cat, shrunk into one quadrant of a plain grey picture: the only evidence for 'cat' is
    there, so that is where the heat must be."""
    skdata = pytest.importorskip("skimage.data")
    canvas = Image.new("RGB", (224, 224), (128, 128, 128))
    canvas.paste(Image.fromarray(skdata.chelsea()).resize((112, 112)), corner)
    found = insight.explain(imagenet_lite0, canvas)
    assert found.predicted_class in {f"imagenet-{i}" for i in range(281, 286)}  # a kind of cat
    x, y = corner
    inside = np.zeros((224, 224), dtype=bool)
    inside[y:y + 112, x:x + 112] = True
    assert found.heatmap[inside].mean() > 4 * found.heatmap[~inside].mean()
    peak = np.unravel_index(found.heatmap.argmax(), found.heatmap.shape)
    assert inside[peak]


# ---------------------------------------------------------------------------------------------------------------
# Weight drift


def test_weight_drift_is_exactly_zero_for_frozen_groups_and_positive_for_trained_ones(trained):
    drifts = insight.weight_drift(trained("partial"))  # test_resnet from random init: rebuilt from the seed
    assert [d.frozen for d in drifts] == [True, True, False, False, False, False]
    assert [d.drift for d in drifts[:2]] == [0.0, 0.0]
    assert all(d.drift > 1e-4 for d in drifts[2:])
    assert drifts[-1].name == "fc"

    pretrained = insight.weight_drift(trained("lite0"))  # bundled ImageNet weights, 7 of 9 groups frozen
    assert [d.drift for d in pretrained[:7]] == [0.0] * 7
    assert all(d.drift > 1e-4 for d in pretrained[7:])


def test_l2sp_keeps_the_backbone_closer_to_its_start_than_a_full_fine_tune(trained):
    full = insight.weight_drift(trained("full"))
    l2sp = insight.weight_drift(trained("l2sp"))
    backbone = slice(0, -1)  # the head is new in both: L2-SP does not pull it towards anything
    assert sum(d.drift for d in l2sp[backbone]) < sum(d.drift for d in full[backbone])


def test_views_that_cannot_be_computed_say_why(trained, tmp_path):
    copy = Path(shutil.copytree(trained("partial"), tmp_path / "copy"))
    config = json.loads((copy / runs.CONFIG_FILE).read_text())
    moved = {**config, "weights_source": {"kind": "bundled", "detail": "somewhere", "description": "elsewhere"}}
    runs.write_json(copy / runs.CONFIG_FILE, moved)
    with pytest.raises(insight.InsightError, match="would now come from none"):
        insight.weight_drift(copy)
    # an imported model: no dataset, no known start; Grad-CAM on a picture still works
    (copy / insight.PREDICTIONS_FILE).unlink(missing_ok=True)
    runs.write_json(copy / runs.CONFIG_FILE, {**config, "strategy": "imported", "data": None})
    with pytest.raises(insight.InsightError, match="imported model"):
        insight.weight_drift(copy)
    with pytest.raises(insight.InsightError, match="no recorded dataset"):
        insight.validation_predictions(copy)
    _check_heatmap(insight.explain(Predictor.from_run(copy), SHAPES / "star" / "star_004.jpg"), 64)


# ---------------------------------------------------------------------------------------------------------------
# Feature map


def test_fine_tuning_pulls_the_classes_apart_in_feature_space(trained):
    found = insight.feature_map(trained("lite0"))
    assert found.before.shape == found.after.shape == (50, 2)
    assert np.isfinite(found.before).all() and np.isfinite(found.after).all()
    assert [p.true_class for p in found.points].count("star") == 10
    assert "pretrained backbone" in found.before_label
    assert found.separation_after > found.separation_before + 0.03


def test_projections_and_separation_on_known_clusters():
    generator = torch.Generator().manual_seed(0)
    centres = torch.randn(3, 32, generator=generator) * 10
    features = torch.cat([centre + torch.randn(20, 32, generator=generator) for centre in centres])
    labels = [name for name in "abc" for _ in range(20)]
    assert insight.separation(features, labels) > 0.8
    shuffled = [labels[i] for i in torch.randperm(60, generator=generator)]
    assert abs(insight.separation(features, shuffled)) < 0.1
    for method in ("pca", "tsne"):
        xy = insight.project(features, method)
        assert xy.shape == (60, 2)
        assert insight.separation(torch.from_numpy(xy), labels) > 0.6  # the clusters stay apart in 2-D
    assert np.array_equal(insight.project(features, "pca"), insight.project(features, "pca"))  # reproducible
    with pytest.raises(insight.InsightError, match="Choose one of: pca, tsne"):
        insight.project(features, "umap")


# ---------------------------------------------------------------------------------------------------------------
# What the page picks and says: checked picks (a browser sent them), grids, captions and messages


def _record(tmp_path: Path, run_id: str, status: str, classes: tuple[str, ...] = ("a", "b")) -> runs.RunRecord:
    return runs.RunRecord(id=run_id, dir=tmp_path / run_id, facts={"class_names": list(classes)},
                          summary=runs.RunSummary(status=status, class_names=list(classes)))


def _prediction(index: int, true: str, predicted: str, confidence: float, loss: float = 1.0) -> insight.ValPrediction:
    return insight.ValPrediction(index, f"{true}/{true}_{index:03d}.jpg", "", "", true, predicted, confidence,
                                 1 - confidence, loss)


def test_the_run_opened_is_the_one_asked_for_else_the_newest_finished(tmp_path):
    records = [_record(tmp_path, "3-failed", "failed"), _record(tmp_path, "2-finished", "finished"),
               _record(tmp_path, "1-other", "finished", classes=("x", "y"))]
    assert insight.default_run(records, "1-other", "2-finished") == "1-other"  # the URL's run wins
    assert insight.default_run(records, "../../etc", "3-failed") == "3-failed"  # an unknown id is passed over
    assert insight.default_run(records, None, None) == "2-finished"
    assert insight.default_run(records[:1]) == "3-failed"  # no finished run: the newest
    assert [r.id for r in insight.comparable_runs(records[0], records)] == ["2-finished"]


def test_a_clicked_cell_must_name_the_runs_classes_and_a_first_cell_is_the_worst_mistake():
    names = ["a", "b", "c"]
    assert insight.clicked_cell([{"x": "b", "y": "a"}, {"x": "c", "y": "c"}], names) == ("a", "b")  # y: the true class
    for points in ([], [{"x": "giraffe", "y": "a"}], [{"x": "b"}], ["a"]):
        assert insight.clicked_cell(points, names) is None
    matrix = [[5, 1, 0], [3, 4, 0], [0, 0, 2]]
    assert insight.cell_or_first(("c", "a"), matrix, names) == ("c", "a")
    assert insight.cell_or_first(("a", None), matrix, names) == ("b", "a")  # the most frequent mistake
    assert insight.cell_or_first(("x", "y"), [[2, 0], [0, 3]], ["a", "b"]) == ("a", "a")  # no mistake at all


def test_grids_show_the_first_images_with_captions_that_say_what_they_are():
    star = _prediction(4, "star", "circle", 0.934)
    assert insight.cell_caption(star) == "star_004.jpg · 93% sure"
    assert insight.mistake_caption(star) == "star → circle · 93% sure"
    assert insight.point_caption(star) == "star → circle"
    assert insight.image_label(star) == "star/star_004.jpg (predicted circle, 93%)"
    assert insight.cell_heading("star", "circle", 3) == ("**3 image(s)** of **star** predicted as **circle** (wrong), "
                                                         "most confident first.")
    assert "(right)" in insight.cell_heading("star", "star", 1)
    assert insight.first_shown(list(range(40))) == (list(range(insight.MAX_SHOWN)), "… and 4 more.")
    assert insight.first_shown([1, 2], limit=2) == ([1, 2], None)
    predictions = [_prediction(0, "a", "a", 0.9, 0.1), _prediction(1, "a", "b", 0.6, 0.9),
                   _prediction(2, "b", "a", 0.8, 1.6)]
    assert [p.index for p in insight.mistakes_first(predictions)] == [2, 1, 0]  # the worst mistake first


def test_only_points_of_the_feature_map_are_picked_however_the_selection_reads():
    points = [_prediction(i, "a", "a", 0.9) for i in range(3)]
    found = insight.FeatureMap("pca", np.zeros((3, 2)), np.zeros((3, 2)), 0.1, 0.5, points, "the start")
    selection = [{"customdata": [2, "a/a_002.jpg", "a"]}, {"customdata": [0]}, {"customdata": [2]},
                 {"customdata": [7]}, {"customdata": [-1]}, {"customdata": ["x"]}, {"customdata": None}, {}, "junk"]
    assert [p.index for p in insight.picked_points(selection, found)] == [0, 2]
    assert insight.picked_points([], found) == []


def test_what_cannot_be_shown_is_worded_for_the_page():
    unreadable = DataError("Cannot read 'a/1.jpg'.")
    assert insight.problem_note("predictions", unreadable) == (
        "error", "Cannot read 'a/1.jpg'. The validation images of this run cannot be read any more.")
    assert insight.problem_note("predictions", insight.InsightError("No dataset.")) == ("info", "No dataset.")
    assert insight.problem_note("grad_cam", insight.InsightError("Unknown class.")) == ("error", "Unknown class.")
    assert insight.problem_note("drift", unreadable) == ("info", "Cannot read 'a/1.jpg'.")
    assert insight.recount_note([[1, 0], [0, 1]], [[1, 0], [0, 1]]) is None
    assert insight.recount_note(None, [[1]]) is None  # nothing recorded: nothing to compare
    assert "differ from the matrix the run recorded" in insight.recount_note([[1, 0], [0, 1]], [[0, 1], [0, 1]])


def test_grad_cam_of_uploaded_bytes_and_of_a_validation_image_no_longer_on_disk(trained):
    run_dir = trained("full")
    predictor = Predictor.from_run(run_dir)
    image = SHAPES / "star" / "star_004.jpg"
    uploaded = insight.explain(predictor, image.read_bytes())
    assert np.array_equal(uploaded.heatmap, insight.explain(predictor, image).heatmap)
    assert uploaded.sentence() == (f"Heat for **{uploaded.class_name}** ({uploaded.probability:.0%}); the model "
                                   f"predicts **{uploaded.predicted_class}** ({uploaded.predicted_probability:.0%}).")
    with pytest.raises(DataError, match="Cannot read image"):
        insight.explain(predictor, b"not an image")
    first = insight.validation_predictions(run_dir)[0]
    assert insight.validation_image(run_dir, first) == first.path
    gone = dataclasses.replace(first, path=str(run_dir / "extracted-and-deleted.jpg"))  # as for a zipped dataset
    png = insight.validation_image(run_dir, gone)
    assert np.array_equal(np.asarray(Image.open(io.BytesIO(png))), np.asarray(load_rgb(Path(first.path))))


# ---------------------------------------------------------------------------------------------------------------
# CLI


def _cli(*argv: str) -> tuple[int, str]:
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        code = main(list(argv))
    return code, printed.getvalue()


def test_cli_explain_writes_the_overlay_and_report_prints_the_numbers(trained, tmp_path):
    run_dir = trained("partial")
    out = tmp_path / "cam.png"
    code, printed = _cli("explain", "--run", str(run_dir), "--class", "star", "--out", str(out),
                         str(SHAPES / "star" / "star_004.jpg"))
    assert code == 0 and Image.open(out).size == (64, 64)
    assert "heatmap for star" in printed and "Grad-CAM" in printed

    code, printed = _cli("report", "--run", str(run_dir))
    assert code == 0
    assert "| class" in printed and "f1" in printed and "support" in printed
    assert "fc" in printed and "(frozen)" in printed and "0.00%" in printed
    assert "before training" in printed and "after" in printed
