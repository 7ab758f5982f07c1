"""A dataset downloaded in the common `train/<class>/` + `test/<class>/` layout, in a real browser: the Data page says
that train/ trains (with validation split off it) and test/ is held out, never reading "train" and "test" as two
classes; a linear probe trains on it and the Train page shows the held-out test accuracy beside validation's.

The server and page helpers are the main browser test's (tests/test_browser.py).
"""

from __future__ import annotations

import re
import shutil
import time
from pathlib import Path

from playwright.sync_api import expect

from .conftest import SHAPES
from .test_browser import (
    BROWSER_MARKS,
    PAGE_S,
    RUN_S,
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

CLASSES = ("circle", "square", "star")
TEST_PER_CLASS = 8

pytestmark = BROWSER_MARKS


def downloaded_layout(folder: Path) -> Path:
    """shapes as a public dataset ships: `download/shapes/train/<class>/` and `download/shapes/test/<class>/`."""
    root = folder / "download" / "shapes"
    for name in CLASSES:
        images = sorted((SHAPES / name).iterdir())
        for split, chosen in (("test", images[:TEST_PER_CLASS]), ("train", images[TEST_PER_CLASS:])):
            (root / split / name).mkdir(parents=True)
            for image in chosen:
                shutil.copy(image, root / split / name / image.name)
    return folder / "download"


def test_a_train_test_download_is_read_as_meant_and_tested_once(server, tmp_path):
    data = downloaded_layout(tmp_path)
    with chromium_page() as page, journey("timings_train_test.json", (page, "failure_train_test.png")) as timings:
        page.goto(server.url)
        heading(page, "1 · Your images").wait_for(timeout=PAGE_S * 1000)
        pick_option(page, "Where do your images come from?", "Folder on this computer")
        box = page.get_by_role("textbox", name=re.compile("^Path of the dataset folder"))
        box.fill(str(data))
        settled(page, lambda: box.press("Enter"))
        page.get_by_text("Dataset in use:").wait_for(timeout=PAGE_S * 1000)
        expect(page.get_by_text("Recognised: 3 classes; train/ used for training, 20% of each class set aside for "
                                "validation, test/ held out for the final test.")).to_be_visible()
        held_out = page.get_by_test_id("stMetric").filter(has_text="Held-out test")
        expect(held_out).to_contain_text(str(TEST_PER_CLASS * len(CLASSES)))
        checked(page, "train_test_01_data.png")

        choose_model(page, "linear_probe", {"Image size (px)": 96, "Epochs": 3})
        ready_to_train(page, "linear_probe").click()
        started = time.monotonic()
        run_heading(page).filter(has_text="— finished").wait_for(timeout=RUN_S * 1000)
        timings["linear_probe_run_s"] = round(time.monotonic() - started, 2)
        wait_until(lambda: confusion_matrices(page), 30, "the confusion matrix")
        for label in ("Validation accuracy", "Test accuracy (held-out)"):
            metric = page.get_by_test_id("stMetric").filter(has_text=label)
            expect(metric).to_contain_text(re.compile(r"\d+(\.\d+)?%"))
        checked(page, "train_test_02_trained.png")
