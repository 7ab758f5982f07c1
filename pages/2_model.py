"""Page 2 · Model & strategy: pick a backbone and a transfer strategy, see what freezes, set the training budget.

Every choice is kept in st.session_state[CHOICES] (RunConfig fields and the strategy's options, flat); the Train page
starts runs from it. What the choices mean and whether they fit together comes from `workbench.analysis.choices` and
`workbench.analysis.model_views`; this page places the widgets and draws what they return. The learning-rate finder's
widgets are in `ui_lr_finder`.
"""

from __future__ import annotations

import dataclasses

import streamlit as st

from ui_common import (
    CHOICES,
    DATASET,
    SAMPLE_DATASETS,
    choice_key,
    dataset_choices,
    forget_choices,
    notes_ui,
    options_ui,
    seed_choice,
)
from ui_lr_finder import lr_finder_ui
from workbench.analysis import choices
from workbench.analysis import model_views as views
from workbench.analysis.estimate import image_size_note
from workbench.data import AUGMENTATIONS, augmentation_preview
from workbench.engine.config import SCHEDULES, RunConfig
from workbench.models import backbones
from workbench.models.backbones import BackboneInfo, LayerGroup
from workbench.strategies import STRATEGIES, Strategy

SHOWN_BACKBONES = 300
SIZED_AT_MOST = 150  # a size limit counts the parameters of each model listed (about 0.3 s each, once per server)
DETAILED = 40  # models whose family and parameters the catalogue table shows
WEIGHTS_HERE = {"download": "no: downloaded when online, else random weights", "none": "no: random weights"}
CONFIG_FIELDS = {f.name: f for f in dataclasses.fields(RunConfig)}
PREVIEW_COUNT = 8  # augmented copies of one image


# Backbone facts are kept 10 minutes: weights land in the cache when a run downloads them.
backbone_list = st.cache_data(show_spinner=False, ttl="10m")(backbones.list_backbones)
catalogue_of = st.cache_data(show_spinner="Counting the models' parameters…", ttl="10m")(backbones.catalogue)
entry_of = st.cache_data(show_spinner=False, ttl="10m")(backbones.catalogue_entry)
info_of = st.cache_data(show_spinner=False, ttl="10m")(backbones.backbone_info)
groups_of = st.cache_resource(show_spinner="Reading the model's layers…")(backbones.model_groups)
dataset_facts = st.cache_resource(show_spinner="Counting the images…")(choices.dataset_facts)
augmented = st.cache_data(show_spinner=False, max_entries=32)(augmentation_preview)
plans_of = st.cache_resource(show_spinner=False, max_entries=64)(views.training_plan)


def backbone_ui() -> BackboneInfo:
    st.subheader("Backbone: the pretrained network")
    left, right = st.columns([1, 2])
    query = left.text_input("Search models", key="model.query", placeholder="resnet, vit, convnext, *lite*",
                            help="Part of a model name, or a pattern with * and ?. Models whose pretrained "
                                 "weights are already on this computer come first.")
    found = catalogue_filter_ui(query.strip(), backbone_list(query.strip()))
    seed_choice("backbone", CONFIG_FIELDS["backbone"].default)
    names = choices.backbone_names([b.name for b in found], st.session_state[choice_key("backbone")], SHOWN_BACKBONES)
    badges = {b.name: choices.WEIGHT_BADGES[b.weights] for b in found}
    name = right.selectbox(choices.backbone_label(len(found), SHOWN_BACKBONES), names,
                           key=choice_key("backbone"), on_change=forget_choices, args=choices.RESET_BY_BACKBONE,
                           format_func=lambda n: f"{n}   {badges.get(n) or choices.WEIGHT_BADGES[info_of(n).weights]}")
    if st.toggle("Show the family and size of the listed models", key="model.catalogue"):
        entries = [entry_of(name) for name in names[:DETAILED]]
        st.dataframe([{"model": e.name, "family": e.family, "parameters (M)": round(e.params / 1e6, 2),
                       "pretrained weights here": WEIGHTS_HERE.get(e.weights, "yes")}
                      for e in entries], hide_index=True, width="stretch")
    return info_of(name)


def catalogue_filter_ui(query: str, found: list[BackboneInfo]) -> list[BackboneInfo]:
    """`found` narrowed to the chosen families and, when few enough to count, to at most the chosen size."""
    left, right = st.columns([2, 1])
    family = left.multiselect("Families", backbones.families(), key="model.families", placeholder="any",
                              help="Models of one design share a family (timm's module): efficientnet, resnet, "
                                   "vision_transformer, convnext, …")
    limit = right.number_input("At most (million parameters, 0: any)", min_value=0.0, value=0.0, step=1.0,
                               key="model.max_params")
    if family:
        families = backbones.model_families()
        found = [info for info in found if families.get(info.name) in family]
    if limit and len(found) > SIZED_AT_MOST:
        st.caption(f"The size limit applies to {SIZED_AT_MOST} models at most ({len(found):,} listed): pick a family "
                   "or type part of a name first.")
    elif limit:
        small = {entry.name for entry in catalogue_of(query, tuple(family), int(limit * 1e6))}
        found = [info for info in found if info.name in small]
    return found


