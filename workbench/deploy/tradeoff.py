"""Which backbone for my images and my device? Accuracy against cost, one point per trained model file.

`points_for_runs(run_dirs)` reads each finished run (and, with `include_compressed`, the pruned and int8 variants its
compression report lists) and measures the saved model files on this machine: latency per image at batch 1 (the
compression panel's measurement, `core.latency`), size on disk, parameters and multiply-accumulates (MACs) at the
run's image size. Accuracy comes from the records: the run's validation (and held-out test) accuracy, a variant's
validation accuracy as its compression report measured it from its own file. Measurements are cached per file and
modification time, so a page that redraws every few seconds measures each file once.

`pareto_front`, `tradeoff_figure`, `tradeoff_table` and `advice` turn the points into the picture, the table and one
sentence of advice. Accuracy here is always validation accuracy: test accuracy is drawn beside it, never used to pick.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import plotly.graph_objects as go
import torch
from torch.utils.flop_counter import FlopCounterMode

from workbench import runs
from workbench.core.latency import latency
from workbench.core.normalize import Normalizer
from workbench.core.plot_style import LAYOUT
from workbench.deploy.compress import COMPRESSED_DIR, load_variant, model_file, read_report
from workbench.models.trained import Predictor

LATENCY_REPEATS = 20  # as CompressConfig's defaults: the compression panel's numbers and these agree
LATENCY_THREADS = 1
TRAINED = "trained"
COSTS = {"latency_ms": "latency per image, batch 1 (ms)", "size_mb": "size on disk (MB)",
         "cpu_ms": "CPU time per image, batch 1 (ms)"}
"""What a point's cost can be, and its axis title."""
CLOSE_ENOUGH_POINTS = 3.0
"""`advice` recommends the fastest model within this many accuracy points of the most accurate one."""
SAME_SPEED = 0.05
"""Latencies within 5% of each other count as the same speed in `advice` (timing noise)."""
RANDOM_WEIGHTS = "random weights"
MIB = 2**20


@dataclass(frozen=True)
class TradeoffPoint:
    """One trained model file: what it scores and what it costs here."""

    label: str
    """Short unique name: the backbone, the strategy when points differ in it, the variant, "(random weights)"."""
    run_id: str
    backbone: str
    strategy: str
    variant: str
    """"trained" (the run's own model), "pruned 50%", "channels pruned 50%", "int8 dynamic", "int8 static"."""
    pretrained: bool
    """False: the backbone started from random weights (nothing pretrained was available for it here)."""
    val_accuracy: float
    test_accuracy: float | None
    """Held-out test accuracy of the run's model; None without a test split, and for compressed variants."""
    latency_ms: float | None
    """Median wall clock of one image through the model on this machine's CPU, one thread; None if not measured."""
    size_mb: float
    """The model file's size on disk, in MiB."""
    params: int
    macs: int | None
    """Multiply-accumulates of one image at the run's image size (pruned and int8 variants do the same number: with
    zeros, or in 8 bits)."""
    train_seconds: float | None
    cpu_ms: float | None = None
    """Median CPU time of the measuring thread per image: barely moves when other programs load the machine."""
    image_size: int | None = None


# -------------------------------------------------------------------------------------------------------------------
# Measuring saved files


@dataclass(frozen=True)
class FileMeasurement:
    latency_ms: float | None
    cpu_ms: float | None
    size_bytes: int
    params: int
    macs: int | None


_measured: dict[tuple[str, int, int, bool], FileMeasurement] = {}
_measuring = threading.Lock()  # one measurement at a time: two at once would slow each other's clocks


def count_macs(model: torch.nn.Module, image: torch.Tensor) -> int:
    """Multiply-accumulates of one forward pass of `image` (torch's FLOP counter counts 2 per MAC)."""
    with torch.inference_mode(), FlopCounterMode(display=False) as counter:
        model(image)
    return counter.get_total_flops() // 2


