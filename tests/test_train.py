"""The engine: freezing does what it says, runs are recorded on disk, stop and failure keep what was learned."""

import json
import threading

import pytest
import timm
import torch
from safetensors.torch import load_file, save_file

from workbench import runs
from workbench.engine import Run, lr_at
from workbench.engine.config import RunConfig
from workbench.models.backbones import layer_groups
from workbench.strategies import StrategyError

from .conftest import SHAPES

FAST = dict(data=str(SHAPES), image_size=64, batch_size=32, seed=0)


def _start_weights(tmp_path, name="test_efficientnet"):
    model = timm.create_model(name, num_classes=1000)
    path = tmp_path / f"{name}.safetensors"
    save_file({k: v.contiguous() for k, v in model.state_dict().items()}, str(path))
    return path, model


def test_partial_fine_tune_leaves_frozen_groups_bit_identical(tmp_path, runs_dir):
    weights, start = _start_weights(tmp_path)
    run = Run(RunConfig(**FAST, backbone="test_efficientnet", strategy="partial", freeze_depth=3, epochs=1,
                        weights=str(weights))).run()
    assert run.status == "finished", run.error
    trained = load_file(str(run.dir / runs.MODEL_FILE))
    groups = layer_groups(timm.create_model("test_efficientnet", num_classes=5))
    frozen = [n for g in groups[:3] for n in g.param_names]
    trainable = [n for g in groups[3:-1] for n in g.param_names]
    initial = start.state_dict()
    for name in frozen:
        assert torch.equal(trained[name], initial[name]), f"frozen {name} changed"
    # frozen BatchNorm layers stay in eval mode, so their running statistics do not move either
    frozen_modules = {n.rsplit(".", 1)[0] for n in frozen}
    for module in frozen_modules:
        key = f"{module}.running_mean"
        if key in initial:
            assert torch.equal(trained[key], initial[key]), f"{key} drifted"
    assert all(not torch.equal(trained[n], initial[n]) for n in trainable if n in initial and "bn" not in n)
    assert run.summary["trainable_params"] < run.summary["total_params"]


def test_linear_probe_on_bundled_pretrained_backbone_beats_chance_by_far(runs_dir):
    run = Run(RunConfig(data=str(SHAPES), backbone="tf_efficientnet_lite0", strategy="linear_probe",
                        image_size=128, epochs=20)).run()
    assert run.status == "finished", run.error
    assert run.summary["val_accuracy"] >= 0.7  # 5 classes: chance is 0.2
    assert run.summary["pretrained"]["kind"] == "bundled"
    assert run.summary["trainable_params"] == 1280 * 5 + 5  # the head only


def test_run_directory_has_every_record_and_the_model_reloads(runs_dir):
    run = Run(RunConfig(**FAST, backbone="test_resnet", strategy="full", epochs=2)).run()
    assert run.status == "finished", run.error
    assert run.dir.parent == runs_dir
    config = json.loads((run.dir / "config.json").read_text())
    assert config["strategy"] == "full" and config["epochs"] == 2 and config["image_size"] == 64
    assert config["weights_source"]["description"] == "none (random init)"
    lines = [json.loads(line) for line in (run.dir / "metrics.jsonl").read_text().splitlines()]
    assert [m["epoch"] for m in lines] == [1, 2]
    assert {"train_loss", "train_acc", "val_loss", "val_acc", "lr", "seconds", "images_per_s"} <= set(lines[0])
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["status"] == "finished"
    assert summary["class_names"] == ["circle", "cross", "square", "star", "triangle"]
    assert sum(map(sum, summary["confusion_matrix"])) == 50
    assert set(summary["per_class"]["star"]) == {"precision", "recall", "support"}
    assert summary["pretrained"]["pretrained"] is False
    loaded = runs.load_model(run.dir)
    assert loaded.class_names == summary["class_names"]
    record = runs.list_runs(runs_dir)[0]
    assert record.id == run.id and record.status == "finished" and len(record.metrics) == 2


