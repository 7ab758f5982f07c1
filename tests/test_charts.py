"""Figures and tables show the numbers the engine recorded, labelled the way a user reads them."""

from pathlib import Path

import pytest

from workbench.analysis import charts
from workbench.runs.records import RunRecord

NAMES = ["cat", "dog", "fox"]
MATRIX = [[8, 2, 0], [1, 9, 0], [0, 0, 0]]  # the fox row has no images


def _metrics(epoch: int, val_acc: float, val_loss: float) -> dict:
    return {"epoch": epoch, "train_loss": 1.0 / epoch, "train_acc": 0.5 + epoch / 10, "val_loss": val_loss,
            "val_acc": val_acc, "confusion_matrix": MATRIX}


def _batches(epochs: int, per_epoch: int) -> list[dict]:
    return [{"epoch": e, "batch": b, "batches": per_epoch, "loss": 2.0 - 0.1 * b, "lr": 1e-3 * b}
            for e in range(1, epochs + 1) for b in range(1, per_epoch + 1)]


def test_confusion_figure_has_class_names_on_both_axes_and_row_percentages():
    fig = charts.confusion_figure(MATRIX, NAMES)
    heatmap = fig.data[0]
    assert list(heatmap.x) == NAMES and list(heatmap.y) == NAMES
    assert heatmap.text[0][0] == "8<br>80%" and heatmap.text[0][1] == "2<br>20%"
    assert heatmap.text[1][1] == "9<br>90%"
    assert heatmap.text[2][2] == "0<br>0%"  # an empty row is 0%, not a division error
    assert heatmap.z[0][0] == pytest.approx(80) and heatmap.zmax == 100
    assert fig.layout.xaxis.title.text == "predicted class" and fig.layout.yaxis.title.text == "true class"
    assert fig.layout.yaxis.autorange == "reversed"  # first class at the top, like the matrix is written


def test_training_curves_place_batches_at_fractions_of_an_epoch():
    metrics = [_metrics(1, 0.6, 0.9), _metrics(2, 0.8, 0.5)]
    fig = charts.training_curves(metrics, _batches(2, 2))
    traces = {trace.name: trace for trace in fig.data}
    assert list(traces["training loss, each batch"].x) == [0.5, 1.0, 1.5, 2.0]
    assert list(traces["validation accuracy"].x) == [1, 2]
    assert list(traces["validation accuracy"].y) == [0.6, 0.8]
    assert list(traces["validation loss"].y) == [0.9, 0.5]
    assert traces["validation accuracy"].xaxis == "x2"  # accuracy in the right-hand panel


def test_training_curves_of_a_live_run_span_the_planned_epochs():
    fig = charts.training_curves([], _batches(1, 1), epochs=5)
    assert len(fig.data[0].x) == 1  # drawn before the first epoch ends
    assert fig.layout.xaxis.range[1] >= 5 and fig.layout.xaxis2.range[1] >= 5
    assert fig.layout.xaxis.dtick == 1  # whole epochs, not '0.2 epoch' ticks


def test_lr_curve_follows_the_batches():
    fig = charts.lr_curve(_batches(1, 4))
    assert list(fig.data[0].y) == pytest.approx([1e-3, 2e-3, 3e-3, 4e-3])


def test_overlay_draws_one_line_per_run():
    fig = charts.overlay_curves({"full": [_metrics(1, 0.5, 1.0), _metrics(2, 0.7, 0.8)],
                                 "scratch": [_metrics(1, 0.2, 1.6)]}, "val_acc")
    assert [trace.name for trace in fig.data] == ["full", "scratch"]
    assert list(fig.data[0].y) == [0.5, 0.7]
    assert fig.layout.title.text == "Validation accuracy" and fig.layout.yaxis.tickformat == ".0%"


def _record(run_id: str, strategy: str, summary: dict | None, metrics: list[dict] | None = None,
            **facts) -> RunRecord:
    config = {"backbone": "test_resnet", "strategy": strategy, "frozen_groups": 2, "image_size": 64,
              "trainable_params": 1234, "data": "/data/shapes", "class_names": NAMES,
              "weights_source": {"description": "none (random init)", "pretrained": False}, **facts}
    return RunRecord.from_dicts(Path("/runs") / run_id, config, summary, metrics)


FINISHED = {"status": "finished", "val_accuracy": 0.9, "epochs_completed": 2, "trainable_params": 1234,
            "train_seconds": 12.5, "images_per_s": 40.0,
            "pretrained": {"description": "bundled with the workbench: pkg", "pretrained": True}}


