"""Multi-task learning: one shared backbone, one classifier head per task, trained on the weighted sum of the tasks'
losses (Caruana, 1997).

The first task is the run's own classes, answered by the model's own classifier: the class folders (for nested
folders `<coarse>/<fine>/<images>`, the top folder, the coarse class) or the label file's label column. The other
tasks are found beside them, by the objective, before anything is written:

- nested folders: the sub-folder inside each class folder is the second task's class (`animal/cat/x.jpg` is coarse
  'animal', fine 'cat'; a sub-folder name found under two class folders is one fine class); images lying directly in
  a class folder have no fine label;
- a label file: every further label column (`--task-columns`, or every column that is not the file, label or split
  column), a blank cell meaning "no label for this task".

Each extra task gets one `torch.nn.Linear` on the backbone's pooled features, attached to the model as
`model.task_heads` (`models.heads`), so the saved weights hold every head and model.json lists the tasks. Training
batches are indexed: each image's extra-task labels are looked up by its position, a missing one (-1) adds nothing to
the loss. A task of weight 0 is only measured: its head is left out of the optimiser and never changes. After each
epoch every task is measured on the validation images that have a label for it (one more pass over the validation
images: the engine's own pass scores only the first task); the summary keeps each task's accuracy, confusion matrix
and per-class report for the saved weights.
"""

from __future__ import annotations

import dataclasses
import math
import tempfile
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from workbench.core.fields import help_field
from workbench.core.metrics import confusion_matrix, per_class_report
from workbench.core.plot_style import LAYOUT, epoch_axis
from workbench.data import AUGMENTATIONS, DataError, LayoutChoice, Sample, recognise, unpack_zip
from workbench.data.images import readable_name
from workbench.data.labels import label_layout, label_tables_read, table_columns
from workbench.models.heads import TASKS_KEY, attach_task_heads, task_heads
from workbench.strategies.base import Figure, Objective, Panel, Strategy, Table, TrainingContext, register
from workbench.strategies.code import StrategyCode

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from workbench.data.layouts import Layout
    from workbench.engine.config import RunConfig
    from workbench.runs.records import RunRecord

MISSING = -1
"""An image's label for a task it has none for: ignored by that task's loss and accuracy."""
COARSE, FINE = "coarse", "fine"  # the two tasks of nested class folders


class TaskError(ValueError):
    """The data gives no usable second task, or the options do not fit the tasks found; the message says what to do."""


# ---------------------------------------------------------------------------------------------------------------
# Finding the tasks


@dataclass
class Tasks:
    """What the objective found: every task's name and classes (the run's own first), and for every image of the
    dataset (by its path relative to the dataset folder) its class index in each extra task, MISSING where it has
    none."""

    names: list[str]
    class_names: list[list[str]]
    labels: dict[str, list[int]]
    source: str  # how the extra tasks were found, as it reads after "the other tasks come from"

    def labels_of(self, samples: list[Sample]) -> torch.Tensor:
        """[len(samples), extra tasks] long tensor of the samples' extra-task labels (MISSING where none)."""
        blank = [MISSING] * (len(self.names) - 1)
        return torch.tensor([self.labels.get(_key_of(s.path, self.labels), blank) for s in samples],
                            dtype=torch.long).reshape(len(samples), len(self.names) - 1)

    def note(self, weights: list[float]) -> str:
        """One sentence: the tasks, their classes and weights, and how many images have a label for each."""
        counts = [len(self.labels)] + [sum(1 for row in self.labels.values() if row[k] != MISSING)
                                       for k in range(len(self.names) - 1)]
        parts = [f"'{name}' ({len(classes)} classes, weight {weight:g}, {count} of {len(self.labels)} images "
                 "labelled)" for name, classes, weight, count in zip(self.names, self.class_names, weights, counts,
                                                                        strict=True)]
        return f"{len(self.names)} tasks: {'; '.join(parts)}. The other tasks come from {self.source}."


