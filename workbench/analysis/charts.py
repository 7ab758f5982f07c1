"""Figures and tables of runs: plotly figures and pandas tables built from what the engine records, so the pages
only place them. Epochs are the x unit everywhere; a batch sits at a fraction of its epoch."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import plotly.graph_objects as go
from plotly.subplots import make_subplots

from workbench.core.plot_style import LAYOUT, TRAIN_COLOUR, VAL_COLOUR, epoch_axis
from workbench.runs.records import RunRecord, RunSummary

METRIC_TITLES = {"val_acc": "Validation accuracy", "val_loss": "Validation loss", "train_acc": "Training accuracy",
                 "train_loss": "Training loss"}

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
    epoch_axis(fig, done + [batch_position(b) for b in batches[-1:]], epochs)
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
        if (record.strategy != "partial" or record.data != data or record.backbone != backbone
                or record.status != "finished"):
            continue
        depth = record.facts.get("frozen_groups")
        points.setdefault(depth, {"freeze_depth": depth, "val_acc": record.summary.val_accuracy,
                                  "seconds": record.summary.train_seconds, "run_id": record.id})
    return list(points.values())


def lr_curve(batches: list[dict], epochs: int | None = None) -> go.Figure:
    """The learning rate at every batch (warmup, then the schedule's decay); the x axis spans `epochs` when given."""
    x = [batch_position(b) for b in batches]
    fig = go.Figure(go.Scatter(x=x, y=[b["lr"] for b in batches], mode="lines", name="learning rate",
                               line=dict(color="#2ca02c")))
    epoch_axis(fig, x, epochs)
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
    epoch_axis(fig, [m["epoch"] for metrics in records.values() for m in metrics])
    if metric.endswith("acc"):
        fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    else:
        fig.update_yaxes(rangemode="tozero")
    return fig.update_layout(**LAYOUT, title=METRIC_TITLES.get(metric, metric), height=360)


# -------------------------------------------------------------------------------------------------------------------
# Tables

RUN_COLUMNS = ["strategy", "backbone", "status", "val accuracy", "test accuracy", "epochs", "image size",
               "freeze depth", "trainable params", "time s", "images/s", "weight source", "device", "dataset", "run id"]
BEST_IS_HIGHEST = {"val accuracy": True, "images/s": True, "time s": False}
"""The columns whose best value is highlighted. Never "test accuracy": runs are chosen on validation, and the test
images stay an unbiased check of the run chosen."""


def run_status(record: RunRecord, live: dict[str, str] | None = None) -> str:
    """The record's own status; a run with no summary is what the registry says, else what its record says (running
    in another process, or interrupted)."""
    if record.summary:
        return record.summary.status
    return (live or {}).get(record.id, record.status)


def runs_table(records: list[RunRecord], live: dict[str, str] | None = None) -> pd.DataFrame:
    """One row per run, in the given order. `live` maps run ids to the status the registry knows them by."""
    rows = [_run_row(record, run_status(record, live)) for record in records]
    return pd.DataFrame(rows, columns=RUN_COLUMNS)


def _run_row(record: RunRecord, status: str) -> dict:
    summary, facts = record.summary or RunSummary(status=status), record.facts
    last = record.metrics[-1] if record.metrics else {}
    weights = summary.pretrained or facts.get("weights_source") or {}
    return {
        "backbone": record.backbone,
        "strategy": record.strategy,
        "freeze depth": _first_known(summary.frozen_groups, facts.get("frozen_groups")),
        "epochs": _first_known(summary.epochs_completed, len(record.metrics)),
        # config.json keeps the resolved size, for an imported model or prototypes (no RunConfig) too
        "image size": facts.get("image_size"),
        "val accuracy": _first_known(summary.val_accuracy, last.get("val_acc")),
        "test accuracy": summary.test_accuracy,
        "trainable params": _first_known(summary.trainable_params, facts.get("trainable_params")),
        "time s": summary.train_seconds,
        "images/s": summary.images_per_s,
        "weight source": weights.get("description", "not known yet"),
        "device": summary.device or facts.get("device"),
        "dataset": Path(record.data).name if record.data else None,
        "status": status,
        "run id": record.id,
    }


def _first_known(recorded: Any, otherwise: Any) -> Any:
    """What the summary recorded; `otherwise` while the run has no summary yet or its summary lacks it."""
    return otherwise if recorded is None else recorded


def highlight_best(table: pd.DataFrame) -> pd.io.formats.style.Styler:
    """The table with the best value of each comparable column in bold green, and numbers formatted to read."""
    style = table.style.format({"val accuracy": "{:.1%}", "test accuracy": "{:.1%}", "time s": "{:.1f}",
                                "images/s": "{:.1f}", "trainable params": "{:,.0f}", "freeze depth": "{:.0f}",
                                "image size": "{:.0f}"}, na_rep="–")
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
        label = f"{record.strategy} · {record.backbone} · {when}"
        labels[record.id] = f"{label} · {record.id[-4:]}" if label in labels.values() else label
    return labels


def per_class_table(per_class: dict[str, dict[str, float]], images: str = "validation images") -> pd.DataFrame:
    """Precision, recall and number of images per class; `images` names the count's column (which images)."""
    table = pd.DataFrame.from_dict(per_class, orient="index")[["precision", "recall", "support"]]
    return table.rename(columns={"support": images}).rename_axis("class")


# -------------------------------------------------------------------------------------------------------------------
# Inside a finished run (workbench.insight)

CLASS_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22",
                 "#17becf")
