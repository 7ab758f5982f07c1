"""The Model and Train pages' choices, without a browser: a strategy's options as widgets, the runs a "run" option may
name, the folders an "images" option starts from, the one check of what a browser sent, what is kept for the Train
page, what the LR finder depends on, the model picker's list, the freeze depth kept, and the sentences about weights,
patience, the plan, the time estimate, missing data and a failed finder."""

from __future__ import annotations

import json

import pytest

from workbench.analysis import choices
from workbench.engine.config import RunConfig
from workbench.models.backbones import model_groups
from workbench.runs import MODEL_FILE, MODEL_INFO_FILE, RunRecord, RunSummary
from workbench.strategies import STRATEGIES

from .conftest import SHAPES, SHAPES_SHIFTED

CLASSES = ["circle", "cross", "square", "star", "triangle"]
SAMPLES = {"shapes": SHAPES, "shapes_shifted": SHAPES_SHIFTED}


@pytest.fixture(scope="module")
def groups():
    return model_groups("test_resnet", 5)


def widgets(strategy: str) -> list[tuple[str, str]]:
    return [(w.name, w.kind) for w in choices.option_widgets(STRATEGIES[strategy])]


def test_each_strategys_options_become_typed_widgets_labelled_by_their_help():
    assert widgets("linear_probe") == widgets("full") == []
    assert widgets("gradual") == [("epochs_per_phase", "int")]
    assert widgets("bitfit") == [("bitfit_norms", "bool")]  # a checkbox, though a bool is an int
    assert widgets("discriminative") == [("layer_decay", "float")]
    assert widgets("distill") == [("teacher_run", "run"), ("distill_alpha", "float"), ("distill_temperature", "float")]
    assert widgets("dann") == [("layer_decay", "float"), ("target_data", "images")]
    (decay,) = choices.option_widgets(STRATEGIES["discriminative"])
    assert decay.default == 0.7 and decay.label.startswith("Discriminative LR:")


def record(tmp_path, name: str, status: str, accuracy: float | None, classes=CLASSES, model: bool = True):
    folder = tmp_path / name
    folder.mkdir()
    if model:
        for file in (MODEL_FILE, MODEL_INFO_FILE):
            (folder / file).write_text(json.dumps({}))
    facts = {"strategy": "full", "backbone": "test_resnet", "class_names": classes}
    return RunRecord(id=name, dir=folder, facts=facts, summary=RunSummary(status=status, val_accuracy=accuracy,
                                                                          class_names=classes))


def test_runs_with_a_model_on_the_same_classes_come_most_accurate_first(tmp_path):
    found = [record(tmp_path, "20260101-100000-good", "finished", 0.8),
             record(tmp_path, "20260101-110000-best", "finished", 0.9),
             record(tmp_path, "20260101-120000-other", "finished", 1.0, classes=["a", "b"]),
             record(tmp_path, "20260101-130000-fail", "failed", 0.95),
             record(tmp_path, "20260101-140000-lost", "finished", 0.99, model=False)]
    assert [r.id for r in choices.option_runs(found, CLASSES)] == ["20260101-110000-best", "20260101-100000-good"]
    assert choices.run_label(found[1]) == "test_resnet · full · 90% · best"
    assert choices.option_runs(found, ["circle"]) == []


def test_an_images_option_starts_from_the_training_datas_shifted_variant():
    assert choices.images_default(str(SHAPES), SAMPLES) == str(SHAPES_SHIFTED)
    assert choices.images_default(None, SAMPLES) == str(SHAPES_SHIFTED)  # the first sample trains until data is chosen
    assert choices.images_default("/home/me/birds", SAMPLES) == str(SHAPES)
    assert choices.images_default(str(SHAPES), {"shapes": SHAPES}) == ""
    assert choices.images_default(None, {}) == ""