def _key_of(path: Path, labels: dict[str, list[int]]) -> str:
    """The key of `labels` that names this image: the longest tail of its path that is one (the run may read a zip
    extracted elsewhere, so the folder above the dataset differs)."""
    parts = Path(path).parts
    for start in range(len(parts)):
        key = readable_name("/".join(parts[start:]))
        if key in labels:
            return key
    return ""


def find_tasks(config: RunConfig, class_names: list[str]) -> Tasks:
    """The tasks of `config`'s data, read from its layout (no image is opened; a zip is extracted to a scratch folder
    and removed again). TaskError when there is no second task or the options do not fit the tasks."""
    choice = LayoutChoice.from_values(config.to_dict())
    source = Path(config.data).expanduser()
    if source.is_dir():
        return _tasks_of_layout(recognise(source.absolute(), choice), choice, config.options.task_columns,
                                class_names)
    with tempfile.TemporaryDirectory(prefix="workbench-tasks-") as scratch:
        root = unpack_zip(source, Path(scratch))
        return _tasks_of_layout(recognise(root, choice), choice, config.options.task_columns, class_names)


def _tasks_of_layout(layout: Layout, choice: LayoutChoice, task_columns: str, class_names: list[str]) -> Tasks:
    if layout.kind == "label file":
        return _column_tasks(layout, choice, _names(task_columns), class_names)
    if task_columns.strip():
        raise TaskError(f"--task-columns names label-file columns, but '{layout.root}' is read from class folders: "
                        "its second task comes from the sub-folders inside them. Leave Task columns empty.")
    return _folder_tasks(layout, class_names)


def _folder_tasks(layout: Layout, class_names: list[str]) -> Tasks:
    """Coarse = the class folder, fine = the folder inside it (`<coarse>/<fine>/<image>`)."""
    fine_of = {}
    for found in layout.found:
        inside = PurePosixPath(found.rel[len(found.origin):] if found.rel.startswith(found.origin) else found.rel)
        fine_of[found.rel] = inside.parts[0] if len(inside.parts) > 1 else None
    fine_names = sorted({name for name in fine_of.values() if name is not None})
    if not fine_names:
        raise TaskError(f"No class folder of '{layout.root}' has sub-folders, so there is no second task. Multi-task "
                        "learning reads it from a folder inside each class folder (<coarse>/<fine>/<images>, e.g. "
                        "animal/cat/ and vehicle/bus/), or from a second label column of a label file. Add those "
                        "sub-folders, or choose another strategy.")
    _require_classes(FINE, fine_names, "sub-folder")
    labels = {rel: [fine_names.index(name) if name is not None else MISSING] for rel, name in fine_of.items()}
    return Tasks([COARSE, FINE], [class_names, fine_names], labels,
                 "the sub-folders inside each class folder (fine), the class folders being the coarse task")


def _names(task_columns: str) -> list[str]:
    return [name.strip() for name in task_columns.split(",") if name.strip()]


