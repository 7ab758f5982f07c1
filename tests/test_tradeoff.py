"""The trade-off picture (workbench.deploy.tradeoff): the Pareto front on hand-made points, ties included; latency,
size and MACs measured from the saved files (and measured again only when a file changes); compressed variants on the
same picture; random-init backbones labelled as such; and the advice in its special cases."""

from __future__ import annotations

import json
import os
from dataclasses import replace
from pathlib import Path

import pytest
import timm
import torch

from workbench import runs
from workbench.deploy import compress, tradeoff
from workbench.deploy.tradeoff import TradeoffPoint

from .conftest import SHAPES

CLASSES = ["circle", "cross", "square", "star", "triangle"]
IMAGE_SIZE = 32


def point(label: str, latency_ms: float, val_accuracy: float, **changes) -> TradeoffPoint:
    values = dict(label=label, run_id=f"run-{label}", backbone=label, strategy="linear_probe", variant="trained",
                  pretrained=True, val_accuracy=val_accuracy, test_accuracy=None, latency_ms=latency_ms,
                  size_mb=(latency_ms or 100) / 2, params=1000, macs=None, train_seconds=1.0)
    return TradeoffPoint(**{**values, **changes})


def fake_run(runs_dir: Path, name: str, backbone: str, val_accuracy: float, pretrained: bool = True,
             test_accuracy: float | None = None) -> Path:
    """A finished run folder as the engine writes it, with an untrained `backbone` as its model (no training)."""
    run_dir = runs_dir / name
    run_dir.mkdir(parents=True)
    config = {"data": str(SHAPES), "backbone": backbone, "strategy": "linear_probe", "epochs": 1,
              "image_size": IMAGE_SIZE}
    runs.write_json(run_dir / runs.CONFIG_FILE, {**config, "class_names": CLASSES})
    source = {"kind": "bundled" if pretrained else "none", "pretrained": pretrained,
              "description": "bundled" if pretrained else "none (random init)"}
    runs.write_json(run_dir / runs.SUMMARY_FILE, {
        "status": "finished", "val_accuracy": val_accuracy, "test_accuracy": test_accuracy, "class_names": CLASSES,
        "pretrained": source, "train_seconds": 2.5})
    model = timm.create_model(backbone, pretrained=False, num_classes=len(CLASSES)).eval()
    runs.save_run_model(run_dir, model, model_info(backbone))
    return run_dir


def model_info(backbone: str) -> dict:
    return {"backbone": backbone, "class_names": CLASSES, "image_size": IMAGE_SIZE, "mean": [0.5] * 3,
            "std": [0.25] * 3, "crop_pct": 0.9, "interpolation": "bilinear"}


# -------------------------------------------------------------------------------------------------------------------
# Pareto front


def test_pareto_front_keeps_what_nothing_beats_cheapest_first_and_breaks_ties_by_label():
    points = [point("big", 10, 0.9), point("b-twin", 5, 0.8), point("a-twin", 5, 0.8), point("slower-same", 20, 0.9),
              point("tiny", 3, 0.5), point("worse", 8, 0.7), point("unmeasured", None, 0.99)]
    front = tradeoff.pareto_front(points)
    assert [p.label for p in front] == ["tiny", "a-twin", "big"]
    assert tradeoff.pareto_front(list(reversed(points))) == front  # the order given does not matter
    by_size = tradeoff.pareto_front(points, x="size_mb")
    assert [p.label for p in by_size] == ["tiny", "a-twin", "big", "unmeasured"]  # its size is known


def test_pareto_front_of_one_point_and_of_nothing():
    assert tradeoff.pareto_front([point("only", 4, 0.6)])[0].label == "only"
    assert tradeoff.pareto_front([]) == []
    with pytest.raises(ValueError, match="x must be one of"):
        tradeoff.pareto_front([point("only", 4, 0.6)], x="accuracy")


# -------------------------------------------------------------------------------------------------------------------
# Measured from the files


def test_latency_size_and_macs_come_from_the_saved_files(tmp_path, monkeypatch):
    small = fake_run(tmp_path, "20261201-100000-linear_probe-test_efficientnet-aaaa", "test_efficientnet", 0.8)
    large = fake_run(tmp_path, "20261201-100001-linear_probe-test_resnet-bbbb", "test_resnet", 0.7)
    timed = []
    measure = tradeoff.latency
    monkeypatch.setattr(tradeoff, "latency", lambda model, image, *a: timed.append(image.shape) or measure(model, image,
                                                                                                            *a))
    points = {p.backbone: p for p in tradeoff.points_for_runs([small, large])}
    for backbone, run_dir in (("test_efficientnet", small), ("test_resnet", large)):
        file = run_dir / runs.MODEL_FILE
        assert points[backbone].size_mb == round(file.stat().st_size / 2**20, 3)
        model = timm.create_model(backbone, num_classes=len(CLASSES))
        assert points[backbone].params == sum(p.numel() for p in model.parameters())
        assert points[backbone].latency_ms > 0 and points[backbone].macs > 0
        assert points[backbone].image_size == IMAGE_SIZE
    assert points["test_resnet"].size_mb > 3 * points["test_efficientnet"].size_mb  # 1.4 MB against 0.4 MB
    assert points["test_resnet"].macs > points["test_efficientnet"].macs
    assert timed == [torch.Size([1, 3, IMAGE_SIZE, IMAGE_SIZE])] * 2  # one image of the run's size per model

    tradeoff.points_for_runs([small, large])
    assert len(timed) == 2  # unchanged files: not measured again
    file = small / runs.MODEL_FILE
    os.utime(file, ns=(file.stat().st_atime_ns, file.stat().st_mtime_ns + 10**9))
    tradeoff.points_for_runs([small, large])
    assert len(timed) == 3  # the changed file only


