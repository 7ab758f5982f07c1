"""Page 2 · Model & strategy: pick a backbone and a transfer strategy, see what freezes, set the training budget.

Every choice is kept in st.session_state[CHOICES] as RunConfig field -> value; the Train page starts runs from it.
"""

from __future__ import annotations

import dataclasses
import tempfile
from pathlib import Path

import streamlit as st
import torch
from PIL import Image

from ui_common import CHOICES, DATASET, SAMPLE_DATASETS, get_registry
from workbench import engine
from workbench.analysis import estimate
from workbench.analysis.model_views import (
    SCHEDULES_EXPLAINED,
    bitfit_trainable_per_group,
    freeze_summary,
    groups_figure,
    layer_lr_figure,
    layer_lr_rows,
    layer_lr_table,
    lr_finder_figure,
    lr_text,
    meta_model,
    model_groups,
    round_lr,
    schedule_figure,
)
from workbench.data import AUGMENTATIONS, DataError, augmentation_preview, open_dataset
from workbench.engine.config import SCHEDULES, RunConfig
from workbench.models.backbones import BackboneInfo, LayerGroup, backbone_info, hub_reachable, list_backbones
from workbench.strategies import STRATEGIES, Strategy, StrategyError, check_freeze_depth, dann
from workbench.strategies.distill import teacher_candidates

SHOWN_BACKBONES = 300
CLASSES_WITHOUT_DATA = 10  # the head's size in the diagram until a dataset is chosen
BADGES = {"bundled": "✅ bundled", "cached": "✅ cached", "download": "⬇ would download",
          "none": "⚠ no pretrained weights"}
LEARNING_RATES = sorted({1e-5, 3e-5, 1e-4, 2e-4, 3e-4, 5e-4, 1e-3, 2e-3, 3e-3, 5e-3, 1e-2, 3e-2, 1e-1,
                         *(s.default_lr for s in STRATEGIES.values())})
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
# What must start again from its default when the backbone or the strategy changes.
DEPENDS_ON_BACKBONE = ("image_size", "freeze_depth")
DEPENDS_ON_STRATEGY = ("epochs", "lr", "image_size", "freeze_depth")
PREVIEW_COUNT = 8  # augmented copies of one image
FINDER_STEPS = 30  # LR finder: enough for a readable curve, short enough to wait for on a CPU
LR_FINDER = "model.lr_finder"  # the last search: {"choices": finder_key, "lrs", "losses", "suggestion"}
NOT_IN_FINDER = ("lr", "epochs", "schedule", "patience")  # choices that do not change the finder's sweep


@st.cache_data(show_spinner=False, ttl="10m")  # weights land in the cache when a run downloads them
def backbone_list(query: str) -> list[BackboneInfo]:
    return list_backbones(query)


@st.cache_data(show_spinner=False, ttl="10m")
def info_of(name: str) -> BackboneInfo:
    return backbone_info(name)


@st.cache_resource(show_spinner="Reading the model's layers…")
def groups_of(name: str, num_classes: int) -> list[LayerGroup]:
    return model_groups(name, num_classes)


@st.cache_resource(show_spinner=False)
def structure_of(name: str, num_classes: int) -> torch.nn.Module:
    """The model on the meta device (names and shapes, no weights): what the per-layer learning rates need."""
    return meta_model(name, num_classes)


@st.cache_resource(show_spinner="Counting the images…")
def dataset_counts(path: str) -> dict | None:
    """classes, train and val counts of the chosen dataset and its first training image (None if it cannot be
    read any more)."""
    try:
        dataset = open_dataset(path)
    except DataError:
        return None
    first = str(dataset.train[0].path) if dataset.train else None
    return {"classes": len(dataset.class_names), "train": len(dataset.train), "val": len(dataset.val),
            "first_image": first, "class_names": dataset.class_names}


@st.cache_resource(show_spinner=False)
def sample_image() -> str:
    """The first training image of the first sample dataset: the augmentation preview until data is chosen."""
    return str(open_dataset(next(iter(SAMPLE_DATASETS.values()))).train[0].path)