def measure_file(path: Path, load: Callable[[], tuple[torch.nn.Module, torch.Tensor]], timed: bool = True,
                 counted: bool = True) -> FileMeasurement:
    """Size, parameters, MACs (when `counted`) and latency (when `timed`) of the model in `path`, built by `load` as
    (model, one normalised image). Cached per file, modification time and size: a file measured once is not
    loaded again until it changes."""
    stat = path.stat()
    key = (str(path.resolve()), stat.st_mtime_ns, stat.st_size, timed)
    with _measuring:
        if key not in _measured:
            model, image = load()
            speed = latency(model, image, LATENCY_REPEATS, LATENCY_THREADS) if timed else {}
            _measured[key] = FileMeasurement(
                latency_ms=speed.get("latency_ms"), cpu_ms=speed.get("cpu_ms"), size_bytes=stat.st_size,
                params=sum(p.numel() for p in model.parameters()), macs=count_macs(model, image) if counted else None)
        return _measured[key]


def _grey_image(info: dict) -> torch.Tensor:
    """One mid-grey uint8 image of the run's size (a CNN's cost does not depend on what the pixels show)."""
    return torch.full((1, 3, info["image_size"], info["image_size"]), 128, dtype=torch.uint8)


def _trained_loader(run_dir: Path) -> Callable[[], tuple[torch.nn.Module, torch.Tensor]]:
    def load() -> tuple[torch.nn.Module, torch.Tensor]:
        predictor = Predictor.from_run(run_dir)  # channels_last, as predictions and the compression panel run it
        return predictor.model, predictor.normalize(_grey_image(predictor.info))
    return load


def _variant_loader(variant_dir: Path) -> Callable[[], tuple[torch.nn.Module, torch.Tensor]]:
    def load() -> tuple[torch.nn.Module, torch.Tensor]:
        model, info = load_variant(variant_dir)
        return model, Normalizer(info["mean"], info["std"], torch.device("cpu"))(_grey_image(info))
    return load


# -------------------------------------------------------------------------------------------------------------------
# Points


def variant_name(variant: dict) -> str:
    """A compression report's variant as the picture names it: "pruned 50%", "int8 dynamic", …"""
    share = variant.get("target_sparsity") or variant.get("sparsity") or 0
    return {"unstructured": f"pruned {share:.0%}", "structured": f"channels pruned {share:.0%}",
            "dynamic": "int8 dynamic", "static": "int8 static"}.get(variant["kind"], variant["name"])


def _run_points(record: runs.RunRecord, include_compressed: bool, timed: bool) -> list[dict]:
    summary = record.summary
    weights = summary.pretrained or record.facts.get("weights_source") or {}
    common = {"run_id": record.id, "backbone": record.backbone, "strategy": record.strategy,
              "pretrained": bool(weights.get("pretrained")), "image_size": record.facts.get("image_size")}
    path = record.dir / runs.MODEL_FILE
    trained = measure_file(path, _trained_loader(record.dir), timed)
    points = [{**common, "variant": TRAINED, "val_accuracy": summary.val_accuracy,
               "test_accuracy": summary.test_accuracy, "train_seconds": summary.train_seconds, **_costs(trained)}]
    report = read_report(record.dir) if include_compressed else None
    for variant in (report or {}).get("variants", []):
        variant_dir = record.dir / COMPRESSED_DIR / variant["name"]
        if variant["kind"] == "original" or variant["status"] != "ok" or not variant_dir.is_dir():
            continue
        measured = measure_file(model_file(variant_dir), _variant_loader(variant_dir), timed, counted=False)
        points.append({**common, "variant": variant_name(variant), "val_accuracy": variant["val_accuracy"],
                       "test_accuracy": None, "train_seconds": summary.train_seconds,
                       **_costs(measured), "params": trained.params, "macs": trained.macs})
    return points


def _costs(measured: FileMeasurement) -> dict:
    return {"latency_ms": measured.latency_ms, "cpu_ms": measured.cpu_ms,
            "size_mb": round(measured.size_bytes / MIB, 3), "params": measured.params, "macs": measured.macs}