def test_unfinished_runs_are_left_out(tmp_path):
    done = fake_run(tmp_path, "20261201-100000-linear_probe-test_efficientnet-aaaa", "test_efficientnet", 0.8)
    failed = fake_run(tmp_path, "20261201-100001-linear_probe-test_efficientnet-bbbb", "test_efficientnet", 0.8)
    summary = json.loads((failed / runs.SUMMARY_FILE).read_text())
    runs.write_json(failed / runs.SUMMARY_FILE, {**summary, "status": "failed"})
    assert [p.run_id for p in tradeoff.points_for_runs([done, failed])] == [done.name]


def test_compressed_variants_join_the_picture_measured_from_their_own_files(tmp_path):
    run_dir = fake_run(tmp_path, "20261201-100000-linear_probe-test_efficientnet-aaaa", "test_efficientnet", 0.8)
    model = runs.load_model(run_dir).model
    compress.prune_unstructured(model, 0.5)
    compress.make_permanent(model)
    variants_dir = run_dir / compress.COMPRESSED_DIR
    (variants_dir / "pruned-50").mkdir(parents=True)
    runs.save_run_model(variants_dir / "pruned-50", model,
                        {**model_info("test_efficientnet"), "compression": {"variant": "pruned-50"}})
    int8 = compress.quantize_dynamic(runs.load_model(run_dir).model)
    (variants_dir / "int8-dynamic").mkdir()
    compress.save_quantized(variants_dir / "int8-dynamic", int8, {
        **model_info("test_efficientnet"), "compression": {"variant": "int8-dynamic", "quantization": "dynamic"}})
    runs.write_json(variants_dir / compress.REPORT_FILE, {"variants": [
        {"name": "original", "kind": "original", "status": "ok", "val_accuracy": 0.8},
        {"name": "pruned-50", "kind": "unstructured", "status": "ok", "val_accuracy": 0.75, "target_sparsity": 0.5},
        {"name": "int8-dynamic", "kind": "dynamic", "status": "ok", "val_accuracy": 0.8},
        {"name": "int8-static", "kind": "static", "status": "failed", "note": "could not trace"}]})

    points = tradeoff.points_for_runs([run_dir])
    assert [(p.variant, p.val_accuracy) for p in points] == [("trained", 0.8), ("pruned 50%", 0.75),
                                                              ("int8 dynamic", 0.8)]
    int8_file = variants_dir / "int8-dynamic" / compress.QUANTIZED_FILE
    assert points[2].size_mb == round(int8_file.stat().st_size / 2**20, 3) and points[2].latency_ms > 0
    assert {p.params for p in points} == {points[0].params} and {p.macs for p in points} == {points[0].macs}
    assert [p.label for p in points] == ["test_efficientnet", "test_efficientnet · pruned 50%",
                                         "test_efficientnet · int8 dynamic"]
    assert [p.variant for p in tradeoff.points_for_runs([run_dir], include_compressed=False)] == ["trained"]
    figure = tradeoff.tradeoff_figure(points)
    assert [trace.text for trace in figure.data if trace.name == "test_efficientnet"][0] == ("", "pruned 50%",
                                                                                             "int8 dynamic")


# -------------------------------------------------------------------------------------------------------------------
# Table and figure


