"""A strategy's part of "show me the code": what `Strategy.code` returns and `workbench.deploy.codegen` assembles.

The generated script is a plain PyTorch + timm training script. Codegen writes what every run shares (the data and
its split, the transforms, the model, the learning-rate schedule, evaluation, the training loop) and asks the run's
strategy for the rest as a `StrategyCode`: its settings, its helper functions, what freezes, what changes each epoch,
its optimiser options and extra loss terms, and what the script leaves out.

Text fields are Python source as it appears in the script. Besides the common settings (EPOCHS, LR, WEIGHT_DECAY,
CLASS_NAMES, ...), a strategy's code may use these names, which the script defines:

- in `prepare(model)` and `train(...)`: `model`, `optimizer`; in `train`, `epoch` (1-based) inside the loop;
- with `uses_layer_groups`: `layer_groups(model)` (parameter names per group, stem to head, from timm's
  `group_matcher`) and `freeze(model, groups, frozen)` (the first `frozen` groups stop learning);
- with `keeps_frozen`: `train_mode(model)` (what `train` calls instead of `model.train()`).
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field


def setting(name: str, value: object, comment: str = "") -> str:
    """One line of the script's settings block, e.g. `LAYER_DECAY = 0.7  # ...`; strings in double quotes."""
    literal = json.dumps(value, ensure_ascii=False) if isinstance(value, str) else repr(value)
    return f"{name} = {literal}" + (f"  # {comment}" if comment else "")


@dataclass
class StrategyCode:
    """What the generated script writes for one strategy. The defaults are a plain full fine-tune: every layer
    trains from the starting weights, AdamW through timm's `create_optimizer_v2`, cross-entropy alone.

    Lines (`freeze`, `after_optimizer`, `train_setup`, `epoch_start`) are given without their block's indentation;
    codegen indents them where they go, keeping any indentation of their own (the body of a `for`)."""

    prepare_doc: str = "Every layer trains, starting from the pretrained weights."
    """The docstring of `prepare(model)`, which sets what trains and returns the optimizer: says what trains."""
    settings: list[str] = field(default_factory=list)
    """Lines for the settings block, after the common ones (write them with `setting`)."""
    definitions: list[str] = field(default_factory=list)
    """Functions and constants of the strategy's own, written before `prepare`, in this order."""
    uses_layer_groups: bool = False
    """The script defines `layer_groups(model)` and `freeze(model, groups, frozen)` for this code to call."""
    keeps_frozen: bool = False
    """Some parameters are frozen while training: `train` calls `train_mode(model)`, which keeps fully frozen
    BatchNorm layers in eval mode (their pretrained statistics), as the workbench does."""
    freeze: list[str] = field(default_factory=list)
    """`prepare`'s lines before the optimizer is built: they set `requires_grad` (frozen weights get no gradient
    and the optimizer leaves them out)."""
    optimizer_options: dict[str, str] = field(default_factory=dict)
    """Extra keyword arguments to `create_optimizer_v2`, as source, e.g. {"layer_decay": "LAYER_DECAY"}."""
    after_optimizer: list[str] = field(default_factory=list)
    """`prepare`'s lines once the optimizer holds its parameters (e.g. freeze what waits for a later epoch)."""
    train_setup: list[str] = field(default_factory=list)
    """`train`'s lines before the first epoch; names they set are visible in the loop."""
    epoch_start: list[str] = field(default_factory=list)
    """`train`'s lines at the start of every epoch, before the model is put in training mode."""
    loss_terms: list[str] = field(default_factory=list)
    """Expressions added to each batch's cross-entropy `loss` before the backward pass."""
    imports: list[str] = field(default_factory=list)
    """Import lines this code needs beyond the script's own (torch, timm, F, ...)."""
    left_out: list[str] = field(default_factory=list)
    """What the run did that the script does not, each a phrase for the header's "Not reproduced here" list."""
    head_on_features: bool = False
    """Only the new head trains, on the backbone's features computed once per image (no augmentation): the script
    is then the short head-only version, and the fields about `prepare` and `train` are not used."""
