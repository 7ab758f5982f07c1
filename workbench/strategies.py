"""Transfer strategies: a registry of named, explained choices, and the freezing policy each one applies.

A strategy decides three things: whether the backbone starts pretrained, which layer groups train, and whether the
backbone's features can be computed once and cached (when nothing below the head trains).
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from .backbones import LayerGroup


class StrategyError(ValueError):
    """An unknown strategy or an option that does not fit the chosen model."""


@dataclass(frozen=True)
class Strategy:
    name: str
    title: str
    explanation: str  # a paragraph a teacher can read aloud: what trains, why it helps, when it fails
    trains: str  # in a few words
    default_epochs: int
    default_lr: float
    pretrained: bool = True
    uses_freeze_depth: bool = False
    caches_features: bool = False

    def frozen_groups(self, groups: list[LayerGroup], freeze_depth: int | None) -> int:
        """How many groups, from the stem up, stay frozen."""
        if self.caches_features:
            return len(groups) - 1
        if self.uses_freeze_depth:
            return default_freeze_depth(groups) if freeze_depth is None else freeze_depth
        return 0

    def to_dict(self) -> dict:
        return {
            "name": self.name, "title": self.title, "explanation": self.explanation, "trains": self.trains,
            "default_epochs": self.default_epochs, "default_lr": self.default_lr, "pretrained": self.pretrained,
            "uses_freeze_depth": self.uses_freeze_depth, "caches_features": self.caches_features,
        }


STRATEGIES: dict[str, Strategy] = {}


def register(strategy: Strategy) -> Strategy:
    STRATEGIES[strategy.name] = strategy
    return strategy


register(Strategy(
    name="linear_probe",
    title="Linear probe (frozen features)",
    explanation=(
        "The pretrained network is used as a fixed 'feature extractor': every image goes through it once, and only "
        "a new final layer (one weight per feature and class) learns to tell your classes apart from those "
        "features. Because the backbone never changes, its features are computed once and cached, so training "
        "takes seconds even on a laptop. It works well when your images look like the photos the backbone learned "
        "from, and it cannot overfit much. It falls short when your classes depend on details the backbone never "
        "learned to notice (medical scans, spectrograms, tiny textures)."
    ),
    trains="only the new classifier head",
    default_epochs=30, default_lr=1e-2, caches_features=True,
))
register(Strategy(
    name="partial",
    title="Partial fine-tune (freeze the first layers)",
    explanation=(
        "Early layers of a network detect general things — edges, colours, textures — that are useful for almost "
        "any image; later layers combine them into object parts specific to the original task. Partial "
        "fine-tuning keeps the first K groups frozen (the freeze-depth slider) and lets the later groups and the "
        "head adapt to your classes. It is the usual middle ground: more flexible than a linear probe, cheaper and "
        "less prone to forgetting than training everything. Freeze more when you have few images, less when your "
        "images look very different from everyday photos."
    ),
    trains="the later layer groups and the head",
    default_epochs=5, default_lr=1e-3, uses_freeze_depth=True,
))
register(Strategy(
    name="full",
    title="Full fine-tune",
    explanation=(
        "Every weight of the pretrained network keeps learning on your images, starting from what it already "
        "knows. With enough images this usually gives the best accuracy, because even the early layers can adjust "
        "to your kind of picture. It is the slowest option, needs a small learning rate so the useful pretrained "
        "knowledge is not wiped out in the first steps, and with very few images it can memorise them instead of "
        "learning the classes."
    ),
    trains="every layer",
    default_epochs=5, default_lr=5e-4,
))
register(Strategy(
    name="scratch",
    title="From scratch (no transfer — the baseline)",
    explanation=(
        "The same architecture, trained from random weights: nothing is transferred. This is the baseline that "
        "shows what transfer learning buys you. With a few dozen images per class a network starting from zero "
        "has to discover edges, textures and shapes by itself and usually stays close to guessing, while the "
        "pretrained strategies reach high accuracy in the same time. Give it the same epochs and image size as "
        "'full' to make the comparison fair."
    ),
    trains="every layer, from random weights",
    default_epochs=5, default_lr=2e-3, pretrained=False,
))


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise StrategyError(f"Unknown strategy '{name}'. Choose one of: {', '.join(STRATEGIES)}.")
    return STRATEGIES[name]


def default_freeze_depth(groups: list[LayerGroup]) -> int:
    """Half the body frozen: a safe starting point for partial fine-tuning."""
    return max(1, (len(groups) - 1) // 2)


def check_freeze_depth(freeze_depth: int, groups: list[LayerGroup], backbone: str) -> None:
    """The head (the last group) always trains, so at most len(groups) - 1 groups can be frozen."""
    limit = len(groups) - 1
    if not 0 <= freeze_depth <= limit:
        raise StrategyError(
            f"--freeze-depth {freeze_depth} is out of range: {backbone} has {len(groups)} layer groups "
            f"({groups[0].name} … {groups[-1].name}). Choose 0 (train everything) to {limit} (train only the head).")


def apply_freezing(model: torch.nn.Module, groups: list[LayerGroup], frozen: int) -> None:
    """Freeze the first `frozen` groups (requires_grad False), unfreeze the rest."""
    frozen_names = {n for g in groups[:frozen] for n in g.param_names}
    for name, param in model.named_parameters():
        param.requires_grad_(name not in frozen_names)


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
