"""Prototypical networks (Snell et al., 2017) as a strategy: meta-trained on episodes of three shapes, the backbone's
prototypes work at least as well on the two shapes it never practised on (seeded, the bundled pretrained lite0), the
saved run predicts like any run, and the options are checked in words."""

import dataclasses

import pytest
import torch

from workbench.analysis.fewshot import CurveConfig, data_efficiency, meta_feature_bank
from workbench.cli import build_parser
from workbench.engine import Run, RunConfig
from workbench.models.trained import Predictor, load_model
from workbench.runs.records import load_run, validation_images
from workbench.strategies import STRATEGIES, Figure, Table, get_strategy
from workbench.strategies.protonet import NOVEL_FILE, EpisodeSampler, held_out_classes, novel_eval_file

from .conftest import SHAPES

HELD_OUT = ["square", "star"]
# 64 px, 3 epochs of 10 episodes (3-way, 5 support + 5 queries): under a minute on two cores, and enough for the
# pretrained features to be reshaped measurably.
BUDGET = dict(data=str(SHAPES), backbone="tf_efficientnet_lite0", strategy="protonet", image_size=64, epochs=3,
              lr=5e-4, seed=0)
OPTIONS = dict(held_out=",".join(HELD_OUT), proto_episodes=10)


@pytest.fixture(scope="module")
def meta_run(tmp_path_factory) -> Run:
    run = Run(RunConfig(**BUDGET, runs_dir=str(tmp_path_factory.mktemp("protonet-runs")), options=OPTIONS)).run()
    assert run.status == "finished", run.error
    return run


def test_meta_training_helps_prototypes_on_classes_it_never_saw(meta_run):
    novel = meta_run.summary["novel_eval"]
    assert novel["classes"] == HELD_OUT
    assert novel["after"]["5"]["mean"] >= novel["before"]["5"]["mean"]
    losses = [m["train_loss"] for m in meta_run.metrics]
    assert len(losses) == BUDGET["epochs"] and losses[-1] < losses[0]  # the mean episode loss falls


def test_the_novel_class_evaluation_has_the_agreed_shape(meta_run):
    novel = meta_run.summary["novel_eval"]
    assert set(novel) == {"classes", "ways", "episodes", "queries", "before", "after"}
    assert novel["ways"] == 2 and novel["episodes"] == 200 and novel["queries"] == 15
    for stage in ("before", "after"):
        assert set(novel[stage]) == {"1", "5"}
        for k in ("1", "5"):
            assert 0.5 <= novel[stage][k]["mean"] <= 1.0  # 2-way: chance is 50%, pretrained features beat it
            assert 0.0 < novel[stage][k]["ci95"] < 0.05
    assert novel["before"]["5"]["mean"] > novel["before"]["1"]["mean"]  # five examples make better prototypes
    assert novel_eval_file(meta_run.dir)["after"] == novel["after"]  # also beside the run, for the live panel
    assert meta_run.summary["meta_training_classes"] == ["circle", "cross", "triangle"]


def test_the_saved_run_predicts_with_its_recorded_accuracy_and_every_class_has_a_prototype(meta_run):
    predictor = Predictor.from_run(meta_run.dir)
    with validation_images(meta_run.dir) as samples:
        preds = predictor.logits([s.path for s in samples]).argmax(1)
        targets = torch.tensor([s.label for s in samples])
    assert (preds == targets).float().mean().item() == pytest.approx(meta_run.summary["val_accuracy"], abs=1e-4)
    head = load_model(meta_run.dir).model.get_classifier()
    torch.testing.assert_close(head.weight.norm(dim=1), torch.ones(5))  # normalised prototypes, held-out ones too
    assert head.bias is None or not head.bias.any()
    # the held-out classes never were in an episode, yet their prototypes recognise their validation images
    for name in HELD_OUT:
        assert meta_run.summary["per_class"][name]["recall"] >= 0.5


def test_the_train_page_panel_shows_before_and_after_and_the_episode_loss(meta_run):
    [panel] = get_strategy("protonet").panels(load_run(meta_run.dir))
    tables = [b for b in panel.blocks if isinstance(b, Table)]
    assert tables and list(tables[0].frame.index) == ["1", "5"]
    assert tables[0].frame.loc["5", "after"] == meta_run.summary["novel_eval"]["after"]["5"]["mean"]
    [figure] = [b for b in panel.blocks if isinstance(b, Figure)]
    assert list(figure.figure.data[0].y) == [m["train_loss"] for m in meta_run.metrics]


def test_the_curve_adds_prototypes_on_the_meta_trained_backbone(meta_run, tmp_path):
    config = CurveConfig(data=str(SHAPES), backbone=BUDGET["backbone"], shots="1,5", methods=("prototypes",),
                         image_size=64, runs_dir=str(tmp_path), meta_run=str(meta_run.dir))
    curve = data_efficiency(config)
    assert sorted((p["method"], p["shots"]) for p in curve["points"]) == [
        ("meta_prototypes", 1), ("meta_prototypes", 5), ("prototypes", 1), ("prototypes", 5)]
    assert all(0.2 < p["val_accuracy"] <= 1.0 for p in curve["points"])
    # a curve split another way would score the meta-trained backbone on images it learned from: refused
    with pytest.raises(ValueError, match="meta-trained on .* of this curve's validation images"):
        meta_feature_bank(meta_run.dir, str(SHAPES), seed=1)


