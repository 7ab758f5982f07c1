"""Knowledge distillation (Hinton, Vinyals and Dean, 2015): a finished run, the teacher, trains a student.

The student is the run's own backbone and trains every layer on

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, label)

The teacher's logits are computed once per training image, before the first epoch, on the teacher's own evaluation
view of the image (its resize, centre crop and normalisation, through `models.trained.Predictor`), and looked up
for every batch. The student meanwhile sees augmented crops; with the light presets (at least half of the image,
mirrored, mild colour changes) the teacher's answer for the whole image is still the right answer for the crop, so
recomputing it every epoch would cost a teacher forward pass per image per epoch for no real gain. Presets that
blend two images (mixup / cutmix) are refused: there is no cached answer for a blend.

`teacher_student_comparison(record)` measures both models side by side: validation accuracy on the
student's validation images, parameters, size of model.safetensors on disk, and CPU latency per image.
"""

from __future__ import annotations

import contextlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F

from workbench.core.fields import help_field
from workbench.core.latency import latency
from workbench.core.plot_style import LAYOUT
from workbench.core.runfolder import CONFIG_FILE, MODEL_FILE, MODEL_INFO_FILE, SUMMARY_FILE, write_json
from workbench.data import AUGMENTATIONS
from workbench.models.trained import BATCH_SIZE, Predictor, has_model_files
from workbench.strategies.base import Figure, Objective, Panel, Strategy, Table, TrainingContext, register
from workbench.strategies.code import StrategyCode

if TYPE_CHECKING:
    import pandas as pd
    import plotly.graph_objects as go

    from workbench.engine.config import RunConfig
    from workbench.runs.records import RunRecord

LATENCY_WARMUP = 3  # untimed forwards first: the first calls allocate memory and pick kernels
LATENCY_REPEATS = 15  # timed single-image forwards; their median is reported
COMPARISON_FILE = "teacher_student.json"
"""The side-by-side measurement, kept in the student's run folder once made (latency takes seconds to measure)."""


class TeacherError(ValueError):
    """The teacher run cannot teach this student; the message names the run and says what to do."""


@dataclass(frozen=True)
class DistillOptions:
    teacher_run: str = field(default="", metadata={
        "help": "Distillation: the teacher, a finished run's directory or id (same classes as --data).",
        "kind": "run"})
    distill_alpha: float = field(default=0.7, **help_field("Distillation: weight of matching the teacher (KL) "
                                                           "against the labels (1 - alpha)."))
    distill_temperature: float = field(default=4.0, **help_field("Distillation: temperature T softening both "
                                                                 "models' answers (1 = as they are)."))

    def __post_init__(self) -> None:
        """Ranges only: whether the teacher run exists is checked when a run prepares."""
        if not 0.0 <= self.distill_alpha <= 1.0:
            raise ValueError(f"--distill-alpha must be between 0 and 1, got {self.distill_alpha}.")
        if self.distill_temperature <= 0:
            raise ValueError(f"--distill-temperature must be positive, got {self.distill_temperature}.")


def resolve_teacher(teacher_run: str, runs_dir: Path) -> Path:
    """The teacher's run directory: `teacher_run` as a path, else as a run id under `runs_dir`."""
    if not teacher_run:
        raise TeacherError("Distillation needs a teacher: give --teacher-run, the directory or id of a finished run "
                           "on the same classes (train one first, e.g. --strategy full --backbone "
                           "tf_efficientnet_lite0).")
    for candidate in (Path(teacher_run).expanduser(), runs_dir / teacher_run):
        if (candidate / CONFIG_FILE).is_file():
            return candidate
    raise TeacherError(f"Teacher run '{teacher_run}' was not found, neither as a folder nor as a run id under "
                       f"'{runs_dir}'. Give the directory of a finished run (runs/<run id>) or its id.")


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text())
    except (OSError, ValueError):
        return {}


