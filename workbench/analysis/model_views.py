"""What the Data and Model pages draw: a dataset's class counts and thumbnails, a model's layer groups with the
ones a strategy freezes, the learning rate each layer gets, the LR finder's curve and the LR schedules. Plotly
figures and plain values, so the pages only place them."""

from __future__ import annotations

import itertools
import math
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import torch
from PIL import Image

from workbench.core.plot_style import LAYOUT, TRAIN_COLOUR, VAL_COLOUR
from workbench.data import Augmentation, DataError, HealthReport, ImageDataset, load_rgb
from workbench.engine import RunConfig, layer_learning_rates, lr_at
from workbench.models.backbones import LayerGroup, layer_groups, meta_model
from workbench.strategies import Strategy, get_strategy, trainable_per_group

THUMBNAIL_SIZE = 96
FROZEN_COLOUR, PARTLY_COLOUR, TRAINABLE_COLOUR = "#9fb3c8", "#f9d29d", "#f28e2b"
STATES = {  # state -> (label in a box, legend entry, colour)
    "frozen": ("🔒 frozen", "frozen (keeps its pretrained weights)", FROZEN_COLOUR),
    "partly": ("partly learns", "partly trainable (only some of its parameters learn)", PARTLY_COLOUR),
    "trains": ("learns", "trainable (learns from your images)", TRAINABLE_COLOUR),
}
TEXT_COLOUR = "#1b2733"
TEST_COLOUR = "#8c6bb1"


def class_counts_figure(report: HealthReport) -> go.Figure:
    """Readable images per class, training, validation and held-out test stacked, so a small or unsplit class stands
    out."""
    fig = go.Figure()
    for split, colour, name in (("train", TRAIN_COLOUR, "training images"), ("val", VAL_COLOUR, "validation images"),
                                ("test", TEST_COLOUR, "held-out test images")):
        counts = [report.counts[c].get(split, 0) for c in report.class_names]
        if split == "test" and not any(counts):
            continue
        fig.add_bar(x=report.class_names, y=counts, name=name, marker_color=colour, text=counts,
                    textposition="inside", hovertemplate="%{x}: %{y} " + name + "<extra></extra>")
    fig.update_xaxes(title_text="class", type="category")
    fig.update_yaxes(title_text="images")
    return fig.update_layout(**{**LAYOUT, "legend": {**LAYOUT["legend"], "traceorder": "normal"}}, barmode="stack",
                             title="Images per class", height=340)


def thumbnails(dataset: ImageDataset, per_class: int = 6) -> dict[str, list[Image.Image]]:
    """class -> up to `per_class` small RGB images (at most THUMBNAIL_SIZE px a side), training images first."""
    shown: dict[str, list[Image.Image]] = {name: [] for name in dataset.class_names}
    for sample in dataset.train + dataset.val:
        images = shown[dataset.class_names[sample.label]]
        if len(images) >= per_class:
            continue
        try:
            image = load_rgb(sample.path)
        except DataError:
            continue  # changed on disk since the scan; the health report already lists unreadable files
        image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
        images.append(image)
    return shown


def preview_note(image: str | Path, preset: Augmentation, count: int, image_size: int) -> str:
    """The caption under the augmentation preview: `count` copies of `image` through `preset` at `image_size` px."""
    mixing = (" Strong also blends pairs of images in every batch (mixup / cutmix), which is not shown here."
              if preset.mixes_images else "")
    image = Path(image)
    return (f"**What the network sees:** one training image, *{image.parent.name}/{image.name}*, {count} times "
            f"through the {preset.title.lower()} preset at {image_size} px. Every epoch draws new changes.{mixing}")


def normalisation_note(mean: tuple[float, ...], std: tuple[float, ...]) -> str:
    """How images are normalised for a backbone whose pretrained config gives this `mean` and `std`."""
    mean_text, std_text = (", ".join(f"{v:.3f}" for v in values) for values in (mean, std))
    return (f"Images are normalised with mean ({mean_text}) and std ({std_text}), from the model's own pretrained "
            "config.")


def training_plan(config: RunConfig, num_classes: int) -> tuple[FreezePlan, list[dict] | None]:
    """The Model page's diagrams of `config` for a head of `num_classes`: what trains in its last epoch
    (`freeze_plan`), and each layer's learning rate when they differ (`layer_lr_plan`, else None)."""
    strategy = get_strategy(config.strategy)
    return (freeze_plan(strategy, config.backbone, num_classes, config),
            layer_lr_plan(strategy, config.backbone, num_classes, config))


