"""Run options whose defaults were set by measurement (bench/bench_compile.py, bench/README.md): torch.compile, off by
default, and the default image size (a CPU's smaller size only where the backbone trains every epoch)."""

from __future__ import annotations

import pytest
import torch
from safetensors.torch import load_file

from workbench import runs
from workbench.analysis.estimate import image_size_note
from workbench.engine import Run
from workbench.engine.config import CPU_IMAGE_SIZE, RunConfig
from workbench.models.trained import Predictor, model_files
from workbench.runs.records import validation_images

from .conftest import SHAPES

# 190 training images in batches of 38: every batch the same size, so the model compiles once (a smaller last batch
# would compile it again, which only costs time).
TINY = {"backbone": "test_efficientnet", "strategy": "full", "epochs": 1, "lr": 0.003, "augment": "none",
        "image_size": 64, "batch_size": 38, "weights": "none", "device": "cpu"}


@pytest.mark.parametrize("strategy", ["full", "linear_probe"])  # compiled: the training step; the feature pass
def test_a_compiled_run_trains_and_saves_weights_that_reload_to_the_same_answers(tmp_path, strategy):
    config = RunConfig(data=str(SHAPES), runs_dir=str(tmp_path), compile=True, **{**TINY, "strategy": strategy})
    if problem := config.compile_problem():
        pytest.skip(f"torch.compile cannot run here: {problem}")
    phases = []
    run = Run(config)
    run.subscribe(lambda event: phases.append(event.data["phase"]) if event.kind == "status" else None)
    run.run()
    assert run.status == "finished", run.error

    assert any(phase.startswith("compiling the model") for phase in phases)  # the wait for the first batch is named
    weights = load_file(model_files(run.dir)[0])
    assert not any("_orig_mod" in key for key in weights)  # the plain module's weights, not the compiled wrapper's
    summary = runs.load_run(run.dir).summary
    predictor = Predictor.from_run(run.dir)
    with validation_images(run.dir) as samples:
        predicted = predictor.logits([s.path for s in samples]).argmax(1)
    targets = torch.tensor([s.label for s in samples])
    assert round((predicted == targets).float().mean().item(), 5) == summary.val_accuracy


def test_compile_without_a_cxx_compiler_says_what_to_install(monkeypatch):
    def no_compiler() -> str:
        raise RuntimeError("no C++ compiler found")

    monkeypatch.setattr("torch._inductor.cpp_builder.get_cpp_compiler", no_compiler)
    config = RunConfig(data=str(SHAPES), compile=True, **TINY)
    assert "needs a C++ compiler" in config.compile_problem() and "without --compile" in config.compile_problem()
    assert RunConfig(data=str(SHAPES), **TINY).compile_problem() is None  # off by default: nothing to check


def test_on_a_cpu_only_strategies_that_train_the_backbone_get_the_smaller_default_size():
    def default_size(strategy: str) -> int:
        return RunConfig(data=str(SHAPES), strategy=strategy, device="cpu").resolved(native_image_size=224).image_size

    assert default_size("linear_probe") == 224  # the backbone runs once per image: the native size costs little
    assert default_size("full") == default_size("partial") == CPU_IMAGE_SIZE


def test_the_image_size_note_says_what_the_size_costs_and_buys():
    assert "best accuracy" in image_size_note(False, 224, 224)
    assert "once per image" in image_size_note(False, 224, 224)
    assert image_size_note(True, 160, 224).startswith("160 px instead of the native 224: about 2.0× faster training")
    assert "saves little time" in image_size_note(False, 160, 224)
    assert "slower" in image_size_note(True, 288, 224)