def facts_ui(info: BackboneInfo, groups: list[LayerGroup], num_classes: int) -> None:
    cols = st.columns(3)
    cols[0].metric("Parameters", f"{sum(g.num_params for g in groups):,}", help=f"With a new head for {num_classes} "
                                                                                 "classes.")
    cols[1].metric("Native input size", f"{info.input_size} px")
    cols[2].metric("Layer groups", len(groups), help="Units that can be frozen, from the stem to the head.")
    st.caption(views.normalisation_note(info.mean, info.std))


def strategy_ui() -> Strategy:
    st.subheader("Strategy: what is allowed to learn")
    left, right = st.columns([1, 2])
    name = left.radio("Transfer strategy", list(STRATEGIES), format_func=lambda n: STRATEGIES[n].title,
                      key=choice_key("strategy"), on_change=forget_choices, args=choices.RESET_BY_STRATEGY)
    with right.container(border=True):
        st.markdown(STRATEGIES[name].explanation)
        st.markdown(f"**Trains:** {STRATEGIES[name].trains}.")
    return STRATEGIES[name]


def freeze_depth_ui(strategy: Strategy, groups: list[LayerGroup]) -> int | None:
    if strategy.freeze_label is None:
        return None
    default = strategy.default_freeze_depth(groups)
    seed_choice("freeze_depth", default)
    key = choice_key("freeze_depth")  # a depth kept from another model may not fit this one
    st.session_state[key] = choices.freeze_depth_within(st.session_state[key], default, groups)
    return st.slider(strategy.freeze_label, 0, len(groups) - 1, key=key,
                     help="0 trains everything; the maximum trains only the head. Freeze more when you have few "
                          "images.")


def freeze_ui(plan: views.FreezePlan) -> None:
    """The diagram of what trains, with the strategy's sentence about it."""
    if plan.note:
        st.caption(plan.note)
    summary = plan.summary()
    st.plotly_chart(views.groups_figure(plan.groups, plan.frozen, plan.per_group), width="stretch")
    cols = st.columns(3)
    cols[0].metric("Frozen groups", f"{plan.frozen} of {len(plan.groups)}")
    cols[1].metric("Trainable parameters", f"{summary['trainable_params']:,}")
    cols[2].metric("Share of the model that trains", f"{summary['share']:.1%}")
    st.markdown(plan.sentence())


def layer_lrs_ui(rows: list[dict]) -> None:
    st.plotly_chart(views.layer_lr_figure(rows), width="stretch")
    st.caption(views.layer_lr_note(rows))
    with st.expander("The same as a table"):
        table = views.layer_lr_table(rows).style.format({"learning rate": "{:.2e}", "share of the head's LR": "{:.4f}"})
        st.dataframe(table, hide_index=True, width="stretch")


def training_ui(strategy: Strategy, draft: RunConfig, image: str) -> dict:
    """The training budget, the augmentation (previewed on `image`) and the advanced settings."""
    st.subheader("Training settings")
    st.caption("Defaults suit this strategy on this computer; changing the model or the strategy sets them back.")
    cols = st.columns(4)
    rates = choices.learning_rates(st.session_state[choice_key("lr")])
    values = {
        "epochs": cols[0].number_input("Epochs", 1, 500, key=choice_key("epochs"),
                                       help="How many times the model sees every training image."),
        "lr": cols[1].select_slider("Learning rate", rates, key=choice_key("lr"), format_func=lambda v: f"{v:g}",
                                    help="How big each learning step is. Too high: training jumps around; too "
                                         "low: it barely moves. The finder below suggests one."),
        "batch_size": cols[2].number_input("Batch size", 1, 1024, key=choice_key("batch_size"),
                                           help="Images per learning step. Lower it if memory runs out."),
        "image_size": cols[3].number_input("Image size (px)", 32, 1024, step=16, key=choice_key("image_size"),
                                           help="Images are resized to a square of this size. Smaller is faster; "
                                                "the model's native size is usually most accurate."),
    }
    st.caption(image_size_note(strategy.trains_backbone(draft), values["image_size"],
                               info_of(draft.backbone).input_size))
    values["augment"] = augmentation_ui(strategy.trains_backbone(draft), image, values["image_size"])
    return {**values, **advanced_ui(values["lr"], values["epochs"])}