def check_teacher(teacher_run: str, runs_dir: Path, class_names: list[str]) -> dict:
    """What the record keeps of the teacher, after checking it finished, kept its model and knows exactly these
    classes."""
    folder = resolve_teacher(teacher_run, runs_dir)
    config, summary = _read(folder / CONFIG_FILE), _read(folder / SUMMARY_FILE)
    status = summary.get("status", "interrupted or still training")
    if status != "finished":
        raise TeacherError(f"Teacher run '{folder.name}' is {status}, not finished: only a finished run can "
                           "teach. Pick another run, or train the teacher to the end first.")
    if not has_model_files(folder):
        raise TeacherError(f"Teacher run '{folder.name}' has no saved model ({MODEL_FILE}). Pick another run.")
    teacher_classes = _read(folder / MODEL_INFO_FILE).get("class_names")
    if teacher_classes != class_names:
        raise TeacherError(f"Teacher run '{folder.name}' knows the classes {teacher_classes}, but this data has "
                           f"{class_names}. A teacher must have been trained on the same classes: pick a run on "
                           "this dataset.")
    return {"run_id": folder.name, "dir": str(folder), "backbone": config.get("backbone"),
            "strategy": config.get("strategy"), "val_accuracy": summary.get("val_accuracy"),
            "total_params": summary.get("total_params")}


def distillation_loss(student: torch.Tensor, teacher: torch.Tensor, label_loss: torch.Tensor, alpha: float,
                      temperature: float) -> tuple[torch.Tensor, torch.Tensor]:
    """(total loss, KL term). T^2 keeps the soft term's gradients the same size whatever T is (Hinton et al.)."""
    kl = F.kl_div(F.log_softmax(student / temperature, dim=1), F.log_softmax(teacher / temperature, dim=1),
                  log_target=True, reduction="batchmean")
    return alpha * temperature**2 * kl + (1 - alpha) * label_loss, kl


class DistillObjective(Objective):
    """The teacher's cached logits, looked up by each training image's position in a batch."""

    indexed = True

    def __init__(self, config: RunConfig, class_names: list[str]):
        self.options: DistillOptions = config.options
        self.teacher = check_teacher(self.options.teacher_run, config.runs_path(), class_names)
        self.teacher_logits: torch.Tensor | None = None
        self.teacher_images = 0  # images the teacher has seen in this run: once each
        self.teacher_train_acc: float | None = None
        self.kl_sum, self.kl_batches = 0.0, 0

    def info(self) -> dict:
        return {"teacher": self.teacher}

    def setup(self, ctx: TrainingContext) -> list[dict]:
        samples = ctx.train_samples
        ctx.set_phase("computing the teacher's answers (once per training image)")
        teacher = Predictor.from_run(self.teacher["dir"], device=str(ctx.device))
        logits = []
        for start in range(0, len(samples), BATCH_SIZE):
            ctx.check_stop()
            logits.append(teacher.logits([s.path for s in samples[start:start + BATCH_SIZE]]))
            self.teacher_images += len(logits[-1])
            ctx.report_progress("computing the teacher's answers", self.teacher_images, len(samples))
        self.teacher_logits = torch.cat(logits)
        labels = torch.tensor([s.label for s in samples])
        self.teacher_train_acc = round((self.teacher_logits.argmax(1) == labels).float().mean().item(), 5)
        del teacher  # its memory is not needed for the epochs
        return []

    def loss(self, label_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
             extra: list[torch.Tensor]) -> torch.Tensor:
        teacher = self.teacher_logits[extra[0]].to(logits.device, non_blocking=True)
        total, kl = distillation_loss(logits, teacher, label_loss, self.options.distill_alpha,
                                      self.options.distill_temperature)
        self.kl_sum += kl.item()
        self.kl_batches += 1
        return total

    def epoch_metrics(self, ctx: TrainingContext) -> dict:
        kl = round(self.kl_sum / self.kl_batches, 5) if self.kl_batches else None
        self.kl_sum, self.kl_batches = 0.0, 0
        return {"distill_kl": kl}

    def summary(self, final: dict, ctx: TrainingContext) -> dict:
        return {**self.info(), "teacher_images": self.teacher_images,
                "teacher_train_accuracy": self.teacher_train_acc}