def points_for_runs(run_dirs: Iterable[str | Path], include_compressed: bool = True,
                    timed: bool = True) -> list[TradeoffPoint]:
    """One point per finished or stopped run with a saved model (others are skipped), plus one per compressed
    variant its compression report lists as built. `timed=False` leaves latency unmeasured (None): for a page to
    draw sizes while training keeps the CPU busy, which would slow every clock."""
    found = []
    for run_dir in run_dirs:
        record = runs.load_run(run_dir)
        if record.status in ("finished", "stopped") and record.has_model and record.summary.val_accuracy is not None:
            found.extend(_run_points(record, include_compressed, timed))
    labels = _labels(found)
    return [TradeoffPoint(label=label, **point) for label, point in zip(labels, found, strict=True)]


def _labels(points: list[dict]) -> list[str]:
    """The backbone; with the strategy when the points differ in it; the run's id when two runs still share a
    name; the variant; "(random weights)" for a backbone that was not pretrained."""
    several = len({p["strategy"] for p in points}) > 1
    base = {p["run_id"]: p["backbone"] + (f" · {p['strategy']}" if several else "") for p in points}
    runs_named = pd.Series(base).value_counts()  # one entry per run: a run's variants share its name
    labels = []
    for p in points:
        name = base[p["run_id"]] + (f" · {p['run_id'][-4:]}" if runs_named[base[p["run_id"]]] > 1 else "")
        name += "" if p["variant"] == TRAINED else f" · {p['variant']}"
        labels.append(name + ("" if p["pretrained"] else f" ({RANDOM_WEIGHTS})"))
    return labels


# -------------------------------------------------------------------------------------------------------------------
# The Pareto front, the picture, the table, the advice


def _cost(point: TradeoffPoint, x: str) -> float | None:
    if x not in COSTS:
        raise ValueError(f"x must be one of {', '.join(COSTS)}, not '{x}'.")
    return getattr(point, x)


def pareto_front(points: list[TradeoffPoint], x: str = "latency_ms") -> list[TradeoffPoint]:
    """The points no other point beats: none is at least as accurate (validation) for no more cost `x`, and better
    in one of the two. Returned cheapest first. Ties: of points with the same accuracy and the same cost, only the
    first in (label, run id, variant) order is kept, so the front is the same whatever order the points come in;
    a point as accurate as a cheaper one is not on it. Points whose cost is not measured are left out."""
    measured = [p for p in points if _cost(p, x) is not None]
    ordered = sorted(measured, key=lambda p: (_cost(p, x), -p.val_accuracy, p.label, p.run_id, p.variant))
    front: list[TradeoffPoint] = []
    for point in ordered:
        if not front or point.val_accuracy > front[-1].val_accuracy:
            front.append(point)
    return front


VARIANT_SYMBOLS = {"trained": "circle", "pruned": "square", "channels": "triangle-up", "int8": "diamond"}
BACKBONE_COLOURS = ("#1f77b4", "#ff7f0e", "#2ca02c", "#d62728", "#9467bd", "#8c564b", "#e377c2", "#17becf")
FRONT_NAME = "Pareto front: most accurate for its cost"
TEST_NAME = "test accuracy (held-out)"


def _symbol(point: TradeoffPoint) -> str:
    symbol = VARIANT_SYMBOLS.get(point.variant.split()[0], "circle")
    return symbol if point.pretrained else f"{symbol}-open"


def _group(point: TradeoffPoint) -> str:
    """The legend entry of a point: its label without the variant."""
    name = point.label.replace(f" ({RANDOM_WEIGHTS})", "")
    name = name if point.variant == TRAINED else name.removesuffix(f" · {point.variant}")
    return name + ("" if point.pretrained else f" ({RANDOM_WEIGHTS})")


