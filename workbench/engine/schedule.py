"""The learning rate over a run, and what each layer's rate is when parameter groups scale it."""

from __future__ import annotations

import math

import torch


def lr_at(step: int, total_steps: int, warmup_steps: int, peak: float, schedule: str = "cosine") -> float:
    """The learning rate at `step`.

    cosine: linear warmup to `peak`, then cosine decay to 1% of it. onecycle (Smith): the first 30% of steps rise
    from peak/25 to peak, the rest anneal to peak/10^4. constant: `peak` throughout.
    """
    if schedule == "constant":
        return peak
    if schedule == "onecycle":
        rise = max(1, int(0.3 * total_steps))
        if step < rise:
            return peak / 25 + (peak - peak / 25) * 0.5 * (1 - math.cos(math.pi * step / rise))
        progress = min(1.0, (step - rise) / max(1, total_steps - rise))
        return peak / 1e4 + (peak - peak / 1e4) * 0.5 * (1 + math.cos(math.pi * progress))
    if step < warmup_steps:
        return peak * (step + 1) / warmup_steps
    progress = (step - warmup_steps) / max(1, total_steps - warmup_steps)
    return peak * (0.01 + 0.99 * 0.5 * (1 + math.cos(math.pi * min(1.0, progress))))




def layer_learning_rates(model: torch.nn.Module, param_groups: list[dict], lr: float) -> list[dict]:
    """Peak learning rate per parameter group with its own `lr_scale` (stem first), as a strategy's `param_groups`
    give them: what the Model page shows for discriminative learning rates."""
    names = {id(p): n for n, p in model.named_parameters()}
    table: dict[float, dict] = {}
    for group in param_groups:
        if not group["params"]:
            continue
        scale = group.get("lr_scale", 1.0)
        row = table.setdefault(scale, {"lr": lr * scale, "lr_scale": scale, "params": 0, "first": None})
        row["params"] += sum(p.numel() for p in group["params"])
        row["first"] = row["first"] or names[id(group["params"][0])]
    return sorted(table.values(), key=lambda r: r["lr_scale"])
