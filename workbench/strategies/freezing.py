"""Freezing and unfreezing: the few operations on `requires_grad` that strategies combine."""

from __future__ import annotations

import torch

from workbench.core.errors import StrategyError
from workbench.models.backbones import LayerGroup


def apply_freezing(model: torch.nn.Module, groups: list[LayerGroup], frozen: int) -> None:
    """Freeze the first `frozen` groups (requires_grad False), unfreeze the rest."""
    frozen_names = {n for g in groups[:frozen] for n in g.param_names}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen_names)


def apply_trainable(model: torch.nn.Module, trainable: set[str]) -> None:
    """Only the parameters named in `trainable` train."""
    for name, param in model.named_parameters():
        param.requires_grad_(name in trainable)


def set_train_mode(model: torch.nn.Module) -> None:
    """model.train(), except BatchNorm layers whose parameters are all frozen: they stay in eval mode, so their
    running statistics keep the pretrained values instead of drifting to our small batches."""
    model.train()
    for module in model.modules():
        if isinstance(module, torch.nn.modules.batchnorm._BatchNorm):
            params = list(module.parameters(recurse=False))
            if params and not any(p.requires_grad for p in params):
                module.eval()


def trainable_parameter_count(model: torch.nn.Module) -> tuple[int, int]:
    """(trainable, total) parameter counts."""
    total = sum(p.numel() for p in model.parameters())
    trainable = sum(p.numel() for p in model.parameters() if p.requires_grad)
    return trainable, total


def trainable_per_group(model: torch.nn.Module, groups: list[LayerGroup]) -> list[int]:
    """How many parameters of each group train now (requires_grad)."""
    params = dict(model.named_parameters())
    return [sum(params[n].numel() for n in g.param_names if params[n].requires_grad) for g in groups]


def half_the_body(groups: list[LayerGroup]) -> int:
    """Half the body frozen: a safe starting point for partial fine-tuning."""
    return max(1, (len(groups) - 1) // 2)


def check_freeze_depth(freeze_depth: int, groups: list[LayerGroup], backbone: str) -> None:
    """The head (the last group) always trains, so at most len(groups) - 1 groups can be frozen."""
    limit = len(groups) - 1
    if not 0 <= freeze_depth <= limit:
        raise StrategyError(
            f"--freeze-depth {freeze_depth} is out of range: {backbone} has {len(groups)} layer groups "
            f"({groups[0].name} … {groups[-1].name}). Choose 0 (train everything) to {limit} (train only the head).")
