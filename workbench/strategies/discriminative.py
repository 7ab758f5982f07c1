"""Discriminative learning rates: every layer trains, lower layers with smaller rates (timm's layer_decay)."""

from __future__ import annotations

from dataclasses import dataclass, field

import timm.optim

from workbench.core.fields import help_field
from workbench.strategies.base import Strategy, register
from workbench.strategies.code import StrategyCode, setting


@dataclass(frozen=True)
class LayerDecayOptions:
    layer_decay: float = field(default=0.7, **help_field("Discriminative LR: each group below the head gets this "
                                                         "factor times the LR of the group above it."))

    def __post_init__(self) -> None:
        if not 0.0 < self.layer_decay <= 1.0:
            raise ValueError(f"--layer-decay must be in (0, 1], got {self.layer_decay}.")


def layer_decay_groups(model, weight_decay: float, layer_decay: float) -> list[dict]:
    """timm's layer-wise groups: each carries an `lr_scale` (the head 1, each layer below it `layer_decay` times the
    one above), which the engine's schedule applies; no weight decay on biases and norms."""
    no_decay = getattr(model, "no_weight_decay", lambda: set())()
    return timm.optim.param_groups_layer_decay(model, weight_decay=weight_decay, layer_decay=layer_decay,
                                               no_weight_decay_list=no_decay)


def layer_decay_code(options: LayerDecayOptions) -> StrategyCode:
    """The script's layer-wise learning rates: timm's `create_optimizer_v2(..., layer_decay=...)`, whose groups carry
    the `lr_scale` that the script's training loop applies, as the engine does."""
    return StrategyCode(
        prepare_doc="Every layer trains; timm's layer_decay gives each layer below the head LAYER_DECAY times the "
                    "learning rate of the layer above it (its `lr_scale`, which `train` applies).",
        settings=[setting("LAYER_DECAY", options.layer_decay, "each layer down gets this factor of the LR above")],
        optimizer_options={"layer_decay": "LAYER_DECAY"},
    )


@register
class Discriminative(Strategy):
    name = "discriminative"
    title = "Discriminative learning rates (layer-wise LR decay)"
    explanation = (
        "Every layer trains, but not at the same speed: the head gets the full learning rate, the group below it "
        "the learning rate times a decay factor, the one below that times the factor again, and so on down to the "
        "stem. Early layers, which hold general knowledge, move only a little; late layers, which must specialise, "
        "move a lot. It usually beats plain full fine-tuning when data is scarce. A decay close to 1 behaves like "
        "full fine-tuning; a small decay behaves like freezing the early layers."
    )
    trains = "every layer, lower layers with smaller learning rates"
    default_epochs = 5
    default_lr = 1e-3
    Options = LayerDecayOptions

    def param_groups(self, model, groups, config):
        return layer_decay_groups(model, config.weight_decay, config.options.layer_decay)

    def code(self, config, groups) -> StrategyCode:
        return layer_decay_code(config.options)