@st.cache_data(show_spinner=False, max_entries=32)
def augmented(path: str, preset: str, image_size: int) -> list[Image.Image]:
    return augmentation_preview(path, preset, image_size, count=PREVIEW_COUNT)


def key(name: str) -> str:
    return f"model.{name}"


def seed(name: str, default) -> None:
    """Give the widget for RunConfig field `name` its value: the saved choice, else `default`. Streamlit forgets
    widget values when the user opens another page; CHOICES remembers them."""
    if key(name) not in st.session_state:
        saved = st.session_state.get(CHOICES, {}).get(name)
        st.session_state[key(name)] = default if saved is None else saved


def forget(*names: str) -> None:
    """Drop saved values so their widgets start again from the new defaults."""
    for name in names:
        st.session_state.pop(key(name), None)
        st.session_state.get(CHOICES, {}).pop(name, None)


def defaults(backbone: str, strategy: str) -> RunConfig:
    """Epochs, learning rate, batch and image size as a run would fill them in for this model, strategy and device."""
    return RunConfig(data="", backbone=backbone, strategy=strategy).resolved(info_of(backbone).input_size)


# ---------------------------------------------------------------------------------------------------------------
# Backbone


def backbone_ui() -> BackboneInfo:
    st.subheader("Backbone: the pretrained network")
    left, right = st.columns([1, 2])
    query = left.text_input("Search models", key="model.query", placeholder="resnet, vit, convnext, *lite*",
                            help="Part of a model name, or a pattern with * and ?. Models whose pretrained "
                                 "weights are already on this computer come first.")
    found = backbone_list(query.strip())
    seed("backbone", CONFIG_FIELDS["backbone"].default)
    names = [b.name for b in found[:SHOWN_BACKBONES]]
    chosen = st.session_state[key("backbone")]
    if chosen not in names:
        names.insert(0, chosen)  # typing a new search must not silently change the model already picked
    badges = {b.name: BADGES[b.weights] for b in found}
    name = right.selectbox(
        f"Model ({len(found):,} match{'es' if len(found) != 1 else ''}"
        f"{f', first {SHOWN_BACKBONES} shown' if len(found) > SHOWN_BACKBONES else ''})",
        names, key=key("backbone"), on_change=forget, args=DEPENDS_ON_BACKBONE,
        format_func=lambda n: f"{n}   {badges.get(n) or BADGES[info_of(n).weights]}")
    return info_of(name)


def weights_ui(info: BackboneInfo, pretrained: bool) -> None:
    if not pretrained:
        st.info("This strategy starts from random weights on purpose, so it does not matter which weights exist.")
    elif info.weights == "bundled":
        st.success("✅ Pretrained ImageNet weights ship with the workbench: works offline.")
    elif info.weights == "cached":
        st.success("✅ Pretrained weights are already downloaded on this computer (Hugging Face cache).")
    elif info.weights == "download" and hub_reachable():
        st.info("⬇ Pretrained weights will be downloaded from the Hugging Face hub when training starts.")
    elif info.weights == "download":
        st.error("⚠ The pretrained weights of this model are not on this computer and the internet cannot be "
                 "reached: training would start from **random weights**, and transfer learning would not work. "
                 "Pick a model marked ✅.")
    else:
        st.error("⚠ timm has **no pretrained weights** for this model: it would start from random weights. Pick a "
                 "model marked ✅ to learn from pretrained features.")


def facts_ui(info: BackboneInfo, groups: list[LayerGroup], num_classes: int) -> None:
    total = sum(g.num_params for g in groups)
    cols = st.columns(3)
    cols[0].metric("Parameters", f"{total:,}", help=f"With a new head for {num_classes} classes.")
    cols[1].metric("Native input size", f"{info.input_size} px")
    cols[2].metric("Layer groups", len(groups), help="Units that can be frozen, from the stem to the head.")
    mean = ", ".join(f"{v:.3f}" for v in info.mean)
    std = ", ".join(f"{v:.3f}" for v in info.std)
    st.caption(f"Images are normalised with mean ({mean}) and std ({std}), from the model's own pretrained config.")


