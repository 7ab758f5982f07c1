"""The lesson contract: a question, the class's prediction, the runs that answer it, and an explanation written from
those runs' own numbers.

A `Lesson` names the runs it needs (`plan`), by role ("probe", "scratch", "depth-3"), given the runs it already
has, so a lesson whose second run needs the first one's result (a student needs its teacher) queues it once the first
has ended. After its runs, a lesson may measure something more from them (`measure`: Grad-CAM, a compressed copy,
accuracy on other images); what it measured is kept in the lesson's record on disk beside the run ids. Everything a
lesson says (`explain`, `winner`, `figures`, `numbers`) is read from those records and measurements, never written in
advance, so the text cannot contradict the charts on the same screen.
"""

from __future__ import annotations

import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import ClassVar

import plotly.graph_objects as go

from workbench.engine.config import RunConfig
from workbench.runs.records import ENDED, RunRecord
from workbench.runs.registry import short_duration

SAMPLE_ROOT = Path(__file__).resolve().parents[2] / "sample_data"
BACKBONE = "tf_efficientnet_lite0"  # ships its ImageNet weights: every lesson runs offline
SAMPLE = SAMPLE_ROOT / "shapes"  # what a lesson trains on unless the teacher picks other images
SAMPLE_SHIFTED = SAMPLE_ROOT / "shapes_shifted"  # the same shapes drawn differently: the domain-shift lesson's target


@dataclass
class Attempt:
    """One press of a lesson's Start button: who started it, on what images, and the runs it queued, by role."""

    id: str
    owner: str | None  # the classroom person who started it (None on a personal server)
    data: str
    started: float
    runs: dict[str, str] = field(default_factory=dict)  # role -> run id, in the order they were queued
    measured: dict | None = None  # what the lesson measured after its runs (None: not measured yet)
    finished: float | None = None  # when the runs and the measuring had all ended

    @property
    def seconds(self) -> float | None:
        """How long the whole lesson took, start to last result (None while it is still going)."""
        return None if self.finished is None else round(self.finished - self.started, 1)

    def to_dict(self) -> dict:
        return {"id": self.id, "owner": self.owner, "data": self.data, "started": self.started, "runs": self.runs,
                "measured": self.measured, "finished": self.finished}

    @classmethod
    def from_dict(cls, values: dict) -> Attempt:
        return cls(id=str(values["id"]), owner=values.get("owner"), data=str(values["data"]),
                   started=float(values["started"]), runs=dict(values.get("runs") or {}),
                   measured=values.get("measured"), finished=values.get("finished"))


@dataclass
class Results:
    """What a lesson reads: the attempt, its runs' records by role (a run queued but not written yet has a record
    with no metrics), and each run's status as the registry sees it now."""

    attempt: Attempt | None
    records: dict[str, RunRecord] = field(default_factory=dict)
    statuses: dict[str, str] = field(default_factory=dict)

    def run(self, role: str) -> RunRecord | None:
        return self.records.get(role)

    def status(self, role: str) -> str:
        """queued | preparing | running | finished | stopped | failed | interrupted | missing (never queued, or its
        record is gone)."""
        return self.statuses.get(role, "missing")

    @property
    def runs_ended(self) -> bool:
        """Every run of the attempt has ended (or is gone): nothing more will arrive from them."""
        return self.attempt is not None and all(self.status(role) in (*ENDED, "missing")
                                                for role in self.attempt.runs)

    @property
    def measured(self) -> dict:
        return (self.attempt.measured if self.attempt else None) or {}

    @property
    def complete(self) -> bool:
        return self.attempt is not None and self.attempt.finished is not None


@dataclass
class Chart:
    """A plotly figure with a line under it."""

    title: str
    figure: go.Figure
    caption: str = ""


@dataclass
class Pictures:
    """Images side by side, each with its caption (image files the lesson wrote while measuring)."""

    title: str
    images: list[tuple[Path, str]]
    caption: str = ""


