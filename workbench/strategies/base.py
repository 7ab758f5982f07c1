"""The strategy contract: everything the engine, the pages, the CLI and codegen may ask of a transfer strategy.

A strategy is one module under `workbench/strategies/` that subclasses `Strategy`, decorates it with `@register`, and
owns everything about itself:

- who it is: `name`, `title`, `explanation` (a paragraph a teacher can read aloud), `trains` (a few words), defaults;
- its settings: `Options`, a frozen dataclass of its own fields, each with a help text (`core.fields.help_field`),
  validated in its `__post_init__`; the CLI adds one flag per field and the Model page one widget per field;
- how it prepares the model: `prepare_model` (what trains) and `begin_epoch` (what changes epoch by epoch);
- its optimiser: `param_groups` (parameter groups and per-group learning-rate scales);
- its objective: `objective()` returns an `Objective` (extra inputs, extra loss terms, per-epoch metrics, what it
  adds to the summary), which reaches the loop's state only through the public `TrainingContext`;
- what the Train page draws for it beyond the common charts (`panels`) and says of a planned run (`plan`);
- what "show me the code" writes for it (`code`, a `workbench.strategies.code.StrategyCode`).

Nothing outside the strategy's module names it: the engine, the pages, codegen and the estimate ask these hooks.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any, ClassVar, Protocol

import torch

from workbench.core.errors import StrategyError
from workbench.models.backbones import LayerGroup
from workbench.strategies.code import StrategyCode
from workbench.strategies.freezing import apply_freezing

if TYPE_CHECKING:  # the contract's callers live in higher layers; only type checkers follow these
    import pandas as pd
    import plotly.graph_objects as go
    from torch.utils.data import DataLoader, Dataset

    from workbench.data import Sample
    from workbench.engine.config import RunConfig
    from workbench.runs.records import RunRecord


@dataclass(frozen=True)
class NoOptions:
    """The settings of a strategy that has none of its own."""


# ---------------------------------------------------------------------------------------------------------------
# What the engine offers a strategy while a run trains


class TrainingContext(Protocol):
    """The engine's side of the contract: what an `Objective` may read and call while its run trains.

    `config` is the resolved RunConfig (every default filled in), `model` the network being trained (on `device`, in
    channels_last), `step` the optimisation steps taken so far and `total_steps` those planned, `metrics` the epochs
    recorded so far (one dict per epoch), `run_dir` the run's folder (files written there stay with the record).
    """

    config: RunConfig
    device: torch.device
    model: torch.nn.Module
    class_names: list[str]
    train_samples: list[Sample]
    val_samples: list[Sample]
    run_dir: Path
    step: int
    total_steps: int
    metrics: list[dict]

    def normalize(self, images: torch.Tensor) -> torch.Tensor:
        """A uint8 NCHW batch as the network's normalised float input, on the device."""

    def images(self, samples: list[Sample], transform: Callable) -> Dataset:
        """`samples` as a dataset of (uint8 image, label) through `transform`, from the decoded-image cache."""

    def decode(self, samples: list[Sample], phase: str) -> None:
        """Decode `samples` into the image cache now, reporting progress as `phase` (and honouring Stop)."""

    def features(self, samples: list[Sample], label: str) -> tuple[torch.Tensor, torch.Tensor]:
        """(pooled features, labels) of `samples` through the model as it is now, in evaluation mode."""

    def logits_of(self, samples: list[Sample]) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) of `samples` through the model as it is now, in evaluation mode, on the CPU."""

    def fit_head(self, epochs: int, lr: float) -> dict:
        """Train the classifier head alone on the training images' pooled features (computed once, the backbone
        frozen in evaluation mode): `epochs` passes at peak learning rate `lr` under the run's schedule, batch for
        batch what a run whose strategy trains no backbone does. Not recorded as the run's epochs. Returns the
        head's validation metrics (val_acc, val_loss, confusion_matrix)."""

    def set_phase(self, phase: str) -> None:
        """Say what the run is doing now (shown on the Train page and printed by the CLI)."""

    def report_progress(self, phase: str, done: int, total: int) -> None:
        """Progress of work that is not a training batch."""

    def check_stop(self) -> None:
        """Raise `core.errors.StopRequested` if the user pressed Stop: call it inside long loops."""


