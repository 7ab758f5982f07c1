"""Partial fine-tuning: the first K layer groups stay frozen, the later ones and the head adapt."""

from __future__ import annotations

from workbench.strategies.base import Strategy, register
from workbench.strategies.code import StrategyCode, setting
from workbench.strategies.freezing import check_freeze_depth, half_the_body


@register
class Partial(Strategy):
    name = "partial"
    title = "Partial fine-tune (freeze the first layers)"
    explanation = (
        "Early layers of a network detect general things — edges, colours, textures — that are useful for almost "
        "any image; later layers combine them into object parts specific to the original task. Partial "
        "fine-tuning keeps the first K groups frozen (the freeze-depth slider) and lets the later groups and the "
        "head adapt to your classes. It is the usual middle ground: more flexible than a linear probe, cheaper and "
        "less prone to forgetting than training everything. Freeze more when you have few images, less when your "
        "images look very different from everyday photos."
    )
    trains = "the later layer groups and the head"
    default_epochs = 5
    default_lr = 1e-3
    race_default = True
    freeze_label = "Freeze depth: layer groups kept frozen, counted from the stem"

    def default_freeze_depth(self, groups) -> int:
        return half_the_body(groups)

    def frozen_groups(self, groups, config, epoch=1) -> int:
        return self.default_freeze_depth(groups) if config.freeze_depth is None else config.freeze_depth

    def check_groups(self, groups, config) -> None:
        check_freeze_depth(self.frozen_groups(groups, config), groups, config.backbone)

    def code(self, config, groups) -> StrategyCode:
        return StrategyCode(
            prepare_doc="Freeze the first FROZEN_GROUPS layer groups; the later groups and the head train.",
            settings=[setting("FROZEN_GROUPS", self.frozen_groups(groups, config),
                              "layer groups frozen, counted from the stem")],
            uses_layer_groups=True,
            keeps_frozen=True,
            freeze=["freeze(model, layer_groups(model), FROZEN_GROUPS)"],
        )
