"""Each strategy does what its explanation says, checked on the weights it leaves behind."""

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from workbench import runs
from workbench.engine import Run, lr_at
from workbench.engine.config import RunConfig
from workbench.engine.loop import Trainer, build_optimizer
from workbench.models.backbones import head_parameter_names, layer_groups
from workbench.strategies import STRATEGIES, get_strategy

from .conftest import SHAPES

FAST = dict(data=str(SHAPES), image_size=64, batch_size=32, seed=0, backbone="test_efficientnet")


@pytest.fixture(scope="module")
def start(tmp_path_factory):
    """A fixed 'pretrained' starting point, so changes can be measured against it."""
    torch.manual_seed(1)
    model = timm.create_model("test_efficientnet", num_classes=1000)
    path = tmp_path_factory.mktemp("weights") / "start.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, {k: v.clone() for k, v in model.state_dict().items()}


def _train(start, runs_dir, **kwargs) -> tuple[Run, dict]:
    run = Run(RunConfig.from_dict({**FAST, "weights": str(start[0]), **kwargs})).run()
    assert run.status == "finished", run.error
    return run, load_file(str(run.dir / runs.MODEL_FILE))


def _groups():
    return layer_groups(timm.create_model("test_efficientnet", num_classes=5))


def _changed(names, before, after):
    return {n for n in names if n in before and not torch.equal(before[n], after[n])}


def test_every_strategy_has_an_explanation_and_defaults():
    for strategy in STRATEGIES.values():
        assert len(strategy.explanation) > 200 and strategy.trains
        assert strategy.default_epochs > 0 and strategy.default_lr > 0


def test_gradual_unfreezing_trains_only_the_head_in_phase_one(start, runs_dir):
    run, trained = _train(start, runs_dir, strategy="gradual", epochs=1, epochs_per_phase=1)
    groups = _groups()
    body = [n for g in groups[:-1] for n in g.param_names]
    assert not _changed(body, start[1], trained)
    assert _changed(groups[-1].param_names, start[1], trained) == set(groups[-1].param_names)


def test_gradual_unfreezing_reaches_lower_groups_phase_by_phase(start, runs_dir):
    run, trained = _train(start, runs_dir, strategy="gradual", epochs=3, epochs_per_phase=1)
    groups = _groups()
    last = len(groups) - 1
    assert [m["frozen_groups"] for m in run.metrics] == [last, last - 1, last - 2]
    lowest_unfrozen = groups[last - 2]
    assert _changed([n for n in lowest_unfrozen.param_names if "weight" in n], start[1], trained)
    still_frozen = [n for g in groups[: last - 2] for n in g.param_names]
    assert not _changed(still_frozen, start[1], trained)


def test_discriminative_learning_rates_decay_from_head_to_stem():
    model = timm.create_model("test_efficientnet", num_classes=5)
    config = RunConfig.from_dict({**FAST, "strategy": "discriminative", "layer_decay": 0.5, "lr": 1e-3}).resolved(64)
    optimizer = build_optimizer(model, layer_groups(model), config, get_strategy("discriminative"))
    scales = sorted({g["lr_scale"] for g in optimizer.param_groups})
    assert scales[-1] == 1.0
    assert all(a / b == pytest.approx(0.5) for a, b in zip(scales[:-1], scales[1:], strict=True))
    head = head_parameter_names(model)
    for group in optimizer.param_groups:
        ids = {id(p) for p in group["params"]}
        if any(id(p) in ids for n, p in model.named_parameters() if n in head):
            assert group["lr_scale"] == 1.0
        if any(id(p) in ids for n, p in model.named_parameters() if n.startswith("conv_stem")):
            assert group["lr_scale"] == min(scales)


def _drift(start_state, trained, names):
    return sum(((trained[n] - start_state[n]) ** 2).sum().item() for n in names) ** 0.5


def test_l2sp_keeps_the_backbone_close_to_its_pretrained_weights(start, runs_dir):
    body = [n for g in _groups()[:-1] for n in g.param_names]
    _, free = _train(start, runs_dir, strategy="l2sp", epochs=1, lr=3e-3, l2sp_alpha=0.0)
    _, held = _train(start, runs_dir, strategy="l2sp", epochs=1, lr=3e-3, l2sp_alpha=50.0)
    assert _drift(start[1], held, body) < 0.5 * _drift(start[1], free, body)


def test_bitfit_trains_a_tiny_share_and_leaves_filters_untouched(start, runs_dir):
    run, trained = _train(start, runs_dir, strategy="bitfit", epochs=1, bitfit_norms=False)
    head = head_parameter_names(timm.create_model("test_efficientnet", num_classes=5))
    filters = [n for n in trained if n.endswith("weight") and n not in head and "bn" not in n]
    assert filters and not _changed(filters, start[1], trained)
    assert _changed([n for n in trained if n.endswith("bias") and n not in head], start[1], trained)
    assert run.summary["trainable_params"] < 0.1 * run.summary["total_params"]


@pytest.mark.parametrize("schedule", ["cosine", "onecycle", "constant"])
def test_schedules_have_their_shape(schedule):
    lrs = [lr_at(s, 100, 10, 1.0, schedule) for s in range(100)]
    if schedule == "constant":
        assert set(lrs) == {1.0}
    elif schedule == "onecycle":
        peak = lrs.index(max(lrs))
        assert 20 <= peak <= 35 and lrs[0] == pytest.approx(1 / 25) and lrs[-1] < 0.01
    else:
        assert lrs.index(max(lrs)) == 9 and lrs[-1] < 0.05


def test_early_stopping_keeps_the_best_epoch(start, runs_dir, monkeypatch):
    # Script the validation losses so the test does not depend on how a tiny model happens to train.
    losses = iter([1.0, 0.5, 0.9, 0.8, 0.7, 0.6])
    evaluate = Trainer._evaluate

    def scripted(self):
        return {**evaluate(self), "val_loss": next(losses)}

    monkeypatch.setattr(Trainer, "_evaluate", scripted)
    run, trained = _train(start, runs_dir, strategy="full", epochs=6, patience=1)
    assert [m["val_loss"] for m in run.metrics] == [1.0, 0.5, 0.9]  # stopped one epoch after the best
    assert run.summary["best_epoch"] == 2 and run.summary["val_loss"] == 0.5
    assert run.summary["epochs_completed"] == 3


def test_lr_finder_sweeps_upward_suggests_a_rate_inside_and_writes_nothing(runs_dir):
    from workbench.engine import find_lr

    result = find_lr(RunConfig(**{**FAST, "backbone": "test_resnet", "strategy": "full"}), steps=12)
    assert result.lrs == sorted(result.lrs) and result.lrs[0] == pytest.approx(1e-6)
    assert result.lrs[0] <= result.suggestion <= result.lrs[-1]
    assert not runs_dir.exists()


def test_lr_suggestion_is_where_the_loss_falls_fastest():
    from workbench.engine import suggest_lr

    lrs = [10 ** (-6 + i * 0.5) for i in range(12)]
    losses = [2.0, 2.0, 1.98, 1.9, 1.5, 0.9, 0.6, 0.5, 0.55, 0.9, 2.0, 5.0]
    assert suggest_lr(lrs, losses) in lrs[4:6]
