"""Lessons: the explanation is written from the runs' own numbers, predictions are checked, kept and revealed, the
handout carries the class's figures and a script that runs, and a lesson page goes from the prediction to the
explanation (streamlit.testing.v1.AppTest)."""

from __future__ import annotations

import json
import os
import re
import secrets
import subprocess
import sys
import time
from types import SimpleNamespace

import pytest
from streamlit.testing.v1 import AppTest

from ui_common import get_registry
from ui_lessons import lesson_book
from workbench import runs
from workbench.core.classroom import AccessError, Person
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.lessons import LESSONS, Attempt, LessonBook, LessonError, make_handout
from workbench.lessons import transfer as transfer_lesson
from workbench.lessons.book import LESSONS_DIR
from workbench.runs.registry import RunRegistry

from .conftest import REPO, SHAPES

CLASSES = ["circle", "cross", "square", "star", "triangle"]
TIMEOUT = 120


def fake_run(runs_dir, run_id: str, strategy: str, accuracies: list[float], seconds: float | None = None,
             owner: str | None = None, epochs: int = 5) -> None:
    """A run folder as the engine writes it, with known numbers: one metrics line per accuracy; a summary (the run
    ended) when `seconds` is given."""
    folder = runs_dir / run_id
    folder.mkdir(parents=True)
    runs.write_json(folder / runs.CONFIG_FILE, {
        "data": str(SHAPES), "backbone": "tf_efficientnet_lite0", "strategy": strategy, "epochs": epochs,
        "image_size": 96, "class_names": CLASSES, "trainable_params": 6405, "total_params": 3377285,
        **({"owner": owner} if owner else {})})
    for epoch, value in enumerate(accuracies, start=1):
        runs.append_jsonl(folder / runs.METRICS_FILE, {"epoch": epoch, "val_acc": value, "seconds": 2.0,
                                                       "train_loss": 1.0, "val_loss": 1.0, "train_acc": value})
    if seconds is not None:
        runs.write_json(folder / runs.SUMMARY_FILE, {"status": "finished", "val_accuracy": accuracies[-1],
                                                     "train_seconds": seconds, "class_names": CLASSES})


def fake_attempt(runs_dir, lesson_id: str, roles: dict[str, str], owner: str | None = None) -> Attempt:
    """The lesson's record on disk with one attempt made of existing runs."""
    attempt = Attempt(id=f"a{secrets.token_hex(3)}", owner=owner, data=str(SHAPES), started=time.time() - 60,
                      runs=roles)
    path = runs_dir / LESSONS_DIR / f"{lesson_id}.json"
    path.parent.mkdir(parents=True, exist_ok=True)
    book = json.loads(path.read_text()) if path.exists() else {"lesson": lesson_id, "predictions": {}, "attempts": []}
    book["attempts"].append(attempt.to_dict())
    runs.write_json(path, book)
    return attempt


@pytest.fixture
def book(runs_dir) -> LessonBook:
    return LessonBook(RunRegistry(runs_dir))


def test_every_lesson_is_complete_and_links_somewhere():
    assert [lesson.number for lesson in LESSONS.values()] == [1, 2, 3, 4, 5, 6, 7]
    for lesson in LESSONS.values():
        assert lesson.question and len(lesson.choices) >= 2 and 2 <= len(lesson.prompts) <= 3
        assert lesson.deeper[0] in ("compare", "model", "train", "insight", "compress", "few-shot")


# -------------------------------------------------------------------------------------------------------------------
# The explanation is the runs' numbers


def test_the_explanation_quotes_the_runs_numbers_and_follows_them(book, runs_dir):
    fake_run(runs_dir, "probe-run", "linear_probe", [0.70, 0.87], seconds=10.4, epochs=2)
    fake_run(runs_dir, "scratch-run", "scratch", [0.20, 0.22, 0.23])  # still at epoch 3 of 5: no summary
    fake_attempt(runs_dir, "transfer", {"probe": "probe-run", "scratch": "scratch-run"})
    text = "\n".join(LESSONS["transfer"].explain(book.results("transfer")))
    assert "reached **87%** validation accuracy after all 2 epochs, in 10 s of training" in text
    assert "**23%** validation accuracy interrupted after 3 epochs" in text  # no live marker: the process is gone
    assert "Guessing would be right 20% of the time with 5 classes" in text
    assert "6,405 of 3,377,285 parameters" in text

    runs.write_json(runs_dir / "probe-run" / runs.SUMMARY_FILE, {"status": "finished", "val_accuracy": 0.61,
                                                                 "train_seconds": 130.0, "class_names": CLASSES})
    changed = "\n".join(LESSONS["transfer"].explain(book.results("transfer")))
    assert "reached **61%** validation accuracy" in changed and "2 min 10 s" in changed
    assert "87%" not in changed