FROZEN_COLOUR, TRAINED_COLOUR = "#bbbbbb", "#1f77b4"


def class_feature_map_figure(before: np.ndarray, after: np.ndarray, points: list, separation: tuple[float, float],
                             method: str = "PCA") -> go.Figure:
    """The validation images as points of their features in 2-D, coloured by true class, before training (left)
    and after (right). `points` are insight.ValPrediction, one per row; hover names the file and the prediction,
    and each point carries its row number (customdata) so a page can show the thumbnails of the points picked."""
    titles = [f"Before training · class separation {separation[0]:.2f}",
              f"After training · class separation {separation[1]:.2f}"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=titles, horizontal_spacing=0.06)
    classes = list(dict.fromkeys(p.true_class for p in points))
    for col, xy in enumerate((before, after), start=1):
        for i, name in enumerate(classes):
            rows = [r for r, p in enumerate(points) if p.true_class == name]
            fig.add_scatter(
                x=xy[rows, 0], y=xy[rows, 1], mode="markers", name=name, legendgroup=name, showlegend=col == 1,
                marker=dict(color=CLASS_COLOURS[i % len(CLASS_COLOURS)], size=8, opacity=0.75,
                            line=dict(width=1, color="white")),
                customdata=[[r, points[r].name, points[r].predicted_class] for r in rows],
                hovertemplate="%{customdata[1]}<br>predicted: %{customdata[2]}<extra>%{fullData.name}</extra>",
                row=1, col=col)
    fig.update_xaxes(showticklabels=False, title_text=f"{method} 1")
    fig.update_yaxes(showticklabels=False, title_text=f"{method} 2")
    return fig.update_layout(**LAYOUT, height=420)


def weight_drift_figure(drifts: list) -> go.Figure:
    """||w - w0|| / ||w0|| per layer group (insight.GroupDrift), stem on the left, head on the right; frozen groups
    in grey."""
    names = [f"{d.index}: {d.name}" for d in drifts]
    fig = go.Figure(go.Bar(
        x=names, y=[d.drift for d in drifts], marker_color=[FROZEN_COLOUR if d.frozen else TRAINED_COLOUR
                                                            for d in drifts],
        text=[f"{d.drift:.1%}" + (" (frozen)" if d.frozen else "") for d in drifts], textposition="outside",
        customdata=[f"{d.num_params:,}" for d in drifts],
        hovertemplate="%{x}<br>moved %{y:.2%} of its size<br>%{customdata} weights<extra></extra>"))
    fig.update_xaxes(title_text="layer group (stem → head)", type="category")
    fig.update_yaxes(title_text="‖w − w₀‖ / ‖w₀‖", tickformat=".0%", rangemode="tozero")
    return fig.update_layout(**LAYOUT, height=360, title="How far each layer group moved from where it started")


