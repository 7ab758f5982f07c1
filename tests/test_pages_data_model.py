"""The Data and Model pages, run through the app's own navigation as a user would click through them."""

from __future__ import annotations

import pytest
from streamlit.testing.v1 import AppTest

from ui_common import CHOICES, DATASET

from .conftest import REPO, SHAPES

TIMEOUT = 60


def open_app(**state) -> AppTest:
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    for name, value in state.items():
        at.session_state[name] = value
    return at


def model_page(**state) -> AppTest:
    at = open_app(**state)
    at.switch_page("pages/2_model.py")
    return at.run()


def metric(at: AppTest, label: str) -> str:
    return next(m.value for m in at.metric if m.label == label)


def test_data_page_without_data_says_what_to_do():
    at = open_app().run()
    assert not at.exception
    assert "Pick **Sample data**" in at.info[0].value
    assert not at.get("plotly_chart")


def test_choosing_the_sample_data_shows_counts_problems_and_thumbnails():
    at = open_app().run()
    at.radio(key="data.source").set_value("sample").run()
    assert not at.exception
    assert at.session_state[DATASET] == str(SHAPES)
    assert metric(at, "Images") == "240" and metric(at, "Classes") == "5"
    assert len(at.get("plotly_chart")) == 1
    assert "No problems found" in at.success[0].value
    assert len(at.get("image")) == 5  # one row of thumbnails per class


def test_a_folder_that_is_not_a_dataset_is_explained(tmp_path):
    (tmp_path / "only_one_class").mkdir()
    at = open_app().run()
    at.radio(key="data.source").set_value("local").run()
    at.text_input(key="data.local_path").set_value(str(tmp_path)).run()
    assert not at.exception
    assert "needs at least 2 classes" in at.error[0].value
    assert DATASET not in at.session_state


def test_problems_are_listed_with_what_to_do(tmp_path):
    for name in ("a", "b"):
        (tmp_path / name).mkdir()
        for i, image in enumerate(sorted((SHAPES / ("circle" if name == "a" else "square")).glob("*.jpg"))[:4]):
            (tmp_path / name / f"{i}.jpg").write_bytes(image.read_bytes())
    (tmp_path / "b" / "notes.txt").write_text("not an image")
    at = open_app(**{DATASET: str(tmp_path)}).run()
    assert not at.exception
    assert any("skipped and not used" in w.value for w in at.warning)
    assert at.dataframe[0].value["file"].tolist() == ["b/notes.txt"]


def test_model_page_without_data_keeps_the_defaults():
    at = model_page()
    assert not at.exception
    assert "No dataset chosen yet" in at.info[0].value
    assert at.session_state[CHOICES]["backbone"] == "tf_efficientnet_lite0"
    assert at.session_state[CHOICES]["strategy"] == "linear_probe"


def test_partial_fine_tune_slider_moves_the_trainable_share():
    at = model_page(**{DATASET: str(SHAPES)})
    at.text_input(key="model.query").set_value("test_res").run()
    at.selectbox(key="model.backbone").set_value("test_resnet").run()
    at.radio(key="model.strategy").set_value("partial").run()
    assert not at.exception
    slider = at.slider(key="model.freeze_depth")
    assert slider.max == 5  # test_resnet: stem, 4 stages, head
    before = metric(at, "Share of the model that trains")
    slider.set_value(4).run()
    after = metric(at, "Share of the model that trains")
    assert float(after.rstrip("%")) < float(before.rstrip("%"))
    assert any(f"parameters learn from your images ({after})" in m.value for m in at.markdown)
    choices = at.session_state[CHOICES]
    assert choices["backbone"] == "test_resnet" and choices["strategy"] == "partial"
    assert choices["freeze_depth"] == 4
    assert choices["image_size"] == 160 and choices["epochs"] == 5  # partial's defaults on a CPU


