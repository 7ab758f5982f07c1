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
    gradual: bool = False  # unfreeze one group per phase, from the head down
    layer_decay: bool = False  # discriminative learning rates per group (timm's layer_decay)
    l2sp: bool = False  # penalise distance from the pretrained weights instead of plain weight decay
    bitfit: bool = False  # only biases (and optionally norm layers) of the backbone train, plus the head
    distill: bool = False  # the loss also matches a teacher run's softened answers (knowledge distillation)
    adapts_domain: bool = False  # a domain classifier behind a gradient-reversal layer aligns target images (DANN)
    options: tuple[str, ...] = ()  # RunConfig fields this strategy exposes in the UI and CLI

    def frozen_groups(self, groups: list[LayerGroup], freeze_depth: int | None, epoch: int = 1,
                      epochs_per_phase: int = 1) -> int:
        """How many groups, from the stem up, stay frozen (in `epoch`, for gradual unfreezing)."""
        if self.caches_features:
            return len(groups) - 1
        if self.gradual:
            floor = 0 if freeze_depth is None else freeze_depth
            return max(floor, len(groups) - 1 - (epoch - 1) // epochs_per_phase)
        if self.uses_freeze_depth:
            return default_freeze_depth(groups) if freeze_depth is None else freeze_depth
        return 0

    def to_dict(self) -> dict:
        return {
            "name": self.name, "title": self.title, "explanation": self.explanation, "trains": self.trains,
            "default_epochs": self.default_epochs, "default_lr": self.default_lr, "pretrained": self.pretrained,
            "uses_freeze_depth": self.uses_freeze_depth, "caches_features": self.caches_features,
            "options": list(self.options),
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


register(Strategy(
    name="gradual",
    title="Gradual unfreezing (ULMFiT)",
    explanation=(
        "Training starts with only the new head, while the rest of the network stays frozen. Then, phase by phase, "
        "one more layer group is unfrozen from the top down, so the layers closest to the task adapt first and "
        "the general-purpose early layers are touched last and least. The new head is no longer random by the time "
        "deeper layers start learning, so its first clumsy gradients cannot scramble the pretrained features. "
        "This is how fastai's fine_tune and ULMFiT work. It needs enough epochs for the phases to reach the lower "
        "groups; with very few epochs it behaves like a linear probe."
    ),
    trains="the head first, then one more group per phase, top down",
    default_epochs=6, default_lr=1e-3, gradual=True, options=("epochs_per_phase", "freeze_depth"),
))
register(Strategy(
    name="discriminative",
    title="Discriminative learning rates (layer-wise LR decay)",
    explanation=(
        "Every layer trains, but not at the same speed: the head gets the full learning rate, the group below it "
        "the learning rate times a decay factor, the one below that times the factor again, and so on down to the "
        "stem. Early layers, which hold general knowledge, move only a little; late layers, which must specialise, "
        "move a lot. It usually beats plain full fine-tuning when data is scarce. A decay close to 1 behaves like "
        "full fine-tuning; a small decay behaves like freezing the early layers."
    ),
    trains="every layer, lower layers with smaller learning rates",
    default_epochs=5, default_lr=1e-3, layer_decay=True, options=("layer_decay",),
))
register(Strategy(
    name="l2sp",
    title="L2-SP (stay close to what you knew)",
    explanation=(
        "Every layer trains, but the loss gets an extra term that grows with the distance between the current "
        "weights and the pretrained ones (alpha), plus a small ordinary penalty on the new head (beta). Plain weight "
        "decay pulls weights towards zero, which erases what the backbone learned; L2-SP pulls them towards their "
        "starting point instead, so the model keeps its pretrained knowledge unless the data really asks for a "
        "change. Larger alpha keeps it closer (Li, Grandvalet and Davoine, 2018)."
    ),
    trains="every layer, held close to the pretrained weights",
    default_epochs=5, default_lr=5e-4, l2sp=True, options=("l2sp_alpha", "l2sp_beta"),
))
register(Strategy(
    name="bitfit",
    title="BitFit / norm-only tuning",
    explanation=(
        "Only the bias terms of the backbone (and, if chosen, the scale and shift of its normalisation layers) "
        "train, plus the new head: usually well under 1% of the weights. The filters themselves stay as they were; "
        "the network only learns to shift and rescale what they detect. It is cheap to store (one small file per "
        "task on top of a shared backbone) and hard to overfit, and often lands between a linear probe and full "
        "fine-tuning in accuracy."
    ),
    trains="biases and normalisation layers of the backbone, and the head",
    default_epochs=5, default_lr=3e-3, bitfit=True, options=("bitfit_norms",),
))
register(Strategy(
    name="distill",
    title="Knowledge distillation (a teacher trains a student)",
    explanation=(
        "A finished run is the teacher; the backbone chosen here, usually much smaller and faster, is the student. "
        "The student learns from the labels and also from the teacher's full answer for every image: not just "
        "'this is a star' but 'mostly star, a bit like a cross, nothing like a circle'. Those near-misses, made "
        "visible by softening both answers with a temperature T, carry what the teacher knows about how the "
        "classes resemble each other, so a small student often gets closer to the big teacher than it would from "
        "labels alone (Hinton, Vinyals and Dean, 2015). Alpha sets how much the teacher counts against the labels. "
        "The student trains every layer (a full fine-tune); the teacher's answers are computed once per image."
    ),
    trains="every layer of the student, from the labels and the teacher's answers",
    default_epochs=5, default_lr=5e-4, distill=True,
    options=("teacher_run", "distill_alpha", "distill_temperature"),
))
register(Strategy(
    name="dann",
    title="Domain adaptation (DANN)",
    explanation=(
        "Your labelled images (the source) and the images the model will really meet (the target, e.g. photos "
        "from another camera, or drawings instead of photos) often look different, and a model trained on one "
        "loses accuracy on the other. DANN trains the network on the labelled source images while a small second "
        "network, the domain classifier, tries to tell from the features whether an image came from the source "
        "or the target. A gradient-reversal layer turns its success into a penalty for the backbone, so the "
        "backbone learns features that work for the classes but look the same in both domains (Ganin et al., "
        "2016). The target images need no labels; if they have class folders, those are used only to measure "
        "target accuracy. Every layer trains, the pretrained ones more slowly than the new heads (discriminative "
        "learning rates, as the paper's fine-tuned networks did): when the whole backbone moved as fast as the "
        "domain classifier, the adversarial game swung wildly and the result depended on the seed."
    ),
    trains="every layer (layer-wise learning rates), plus a domain classifier behind a gradient-reversal layer",
    default_epochs=5, default_lr=1e-3, adapts_domain=True, layer_decay=True, options=("target_data", "layer_decay"),
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


NORM_LAYERS = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)


def bitfit_parameter_names(model: torch.nn.Module, head: set[str], norms: bool) -> set[str]:
    """Biases everywhere, the normalisation layers' parameters when `norms`, and the head."""
    names = {n for n, _ in model.named_parameters() if n.endswith("bias")} | head
    if norms:
        for module_name, module in model.named_modules():
            if isinstance(module, NORM_LAYERS):
                names |= {f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False)}
    return names


def apply_trainable(model: torch.nn.Module, trainable: set[str]) -> None:
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
