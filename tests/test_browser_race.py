"""A backbone race in a real browser: on the sample data, the Compare page races the three bundled EfficientNet-Lite
backbones with one click (linear probe, few epochs, small images, to stay cheap), then shows accuracy against
latency with the Pareto front named in the legend, the trade-off table and one sentence of advice.

The server and page helpers are the main browser test's (tests/test_browser.py).
"""

from __future__ import annotations

import contextlib
import re
import time

from playwright.sync_api import Error as PlaywrightError
from playwright.sync_api import Page, expect

from workbench.deploy.tradeoff import FRONT_NAME
from workbench.models.backbones import BUNDLED_WEIGHTS

from .test_browser import (
    BROWSER_MARKS,
    PAGE_S,
    RUN_S,
    checked,
    chromium_page,
    figures,
    journey,
    open_page,
    set_number,
    use_sample_data,
    wait_until,
)

pytestmark = BROWSER_MARKS
PICTURE = "Accuracy against speed on this computer"


def drawn(page: Page, title: str) -> dict | None:
    """The chart whose title holds `title` (Streamlit wraps titles in <b>), once drawn; the picture's section is
    scrolled into view first, as a user would."""
    section = page.get_by_text("Accuracy against cost")
    with contextlib.suppress(PlaywrightError):  # the section is redrawn every few seconds while runs train
        section.first.scroll_into_view_if_needed(timeout=2000)
    return next((figure for figure in figures(page) if title in figure["title"]), None)


def test_a_backbone_race_from_one_click_ends_in_the_trade_off_picture(server):
    with chromium_page() as page, journey("timings_backbone_race.json", (page, "failure_backbone_race.png")) as timings:
        use_sample_data(page, server.url)
        open_page(page, "4 · Compare")
        page.get_by_role("heading", name=re.compile("^Backbone race")).wait_for(timeout=PAGE_S * 1000)
        chosen = page.get_by_test_id("stMultiSelect").filter(has_text="Backbones").inner_text()
        assert all(name in chosen for name in BUNDLED_WEIGHTS), chosen  # the bundled three, ready to race
        set_number(page, "Epochs per run", 3)
        set_number(page, "Image size per run (px; 0: each backbone's own)", 64)
        page.get_by_role("button", name="Start the backbone race").click()
        started = time.monotonic()
        picture = wait_until(lambda: drawn(page, PICTURE), RUN_S * 3,
                             "the trade-off picture, measured once the three runs ended")
        timings["race_to_picture_s"] = round(time.monotonic() - started, 2)
        names = {trace["name"] for trace in picture["traces"]}
        assert set(BUNDLED_WEIGHTS) | {FRONT_NAME} <= names, names
        expect(page.get_by_text(re.compile(r"^For this computer, tf_efficientnet_lite\d"))).to_be_visible()
        table = page.get_by_test_id("stDataFrame").filter(has_text="Pareto front")
        expect(table).to_be_visible()
        checked(page, "backbone_race.png")