def test_episodes_hold_support_then_queries_of_the_meta_training_classes_only():
    labels = [i % 5 for i in range(60)]  # 12 images of each of 5 classes
    sampler = EpisodeSampler(labels, [0, 2, 4], ways=2, shots=3, queries=4, episodes=6, seed=0)
    episodes = list(sampler)
    assert len(episodes) == len(sampler) == 6
    for batch in episodes:
        assert len(batch) == 2 * (3 + 4) and len(set(batch)) == len(batch)  # no image twice in one episode
        support, queries = batch[:6], batch[6:]
        classes = [labels[support[0]], labels[support[3]]]
        assert classes[0] != classes[1] and set(classes) <= {0, 2, 4}
        assert [labels[i] for i in support] == [classes[0]] * 3 + [classes[1]] * 3  # class by class
        assert [labels[i] for i in queries] == [classes[0]] * 4 + [classes[1]] * 4
    again = list(EpisodeSampler(labels, [0, 2, 4], ways=2, shots=3, queries=4, episodes=6, seed=0))
    assert again == episodes  # seeded
    assert list(sampler) != episodes  # the next epoch draws new episodes


def test_held_out_classes_auto_none_and_named():
    five = ["circle", "cross", "square", "star", "triangle"]
    assert len(held_out_classes("auto", five)) == 2  # about 40%, at least 2
    assert len(held_out_classes("auto", [f"c{i}" for i in range(10)])) == 4
    assert held_out_classes("auto", five[:3]) == []  # fewer than 4 classes: nothing held out
    assert held_out_classes("none", five) == []
    assert held_out_classes(" star , circle ", five) == ["circle", "star"]
    with pytest.raises(ValueError, match="no class called.*circle, cross"):
        held_out_classes("hexagon", five)
    with pytest.raises(ValueError, match="leaves 1 class.*at least 2"):
        held_out_classes("circle,cross,square,star", five)


@pytest.mark.parametrize(("options", "match"), [
    ({"proto_ways": 1}, "--proto-ways must be at least 2"),
    ({"proto_shots": 0}, "--proto-shots must be at least 1"),
    ({"proto_queries": 0}, "--proto-queries must be at least 1"),
    ({"proto_episodes": 0}, "--proto-episodes must be at least 1"),
    ({"held_out": " "}, "--held-out is empty"),
])
def test_bad_options_are_refused_in_words(options, match):
    with pytest.raises(ValueError, match=match):
        RunConfig(data=str(SHAPES), strategy="protonet", options=options)


def test_choices_that_do_not_fit_the_data_fail_before_anything_is_written(tmp_path):
    blending = RunConfig(data=str(SHAPES), strategy="protonet", augment="strong")  # e.g. in a race of strategies
    assert blending.resolved(native_image_size=224).augment == "standard"  # an image blended is two classes at once
    assert "uses 'standard' instead" in " ".join(get_strategy("protonet").option_notes(blending, ["a", "b", "c"]))
    for held_out, match in (("hexagon", "no class called"), ("circle,cross,square,star", "leaves 1 class")):
        run = Run(RunConfig(**BUDGET, runs_dir=str(tmp_path), options={"held_out": held_out})).run()
        assert run.status == "failed" and match in run.error
    assert not list(tmp_path.iterdir())  # refused while preparing: no run folder
    short = Run(RunConfig(**BUDGET, runs_dir=str(tmp_path), options={"proto_shots": 30, "proto_queries": 30})).run()
    assert short.status == "failed" and "Lower --proto-shots or --proto-queries" in short.error
    assert not (short.dir / NOVEL_FILE).exists()  # refused before the first measurement


def test_protonet_is_explained_raced_and_offered_on_the_command_line():
    strategy = get_strategy("protonet")
    assert len(strategy.explanation) > 300 and "episode" in strategy.explanation
    assert strategy.race and strategy.pretrained and "protonet" in STRATEGIES
    args = build_parser().parse_args(["train", "--data", str(SHAPES), "--strategy", "protonet", "--proto-ways", "3",
                                      "--held-out", "star,circle"])
    assert args.proto_ways == 3 and args.held_out == "star,circle"
    config = RunConfig.from_dict({"data": str(SHAPES), "strategy": "protonet", "proto_queries": 7})
    assert dataclasses.asdict(config.options) == {"proto_ways": 5, "proto_shots": 5, "proto_queries": 7,
                                                  "proto_episodes": 10, "held_out": "auto"}
    # an epoch is its episodes plus one look at every image, not one pass over the training images
    assert strategy.epoch_images(config, 190, 50) == (10 * 5 * (5 + 7), 240)
    notes = " ".join(strategy.option_notes(config, ["circle", "cross", "square", "star", "triangle"]))
    assert "Held out of meta-training" in notes and "3 classes × (5 support + 7 query)" in notes