def test_the_answer_is_revealed_only_when_the_runs_are_in_and_follows_them(book, runs_dir):
    fake_run(runs_dir, "probe-run", "linear_probe", [0.9], seconds=5.0, epochs=1)
    fake_run(runs_dir, "scratch-run", "scratch", [0.2], seconds=50.0, epochs=1)
    fake_attempt(runs_dir, "transfer", {"probe": "probe-run", "scratch": "scratch-run"})
    lesson = LESSONS["transfer"]
    assert lesson.winner(book.results("transfer")) == "probe"
    results = book.advance("transfer")  # both ended and nothing is left to queue or measure: complete
    assert results.complete and book.durations("transfer") == [results.attempt.seconds]
    assert "**Transfer won by 70 points.**" in lesson.explain(results)
    runs.write_json(runs_dir / "scratch-run" / runs.SUMMARY_FILE, {"status": "finished", "val_accuracy": 0.88,
                                                                   "train_seconds": 50.0, "class_names": CLASSES})
    results = book.results("transfer")
    assert lesson.winner(results) == "tie" and "**A tie: the two ended 2 points apart.**" in lesson.explain(results)


def test_the_freeze_lesson_picks_the_most_frozen_of_the_best(book, runs_dir):
    for depth, accuracy, seconds in ((0, 0.95, 60.0), (5, 0.96, 40.0), (8, 0.80, 20.0)):
        fake_run(runs_dir, f"depth{depth}", "partial", [accuracy], seconds=seconds, epochs=1)
    fake_attempt(runs_dir, "freezing", {f"depth-{d}": f"depth{d}" for d in (0, 5, 8)})
    results = book.results("freezing")
    assert LESSONS["freezing"].winner(results) == "some"
    text = "\n".join(LESSONS["freezing"].explain(results))
    assert "**5 groups frozen** (0.2% of the parameters learning): 96% after all 1 epoch, 40 s of training." in text
    assert "**Best accuracy: 96% with 5 groups frozen, in 40 s.**" in text


# -------------------------------------------------------------------------------------------------------------------
# Predictions


def test_a_prediction_is_kept_per_browser_tallied_and_checked(book):
    first, second = secrets.token_hex(16), secrets.token_hex(16)
    book.predict("transfer", first, "scratch")
    book.predict("transfer", first, "probe")  # changing one's mind replaces the first answer
    book.predict("transfer", second, "probe")
    assert book.prediction("transfer", first) == "probe"
    assert book.tally("transfer") == {"probe": 2, "scratch": 0, "tie": 0}
    assert LessonBook(book.registry).prediction("transfer", second) == "probe"  # on disk: a restart keeps it
    for lesson_id, token, choice in (("transfer", "../../etc", "probe"), ("transfer", "ABC", "probe"),
                                     ("transfer", first, "everything"), ("../transfer", first, "probe"),
                                     ("transfer", first, ["probe"])):
        with pytest.raises(LessonError):
            book.predict(lesson_id, token, choice)
    assert book.tally("transfer") == {"probe": 2, "scratch": 0, "tie": 0}
    with pytest.raises(AccessError):
        book.clear_predictions("transfer", Person("ada"))
    book.clear_predictions("transfer")
    assert sum(book.tally("transfer").values()) == 0


def test_predictions_close_while_the_experiment_runs(book, runs_dir):
    fake_run(runs_dir, "probe-run", "linear_probe", [0.9], seconds=5.0, epochs=1)
    fake_run(runs_dir, "scratch-run", "scratch", [0.2], seconds=9.0, epochs=1)
    # runs ended, but the attempt is not marked finished until the lesson has looked at them
    fake_attempt(runs_dir, "transfer", {"probe": "probe-run", "scratch": "scratch-run"})
    with pytest.raises(LessonError, match="predictions close"):
        book.predict("transfer", secrets.token_hex(16), "probe")
    book.advance("transfer")
    book.predict("transfer", secrets.token_hex(16), "probe")  # ended: open again for the next round
    assert book.tally("transfer")["probe"] == 1


