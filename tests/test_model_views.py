"""What the Data and Model pages draw: class counts, thumbnails, the layer-group diagram and trainable shares."""

from __future__ import annotations

import pytest
import timm

from workbench.backbones import layer_groups
from workbench.data import open_dataset
from workbench.model_views import (
    FROZEN_COLOUR,
    THUMBNAIL_SIZE,
    TRAINABLE_COLOUR,
    class_counts_figure,
    freeze_summary,
    group_roles,
    groups_figure,
    model_groups,
    short_count,
    thumbnails,
)
from workbench.strategies import apply_freezing, trainable_parameter_count

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