def _column_tasks(layout: Layout, choice: LayoutChoice, wanted: list[str], class_names: list[str]) -> Tasks:
    """One task per extra label column: the named ones, or every column not used for file names, labels or splits."""
    tables = label_tables_read(layout.root, choice)
    table = tables[0]
    columns = list(dict.fromkeys(c for t in tables if t.label_column for c in table_columns(t.path)))
    used = {c for t in tables for c in (t.file_column, t.label_column, t.split_column) if c}
    offered = [c for c in columns if c not in used]
    unknown = [c for c in wanted if c not in columns]
    if unknown:
        raise TaskError(f"{table.path.name} has no column {', '.join(repr(c) for c in unknown)} (its columns: "
                        f"{', '.join(repr(c) for c in columns)}). Name the extra label columns among those in Task "
                        "columns (--task-columns), separated by commas, or leave it empty to use every other column.")
    clashing = [c for c in wanted if c in used]
    if clashing:
        raise TaskError(f"Column {clashing[0]!r} of {table.path.name} already holds the file names, the labels or the "
                        "split, so it cannot be a further task. Name other columns in Task columns.")
    extra = wanted or offered
    if not extra:
        raise TaskError(f"{table.path.name} has no label column besides {table.label_column!r} (its columns: "
                        f"{', '.join(repr(c) for c in columns)}), so there is no second task. Add a column with a "
                        "second label for each image (a blank cell where an image has none), or choose another "
                        "strategy.")
    main = table.label_column or "label"
    names, all_classes, found = [main], [class_names], {c.rel: [] for c in layout.found}
    for column in extra:
        try:
            column_layout = label_layout(layout.root, dataclasses.replace(choice, label_column=column))
        except DataError as error:
            raise TaskError(f"Task column {column!r}: {error}") from None
        classes = column_layout.class_names
        _require_classes(column, classes, "value")
        label_of = {c.rel: classes.index(c.class_name) for c in column_layout.found}
        for rel, row in found.items():
            row.append(label_of.get(rel, MISSING))
        names.append(column)
        all_classes.append(classes)
    if len(set(names)) < len(names):
        raise TaskError(f"Two tasks are named alike ({', '.join(names)}): name each task column once.")
    return Tasks(names, all_classes, found, f"the column(s) {', '.join(repr(c) for c in extra)} of "
                                            f"{table.path.name} (a blank cell: no label for that task)")


def _require_classes(task: str, classes: list[str], what: str) -> None:
    if len(classes) < 2:
        raise TaskError(f"Task {task!r} has only one class ({', '.join(repr(c) for c in classes)}): there is nothing "
                        f"to tell apart. A task needs at least 2, e.g. a second {what} with images of another "
                        "kind.")


# ---------------------------------------------------------------------------------------------------------------
# The options


def parse_weights(text: str) -> list[float]:
    """The weights of `--task-weights` ("1, 0.5"); [] for the default (every task 1). ValueError in words."""
    if not text.strip():
        return []
    weights = []
    for part in (p.strip() for p in text.split(",")):
        try:
            weight = float(part)
        except ValueError:
            raise ValueError(f"--task-weights must be numbers separated by commas (e.g. 1, 0.5), got '{text}'.") \
                from None
        if not math.isfinite(weight) or weight < 0:
            raise ValueError(f"--task-weights: each weight must be 0 or more, got {part}.")
        weights.append(weight)
    return weights


@dataclass(frozen=True)
class MultitaskOptions:
    task_weights: str = field(default="", **help_field(
        "Multi-task: each task's weight in the summed loss, in task order, separated by commas (e.g. 1, 0.5; the "
        "first task is the class folders or the label column); empty: 1 each. A task of weight 0 is only measured."))
    task_columns: str = field(default="", **help_field(
        "Multi-task, with a label file: the extra label columns, one task each, separated by commas; empty: every "
        "column that is not the file, label or split column."))

    def __post_init__(self) -> None:
        """The weights' values only: whether there are as many as tasks is checked when the data is read."""
        weights = parse_weights(self.task_weights)
        if weights and not any(weights):
            raise ValueError("--task-weights are all 0, so nothing would be learned. Give at least one task a "
                             "weight above 0 (e.g. 1, 0 trains the first task and only measures the second).")

    def weights(self, tasks: int) -> list[float]:
        """One weight per task, for `tasks` tasks; TaskError when `--task-weights` gives another number."""
        weights = parse_weights(self.task_weights)
        if not weights:
            return [1.0] * tasks
        if len(weights) != tasks:
            raise TaskError(f"--task-weights gives {len(weights)} weight(s), but the data has {tasks} tasks. Give one "
                            "weight per task, in order, or leave it empty for 1 each.")
        return weights


# ---------------------------------------------------------------------------------------------------------------
# The objective


@dataclass
class TaskScores:
    """One task measured on the validation images that have a label for it."""

    accuracy: float | None
    matrix: list[list[int]]
    images: int