def test_a_student_sees_their_own_lesson_runs_not_another_students(book, runs_dir):
    fake_run(runs_dir, "ada-probe", "linear_probe", [0.9], seconds=5.0, owner="ada")
    fake_attempt(runs_dir, "transfer", {"probe": "ada-probe"}, owner="ada")
    assert book.attempt("transfer", Person("ada")) is not None
    assert book.attempt("transfer", Person("bob")) is None
    assert book.attempt("transfer", Person("teacher", "teacher")) is not None


class LimitedRegistry(RunRegistry):
    """A registry that queues nothing for real and refuses runs beyond `allowed`, like a classroom's limit."""

    def __init__(self, runs_dir, allowed: int):
        super().__init__(runs_dir)
        self.allowed, self.queued = allowed, []

    def submit(self, config, owner=None):
        if len(self.queued) >= self.allowed:
            raise AccessError("You already have as many runs queued or training as the class allows.")
        self.queued.append((config, owner))
        return SimpleNamespace(id=f"run-{len(self.queued)}")


def test_a_students_lesson_is_theirs_and_queues_the_rest_as_the_class_limit_allows(runs_dir):
    registry = LimitedRegistry(runs_dir, allowed=2)
    book, ada = LessonBook(registry), Person("ada")
    attempt = book.start("freezing", str(SHAPES), ada)
    assert attempt.owner == "ada" and list(attempt.runs) == ["depth-0", "depth-5"]
    assert all(owner is ada for _, owner in registry.queued)
    for number in (1, 2):
        fake_run(runs_dir, f"run-{number}", "partial", [0.9], seconds=5.0, owner="ada", epochs=1)
    assert book.advance("freezing", Person("bob")).attempt is None  # another student sees nothing of it
    assert not book.advance("freezing", ada).complete  # the limit still holds: nothing more queued, nothing lost
    registry.allowed = 3
    results = book.advance("freezing", ada)
    assert list(results.attempt.runs) == ["depth-0", "depth-5", "depth-8"]
    assert registry.queued[-1][0].freeze_depth == 8


# -------------------------------------------------------------------------------------------------------------------
# The handout


@pytest.fixture(scope="module")
def probe_run(tmp_path_factory) -> Run:
    """A real linear probe of the bundled EfficientNet-Lite0, tiny: the handout's script is written from it."""
    folder = tmp_path_factory.mktemp("lesson-probe")
    run = Run(RunConfig(data=str(SHAPES), strategy="linear_probe", image_size=64, epochs=2,
                        runs_dir=str(folder / "runs"))).run()
    assert run.status == "finished", run.error
    return run


def test_the_handout_has_the_class_numbers_and_a_script_that_runs(runs_dir, probe_run, tmp_path):
    book = LessonBook(RunRegistry(probe_run.dir.parent))
    fake_run(probe_run.dir.parent, f"scratch-{secrets.token_hex(2)}", "scratch", [0.21], seconds=44.0)
    scratch_id = next(p.name for p in probe_run.dir.parent.iterdir() if p.name.startswith("scratch-"))
    fake_attempt(probe_run.dir.parent, "transfer", {"probe": probe_run.id, "scratch": scratch_id})
    book.advance("transfer")  # the runs have ended: the lesson is complete, and predictions are open again
    book.predict("transfer", secrets.token_hex(16), "scratch")
    results = book.results("transfer")
    handout = make_handout(LESSONS["transfer"], results, book.tally("transfer"))
    accuracy = probe_run.summary["val_accuracy"]
    markdown, page = handout.markdown(), handout.html()
    for text in (markdown, page):
        assert f"{accuracy:.1%}" in text and f"{accuracy:.0%}" in text  # the table's and the explanation's
        assert "21.0%" in text and probe_run.id in text
        assert "What the runs showed" in text and "It took" in text
    assert "| The network from random weights (every layer learns) | 1 |" in markdown
    assert page.startswith("<!DOCTYPE html>") and "<strong>" in page and "**" not in page
    script = re.search(r"```python\n(.*?)```", markdown, re.S).group(1)
    path = tmp_path / "handout_script.py"
    path.write_text(script)
    env = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    done = subprocess.run([sys.executable, str(path)], cwd=tmp_path, env=env, capture_output=True, text=True,
                          timeout=300)
    assert done.returncode == 0, done.stderr[-3000:]
    assert "final validation accuracy" in done.stdout


