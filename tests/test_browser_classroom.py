"""A classroom server in a real browser: `WORKBENCH_CLASSROOM=classroom.toml streamlit run app.py`, three people in
three browser contexts (the teacher and two students, each signed in with their access code).

Ada trains on a folder under the class's data root, after a folder outside it is refused. Bob does not see her run
on Compare, and opening it by its URL shows nothing of it. The teacher sees it and shares it, and then Bob sees it.
Bob starts a long run; the teacher opens it and stops it.

The server and page helpers are the main browser test's (tests/test_browser.py).
"""

from __future__ import annotations

import contextlib
import re
import time
from collections.abc import Iterator
from pathlib import Path

import pytest
from playwright.sync_api import Page, expect

from .test_browser import (
    BACKBONE,
    BROWSER_MARKS,
    PAGE_S,
    RUN_S,
    Server,
    checked,
    choose_model,
    chromium_page,
    heading,
    journey,
    logged_server,
    open_page,
    pick_option,
    ready_to_train,
    run_heading,
    run_id_in_url,
    second_user,
    settled,
)
from .test_faults import copy_tiny_shapes

CODES = {"teacher": "owl-1", "ada": "maple-7", "bob": "birch-3"}

pytestmark = BROWSER_MARKS


@pytest.fixture(scope="module")
def classroom(tmp_path_factory) -> Iterator[tuple[Server, Path]]:
    folder = tmp_path_factory.mktemp("classroom")
    data_root = folder / "class-data"
    copy_tiny_shapes(data_root / "shapes")
    people = "\n".join(f'[[people]]\nname = "{name}"\nrole = "{"teacher" if name == "teacher" else "student"}"\n'
                       f'code = "{code}"' for name, code in CODES.items())
    toml = folder / "classroom.toml"
    toml.write_text(f'data_roots = ["{data_root}"]\n[limits]\nqueued_runs = 2\n{people}\n')
    with logged_server(folder, {"WORKBENCH_CLASSROOM": str(toml)}) as running:
        yield running, data_root


@contextlib.contextmanager
def three_browsers() -> Iterator[dict[str, Page]]:
    """One browser, a context (its own cookies, hence its own Streamlit session) per person."""
    with chromium_page() as first:
        yield {name: first if i == 0 else second_user(first) for i, name in enumerate(CODES)}


def sign_in(page: Page, url: str, name: str, title: str = "1 · Your images") -> None:
    """Open `url` (a new browser session: it asks for the code first) and sign in as `name`."""
    page.goto(url)
    code = page.get_by_label("Access code")
    code.wait_for(timeout=PAGE_S * 1000)
    code.fill(CODES[name])
    settled(page, page.get_by_role("button", name="Sign in").click)
    heading(page, title).wait_for(timeout=PAGE_S * 1000)
    expect(page.get_by_test_id("stSidebar")).to_contain_text(f"Signed in as {name}")


def failure_shots(people: dict[str, Page]) -> list[tuple[Page, str]]:
    return [(page, f"failure_classroom_{name}.png") for name, page in people.items()]


def use_folder(page: Page, path: str) -> None:
    pick_option(page, "Where do your images come from?", "Folder on this computer")
    box = page.get_by_role("textbox", name=re.compile("^Path of the dataset folder"))
    box.fill(path)
    settled(page, lambda: box.press("Enter"))


def compare_lists(page: Page, strategy: str | None) -> None:
    """The Compare page lists a run of `strategy` (None: lists no run at all)."""
    open_page(page, "4 · Compare")
    if strategy is None:
        page.get_by_text("No runs yet.").wait_for(timeout=PAGE_S * 1000)
    else:
        expect(page.get_by_test_id("stDataFrame").first).to_contain_text(strategy, timeout=PAGE_S * 1000)


def test_each_person_sees_their_own_runs_and_the_shared_ones_and_the_teacher_stops_a_students_run(classroom):
    server, data_root = classroom
    with three_browsers() as people, journey("timings_classroom.json", *failure_shots(people)) as timings:
        ada, bob, teacher = people["ada"], people["bob"], people["teacher"]
        ada.goto(server.url)
        ada.get_by_label("Access code").fill("Maple-7")  # codes are case sensitive
        settled(ada, ada.get_by_role("button", name="Sign in").click)
        expect(ada.get_by_text("That access code is not one of this class's")).to_be_visible()
        expect(heading(ada, "1 · Your images")).to_have_count(0)
        for name, page in people.items():
            sign_in(page, server.url, name)

        use_folder(ada, "/etc")
        expect(ada.get_by_text("'/etc' is outside the folders this class may read")).to_be_visible()
        use_folder(ada, str(data_root / "shapes"))
        ada.get_by_text("Dataset in use:").wait_for(timeout=PAGE_S * 1000)
        choose_model(ada, "linear_probe", {"Image size (px)": 64, "Epochs": 2})
        ready_to_train(ada, "linear_probe").click()
        started = time.monotonic()
        run_heading(ada).filter(has_text="— finished").wait_for(timeout=RUN_S * 1000)
        timings["student_probe_s"] = round(time.monotonic() - started, 2)
        adas_run = run_id_in_url(ada)
        checked(ada, "classroom_01_ada_trained.png")

        compare_lists(bob, None)
        sign_in(bob, f"{server.url}/train?run={adas_run}", "bob", "3 · Train")
        expect(bob.get_by_text(f"There is no run {adas_run} that you can open")).to_be_visible(timeout=PAGE_S * 1000)
        checked(bob, "classroom_02_bob_cannot_open.png")

        compare_lists(teacher, "linear_probe")
        teacher.get_by_text("Delete runs or share them with the class").click()
        settled(teacher, teacher.get_by_role("button", name="Share with the class").click)
        expect(teacher.get_by_text("Shared: every student can open it.")).to_be_visible()
        compare_lists(bob, "linear_probe")

        bob.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=re.compile("1 · Data")).click()
        heading(bob, "1 · Your images").wait_for(timeout=PAGE_S * 1000)
        use_folder(bob, str(data_root / "shapes"))
        bob.get_by_text("Dataset in use:").wait_for(timeout=PAGE_S * 1000)
        choose_model(bob, "full", {"Image size (px)": 64, "Epochs": 200})
        ready_to_train(bob, "full").click()
        run_heading(bob).filter(has_text="— running").wait_for(timeout=RUN_S * 1000)
        bobs_run = run_id_in_url(bob)
        sign_in(teacher, f"{server.url}/train?run={bobs_run}", "teacher", "3 · Train")
        stop = teacher.get_by_role("button", name="Stop", exact=True)
        stop.wait_for(timeout=PAGE_S * 1000)
        stop.click()
        run_heading(teacher).filter(has_text="— stopped").wait_for(timeout=RUN_S * 1000)
        checked(teacher, "classroom_03_teacher_stopped_bobs_run.png")
        assert BACKBONE  # the students trained the bundled pretrained backbone (choose_model picks it)
