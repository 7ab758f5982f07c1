"""Multi-task learning: tasks found in nested folders and label-file columns, the summed loss that skips missing
labels, heads of weight 0 that never move, and every head saved, reloaded, predicted with, exported and shown."""

from __future__ import annotations

import importlib.util
import json
import os
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from safetensors.torch import load_file
from streamlit.testing.v1 import AppTest

from ui_common import RUN_ID, get_registry
from workbench import runs
from workbench.deploy.codegen import script_for_run
from workbench.deploy.export import export_zip, import_zip
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.models.trained import Predictor, load_model
from workbench.strategies import Figure, Table, get_strategy
from workbench.strategies.multitask import MISSING, MultitaskObjective, find_tasks

from .conftest import REPO, SHAPES, train_page_showing

pytestmark = [pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning"),
              pytest.mark.filterwarnings("ignore:You are using the legacy TorchScript-based ONNX export")]

# Pretrained lite0 at 64 px: seconds per epoch on a CPU, and well above chance on both tasks after 3 epochs.
LEARNS = dict(strategy="multitask", backbone="tf_efficientnet_lite0", image_size=64, batch_size=16, epochs=3, seed=0)
# A random tiny network for one epoch: enough to see which weights move.
TINY = dict(strategy="multitask", backbone="test_efficientnet", weights="none", image_size=64, batch_size=16,
            epochs=1, augment="none", seed=0)


