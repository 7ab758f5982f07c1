"""Knowledge distillation: the loss, the checks on the teacher, the effect, the cache of the teacher's answers, and
the teacher-student comparison (library, CLI and Train page)."""

import json
import random
import shutil
from pathlib import Path

import pytest
import torch
import torch.nn.functional as F
from streamlit.testing.v1 import AppTest

from ui_common import CHOICES, DATASET, get_registry
from workbench import cli, runs
from workbench.data import open_dataset
from workbench.engine import Run
from workbench.engine.config import RUNS_DIR_ENV, RunConfig
from workbench.models.trained import Predictor
from workbench.strategies import distill

from .conftest import REPO, SHAPES, train_page_showing

TEACHER = dict(backbone="tf_efficientnet_lite0", strategy="linear_probe", image_size=96, epochs=30, seed=0)
# The same budget for both students; only the objective differs. Alpha is high because half the labels are wrong.
STUDENT = dict(backbone="tf_efficientnet_lite0", image_size=64, batch_size=16, epochs=3, lr=5e-4, seed=0)
DISTILL = dict(distill_alpha=0.9, distill_temperature=2.0)
NOISE = 0.5  # share of training labels moved to another class


def noisy_copy(root: Path) -> tuple[Path, Path]:
    """(clean, noisy): the sample data's own seeded train/val split as train/ and val/ folders, twice. The noisy
    copy has the same val/ (clean: it measures the students) and the same training images, but half of them filed
    under a wrong class, chosen at random (seeded)."""
    dataset = open_dataset(SHAPES, seed=0)
    rng = random.Random(0)
    for sample in dataset.train + dataset.val:
        name = dataset.class_names[sample.label]
        noisy = name
        if sample.split == "train" and rng.random() < NOISE:
            noisy = rng.choice([c for c in dataset.class_names if c != name])
        for layout, label in (("clean", name), ("noisy", noisy)):
            folder = root / layout / sample.split / label
            folder.mkdir(parents=True, exist_ok=True)
            shutil.copy(sample.path, folder / sample.path.name)
    return root / "clean", root / "noisy"


def test_loss_is_label_loss_at_alpha_0_and_zero_when_student_matches_teacher_at_alpha_1():
    student, teacher = torch.randn(8, 5), torch.randn(8, 5)
    labels = torch.randint(0, 5, (8,))
    ce = F.cross_entropy(student, labels)
    total, _ = distill.distillation_loss(student, teacher, ce, alpha=0.0, temperature=4.0)
    assert torch.allclose(total, ce)
    total, kl = distill.distillation_loss(teacher, teacher, ce, alpha=1.0, temperature=4.0)
    assert total.item() == pytest.approx(0.0, abs=1e-6) and kl.item() == pytest.approx(0.0, abs=1e-6)


def test_soft_term_is_t_squared_kl_of_the_softened_answers():
    student, teacher = torch.randn(4, 5), torch.randn(4, 5)
    t = 3.0
    p_teacher = F.softmax(teacher / t, 1)
    expected = (p_teacher * (p_teacher.log() - F.log_softmax(student / t, 1))).sum(1).mean() * t**2
    total, _ = distill.distillation_loss(student, teacher, torch.tensor(0.0), alpha=1.0, temperature=t)
    assert total.item() == pytest.approx(expected.item(), rel=1e-5)


def test_config_checks_alpha_temperature_and_mixing_augmentation():
    with pytest.raises(ValueError, match="--distill-alpha"):
        RunConfig(data="x", strategy="distill", options={"distill_alpha": 1.5})
    with pytest.raises(ValueError, match="--distill-temperature"):
        RunConfig(data="x", strategy="distill", options={"distill_temperature": 0})
    with pytest.raises(ValueError, match="blends pairs of images"):
        RunConfig(data="x", strategy="distill", augment="strong")


def test_missing_teacher_is_explained_and_nothing_is_written(runs_dir):
    run = Run(RunConfig(**STUDENT, data=str(SHAPES), strategy="distill")).run()
    assert run.status == "failed" and "--teacher-run" in run.error
    run = Run(RunConfig(**STUDENT, data=str(SHAPES), strategy="distill",
                        options={"teacher_run": "20990101-nobody"})).run()
    assert run.status == "failed" and "'20990101-nobody' was not found" in run.error
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