# ---------------------------------------------------------------------------------------------------------------
# The strategy


@register
class Distill(Strategy):
    name = "distill"
    title = "Knowledge distillation (a teacher trains a student)"
    explanation = (
        "A finished run is the teacher; the backbone chosen here, usually much smaller and faster, is the student. "
        "The student learns from the labels and also from the teacher's full answer for every image: not just "
        "'this is a star' but 'mostly star, a bit like a cross, nothing like a circle'. Those near-misses, made "
        "visible by softening both answers with a temperature T, carry what the teacher knows about how the "
        "classes resemble each other, so a small student often gets closer to the big teacher than it would from "
        "labels alone (Hinton, Vinyals and Dean, 2015). Alpha sets how much the teacher counts against the labels. "
        "The student trains every layer (a full fine-tune); the teacher's answers are computed once per image."
    )
    trains = "every layer of the student, from the labels and the teacher's answers"
    default_epochs = 5
    default_lr = 5e-4
    Options = DistillOptions
    race = False  # needs a teacher run

    def check(self, config: RunConfig) -> None:
        if AUGMENTATIONS[config.augment].mixes_images:
            # the teacher's answers are cached per image; for a blend of two images there is no cached answer
            raise ValueError(f"--augment {config.augment} blends pairs of images, which distillation cannot use: the "
                             "teacher's answers are computed once per image. Choose none, light or standard.")

    def objective(self, config: RunConfig, class_names: list[str]) -> Objective:
        return DistillObjective(config, class_names)

    def plan(self, config: RunConfig) -> list[str]:
        options = config.options
        return [f"**Teacher:** `{options.teacher_run or 'none chosen: pick one on the Model page'}` · "
                f"**α** {options.distill_alpha:g} · **T** {options.distill_temperature:g}"]

    def panels(self, record: RunRecord) -> list[Panel]:
        teacher = record.facts.get("teacher") or {}
        panel = Panel("Teacher and student", [
            f"Teacher: run `{teacher.get('run_id')}` ({teacher.get('backbone')}, {teacher.get('strategy')}). "
            "Its answers for the training images were computed once, before the first epoch."])
        if record.status != "finished":
            panel.blocks.append("Both models are measured side by side when the run has finished.")
            return [panel]
        table = teacher_student_comparison(record)
        panel.blocks += [
            Table(table, {"val accuracy": "{:.1%}", "parameters": "{:,.0f}", "size on disk MB": "{:.2f}",
                          "CPU latency ms": "{:.1f}"}),
            Figure(teacher_student_figure(table), "distill_bars"),
            "Accuracy on the student's validation images (the same images for both); size of each "
            "model.safetensors; latency: median of single-image forward passes on one thread of this computer's "
            "CPU, measured once, the first time the run was shown (other work on the computer slows it)."]
        return [panel]

    def code(self, config: RunConfig, groups) -> StrategyCode:
        # The script must stand alone, and the teacher is another run's model: it writes the student's full
        # fine-tune and says so (the note covers the teacher's options too).
        return StrategyCode(left_out=[
            "the teacher: the workbench also matched a teacher run's softened answers; this script learns from the "
            "labels alone, as a plain full fine-tune of the student"])


# ---------------------------------------------------------------------------------------------------------------
# Teacher and student side by side


def cpu_latency_ms(predictor: Predictor) -> float:
    """Median milliseconds of one single-image forward pass on one CPU thread, at the model's image size (one
    thread gives figures that hold on a busy machine; `core.latency` times it)."""
    size = predictor.info["image_size"]
    image = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    timing = latency(predictor.model.to("cpu"), image, repeats=LATENCY_REPEATS, threads=1, warmup=LATENCY_WARMUP)
    return timing["latency_ms"]