REPORT_BARS = (("precision", "#1f77b4"), ("recall", "#ff7f0e"), ("f1", "#2ca02c"))


def class_report_figure(report: pd.DataFrame) -> go.Figure:
    """Precision, recall and F1 per class (insight.class_report), grouped bars."""
    fig = go.Figure()
    for column, colour in REPORT_BARS:
        fig.add_bar(x=list(report.index), y=report[column], name=column if column != "f1" else "F1",
                    marker_color=colour, hovertemplate=f"%{{x}}: {column} %{{y:.1%}}<extra></extra>")
    fig.update_xaxes(title_text="class", type="category")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%")
    return fig.update_layout(**LAYOUT, barmode="group", height=340, title="Per class")


# -------------------------------------------------------------------------------------------------------------------
# Compression trade-off (workbench.compress) and data-efficiency curve (workbench.fewshot)

TRADEOFF_COLUMNS = ["variant", "status", "val accuracy", "size MB", "zipped MB", "latency ms", "CPU ms",
                    "sparsity", "changed predictions", "note"]
METHOD_COLOURS = {"prototypes": "#9467bd", "linear_probe": "#1f77b4", "partial": "#2ca02c", "scratch": "#7f7f7f"}


def tradeoff_table(report: dict) -> pd.DataFrame:
    """One row per variant of a compression report (the original first): what it costs and what it keeps."""
    rows = [{
        "variant": v["name"], "status": v["status"], "val accuracy": v.get("val_accuracy"),
        "size MB": _megabytes(v.get("size_bytes")), "zipped MB": _megabytes(v.get("zipped_bytes")),
        "latency ms": v.get("latency_ms"), "CPU ms": v.get("cpu_ms"), "sparsity": v.get("sparsity"),
        "changed predictions": v.get("changed_predictions"), "note": v.get("note"),
    } for v in report["variants"]]
    return pd.DataFrame(rows, columns=TRADEOFF_COLUMNS)


def _megabytes(value: int | None) -> float | None:
    return None if value is None else round(value / 2**20, 3)


def tradeoff_figure(report: dict) -> go.Figure:
    """Accuracy against size on disk and against CPU time per image (one thread: an idle core's latency, steady
    under load), one labelled point per variant: the best variants sit top left."""
    ok = [v for v in report["variants"] if v["status"] == "ok"]
    fig = make_subplots(rows=1, cols=2, subplot_titles=("Accuracy vs size on disk", "Accuracy vs time per image"))
    for col, key, title in ((1, "size_bytes", "size on disk (MB)"), (2, "cpu_ms", "CPU time per image (ms)")):
        x = [v[key] / 2**20 if key == "size_bytes" else v[key] for v in ok]
        fig.add_scatter(x=x, y=[v["val_accuracy"] for v in ok], mode="markers+text", text=[v["name"] for v in ok],
                        textposition="top center", marker=dict(size=11, color=[_variant_colour(v) for v in ok]),
                        showlegend=False, hovertemplate="%{text}: %{y:.1%}, %{x:.3g}<extra></extra>", row=1, col=col)
        fig.update_xaxes(title_text=title, rangemode="tozero", row=1, col=col)
    fig.update_yaxes(range=[0, 1.08], tickformat=".0%", title_text="validation accuracy", row=1, col=1)
    fig.update_yaxes(range=[0, 1.08], tickformat=".0%", row=1, col=2)
    return fig.update_layout(**LAYOUT, height=380)


def _variant_colour(variant: dict) -> str:
    return {"original": "#000000", "unstructured": "#1f77b4", "structured": "#ff7f0e", "dynamic": "#2ca02c",
            "static": "#d62728"}.get(variant["kind"], "#7f7f7f")


