"""Gradual unfreezing (ULMFiT, fastai's fine_tune): the head first, then one more layer group per phase, top down."""

from __future__ import annotations

from dataclasses import dataclass, field

from workbench.core.fields import help_field
from workbench.strategies.base import Strategy, register
from workbench.strategies.code import StrategyCode, setting
from workbench.strategies.freezing import apply_freezing, check_freeze_depth


@dataclass(frozen=True)
class GradualOptions:
    epochs_per_phase: int = field(default=1, **help_field("Gradual unfreezing: epochs before the next group "
                                                          "unfreezes."))

    def __post_init__(self) -> None:
        if self.epochs_per_phase < 1:
            raise ValueError(f"--epochs-per-phase must be at least 1, got {self.epochs_per_phase}.")


# The script's version of `Gradual.frozen_groups` (see `code`).
FROZEN_GROUPS_SCRIPT = '''
def frozen_groups(epoch, n_groups):
    """Gradual unfreezing: epoch 1 trains only the head; every EPOCHS_PER_PHASE epochs one more group below it
    joins, top down, never below FREEZE_FLOOR."""
    return max(FREEZE_FLOOR, n_groups - 1 - (epoch - 1) // EPOCHS_PER_PHASE)
'''


@register
class Gradual(Strategy):
    name = "gradual"
    title = "Gradual unfreezing (ULMFiT)"
    explanation = (
        "Training starts with only the new head, while the rest of the network stays frozen. Then, phase by phase, "
        "one more layer group is unfrozen from the top down, so the layers closest to the task adapt first and "
        "the general-purpose early layers are touched last and least. The new head is no longer random by the time "
        "deeper layers start learning, so its first clumsy gradients cannot scramble the pretrained features. "
        "This is how fastai's fine_tune and ULMFiT work. It needs enough epochs for the phases to reach the lower "
        "groups; with very few epochs it behaves like a linear probe."
    )
    trains = "the head first, then one more group per phase, top down"
    default_epochs = 6
    default_lr = 1e-3
    Options = GradualOptions
    freeze_label = "Freeze depth: groups that never unfreeze, counted from the stem"

    def frozen_groups(self, groups, config, epoch=1) -> int:
        floor = config.freeze_depth or 0
        return max(floor, len(groups) - 1 - (epoch - 1) // config.options.epochs_per_phase)

    def check_groups(self, groups, config) -> None:
        if config.freeze_depth is not None:
            check_freeze_depth(config.freeze_depth, groups, config.backbone)

    def param_groups(self, model, groups, config):
        # The optimiser must hold every group that will ever unfreeze; frozen ones get no gradient, so AdamW leaves
        # them (and their weight decay) alone until their phase comes. begin_epoch(1) freezes them again.
        apply_freezing(model, groups, config.freeze_depth or 0)
        return None

    def begin_epoch(self, model, groups, config, epoch) -> None:
        apply_freezing(model, groups, self.frozen_groups(groups, config, epoch))

    def freeze_note(self, groups, config, frozen) -> str:
        per_phase = config.options.epochs_per_phase
        deeper = " More epochs would unfreeze deeper groups." if frozen > (config.freeze_depth or 0) else ""
        return (f"Shown: the last of {config.epochs} epochs. Training starts with only the head; every {per_phase} "
                f"epoch{'s' if per_phase != 1 else ''} one more group unfreezes, from the head down, never below the "
                f"freeze depth.{deeper}")

    def code(self, config, groups) -> StrategyCode:
        return StrategyCode(
            prepare_doc="Every group that will ever train goes into the optimizer now; `train` freezes the lower ones "
                        "until their phase comes (frozen weights get no gradient, so AdamW leaves them alone).",
            settings=[setting("EPOCHS_PER_PHASE", config.options.epochs_per_phase,
                              "epochs before the next group unfreezes"),
                      setting("FREEZE_FLOOR", config.freeze_depth or 0, "groups that never unfreeze")],
            definitions=[FROZEN_GROUPS_SCRIPT],
            uses_layer_groups=True,
            keeps_frozen=True,
            freeze=["freeze(model, layer_groups(model), FREEZE_FLOOR)"],
            after_optimizer=["groups = layer_groups(model)",
                             "freeze(model, groups, frozen_groups(1, len(groups)))  # epoch 1: only the head trains"],
            train_setup=["groups = layer_groups(model)"],
            epoch_start=["frozen = frozen_groups(epoch, len(groups))",
                         "freeze(model, groups, frozen)",
                         'print(f"epoch {epoch}: the top {len(groups) - frozen} of {len(groups)} layer groups train")'],
        )