def freeze_plan(strategy: Strategy, backbone: str, num_classes: int, config: RunConfig) -> FreezePlan:
    """What trains in the last epoch of `config` under `strategy`, group by group, worked out by the strategy's own
    hooks on the model's structure (no weights): the Model page's freeze diagram for any strategy."""
    model = meta_model(backbone, num_classes)
    groups = layer_groups(model)
    epoch = config.epochs or strategy.default_epochs
    strategy.prepare_model(model, groups, config)
    strategy.begin_epoch(model, groups, config, epoch)
    frozen = strategy.frozen_groups(groups, config, epoch)
    return FreezePlan(groups, frozen, trainable_per_group(model, groups), strategy.freeze_note(groups, config, frozen))


@dataclass
class FreezePlan:
    groups: list[LayerGroup]
    frozen: int  # groups frozen from the stem up
    per_group: list[int]  # trainable parameters of each group
    note: str | None  # the strategy's sentence about it

    def summary(self) -> dict:
        """`freeze_summary` of this plan: trainable_params, total_params and share."""
        return freeze_summary(self.groups, self.frozen, self.per_group)

    def sentence(self) -> str:
        """How much of the model learns, in one bold Markdown line."""
        summary = self.summary()
        return (f"**{summary['trainable_params']:,} of {summary['total_params']:,} parameters learn from your images "
                f"({summary['share']:.1%}).**")


def layer_lr_plan(strategy: Strategy, backbone: str, num_classes: int, config: RunConfig) -> list[dict] | None:
    """The peak learning rate of each layer under the strategy's parameter groups (stem first, with layer names), or
    None when every layer learns at the same rate."""
    model = meta_model(backbone, num_classes)
    groups = layer_groups(model)
    strategy.prepare_model(model, groups, config)
    params = strategy.param_groups(model, groups, config)
    if not params or all(g.get("lr_scale", 1.0) == 1.0 for g in params):
        return None
    return layer_lr_rows(model, params, config.lr or strategy.default_lr)


def group_roles(count: int) -> list[str]:
    """Plain names for `count` groups in order: stem, stage 1 … stage n, head."""
    if count == 1:
        return ["head"]
    return ["stem", *[f"stage {i}" for i in range(1, count - 1)], "head"]


def trainable_counts(groups: list[LayerGroup], frozen: int, per_group: list[int] | None = None) -> list[int]:
    """Trainable parameters of each group: none in the first `frozen`, `per_group` (default: all) in the rest."""
    per_group = per_group if per_group is not None else [g.num_params for g in groups]
    return [0 if g.index < frozen else n for g, n in zip(groups, per_group, strict=True)]


def freeze_summary(groups: list[LayerGroup], frozen: int, per_group: list[int] | None = None) -> dict:
    """trainable_params, total_params, and share (trainable / total, 0..1) when the first `frozen` groups freeze.
    `per_group`: how many parameters of each group may train at all (BitFit), if not all of them."""
    total = sum(g.num_params for g in groups)
    trainable = sum(trainable_counts(groups, frozen, per_group))
    return {"trainable_params": trainable, "total_params": total, "share": trainable / total if total else 0.0}


def short_count(n: int) -> str:
    """1234567 -> '1.2M', 45600 -> '45.6k', 928 -> '928'."""
    for limit, suffix in ((1e9, "B"), (1e6, "M"), (1e3, "k")):
        if n >= limit:
            return f"{n / limit:.1f}{suffix}"
    return str(n)


def _state(trainable: int, num_params: int) -> str:
    return "frozen" if trainable == 0 else "trains" if trainable == num_params else "partly"


def share_text(share: float) -> str:
    """0.0019 -> '<1%' (a plain '0%' would read as 'nothing'), 0.49 -> '49%'."""
    return "<1%" if 0 < share < 0.005 else f"{share:.0%}"