def _row(role: str, run_dir: Path, backbone: str | None, val_paths: list[Path], val_labels: torch.Tensor) -> dict:
    predictor = Predictor.from_run(run_dir)
    accuracy = (predictor.logits(val_paths).argmax(1) == val_labels).float().mean().item()
    return {
        "model": role,
        "backbone": backbone,
        "run id": run_dir.name,
        "val accuracy": round(accuracy, 4),
        "parameters": sum(p.numel() for p in predictor.model.parameters()),
        "size on disk MB": round((run_dir / MODEL_FILE).stat().st_size / 2**20, 3),
        "CPU latency ms": cpu_latency_ms(predictor),
        "image size": predictor.info["image_size"],
    }


def teacher_student_comparison(record: RunRecord) -> pd.DataFrame:
    """Teacher and student of a distillation run (`record`, a `runs.RunRecord`), measured on this computer:
    accuracy on the student's validation images (the same images for both), parameters, model.safetensors size, and
    CPU latency per image (median of LATENCY_REPEATS single-image forwards on one thread after LATENCY_WARMUP
    untimed ones). Rows: teacher, student. Measured once, then read back from the run's folder."""
    if record.strategy != Distill.name:
        raise ValueError(f"Run '{record.id}' is a {record.strategy} run, not a distillation run: "
                         "give the student's run directory.")
    if not record.has_model:
        raise FileNotFoundError(f"Run '{record.id}' has no saved model (it may have failed before the end).")
    import pandas as pd  # for the pages and the CLI's table only: not loaded with the engine

    saved = record.dir / COMPARISON_FILE
    if saved.is_file():
        return pd.DataFrame(json.loads(saved.read_text())).set_index("model")
    teacher = record.facts.get("teacher") or {}
    teacher_dir = Path(teacher.get("dir", ""))
    if not has_model_files(teacher_dir):
        raise FileNotFoundError(f"The teacher of run '{record.id}' ({teacher.get('run_id')}) is no longer at "
                                f"'{teacher_dir}': its model is needed to measure it.")
    with record.validation_images() as samples:
        paths = [s.path for s in samples]
        labels = torch.tensor([s.label for s in samples])
        rows = [_row("teacher", teacher_dir, teacher.get("backbone"), paths, labels),
                _row("student", record.dir, record.config.backbone, paths, labels)]
    with contextlib.suppress(OSError):  # a read-only or full disk: measured again next time
        write_json(saved, rows)
    return pd.DataFrame(rows).set_index("model")


COMPARISON_BARS = (("val accuracy", "Validation accuracy", ".0%"), ("parameters", "Parameters", "~s"),
                   ("size on disk MB", "Size on disk (MB)", ".2f"), ("CPU latency ms", "CPU latency per image (ms)",
                                                                      ".1f"))


def teacher_student_figure(table: pd.DataFrame) -> go.Figure:
    """Small bar charts, teacher next to student: accuracy, parameters, size on disk and CPU latency."""
    from plotly.subplots import make_subplots  # for the pages only: not loaded with the engine

    fig = make_subplots(rows=1, cols=len(COMPARISON_BARS), subplot_titles=[t for _, t, _ in COMPARISON_BARS])
    colours = {"teacher": "#9467bd", "student": "#17becf"}
    for col, (column, _, fmt) in enumerate(COMPARISON_BARS, start=1):
        fig.add_bar(x=list(table.index), y=table[column], marker_color=[colours.get(i, "#888") for i in table.index],
                    texttemplate=f"%{{y:{fmt}}}", textposition="outside", showlegend=False, row=1, col=col)
        fig.update_yaxes(tickformat=fmt if fmt == ".0%" else None, rangemode="tozero", row=1, col=col)
    return fig.update_layout(**LAYOUT, height=300)