# ---------------------------------------------------------------------------------------------------------------
# Strategy and what it freezes


def strategy_ui() -> Strategy:
    st.subheader("Strategy: what is allowed to learn")
    left, right = st.columns([1, 2])
    name = left.radio("Transfer strategy", list(STRATEGIES), format_func=lambda n: STRATEGIES[n].title,
                      key=key("strategy"), on_change=forget, args=DEPENDS_ON_STRATEGY)
    strategy = STRATEGIES[name]
    with right.container(border=True):
        st.markdown(strategy.explanation)
        st.markdown(f"**Trains:** {strategy.trains}.")
    return strategy


def option_ui(name: str, column) -> object:
    """A widget for a strategy-specific RunConfig field, labelled and typed by the field itself."""
    field = CONFIG_FIELDS[name]
    seed(name, field.default)
    label = field.metadata.get("help") or name
    help_text = f"Setting `{name}` (`--{name.replace('_', '-')}` on the command line)."
    if isinstance(field.default, bool):
        return column.checkbox(label, key=key(name), help=help_text)
    if isinstance(field.default, int):
        return column.number_input(label, min_value=0, step=1, key=key(name), help=help_text)
    return column.number_input(label, min_value=0.0, step=0.01, format="%g", key=key(name), help=help_text)


def options_ui(strategy: Strategy, class_names: list[str] | None) -> dict:
    """The strategy's own settings (its `options`), right under its explanation; freeze depth has its slider, the
    teacher and the target images their own pickers."""
    names = [n for n in strategy.options if n != "freeze_depth"]
    if not names:
        return {}
    cols = st.columns(len(names))
    pickers = {"teacher_run": teacher_ui, "target_data": target_ui}
    return {name: pickers[name](col, class_names) if name in pickers else option_ui(name, col)
            for name, col in zip(names, cols, strict=True)}


def teacher_label(record) -> str:
    accuracy = (record.summary or {}).get("val_accuracy")
    shown = f"{accuracy:.0%}" if accuracy is not None else "–"
    return f"{record.config.get('backbone')} · {record.config.get('strategy')} · {shown} · {record.id[-4:]}"


def teacher_ui(column, class_names: list[str] | None) -> str:
    """Distillation: the teacher is one of the finished runs on these classes, most accurate first."""
    candidates = teacher_candidates(get_registry().runs_dir, class_names) if class_names else []
    if not candidates:
        column.warning("No finished run on these classes yet, so there is no teacher. Train one first (e.g. "
                       "*Full fine-tune* of tf_efficientnet_lite0) on the **Train** page, then come back.")
        return ""
    labels = {r.id: teacher_label(r) for r in candidates}
    seed("teacher_run", next(iter(labels)))
    if st.session_state[key("teacher_run")] not in labels:  # a run deleted, or one on other data
        st.session_state[key("teacher_run")] = next(iter(labels))
    return column.selectbox("Teacher: a finished run on the same classes", list(labels), key=key("teacher_run"),
                            format_func=labels.get,
                            help="Backbone · strategy · validation accuracy · end of the run id. A good teacher "
                                 "is accurate; the student learns its way of seeing the classes.")


SHIFTED_SAMPLE = "shapes_shifted"
OTHER_TARGET = "another folder or .zip"


@st.cache_data(show_spinner="Reading the target images…", max_entries=16)
def target_note(path: str, class_names: tuple[str, ...]) -> str:
    with tempfile.TemporaryDirectory(prefix="workbench-target-") as scratch:
        return dann.open_target(path, list(class_names), Path(scratch)).note