def test_the_draft_falls_back_to_the_strategys_defaults_until_the_options_fit():
    draft = choices.draft_config({"backbone": "test_resnet", "strategy": "discriminative", "layer_decay": 0.5})
    assert draft.options.layer_decay == 0.5
    draft = choices.draft_config({"backbone": "test_resnet", "strategy": "discriminative", "layer_decay": 3.0})
    assert draft.options.layer_decay == 0.7 and draft.backbone == "test_resnet"


def test_checked_choices_become_a_run_config_or_say_what_is_wrong(groups, tmp_path):
    base = {"backbone": "test_resnet", "strategy": "partial", "epochs": 2}
    config = choices.checked_config({**base, "freeze_depth": 3}, str(SHAPES), groups)
    assert (config.data, config.freeze_depth, config.epochs) == (str(SHAPES), 3, 2)
    with pytest.raises(ValueError, match="--freeze-depth 9 is out of range"):
        choices.checked_config({**base, "freeze_depth": 9}, str(SHAPES), groups)
    with pytest.raises(ValueError, match="must be in"):
        choices.checked_config({**base, "strategy": "discriminative", "layer_decay": 0.0}, "", groups)
    with pytest.raises(ValueError, match="does not exist on this computer"):
        choices.checked_config({**base, "weights": str(tmp_path / "missing.safetensors")}, "", groups)
    weights = tmp_path / "mine.safetensors"
    weights.write_bytes(b"")
    assert choices.checked_config({**base, "weights": str(weights)}, "", groups).weights == str(weights)


def test_saved_choices_rebuild_the_same_config_and_keep_auto_weights():
    config = RunConfig.from_dict({"data": "", "backbone": "test_resnet", "strategy": "gradual", "epochs": 6,
                                  "epochs_per_phase": 2, "freeze_depth": 1})
    saved = choices.saved_choices(config, "auto")
    assert saved["epochs_per_phase"] == 2 and "data" not in saved and "layer_decay" not in saved
    assert RunConfig.from_dict({**saved, "data": ""}) == config
    scratch = RunConfig(data="", strategy="scratch")
    assert scratch.weights == "none" and choices.saved_choices(scratch, "auto")["weights"] == "auto"


def test_the_lr_finder_result_holds_until_a_choice_it_depends_on_changes():
    config = RunConfig(data=str(SHAPES), backbone="test_resnet", strategy="discriminative", lr=1e-3, epochs=2)
    key = choices.finder_key(config)
    for same in ({"lr": 1e-2}, {"epochs": 9}, {"schedule": "constant"}, {"patience": 2}):
        assert choices.finder_key(RunConfig.from_dict({**config.to_dict(), **same})) == key
    for other in ({"batch_size": 8}, {"layer_decay": 0.5}, {"backbone": "test_vit"}):
        assert choices.finder_key(RunConfig.from_dict({**config.to_dict(), **other})) != key


def test_learning_rates_to_pick_from_include_every_default_and_the_chosen_one():
    rates = choices.learning_rates(0.0023)
    assert rates == sorted(rates) and 0.0023 in rates
    assert {s.default_lr for s in STRATEGIES.values()} <= set(rates)
    assert 0.0023 not in choices.learning_rates()


@pytest.mark.parametrize(("arguments", "level", "words"), [
    (("bundled", False), "success", "bundled with the workbench"),
    (("cached", False), "success", "local Hugging Face cache"),
    (("download", True), "success", "will be downloaded"),
    (("download", False), "warning", "internet cannot be reached"),
    (("none", True), "warning", "timm knows none"),
])
def test_weights_note_warns_when_there_is_nothing_to_transfer(arguments, level, words):
    found, text = choices.weights_note("test_resnet", *arguments)
    assert found == level and words in text
    assert ("No pretrained weights for test_resnet" in text) == (level == "warning")


def test_weights_note_for_random_weights_on_purpose_and_own_files():
    assert choices.weights_note("x", "none", False, pretrained=False)[0] == "info"
    assert choices.weights_note("x", "none", False, weights="none")[0] == "info"
    assert "`/w.pth`" in choices.weights_note("x", "none", False, weights="/w.pth")[1]