def confusion_difference_figure(difference: list[list[int]], class_names: list[str], title: str) -> go.Figure:
    """Variant's confusion matrix minus the original's: red cells gained images, blue cells lost them (a red
    diagonal cell is a class it gets right more often)."""
    limit = max(1, max(abs(v) for row in difference for v in row))
    fig = go.Figure(go.Heatmap(
        z=difference, x=class_names, y=class_names, text=[[f"{v:+d}" if v else "0" for v in row] for row in difference],
        texttemplate="%{text}", colorscale="RdBu", reversescale=True, zmin=-limit, zmax=limit, zmid=0,
        colorbar=dict(title="images"), hovertemplate="true %{y}, predicted %{x}: %{text}<extra></extra>"))
    fig.update_xaxes(title_text="predicted class", type="category")
    fig.update_yaxes(title_text="true class", autorange="reversed", type="category")
    return fig.update_layout(**LAYOUT, title=title, height=max(320, 120 + 60 * len(class_names)))


def data_efficiency_table(points: list[dict]) -> pd.DataFrame:
    """Validation accuracy per method (rows) and images per class (columns) of a data-efficiency curve."""
    table = pd.DataFrame(points)
    if table.empty:
        return table
    table["images per class"] = [str(s) if s != "all" else f"all ({n:g})"
                                 for s, n in zip(table["shots"], table["images_per_class"], strict=True)]
    order = list(dict.fromkeys(table.sort_values("images_per_class")["images per class"]))
    pivot = table.pivot_table(index="method", columns="images per class", values="val_accuracy", aggfunc="last")
    methods = [m for m in METHOD_COLOURS if m in pivot.index] + [m for m in pivot.index if m not in METHOD_COLOURS]
    return pivot.reindex(index=methods, columns=order)


def data_efficiency_figure(points: list[dict], chance: float | None = None) -> go.Figure:
    """Accuracy against images per class (log scale), one line per method, with chance level dashed."""
    fig = go.Figure()
    for method in dict.fromkeys(p["method"] for p in points):
        mine = sorted((p for p in points if p["method"] == method and p.get("val_accuracy") is not None),
                      key=lambda p: p["images_per_class"])
        fig.add_scatter(x=[p["images_per_class"] for p in mine], y=[p["val_accuracy"] for p in mine],
                        mode="lines+markers", name=method, line=dict(color=METHOD_COLOURS.get(method)),
                        hovertemplate=f"{method}: %{{y:.1%}} with %{{x:g}} images per class<extra></extra>")
    if chance is not None:
        fig.add_hline(y=chance, line=dict(color="#888", dash="dash"), annotation_text=f"chance ({chance:.0%})",
                      annotation_position="bottom right")
    fig.update_xaxes(type="log", title_text="training images per class (log scale)")
    fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title_text="validation accuracy")
    return fig.update_layout(**LAYOUT, height=400, title="How many images do I need?")


def clickable_confusion_figure(matrix: list[list[int]], class_names: list[str],
                               title: str = "Confusion matrix") -> go.Figure:
    """`confusion_figure` whose cells can be clicked in Streamlit (`on_select`): Streamlit returns no selection for
    heatmap traces (streamlit/streamlit#8760), so an invisible square marker sits on every cell and takes the clicks
    and the hover. A selected point's x is the predicted class, its y the true class."""
    fig = confusion_figure(matrix, class_names, title)
    fig.update_traces(hoverinfo="skip", hovertemplate=None, selector=dict(type="heatmap"))
    pct = row_percentages(matrix)
    cells = [(true, pred) for true in range(len(class_names)) for pred in range(len(class_names))]
    fig.add_scatter(
        x=[class_names[p] for _, p in cells], y=[class_names[t] for t, _ in cells], mode="markers",
        marker=dict(symbol="square", size=28, color="rgba(0,0,0,0)", line=dict(width=0)),
        selected=dict(marker=dict(color="rgba(255,200,0,0.35)")), unselected=dict(marker=dict(opacity=1)),
        customdata=[[matrix[t][p], pct[t][p]] for t, p in cells], showlegend=False, name="",
        hovertemplate="true %{y}, predicted %{x}: %{customdata[0]} (%{customdata[1]:.0f}%)<br>click to see the "
                      "images<extra></extra>")
    # the markers must not widen the axes beyond the heatmap's cells
    fig.update_xaxes(range=[-0.5, len(class_names) - 0.5])
    fig.update_yaxes(range=[len(class_names) - 0.5, -0.5], autorange=False)
    return fig.update_layout(clickmode="event+select")