def test_runs_table_has_a_row_per_run_with_the_recorded_values():
    records = [
        _record("20250101-120000-full-test_resnet-aaaa", "full", FINISHED),
        _record("20250101-120100-scratch-test_resnet-bbbb", "scratch", None, [_metrics(1, 0.3, 1.5)]),
        _record("20241231-090000-partial-test_resnet-cccc", "partial", None),
    ]
    table = charts.runs_table(records, live={"20250101-120100-scratch-test_resnet-bbbb": "running"})
    assert list(table.columns) == charts.RUN_COLUMNS
    finished = table.iloc[0]
    assert finished["val accuracy"] == 0.9 and finished["epochs"] == 2 and finished["time s"] == 12.5
    assert finished["weight source"] == "bundled with the workbench: pkg" and finished["dataset"] == "shapes"
    assert finished["freeze depth"] == 2 and finished["trainable params"] == 1234
    assert list(table["status"]) == ["finished", "running", "interrupted"]
    assert table.iloc[1]["val accuracy"] == 0.3  # a live run shows its latest epoch
    assert table.iloc[1]["weight source"] == "none (random init)"


def test_an_imported_model_has_a_row_and_a_label_without_a_config():
    run_id = "20250101-120000-imported-test_resnet-eeee"
    record = RunRecord.from_dicts(
        Path("/runs") / run_id,
        {"data": None, "backbone": "test_resnet", "strategy": "imported", "image_size": 64, "class_names": NAMES},
        {"status": "finished", "imported": True, "val_accuracy": 0.8, "class_names": NAMES,
         "pretrained": {"description": "imported from model.zip"}})
    assert record.config is None
    row = charts.runs_table([record]).iloc[0]
    assert (row["strategy"], row["backbone"], row["status"], row["val accuracy"]) == \
        ("imported", "test_resnet", "finished", 0.8)
    assert row["image size"] == 64 and row["dataset"] is None and row["weight source"] == "imported from model.zip"
    assert charts.run_labels([record])[run_id] == "imported · test_resnet · 12:00:00"


def test_best_values_are_highlighted():
    records = [_record("20250101-120000-full-test_resnet-aaaa", "full", FINISHED),
               _record("20250101-120500-full-test_resnet-dddd", "full",
                       {**FINISHED, "val_accuracy": 0.5, "train_seconds": 8.0, "images_per_s": 60.0})]
    table = charts.runs_table(records)
    html = charts.highlight_best(table).to_html()
    css = html.split("</style>")[0]
    column = {name: i for i, name in enumerate(table.columns)}
    assert f"_row0_col{column['val accuracy']}" in css and f"_row1_col{column['val accuracy']}" not in css
    assert f"_row1_col{column['time s']}" in css and f"_row0_col{column['time s']}" not in css  # fastest
    assert f"_row1_col{column['images/s']}" in css
    assert "90.0%" in html and "50.0%" in html


def test_run_labels_are_short_and_unique():
    records = [_record("20250101-120000-full-test_resnet-aaaa", "full", FINISHED),
               _record("20250101-120000-full-test_resnet-bbbb", "full", FINISHED)]
    labels = charts.run_labels(records)
    assert labels[records[0].id] == "full · test_resnet · 12:00:00"
    assert labels[records[1].id] == "full · test_resnet · 12:00:00 · bbbb"


def test_per_class_table():
    table = charts.per_class_table({"cat": {"precision": 0.5, "recall": 1.0, "support": 3}})
    assert table.loc["cat", "recall"] == 1.0 and table.loc["cat", "validation images"] == 3


def test_gradual_unfreezing_phases_are_marked_on_the_curves():
    metrics = [{**_metrics(e, 0.5, 1.0), "frozen_groups": f} for e, f in ((1, 8), (2, 8), (3, 7), (4, 6))]
    assert charts.phase_boundaries(metrics) == [(3, 7), (4, 6)]
    fig = charts.training_curves(metrics, [])
    lines = [s for s in fig.layout.shapes if s.type == "line"]
    assert sorted({s.x0 for s in lines}) == [2, 3]
    assert any("7 frozen" in a.text for a in fig.layout.annotations)


def test_freeze_sweep_plots_the_newest_finished_partial_run_per_depth():
    def record(run_id, depth, acc, status="finished", strategy="partial"):
        return _record(run_id, strategy, {"status": status, "val_accuracy": acc, "train_seconds": 10.0 - depth},
                       data="d", backbone="b", frozen_groups=depth)

    records = [record("3", 2, 0.9), record("2", 2, 0.5), record("1", 0, 0.8), record("0", 1, 0.7, "failed"),
               record("x", 1, 0.99, strategy="full")]
    points = charts.freeze_sweep_points(records, "d", "b")
    assert sorted((p["freeze_depth"], p["val_acc"]) for p in points) == [(0, 0.8), (2, 0.9)]
    fig = charts.freeze_sweep_figure(points)
    assert list(fig.data[0].x) == [0, 2] and list(fig.data[1].y) == [10.0, 8.0]