def test_patience_note():
    assert choices.patience_note(0, 5).startswith("Off")
    assert "the best epoch's weights are kept" in choices.patience_note(2, 5)
    assert "can never stop early" in choices.patience_note(5, 5)


def test_plan_lines_name_the_freeze_depth_only_where_the_strategy_has_one(groups):
    def lines(**values) -> list[str]:
        plan = RunConfig.from_dict({"data": str(SHAPES), "backbone": "test_resnet", "epochs": 1, "lr": 1e-3,
                                    "image_size": 64, "device": "cpu", **values})
        return choices.plan_lines(plan, groups)

    assert "freeze depth: 2 (default)" in lines(strategy="partial")[0]
    assert "freeze depth: 4" in lines(strategy="partial", freeze_depth=4)[0]
    assert "freeze depth" not in lines(strategy="full")[0]
    assert "**Data:** shapes" in lines(strategy="full")[0] and "**Image size:** 64 px" in lines(strategy="full")[1]
    assert len(lines(strategy="full")) == 2
    assert "**Teacher:**" in lines(strategy="distill")[2]  # the strategy's own lines come last


def test_dataset_facts_and_the_estimate_sentence(monkeypatch):
    facts = choices.dataset_facts(str(SHAPES))
    assert (facts["classes"], facts["train"], facts["val"]) == (5, 190, 50)
    assert facts["class_names"] == CLASSES and facts["first_image"].endswith(".jpg")
    assert choices.dataset_facts(str(SHAPES / "circle")) is None
    config = RunConfig(data="", backbone="test_resnet", strategy="full", epochs=3, image_size=32, device="cpu")
    asked = []
    monkeypatch.setattr(choices, "estimate_for_machine", lambda *args: asked.append(args) or (90 if args[-1] else None))
    assert choices.estimate_note(config, facts) is None  # nothing measured yet: no waiting
    note = choices.estimate_note(config, facts, measure=True)
    assert "190 training and 50 validation images, 3 epochs" in note and "(CPU)" in note
    assert asked[-1][:7] == ("test_resnet", "full", 32, 32, 3, 190, 50)
    assert "800 training and 200 validation images (a made-up dataset" in choices.estimate_note(config, None, True)


def test_the_model_picker_lists_the_first_matches_and_keeps_the_model_picked():
    found = [f"net{i}" for i in range(5)]
    assert choices.backbone_names(found, "net1", 3) == ["net0", "net1", "net2"]
    assert choices.backbone_names(found, "net4", 3) == ["net4", "net0", "net1", "net2"]  # a search must not drop it
    assert choices.backbone_label(1, 300) == "Model (1 match)"
    assert choices.backbone_label(0, 300) == "Model (0 matches)"
    assert choices.backbone_label(1234, 300) == "Model (1,234 matches, first 300 shown)"
    assert set(choices.WEIGHT_BADGES) == {"bundled", "cached", "download", "none"}


def test_a_kept_freeze_depth_is_used_only_where_the_model_has_that_many_groups(groups):
    assert len(groups) == 6
    assert [choices.freeze_depth_within(v, 2, groups) for v in (0, 5, 6, -1)] == [0, 5, 2, 2]
    assert [choices.freeze_depth_within(v, 2, groups) for v in (None, "3", 3.0, True)] == [2, 2, 2, 2]


def test_messages_about_missing_data_and_a_failed_finder():
    assert choices.missing_data_note(None).startswith("No dataset chosen yet: the model's head is sized for 10 classes")
    assert choices.missing_data_note("/gone").startswith("The chosen dataset cannot be read any more:")
    failure = choices.finder_failure(RuntimeError("CUDA out of memory."))
    assert failure.startswith("The learning-rate finder failed: CUDA out of memory.") and len(failure) > 60