def target_ui(column, class_names: list[str] | None) -> str:
    """DANN: the target images, the shifted sample data unless the user picks another folder or zip."""
    samples = {str(p): f"sample data: {name}" for name, p in SAMPLE_DATASETS.items()}
    seed("target_data", str(SAMPLE_DATASETS[SHIFTED_SAMPLE]) if SHIFTED_SAMPLE in SAMPLE_DATASETS else "")
    chosen = st.session_state[key("target_data")]
    st.session_state.setdefault("model.target_choice", chosen if chosen in samples else OTHER_TARGET)
    st.session_state.setdefault("model.target_path", "" if chosen in samples else chosen)
    choice = column.selectbox("Target images: the domain the model must work on", [*samples, OTHER_TARGET],
                              key="model.target_choice", format_func=lambda v: samples.get(v, v),
                              help="Images without labels are enough. If they sit in class folders named like "
                                   "your classes, those are used only to measure target accuracy.")
    path = choice
    if choice == OTHER_TARGET:
        path = column.text_input("Folder or .zip of target images", key="model.target_path").strip()
    st.session_state[key("target_data")] = path
    if path and class_names:
        try:
            column.caption(target_note(path, tuple(class_names)))
        except DataError as error:
            column.error(str(error))
    return path


@st.cache_resource(show_spinner=False)
def bitfit_counts(name: str, num_classes: int, norms: bool) -> list[int]:
    return bitfit_trainable_per_group(name, num_classes, norms)


def freeze_depth_ui(strategy: Strategy, groups: list[LayerGroup]) -> int | None:
    if not (strategy.uses_freeze_depth or "freeze_depth" in strategy.options):
        return None
    # What a run fills in when it is left empty: half the body for partial, nothing for gradual (all unfreezes).
    default = 0 if strategy.gradual else strategy.frozen_groups(groups, None)
    seed("freeze_depth", default)
    if st.session_state[key("freeze_depth")] > len(groups) - 1:
        st.session_state[key("freeze_depth")] = default
    label = ("Freeze depth: groups that never unfreeze, counted from the stem" if strategy.gradual else
             "Freeze depth: layer groups kept frozen, counted from the stem")
    return st.slider(label, 0, len(groups) - 1, key=key("freeze_depth"),
                     help="0 trains everything; the maximum trains only the head. Freeze more when you have few "
                          "images.")


def frozen_shown(strategy: Strategy, groups: list[LayerGroup], freeze_depth: int | None, options: dict) -> int:
    """Frozen groups in the diagram; for gradual unfreezing, those still frozen in the last epoch."""
    if not strategy.gradual:
        return strategy.frozen_groups(groups, freeze_depth)
    epochs = st.session_state[key("epochs")]
    per_phase = options["epochs_per_phase"]
    frozen = strategy.frozen_groups(groups, freeze_depth, epoch=epochs, epochs_per_phase=per_phase)
    st.caption(f"Shown: the last of {epochs} epochs. Training starts with only the head; every {per_phase} "
               f"epoch{'s' if per_phase != 1 else ''} one more group unfreezes, from the head down, never below the "
               "freeze depth." + (" More epochs would unfreeze deeper groups." if frozen > (freeze_depth or 0) else ""))
    return frozen


def freeze_ui(strategy: Strategy, groups: list[LayerGroup], backbone: str, num_classes: int,
              options: dict) -> int | None:
    """The freeze-depth choice (None where the strategy has none) with the diagram of what trains."""
    freeze_depth = freeze_depth_ui(strategy, groups)
    frozen = frozen_shown(strategy, groups, freeze_depth, options)
    per_group = bitfit_counts(backbone, num_classes, options["bitfit_norms"]) if strategy.bitfit else None
    summary = freeze_summary(groups, frozen, per_group)
    st.plotly_chart(groups_figure(groups, frozen, per_group), width="stretch")
    cols = st.columns(3)
    cols[0].metric("Frozen groups", f"{frozen} of {len(groups)}")
    cols[1].metric("Trainable parameters", f"{summary['trainable_params']:,}")
    cols[2].metric("Share of the model that trains", f"{summary['share']:.1%}")
    st.markdown(f"**{summary['trainable_params']:,} of {summary['total_params']:,} parameters learn from your "
                f"images ({summary['share']:.1%}).**")
    return freeze_depth