def _hover(point: TradeoffPoint) -> str:
    weights = "pretrained" if point.pretrained else "RANDOM WEIGHTS: not pretrained"
    macs = f" · {point.macs / 1e6:,.0f} M MACs" if point.macs else ""
    latency_text = f"{point.latency_ms:.1f} ms per image" if point.latency_ms is not None else "latency not measured"
    return (f"<b>{point.label}</b><br>{point.variant} · {weights}<br>validation {point.val_accuracy:.1%}"
            + (f" · test {point.test_accuracy:.1%}" if point.test_accuracy is not None else "")
            + f"<br>{latency_text} · {point.size_mb:.1f} MB<br>{point.params:,} parameters{macs}")


def tradeoff_figure(points: list[TradeoffPoint], x: str = "latency_ms") -> go.Figure:
    """Validation accuracy against cost `x` ("latency_ms" or "size_mb"), one marker per model file (circle:
    trained, square: pruned, diamond: int8; open: random weights), one colour and legend entry per backbone, test
    accuracy as a grey cross above or below it where there is a test split, and the Pareto front as a dashed
    staircase named in the legend. Best models sit top left."""
    shown = [p for p in points if _cost(p, x) is not None]
    fig = go.Figure()
    groups = list(dict.fromkeys(_group(p) for p in shown))
    for index, group in enumerate(groups):
        members = [p for p in shown if _group(p) == group]
        fig.add_scatter(x=[_cost(p, x) for p in members], y=[p.val_accuracy for p in members], name=group,
                        mode="markers+text", text=[p.variant if p.variant != TRAINED else "" for p in members],
                        textposition="top center", hovertext=[_hover(p) for p in members], hoverinfo="text",
                        marker=dict(size=13, symbol=[_symbol(p) for p in members], line=dict(width=2),
                                    color=BACKBONE_COLOURS[index % len(BACKBONE_COLOURS)]))
    tested = [p for p in shown if p.test_accuracy is not None]
    if tested:
        fig.add_scatter(x=[_cost(p, x) for p in tested], y=[p.test_accuracy for p in tested], name=TEST_NAME,
                        mode="markers", marker=dict(symbol="x-thin", size=10, line=dict(width=2, color="#555")),
                        hovertext=[f"{p.label}: test {p.test_accuracy:.1%}" for p in tested], hoverinfo="text")
    front = pareto_front(shown, x)
    if front:
        fig.add_scatter(x=[_cost(p, x) for p in front], y=[p.val_accuracy for p in front], name=FRONT_NAME,
                        mode="lines", line=dict(color="#333", dash="dash", width=1.5, shape="hv"),
                        hovertext=[f"on the front: {p.label}" for p in front], hoverinfo="text")
    lowest = min([p.val_accuracy for p in shown] + [p.test_accuracy for p in tested], default=0.0)
    fig.update_xaxes(title_text=COSTS[x], rangemode="tozero")
    fig.update_yaxes(title_text="validation accuracy", tickformat=".0%", range=[max(0.0, lowest - 0.1), 1.04])
    title = "Accuracy against " + ("speed on this computer" if x != "size_mb" else "size on disk")
    return fig.update_layout(**LAYOUT, title=title, height=440)


TABLE_COLUMNS = ["model", "backbone", "strategy", "variant", "weights", "parameters", "MACs (M)", "size MB",
                 "latency ms", "CPU ms", "train s", "val accuracy", "test accuracy", "Pareto front", "run id"]


def tradeoff_table(points: list[TradeoffPoint]) -> pd.DataFrame:
    """One row per point, most accurate first: its costs, its accuracy, whether it started from random weights, and
    whether it is on the Pareto front of latency (of size when latency was not measured)."""
    x = "latency_ms" if any(p.latency_ms is not None for p in points) else "size_mb"
    front = {id(p) for p in pareto_front(points, x)}
    rows = [{
        "model": p.label, "backbone": p.backbone, "strategy": p.strategy, "variant": p.variant,
        "weights": "pretrained" if p.pretrained else RANDOM_WEIGHTS, "parameters": p.params,
        "MACs (M)": round(p.macs / 1e6, 1) if p.macs is not None else None, "size MB": p.size_mb,
        "latency ms": p.latency_ms, "CPU ms": p.cpu_ms, "train s": p.train_seconds, "val accuracy": p.val_accuracy,
        "test accuracy": p.test_accuracy, "Pareto front": "yes" if id(p) in front else "", "run id": p.run_id,
    } for p in points]
    table = pd.DataFrame(rows, columns=TABLE_COLUMNS)
    return table.sort_values(["val accuracy", "latency ms"], ascending=[False, True], kind="stable",
                             ignore_index=True)