@pytest.mark.parametrize(("strategy", "frozen"), [("linear_probe", "5 of 6"), ("full", "0 of 6")])
def test_other_strategies_show_what_they_freeze(strategy, frozen):
    at = model_page(**{CHOICES: {"backbone": "test_resnet"}})
    at.radio(key="model.strategy").set_value(strategy).run()
    assert not at.exception
    assert metric(at, "Frozen groups") == frozen
    assert not at.slider


def test_time_estimate_for_the_chosen_data():
    at = model_page(**{DATASET: str(SHAPES), CHOICES: {"backbone": "test_resnet", "image_size": 32}})
    next(b for b in at.button if b.label == "Estimate time").click().run()
    assert not at.exception
    estimate = next(i.value for i in at.info if i.value.startswith("About"))
    assert "190 training and 50 validation images" in estimate


def test_bitfit_shows_only_a_sliver_of_the_model_training():
    at = model_page(**{CHOICES: {"backbone": "test_resnet"}})
    at.radio(key="model.strategy").set_value("bitfit").run()
    with_norms = float(metric(at, "Share of the model that trains").rstrip("%"))
    at.checkbox(key="model.bitfit_norms").uncheck().run()
    assert not at.exception
    assert 0 < float(metric(at, "Share of the model that trains").rstrip("%")) < with_norms < 5
    assert at.session_state[CHOICES]["bitfit_norms"] is False


def test_gradual_unfreezing_shows_how_far_the_epochs_reach():
    at = model_page(**{CHOICES: {"backbone": "test_resnet"}})
    at.radio(key="model.strategy").set_value("gradual").run()
    at.number_input(key="model.epochs").set_value(2).run()
    assert not at.exception
    assert metric(at, "Frozen groups") == "4 of 6"  # head in epoch 1, one more group in epoch 2
    assert any("More epochs would unfreeze deeper groups" in c.value for c in at.caption)
    at.number_input(key="model.epochs").set_value(6).run()
    assert metric(at, "Frozen groups") == "0 of 6"
    assert at.session_state[CHOICES]["epochs_per_phase"] == 1


def test_choices_survive_a_visit_to_another_page():
    at = open_app().run()
    at.radio(key="data.source").set_value("sample").run()
    at.selectbox(key="data.sample").set_value("shapes_shifted").run()
    at.switch_page("pages/2_model.py").run()
    at.radio(key="model.strategy").set_value("partial").run()
    at.slider(key="model.freeze_depth").set_value(7).run()
    at.switch_page("pages/1_data.py").run()
    assert at.selectbox(key="data.sample").value == "shapes_shifted"
    at.switch_page("pages/2_model.py").run()
    assert not at.exception
    assert at.radio(key="model.strategy").value == "partial" and at.slider(key="model.freeze_depth").value == 7


def test_the_backbone_list_filters_by_family_and_size_and_says_which_are_pretrained_here():
    at = model_page()
    at.text_input(key="model.query").set_value("tf_efficientnet_lite").run()
    at.multiselect(key="model.families").set_value(["efficientnet"]).run()
    at.number_input(key="model.max_params").set_value(5.0).run()
    assert not at.exception
    picker = at.selectbox(key="model.backbone")
    assert picker.options == ["tf_efficientnet_lite0   ✅ bundled"]  # lite0 has 4.7 M parameters, lite1 5.4 M
    at.number_input(key="model.max_params").set_value(0.0).run()
    at.toggle(key="model.catalogue").set_value(True).run()
    table = at.dataframe[0].value.set_index("model")
    assert table.loc["tf_efficientnet_lite2", "pretrained weights here"] == "yes"
    assert table.loc["tf_efficientnet_lite4", "pretrained weights here"].startswith("no")
    assert set(table["family"]) == {"efficientnet"}
    assert table.loc["tf_efficientnet_lite0", "parameters (M)"] < table.loc["tf_efficientnet_lite4", "parameters (M)"]