def layer_lrs_ui(backbone: str, num_classes: int, layer_decay: float) -> None:
    """Discriminative learning rates: the peak learning rate of each layer, for the LR and decay chosen now."""
    if not 0 < layer_decay <= 1:
        return  # validated() says what is wrong with it
    lr = st.session_state[key("lr")]  # its widget comes further down, but its value is known already
    rows = layer_lr_rows(structure_of(backbone, num_classes), lr, layer_decay)
    st.plotly_chart(layer_lr_figure(rows), width="stretch")
    st.caption(f"The head learns at the learning rate chosen below ({lr_text(lr)}); each layer under it at "
               f"{layer_decay:g}× the rate of the layer above. timm cuts the model into {len(rows)} layers for this, "
               "finer than the freeze groups above.")
    with st.expander("The same as a table"):
        st.dataframe(layer_lr_table(rows), hide_index=True, width="stretch", column_config={
            "learning rate": st.column_config.NumberColumn(format="%.2e"),
            "share of the head's LR": st.column_config.NumberColumn(format="%.4f")})


# ---------------------------------------------------------------------------------------------------------------
# Training budget

BUDGET = ("epochs", "lr", "batch_size", "image_size", "augment")


def training_ui(strategy: Strategy, image: str) -> dict:
    """The training budget, the augmentation (previewed on `image`) and the advanced settings."""
    st.subheader("Training settings")
    st.caption("Defaults suit this strategy on this computer; changing the model or the strategy sets them back.")
    cols = st.columns(4)
    # The finder's suggestion (or a saved choice) need not be one of the usual rates.
    rates = sorted({*LEARNING_RATES, st.session_state[key("lr")]})
    values = {
        "epochs": cols[0].number_input("Epochs", 1, 500, key=key("epochs"),
                                       help="How many times the model sees every training image."),
        "lr": cols[1].select_slider("Learning rate", rates, key=key("lr"), format_func=lambda v: f"{v:g}",
                                    help="How big each learning step is. Too high: training jumps around; too "
                                         "low: it barely moves. The finder below suggests one."),
        "batch_size": cols[2].number_input("Batch size", 1, 1024, key=key("batch_size"),
                                           help="Images per learning step. Lower it if memory runs out."),
        "image_size": cols[3].number_input("Image size (px)", 32, 1024, step=16, key=key("image_size"),
                                           help="Images are resized to a square of this size. Smaller is faster; "
                                                "the model's native size is usually most accurate."),
    }
    values["augment"] = augmentation_ui(strategy, image, values["image_size"])
    return {**values, **advanced_ui(values["lr"], values["epochs"])}


def augmentation_ui(strategy: Strategy, image: str, image_size: int) -> str:
    """The preset, its explanation, and `image` as the network would see it under that preset."""
    name = st.selectbox("Augmentation: random changes to the training images", list(AUGMENTATIONS),
                        key=key("augment"), format_func=lambda n: AUGMENTATIONS[n].title,
                        disabled=strategy.caches_features)
    if strategy.caches_features:
        st.caption("Not used by the linear probe: each image's features are computed once, without changes.")
        return name
    preset = AUGMENTATIONS[name]
    st.caption(preset.explanation)
    for column, picture in zip(st.columns(PREVIEW_COUNT), augmented(image, name, image_size), strict=True):
        column.image(picture, width="stretch")
    mixing = (" Strong also blends pairs of images in every batch (mixup / cutmix), which is not shown here."
              if preset.mixes_images else "")
    st.caption(f"**What the network sees:** one training image, *{Path(image).parent.name}/{Path(image).name}*, "
               f"{PREVIEW_COUNT} times through the {preset.title.lower()} preset at {image_size} px. Every epoch "
               f"draws new changes.{mixing}")
    return name


