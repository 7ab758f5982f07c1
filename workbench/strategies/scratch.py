"""From scratch: the same network from random weights, the baseline that shows what transfer buys."""

from __future__ import annotations

from workbench.strategies.base import Strategy, register
from workbench.strategies.code import StrategyCode


@register
class Scratch(Strategy):
    name = "scratch"
    title = "From scratch (no transfer — the baseline)"
    explanation = (
        "The same architecture, trained from random weights: nothing is transferred. This is the baseline that "
        "shows what transfer learning buys you. With a few dozen images per class a network starting from zero "
        "has to discover edges, textures and shapes by itself and usually stays close to guessing, while the "
        "pretrained strategies reach high accuracy in the same time. Give it the same epochs and image size as "
        "'full' to make the comparison fair."
    )
    trains = "every layer, from random weights"
    default_epochs = 5
    default_lr = 2e-3
    race_default = True
    pretrained = False

    def code(self, config, groups) -> StrategyCode:
        return StrategyCode(prepare_doc="Every layer trains, from random weights.")
