"""BitFit / norm-only tuning: only the backbone's biases (and optionally its norm layers) train, plus the head."""

from __future__ import annotations

from dataclasses import dataclass, field

import torch

from workbench.core.fields import help_field
from workbench.models.backbones import head_parameter_names
from workbench.strategies.base import Strategy, register
from workbench.strategies.code import StrategyCode, setting
from workbench.strategies.freezing import apply_trainable

NORM_LAYERS = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)


@dataclass(frozen=True)
class BitFitOptions:
    bitfit_norms: bool = field(default=True, **help_field("BitFit: also train the normalisation layers' scales."))


def bitfit_parameter_names(model: torch.nn.Module, norms: bool) -> set[str]:
    """Biases everywhere, the normalisation layers' parameters when `norms`, and the head."""
    names = {n for n, _ in model.named_parameters() if n.endswith("bias")} | head_parameter_names(model)
    if norms:
        for module_name, module in model.named_modules():
            if isinstance(module, NORM_LAYERS):
                names |= {f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False)}
    return names


# The script's version of `bitfit_parameter_names` (see `BitFit.code`).
TRAINABLE_SCRIPT = '''
NORM_LAYERS = (torch.nn.modules.batchnorm._BatchNorm, torch.nn.LayerNorm, torch.nn.GroupNorm)


def bitfit_parameter_names(model):
    """Every bias, the norm layers' scales and shifts (if BITFIT_NORMS), and the whole head."""
    head = {id(p) for p in model.get_classifier().parameters()}
    names = {n for n, p in model.named_parameters() if n.endswith("bias") or id(p) in head}
    if BITFIT_NORMS:
        for module_name, module in model.named_modules():
            if isinstance(module, NORM_LAYERS):
                names |= {f"{module_name}.{n}" for n, _ in module.named_parameters(recurse=False)}
    return names
'''


@register
class BitFit(Strategy):
    name = "bitfit"
    title = "BitFit / norm-only tuning"
    explanation = (
        "Only the bias terms of the backbone (and, if chosen, the scale and shift of its normalisation layers) "
        "train, plus the new head: usually well under 1% of the weights. The filters themselves stay as they were; "
        "the network only learns to shift and rescale what they detect. It is cheap to store (one small file per "
        "task on top of a shared backbone) and hard to overfit, and often lands between a linear probe and full "
        "fine-tuning in accuracy."
    )
    trains = "biases and normalisation layers of the backbone, and the head"
    default_epochs = 5
    default_lr = 3e-3
    Options = BitFitOptions

    def prepare_model(self, model, groups, config) -> None:
        apply_trainable(model, bitfit_parameter_names(model, config.options.bitfit_norms))

    def code(self, config, groups) -> StrategyCode:
        return StrategyCode(
            prepare_doc="Only the biases (and the norm layers, if BITFIT_NORMS) of the backbone train, plus the head.",
            settings=[setting("BITFIT_NORMS", bool(config.options.bitfit_norms), "also train the norm layers")],
            definitions=[TRAINABLE_SCRIPT],
            keeps_frozen=True,
            freeze=["trainable = bitfit_parameter_names(model)",
                    "for name, param in model.named_parameters():",
                    "    param.requires_grad_(name in trainable)"],
        )
