"""Knowledge distillation (Hinton, Vinyals and Dean, 2015): a finished run, the teacher, trains a student.

The student is the run's own backbone and trains every layer on

    loss = alpha * T^2 * KL(softmax(teacher / T) || softmax(student / T)) + (1 - alpha) * CE(student, label)

The teacher's logits are computed once per training image, before the first epoch, on the teacher's own evaluation
view of the image (its resize, centre crop and normalisation, through `predict.Predictor`), and looked up for every
batch. The student meanwhile sees augmented crops; with the light presets (at least half of the image, mirrored,
mild colour changes) the teacher's answer for the whole image is still the right answer for the crop, so recomputing
it every epoch would cost a teacher forward pass per image per epoch for no real gain. Presets that blend two images
(mixup / cutmix) are refused: there is no cached answer for a blend.

`teacher_student_comparison(student_run_dir)` measures both models side by side: validation accuracy on the
student's validation images, parameters, size of model.safetensors on disk, and CPU latency per image.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import TYPE_CHECKING

import pandas as pd
import torch
import torch.nn.functional as F

from . import runs
from .compress import latency
from .config import RunConfig
from .predict import BATCH_SIZE, Predictor, validation_images
from .train import Objective

if TYPE_CHECKING:
    from .train import _Trainer

LATENCY_WARMUP = 3  # untimed forwards first: the first calls allocate memory and pick kernels
LATENCY_REPEATS = 15  # timed single-image forwards; their median is reported


class TeacherError(ValueError):
    """The teacher run cannot teach this student; the message names the run and says what to do."""


def resolve_teacher(teacher_run: str, runs_dir: Path) -> Path:
    """The teacher's run directory: `teacher_run` as a path, else as a run id under `runs_dir`."""
    if not teacher_run:
        raise TeacherError("Distillation needs a teacher: give --teacher-run, the directory or id of a finished run "
                           "on the same classes (train one first, e.g. --strategy full --backbone "
                           "tf_efficientnet_lite0).")
    for candidate in (Path(teacher_run).expanduser(), runs_dir / teacher_run):
        if (candidate / runs.CONFIG_FILE).is_file():
            return candidate
    raise TeacherError(f"Teacher run '{teacher_run}' was not found, neither as a folder nor as a run id under "
                       f"'{runs_dir}'. Give the directory of a finished run (runs/<run id>) or its id.")


def check_teacher(teacher_run: str, runs_dir: Path, class_names: list[str]) -> runs.RunRecord:
    """The teacher's record, after checking it finished, kept its model and knows exactly these classes."""
    record = runs.load_run(resolve_teacher(teacher_run, runs_dir))
    if record.status != "finished":
        raise TeacherError(f"Teacher run '{record.id}' is {record.status}, not finished: only a finished run can "
                           "teach. Pick another run, or train the teacher to the end first.")
    if not record.has_model:
        raise TeacherError(f"Teacher run '{record.id}' has no saved model ({runs.MODEL_FILE}). Pick another run.")
    teacher_classes = json.loads((record.dir / runs.MODEL_INFO_FILE).read_text())["class_names"]
    if teacher_classes != class_names:
        raise TeacherError(f"Teacher run '{record.id}' knows the classes {teacher_classes}, but this data has "
                           f"{class_names}. A teacher must have been trained on the same classes: pick a run on "
                           "this dataset.")
    return record


