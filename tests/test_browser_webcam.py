"""A dataset from the webcam in a real browser: headless Chromium with its fake camera (a moving test pattern, so
every picture differs) on `streamlit run app.py`. The user names two classes on the Data page, takes three pictures
of each, uses them, sees the health check of the saved folder, and trains a linear probe on them to the end.

The fake camera shows the same pattern for both classes, so the probe's accuracy is not asserted: only that the run
finishes and reports it. The server and page helpers are the main browser test's (tests/test_browser.py).
"""

from __future__ import annotations

import re
import time
from pathlib import Path

from playwright.sync_api import Page, expect

from .test_browser import (
    BROWSER_MARKS,
    CHROMIUM_FLAGS,
    PAGE_S,
    RUN_S,
    Server,
    checked,
    choose_model,
    chromium_page,
    confusion_matrices,
    heading,
    journey,
    pick_option,
    ready_to_train,
    run_heading,
    settled,
    wait_until,
)

# The fake device stands in for a webcam; the fake UI grants the page's camera request without a prompt.
CAMERA_FLAGS = [*CHROMIUM_FLAGS, "--use-fake-device-for-media-stream", "--use-fake-ui-for-media-stream"]
CLASSES = ("thumbs up", "thumbs down")
SHOTS_PER_CLASS = 3
CAMERA_S = 30  # the camera comes back live after each picture: a new stream from the fake device
# The fake camera's pattern starts again with each stream, and the camera restarts after each picture: the n-th
# picture is taken this far into its stream, so no two show the same frame (the page takes about 2 s to come back).
PICTURE_AT_S = 2.0
PICTURE_GAP_S = 0.3  # 6 frames at the fake camera's 20 per second

pytestmark = BROWSER_MARKS


def class_label(page: Page, name: str, pictures: int):
    """The class's button in the row of classes, which shows how many pictures it has."""
    return page.get_by_text(f"{name} · {pictures}", exact=True)


def add_class(page: Page, name: str) -> None:
    page.get_by_role("textbox", name=re.compile(r"^Name a class")).fill(name)
    settled(page, page.get_by_role("button", name="Add class").click)
    class_label(page, name, 0).wait_for(timeout=PAGE_S * 1000)
    expect(page.get_by_text(f"Take a picture of {name}", exact=True)).to_be_visible()


def camera_shows_a_picture(page: Page, played_s: float) -> None:
    """Wait, as a user does, until the camera shows its picture (clicked before its first frame, it takes a black
    picture, which the workbench refuses), and until it has played `played_s` seconds."""
    page.wait_for_function("""played => {
        const video = document.querySelector('[data-testid="stCameraInput"] video');
        return video !== null && video.readyState >= 2 && video.videoWidth > 0 && video.currentTime >= played;
    }""", arg=played_s, timeout=CAMERA_S * 1000)


def take_pictures(page: Page, name: str, count: int, taken_before: int) -> None:
    """Click the camera's Take Photo `count` times; after each, the picture appears among the class's own."""
    for number in range(1, count + 1):
        take = page.get_by_role("button", name="Take Photo")
        expect(take).to_be_enabled(timeout=CAMERA_S * 1000)  # enabled once the camera's stream is open
        camera_shows_a_picture(page, PICTURE_AT_S + PICTURE_GAP_S * (taken_before + number))
        settled(page, take.click)
        class_label(page, name, number).wait_for(timeout=PAGE_S * 1000)
        expect(page.get_by_text(f"{name} · {number} picture{'' if number == 1 else 's'}")).to_be_visible()
    expect(page.get_by_role("button", name="Delete")).to_have_count(count)


def make_a_webcam_dataset(page: Page, server: Server, timings: dict) -> Path:
    """The Data page's webcam source, two classes of pictures used as the dataset; returns the saved folder."""
    page.goto(server.url)
    heading(page, "1 · Your images").wait_for(timeout=PAGE_S * 1000)
    pick_option(page, "Where do your images come from?", "Webcam")
    started = time.monotonic()
    for taken, name in enumerate(CLASSES):
        add_class(page, name)
        take_pictures(page, name, SHOTS_PER_CLASS, taken * SHOTS_PER_CLASS)
    timings["classes_and_pictures_s"] = round(time.monotonic() - started, 2)
    checked(page, "webcam_01_pictures_taken.png")
    settled(page, page.get_by_role("button", name="Use these pictures").click)
    page.get_by_text("Dataset in use:").wait_for(timeout=PAGE_S * 1000)
    expect(page.get_by_role("heading", name="Health check")).to_be_visible()
    saved = list((server.runs_dir.parent / "uploads").glob("webcam-*"))
    assert len(saved) == 1, saved
    files = {p.name: sorted(p.iterdir()) for p in saved[0].iterdir()}
    assert {name: len(shots) for name, shots in files.items()} == dict.fromkeys(CLASSES, SHOTS_PER_CLASS)
    # the fake camera's pattern moves: every picture differs, as a user's would
    assert len({shot.read_bytes() for shots in files.values() for shot in shots}) == SHOTS_PER_CLASS * len(CLASSES)
    expect(page.get_by_text(saved[0].name)).to_be_visible()
    checked(page, "webcam_02_health_check.png")
    return saved[0]


def train_a_probe_on_them(page: Page, timings: dict) -> None:
    choose_model(page, "linear_probe", {"Image size (px)": 96, "Epochs": 2})
    ready_to_train(page, "linear_probe").click()
    started = time.monotonic()
    run_heading(page).filter(has_text="— finished").wait_for(timeout=RUN_S * 1000)
    timings["linear_probe_run_s"] = round(time.monotonic() - started, 2)
    wait_until(lambda: confusion_matrices(page), 30, "the confusion matrix")
    accuracy = page.get_by_test_id("stMetric").filter(has_text="Validation accuracy")
    expect(accuracy).to_contain_text(re.compile(r"\d+(\.\d+)?%"))  # any value: both classes show the same pattern
    checked(page, "webcam_03_trained.png")


def test_a_dataset_from_the_webcam_trains_to_the_end(server):
    with chromium_page(CAMERA_FLAGS) as page, journey("timings_webcam.json", (page, "failure_webcam.png")) as timings:
        make_a_webcam_dataset(page, server, timings)
        train_a_probe_on_them(page, timings)