def test_random_init_backbones_are_labelled_in_the_table_and_the_plot(tmp_path):
    pretrained = fake_run(tmp_path, "20261201-100000-linear_probe-test_efficientnet-aaaa", "test_efficientnet", 0.9,
                          test_accuracy=0.85)
    random = fake_run(tmp_path, "20261201-100001-linear_probe-test_resnet-bbbb", "test_resnet", 0.4, pretrained=False)
    points = tradeoff.points_for_runs([pretrained, random])
    table = tradeoff.tradeoff_table(points).set_index("backbone")
    assert table.loc["test_resnet", "weights"] == "random weights"
    assert table.loc["test_resnet", "model"] == "test_resnet (random weights)"
    assert table.loc["test_efficientnet", "weights"] == "pretrained"
    assert table.loc["test_efficientnet", "test accuracy"] == 0.85
    figure = tradeoff.tradeoff_figure(points)
    traces = {trace.name: trace for trace in figure.data}
    assert set(traces) == {"test_efficientnet", "test_resnet (random weights)", tradeoff.TEST_NAME,
                           tradeoff.FRONT_NAME}
    random_trace = traces["test_resnet (random weights)"]
    assert "RANDOM WEIGHTS" in random_trace.hovertext[0] and random_trace.marker.symbol[0].endswith("-open")
    assert list(traces[tradeoff.TEST_NAME].y) == [0.85]  # only the run with a test split
    assert figure.layout.xaxis.title.text == tradeoff.COSTS["latency_ms"]
    by_size = tradeoff.tradeoff_figure(points, x="size_mb")
    assert by_size.layout.xaxis.title.text == tradeoff.COSTS["size_mb"]
    assert list(traces[tradeoff.FRONT_NAME].y) in ([0.9], [0.4, 0.9])  # the front is drawn, cheapest first


def test_table_marks_the_front_and_puts_the_most_accurate_first():
    points = [point("fast", 2, 0.6), point("slow", 9, 0.95), point("beaten", 10, 0.5)]
    table = tradeoff.tradeoff_table(points)
    assert list(table["model"]) == ["slow", "fast", "beaten"]
    assert list(table["Pareto front"]) == ["yes", "yes", ""]


# -------------------------------------------------------------------------------------------------------------------
# Advice


def test_advice_names_a_faster_model_close_to_the_best_and_what_it_costs():
    points = [point("tf_efficientnet_lite0", 10, 0.90), point("tf_efficientnet_lite1", 18, 0.905),
              point("tf_efficientnet_lite2", 30, 0.921)]
    assert tradeoff.advice(points) == ("For this computer, tf_efficientnet_lite0: 2.1 points below the best "
                                       "(tf_efficientnet_lite2) at 3.0× its speed.")
    assert tradeoff.advice(points, "a Raspberry Pi").startswith("For a Raspberry Pi, tf_efficientnet_lite0")


def test_advice_when_the_faster_models_lose_too_much():
    points = [point("good", 30, 0.95), point("poor", 10, 0.60)]
    assert tradeoff.advice(points) == ("For this computer, good: the most accurate (95.0%, 30.0 ms per image); the "
                                       "fastest, poor, is 35.0 points below at 3.0× its speed.")


def test_advice_with_one_point_everything_equal_and_the_best_being_fastest():
    assert "only model measured so far" in tradeoff.advice([point("alone", 5, 0.7)])
    same = [point("a", 5.0, 0.8, size_mb=9.0), point("b", 5.1, 0.8, size_mb=3.0)]
    assert tradeoff.advice(same) == ("For this computer, all 2 models are as good as each other (80.0% at about 5.0 "
                                     "ms per image): pick any, e.g. the smallest file, b.")
    best_fastest = [point("winner", 4, 0.9), point("loser", 12, 0.8)]
    assert tradeoff.advice(best_fastest).startswith("For this computer, winner: the most accurate (90.0%) and also "
                                                    "the fastest")
    assert tradeoff.advice([]).startswith("Nothing to compare yet")
    unmeasured = [replace(point("a", 5, 0.8), latency_ms=None)]
    assert tradeoff.advice(unmeasured).startswith("Nothing to compare yet")


def test_advice_can_judge_speed_by_cpu_time_when_the_wall_clock_is_unreliable():
    busy = [point("lite0", 480, 1.0, cpu_ms=30), point("lite1", 200, 1.0, cpu_ms=37)]
    assert tradeoff.advice(busy).startswith("For this computer, lite1: the most accurate (100.0%) and also the fastest")
    assert tradeoff.advice(busy, x="cpu_ms").startswith("For this computer, lite0: the most accurate (100.0%) and "
                                                        "also the fastest (30.0 ms per image)")
    with pytest.raises(ValueError, match="latency_ms or cpu_ms"):
        tradeoff.advice(busy, x="size_mb")


def test_a_busy_machine_gets_the_advice_by_cpu_time_too(monkeypatch):
    points = [point("lite0", 480, 1.0, cpu_ms=30), point("lite1", 200, 1.0, cpu_ms=37)]
    monkeypatch.setattr(tradeoff.os, "cpu_count", lambda: 2)
    monkeypatch.setattr(tradeoff.os, "getloadavg", lambda: (1.5, 1.0, 1.0))
    assert tradeoff.busy_note(points) is None
    monkeypatch.setattr(tradeoff.os, "getloadavg", lambda: (9.3, 12.0, 13.0))
    note = tradeoff.busy_note(points)
    assert note.startswith("This computer is busy (load average 9.3 on 2 cores)") and "For this computer, lite0" in note
