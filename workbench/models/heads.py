"""Several classification tasks on one backbone: the model's own classifier answers the first task, one extra linear
head per further task answers the others, every head reading the same pooled features.

The extra heads live in `model.task_heads` (a `torch.nn.ModuleList`), so they are part of the model's state_dict and
are saved, checkpointed and restored with it. model.json lists the tasks under `TASKS_KEY`, in order, each as
{"name", "class_names", ...}: the first is answered by the model's classifier (its class names are the model's), task
i > 0 by `model.task_heads[i - 1]`. `attach_task_heads` rebuilds the heads from that list before the weights are
loaded; `task_logits` gives every task's scores from one pass through the backbone.
"""

from __future__ import annotations

import torch

TASKS_KEY = "tasks"
"""model.json's list of tasks ({"name", "class_names"} each, the model's own classes first); absent: one task."""
HEADS_ATTRIBUTE = "task_heads"


def feature_width(model: torch.nn.Module) -> int:
    """How many pooled features the model's classifier reads: the input width of every extra head."""
    classifier = model.get_classifier()
    if isinstance(classifier, torch.nn.Linear):
        return classifier.in_features
    # a classifier that is not a plain Linear (a 1x1 conv, say) reads the width timm reports for its head
    return int(getattr(model, "head_hidden_size", None) or model.num_features)


def tasks_of(info: dict) -> list[dict]:
    """The tasks a model.json describes: its `TASKS_KEY` list, or the one task of a plain classifier."""
    return list(info.get(TASKS_KEY) or [{"name": "class", "class_names": info["class_names"]}])


def attach_task_heads(model: torch.nn.Module, tasks: list[dict]) -> torch.nn.ModuleList | None:
    """Give `model` one new linear head per task after the first (freshly initialised, on the model's device), as
    `model.task_heads`; returns them (None for a single task, when nothing is attached)."""
    if len(tasks) < 2:
        return None
    width = feature_width(model)
    device = next(model.parameters()).device
    heads = torch.nn.ModuleList(torch.nn.Linear(width, len(task["class_names"])) for task in tasks[1:]).to(device)
    setattr(model, HEADS_ATTRIBUTE, heads)
    return heads


def task_heads(model: torch.nn.Module) -> list[torch.nn.Module]:
    """Every task's head in task order: the model's classifier, then the extra heads (none for a plain model)."""
    return [model.get_classifier(), *getattr(model, HEADS_ATTRIBUTE, [])]


def task_logits(model: torch.nn.Module, inputs: torch.Tensor) -> list[torch.Tensor]:
    """Every task's scores for a normalised batch, from one pass through the backbone (a plain model: one entry,
    the same as `model(inputs)`)."""
    if not hasattr(model, HEADS_ATTRIBUTE):
        return [model(inputs)]
    features = model.forward_head(model.forward_features(inputs), pre_logits=True)
    return [head(features) for head in task_heads(model)]
