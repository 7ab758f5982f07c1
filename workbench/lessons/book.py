"""The lessons' records on disk: the class's predictions and each attempt's runs, one JSON file per lesson under
`<runs>/lessons/`, written atomically. A refresh, a second browser or a restarted server reads the lesson back from
there; the runs themselves stay in the run registry and their own folders.

Nothing a browser sends is trusted: lesson ids, prediction tokens and choices are checked here, and who may see an
attempt follows the runs' own access rule (a student sees their own lesson runs and what the teacher shared).
"""

from __future__ import annotations

import json
import re
import threading
import time
import traceback
from pathlib import Path

from workbench.core.classroom import ME, AccessError, Person
from workbench.core.runfolder import write_json
from workbench.lessons.base import SAMPLE, Attempt, Lesson, Results, new_attempt_id
from workbench.lessons.catalog import LESSONS
from workbench.runs import access
from workbench.runs.registry import RunRegistry

LESSONS_DIR = "lessons"
TOKEN = re.compile(r"[0-9a-f]{32}")
"""A browser's prediction token: `secrets.token_hex(16)`."""
MAX_PREDICTIONS = 1000  # per lesson: a classroom's worth, with room; a flood of made-up tokens stops here
KEEP_ATTEMPTS = 50  # older attempts are dropped from the record (their runs stay on disk)

_lock = threading.Lock()  # one writer of a lesson file at a time in this server
_measuring: set[str] = set()  # attempt ids whose measuring runs now in this process


class LessonError(ValueError):
    """A request about a lesson that cannot be honoured; the message says why and what to do."""


def get_lesson(lesson_id: str) -> Lesson:
    if not isinstance(lesson_id, str) or lesson_id not in LESSONS:
        raise LessonError(f"There is no lesson '{lesson_id}'. The lessons are: {', '.join(LESSONS)}.")
    return LESSONS[lesson_id]


def check_token(token: str) -> str:
    if not isinstance(token, str) or not TOKEN.fullmatch(token):
        raise LessonError("This browser's prediction token is not one the workbench gave out; reload the page to "
                          "get a new one.")
    return token