def test_runs_are_reproducible_on_cpu(runs_dir):
    first = Run(RunConfig(**FAST, backbone="test_resnet", strategy="full", epochs=1)).run()
    second = Run(RunConfig(**FAST, backbone="test_resnet", strategy="full", epochs=1)).run()
    assert first.metrics[0]["train_loss"] == second.metrics[0]["train_loss"]
    assert first.metrics[0]["confusion_matrix"] == second.metrics[0]["confusion_matrix"]


def test_stop_ends_within_a_batch_and_keeps_what_was_learned(runs_dir):
    run = Run(RunConfig(**{**FAST, "batch_size": 8}, backbone="test_resnet", strategy="full", epochs=50))
    first_batch = threading.Event()
    run.subscribe(lambda e: first_batch.set() if e.kind == "batch" else None)
    run.start()
    assert first_batch.wait(60)
    run.stop()
    assert run.wait(30)
    assert run.status == "stopped"
    assert len(run.batches) < 50 * 24
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["status"] == "stopped" and summary["val_accuracy"] is not None
    assert (run.dir / runs.MODEL_FILE).exists()


def test_crash_mid_run_keeps_metrics_and_says_why(runs_dir, monkeypatch):
    run = Run(RunConfig(**FAST, backbone="test_resnet", strategy="full", epochs=3))

    def explode(event):
        if event.kind == "epoch_end" and event.data["metrics"]["epoch"] == 1:
            raise_in_training.set()

    raise_in_training = threading.Event()
    original = torch.optim.AdamW.step

    def step(self, *args, **kwargs):
        if raise_in_training.is_set():
            raise RuntimeError("simulated failure")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(torch.optim.AdamW, "step", step)
    run.subscribe(explode)
    run.run()
    assert run.status == "failed" and "simulated failure" in run.error
    summary = json.loads((run.dir / "summary.json").read_text())
    assert summary["status"] == "failed" and "simulated failure" in summary["error"]
    assert summary["epochs_completed"] == 1 and len(runs.read_jsonl(run.dir / "metrics.jsonl")) == 1


def test_freeze_depth_beyond_the_model_says_how_many_groups_it_has(runs_dir):
    run = Run(RunConfig(**FAST, backbone="test_resnet", strategy="partial", freeze_depth=40)).run()
    assert run.status == "failed"
    assert "--freeze-depth 40" in run.error and "layer groups" in run.error
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # nothing half-written


def test_unknown_strategy_lists_the_known_ones():
    with pytest.raises(StrategyError, match="linear_probe, partial, full, scratch"):
        RunConfig(data=str(SHAPES), strategy="magic")


def test_lr_schedule_warms_up_then_decays():
    lrs = [lr_at(s, 100, 10, 1.0) for s in range(100)]
    assert lrs[0] < lrs[9] == pytest.approx(1.0)
    assert lrs[-1] < 0.05 and all(a >= b for a, b in zip(lrs[10:], lrs[11:], strict=False))


def test_strong_augmentation_blends_images_and_labels(runs_dir, monkeypatch):
    import timm.data

    calls = []
    original = timm.data.Mixup.__call__
    monkeypatch.setattr(timm.data.Mixup, "__call__", lambda self, x, y: calls.append(len(x)) or original(self, x, y))
    run = Run(RunConfig(**FAST, backbone="test_resnet", strategy="full", epochs=1, augment="strong")).run()
    assert run.status == "finished", run.error
    assert calls and all(n % 2 == 0 for n in calls)


def test_augmentation_preview_shows_different_views_of_one_image():
    from workbench.data import augmentation_preview

    image = next((SHAPES / "star").iterdir())
    same = augmentation_preview(image, "none", 64, count=3)
    varied = augmentation_preview(image, "standard", 64, count=3)
    assert all(v.size == (64, 64) for v in same + varied)
    assert same[0].tobytes() == same[1].tobytes() and varied[0].tobytes() != varied[1].tobytes()