# -------------------------------------------------------------------------------------------------------------------
# A lesson page, driven like a user would


LESSON_APP = f"""
import functools
import sys

import streamlit as st

sys.path.insert(0, {str(REPO)!r})
import ui_lessons

lesson = st.Page(functools.partial(ui_lessons.lesson_page, "transfer"), title="L1", url_path="lesson-transfer",
                 default=True)
st.navigation([lesson, *(st.Page(path) for path in ui_lessons.PAGE_FILES.values())]).run()
"""


def lesson_app(folder) -> AppTest:
    """The lesson page as app.py's navigation holds it, beside the pages it links to (a link to the real pages/)."""
    (folder / "pages").symlink_to(REPO / "pages")
    (folder / "lesson_app.py").write_text(LESSON_APP)
    return AppTest.from_file(str(folder / "lesson_app.py"), default_timeout=TIMEOUT)


def _texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "success", "warning", "error", "subheader")
    return "\n".join(str(element.value) for kind in kinds for element in at.get(kind))


def test_a_lesson_page_from_prediction_to_explanation(runs_dir, monkeypatch, tmp_path):
    # the lesson's own budget, shrunk: a tiny random network, one epoch, 32 px
    monkeypatch.setattr(transfer_lesson, "BACKBONE", "test_resnet")
    monkeypatch.setattr(transfer_lesson, "EPOCHS", 1)
    monkeypatch.setattr(transfer_lesson, "IMAGE_SIZE", 32)
    get_registry.clear()
    lesson_book.clear()
    at = lesson_app(tmp_path).run()
    assert not at.exception
    assert "0 predictions recorded so far" in _texts(at)
    at.radio(key="transfer.choice").set_value("scratch")
    at.button[0].click().run()  # the form's submit button
    assert "You predicted: **The network from random weights (every layer learns)**" in _texts(at)
    token = at.query_params["voter"][0] if isinstance(at.query_params["voter"], list) else at.query_params["voter"]
    assert lesson_book().prediction("transfer", token) == "scratch"

    at.button(key="transfer.start").click().run()
    assert not at.exception
    registry = get_registry()
    for run in registry.runs():
        assert run.wait(TIMEOUT), run.status
    assert {run.config.strategy for run in registry.runs()} == {"linear_probe", "scratch"}
    at.run()
    text = _texts(at)
    assert not at.exception
    results = lesson_book().results("transfer")
    probe = results.run("probe")
    assert f"reached **{probe.summary.val_accuracy:.0%}** validation accuracy after all 1 epoch" in text
    assert "The runs say:" in text  # revealed
    assert at.dataframe  # the class's tally
    get_registry.clear()
    lesson_book.clear()


def test_the_command_line_runs_a_lesson_and_writes_its_handout(tmp_path, monkeypatch, capsys):
    from workbench.cli import main

    monkeypatch.setattr(transfer_lesson, "BACKBONE", "test_resnet")
    monkeypatch.setattr(transfer_lesson, "EPOCHS", 1)
    monkeypatch.setattr(transfer_lesson, "IMAGE_SIZE", 32)
    assert main(["lesson"]) == 0
    assert "transfer   L1 · What transfer buys" in capsys.readouterr().out
    handout = tmp_path / "handout.md"
    assert main(["lesson", "--id", "transfer", "--data", str(SHAPES), "--runs-dir", str(tmp_path / "runs"),
                 "--handout", str(handout)]) == 0
    out = capsys.readouterr().out
    results = LessonBook(RunRegistry(tmp_path / "runs")).results("transfer")
    probe = results.run("probe").summary.val_accuracy
    assert f"reached {probe:.0%} validation accuracy" in out  # the explanation, from the run's own record
    assert "Answer: " in out and f"{probe:.0%}" in handout.read_text()
    assert main(["lesson", "--id", "nope"]) == 2