def augmentation_ui(trains_backbone: bool, image: str, image_size: int) -> str:
    """The preset, its explanation, and `image` as the network would see it under that preset."""
    name = st.selectbox("Augmentation: random changes to the training images", list(AUGMENTATIONS),
                        key=choice_key("augment"), format_func=lambda n: AUGMENTATIONS[n].title,
                        disabled=not trains_backbone)
    if not trains_backbone:
        st.caption("Not used by this strategy: only the head trains, on features computed once per image, without "
                   "changes.")
        return name
    preset = AUGMENTATIONS[name]
    st.caption(preset.explanation)
    pictures = augmented(image, name, image_size, count=PREVIEW_COUNT)
    for column, picture in zip(st.columns(PREVIEW_COUNT), pictures, strict=True):
        column.image(picture, width="stretch")
    st.caption(views.preview_note(image, preset, PREVIEW_COUNT, image_size))
    return name


def advanced_ui(lr: float, epochs: int) -> dict:
    """schedule, patience and weights: settings most runs leave alone."""
    for name in ("schedule", "patience", "weights"):
        seed_choice(name, CONFIG_FIELDS[name].default)
    with st.expander("Advanced training: learning-rate schedule, early stopping, own weights"):
        left, right = st.columns(2)
        schedule = left.selectbox("Learning-rate schedule", SCHEDULES, key=choice_key("schedule"),
                                  format_func=lambda n: views.SCHEDULES_EXPLAINED[n][0],
                                  help="How the learning rate changes from the first step to the last.")
        left.caption(views.SCHEDULES_EXPLAINED[schedule][1])
        left.plotly_chart(views.schedule_figure(schedule, lr, epochs, CONFIG_FIELDS["warmup_epochs"].default),
                          width="stretch")
        patience = right.number_input("Early stopping: patience in epochs (0 = off)", 0, 500, step=1,
                                      key=choice_key("patience"),
                                      help="Stop when the validation loss has not improved for this many epochs.")
        right.caption(choices.patience_note(patience, epochs))
        weights = right.text_input("Start from my own weights file (.safetensors or .pth)",
                                   key=choice_key("weights"), help="'auto': the best weights available here.")
    return {"schedule": schedule, "patience": patience, "weights": weights.strip() or "auto"}


def estimate_ui(config: RunConfig, counts: dict | None) -> None:
    st.subheader("How long will it take?")
    note = choices.estimate_note(config, counts)
    if note is None and st.button("Estimate time", help="Times a few real training steps on this computer."):
        with st.spinner("Timing a few steps of this model on this computer…"):
            note = choices.estimate_note(config, counts, measure=True)
    if note is None:
        st.caption("Press the button to time this model on this computer.")
    else:
        st.info(note)


# ---------------------------------------------------------------------------------------------------------------

st.title("2 · Model & strategy")
st.markdown("Choose the network to start from and how much of it may change while it learns your classes.")
data_path = st.session_state.get(DATASET)
counts = dataset_facts(data_path, dataset_choices()) if data_path else None
if counts is None:
    st.info(choices.missing_data_note(data_path))
    st.page_link("pages/1_data.py", label="Choose data", icon="🖼️")
num_classes = counts["classes"] if counts else choices.CLASSES_WITHOUT_DATA
class_names = counts["class_names"] if counts else None

info = backbone_ui()
groups = groups_of(info.name, num_classes)
seed_choice("strategy", CONFIG_FIELDS["strategy"].default)
level, text = choices.weights_note(info.name, info.weights, info.weights == "download" and backbones.hub_reachable(),
                                  STRATEGIES[st.session_state[choice_key("strategy")]].pretrained)
getattr(st, level)(text)
facts_ui(info, groups, num_classes)
strategy = strategy_ui()
picked = {"backbone": info.name, "strategy": strategy.name, **options_ui(strategy, class_names, data_path)}
notes_area = st.container()  # under the options; they are read once the draft below is known
base = RunConfig(data="", backbone=info.name, strategy=strategy.name).resolved(info.input_size)
for name in choices.BUDGET:  # seeded now: what freezes in the last epoch depends on the epochs
    seed_choice(name, getattr(base, name))
picked["freeze_depth"] = freeze_depth_ui(strategy, groups)
draft = choices.draft_config({**picked, **{n: st.session_state[choice_key(n)] for n in ("epochs", "lr")}})
with notes_area:
    notes_ui(draft, class_names)
plan, layer_lrs = plans_of(draft, num_classes)
freeze_ui(plan)
if layer_lrs:
    layer_lrs_ui(layer_lrs)
shown = counts if counts and counts["first_image"] else dataset_facts(str(next(iter(SAMPLE_DATASETS.values()))))
values = training_ui(strategy, draft, shown["first_image"])
try:
    config = choices.checked_config({**picked, **values, **dataset_choices()}, data_path or "", groups)
except ValueError as error:
    st.error(str(error))
    config = None
if config is not None:
    st.session_state[CHOICES] = choices.saved_choices(config, values["weights"])
    lr_finder_ui(config)
    estimate_ui(config.resolved(info.input_size), counts)
    st.page_link("pages/3_train.py", label="Next: train →", icon="🏋️")