def advice(points: list[TradeoffPoint], device: str = "this computer", x: str = "latency_ms") -> str:
    """One sentence: which model to use on `device` and what it costs against the most accurate one, e.g. "For this
    computer, tf_efficientnet_lite0: 2.1 points below the best (tf_efficientnet_lite2) at 3.0× its speed." The
    recommendation is the fastest model on the front within CLOSE_ENOUGH_POINTS of the best; times within
    SAME_SPEED count as equal. `x="cpu_ms"` judges speed by CPU time per image (steady on a busy machine)."""
    if x not in ("latency_ms", "cpu_ms"):
        raise ValueError(f"advice judges speed by latency_ms or cpu_ms, not '{x}'.")
    measured = [p for p in points if _cost(p, x) is not None]
    if not measured:
        return "Nothing to compare yet: no finished run with a saved model has been measured."

    def ms(point: TradeoffPoint) -> float:
        return _cost(point, x)

    best = min(measured, key=lambda p: (-p.val_accuracy, ms(p), p.label))
    where = f"For {device}"
    if len(measured) == 1:
        return (f"{where}, {best.label}: {best.val_accuracy:.1%} at {ms(best):.1f} ms per image. It is the only "
                "model measured so far: race other backbones to compare.")
    fastest = min(measured, key=lambda p: (ms(p), -p.val_accuracy, p.label))
    if len({p.val_accuracy for p in measured}) == 1 and ms(fastest) * (1 + SAME_SPEED) >= max(map(ms, measured)):
        return (f"{where}, all {len(measured)} models are as good as each other ({best.val_accuracy:.1%} at about "
                f"{ms(best):.1f} ms per image): pick any, e.g. the smallest file, "
                f"{min(measured, key=lambda p: (p.size_mb, p.label)).label}.")
    if ms(best) <= ms(fastest) * (1 + SAME_SPEED):
        return (f"{where}, {best.label}: the most accurate ({best.val_accuracy:.1%}) and also the fastest "
                f"({ms(best):.1f} ms per image); the others give up accuracy for nothing.")
    front = pareto_front(measured, x)
    close = [p for p in front if (best.val_accuracy - p.val_accuracy) * 100 <= CLOSE_ENOUGH_POINTS]
    pick = close[0] if close else best
    if pick is best or ms(best) <= ms(pick) * (1 + SAME_SPEED):
        cheapest = front[0]
        return (f"{where}, {best.label}: the most accurate ({best.val_accuracy:.1%}, {ms(best):.1f} ms per image); "
                f"the fastest, {cheapest.label}, is {(best.val_accuracy - cheapest.val_accuracy) * 100:.1f} points "
                f"below at {ms(best) / ms(cheapest):.1f}× its speed.")
    gap = (best.val_accuracy - pick.val_accuracy) * 100
    below = "as accurate as" if gap == 0 else f"{gap:.1f} points below"
    return f"{where}, {pick.label}: {below} the best ({best.label}) at {ms(best) / ms(pick):.1f}× its speed."


def busy_note(points: list[TradeoffPoint]) -> str | None:
    """On a machine busier than its cores (1-minute load average above the core count), wall-clock latency mostly
    measures the wait for a core: a sentence that says so, with the advice by CPU time per image; None otherwise."""
    load, cores = os.getloadavg()[0], os.cpu_count() or 1
    if load <= cores:
        return None
    return (f"This computer is busy (load average {load:.1f} on {cores} cores): wall-clock latency is inflated and "
            f"uneven. Judged by CPU time per image, which load moves much less: {advice(points, x='cpu_ms')}")