def advanced_ui(lr: float, epochs: int) -> dict:
    """schedule, patience and weights: settings most runs leave alone."""
    for name in ("schedule", "patience", "weights"):
        seed(name, CONFIG_FIELDS[name].default)
    with st.expander("Advanced training: learning-rate schedule, early stopping, own weights"):
        left, right = st.columns(2)
        schedule = left.selectbox("Learning-rate schedule", SCHEDULES, key=key("schedule"),
                                  format_func=lambda n: SCHEDULES_EXPLAINED[n][0],
                                  help="How the learning rate changes from the first step to the last.")
        left.caption(SCHEDULES_EXPLAINED[schedule][1])
        left.plotly_chart(schedule_figure(schedule, lr, epochs, CONFIG_FIELDS["warmup_epochs"].default),
                          width="stretch")
        patience = right.number_input("Early stopping: patience in epochs (0 = off)", 0, 500, step=1,
                                      key=key("patience"),
                                      help="Stop when the validation loss has not improved for this many epochs.")
        if patience == 0:
            right.caption("Off: every epoch runs, and the model of the last epoch is kept.")
        else:
            never = f" With {epochs} epochs it can never stop early." if patience >= epochs else ""
            right.caption(f"Training stops after {patience} epoch{'s' if patience != 1 else ''} without a better "
                          f"validation loss; **the best epoch's weights are kept**, not the last ones.{never}")
        weights = right.text_input("Start from my own weights file (.safetensors or .pth)", key=key("weights"),
                                   help="Leave as 'auto' for the best weights available here.")
    return {"schedule": schedule, "patience": patience, "weights": weights.strip() or "auto"}


def estimate_ui(config: RunConfig, counts: dict | None) -> None:
    st.subheader("How long will it take?")
    device = config.torch_device()
    num_train, num_val = (counts["train"], counts["val"]) if counts else (800, 200)
    args = dict(backbone=config.backbone, strategy=config.strategy, image_size=config.image_size,
                batch_size=config.batch_size, epochs=config.epochs, num_train=num_train, num_val=num_val,
                device=device)
    seconds = estimate.estimate_for_machine(**args, measure=False)
    if seconds is None and st.button("Estimate time", help="Times a few real training steps on this computer "
                                                           "(a few seconds)."):
        with st.spinner("Timing a few steps of this model on this computer…"):
            seconds = estimate.estimate_for_machine(**args)
    if seconds is None:
        st.caption("Press the button to time this model on this computer.")
        return
    images = f"{num_train:,} training and {num_val:,} validation images"
    if not counts:
        images += " (a made-up dataset: choose yours on page 1 for a real estimate)"
    st.info(f"⏱ About **{estimate.describe_seconds(seconds)}** on this computer ({device.type.upper()}) for "
            f"{images}, {config.epochs} epochs. A rough guide: other work on the computer slows it down.")


# ---------------------------------------------------------------------------------------------------------------
# Learning-rate finder


def finder_key(config: RunConfig) -> str:
    """What the finder's sweep depends on, as one comparable string."""
    return repr(sorted((k, v) for k, v in config.to_dict().items() if k not in NOT_IN_FINDER))


def use_lr(value: float) -> None:
    """Button callback: runs before the next rerun, so the LR widget is created with `value`."""
    st.session_state[key("lr")] = value


def run_lr_finder(config: RunConfig) -> dict | None:
    """Run the finder with a progress bar; the result as plain values (kept in session_state), None if it failed."""
    bar = st.progress(0.0, text="Reading the images and building the model…")
    try:
        with st.spinner("Searching: on a CPU this can take a few minutes…"):
            result = engine.find_lr(config, steps=FINDER_STEPS, on_step=lambda done, total: bar.progress(
                done / total, text=f"Step {done} of {total}"))
    except Exception as error:  # noqa: BLE001 - whatever went wrong, say it on the page and keep the page usable
        st.error(f"The learning-rate finder failed: {error}. {engine.failure_hint(error)}")
        return None
    finally:
        bar.empty()
    found = {"choices": finder_key(config), **result.to_dict()}
    st.session_state[LR_FINDER] = found
    return found


