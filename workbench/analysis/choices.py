"""The Model page's choices, from widgets to a RunConfig: the chosen strategy's options as plain widget descriptions,
the runs a "run" option may name and the folders an "images" option defaults to, the one check of everything a
browser sent, the choices kept for the Train page, which of them the learning-rate finder depends on, the model
picker's list, and the sentences the page shows (where a run's starting weights come from, early stopping, the time
estimate, missing data, a failed finder).

Plain values only, so the pages place widgets and the checks stay here, tested without a browser.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from workbench.analysis.estimate import describe_seconds, estimate_for_machine
from workbench.data import DataError, DataSpec
from workbench.engine import failure_hint
from workbench.engine.config import RunConfig
from workbench.models.backbones import LayerGroup
from workbench.runs.records import RunRecord
from workbench.strategies import STRATEGIES, Strategy, get_strategy

PAGE_FIELDS = ("backbone", "strategy", "freeze_depth", "epochs", "lr", "batch_size", "image_size", "augment",
               "schedule", "patience")
"""The RunConfig fields the Model page sets (besides `weights` and the strategy's options)."""
BUDGET = ("epochs", "lr", "batch_size", "image_size", "augment")
"""The training budget: its defaults depend on the backbone, the strategy and the device."""
RESET_BY_BACKBONE = ("image_size", "freeze_depth")
RESET_BY_STRATEGY = ("epochs", "lr", "image_size", "freeze_depth")
"""Choices that start again from their defaults when the backbone, or the strategy, changes."""
NOT_IN_FINDER = ("lr", "epochs", "schedule", "patience")
"""Choices that do not change the learning-rate finder's sweep: a search made before them still holds."""
USUAL_LEARNING_RATES = (1e-5, 3e-5, 1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2, 1e-1)
WEIGHT_BADGES = {"bundled": "✅ bundled", "cached": "✅ cached", "download": "⬇ would download",
                 "none": "⚠ no pretrained weights"}
"""How the model picker marks a backbone's pretrained weights (`models.backbones.weights_availability`)."""


# ---------------------------------------------------------------------------------------------------------------
# The backbone and the freeze depth


def backbone_names(found: list[str], chosen: str, limit: int) -> list[str]:
    """The backbones the model picker lists: the first `limit` of the search's `found`, and `chosen` first when it
    is not among them (a new search must not change the model picked)."""
    names = found[:limit]
    return names if chosen in names else [chosen, *names]


def backbone_label(count: int, limit: int) -> str:
    """The model picker's label for a search that found `count` backbones, of which it lists `limit` at most:
    'Model (1 match)', 'Model (1,234 matches, first 300 shown)'."""
    more = f", first {limit} shown" if count > limit else ""
    return f"Model ({count:,} match{'es' if count != 1 else ''}{more})"


def freeze_depth_within(value: Any, default: int, groups: list[LayerGroup]) -> int:
    """The freeze depth to show: `value` (kept from before, maybe for another model) when it is a depth the model's
    layer `groups` allow (0 to the head's index), else `default`."""
    fits = isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= len(groups) - 1
    return value if fits else default


# ---------------------------------------------------------------------------------------------------------------
# The strategy's options as widgets


@dataclass(frozen=True)
class OptionWidget:
    """One field of a strategy's `Options`, as the Model page draws it."""

    name: str  # the field's name, also its key in the saved choices
    label: str  # the field's help text
    kind: str  # "bool", "int", "float" or "text"; "run" (a run with a model) or "images" (a folder or .zip) by metadata
    default: Any


def option_widgets(strategy: Strategy) -> list[OptionWidget]:
    """The widgets for `strategy`'s own settings, in the order its `Options` dataclass declares them. A field's
    metadata "kind" ("run", "images") wins over its type; a bool is a checkbox, not a number."""
    found = []
    for f in dataclasses.fields(strategy.Options):
        kind = f.metadata.get("kind") or next(
            name for types, name in ((bool, "bool"), (int, "int"), (float, "float"), (object, "text"))
            if isinstance(f.default, types))
        found.append(OptionWidget(f.name, f.metadata.get("help") or f.name, kind, f.default))
    return found


def option_runs(records: list[RunRecord], class_names: list[str]) -> list[RunRecord]:
    """Finished runs with a usable model on exactly these classes, most accurate first: what a "run" option (a
    teacher, say) may name."""
    found = [r for r in records if r.status == "finished" and r.has_model and r.class_names == class_names]
    return sorted(found, key=lambda r: -((r.summary.val_accuracy if r.summary else None) or 0.0))


def run_label(record: RunRecord) -> str:
    """'backbone · strategy · accuracy · end of the id': a run in a picker."""
    accuracy = record.summary.val_accuracy if record.summary else None
    shown = f"{accuracy:.0%}" if accuracy is not None else "–"
    return f"{record.backbone} · {record.strategy} · {shown} · {record.id[-4:]}"


def images_default(data: str | None, samples: dict[str, Path]) -> str:
    """The sample folder an "images" option starts from: the variant named after the training data's folder
    (shapes -> shapes_shifted), else another sample folder; the training data is the first sample until one is
    chosen. "" when there is no other sample folder."""
    if not samples:
        return ""
    source = Path(data).name if data else next(iter(samples))
    others = {name: path for name, path in samples.items() if name != source}
    variant = next((path for name, path in others.items() if name.startswith(f"{source}_")), None)
    return str(variant or next(iter(others.values()), ""))


# ---------------------------------------------------------------------------------------------------------------
# From choices to a RunConfig


def dataset_facts(path: str, data_choices: dict | None = None) -> dict | None:
    """What the Model page needs of the chosen dataset, read as the Data page's `data_choices` say (test share,
    layout choices): "classes" (how many), "class_names", "train" and "val" (image counts) and "first_image" (a
    training image's path, None if there is none); None if it cannot be read."""
    try:
        dataset = DataSpec.from_values({**(data_choices or {}), "data": path}).open()
    except DataError:
        return None
    first = str(dataset.train[0].path) if dataset.train else None
    return {"classes": len(dataset.class_names), "class_names": dataset.class_names, "train": len(dataset.train),
            "val": len(dataset.val), "first_image": first}


def draft_config(choices: dict) -> RunConfig:
    """The RunConfig the choices make so far, for the diagrams drawn before every choice is made: choices that do
    not fit together yet fall back to the strategy's defaults (`checked_config` says what is wrong with them)."""
    try:
        return RunConfig.from_dict({**choices, "data": ""})
    except ValueError:
        return RunConfig(data="", backbone=choices["backbone"], strategy=choices["strategy"])


def checked_config(choices: dict, data: str, groups: list[LayerGroup]) -> RunConfig:
    """The RunConfig that `choices` (RunConfig fields and the strategy's options, flat, as the Model page collects
    them) make for the dataset `data`. Raises ValueError saying what is wrong: a value out of range, options that
    do not fit the model's layer `groups` (a freeze depth too deep), a weights file that is not on this computer."""
    config = RunConfig.from_dict({**choices, "data": data})
    get_strategy(config.strategy).check_groups(groups, config)
    if config.weights not in ("auto", "none") and not Path(config.weights).expanduser().is_file():
        raise ValueError(f"Weights file '{config.weights}' does not exist on this computer. Check the path, or "
                         "type 'auto'.")
    return config


def saved_choices(config: RunConfig, weights: str) -> dict:
    """What the Model page keeps for the Train page: its fields and the strategy's options, flat. `weights` as the
    user gave it: RunConfig turns 'auto' into 'none' for a strategy that starts from random weights, and that must
    not stick when they switch back to a pretrained one."""
    return {**{name: getattr(config, name) for name in PAGE_FIELDS}, **dataclasses.asdict(config.options),
            "weights": weights}


def learning_rates(chosen: float | None = None) -> list[float]:
    """The learning rates to pick from, in order: the usual ones, every strategy's default, and `chosen` (the
    finder's suggestion, or a saved choice, need not be one of the usual ones)."""
    return sorted({*USUAL_LEARNING_RATES, *(s.default_lr for s in STRATEGIES.values()), *([chosen] if chosen else [])})


def finder_key(config: RunConfig) -> str:
    """What the learning-rate finder's sweep depends on, as one comparable string: a search is shown again only
    for the choices it was made with."""
    return repr(sorted((k, repr(v)) for k, v in config.to_dict().items() if k not in NOT_IN_FINDER))


def plan_lines(plan: RunConfig, groups: list[LayerGroup]) -> list[str]:
    """The Train page's "What will run" box, in Markdown lines, for a planned (resolved) config: data, backbone and
    strategy (with the freeze depth, its default worked out on the model's layer `groups`, where the strategy has
    one), the budget, then the strategy's own lines."""
    strategy = get_strategy(plan.strategy)
    freeze = ""
    if strategy.freeze_label is not None:
        depth = strategy.default_freeze_depth(groups) if plan.freeze_depth is None else plan.freeze_depth
        freeze = f" · freeze depth: {depth}{' (default)' if plan.freeze_depth is None else ''}"
    return [f"**Data:** {Path(plan.data).name} · **Backbone:** {plan.backbone} · **Strategy:** {strategy.title}, "
            f"trains {strategy.trains}{freeze}",
            f"**Epochs:** {plan.epochs} · **Image size:** {plan.image_size} px · **Batch:** {plan.batch_size} · "
            f"**Learning rate:** {plan.lr:g} · **Device:** {plan.device}",
            *strategy.plan(plan)]


MADE_UP_DATASET = {"train": 800, "val": 200}
"""The image counts a time estimate assumes until a dataset is chosen."""
CLASSES_WITHOUT_DATA = 10
"""The head's size in the Model page's diagrams until a dataset is chosen."""


def missing_data_note(data: str | None) -> str:
    """Why the Model page shows made-up numbers: no dataset chosen yet (`data` empty), or the chosen one cannot be
    read any more."""
    problem = "The chosen dataset cannot be read any more" if data else "No dataset chosen yet"
    return (f"{problem}: the model's head is sized for {CLASSES_WITHOUT_DATA} classes and the time estimate uses a "
            "made-up dataset. Choose your images on page 1 first for exact numbers.")


def estimate_note(config: RunConfig, counts: dict | None, measure: bool = False) -> str | None:
    """How long a run of `config` (resolved) takes on this computer, in one sentence, for the dataset `counts`
    (`dataset_facts`; None: a made-up one). It times a few steps here when `measure`; otherwise it uses only speeds
    measured before, and is None if there are none yet."""
    images = counts or MADE_UP_DATASET
    seconds = estimate_for_machine(config.backbone, config.strategy, config.image_size, config.batch_size,
                                   config.epochs, images["train"], images["val"], config.torch_device(), measure)
    if seconds is None:
        return None
    shown = f"{images['train']:,} training and {images['val']:,} validation images"
    if not counts:
        shown += " (a made-up dataset: choose yours on page 1 for a real estimate)"
    return (f"⏱ About **{describe_seconds(seconds)}** on this computer ({config.torch_device().type.upper()}) for "
            f"{shown}, {config.epochs} epochs. A rough guide: other work on the computer slows it down.")


# ---------------------------------------------------------------------------------------------------------------
# Where the starting weights come from


WEIGHTS_WORDS = {"bundled": "bundled with the workbench", "cached": "found in the local Hugging Face cache",
                 "download": "will be downloaded from the Hugging Face hub"}


def weights_note(backbone: str, availability: str, reachable: bool, pretrained: bool = True,
                 weights: str = "auto") -> tuple[str, str]:
    """(level, sentence) on where a run's starting weights come from; level is "info", "success" or "warning" (no
    pretrained weights, so no transfer). `availability` is `models.backbones.weights_availability`'s answer,
    `reachable` whether the hub answers, `pretrained` the strategy's, `weights` the run's setting."""
    if not pretrained or weights == "none":
        return "info", ("Starts from **random weights** on purpose: this is the no-transfer baseline, so it does not "
                        "matter which weights exist.")
    if weights != "auto":
        return "info", f"Pretrained weights: from the file `{weights}`."
    if availability == "none" or (availability == "download" and not reachable):
        why = ("timm knows none for it" if availability == "none" else
               "they are not on this computer and the internet cannot be reached")
        return "warning", (f"⚠ **No pretrained weights for {backbone} on this machine** ({why}). It would start from "
                           "random weights, so it would show no transfer learning. Pick a backbone marked ✅ "
                           "(bundled or cached) on the **Model & strategy** page.")
    return "success", f"✅ Pretrained weights: {WEIGHTS_WORDS[availability]}."


def finder_failure(error: Exception) -> str:
    """What the page says when the learning-rate finder failed with `error`, with what to do about it."""
    return f"The learning-rate finder failed: {error}. {failure_hint(error)}"


def patience_note(patience: int, epochs: int) -> str:
    """What early stopping with `patience` does to a run of `epochs`."""
    if patience == 0:
        return "Off: every epoch runs, and the model of the last epoch is kept."
    never = f" With {epochs} epochs it can never stop early." if patience >= epochs else ""
    return (f"Training stops after {patience} epoch{'s' if patience != 1 else ''} without a better validation loss; "
            f"**the best epoch's weights are kept**, not the last ones.{never}")
