"""What the Data and Model pages draw: class counts, thumbnails, the layer-group diagram and trainable shares, the
learning rate of each layer, the LR finder's curve and the schedules."""

from __future__ import annotations

import pytest
import timm

from workbench.analysis.model_views import (
    FROZEN_COLOUR,
    SCHEDULES_EXPLAINED,
    THUMBNAIL_SIZE,
    TRAINABLE_COLOUR,
    class_counts_figure,
    freeze_plan,
    freeze_summary,
    group_roles,
    groups_figure,
    layer_lr_figure,
    layer_lr_note,
    layer_lr_plan,
    layer_lr_table,
    lr_finder_figure,
    lr_text,
    normalisation_note,
    round_lr,
    schedule_figure,
    short_count,
    suggestion_note,
    thumbnails,
    training_plan,
)
from workbench.data import open_dataset
from workbench.engine.config import SCHEDULES, RunConfig
from workbench.models.backbones import layer_groups, meta_model, model_groups
from workbench.strategies import apply_freezing, get_strategy, trainable_parameter_count

from .conftest import SHAPES


@pytest.fixture(scope="module")
def shapes():
    return open_dataset(SHAPES)


@pytest.fixture(scope="module")
def groups():
    return model_groups("test_resnet", 5)


def test_class_counts_are_stacked_train_and_val_bars(shapes):
    fig = class_counts_figure(shapes.report)
    assert fig.layout.barmode == "stack"
    train, val = fig.data
    assert list(train.x) == shapes.class_names
    assert sum(train.y) == len(shapes.train) and sum(val.y) == len(shapes.val)


def test_thumbnails_are_small_rgb_images_per_class(shapes):
    shown = thumbnails(shapes, per_class=3)
    assert list(shown) == shapes.class_names
    for images in shown.values():
        assert len(images) == 3
        assert all(img.mode == "RGB" and max(img.size) <= THUMBNAIL_SIZE for img in images)


def test_meta_device_groups_match_the_real_model(groups):
    real = layer_groups(timm.create_model("test_resnet", num_classes=5))
    assert [(g.name, g.num_params) for g in groups] == [(g.name, g.num_params) for g in real]


@pytest.mark.parametrize("frozen", [0, 2, 5])
def test_diagram_has_one_box_per_group_and_greys_the_frozen_ones(groups, frozen):
    fig = groups_figure(groups, frozen)
    boxes = [trace for trace in fig.data if trace.fill == "toself"]
    assert len(boxes) == len(groups) == 6
    assert [b.fillcolor for b in boxes] == [FROZEN_COLOUR] * frozen + [TRAINABLE_COLOUR] * (6 - frozen)
    labels = [a.text for a in fig.layout.annotations if a.text]
    assert sum("🔒" in text for text in labels) == frozen
    assert labels[0].startswith("<b>stem</b>") and labels[-1].startswith("<b>head</b>")


def test_legend_names_each_state_once(groups):
    fig = groups_figure(groups, 3)
    assert sorted(t.name for t in fig.data if t.showlegend) == ["frozen (keeps its pretrained weights)",
                                                                "trainable (learns from your images)"]


@pytest.mark.parametrize("frozen", [0, 1, 3, 5])
def test_freeze_summary_counts_what_freezing_the_real_model_leaves_trainable(groups, frozen):
    model = timm.create_model("test_resnet", num_classes=5)
    real_groups = layer_groups(model)
    apply_freezing(model, real_groups, frozen)
    trainable, total = trainable_parameter_count(model)
    summary = freeze_summary(groups, frozen)
    assert summary == {"trainable_params": trainable, "total_params": total, "share": pytest.approx(trainable / total)}


def test_freeze_summary_edges(groups):
    assert freeze_summary(groups, 0)["share"] == 1.0
    assert freeze_summary(groups, len(groups) - 1)["trainable_params"] == groups[-1].num_params
    assert freeze_summary([], 0)["share"] == 0.0


def test_roles_and_counts_read_plainly():
    assert group_roles(4) == ["stem", "stage 1", "stage 2", "head"]
    assert group_roles(1) == ["head"]
    assert [short_count(n) for n in (928, 45_600, 1_234_567, 2_000_000_000)] == ["928", "45.6k", "1.2M", "2.0B"]


