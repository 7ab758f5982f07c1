"""Lesson 1 in a real browser: a student predicts, starts the experiment, watches the explanation fill in from the
runs, refreshes (the prediction and the lesson are still there), sees the class's predictions revealed beside the
answer and downloads the handout with the runs' numbers in it.

The server and page helpers are the main browser test's (tests/test_browser.py).
"""

from __future__ import annotations

import re
import time

from playwright.sync_api import expect

from workbench.lessons import LESSONS, LessonBook
from workbench.runs.registry import RunRegistry

from .test_browser import BROWSER_MARKS, PAGE_S, checked, chromium_page, heading, journey, open_page, settled

pytestmark = BROWSER_MARKS

LESSON = LESSONS["transfer"]
TITLE = f"L{LESSON.number} · {LESSON.title}"
LESSON_S = 900  # two runs on a shared 2-core CPU: under a minute when idle, over ten at a load average of 14


def test_lesson_one_from_prediction_to_handout(server, tmp_path):
    with chromium_page() as page, journey("timings_lesson.json", (page, "failure_lesson.png")) as timings:
        page.goto(server.url)
        heading(page, "1 · Your images").wait_for(timeout=PAGE_S * 1000)
        open_page(page, TITLE)
        expect(page.get_by_text("predictions recorded so far")).to_be_visible()

        settled(page, page.get_by_text(LESSON.choices["probe"], exact=True).click)
        settled(page, page.get_by_role("button", name="Record my prediction").click)
        expect(page.get_by_text(re.compile(r"You predicted: The pretrained network"))).to_be_visible()
        assert re.search(r"[?&]voter=[0-9a-f]{32}", page.url), page.url
        checked(page, "lesson_01_predicted.png")

        started = time.monotonic()
        settled(page, page.get_by_role("button", name="Run the experiment").click)
        page.get_by_text(re.compile(r"The pretrained features reached \d+%")).wait_for(timeout=LESSON_S * 1000)
        timings["first_explanation_s"] = round(time.monotonic() - started, 1)

        page.reload()  # the lesson and this browser's prediction survive a refresh
        heading(page, TITLE).wait_for(timeout=PAGE_S * 1000)
        page.get_by_text("The runs say:").wait_for(timeout=LESSON_S * 1000)
        timings["lesson_s"] = round(time.monotonic() - started, 1)
        expect(page.get_by_text(re.compile(r"From random weights the same network reached \d+%"))).to_be_visible()
        checked(page, "lesson_02_explained.png")

        results = LessonBook(RunRegistry(server.runs_dir)).results(LESSON.id)
        accuracy = results.run("probe").summary.val_accuracy
        with page.expect_download() as download:
            page.get_by_role("button", name="Handout (Markdown)").click()
        path = tmp_path / download.value.suggested_filename
        download.value.save_as(path)
        handout = path.read_text()
        assert path.name == "lesson-transfer.md"
        assert f"{accuracy:.1%}" in handout and results.run("probe").id in handout
        assert "| The pretrained network (only its last layer learns) | 1 |" in handout
        assert "```python" in handout
