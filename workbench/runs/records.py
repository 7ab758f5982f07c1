"""Run records read back from disk: a finished, stopped, failed, live or interrupted run as typed objects, the list of
past runs, and a run's validation split rebuilt exactly as it trained on it. The folder's format itself (file names,
atomic writes, the live marker) is `workbench.core.runfolder`; a trained model's files are `workbench.models.trained`.
"""

from __future__ import annotations

import contextlib
import json
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any

from workbench.core.runfolder import (
    BATCHES_FILE,
    CONFIG_FILE,
    HEALTH_FILE,
    METRICS_FILE,
    SUMMARY_FILE,
    is_live,
    read_jsonl,
    sweep_temps,
)
from workbench.data import DataSpec, Sample
from workbench.engine.config import RunConfig
from workbench.models.trained import has_model_files, model_files

# -------------------------------------------------------------------------------------------------------------------
# Reading

ENDED = ("finished", "stopped", "failed", "interrupted")


@dataclass
class RunSummary:
    """summary.json, typed: how a run ended and what it reached. `extra` holds what the run's strategy added (a DANN
    run's target accuracy, a distillation run's teacher), read with `get`.

    The `test_*` fields are the saved model measured once, after training, on the held-out test images (None when the
    data had no test split, and in records written before there was one); nothing during training saw those images,
    whereas validation chose the epochs and the weights kept."""

    status: str
    error: str | None = None
    hint: str | None = None
    val_accuracy: float | None = None
    val_loss: float | None = None
    epochs_completed: int | None = None
    best_epoch: int | None = None
    class_names: list[str] | None = None
    confusion_matrix: list[list[int]] | None = None
    per_class: dict | None = None
    test_accuracy: float | None = None
    test_loss: float | None = None
    test_confusion_matrix: list[list[int]] | None = None
    test_per_class: dict | None = None
    num_test: int | None = None
    """Images in the data's test split (0: it had none), whether or not the run got as far as testing on them."""
    trainable_params: int | None = None
    frozen_groups: int | None = None
    total_params: int | None = None
    pretrained: dict | None = None
    train_seconds: float | None = None
    feature_seconds: float | None = None
    images_per_s: float | None = None
    peak_memory_mb: float | None = None
    device: str | None = None
    extra: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, values: dict) -> RunSummary:
        known = {f.name for f in fields(cls)} - {"extra"}
        return cls(**{k: v for k, v in values.items() if k in known},
                   extra={k: v for k, v in values.items() if k not in known})

    def to_dict(self) -> dict:
        return {**{f.name: getattr(self, f.name) for f in fields(self) if f.name != "extra"}, **self.extra}

    def get(self, name: str, default: Any = None) -> Any:
        """A strategy's own entry (e.g. "target_accuracy"), or a field by name."""
        if name in self.extra:
            return self.extra[name]
        return getattr(self, name, default) if name in {f.name for f in fields(self)} else default


