"""The Model page's learning-rate tools, augmentation preview and advanced settings, clicked through the app."""

from __future__ import annotations

import pytest

import workbench.engine
from ui_common import CHOICES, DATASET

from .conftest import SHAPES
from .test_pages_data_model import model_page

TINY = {"backbone": "test_resnet", "image_size": 32, "batch_size": 8}


def button(at, label: str):
    return next(b for b in at.button if b.label == label)


def test_discriminative_shows_each_layers_learning_rate_following_lr_and_decay():
    at = model_page(**{CHOICES: {"backbone": "test_resnet"}})
    at.radio(key="model.strategy").set_value("discriminative").run()
    at.number_input(key="model.layer_decay").set_value(0.5).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert table["layer"].tolist() == ["stem", "layer1.0", "layer2.0", "layer3.0", "layer4.0", "head"]
    assert table["learning rate"].tolist() == pytest.approx([1e-3 * 0.5**k for k in range(5, -1, -1)])
    at.select_slider(key="model.lr").set_value(1e-2).run()
    assert at.dataframe[0].value["learning rate"].tolist() == pytest.approx([1e-2 * 0.5**k for k in range(5, -1, -1)])
    assert any("each layer under it at 0.5× the rate" in c.value for c in at.caption)


def test_other_strategies_show_no_per_layer_learning_rates():
    at = model_page(**{CHOICES: {"backbone": "test_resnet", "strategy": "full"}})
    assert not at.exception
    assert not at.dataframe


def test_advanced_settings_are_saved_with_the_other_choices():
    at = model_page(**{CHOICES: {"backbone": "test_resnet", "strategy": "full"}})
    assert at.session_state[CHOICES]["schedule"] == "cosine" and at.session_state[CHOICES]["patience"] == 0
    at.selectbox(key="model.schedule").set_value("onecycle").run()
    at.number_input(key="model.patience").set_value(2).run()
    assert not at.exception
    assert at.session_state[CHOICES]["schedule"] == "onecycle" and at.session_state[CHOICES]["patience"] == 2
    assert any("the best epoch's weights are kept" in c.value for c in at.caption)


def test_augmentation_preview_shows_the_training_image_eight_times():
    at = model_page(**{DATASET: str(SHAPES), CHOICES: {**TINY, "strategy": "full"}})
    assert not at.exception
    assert len(at.get("image")) == 8
    note = next(c.value for c in at.caption if "What the network sees" in c.value)
    assert "circle/" in note and "mixup" not in note  # the first training image of the chosen data
    at.selectbox(key="model.augment").set_value("strong").run()
    assert len(at.get("image")) == 8
    assert any("mixup / cutmix" in c.value for c in at.caption if "What the network sees" in c.value)
    at.radio(key="model.strategy").set_value("linear_probe").run()
    assert not at.get("image")  # cached features are never augmented


def test_without_a_dataset_the_preview_uses_a_sample_image_and_the_lr_finder_waits():
    at = model_page(**{CHOICES: {**TINY, "strategy": "full"}})
    assert len(at.get("image")) == 8
    assert "the finder needs your images" in next(i.value for i in at.info if "finder" in i.value)
    assert not [b for b in at.button if b.label == "Find a learning rate"]


def test_lr_finder_plots_its_sweep_and_its_suggestion_can_be_used(monkeypatch):
    real = workbench.engine.find_lr
    monkeypatch.setattr(workbench.engine, "find_lr", lambda config, steps, on_step: real(config, steps=6,
                                                                                            on_step=on_step))
    at = model_page(**{DATASET: str(SHAPES), CHOICES: {**TINY, "strategy": "full"}})
    charts = len(at.get("plotly_chart"))
    button(at, "Find a learning rate").click().run()
    assert not at.exception
    found = at.session_state["model.lr_finder"]
    assert len(found["lrs"]) == len(found["losses"]) <= 6
    assert len(at.get("plotly_chart")) == charts + 1
    button(at, "Use this learning rate").click().run()
    suggestion = float(f"{found['suggestion']:.2g}")
    assert at.select_slider(key="model.lr").value == suggestion == at.session_state[CHOICES]["lr"]
    assert button(at, "Use this learning rate").disabled
    at.number_input(key="model.epochs").set_value(3).run()  # does not change the sweep: the result stays
    assert len(at.get("plotly_chart")) == charts + 1
    at.number_input(key="model.batch_size").set_value(4).run()  # does: the old curve is not shown for it
    assert any("search again" in c.value for c in at.caption)