def groups_figure(groups: list[LayerGroup], frozen: int, per_group: list[int] | None = None) -> go.Figure:
    """The model as a row of boxes, stem → stages → head, one per layer group: the first `frozen` grey with a
    lock, the rest orange (pale orange where only some of a group's parameters train, see `freeze_summary`).
    Each box says its role, its parameter count and its share of the model."""
    fig = go.Figure()
    total = sum(g.num_params for g in groups) or 1
    crowded = len(groups) > 12  # e.g. a ViT-L has 26 groups: keep each box's label short enough to read
    in_legend: set[str] = set()
    counts = trainable_counts(groups, frozen, per_group)
    for group, role, trainable in zip(groups, group_roles(len(groups)), counts, strict=True):
        state = _state(trainable, group.num_params)
        label, legend, colour = STATES[state]
        x0, x1 = group.index, group.index + 0.8
        fig.add_scatter(
            x=[x0, x1, x1, x0, x0], y=[0, 0, 1, 1, 0], fill="toself", mode="lines", hoveron="fills",
            fillcolor=colour, line=dict(color="#4a5a6a", width=1), name=legend, legendgroup=state,
            showlegend=state not in in_legend, hoverinfo="text",
            text=f"{role}: {group.name}<br>{group.num_params:,} parameters, {trainable:,} trainable",
        )
        in_legend.add(state)
        size = short_count(group.num_params)
        lines = [f"<b>{role}</b>", size, label.split()[0]] if crowded else \
            [f"<b>{role}</b>", f"{size} ({share_text(group.num_params / total)})", label]
        fig.add_annotation(x=(x0 + x1) / 2, y=0.5, showarrow=False, text="<br>".join(lines),
                           font=dict(size=9 if crowded else 12, color=TEXT_COLOUR))
        if group.index > 0:
            fig.add_annotation(x=x0, y=0.5, ax=x0 - 0.2, ay=0.5, xref="x", yref="y", axref="x", ayref="y",
                               showarrow=True, arrowhead=2, arrowsize=1, arrowwidth=1.5, arrowcolor="#4a5a6a",
                               text="")
    fig.update_xaxes(visible=False, range=[-0.1, len(groups) - 0.1])
    fig.update_yaxes(visible=False, range=[-0.05, 1.05])
    return fig.update_layout(**{**LAYOUT, "legend": dict(orientation="h", y=-0.05)}, height=230,
                             title="Layer groups, stem → stages → head: parameters (share of the model)")


# ---------------------------------------------------------------------------------------------------------------
# Learning rates: per layer (discriminative), the LR finder's sweep, and the schedules over a run


def lr_text(lr: float) -> str:
    """0.001 -> '1e-3', 0.00049 -> '4.9e-4', 0.0023263 -> '2.3e-3': short enough for a bar label."""
    mantissa, exponent = f"{lr:.1e}".split("e")
    return f"{mantissa.removesuffix('.0')}e{int(exponent)}"


def round_lr(lr: float) -> float:
    """A learning rate rounded to two significant digits (0.0023263 -> 0.0023): the finder is not more exact."""
    return float(f"{lr:.2g}")


def _layer_name(first_param: str) -> str:
    """'blocks.3.1.conv_pw.weight' -> 'blocks.3.1', 'layer1.0.conv1.weight' -> 'layer1.0', 'fc.weight' -> 'fc':
    the module a layer starts with, from the name of its first parameter."""
    parts = first_param.split(".")[:-1] or first_param.split(".")
    numbered = [i for i, part in enumerate(parts) if part.isdigit()]
    return ".".join(parts[: numbered[-1] + 1] if numbered else parts)


def layer_lr_rows(model: torch.nn.Module, param_groups: list[dict], lr: float) -> list[dict]:
    """`engine.layer_learning_rates` (stem first) with a `layer` name for each: 'stem', the module it starts with,
    'head'. timm's layers for layer decay are finer than the freeze groups (often one per block)."""
    rows = layer_learning_rates(model, param_groups, lr)
    names = ["stem", *[_layer_name(r["first"]) for r in rows[1:-1]], "head"] if len(rows) > 1 else ["head"]
    return [{**row, "layer": name} for row, name in zip(rows, names, strict=True)]


def layer_lr_note(rows: list[dict]) -> str:
    """The sentence under the per-layer learning rates (`layer_lr_plan`'s rows, stem first, the head last)."""
    head = rows[-1]["lr"]
    ratios = {round(below["lr"] / above["lr"], 4) for below, above in itertools.pairwise(rows)}
    spread = (f"each layer under it at {ratios.pop():g}× the rate of the layer above" if len(ratios) == 1 else
              f"the layers under it at smaller rates, down to {rows[0]['lr'] / head:.2g}× at the stem")
    return (f"The head learns at the learning rate chosen below ({lr_text(head)}); {spread}. The optimiser cuts the "
            f"model into {len(rows)} layers for this.")


def layer_lr_table(rows: list[dict]) -> pd.DataFrame:
    """One line per layer, stem first: its learning rate, that as a share of the head's, and its parameters."""
    head = rows[-1]["lr"]
    return pd.DataFrame({"layer": [r["layer"] for r in rows], "learning rate": [r["lr"] for r in rows],
                         "share of the head's LR": [r["lr"] / head for r in rows],
                         "parameters": [r["params"] for r in rows], "starts with": [r["first"] for r in rows]})