def lr_finder_ui(config: RunConfig) -> None:
    st.subheader("Find a learning rate")
    st.caption(f"The LR finder (fastai's lr_find) trains {FINDER_STEPS} steps on your images with the choices "
               "above, the learning rate growing from 1e-6 to 1, and records the loss. It takes from seconds to a "
               "few minutes; nothing is saved.")
    if not config.data:
        st.info("No dataset chosen yet: the finder needs your images. Choose them on page 1.")
        return
    found = st.session_state.get(LR_FINDER)
    if st.button("Find a learning rate", icon="🔎"):
        found = run_lr_finder(config)
    if found is None:
        return
    if found["choices"] != finder_key(config):
        st.caption("The last search was made with other choices: search again for these.")
        return
    suggestion = round_lr(found["suggestion"])
    st.plotly_chart(lr_finder_figure(found["lrs"], found["losses"], found["suggestion"], config.lr), width="stretch")
    left, right = st.columns([1, 3], vertical_alignment="center")
    left.button("Use this learning rate", on_click=use_lr, args=(suggestion,), disabled=config.lr == suggestion,
                type="primary")
    right.markdown(f"Suggested: **{suggestion:g}**, where the loss falls fastest"
                   + (" (in use)." if config.lr == suggestion else f"; chosen now: {config.lr:g}."))


# ---------------------------------------------------------------------------------------------------------------


def choices_from(config: RunConfig, weights: str) -> dict:
    """The RunConfig fields this page sets. `weights` as the user gave it: RunConfig turns it into 'none' for
    the from-scratch strategy, and that must not stick when they switch back to a pretrained one."""
    names = ["backbone", "strategy", "freeze_depth", "epochs", "lr", "batch_size", "image_size", "augment",
             "schedule", "patience", *STRATEGIES[config.strategy].options]
    return {**{name: getattr(config, name) for name in dict.fromkeys(names)}, "weights": weights}


def validated(values: dict, groups: list[LayerGroup], data: str) -> RunConfig | None:
    """The RunConfig these choices make, or None after saying on the page what is wrong with them."""
    try:
        config = RunConfig(data=data, **values)
        if config.freeze_depth is not None:
            check_freeze_depth(config.freeze_depth, groups, config.backbone)
    except (ValueError, StrategyError) as e:
        st.error(str(e))
        return None
    if config.weights not in ("auto", "none") and not Path(config.weights).expanduser().is_file():
        st.error(f"Weights file '{config.weights}' does not exist on this computer. Check the path, or type 'auto'.")
        return None
    return config


st.title("2 · Model & strategy")
st.markdown("Choose the network to start from and how much of it may change while it learns your classes.")
data_path = st.session_state.get(DATASET)
counts = dataset_counts(data_path) if data_path else None
if counts is None:
    problem = "The chosen dataset cannot be read any more" if data_path else "No dataset chosen yet"
    st.info(f"{problem}: the model's head is sized for {CLASSES_WITHOUT_DATA} classes and the time estimate uses a "
            "made-up dataset. Choose your images on page 1 first for exact numbers.")
    st.page_link("pages/1_data.py", label="Choose data", icon="🖼️")
num_classes = counts["classes"] if counts else CLASSES_WITHOUT_DATA

info = backbone_ui()
groups = groups_of(info.name, num_classes)
seed("strategy", CONFIG_FIELDS["strategy"].default)
weights_ui(info, STRATEGIES[st.session_state[key("strategy")]].pretrained)
facts_ui(info, groups, num_classes)
strategy = strategy_ui()
options = options_ui(strategy, counts["class_names"] if counts else None)
base = defaults(info.name, strategy.name)
for name in BUDGET:  # seeded now: the gradual-unfreezing diagram depends on the epochs
    seed(name, getattr(base, name))
freeze_depth = freeze_ui(strategy, groups, info.name, num_classes, options)
if strategy.layer_decay:
    layer_lrs_ui(info.name, num_classes, options["layer_decay"])
values = training_ui(strategy, counts["first_image"] if counts and counts["first_image"] else sample_image())
config = validated({"backbone": info.name, "strategy": strategy.name, "freeze_depth": freeze_depth, **options,
                    **values}, groups, data_path or "")
if config is not None:
    st.session_state[CHOICES] = choices_from(config, values["weights"])
    lr_finder_ui(config)
    estimate_ui(config.resolved(info.input_size), counts)
    st.page_link("pages/3_train.py", label="Next: train →", icon="🏋️")