@dataclass
class RunRecord:
    """A run as found on disk: finished, stopped, failed, still training (in this or another process) or
    interrupted (no summary, and the process that trained it is gone).

    `config` is the run's RunConfig (None for a model imported from an export zip, or a run of a strategy this
    version does not know); `facts` is config.json as written, with what the run learned while preparing beside the
    config (classes, weights source, layer groups, a strategy's inputs such as the teacher)."""

    id: str
    dir: Path
    facts: dict
    config: RunConfig | None = None
    metrics: list[dict] = field(default_factory=list)
    summary: RunSummary | None = None
    live: bool = False
    """No summary yet and the process training it is alive."""

    @property
    def status(self) -> str:
        if self.summary:
            return self.summary.status
        return "running" if self.live else "interrupted"

    @property
    def strategy(self) -> str:
        """The strategy's name as recorded ("imported" for an imported model)."""
        return self.facts.get("strategy") or "?"

    @property
    def backbone(self) -> str:
        return self.facts.get("backbone") or "?"

    @property
    def data(self) -> str | None:
        """The dataset the run trained on; None for an imported model."""
        return self.facts.get("data") or None

    @property
    def class_names(self) -> list[str]:
        return (self.summary.class_names if self.summary and self.summary.class_names else None) \
            or self.facts.get("class_names") or []

    @property
    def split(self) -> DataSpec | None:
        """What splits the run's images again exactly as it trained on them (data, fractions, seed, layout choices);
        None for a run with no recorded dataset (an imported model). Older records lack the newer keys, whose
        defaults are what those runs used."""
        if not self.data:
            return None
        return self.config.data_spec() if self.config is not None else DataSpec.from_values(self.facts)

    @property
    def model_files(self) -> tuple[Path, Path]:
        """(weights, model.json): where the trained model is, whether or not it exists yet."""
        return model_files(self.dir)

    @property
    def has_model(self) -> bool:
        """The one rule for "this run has a usable model": it is no longer training and its weights and model.json
        are on disk (a stopped, failed or interrupted run keeps its last checkpoint, which is usable)."""
        return self.status in ENDED and has_model_files(self.dir)

    @classmethod
    def from_dicts(cls, run_dir: str | Path, facts: dict, summary: dict | None = None,
                   metrics: list[dict] | None = None, live: bool = False) -> RunRecord:
        """A record from what its files hold as plain dicts: config.json, summary.json (None until the run ends) and
        the lines of metrics.jsonl; the folder's name is the run's id."""
        run_dir = Path(run_dir)
        return cls(id=run_dir.name, dir=run_dir, facts=facts, config=typed_config(facts), metrics=list(metrics or []),
                   summary=RunSummary.from_dict(summary) if summary is not None else None, live=live)

    def batches(self) -> list[dict]:
        return read_jsonl(self.dir / BATCHES_FILE)

    def health(self) -> dict | None:
        path = self.dir / HEALTH_FILE
        return json.loads(path.read_text()) if path.exists() else None

    def validation_images(self) -> contextlib.AbstractContextManager[list[Sample]]:
        """`validation_images(self.dir)`: the run's validation split, rebuilt exactly."""
        return validation_images(self.dir)


def typed_config(facts: dict) -> RunConfig | None:
    """config.json's RunConfig; None when it describes no run this version can train (imported, unknown)."""
    try:
        return RunConfig.from_dict(facts)
    except (TypeError, ValueError):
        return None


def load_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"'{run_dir}' is not a run directory (no {CONFIG_FILE}).")
    summary_path = run_dir / SUMMARY_FILE
    summary = json.loads(summary_path.read_text()) if summary_path.exists() else None
    live = summary is None and is_live(run_dir)
    if summary is None and not live:  # interrupted: a write the kill cut short leaves only its temporary file
        sweep_temps(run_dir)
    return RunRecord.from_dicts(run_dir, json.loads(config_path.read_text()), summary,
                                read_jsonl(run_dir / METRICS_FILE), live=live)


def list_runs(runs_dir: str | Path) -> list[RunRecord]:
    """Every run under `runs_dir`, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    records = []
    for path in runs_dir.iterdir():
        if (path / CONFIG_FILE).exists():
            try:
                records.append(load_run(path))
            except (OSError, json.JSONDecodeError):
                continue  # being created right now
    return sorted(records, key=lambda r: r.id, reverse=True)


@contextlib.contextmanager
def validation_images(run_dir: str | Path) -> Iterator[list[Sample]]:
    """The run's validation images, split again exactly as the run split them (same data, fraction and seed).

    Raises DataError if the run's images cannot be read any more, ValueError for a run with no recorded dataset
    (an imported model). A zipped dataset is extracted into a temporary folder that lives as long as the context.
    """
    split = load_run(run_dir).split
    if split is None:
        raise ValueError(f"Run '{Path(run_dir).name}' has no recorded dataset (an imported model).")
    with tempfile.TemporaryDirectory(prefix="workbench-val-") as scratch:
        yield split.open(extract_to=Path(scratch) / "data").val