def teacher_candidates(runs_dir: str | Path, class_names: list[str]) -> list[runs.RunRecord]:
    """Finished runs with a saved model on exactly these classes, most accurate first: who could teach."""
    found = [r for r in runs.list_runs(runs_dir)
             if r.status == "finished" and r.has_model and (r.summary or {}).get("class_names") == class_names]
    return sorted(found, key=lambda r: -((r.summary or {}).get("val_accuracy") or 0.0))


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
        self.config = config
        self.teacher = check_teacher(config.teacher_run, config.runs_path(), class_names)
        self.teacher_logits: torch.Tensor | None = None
        self.teacher_images = 0  # images the teacher has seen in this run: once each
        self.teacher_train_acc: float | None = None
        self.kl_sum, self.kl_batches = 0.0, 0

    def info(self) -> dict:
        summary = self.teacher.summary or {}
        return {"teacher": {"run_id": self.teacher.id, "dir": str(self.teacher.dir),
                            "backbone": self.teacher.config.get("backbone"),
                            "strategy": self.teacher.config.get("strategy"),
                            "val_accuracy": summary.get("val_accuracy"), "total_params": summary.get("total_params")}}

    def setup(self, trainer: _Trainer) -> list[dict]:
        samples = trainer.p.dataset.train
        trainer.run._set_phase("computing the teacher's answers (once per training image)")
        teacher = Predictor.from_run(self.teacher.dir, device=str(trainer.device))
        logits = []
        for start in range(0, len(samples), BATCH_SIZE):
            trainer.run._check_stop()
            logits.append(teacher.logits([s.path for s in samples[start:start + BATCH_SIZE]]))
            self.teacher_images += len(logits[-1])
            trainer.run._report_progress({"phase": "computing the teacher's answers", "done": self.teacher_images,
                                          "total": len(samples)})
        self.teacher_logits = torch.cat(logits)
        labels = torch.tensor([s.label for s in samples])
        self.teacher_train_acc = round((self.teacher_logits.argmax(1) == labels).float().mean().item(), 5)
        del teacher  # its memory is not needed for the epochs
        return []

    def loss(self, label_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
             extra: list[torch.Tensor]) -> torch.Tensor:
        teacher = self.teacher_logits[extra[0]].to(logits.device, non_blocking=True)
        total, kl = distillation_loss(logits, teacher, label_loss, self.config.distill_alpha,
                                      self.config.distill_temperature)
        self.kl_sum += kl.item()
        self.kl_batches += 1
        return total

    def epoch_metrics(self, trainer: _Trainer) -> dict:
        kl = round(self.kl_sum / self.kl_batches, 5) if self.kl_batches else None
        self.kl_sum, self.kl_batches = 0.0, 0
        return {"distill_kl": kl}

    def summary(self, final: dict) -> dict:
        return {**self.info(), "teacher_images": self.teacher_images,
                "teacher_train_accuracy": self.teacher_train_acc}


# ---------------------------------------------------------------------------------------------------------------
# Teacher and student side by side


def cpu_latency_ms(predictor: Predictor) -> float:
    """Median milliseconds of one single-image forward pass on one CPU thread, at the model's image size (one
    thread gives figures that hold on a busy machine; `compress.latency` times it)."""
    size = predictor.info["image_size"]
    image = torch.randn(1, 3, size, size).contiguous(memory_format=torch.channels_last)
    timing = latency(predictor.model.to("cpu"), image, repeats=LATENCY_REPEATS, threads=1, warmup=LATENCY_WARMUP)
    return timing["latency_ms"]


def _row(role: str, run_dir: Path, val_paths: list[Path], val_labels: torch.Tensor) -> dict:
    predictor = Predictor.from_run(run_dir)
    accuracy = (predictor.logits(val_paths).argmax(1) == val_labels).float().mean().item()
    config = runs.load_run(run_dir).config
    return {
        "model": role,
        "backbone": config.get("backbone"),
        "run id": run_dir.name,
        "val accuracy": round(accuracy, 4),
        "parameters": sum(p.numel() for p in predictor.model.parameters()),
        "size on disk MB": round((run_dir / runs.MODEL_FILE).stat().st_size / 2**20, 3),
        "CPU latency ms": cpu_latency_ms(predictor),
        "image size": predictor.info["image_size"],
    }


def teacher_student_comparison(student_run_dir: str | Path) -> pd.DataFrame:
    """Teacher and student of a distillation run, measured now: accuracy on the student's validation images (the
    same images for both), parameters, model.safetensors size, and CPU latency per image (median of
    LATENCY_REPEATS single-image forwards on one thread after LATENCY_WARMUP untimed ones). Rows: teacher,
    student."""
    student_dir = Path(student_run_dir)
    record = runs.load_run(student_dir)
    if record.config.get("strategy") != "distill":
        raise ValueError(f"Run '{record.id}' is a {record.config.get('strategy')} run, not a distillation run: "
                         "give the student's run directory.")
    if not record.has_model:
        raise FileNotFoundError(f"Run '{record.id}' has no saved model (it may have failed before the end).")
    teacher = record.config.get("teacher") or {}
    teacher_dir = Path(teacher.get("dir", ""))
    if not (teacher_dir / runs.MODEL_FILE).is_file():
        raise FileNotFoundError(f"The teacher of run '{record.id}' ({teacher.get('run_id')}) is no longer at "
                                f"'{teacher_dir}': its model is needed to measure it.")
    with validation_images(student_dir) as samples:
        paths = [s.path for s in samples]
        labels = torch.tensor([s.label for s in samples])
        rows = [_row("teacher", teacher_dir, paths, labels), _row("student", student_dir, paths, labels)]
    return pd.DataFrame(rows).set_index("model")