def layer_lrs(backbone: str, lr: float, layer_decay: float, strategy: str = "discriminative") -> list[dict] | None:
    """The Model page's per-layer learning rates for `strategy` with this layer decay."""
    config = RunConfig(data="", backbone=backbone, strategy=strategy, lr=lr, options={"layer_decay": layer_decay})
    return layer_lr_plan(get_strategy(strategy), backbone, 5, config)


@pytest.mark.parametrize(("backbone", "layers"), [("test_resnet", 6), ("test_vit", None), ("test_efficientnet", None)])
def test_each_layer_gets_the_decayed_learning_rate_of_the_layer_above(backbone, layers):
    rows = layer_lrs(backbone, lr=1e-3, layer_decay=0.5)
    assert layers is None or len(rows) == layers
    assert [r["layer"] for r in (rows[0], rows[-1])] == ["stem", "head"]
    assert [r["lr"] for r in rows] == pytest.approx([1e-3 * 0.5 ** k for k in reversed(range(len(rows)))])
    assert sum(r["params"] for r in rows) == sum(p.numel() for p in meta_model(backbone, 5).parameters())


def test_layers_are_named_after_the_module_they_start_with():
    rows = layer_lrs("test_resnet", lr=1e-3, layer_decay=0.7)
    assert [r["layer"] for r in rows] == ["stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0", "head"]
    table = layer_lr_table(rows)
    assert table["share of the head's LR"].tolist() == pytest.approx([0.7 ** k for k in range(5, -1, -1)])
    assert table["parameters"].tolist() == [r["params"] for r in rows]


def test_layer_lr_figure_is_one_labelled_bar_per_layer_on_a_log_axis():
    rows = layer_lrs("test_resnet", lr=1e-3, layer_decay=0.5)
    fig = layer_lr_figure(rows)
    (bars,) = fig.data
    assert list(bars.x) == [r["layer"] for r in rows] and fig.layout.yaxis.type == "log"
    assert bars.text[-1] == "1e-3" and bars.text[0] == "3.1e-5"
    assert "32× less" in fig.layout.title.text


def test_layer_lr_note_says_the_head_rate_and_the_factor_between_layers():
    note = layer_lr_note(layer_lrs("test_resnet", lr=1e-3, layer_decay=0.7))
    assert "(1e-3)" in note and "each layer under it at 0.7× the rate of the layer above" in note
    assert "6 layers" in note
    uneven = [{"lr": 1e-5}, {"lr": 1e-4}, {"lr": 5e-4}, {"lr": 1e-3}]
    assert "down to 0.01× at the stem" in layer_lr_note(uneven)


@pytest.mark.parametrize("strategy", ["partial", "dann"])
def test_every_other_layer_lr_plan_is_none_or_the_shared_decay(strategy):
    rows = layer_lrs("test_resnet", lr=1e-3, layer_decay=0.5, strategy=strategy)
    assert rows is None if strategy == "partial" else [r["lr"] for r in rows] == pytest.approx(
        [1e-3 * 0.5**k for k in range(5, -1, -1)])


def plan(strategy: str, **settings) -> object:
    options = settings.pop("options", None)
    config = RunConfig(data="", backbone="test_resnet", strategy=strategy, options=options, **settings)
    return freeze_plan(get_strategy(strategy), "test_resnet", 5, config)


@pytest.mark.parametrize(("strategy", "settings", "frozen"), [
    ("linear_probe", {}, 5), ("full", {}, 0), ("scratch", {}, 0), ("partial", {}, 2),
    ("partial", {"freeze_depth": 4}, 4),
    ("gradual", {"epochs": 2}, 4), ("gradual", {"epochs": 6}, 0), ("gradual", {"epochs": 6, "freeze_depth": 3}, 3),
    ("gradual", {"epochs": 4, "options": {"epochs_per_phase": 2}}, 4)])
def test_freeze_plan_follows_each_strategys_hooks_to_the_last_epoch(groups, strategy, settings, frozen):
    shown = plan(strategy, **settings)
    assert shown.frozen == frozen
    assert shown.per_group[:frozen] == [0] * frozen
    assert shown.per_group[frozen:] == [g.num_params for g in groups[frozen:]]
    assert shown.summary() == freeze_summary(groups, frozen)


def test_freeze_plan_of_gradual_unfreezing_says_what_more_epochs_would_do():
    assert "More epochs would unfreeze deeper groups" in plan("gradual", epochs=2).note
    assert "More epochs" not in plan("gradual", epochs=6).note
    assert plan("full").note is None