def layer_lr_figure(rows: list[dict]) -> go.Figure:
    """Bars of each layer's peak learning rate, stem → head, on a log axis so that every factor of the decay is the
    same step down."""
    fig = go.Figure(go.Bar(
        x=[r["layer"] for r in rows], y=[r["lr"] for r in rows], marker_color=TRAINABLE_COLOUR,
        text=[lr_text(r["lr"]) for r in rows], textposition="outside", cliponaxis=False,
        customdata=[[r["first"], r["params"]] for r in rows],
        hovertemplate="%{x}: learning rate %{y:.2e}<br>starts with %{customdata[0]}<br>"
                      "%{customdata[1]:,} parameters<extra></extra>"))
    fig.update_xaxes(type="category", title_text="layer, from the stem (left) to the head (right)")
    stem, head = rows[0]["lr"], rows[-1]["lr"]
    # Ticks at powers of ten only, where there are two or more; plotly's 2s and 5s in between read as clutter.
    fig.update_yaxes(type="log", title_text="peak learning rate", exponentformat="e",
                     dtick=1 if head / stem >= 10 else None)
    return fig.update_layout(**LAYOUT, height=300, title=f"Learning rate of each layer: {lr_text(head)} for the head, "
                                                         f"{lr_text(stem)} for the stem ({head / stem:,.0f}× less)")


def suggestion_note(suggestion: float, current: float) -> str:
    """The line next to "Use this learning rate": the finder's (rounded) `suggestion`, and the `current` choice."""
    chosen = " (in use)." if current == suggestion else f"; chosen now: {current:g}."
    return f"Suggested: **{suggestion:g}**, where the loss falls fastest{chosen}"


def lr_finder_figure(lrs: list[float], losses: list[float], suggestion: float,
                     current: float | None = None) -> go.Figure:
    """The LR finder's smoothed loss against the learning rate (log axis, a tick per power of ten), the suggestion
    marked and, when given, the learning rate currently chosen as a dashed line. A last loss that blew up to inf /
    nan is left out."""
    finite = [i for i, loss in enumerate(losses) if math.isfinite(loss)]
    lrs, losses = [lrs[i] for i in finite], [losses[i] for i in finite]
    fig = go.Figure(go.Scatter(x=lrs, y=losses, mode="lines", name="smoothed training loss",
                               line=dict(color=TRAIN_COLOUR),
                               hovertemplate="LR %{x:.2e}: loss %{y:.3f}<extra></extra>"))
    if lrs:
        nearest = min(range(len(lrs)), key=lambda i: abs(lrs[i] - suggestion))
        fig.add_scatter(x=[suggestion], y=[losses[nearest]], mode="markers", name=f"suggested: {lr_text(suggestion)}",
                        marker=dict(color=VAL_COLOUR, size=13, symbol="star", line=dict(color=TEXT_COLOUR, width=1)),
                        hovertemplate="suggested LR %{x:.2e}<extra></extra>")
    if current is not None and losses:  # a trace, not add_vline: its label would be misplaced on a log axis
        fig.add_scatter(x=[current, current], y=[min(losses), max(losses)], mode="lines",
                        name=f"chosen now: {lr_text(current)}", line=dict(color="#4a5a6a", dash="dash", width=1),
                        hovertemplate="chosen LR %{x:.2e}<extra></extra>")
    fig.update_xaxes(type="log", title_text="learning rate", exponentformat="e", dtick=1)
    fig.update_yaxes(title_text="training loss (smoothed)")
    return fig.update_layout(**LAYOUT, height=340,
                             title="Loss while the learning rate grows: pick where it falls fastest, not its minimum")


SCHEDULES_EXPLAINED = {  # config.SCHEDULES -> (title, one line a teacher can read out)
    "cosine": ("Cosine with warmup (default)",
               "Climbs from almost 0 during the warmup, then glides down along a cosine to 1% of the peak, so the "
               "last epochs polish instead of jump."),
    "onecycle": ("One-cycle",
                 "Rises from 1/25 of the peak over the first 30% of training, then anneals to almost 0: often good "
                 "accuracy in fewer epochs."),
    "constant": ("Constant",
                 "The same learning rate from the first step to the last: the simplest baseline, but the final "
                 "weights are noisier."),
}


def schedule_figure(schedule: str, peak: float, epochs: int, warmup_epochs: float) -> go.Figure:
    """The shape of `schedule` over a run of `epochs` (`train.lr_at`, at 50 steps an epoch)."""
    steps_per_epoch = 50
    total = epochs * steps_per_epoch
    warmup = int(warmup_epochs * steps_per_epoch)
    fig = go.Figure(go.Scatter(x=[s / steps_per_epoch for s in range(total)],
                               y=[lr_at(s, total, warmup, peak, schedule) for s in range(total)], mode="lines",
                               line=dict(color=TRAIN_COLOUR),
                               hovertemplate="epoch %{x:.1f}: LR %{y:.2e}<extra></extra>"))
    fig.update_xaxes(title_text="epoch", range=[0, epochs], dtick=1 if epochs <= 10 else None)
    fig.update_yaxes(title_text="learning rate", rangemode="tozero", exponentformat="e")
    return fig.update_layout(**LAYOUT, height=220, title=f"{SCHEDULES_EXPLAINED[schedule][0]} over {epochs} epochs")