class Objective:
    """What a strategy adds to the plain training loop for one run: extra trainable modules, a different forward
    pass, extra loss terms, per-epoch metrics and summary entries. Built while the run prepares (so bad input, a
    missing teacher say, fails before anything is written); the base class adds nothing."""

    indexed: ClassVar[bool] = False
    """Training batches carry each image's position in the training set as a third element (`extra[0]`)."""

    def info(self) -> dict:
        """Facts for config.json (the teacher, the target images), known once the run has prepared."""
        return {}

    def setup(self, ctx: TrainingContext) -> list[dict]:
        """Called once the images are decoded and the optimiser is built, before the first batch. Returns extra
        optimiser parameter groups ({"params": [...], optionally "lr_scale": x}) for modules of its own."""
        return []

    def train_loader(self, ctx: TrainingContext, transform: Callable) -> DataLoader | None:
        """The training batches, when they are not the engine's shuffled batches of `ctx.train_samples` (e.g. episodes
        of a few classes each, built on `ctx.images(samples, transform)` with a batch sampler of its own). Called once
        the images are decoded, after `setup`. None: the engine's batches."""
        return None

    def targets(self, targets: torch.Tensor, extra: list[torch.Tensor]) -> torch.Tensor:
        """What a training batch's logits are scored against, for the cross-entropy and the training accuracy (e.g.
        an episode's query images numbered within the episode). Default: the batch's labels."""
        return targets

    def forward(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        """The logits of a training batch (normalised `inputs`)."""
        return model(inputs)

    def loss(self, label_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
             extra: list[torch.Tensor]) -> torch.Tensor:
        """The loss to minimise, given cross-entropy against the labels; `extra` is what an indexed batch carries."""
        return label_loss

    def before_evaluation(self, ctx: TrainingContext) -> None:
        """After each epoch's training batches, before the validation images are scored and the epoch's weights are
        checkpointed (e.g. set the classifier from the features as they are now)."""

    def model_info(self) -> dict:
        """Extra entries for model.json, what `models.trained.load_model` needs to rebuild modules this objective
        attached to the model (e.g. extra heads)."""
        return {}

    def epoch_metrics(self, ctx: TrainingContext) -> dict:
        """Extra entries for this epoch's line of metrics.jsonl (and the Train page's charts)."""
        return {}

    def finish(self, ctx: TrainingContext) -> None:
        """After the last epoch (with the weights that will be saved), before the summary is written."""

    def summary(self, final: dict, ctx: TrainingContext) -> dict:
        """Extra summary.json entries; `final` is the evaluation of the saved weights."""
        return {}

    def close(self) -> None:
        """Release what the objective holds (temporary folders); called however the run ends."""


# ---------------------------------------------------------------------------------------------------------------
# What a strategy gives the pages


@dataclass
class Panel:
    """A section the Train page draws for a run of this strategy, below the common charts. `blocks` are drawn in
    order: a `str` is a caption (Markdown), an `Alert` a warning box, a `Figure` a plotly chart (static while the run
    trains), a `Table` a table."""

    title: str
    blocks: list[Any] = field(default_factory=list)


@dataclass
class Alert:
    text: str  # drawn as a warning box


@dataclass
class Table:
    frame: pd.DataFrame
    formats: dict[str, str] = field(default_factory=dict)  # column -> format string, e.g. "{:.1%}"


@dataclass
class Figure:
    figure: go.Figure
    key: str  # stable across redraws, so the page keeps its zoom


# ---------------------------------------------------------------------------------------------------------------
# The strategy


class Strategy:
    """A transfer strategy. Subclass it in a module of its own and decorate the class with `@register`.

    Class attributes say who it is; methods are hooks with sensible defaults (a plain fine-tune of every layer), so a
    strategy overrides only what it changes. Hooks receive the run's `RunConfig` (resolved while a run prepares or
    trains; as chosen on the pages otherwise); `config.options` is an instance of the strategy's `Options`.
    """

    name: ClassVar[str]
    title: ClassVar[str]
    explanation: ClassVar[str]
    trains: ClassVar[str]
    default_epochs: ClassVar[int]
    default_lr: ClassVar[float]
    pretrained: ClassVar[bool] = True
    """Starts from pretrained weights; False trains from random weights on purpose (the no-transfer baseline)."""
    Options: ClassVar[type] = NoOptions
    freeze_label: ClassVar[str | None] = None
    """The freeze-depth slider's label on the Model page; None: this strategy has no freeze depth."""
    race: ClassVar[bool] = True
    """Offered in the Compare page's race: it needs nothing beyond the data (no teacher, no target images)."""
    race_default: ClassVar[bool] = False
    """Ticked when the race form opens: the classic lesson (from scratch, linear probe, partial, full) rather than
    every strategy at once, which on a laptop CPU would queue an hour of training with one click."""

    # -- settings ---------------------------------------------------------------------------------------------
    def make_options(self, values: Any = None) -> Any:
        """This strategy's `Options` from a dict or another options object (fields it does not have are ignored),
        validated by the dataclass itself; None gives the defaults."""
        if isinstance(values, self.Options):
            return values
        if dataclasses.is_dataclass(values):
            values = dataclasses.asdict(values)
        known = {f.name for f in dataclasses.fields(self.Options)}
        return self.Options(**{k: v for k, v in (values or {}).items() if k in known and v is not None})

    def check(self, config: RunConfig) -> None:
        """Raise ValueError for choices that do not fit together (beyond what `Options` checks on its own)."""

    def resolve(self, config: RunConfig) -> dict:
        """RunConfig fields this strategy sets when the run's defaults are filled in (e.g. {"weight_decay": 0.0})."""
        return {}

    def default_freeze_depth(self, groups: list[LayerGroup]) -> int:
        """The freeze depth used when none is chosen (for strategies with a `freeze_label`)."""
        return 0

    # -- the model ----------------------------------------------------------------------------------------------
    def trains_backbone(self, config: RunConfig) -> bool:
        """False when nothing below the head trains: the engine then runs the backbone once per image, caches the
        features and trains the head on them (a linear probe's seconds instead of minutes)."""
        return True

    def frozen_groups(self, groups: list[LayerGroup], config: RunConfig, epoch: int = 1) -> int:
        """How many layer groups, from the stem up, are frozen in `epoch` (1-based): what the record reports."""
        return 0

    def check_groups(self, groups: list[LayerGroup], config: RunConfig) -> None:
        """Raise StrategyError if the config does not fit this model's layer groups (e.g. a freeze depth too deep)."""

    def prepare_model(self, model: torch.nn.Module, groups: list[LayerGroup], config: RunConfig) -> None:
        """Set `requires_grad` for the start of training. Default: freeze `frozen_groups(epoch=1)` from the stem."""
        apply_freezing(model, groups, self.frozen_groups(groups, config, 1))

    def begin_epoch(self, model: torch.nn.Module, groups: list[LayerGroup], config: RunConfig, epoch: int) -> None:
        """Change what trains at the start of `epoch` (e.g. unfreeze one more group). Default: nothing changes."""

    def param_groups(self, model: torch.nn.Module, groups: list[LayerGroup], config: RunConfig) -> list[dict] | None:
        """The optimiser's parameter groups over the parameters that train ({"params", "weight_decay", optionally
        "lr_scale"}: a multiple of the schedule's learning rate). None: timm's default grouping (no weight decay on
        biases and norms, one learning rate)."""
        return None

    def objective(self, config: RunConfig, class_names: list[str]) -> Objective:
        """A fresh `Objective` for one run; check its inputs here (raise ValueError naming the file and the fix)."""
        return Objective()

    def epoch_images(self, config: RunConfig, num_train: int, num_val: int) -> tuple[int, int]:
        """(images through a training step, images only looked at) in one epoch of a run with `num_train` training
        and `num_val` validation images: what a time estimate scales. Default: each training image once, then each
        validation image."""
        return num_train, num_val

    # -- the pages ------------------------------------------------------------------------------------------------
    def freeze_note(self, groups: list[LayerGroup], config: RunConfig, frozen: int) -> str | None:
        """A sentence under the Model page's freeze diagram, which shows the last epoch (`frozen` groups frozen)."""
        return None

    def option_notes(self, config: RunConfig, class_names: list[str]) -> list[str]:
        """What the Model page says under the options once chosen (e.g. what was found in a folder). May raise
        ValueError, shown as an error."""
        return []

    def plan(self, config: RunConfig) -> list[str]:
        """Extra lines (Markdown) for the Train page's "What will run" box."""
        return []

    def panels(self, record: RunRecord) -> list[Panel]:
        """Sections the Train page draws for a run of this strategy (live or finished), below the common charts."""
        return []

    # -- show me the code ---------------------------------------------------------------------------------------
    def code(self, config: RunConfig, groups: list[LayerGroup]) -> StrategyCode:
        """What "show me the code" writes for a run of this strategy (`groups`: the backbone's layer groups, as in
        `frozen_groups`). Default: a plain full fine-tune; a strategy with options that writes no code of its own is
        said, with its options, to be left out."""
        options = [f"'{f.name}' ({getattr(config.options, f.name)!r})" for f in dataclasses.fields(config.options)]
        if not options:
            return StrategyCode()
        return StrategyCode(left_out=[f"what this strategy adds to a full fine-tune (its options {', '.join(options)})"
                                      ": this script is a plain full fine-tune"])


STRATEGIES: dict[str, Strategy] = {}


def register(cls: type[Strategy]) -> type[Strategy]:
    """Class decorator: one instance of the strategy joins the registry under its `name`."""
    if cls.name in STRATEGIES:
        raise StrategyError(f"Two strategies are named '{cls.name}'.")
    STRATEGIES[cls.name] = cls()
    return cls


def get_strategy(name: str) -> Strategy:
    if name not in STRATEGIES:
        raise StrategyError(f"Unknown strategy '{name}'. Choose one of: {', '.join(STRATEGIES)}.")
    return STRATEGIES[name]


def option_fields() -> dict[str, dataclasses.Field]:
    """Every strategy's option fields by name (a name two strategies share, e.g. layer_decay, is one setting)."""
    found: dict[str, dataclasses.Field] = {}
    for strategy in STRATEGIES.values():
        for f in dataclasses.fields(strategy.Options):
            found.setdefault(f.name, f)
    return found
