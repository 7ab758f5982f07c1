"""LP-FT (Kumar et al., 2022): phase one is exactly a linear probe; phase two moves the backbone less than a full
fine-tune with a random head, at the same epochs and learning rate (seeded, the bundled pretrained lite0)."""

import dataclasses

import pytest
import torch
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest

from ui_common import CHOICES, DATASET
from workbench.cli import build_parser
from workbench.core.runfolder import MODEL_FILE
from workbench.engine import Run, RunConfig
from workbench.models.backbones import create_backbone, layer_groups
from workbench.strategies import STRATEGIES, get_strategy
from workbench.strategies.lpft import PROBE_HEAD_FILE

from .conftest import REPO, SHAPES
from .test_pages_data_model import model_page

# Real pretrained features (the bundled weights): with random test models there is nothing for a probe to find.
# 96 px and 5 epochs: a minute on two cores, and enough steps for the fine-tunes' drifts to part.
BUDGET = dict(data=str(SHAPES), backbone="tf_efficientnet_lite0", image_size=96, batch_size=32, seed=0)
PROBE = dict(probe_epochs=30, probe_lr=1e-2)
FINE_TUNE = dict(epochs=5, lr=5e-4)


@pytest.fixture(scope="module")
def three_runs(tmp_path_factory):
    runs_dir = str(tmp_path_factory.mktemp("lpft-runs"))
    probe = Run(RunConfig(**BUDGET, runs_dir=runs_dir, strategy="linear_probe", epochs=PROBE["probe_epochs"],
                          lr=PROBE["probe_lr"])).run()
    lpft = Run(RunConfig(**BUDGET, runs_dir=runs_dir, strategy="lpft", options=PROBE, **FINE_TUNE)).run()
    full = Run(RunConfig(**BUDGET, runs_dir=runs_dir, strategy="full", **FINE_TUNE)).run()
    for run in (probe, lpft, full):
        assert run.status == "finished", run.error
    return probe, lpft, full


def _relative_drift(trained: dict, start: dict, names) -> float:
    """||w - w0|| / ||w0|| over the parameters `names`: how far training moved them from the pretrained weights."""
    moved = sum(((trained[n] - start[n]).float() ** 2).sum() for n in names)
    return (moved / sum((start[n].float() ** 2).sum() for n in names)).sqrt().item()


def test_phase_one_is_a_linear_probe(three_runs):
    probe, lpft, _ = three_runs
    probe_weights = load_file(str(probe.dir / MODEL_FILE))
    head_after_phase_one = load_file(str(lpft.dir / PROBE_HEAD_FILE))
    head = {name: probe_weights[f"classifier.{name}"] for name in head_after_phase_one}
    for name, weights in head_after_phase_one.items():
        torch.testing.assert_close(weights, head[name], rtol=0, atol=1e-6)
    assert lpft.summary["probe_val_accuracy"] == pytest.approx(probe.summary["val_accuracy"])
    assert lpft.summary["probe_epochs"] == PROBE["probe_epochs"]


def test_phase_two_moves_the_backbone_less_than_a_full_fine_tune(three_runs):
    _, lpft, full = three_runs
    start_model, source = create_backbone(BUDGET["backbone"], 5, "auto")
    assert source.pretrained
    start = start_model.state_dict()
    groups = layer_groups(start_model)
    body = groups[:-1]
    after_lpft, after_full = load_file(str(lpft.dir / MODEL_FILE)), load_file(str(full.dir / MODEL_FILE))
    body_names = [n for g in body for n in g.param_names]
    lpft_drift, full_drift = _relative_drift(after_lpft, start, body_names), _relative_drift(after_full, start,
                                                                                             body_names)
    assert lpft_drift < full_drift
    # the group next to the head feels a random head's gradients most: there the difference is clearest
    top = body[-1].param_names
    assert _relative_drift(after_lpft, start, top) < 0.95 * _relative_drift(after_full, start, top)
    # and both trained every layer, at the same epochs and learning rate
    assert len(lpft.metrics) == len(full.metrics) == FINE_TUNE["epochs"]
    assert [m["lr"] for m in lpft.metrics] == [m["lr"] for m in full.metrics]
    assert lpft.summary["trainable_params"] == full.summary["trainable_params"]


def test_lpft_is_explained_raced_and_checked_like_any_strategy():
    strategy = get_strategy("lpft")
    assert len(strategy.explanation) > 200 and "linear probe" in strategy.explanation
    assert strategy.race and strategy.pretrained
    assert strategy.trains_backbone(RunConfig(data=str(SHAPES), strategy="lpft"))
    assert "lpft" in STRATEGIES
    with pytest.raises(ValueError, match="--probe-epochs"):
        RunConfig(data=str(SHAPES), strategy="lpft", options={"probe_epochs": 0})
    args = build_parser().parse_args(["train", "--data", str(SHAPES), "--strategy", "lpft", "--probe-epochs", "7"])
    assert args.probe_epochs == 7
    config = RunConfig.from_dict({"data": str(SHAPES), "strategy": "lpft", "probe_lr": 0.05})
    assert dataclasses.asdict(config.options) == {"probe_epochs": 30, "probe_lr": 0.05}


def test_the_model_page_explains_lpft_and_offers_its_options():
    at = model_page(**{CHOICES: {"backbone": "test_resnet", "strategy": "lpft"}})
    assert not at.exception
    shown = " ".join(m.value for m in at.markdown) + " ".join(c.value for c in at.caption)
    assert get_strategy("lpft").explanation[:80] in shown
    assert at.number_input(key="model.probe_epochs").value == 30
    assert at.number_input(key="model.probe_lr").value == pytest.approx(1e-2)
    at.number_input(key="model.probe_epochs").set_value(12).run()
    assert not at.exception and at.session_state[CHOICES]["probe_epochs"] == 12


def test_the_compare_pages_race_offers_lpft():
    at = AppTest.from_file(str(REPO / "pages" / "4_compare.py"), default_timeout=60)
    at.session_state[DATASET] = str(SHAPES)
    at.run()
    assert not at.exception
    assert get_strategy("lpft").title in at.multiselect(key="race_strategies").options