class LessonBook:
    """The lessons of one run registry: predictions, attempts, and the step that keeps an attempt going."""

    def __init__(self, registry: RunRegistry):
        self.registry = registry

    @property
    def folder(self) -> Path:
        return self.registry.runs_dir / LESSONS_DIR

    def _path(self, lesson_id: str) -> Path:
        return self.folder / f"{get_lesson(lesson_id).id}.json"

    def _read(self, lesson_id: str) -> dict:
        path = self._path(lesson_id)
        try:
            book = json.loads(path.read_text())
        except (OSError, json.JSONDecodeError):
            book = {}
        book.setdefault("lesson", lesson_id)
        book.setdefault("predictions", {})
        book.setdefault("attempts", [])
        return book

    def _write(self, lesson_id: str, book: dict) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        book["attempts"] = book["attempts"][-KEEP_ATTEMPTS:]
        write_json(self._path(lesson_id), book)

    # -- predictions ----------------------------------------------------------------------------------------------
    def predict(self, lesson_id: str, token: str, choice: str, viewer: Person = ME) -> None:
        """Record this browser's prediction (a second one replaces its first). LessonError for an unknown lesson, a
        token not made by the workbench, a choice the lesson does not offer, or while the viewer's lesson runs."""
        lesson = get_lesson(lesson_id)
        check_token(token)
        if not isinstance(choice, str) or choice not in lesson.choices:
            raise LessonError(f"'{choice}' is not one of this lesson's predictions ({', '.join(lesson.choices)}).")
        attempt = self.attempt(lesson_id, viewer)
        if attempt is not None and attempt.finished is None:
            raise LessonError("The experiment is already running: predictions close when it starts. Make yours "
                              "before the next run.")
        with _lock:
            book = self._read(lesson_id)
            if token not in book["predictions"] and len(book["predictions"]) >= MAX_PREDICTIONS:
                raise LessonError(f"This lesson already holds {MAX_PREDICTIONS} predictions; the teacher can clear "
                                  "them to start a new round.")
            book["predictions"][token] = {"choice": choice, "at": time.time(),
                                          "name": viewer.name if viewer is not ME else None}
            self._write(lesson_id, book)

    def prediction(self, lesson_id: str, token: str) -> str | None:
        """What this browser predicted (None: nothing yet)."""
        check_token(token)
        entry = self._read(get_lesson(lesson_id).id)["predictions"].get(token)
        return entry["choice"] if entry else None

    def tally(self, lesson_id: str) -> dict[str, int]:
        """choice -> how many browsers predicted it, in the lesson's order of choices."""
        lesson = get_lesson(lesson_id)
        counts = dict.fromkeys(lesson.choices, 0)
        for entry in self._read(lesson.id)["predictions"].values():
            if entry.get("choice") in counts:
                counts[entry["choice"]] += 1
        return counts

    def clear_predictions(self, lesson_id: str, viewer: Person = ME) -> None:
        """A new round: the teacher forgets every prediction of the lesson."""
        if not viewer.is_teacher:
            raise AccessError("Only the teacher can clear the class's predictions.")
        with _lock:
            book = self._read(get_lesson(lesson_id).id)
            book["predictions"] = {}
            self._write(lesson_id, book)

    # -- attempts -------------------------------------------------------------------------------------------------
    def start(self, lesson_id: str, data: str, viewer: Person = ME) -> Attempt:
        """Queue the lesson's first runs on `data` as `viewer`'s (the sample data for a lesson that needs it).
        LessonError when the lesson cannot run here; the registry's ValueError or AccessError when a run cannot be
        queued (bad data, the class's limits)."""
        lesson = get_lesson(lesson_id)
        why_not = lesson.unavailable()
        if why_not:
            raise LessonError(why_not)
        attempt = Attempt(id=new_attempt_id(), owner=None if viewer is ME else viewer.name,
                          data=str(data) if lesson.own_data else str(SAMPLE), started=time.time())
        try:
            self._queue(lesson, attempt, Results(attempt), viewer)
        finally:  # runs queued before a refusal (the class's limit reached mid-way) still belong to the lesson
            if attempt.runs:
                with _lock:
                    book = self._read(lesson.id)
                    book["attempts"].append(attempt.to_dict())
                    self._write(lesson.id, book)
        return attempt

    def _queue(self, lesson: Lesson, attempt: Attempt, results: Results, owner: Person) -> bool:
        """Submit the runs the lesson asks for now that are not queued yet; whether any was."""
        folder = self.attempt_folder(lesson, attempt)
        folder.mkdir(parents=True, exist_ok=True)
        wanted = {role: config for role, config in lesson.plan(attempt.data, results, folder).items()
                  if role not in attempt.runs}
        queued = False
        for role, config in wanted.items():
            try:
                attempt.runs[role] = self.registry.submit(config, owner).id
            except AccessError:
                if queued:  # the class's limit on runs at once: the rest are queued as these end
                    break
                raise
            queued = True
        return queued

    def attempt_folder(self, lesson: Lesson, attempt: Attempt) -> Path:
        """Where an attempt keeps what its runs read and what its measuring draws."""
        return self.folder / f"{lesson.id}-{attempt.id}"

    def attempts(self, lesson_id: str) -> list[Attempt]:
        """Every attempt kept, oldest first."""
        return [Attempt.from_dict(a) for a in self._read(get_lesson(lesson_id).id)["attempts"]]

    def attempt(self, lesson_id: str, viewer: Person = ME) -> Attempt | None:
        """The attempt this viewer's lesson screen shows: their own newest (the teacher's: anyone's newest), else the
        newest whose runs they may all see (the teacher shared them)."""
        attempts = list(reversed(self.attempts(lesson_id)))
        own = next((a for a in attempts if access.may_change(viewer, a.owner)), None)
        if own is not None:
            return own
        return next((a for a in attempts if a.runs and all(self.registry.view(run_id, viewer) is not None
                                                           for run_id in a.runs.values())), None)

    def results(self, lesson_id: str, viewer: Person = ME) -> Results:
        """The viewer's attempt with its runs as they are now (live ones from memory, ended ones from disk)."""
        attempt = self.attempt(lesson_id, viewer)
        results = Results(attempt)
        for role, run_id in (attempt.runs if attempt else {}).items():
            view = self.registry.view(run_id, viewer)
            if view is not None:
                results.records[role], results.statuses[role] = view.record, view.status
        return results

    def advance(self, lesson_id: str, viewer: Person = ME, background: bool = True) -> Results:
        """Keep the viewer's attempt going and return its results: once its runs have ended, queue the runs that
        needed them, then measure (in a background thread, or here with background=False), then note when it all
        ended. Only the attempt's owner or the teacher moves it on; anyone who may see it just reads it."""
        lesson = get_lesson(lesson_id)
        results = self.results(lesson_id, viewer)
        attempt = results.attempt
        if attempt is None or attempt.finished is not None or not results.runs_ended:
            return results
        if not access.may_change(viewer, attempt.owner):
            return results
        with _lock:  # two browsers polling the same attempt must not queue its next runs twice
            stored = self._stored(lesson.id, attempt.id)
            if stored is None or stored.finished is not None or stored.runs != attempt.runs:
                return self.results(lesson_id, viewer)
            owner = viewer if viewer.name == attempt.owner or attempt.owner is None else Person(attempt.owner)
            try:
                queued = self._queue(lesson, stored, results, owner)
            except AccessError:  # the class's limit on runs at once: the next look tries again
                return results
            except ValueError as error:  # a run the lesson wants cannot run here: say why, and end
                stored.measured, stored.finished = {"error": str(error)}, time.time()
                queued = True
            if queued:
                self._replace(lesson.id, stored)
                return self.results(lesson_id, viewer)
            if not lesson.measures() or stored.measured is not None:
                stored.finished = time.time()
                self._replace(lesson.id, stored)
                return self.results(lesson_id, viewer)
            if stored.id in _measuring:
                return results
            _measuring.add(stored.id)
        if background:
            threading.Thread(target=self._measure, args=(lesson, stored.id, results), daemon=True,
                             name=f"lesson-{lesson.id}-measure").start()
            return results
        self._measure(lesson, stored.id, results)
        return self.results(lesson_id, viewer)

    def _measure(self, lesson: Lesson, attempt_id: str, results: Results) -> None:
        try:
            measured = lesson.measure(results, self.attempt_folder(lesson, results.attempt))
        except Exception as error:  # noqa: BLE001 - the lesson screen says what went wrong; the server keeps going
            traceback.print_exc()
            measured = {"error": f"{type(error).__name__}: {error}"}
        with _lock:
            stored = self._stored(lesson.id, attempt_id)
            if stored is not None:
                stored.measured, stored.finished = measured, time.time()
                self._replace(lesson.id, stored)
            _measuring.discard(attempt_id)

    def _stored(self, lesson_id: str, attempt_id: str) -> Attempt | None:
        return next((a for a in self.attempts(lesson_id) if a.id == attempt_id), None)

    def _replace(self, lesson_id: str, attempt: Attempt) -> None:
        book = self._read(lesson_id)
        book["attempts"] = [attempt.to_dict() if a["id"] == attempt.id else a for a in book["attempts"]]
        self._write(lesson_id, book)

    def durations(self, lesson_id: str) -> list[float]:
        """How long each completed attempt took, oldest first: what this machine really needs for the lesson."""
        return [a.seconds for a in self.attempts(lesson_id) if a.seconds is not None]

    def measuring(self, attempt: Attempt | None) -> bool:
        return attempt is not None and attempt.id in _measuring
