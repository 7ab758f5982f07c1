"""Few-shot prototypes work from 5 images per class with the bundled pretrained EfficientNet-Lite0, are saved as a
run that predicts like any other, and the data-efficiency curve compares methods on one fixed validation split."""

import pytest
import torch

from tests.conftest import SHAPES
from workbench import runs
from workbench.analysis import charts
from workbench.analysis.fewshot import (
    ALL,
    CURVE_FILE,
    CurveConfig,
    data_efficiency,
    evaluate_prototypes,
    feature_bank,
    kshot_counts,
    kshot_folder,
    parse_shots,
    prototype_run,
    sample_shots,
)
from workbench.data import open_dataset
from workbench.models.trained import Predictor
from workbench.runs.jobs import Reporter
from workbench.runs.records import validation_images

SMALL = 96  # px: enough for the pretrained features to tell the shapes apart, quick on a CPU


@pytest.fixture(scope="module")
def lite0_bank():
    bank = feature_bank(str(SHAPES), "tf_efficientnet_lite0", image_size=SMALL)
    assert bank.weights["pretrained"], bank.weights  # the claim is about pretrained features
    return bank


def test_prototypes_from_five_images_per_class_are_far_above_chance(lite0_bank):
    result = evaluate_prototypes(lite0_bank, 5)
    chance = 1 / len(lite0_bank.class_names)
    assert result.images_per_class == {name: 5 for name in lite0_bank.class_names}
    assert result.val_accuracy >= 0.7 > 3 * chance
    assert sum(map(sum, result.confusion_matrix)) == len(lite0_bank.val)


def test_prototypes_use_the_backbones_native_size_unless_one_is_chosen(lite0_bank):
    # a prototype pass runs the backbone once per image: the CPU's smaller training default does not apply
    one_each = sample_shots(open_dataset(SHAPES).train, 1)
    native = feature_bank(str(SHAPES), "tf_efficientnet_lite0", train_samples=one_each)
    assert native.image_size == native.model_info["image_size"] == 224
    assert lite0_bank.image_size == lite0_bank.model_info["image_size"] == SMALL


def test_a_prototype_run_predicts_with_its_recorded_accuracy(tmp_path):
    run_dir, result = prototype_run(str(SHAPES), "tf_efficientnet_lite0", 5, tmp_path, image_size=SMALL)
    record = runs.load_run(run_dir)
    assert record.strategy == "prototypes" and record.summary.status == "finished"
    assert record.summary.val_accuracy == result.val_accuracy
    assert record.summary.confusion_matrix == result.confusion_matrix
    assert record.has_model  # so it appears on Compare, Predict and Compress like a trained run
    predictor = Predictor.from_run(run_dir)
    with validation_images(run_dir) as samples:
        preds = predictor.logits([s.path for s in samples]).argmax(1)
        targets = torch.tensor([s.label for s in samples])
    assert (preds == targets).float().mean().item() == pytest.approx(result.val_accuracy, abs=1e-4)
    assert charts.runs_table([record]).loc[0, "strategy"] == "prototypes"


def test_kshot_folders_hold_exactly_k_per_class_and_the_same_validation_images(tmp_path):
    dataset = open_dataset(SHAPES)
    val_names = None
    previous: set[str] = set()
    for k in (1, 2, 5):
        folder = kshot_folder(dataset, k, tmp_path / f"k{k}")
        counts = kshot_counts(folder)
        assert set(counts["train"].values()) == {k}
        reopened = open_dataset(folder)
        assert reopened.report.has_split and reopened.class_names == dataset.class_names
        val = sorted(str(s.path.resolve()) for s in reopened.val)
        assert val == sorted(str(s.path.resolve()) for s in dataset.val)
        val_names = val_names or val
        assert val == val_names
        chosen = {str(s.path) for s in sample_shots(dataset.train, k)}
        assert previous <= chosen  # nested: more data, not other data
        previous = chosen
    assert len(sample_shots(dataset.train, ALL)) == len(dataset.train)


def test_the_curve_has_one_point_per_method_and_k(tmp_path):
    config = CurveConfig(data=str(SHAPES), backbone="test_resnet", shots="1,2", epochs=1, image_size=64,
                         runs_dir=str(tmp_path))
    streamed = []
    curve = data_efficiency(config, Reporter(on_item=streamed.append))
    pairs = [(p["method"], p["shots"]) for p in curve["points"]]
    assert sorted(pairs) == sorted((m, k) for m in config.methods for k in (1, 2))
    assert streamed == curve["points"]  # each point was reported as soon as it was measured
    assert all(p["status"] == "finished" and 0 <= p["val_accuracy"] <= 1 for p in curve["points"])
    assert curve["chance"] == pytest.approx(0.2)
    # every trained point was evaluated on the curve's validation images
    for point in curve["points"]:
        if point["run_id"]:
            run_dir = tmp_path / "data-efficiency" / curve["id"] / "runs" / point["run_id"]
            assert runs.load_run(run_dir).facts["num_val"] == curve["val_images"]
    assert (tmp_path / "data-efficiency" / curve["id"] / CURVE_FILE).exists()
    assert {p["image_size"] for p in curve["points"]} == {64}  # a size chosen holds for every method
    table = charts.data_efficiency_table(curve["points"])
    assert table.shape == (4, 2)
    figure = charts.data_efficiency_figure(curve["points"], curve["chance"])
    assert len(figure.data) == 4 and figure.layout.xaxis.type == "log"


def test_bad_shots_and_methods_are_refused():
    assert parse_shots("10, 1,all,2") == [1, 2, 10, ALL]
    with pytest.raises(ValueError, match="--shots"):
        parse_shots("0")
    with pytest.raises(ValueError, match="--shots"):
        parse_shots("five")
    with pytest.raises(ValueError, match="--methods"):
        CurveConfig(data=str(SHAPES), methods=("prototypes", "magic"))
    with pytest.raises(ValueError, match="--meta-run .* is not a run folder"):
        CurveConfig(data=str(SHAPES), meta_run="runs/no-such-run")
