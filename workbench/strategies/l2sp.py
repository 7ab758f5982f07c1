"""L2-SP (Li, Grandvalet and Davoine, 2018): every layer trains, pulled towards its pretrained weights."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.core.fields import help_field
from workbench.models.backbones import head_parameter_names
from workbench.strategies.base import Objective, Strategy, register
from workbench.strategies.code import StrategyCode, setting


@dataclass(frozen=True)
class L2SPOptions:
    l2sp_alpha: float = field(default=0.1, **help_field("L2-SP: pull of the backbone towards its pretrained weights."))
    l2sp_beta: float = field(default=0.01, **help_field("L2-SP: plain L2 penalty on the new head."))

    def __post_init__(self) -> None:
        if self.l2sp_alpha < 0 or self.l2sp_beta < 0:
            raise ValueError("--l2sp-alpha and --l2sp-beta must be 0 or more.")


class L2SPPenalty(Objective):
    """loss + alpha/2 * ||w - w0||^2 over the backbone + beta/2 * ||w_head||^2, w0 the weights training started from."""

    def __init__(self, options: L2SPOptions):
        self.options = options
        self.start: dict[str, torch.Tensor] = {}
        self.head: list[torch.nn.Parameter] = []
        self.params: dict[str, torch.nn.Parameter] = {}

    def setup(self, ctx) -> list[dict]:
        head = head_parameter_names(ctx.model)
        self.params = dict(ctx.model.named_parameters())
        self.start = {n: p.detach().clone() for n, p in self.params.items() if p.requires_grad and n not in head}
        self.head = [p for n, p in self.params.items() if n in head]
        return []

    def loss(self, label_loss, logits, targets, extra):
        drift = sum(((self.params[n] - w0) ** 2).sum() for n, w0 in self.start.items())
        head = sum((p**2).sum() for p in self.head)
        return label_loss + (self.options.l2sp_alpha / 2 * drift + self.options.l2sp_beta / 2 * head)


# The script's version of `L2SPPenalty` (see `L2SP.code`).
PENALTY_SCRIPT = '''
def starting_weights(model):
    """A copy of the pretrained backbone's weights (not the new head's), to measure how far training moves them."""
    head = {id(p) for p in model.get_classifier().parameters()}
    return {n: p.detach().clone() for n, p in model.named_parameters() if id(p) not in head}


def l2sp_penalty(model, start):
    """L2-SP: alpha/2 * ||w - w0||^2 over the backbone + beta/2 * ||w||^2 over the new head."""
    params = dict(model.named_parameters())
    drift = sum(((params[n] - w0) ** 2).sum() for n, w0 in start.items())
    head = sum((p ** 2).sum() for p in model.get_classifier().parameters())
    return L2SP_ALPHA / 2 * drift + L2SP_BETA / 2 * head
'''


@register
class L2SP(Strategy):
    name = "l2sp"
    title = "L2-SP (stay close to what you knew)"
    explanation = (
        "Every layer trains, but the loss gets an extra term that grows with the distance between the current "
        "weights and the pretrained ones (alpha), plus a small ordinary penalty on the new head (beta). Plain weight "
        "decay pulls weights towards zero, which erases what the backbone learned; L2-SP pulls them towards their "
        "starting point instead, so the model keeps its pretrained knowledge unless the data really asks for a "
        "change. Larger alpha keeps it closer (Li, Grandvalet and Davoine, 2018)."
    )
    trains = "every layer, held close to the pretrained weights"
    default_epochs = 5
    default_lr = 5e-4
    Options = L2SPOptions

    def resolve(self, config) -> dict:
        # L2-SP replaces weight decay: decay would pull weights to zero, L2-SP pulls them to where they started
        return {"weight_decay": 0.0}

    def objective(self, config, class_names) -> Objective:
        return L2SPPenalty(config.options)

    def code(self, config, groups) -> StrategyCode:
        return StrategyCode(
            prepare_doc="Every layer trains. No weight decay: L2-SP's penalty pulls the weights towards where they "
                        "started instead of towards zero.",
            settings=[setting("L2SP_ALPHA", config.options.l2sp_alpha,
                              "pull of the backbone towards its starting weights"),
                      setting("L2SP_BETA", config.options.l2sp_beta, "plain L2 penalty on the new head")],
            definitions=[PENALTY_SCRIPT],
            train_setup=["start = starting_weights(model)"],
            loss_terms=["l2sp_penalty(model, start)"],
        )