@pytest.fixture(scope="module")
def lesson(tmp_path_factory):
    """(teacher, label-only student, distilled student, images the teacher saw during distillation).

    Why this setting: with clean labels a pretrained student reaches the teacher's accuracy in a few epochs with or
    without one, so there is nothing left to show; a tiny network from random weights learns nothing in a test's
    budget, taught or not. Distillation earns its keep when the labels cannot be trusted: here half the student's
    training labels are wrong (a real situation: labels from a hurried annotator, filenames, web search). The
    teacher, an EfficientNet-Lite0 linear probe at 96 px trained on the correctly labelled copy of the same
    training images (never on the validation images), passes on what it knows through its answers; the student
    trained on the labels alone learns the noise. Both students are the same network at 64 px (a cheaper model
    than the teacher) with the same seed, epochs, batch and learning rate; only the objective differs.
    """
    root = tmp_path_factory.mktemp("lesson")
    clean, noisy = noisy_copy(root / "data")
    runs_dir = str(root / "runs")
    teacher = Run(RunConfig(**TEACHER, data=str(clean), runs_dir=runs_dir)).run()
    labels_only = Run(RunConfig(**STUDENT, data=str(noisy), strategy="full", runs_dir=runs_dir)).run()
    seen = []
    original = Predictor.logits
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(Predictor, "logits", lambda self, images: seen.extend(images) or original(self, images))
        student = Run(RunConfig(**STUDENT, data=str(noisy), strategy="distill",
                                options={**DISTILL, "teacher_run": teacher.id}, runs_dir=runs_dir)).run()
    assert teacher.status == labels_only.status == student.status == "finished", student.error
    return teacher, labels_only, student, seen


def test_distilled_student_beats_the_same_student_trained_on_labels_alone(lesson):
    teacher, labels_only, student, _ = lesson
    assert teacher.summary["val_accuracy"] >= 0.9
    # the teacher agrees with about half the (noisy) training labels: it was not trained on them
    assert 0.35 < student.summary["teacher_train_accuracy"] < 0.65
    assert student.summary["val_accuracy"] > labels_only.summary["val_accuracy"] + 0.1, (
        student.summary["val_accuracy"], labels_only.summary["val_accuracy"])


def test_teacher_answers_are_computed_once_per_training_image_not_per_epoch(lesson):
    _, _, student, seen = lesson
    assert student.summary["epochs_completed"] == STUDENT["epochs"]
    train_images = student.info["num_train"]
    assert len(seen) == len(set(seen)) == train_images == student.summary["teacher_images"]


def test_record_names_the_teacher(lesson):
    teacher, _, student, _ = lesson
    summary = json.loads((student.dir / runs.SUMMARY_FILE).read_text())
    assert summary["teacher"]["run_id"] == teacher.id
    assert summary["teacher"]["val_accuracy"] == teacher.summary["val_accuracy"]
    assert summary["teacher"]["total_params"] == teacher.summary["total_params"]
    assert all(line["distill_kl"] >= 0 for line in runs.read_jsonl(student.dir / runs.METRICS_FILE))


def test_comparison_measures_size_parameters_latency_and_accuracy(lesson):
    teacher, _, student, _ = lesson
    table = distill.teacher_student_comparison(runs.load_run(student.dir))
    assert list(table.index) == ["teacher", "student"]
    for role, run in (("teacher", teacher), ("student", student)):
        row = table.loc[role]
        assert row["size on disk MB"] == round((run.dir / runs.MODEL_FILE).stat().st_size / 2**20, 3)
        assert row["parameters"] == run.summary["total_params"]
        assert row["CPU latency ms"] > 0
    # the student's accuracy re-measured from its saved model is the one its run recorded
    assert table.loc["student", "val accuracy"] == pytest.approx(student.summary["val_accuracy"], abs=1e-4)
    assert list(table["image size"]) == [TEACHER["image_size"], STUDENT["image_size"]]


def test_cli_distill_report_prints_both_models(lesson, capsys):
    _, _, student, _ = lesson
    assert cli.main(["distill-report", "--run", str(student.dir)]) == 0
    out = capsys.readouterr().out
    assert "teacher" in out and "student" in out and "CPU latency ms" in out


def test_model_page_picks_the_teacher_among_finished_runs_on_the_same_classes(lesson, monkeypatch):
    teacher, _, _, _ = lesson
    monkeypatch.setenv(RUNS_DIR_ENV, str(teacher.dir.parent))
    get_registry.clear()
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=60)
    at.session_state[DATASET] = str(SHAPES)
    at.session_state[CHOICES] = {"strategy": "distill", "backbone": "test_resnet"}
    at.switch_page("pages/2_model.py")
    at.run()
    assert not at.exception
    picker = at.selectbox(key="model.teacher_run")
    assert teacher.id in picker.options[0] or picker.value == teacher.id  # the most accurate run comes first
    assert at.session_state[CHOICES]["teacher_run"] == picker.value


def test_train_page_shows_teacher_and_student_side_by_side(lesson, monkeypatch):
    _, _, student, _ = lesson
    at = train_page_showing(student, monkeypatch, timeout=120)
    assert "Teacher and student" in [h.value for h in at.subheader]
    assert any(list(frame.value.index) == ["teacher", "student"] for frame in at.dataframe)
    assert len(at.get("plotly_chart")) == 4  # curves, confusion matrix, learning rate, and the comparison's bars