class Lesson:
    """One lesson. Subclass it, set the class attributes, and override the hooks; `lessons.LESSONS` lists them."""

    id: ClassVar[str]
    """Short, URL-safe: the page's address is lesson-<id>."""
    number: ClassVar[int]
    title: ClassVar[str]
    question: ClassVar[str]
    choices: ClassVar[dict[str, str]]
    """What the class may predict before the runs: key -> words. `winner` answers with one of the keys."""
    deeper: ClassVar[tuple[str, str]]
    """(page url path, what to look at there) for a deeper look."""
    prompts: ClassVar[tuple[str, ...]]
    """Two or three questions a teacher can ask once the results are in."""
    what_runs: ClassVar[str]
    """One sentence: what the Start button queues, with its budget."""
    own_data: ClassVar[bool] = True
    """False: the lesson needs the sample data (e.g. a matched pair of domains) and ignores other images."""
    main_role: ClassVar[str]
    """The run whose "show me the code" script goes into the handout."""

    def unavailable(self) -> str | None:
        """Why this lesson cannot run in this installation (None: it can)."""
        return None

    def plan(self, data: str, results: Results, folder: Path) -> dict[str, RunConfig]:
        """The runs the lesson wants now, by role: asked at the start (`results` has no runs) and again each time
        every run queued so far has ended, until it wants nothing new. Roles already queued are skipped, so a lesson
        may return every run it ever wants (a classroom's limit on runs at once then queues them a few at a time).
        `folder` is the attempt's own folder, for anything the runs read (e.g. a few images per class)."""
        raise NotImplementedError

    def measures(self) -> bool:
        """Whether `measure` does anything (the lesson waits for it after its runs)."""
        return type(self).measure is not Lesson.measure

    def measure(self, results: Results, folder: Path) -> dict:
        """What the lesson measures from its ended runs (JSON values; images it draws go in `folder`). Slow work is
        fine: it runs once, in the background."""
        return {}

    def role_title(self, role: str) -> str:
        """How the handout and the tables name a run of this role."""
        return role

    def explain(self, results: Results) -> list[str]:
        """Markdown paragraphs built from the runs' and measurements' numbers as they are now (partial while runs
        train)."""
        raise NotImplementedError

    def winner(self, results: Results) -> str | None:
        """The choice the results bear out, once they are in (None before)."""
        raise NotImplementedError

    def figures(self, results: Results) -> list[Chart | Pictures]:
        return []


# -------------------------------------------------------------------------------------------------------------------
# Numbers as sentences: every lesson words its runs the same way


def accuracy(record: RunRecord | None) -> float | None:
    """The run's validation accuracy: the kept epoch's once it has ended, else the latest epoch's so far."""
    if record is None:
        return None
    if record.summary is not None and record.summary.val_accuracy is not None:
        return record.summary.val_accuracy
    return record.metrics[-1]["val_acc"] if record.metrics else None


def seconds(record: RunRecord | None) -> float | None:
    """Seconds the run has trained: its recorded total once ended, else the epochs so far."""
    if record is None:
        return None
    if record.summary is not None and record.summary.train_seconds is not None:
        return record.summary.train_seconds
    return round(sum(m.get("seconds", 0.0) for m in record.metrics), 1) if record.metrics else None


def planned_epochs(record: RunRecord) -> int | None:
    return record.config.epochs if record.config is not None else record.facts.get("epochs")


def progress(record: RunRecord | None, status: str) -> str:
    """Where a run is, as a clause: 'after 3 of 10 epochs', 'after all 10 epochs', 'waiting in the queue'."""
    if record is None or status == "missing":
        return "never ran"
    done, planned = len(record.metrics), planned_epochs(record)
    if status in ("queued", "preparing") or (not done and status not in ENDED):
        return "waiting in the queue" if status == "queued" else "getting ready"
    if status == "finished":
        if planned is None or done >= planned:
            return f"after all {done} epoch{'s' if done != 1 else ''}"
        return f"after {done} of {planned} epochs (it stopped early: the validation loss had stopped improving)"
    if status in ("failed", "interrupted", "stopped"):
        return f"{status} after {done} epoch{'s' if done != 1 else ''}"
    return f"after {done} of {planned} epochs" if planned else f"after {done} epochs"


def pct(value: float | None) -> str:
    return "–" if value is None else f"{value:.0%}"


def share(part: int, whole: int) -> str:
    """A share as a person reads it: '92%', '0.2%' (a plain '0%' would read as 'nothing')."""
    fraction = part / whole
    return f"{fraction:.0%}" if fraction >= 0.01 or fraction == 0 else f"{fraction:.1%}"


def duration(value: float | None) -> str:
    """'12 s', '2 min 05 s' (the pages' `short_duration`); '–' when not known."""
    return "–" if value is None else short_duration(value)


def chance(record: RunRecord | None) -> float | None:
    """Accuracy of guessing: one over the number of classes."""
    classes = record.class_names if record is not None else []
    return 1 / len(classes) if classes else None


def trained(record: RunRecord | None) -> bool:
    """The run has at least one epoch of numbers."""
    return record is not None and bool(record.metrics or (record.summary and record.summary.val_accuracy is not None))


def new_attempt_id() -> str:
    return time.strftime("%Y%m%d-%H%M%S") + f"-{time.time_ns() % 1_000_000:06d}"
