"""Full fine-tuning: every layer keeps learning from the pretrained weights (the contract's defaults)."""

from __future__ import annotations

from workbench.strategies.base import Strategy, register


@register
class Full(Strategy):
    name = "full"
    title = "Full fine-tune"
    explanation = (
        "Every weight of the pretrained network keeps learning on your images, starting from what it already "
        "knows. With enough images this usually gives the best accuracy, because even the early layers can adjust "
        "to your kind of picture. It is the slowest option, needs a small learning rate so the useful pretrained "
        "knowledge is not wiped out in the first steps, and with very few images it can memorise them instead of "
        "learning the classes."
    )
    trains = "every layer"
    default_epochs = 5
    default_lr = 5e-4
    race_default = True
