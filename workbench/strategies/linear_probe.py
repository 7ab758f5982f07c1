"""Linear probe: the pretrained backbone is a fixed feature extractor; only a new head learns."""

from __future__ import annotations

from workbench.strategies.base import Strategy, register
from workbench.strategies.code import StrategyCode


@register
class LinearProbe(Strategy):
    name = "linear_probe"
    title = "Linear probe (frozen features)"
    explanation = (
        "The pretrained network is used as a fixed 'feature extractor': every image goes through it once, and only "
        "a new final layer (one weight per feature and class) learns to tell your classes apart from those "
        "features. Because the backbone never changes, its features are computed once and cached, so training "
        "takes seconds even on a laptop. It works well when your images look like the photos the backbone learned "
        "from, and it cannot overfit much. It falls short when your classes depend on details the backbone never "
        "learned to notice (medical scans, spectrograms, tiny textures)."
    )
    trains = "only the new classifier head"
    default_epochs = 30
    default_lr = 1e-2
    race_default = True

    def trains_backbone(self, config) -> bool:
        return False

    def frozen_groups(self, groups, config, epoch=1) -> int:
        return len(groups) - 1

    def code(self, config, groups) -> StrategyCode:
        return StrategyCode(head_on_features=True)
