"""The learning-rate finder (Smith 2015; fastai's lr_find): a short sweep with the learning rate growing
exponentially, through the same training step as a run, with the strategy's freezing and parameter groups."""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch

from workbench.data import AUGMENTATIONS
from workbench.engine.config import RunConfig
from workbench.engine.loop import Trainer, build_optimizer
from workbench.engine.run import Run
from workbench.strategies import set_train_mode


@dataclass
class LRFinderResult:
    lrs: list[float]
    losses: list[float]  # smoothed training loss at each lr
    suggestion: float  # where the loss falls fastest

    def to_dict(self) -> dict:
        return {"lrs": self.lrs, "losses": self.losses, "suggestion": self.suggestion}


def suggest_lr(lrs: list[float], losses: list[float]) -> float:
    """The lr where the smoothed loss falls fastest (steepest negative slope against log lr), before its minimum."""
    lowest = int(np.argmin(losses))
    if lowest < 2:  # the loss never fell: the smallest rates are the safe ones
        return lrs[lowest]
    slopes = np.gradient(np.asarray(losses[: lowest + 1]), np.log(np.asarray(lrs[: lowest + 1])))
    return float(lrs[int(np.argmin(slopes))])


def lr_sweep(trainer: Trainer, min_lr: float, max_lr: float, steps: int,
             on_step: Callable[[int, int], None] | None) -> LRFinderResult:
    """Train `steps` batches with the learning rate growing from `min_lr` to `max_lr`; stop when the loss explodes."""
    config = trainer.config
    on_features = not trainer.strategy.trains_backbone(config)
    if on_features:
        features, targets = trainer.features(trainer.train_samples, "training")
        module = trainer.model.get_classifier()
        optimizer = torch.optim.AdamW(module.parameters(), lr=min_lr, weight_decay=config.weight_decay)
        loader = trainer.feature_loader(features, targets)
    else:
        module = trainer.model
        optimizer = build_optimizer(trainer.model, trainer.p.groups, config, trainer.strategy)
        trainer.strategy.begin_epoch(trainer.model, trainer.p.groups, config, 1)
        augment = AUGMENTATIONS[config.augment].train_transform(config.image_size)
        loader = trainer.loader(trainer.train_samples, augment, shuffle=True)
    lrs, losses, smoothed, best = [], [], None, math.inf
    batches = iter(loader)
    for step in range(steps):
        try:
            inputs, labels = next(batches)
        except StopIteration:
            batches = iter(loader)
            inputs, labels = next(batches)
        lr = min_lr * (max_lr / min_lr) ** (step / max(1, steps - 1))
        if on_features:
            module.train()
            inputs = inputs.to(trainer.device)
        else:
            set_train_mode(trainer.model)
            inputs = trainer.normalize(inputs)
        loss, _ = trainer.train_step(module, optimizer, inputs, labels.to(trainer.device), lr)
        # An exponential moving average: single-batch losses are too noisy to read a curve from.
        smoothed = loss.item() if smoothed is None else 0.7 * smoothed + 0.3 * loss.item()
        lrs.append(lr)
        losses.append(smoothed)
        best = min(best, smoothed)
        if on_step:
            on_step(step + 1, steps)
        if not math.isfinite(smoothed) or smoothed > 4 * best:
            break
    return LRFinderResult(lrs, losses, suggest_lr(lrs, losses))


def find_lr(config: RunConfig, min_lr: float = 1e-6, max_lr: float = 1.0, steps: int = 40,
            on_step: Callable[[int, int], None] | None = None) -> LRFinderResult:
    """A short sweep: train with the learning rate growing exponentially from `min_lr` to `max_lr`, record the
    smoothed loss, stop when it explodes. Uses the strategy's freezing; writes nothing and keeps no weights."""
    run = Run(config)
    prepared = run.prepare()
    trainer = Trainer(run, prepared, torch.device(prepared.config.device))
    trainer.decode_all()
    return lr_sweep(trainer, min_lr, max_lr, steps, on_step)