def score_task(logits: torch.Tensor, labels: torch.Tensor) -> TaskScores:
    """Accuracy and confusion matrix over the images labelled for the task (labels MISSING are left out)."""
    known = labels != MISSING
    preds, truth = logits[known].argmax(1), labels[known]
    accuracy = round((preds == truth).float().mean().item(), 5) if len(truth) else None
    return TaskScores(accuracy, confusion_matrix(truth, preds, logits.shape[1]), len(truth))


class MultitaskObjective(Objective):
    """Extra heads on the shared features; each image's extra-task labels looked up by its position in the batch."""

    indexed = True

    def __init__(self, config: RunConfig, class_names: list[str]):
        self.options: MultitaskOptions = config.options
        self.tasks = find_tasks(config, class_names)
        self.weights = self.options.weights(len(self.tasks.names))
        self.train_labels: torch.Tensor | None = None
        self.val_labels: torch.Tensor | None = None
        self._extra_logits: list[torch.Tensor] = []
        self._correct = [0] * len(self.tasks.names)
        self._seen = [0] * len(self.tasks.names)

    def info(self) -> dict:
        return {"tasks_note": self.tasks.note(self.weights), TASKS_KEY: self.model_info()[TASKS_KEY]}

    def model_info(self) -> dict:
        return {TASKS_KEY: [{"name": name, "class_names": classes, "weight": weight} for name, classes, weight
                            in zip(self.tasks.names, self.tasks.class_names, self.weights, strict=True)]}

    def setup(self, ctx: TrainingContext) -> list[dict]:
        heads = attach_task_heads(ctx.model, self.model_info()[TASKS_KEY])
        self.train_labels = self.tasks.labels_of(ctx.train_samples)
        self.val_labels = self.tasks.labels_of(ctx.val_samples)
        groups = []
        for head, weight in zip(heads, self.weights[1:], strict=True):
            # weight 0: the task is only measured; out of the optimiser, so not even weight decay moves its head
            head.requires_grad_(weight > 0)
            if weight > 0:
                groups += [{"params": [head.weight]}, {"params": [head.bias], "weight_decay": 0.0}]
        return groups

    def forward(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        features = model.forward_head(model.forward_features(inputs), pre_logits=True)
        first, *self._extra_logits = [head(features) for head in task_heads(model)]
        return first

    def loss(self, label_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
             extra: list[torch.Tensor]) -> torch.Tensor:
        labels = self.train_labels[extra[0].cpu()].to(logits.device, non_blocking=True)
        self._count(0, logits, targets)
        total = self.weights[0] * label_loss
        for k, (task_logits, weight) in enumerate(zip(self._extra_logits, self.weights[1:], strict=True)):
            known = labels[:, k] != MISSING
            self._count(k + 1, task_logits[known], labels[known, k])
            if weight > 0 and known.any():  # a batch without a label for the task adds nothing (not a NaN)
                total = total + weight * F.cross_entropy(task_logits[known].float(), labels[known, k])
        self._extra_logits = []
        return total

    def _count(self, task: int, logits: torch.Tensor, labels: torch.Tensor) -> None:
        self._correct[task] += (logits.argmax(1) == labels).sum().item()
        self._seen[task] += len(labels)

    def evaluate(self, ctx: TrainingContext) -> list[TaskScores]:
        """Every task on the validation images, through the model as it is now."""
        features, first_labels = ctx.features(ctx.val_samples, "validation (every task)")
        with torch.inference_mode():
            logits = [head(features.to(ctx.device)).float().cpu() for head in task_heads(ctx.model)]
        labels = [first_labels, *self.val_labels.T]
        return [score_task(scores, truth) for scores, truth in zip(logits, labels, strict=True)]

    def epoch_metrics(self, ctx: TrainingContext) -> dict:
        scores = self.evaluate(ctx)
        names = self.tasks.names
        metrics = {
            "task_train_acc": {name: round(correct / seen, 5) if seen else None
                               for name, correct, seen in zip(names, self._correct, self._seen, strict=True)},
            "task_val_acc": {name: s.accuracy for name, s in zip(names, scores, strict=True)},
            "task_confusion": {name: s.matrix for name, s in zip(names, scores, strict=True)},
        }
        self._correct, self._seen = [0] * len(names), [0] * len(names)
        return metrics

    def summary(self, final: dict, ctx: TrainingContext) -> dict:
        if "task_val_acc" in final:  # the saved weights are an evaluated epoch's
            accuracy, matrices = final["task_val_acc"], final["task_confusion"]
        elif final:  # stopped mid-epoch: the saved weights are measured now
            scores = self.evaluate(ctx)
            accuracy = {name: s.accuracy for name, s in zip(self.tasks.names, scores, strict=True)}
            matrices = {name: s.matrix for name, s in zip(self.tasks.names, scores, strict=True)}
        else:
            accuracy, matrices = {}, {}
        labelled = [len(ctx.val_samples), *(int((column != MISSING).sum()) for column in self.val_labels.T)] \
            if self.val_labels is not None else [None] * len(self.tasks.names)
        return {"tasks_note": self.tasks.note(self.weights), TASKS_KEY: [
            {"name": name, "class_names": classes, "weight": weight, "val_accuracy": accuracy.get(name),
             "val_images": count, "confusion_matrix": matrices.get(name),
             "per_class": per_class_report(matrices[name], classes) if matrices.get(name) else None}
            for name, classes, weight, count in zip(self.tasks.names, self.tasks.class_names, self.weights, labelled,
                                                    strict=True)]}


# ---------------------------------------------------------------------------------------------------------------
# The strategy


@register
class Multitask(Strategy):
    name = "multitask"
    title = "Multi-task learning (one backbone, several heads)"
    explanation = (
        "Sometimes each picture has more than one answer: a coarse one and a fine one (animal, and which animal), "
        "or two labels in a label file (the species, and whether the photo is indoors). Multi-task learning trains "
        "one shared backbone with one small classifier head per question, on the sum of the questions' losses, each "
        "with a weight you choose. Because every head reads the same features, what one task teaches the backbone "
        "(that a star has inward corners) can help the others, and one model answers every question at the cost of "
        "one. It works best when the tasks are related and each has enough labelled images; a task that is very "
        "easy or very hard, or a weight too large, can pull the shared features its way and cost the other tasks "
        "accuracy. An image without a label for a task simply adds nothing to that task's loss, and a task of "
        "weight 0 is only measured, never trained. The tasks come from nested class folders "
        "(<coarse>/<fine>/<images>) or from extra label columns of a label file. Every layer trains (a full "
        "fine-tune)."
    )
    trains = "every layer, the model's own classifier for the first task and one extra head per further task"
    default_epochs = 5
    default_lr = 5e-4
    Options = MultitaskOptions
    race = False  # needs data with several tasks

    def check(self, config: RunConfig) -> None:
        if AUGMENTATIONS[config.augment].mixes_images:
            # a blend of two images has a mixed first-task label the engine can build, but no extra-task labels
            raise ValueError(f"--augment {config.augment} blends pairs of images, which multi-task learning cannot "
                             "use: each image's labels for the other tasks belong to it alone. Choose none, light or "
                             "standard.")

    def prepare_model(self, model: torch.nn.Module, groups, config: RunConfig) -> None:
        super().prepare_model(model, groups, config)
        weights = parse_weights(config.options.task_weights)
        if weights and weights[0] == 0:  # the first task only measured: its classifier must not move at all
            model.get_classifier().requires_grad_(False)

    def objective(self, config: RunConfig, class_names: list[str]) -> Objective:
        return MultitaskObjective(config, class_names)

    def option_notes(self, config: RunConfig, class_names: list[str]) -> list[str]:
        tasks = find_tasks(config, class_names)
        return [tasks.note(config.options.weights(len(tasks.names)))]

    def plan(self, config: RunConfig) -> list[str]:
        weights = config.options.task_weights.strip() or "1 each"
        columns = config.options.task_columns.strip()
        return [f"**Task weights:** {weights}" + (f" · **task columns:** {columns}" if columns else "")]

    def code(self, config: RunConfig, groups) -> StrategyCode:
        # The script's loop scores one label per image; the extra heads need every image's other labels, which the
        # script's dataset does not read: it says so and trains the first task.
        return StrategyCode(left_out=[
            "the extra task heads: the workbench also trained one head per further task (sub-folders or extra label "
            "columns) on the shared features, with the weighted sum of the tasks' losses; this script learns the "
            "first task alone, as a plain full fine-tune"])

    def panels(self, record: RunRecord) -> list[Panel]:
        panel = Panel("Tasks", [record.facts.get("tasks_note", "")])
        if record.metrics:
            panel.blocks += [Figure(task_curves(record.metrics, record.config.epochs if record.config else None),
                                    "task_curves"),
                             "Validation accuracy of every task, epoch by epoch (each on the validation images "
                             "that have a label for it); dashed: the same on the training batches."]
        for task in task_results(record):
            panel.blocks += _task_blocks(task)
        return [panel]


def task_results(record: RunRecord) -> list[dict]:
    """Every task's saved-model results from the summary, or while training the latest epoch's."""
    if record.summary and record.summary.get(TASKS_KEY):
        return record.summary.get(TASKS_KEY)
    last = record.metrics[-1] if record.metrics else {}
    return [{"name": task["name"], "class_names": task["class_names"], "weight": task.get("weight"),
             "val_accuracy": (last.get("task_val_acc") or {}).get(task["name"]),
             "confusion_matrix": (last.get("task_confusion") or {}).get(task["name"])}
            for task in record.facts.get(TASKS_KEY) or [] if last]


def _task_blocks(task: dict) -> list:
    import pandas as pd  # for the pages only: not loaded with the engine

    accuracy = task.get("val_accuracy")
    weight = task.get("weight")
    blocks = [f"**{task['name']}**: {'—' if accuracy is None else f'{accuracy:.1%}'} right on validation"
              + (" (weight 0: measured, never trained)" if weight == 0 else "")]
    matrix, names = task.get("confusion_matrix"), task["class_names"]
    if matrix:
        blocks.append(Table(pd.DataFrame(matrix, index=[f"true {n}" for n in names], columns=names)))
    if task.get("per_class"):
        blocks.append(Table(pd.DataFrame(task["per_class"]).T, {"precision": "{:.0%}", "recall": "{:.0%}"}))
    return blocks


TASK_COLOURS = ("#1f77b4", "#d62728", "#2ca02c", "#9467bd", "#ff7f0e", "#8c564b")


def task_curves(metrics: list[dict], epochs: int | None = None) -> go.Figure:
    """Per epoch, every task's validation accuracy (solid) and training accuracy (dashed), one colour per task."""
    import plotly.graph_objects as go  # for the pages only: not loaded with the engine

    fig = go.Figure()
    done = [m["epoch"] for m in metrics]
    names = list(dict.fromkeys(name for m in metrics for name in (m.get("task_val_acc") or {})))
    for index, name in enumerate(names):
        colour = TASK_COLOURS[index % len(TASK_COLOURS)]
        for key, dash, what in (("task_val_acc", None, "validation"), ("task_train_acc", "dash", "training")):
            fig.add_scatter(x=done, y=[(m.get(key) or {}).get(name) for m in metrics], mode="lines+markers",
                            name=f"{name} ({what})", line=dict(color=colour, dash=dash))
    epoch_axis(fig, done, epochs)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return fig.update_layout(**LAYOUT, height=340, title="Accuracy of every task, epoch by epoch")