def test_freeze_plan_of_bitfit_counts_only_biases_and_norms_below_the_head(groups):
    with_norms, biases = plan("bitfit"), plan("bitfit", options={"bitfit_norms": False})
    assert with_norms.frozen == biases.frozen == 0
    assert with_norms.per_group[-1] == biases.per_group[-1] == groups[-1].num_params  # the head trains whole
    for more, fewer, group in zip(with_norms.per_group[:-1], biases.per_group[:-1], groups[:-1], strict=True):
        assert 0 <= fewer <= more < group.num_params
    assert 0 < biases.summary()["share"] < with_norms.summary()["share"] < 0.05
    figure = groups_figure(groups, with_norms.frozen, with_norms.per_group)
    assert {t.name for t in figure.data if t.showlegend} == {"partly trainable (only some of its parameters learn)",
                                                            "trainable (learns from your images)"}


def test_learning_rates_read_plainly():
    assert [lr_text(v) for v in (1e-3, 0.00049, 0.0023263, 0.1)] == ["1e-3", "4.9e-4", "2.3e-3", "1e-1"]
    assert [round_lr(v) for v in (0.0023263, 1.5848e-05, 0.01)] == [0.0023, 1.6e-05, 0.01]


def test_lr_finder_figure_marks_the_suggestion_and_the_chosen_rate():
    lrs = [1e-6 * 10 ** (i / 2) for i in range(10)]
    losses = [2.0, 1.9, 1.7, 1.2, 0.8, 0.7, 0.75, 1.5, 3.0, float("inf")]
    fig = lr_finder_figure(lrs, losses, suggestion=lrs[3], current=1e-3)
    curve, star, chosen = fig.data
    assert len(curve.x) == 9  # the exploded last loss is left out
    assert fig.layout.xaxis.type == "log"
    assert (star.x[0], star.y[0]) == (lrs[3], 1.2) and star.name == "suggested: 3.2e-5"
    assert set(chosen.x) == {1e-3} and chosen.name == "chosen now: 1e-3"
    assert len(lr_finder_figure(lrs, losses, suggestion=lrs[3]).data) == 2


def test_every_schedule_is_explained_and_drawn_with_its_shape():
    assert list(SCHEDULES_EXPLAINED) == list(SCHEDULES)
    constant, cosine, onecycle = (schedule_figure(s, 1e-3, 4, 0.5).data[0].y for s in ("constant", "cosine",
                                                                                       "onecycle"))
    assert set(constant) == {1e-3}
    assert cosine[0] < cosine[25] == pytest.approx(1e-3) and cosine[-1] == pytest.approx(1e-5, rel=0.01)
    assert onecycle[0] == pytest.approx(1e-3 / 25) and max(onecycle) == pytest.approx(1e-3, rel=1e-3)


def test_the_training_plan_is_the_freeze_plan_and_the_layer_rates_of_the_config():
    config = RunConfig(data="", backbone="test_resnet", strategy="discriminative", lr=1e-3,
                       options={"layer_decay": 0.5})
    shown, rows = training_plan(config, 5)
    assert shown.frozen == plan("discriminative", lr=1e-3, options={"layer_decay": 0.5}).frozen == 0
    assert rows == layer_lrs("test_resnet", lr=1e-3, layer_decay=0.5)
    assert training_plan(RunConfig(data="", backbone="test_resnet", strategy="partial"), 5)[1] is None
    sentence = plan("partial", freeze_depth=4).sentence()
    summary = plan("partial", freeze_depth=4).summary()
    assert sentence == (f"**{summary['trainable_params']:,} of {summary['total_params']:,} parameters learn from "
                        f"your images ({summary['share']:.1%}).**")


def test_the_normalisation_and_the_finders_suggestion_read_plainly():
    assert normalisation_note((0.485, 0.456, 0.406), (0.229, 0.224, 0.225)).startswith(
        "Images are normalised with mean (0.485, 0.456, 0.406) and std (0.229, 0.224, 0.225)")
    assert suggestion_note(0.002, 0.002) == "Suggested: **0.002**, where the loss falls fastest (in use)."
    assert suggestion_note(0.002, 0.001) == "Suggested: **0.002**, where the loss falls fastest; chosen now: 0.001."
