"""How long a lesson takes on this machine: estimated from the speeds measured here before it runs, then measured
(each completed attempt's time is kept in the lesson's record)."""

from __future__ import annotations

import tempfile
from pathlib import Path

from workbench.analysis.estimate import estimate_for_machine
from workbench.data import DataSpec
from workbench.lessons.base import Lesson, Results
from workbench.runs.registry import planned_config


def estimate_seconds(lesson: Lesson, data: str, measure: bool = True) -> float | None:
    """Seconds the runs the lesson queues first would take here (measuring the backbone's speed once, a few seconds,
    unless `measure` is False); None when a speed is not known yet. Later runs and the measuring after them are not
    included."""
    total = 0.0
    counts: dict[DataSpec, tuple[int, int]] = {}  # runs of one lesson often share their data: read it once
    with tempfile.TemporaryDirectory(prefix="workbench-lesson-estimate-") as scratch:
        for config in lesson.plan(data, Results(None), Path(scratch)).values():
            planned = planned_config(config)
            spec = planned.data_spec()  # the images and split the run itself will open
            if spec not in counts:
                dataset = spec.open()
                counts[spec] = len(dataset.train), len(dataset.val)
            seconds = estimate_for_machine(planned.backbone, planned.strategy, planned.image_size,
                                           planned.batch_size, planned.epochs, *counts[spec], measure=measure)
            if seconds is None:
                return None
            total += seconds
    return total
