"""Figures and tables of runs: plotly figures and pandas tables built from what the engine records, so the pages
only place them. Epochs are the x unit everywhere; a batch sits at a fraction of its epoch."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from .runs import RunRecord

TRAIN_COLOUR, VAL_COLOUR = "#1f77b4", "#ff7f0e"
METRIC_TITLES = {"val_acc": "Validation accuracy", "val_loss": "Validation loss", "train_acc": "Training accuracy",
                 "train_loss": "Training loss"}
# Legends go under the plot, clear of the x axis title.
LAYOUT = dict(template="plotly_white", margin=dict(l=10, r=10, t=40, b=10),
              legend=dict(orientation="h", yanchor="top", y=-0.28))


def _epoch_axis(fig: go.Figure, positions: list[float], planned: int | None = None) -> None:
    """x axis in epochs from 0 (to the planned number, so a live run fills it in from the left); whole-epoch ticks
    when there are few, rather than '0.2 epoch' ticks."""
    last = planned or max(positions, default=0)
    fig.update_xaxes(title_text="epoch", rangemode="tozero", dtick=1 if 0 < last <= 10 else None)
    if planned:
        fig.update_xaxes(range=[0, planned * 1.02])


def batch_position(batch: dict) -> float:
    """Where a batch sits on an epoch axis: the last batch of epoch 1 is at 1.0."""
    return batch["epoch"] - 1 + batch["batch"] / batch["batches"]


def training_curves(metrics: list[dict], batches: list[dict], epochs: int | None = None) -> go.Figure:
    """Loss (every batch, thin, plus per-epoch train and validation) and accuracy (per epoch), side by side; the x
    axis spans `epochs` when given."""
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Loss (lower is better)", "Accuracy (higher is better)"))
    done = [m["epoch"] for m in metrics]
    fig.add_scatter(x=[batch_position(b) for b in batches], y=[b["loss"] for b in batches], mode="lines",
                    name="training loss, each batch", line=dict(width=1, color=TRAIN_COLOUR), opacity=0.4,
                    row=1, col=1)
    for key, name, colour, col in (("train_loss", "training loss", TRAIN_COLOUR, 1),
                                   ("val_loss", "validation loss", VAL_COLOUR, 1),
                                   ("train_acc", "training accuracy", TRAIN_COLOUR, 2),
                                   ("val_acc", "validation accuracy", VAL_COLOUR, 2)):
        dash = "dot" if key.startswith("train") and col == 2 else None
        fig.add_scatter(x=done, y=[m[key] for m in metrics], mode="lines+markers", name=name,
                        line=dict(color=colour, dash=dash), row=1, col=col)
    _epoch_axis(fig, done + [batch_position(b) for b in batches[-1:]], epochs)
    _mark_phases(fig, metrics)
    fig.update_yaxes(rangemode="tozero", row=1, col=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=2)
    return fig.update_layout(**LAYOUT, height=360)


def phase_boundaries(metrics: list[dict]) -> list[tuple[int, int]]:
    """(epoch, frozen groups from then on) wherever the number of frozen groups changed: gradual unfreezing's
    phases."""
    marks = []
    for before, after in zip(metrics, metrics[1:], strict=False):
        if before.get("frozen_groups") != after.get("frozen_groups"):
            marks.append((after["epoch"], after["frozen_groups"]))
    return marks


def _mark_phases(fig: go.Figure, metrics: list[dict]) -> None:
    for epoch, frozen in phase_boundaries(metrics):
        for col in (1, 2):
            fig.add_vline(x=epoch - 1, line=dict(color="#888", dash="dash", width=1), row=1, col=col)
        fig.add_annotation(x=epoch - 1, y=1, yref="y domain", text=f"unfreeze: {frozen} frozen", showarrow=False,
                           textangle=-90, xanchor="right", yanchor="top", font=dict(size=10, color="#666"),
                           row=1, col=1)


def freeze_sweep_figure(points: list[dict]) -> go.Figure:
    """Validation accuracy and training time against freeze depth (points: freeze_depth, val_acc, seconds): the
    picture that answers "how much should I freeze?"."""
    points = sorted(points, key=lambda p: p["freeze_depth"])
    depths = [p["freeze_depth"] for p in points]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Validation accuracy", "Training time (s)"))
    fig.add_scatter(x=depths, y=[p["val_acc"] for p in points], mode="lines+markers", name="validation accuracy",
                    line=dict(color=VAL_COLOUR), row=1, col=1)
    fig.add_bar(x=depths, y=[p["seconds"] for p in points], name="training time", marker_color=TRAIN_COLOUR,
                row=1, col=2)
    fig.update_xaxes(title_text="frozen layer groups (0 = train everything)", dtick=1)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%", row=1, col=1)
    return fig.update_layout(**LAYOUT, height=340, showlegend=False)


def freeze_sweep_points(records: list[RunRecord], data: str, backbone: str) -> list[dict]:
    """The newest finished `partial` run at each freeze depth for this data and backbone."""
    points: dict[int, dict] = {}
    for record in records:  # newest first
        config, summary = record.config, record.summary or {}
        if (config.get("strategy") != "partial" or config.get("data") != data or config.get("backbone") != backbone
                or summary.get("status") != "finished"):
            continue
        depth = config.get("frozen_groups")
        points.setdefault(depth, {"freeze_depth": depth, "val_acc": summary.get("val_accuracy"),
                                  "seconds": summary.get("train_seconds"), "run_id": record.id})
    return list(points.values())


def lr_curve(batches: list[dict], epochs: int | None = None) -> go.Figure:
    """The learning rate at every batch (warmup, then the schedule's decay); the x axis spans `epochs` when given."""
    x = [batch_position(b) for b in batches]
    fig = go.Figure(go.Scatter(x=x, y=[b["lr"] for b in batches], mode="lines", name="learning rate",
                               line=dict(color="#2ca02c")))
    _epoch_axis(fig, x, epochs)
    fig.update_yaxes(title_text="learning rate", exponentformat="e", rangemode="tozero")
    return fig.update_layout(**LAYOUT, height=260, title="Learning rate")


def row_percentages(matrix: list[list[int]]) -> np.ndarray:
    """Each row of a confusion matrix as % of that true class (a row with no images stays 0)."""
    m = np.asarray(matrix, dtype=float)
    totals = m.sum(axis=1, keepdims=True)
    return np.divide(100 * m, totals, out=np.zeros_like(m), where=totals > 0)


def confusion_figure(matrix: list[list[int]], class_names: list[str], title: str = "Confusion matrix",
                     colour_scale: bool = True) -> go.Figure:
    """True class on y (top to bottom), predicted on x; each cell shows its count and its % of the true class, and
    is coloured by that %, so a small class's mistakes are as visible as a big one's."""
    pct = row_percentages(matrix)
    text = [[f"{count}<br>{p:.0f}%" for count, p in zip(row, pct_row, strict=True)]
            for row, pct_row in zip(matrix, pct, strict=True)]
    fig = go.Figure(go.Heatmap(
        z=pct, x=class_names, y=class_names, text=text, texttemplate="%{text}", colorscale="Blues", zmin=0, zmax=100,
        showscale=colour_scale, colorbar=dict(title="% of row", ticksuffix="%"),
        hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    fig.update_xaxes(title_text="predicted class", side="bottom", type="category")
    fig.update_yaxes(title_text="true class", autorange="reversed", type="category")
    top = 40 + 20 * title.count("<br>")
    return fig.update_layout(**{**LAYOUT, "margin": dict(l=10, r=10, t=top, b=10)}, title=title,
                             height=max(320, 120 + 60 * len(class_names)))


def overlay_curves(records: dict[str, list[dict]], metric: str = "val_acc") -> go.Figure:
    """One line per run (label -> its per-epoch metrics) for one metric."""
    fig = go.Figure()
    for label, metrics in records.items():
        fig.add_scatter(x=[m["epoch"] for m in metrics], y=[m[metric] for m in metrics], mode="lines+markers",
                        name=label)
    _epoch_axis(fig, [m["epoch"] for metrics in records.values() for m in metrics])
    if metric.endswith("acc"):
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    else:
        fig.update_yaxes(rangemode="tozero")
    return fig.update_layout(**LAYOUT, title=METRIC_TITLES.get(metric, metric), height=360)


# -------------------------------------------------------------------------------------------------------------------
# Tables

RUN_COLUMNS = ["strategy", "backbone", "status", "val accuracy", "epochs", "image size", "freeze depth",
               "trainable params", "time s", "images/s", "weight source", "dataset", "run id"]
BEST_IS_HIGHEST = {"val accuracy": True, "images/s": True, "time s": False}


def run_status(record: RunRecord, live: dict[str, str] | None = None) -> str:
    """The record's own status; a run with no summary is live if the registry says so, otherwise interrupted."""
    if record.summary:
        return record.summary["status"]
    return (live or {}).get(record.id, "interrupted")


def runs_table(records: list[RunRecord], live: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run, in the given order. `live` maps run ids to the status the registry knows them by."""
    rows = [_run_row(record, run_status(record, live)) for record in records]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _run_row(record: RunRecord, status: str) -> dict:
    config, summary = record.config, record.summary or {}
    last = record.metrics[-1] if record.metrics else {}
    weights = summary.get("pretrained") or config.get("weights_source") or {}
    return {
        "backbone": config.get("backbone"),
        "strategy": config.get("strategy"),
        "freeze depth": summary.get("frozen_groups", config.get("frozen_groups")),
        "epochs": summary.get("epochs_completed", len(record.metrics)),
        "image size": config.get("image_size"),
        "val accuracy": summary.get("val_accuracy", last.get("val_acc")),
        "trainable params": summary.get("trainable_params", config.get("trainable_params")),
        "time s": summary.get("train_seconds"),
        "images/s": summary.get("images_per_s"),
        "weight source": weights.get("description", "not known yet"),
        "dataset": Path(config["data"]).name if config.get("data") else None,
        "status": status,
        "run id": record.id,
    }


def highlight_best(table: pd.DataFrame) -> pd.io.formats.style.Styler:
    """The table with the best value of each comparable column in bold green, and numbers formatted to read."""
    style = table.style.format({"val accuracy": "{:.1%}", "time s": "{:.1f}", "images/s": "{:.1f}",
                                "trainable params": "{:,.0f}", "freeze depth": "{:.0f}", "image size": "{:.0f}"},
                               na_rep="–")
    props = "font-weight: bold; background-color: #d9f2d9"
    for column, highest in BEST_IS_HIGHEST.items():
        if table[column].notna().any():
            best = style.highlight_max if highest else style.highlight_min
            style = best(subset=[column], props=props)
    return style


def run_labels(records: list[RunRecord]) -> dict[str, str]:
    """Short, unique names of runs for legends: strategy, backbone and the time it started (from its id)."""
    labels: dict[str, str] = {}
    for record in records:
        clock = record.id[9:15]
        when = f"{clock[:2]}:{clock[2:4]}:{clock[4:]}" if clock.isdigit() else record.id
        label = f"{record.config.get('strategy')} · {record.config.get('backbone')} · {when}"
        labels[record.id] = f"{label} · {record.id[-4:]}" if label in labels.values() else label
    return labels


def per_class_table(per_class: dict[str, dict[str, float]]) -> pd.DataFrame:
    """Precision, recall and number of validation images per class."""
    table = pd.DataFrame.from_dict(per_class, orient="index")[["precision", "recall", "support"]]
    return table.rename(columns={"support": "validation images"}).rename_axis("class")