def _sample_data():
    spec = importlib.util.spec_from_file_location("make_sample_data", REPO / "sample_data" / "make_sample_data.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def nested(tmp_path_factory) -> Path:
    """The sample shapes as <convex|concave>/<shape>/ folders, 32 images per shape."""
    folder = tmp_path_factory.mktemp("data") / "shapes_nested"
    _sample_data().write_nested(folder, images_per_class=32)
    return folder


@pytest.fixture(scope="module")
def two_labels(tmp_path_factory) -> Path:
    """The sample shapes in images/ with labels.csv: label (the shape) and group (convex / concave, some blank)."""
    folder = tmp_path_factory.mktemp("data") / "shapes_two_labels"
    _sample_data().write_two_labels(folder, images_per_class=16)
    return folder


@pytest.fixture(scope="module")
def nested_run(nested, tmp_path_factory) -> Path:
    run = Run(RunConfig(data=str(nested), runs_dir=str(tmp_path_factory.mktemp("runs")), **LEARNS)).run()
    assert run.status == "finished", run.error
    return run.dir


def _fine_labels(paths: list[Path], class_names: list[str]) -> torch.Tensor:
    return torch.tensor([class_names.index(Path(p).parent.name) for p in paths])


# -------------------------------------------------------------------------------------------------------------------
# Options and data that cannot make several tasks


def test_options_are_refused_in_words():
    with pytest.raises(ValueError, match="--task-weights are all 0, so nothing would be learned"):
        RunConfig(data="x", strategy="multitask", options={"task_weights": "0, 0"})
    with pytest.raises(ValueError, match="must be 0 or more, got -1"):
        RunConfig(data="x", strategy="multitask", options={"task_weights": "1, -1"})
    with pytest.raises(ValueError, match=r"numbers separated by commas \(e.g. 1, 0.5\), got 'one'"):
        RunConfig(data="x", strategy="multitask", options={"task_weights": "one"})
    with pytest.raises(ValueError, match="blends pairs of images"):
        RunConfig(data="x", strategy="multitask", augment="strong")
    assert not get_strategy("multitask").race  # it needs data with several tasks


def _refused(tmp_path, data: Path, message: str, **options) -> None:
    runs_dir = tmp_path / "runs"
    run = Run(RunConfig(data=str(data), runs_dir=str(runs_dir), **TINY, options=options)).run()
    assert run.status == "failed"
    assert message in run.error, run.error
    assert not runs_dir.exists() or not any(runs_dir.iterdir())  # refused before anything was written


def test_data_without_a_second_task_or_options_that_do_not_fit_it_are_refused_before_anything_is_written(
        tmp_path, nested, two_labels):
    _refused(tmp_path, SHAPES, "has sub-folders, so there is no second task")
    _refused(tmp_path, nested, "--task-weights gives 3 weight(s), but the data has 2 tasks", task_weights="1,1,1")
    _refused(tmp_path, nested, "--task-columns names label-file columns", task_columns="group")
    _refused(tmp_path, two_labels, "labels.csv has no column 'colour'", task_columns="colour")
    _refused(tmp_path, two_labels, "already holds the file names, the labels or the split", task_columns="label")

    one_fine = tmp_path / "one_fine"
    for coarse, shape in (("round", "circle"), ("pointy", "star")):
        (one_fine / coarse / "thing").mkdir(parents=True)
        for image in sorted((SHAPES / shape).iterdir())[:6]:
            (one_fine / coarse / "thing" / image.name).write_bytes(image.read_bytes())
    _refused(tmp_path, one_fine, "Task 'fine' has only one class ('thing')")

    single = tmp_path / "single"
    single.mkdir()
    rows = (two_labels / "labels.csv").read_text().splitlines()
    (single / "labels.csv").write_text("\n".join(",".join(row.split(",")[:2]) for row in rows) + "\n")
    shutil.copytree(two_labels / "images", single / "images")
    _refused(tmp_path, single, "has no label column besides 'label'")


# -------------------------------------------------------------------------------------------------------------------
# The loss


def test_the_loss_is_the_weighted_sum_and_an_image_without_a_label_adds_nothing(two_labels):
    config = RunConfig(data=str(two_labels), **{**TINY, "options": {"task_weights": "0.5, 2"}}).resolved(64)
    objective = MultitaskObjective(config, ["circle", "cross", "square", "star", "triangle"])
    objective.train_labels = torch.tensor([[0], [1], [MISSING], [MISSING]])
    first, second = torch.randn(4, 5), torch.randn(4, 2)
    label_loss = F.cross_entropy(first, torch.tensor([0, 1, 2, 3]))

    objective._extra_logits = [second]
    total = objective.loss(label_loss, first, torch.tensor([0, 1, 2, 3]), [torch.tensor([0, 1, 2, 3])])
    expected = 0.5 * label_loss + 2 * F.cross_entropy(second[:2], torch.tensor([0, 1]))
    assert total.item() == pytest.approx(expected.item(), rel=1e-6)

    objective._extra_logits = [second[2:]]  # a batch where no image has the second label: no NaN, no term
    total = objective.loss(label_loss, first[2:], torch.tensor([2, 3]), [torch.tensor([2, 3])])
    assert total.item() == pytest.approx(0.5 * label_loss.item(), rel=1e-6)


def test_tasks_are_found_in_nested_folders_and_label_columns(nested, two_labels):
    config = RunConfig(data=str(nested), **TINY)
    tasks = find_tasks(config, ["concave", "convex"])
    assert tasks.names == ["coarse", "fine"]
    assert tasks.class_names[1] == ["circle", "cross", "square", "star", "triangle"]
    assert tasks.labels["concave/star/star_003.jpg"] == [3]

    tasks = find_tasks(RunConfig(data=str(two_labels), **TINY), ["circle", "cross", "square", "star", "triangle"])
    assert tasks.names == ["label", "group"] and tasks.class_names[1] == ["concave", "convex"]
    assert tasks.labels["images/circle_003.jpg"] == [MISSING] and tasks.labels["images/star_000.jpg"] == [MISSING]
    assert tasks.labels["images/star_001.jpg"] == [0]
    assert "'group' (2 classes, weight 1, 60 of 80 images labelled)" in tasks.note([1.0, 1.0])


# -------------------------------------------------------------------------------------------------------------------
# Training


def test_every_task_learns_above_chance_with_per_task_curves_and_results(nested_run):
    record = runs.load_run(nested_run)
    tasks = {task["name"]: task for task in record.summary.get("tasks")}
    assert tasks["coarse"]["val_accuracy"] > 0.7  # 3 of 5 shapes are convex: always 'convex' would score 0.6
    assert tasks["fine"]["val_accuracy"] > 0.5  # chance: 0.2
    assert tasks["coarse"]["val_accuracy"] == record.summary.val_accuracy  # the model's own classifier
    for task in tasks.values():
        assert sum(map(sum, task["confusion_matrix"])) == task["val_images"] == 32
        assert set(task["per_class"]) == set(task["class_names"])
    assert [sorted(m["task_val_acc"]) for m in record.metrics] == [["coarse", "fine"]] * 3


def test_a_label_file_with_blank_second_labels_trains_and_measures_only_the_labelled(two_labels, tmp_path):
    run = Run(RunConfig(data=str(two_labels), runs_dir=str(tmp_path), **TINY)).run()
    assert run.status == "finished", run.error
    label, group = run.summary["tasks"]
    assert (label["name"], group["name"]) == ("label", "group")
    assert label["val_images"] == run.info["num_val"] > group["val_images"] > 0
    assert sum(map(sum, group["confusion_matrix"])) == group["val_images"]
    assert run.metrics[0]["train_loss"] > 0


@pytest.mark.parametrize("weights, still, moved", [("1, 0", "task_heads.0.", "classifier."),
                                                   ("0, 1", "classifier.", "task_heads.0.")])
def test_a_task_of_weight_0_leaves_its_head_exactly_as_it_started(nested, tmp_path, monkeypatch, weights, still,
                                                                  moved):
    started: dict[str, torch.Tensor] = {}
    setup = MultitaskObjective.setup

    def remember_start(self, ctx):
        groups = setup(self, ctx)
        started.update({k: v.detach().clone() for k, v in ctx.model.state_dict().items()})
        return groups

    monkeypatch.setattr(MultitaskObjective, "setup", remember_start)
    run = Run(RunConfig(data=str(nested), runs_dir=str(tmp_path), **{**TINY, "options": {"task_weights": weights}}
                        )).run()
    assert run.status == "finished", run.error
    saved = load_file(str(run.dir / runs.MODEL_FILE))
    for suffix in ("weight", "bias"):
        assert torch.equal(saved[still + suffix], started[still + suffix])  # not even weight decay moved it
        assert not torch.equal(saved[moved + suffix], started[moved + suffix])


# -------------------------------------------------------------------------------------------------------------------
# The saved model: reloaded, predicted with, exported, imported


def test_the_saved_run_reloads_every_head_and_predicts_every_task_as_training_measured(nested_run):
    loaded = load_model(nested_run)
    assert loaded.model.task_heads[0].out_features == 5
    predictor = Predictor(loaded.model, loaded.class_names, loaded.info)
    assert [t["name"] for t in predictor.tasks] == ["coarse", "fine"]
    with runs.load_run(nested_run).validation_images() as samples:
        paths = [s.path for s in samples]
        coarse, fine = predictor.task_logits(paths)
        coarse_truth = torch.tensor([s.label for s in samples])
    tasks = {task["name"]: task for task in runs.load_run(nested_run).summary.get("tasks")}
    fine_truth = _fine_labels(paths, tasks["fine"]["class_names"])
    assert (coarse.argmax(1) == coarse_truth).float().mean().item() == pytest.approx(tasks["coarse"]["val_accuracy"])
    assert (fine.argmax(1) == fine_truth).float().mean().item() == pytest.approx(tasks["fine"]["val_accuracy"])

    answers = predictor.predict_tasks([paths[0]], top_k=2)[0]
    assert list(answers) == ["coarse", "fine"] and [len(top) for top in answers.values()] == [2, 2]
    assert answers["coarse"] == predictor.predict([paths[0]], top_k=2)[0]


def test_the_export_writes_every_head_and_its_predict_py_prints_every_tasks_answer(nested_run, tmp_path):
    exported = export_zip(nested_run, tmp_path / "model.zip")
    folder = tmp_path / "unzipped"
    zipfile.ZipFile(exported).extractall(folder)
    info = json.loads((folder / "model.json").read_text())
    assert [t["name"] for t in info["tasks"]] == ["coarse", "fine"]
    readme = (folder / "README.txt").read_text()
    tasks = {task["name"]: task for task in runs.load_run(nested_run).summary.get("tasks")}
    for name in ("coarse", "fine"):
        assert f"  {name}: {tasks[name]['val_accuracy']:.1%} right on validation" in readme

    image = _first_validation_image(nested_run)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}  # it must not need the workbench
    done = subprocess.run([sys.executable, "predict.py", str(image)], cwd=folder, env=env, capture_output=True,
                          text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    expected = Predictor.from_run(nested_run).predict_tasks([image])[0]
    assert done.stdout.strip().startswith(f"{image}: coarse: {expected['coarse'][0][0]} ")
    assert f" | fine: {expected['fine'][0][0]} " in done.stdout

    imported = Predictor.from_run(import_zip(exported, tmp_path / "imported")).predict_tasks([image])[0]
    assert {task: [name for name, _ in top] for task, top in imported.items()} == \
        {task: [name for name, _ in top] for task, top in expected.items()}


def _first_validation_image(run_dir: Path) -> Path:
    with runs.load_run(run_dir).validation_images() as samples:
        return samples[0].path


def test_show_me_the_code_says_the_extra_heads_are_left_out(nested_run):
    script = script_for_run(nested_run)
    compile(script, "train.py", "exec")
    assert "the extra task heads" in script and "plain full fine-tune" in script


# -------------------------------------------------------------------------------------------------------------------
# The pages


def test_the_train_page_draws_every_tasks_curves_and_results(nested_run, monkeypatch):
    record = runs.load_run(nested_run)
    (panel,) = get_strategy("multitask").panels(record)
    assert sum(isinstance(b, Figure) for b in panel.blocks) == 1
    assert sum(isinstance(b, Table) for b in panel.blocks) == 4  # a confusion matrix and a per-class table per task
    at = train_page_showing(record, monkeypatch)
    assert "Tasks" in [header.value for header in at.subheader]
    texts = "\n".join(caption.value for caption in at.caption)
    assert "**coarse**:" in texts and "**fine**:" in texts
    titles = [json.loads(chart.proto.spec)["layout"].get("title", {}).get("text") for chart in at.get("plotly_chart")]
    assert "Accuracy of every task, epoch by epoch" in titles


@pytest.fixture
def shown_run(nested_run, runs_dir):
    """The trained run in this test's runs folder, the one the app lists."""
    get_registry.clear()
    yield shutil.copytree(nested_run, runs_dir / nested_run.name)
    get_registry.clear()


def test_the_predict_page_shows_every_tasks_top_classes(shown_run):
    at = AppTest.from_file(str(REPO / "pages" / "5_predict.py"), default_timeout=60)
    at.session_state[RUN_ID] = shown_run.name
    at.run()
    assert not at.exception
    assert "answers 2 questions" in "\n".join(c.value for c in at.caption)
    picture = (SHAPES / "star" / "star_004.jpg").read_bytes()
    at.file_uploader(key="predict_uploads").set_value([("star.jpg", picture, "image/jpeg")]).run()
    assert not at.exception
    assert len(at.get("progress")) == 2 + 3  # coarse has 2 classes, fine its top 3
    texts = "\n".join(m.value for m in at.markdown)
    assert "coarse: **" in texts and "fine: **" in texts


def test_the_inside_page_has_a_tab_for_every_task(shown_run):
    at = AppTest.from_file(str(REPO / "pages" / "6_insight.py"), default_timeout=120)
    at.session_state["insight_tab"] = "Every task"
    at.run()
    assert not at.exception, at.exception
    opened = next(tab for tab in at.tabs if tab.children)
    assert [m.label for m in opened.get("metric")] == ["coarse accuracy", "fine accuracy"]
    assert len(opened.get("plotly_chart")) == 2 and len(opened.dataframe) == 2
