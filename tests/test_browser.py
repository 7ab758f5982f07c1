"""The main journey in a real browser: `streamlit run app.py`, driven by clicks in headless Chromium (Playwright).

A new user opens the app, picks the sample data and a strategy, clicks Train and watches a linear probe of the
bundled EfficientNet-Lite0 finish with its loss curves and confusion matrix; then starts a longer fine-tune, refreshes
the browser mid-run (the page re-attaches to the live run), stops it, and finds both runs on Compare. Every page is
checked for Streamlit's exception box and saved as a screenshot under artifacts/browser/ (git ignores artifacts/);
the measured times go to artifacts/timings.json. A second test puts two users (two browser sessions) on the same
server: the second user's run queues behind the first, and Stop stops only the run it belongs to. A third opens a
finished run's confusion cell and Grad-CAM, exports the model as a zip, imports it back and predicts on an upload.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest
from playwright.sync_api import Locator, Page, expect, sync_playwright

from workbench import runs
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.strategies import STRATEGIES

from .conftest import REPO, SHAPES

CHROMIUM = Path("/usr/bin/chromium")
CHROMIUM_FLAGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-background-networking"]
ARTIFACTS = REPO / "artifacts"
SCREENSHOTS = ARTIFACTS / "browser"
BACKBONE = "tf_efficientnet_lite0"  # ships its ImageNet weights: a real pretrained run, offline
NAV_TITLES = ("1 · Data", "2 · Model & strategy", "3 · Train", "4 · Compare")  # app.py's first st.Page titles
LONG_EPOCHS = 20  # more than the fine-tune gets to before it is stopped
SERVER_START_S = 120
PAGE_S = 90  # a page's first draw: the first visit imports torch and timm, on a shared 2-core machine
RUN_S = 240  # a whole run
# The acceptance goal is 15 s on an idle 2-core CPU (the figure is recorded in artifacts/timings.json); the bound
# asserted here is loose because CI machines are shared: it catches a chart that waits for the end of the run.
FIRST_POINT_LIMIT_S = 120

BROWSER_MARKS = [
    pytest.mark.browser,
    pytest.mark.skipif(not CHROMIUM.exists(), reason="needs Debian's chromium at /usr/bin/chromium "
                                                     "(apt-get install -y chromium; .ci/run installs it)"),
]
"""Every browser test module's `pytestmark`."""
pytestmark = BROWSER_MARKS


@dataclass
class Server:
    url: str
    runs_dir: Path
    log: Path


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def wait_healthy(url: str, process: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + SERVER_START_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"streamlit exited with {process.returncode}:\n{log.read_text()}")
        try:
            with urllib.request.urlopen(f"{url}/_stcore/health", timeout=2) as response:
                if response.status == 200:
                    return
        except OSError:
            time.sleep(0.3)
    raise RuntimeError(f"streamlit did not answer /_stcore/health within {SERVER_START_S} s:\n{log.read_text()}")


@contextlib.contextmanager
def streamlit_server(folder: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """`streamlit run app.py` on a free port, offline, with its runs, uploads and log in `folder` (and `extra_env`,
    e.g. a classroom file)."""
    port = free_port()
    env = {**os.environ, "HF_HUB_OFFLINE": "1", "WORKBENCH_RUNS_DIR": str(folder / "runs"),
           "WORKBENCH_UPLOADS_DIR": str(folder / "uploads"), **(extra_env or {})}
    log = folder / "streamlit.log"
    command = [sys.executable, "-m", "streamlit", "run", "app.py", "--server.port", str(port),
               "--server.address", "127.0.0.1", "--server.headless", "true", "--browser.gatherUsageStats", "false"]
    with log.open("w") as out:
        process = subprocess.Popen(command, cwd=REPO, env=env, stdout=out, stderr=subprocess.STDOUT)
    url = f"http://127.0.0.1:{port}"
    try:
        wait_healthy(url, process, log)
        yield Server(url, folder / "runs", log)
    finally:
        process.terminate()
        try:
            process.wait(timeout=20)
        except subprocess.TimeoutExpired:
            process.kill()


@contextlib.contextmanager
def logged_server(folder: Path, extra_env: dict[str, str] | None = None) -> Iterator[Server]:
    """`streamlit_server`, printing the end of its log when it stops (pytest shows it for a failed test)."""
    with streamlit_server(folder, extra_env) as running:
        try:
            yield running
        finally:
            print(f"\n--- streamlit log ---\n{running.log.read_text()[-3000:]}")


@contextlib.contextmanager
def chromium_page(flags: list[str] = CHROMIUM_FLAGS) -> Iterator[Page]:
    """A page of headless Debian Chromium, driven by Playwright, launched with `flags`."""
    with sync_playwright() as playwright:
        browser = playwright.chromium.launch(executable_path=str(CHROMIUM), args=flags)
        try:
            yield browser.new_page(viewport={"width": 1400, "height": 1000})
        finally:
            browser.close()


def second_user(page: Page) -> Page:
    """Another person's browser on the same server: a fresh browser context has its own cookies, hence its own
    Streamlit session."""
    return page.context.browser.new_context(viewport={"width": 1400, "height": 1000}).new_page()


@pytest.fixture(scope="module")
def page(server) -> Iterator[Page]:
    with chromium_page() as opened:
        yield opened


# -------------------------------------------------------------------------------------------------------------------
# What the page shows

PLOTLY_FIGURES = """() => Array.from(document.querySelectorAll('[data-testid="stPlotlyChart"] .js-plotly-plot'))
    .map(gd => ({
        title: (gd.layout && gd.layout.title && gd.layout.title.text) || "",
        subplots: ((gd.layout && gd.layout.annotations) || []).map(a => a.text),
        traces: (gd.data || []).map(t => ({type: t.type || "scatter", name: t.name || "",
                                          points: (t.z || t.x || []).length})),
    }))"""


def figures(page: Page) -> list[dict]:
    """Every plotly chart drawn on the page: its title, subplot titles and traces (type, name, number of points)."""
    return page.evaluate(PLOTLY_FIGURES)


def loss_points(page: Page) -> int:
    """Points on the loss curves of the Train page (0 while there is no chart yet)."""
    return sum(t["points"] for f in figures(page) if any("Loss" in s for s in f["subplots"])
               for t in f["traces"] if "loss" in t["name"])


def confusion_matrices(page: Page) -> list[dict]:
    return [f for f in figures(page) if any(t["type"] == "heatmap" for t in f["traces"])]


def wait_until(condition, timeout_s: float, what: str, poll_s: float = 0.25):
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        value = condition()
        if value:
            return value
        time.sleep(poll_s)
    raise AssertionError(f"waited {timeout_s:.0f} s for {what}")


def nav_titles(page: Page) -> list[str]:
    """The sidebar navigation's entries, without their icons."""
    return [text.split("\n")[-1].strip() for text in page.locator('[data-testid="stSidebarNav"] a').all_inner_texts()]


def app_navigation(page: Page) -> bool:
    """The sidebar lists app.py's pages (not Streamlit's legacy list of the files in pages/: app, data, model…)."""
    return tuple(nav_titles(page)[:len(NAV_TITLES)]) == NAV_TITLES


def no_exception_box(page: Page) -> None:
    boxes = page.locator('[data-testid="stException"]')
    assert boxes.count() == 0, f"Streamlit exception on {page.url}:\n" + "\n".join(boxes.all_inner_texts())


def screenshot(page: Page, name: str) -> None:
    """The whole page, not just the window: Streamlit scrolls inside its main block, so the window is stretched to
    that block's height for the picture."""
    SCREENSHOTS.mkdir(parents=True, exist_ok=True)
    viewport = page.viewport_size
    height = page.evaluate("() => Math.max(...Array.from(document.querySelectorAll("
                           "'[data-testid=\"stMain\"], [data-testid=\"stAppViewContainer\"]'), e => e.scrollHeight))")
    page.set_viewport_size({"width": viewport["width"], "height": min(max(height, viewport["height"]), 12000)})
    page.screenshot(path=SCREENSHOTS / name, full_page=True)
    page.set_viewport_size(viewport)


def checked(page: Page, name: str) -> None:
    """What every page must pass: no exception box; then its picture."""
    no_exception_box(page)
    screenshot(page, name)


def heading(page: Page, title: str) -> Locator:
    return page.get_by_role("heading", name=title, exact=True)


def open_page(page: Page, title: str) -> None:
    """Go to a page through the app's own sidebar navigation, like a user."""
    page.locator('[data-testid="stSidebarNav"]').get_by_role("link", name=re.compile(re.escape(title))).click()
    heading(page, title).wait_for(timeout=PAGE_S * 1000)


def run_heading(page: Page) -> Locator:
    return page.get_by_role("heading", name=re.compile(r"^Run: "))


def run_id_in_url(page: Page) -> str:
    match = re.search(r"[?&]run=([^&#]+)", page.url)
    assert match, f"no ?run= in {page.url}"
    return match.group(1)


def settled(page: Page, action) -> None:
    """Do `action`, which changes a widget, and wait for the rerun it causes to end: a widget changed while the
    page is still being redrawn can lose its value to the redraw."""
    app = page.get_by_test_id("stApp")
    action()
    with contextlib.suppress(AssertionError):  # a quick rerun can be over before it is seen
        expect(app).to_have_attribute("data-test-script-state", "running", timeout=3000)
    expect(app).to_have_attribute("data-test-script-state", "notRunning", timeout=PAGE_S * 1000)


def set_number(page: Page, label: str, value: int) -> None:
    """Type into a number input and press Enter, which sends it to the app."""
    field = page.get_by_role("spinbutton", name=label, exact=True)
    field.fill(str(value))
    settled(page, lambda: field.press("Enter"))
    expect(field).to_have_value(str(value))


def pick_backbone(page: Page, name: str) -> None:
    """Search for the backbone like a user would, then pick it from the list of matches."""
    search = page.get_by_role("textbox", name="Search models")
    search.fill(name)
    settled(page, lambda: search.press("Enter"))
    models = page.get_by_role("combobox", name=re.compile(r"^Model \(\d+ match(es)?\)$"))
    expect(models).to_have_attribute("aria-label", re.compile(r"^Model \((1 match|[2-9] matches)\)$"),
                                     timeout=PAGE_S * 1000)
    models.click()
    settled(page, page.get_by_role("option", name=re.compile(rf"^{re.escape(name)}\b")).click)
    expect(models).to_have_value(re.compile(rf"^{re.escape(name)}\b"))


def pick_option(page: Page, question: str, option: str) -> None:
    """Click an option of the radio buttons under `question`."""
    settled(page, page.get_by_test_id("stRadio").filter(has_text=question).get_by_text(option, exact=True).click)


def pick_strategy(page: Page, name: str) -> None:
    pick_option(page, "Transfer strategy", STRATEGIES[name].title)
    page.get_by_text(f"Trains: {STRATEGIES[name].trains}.").wait_for(timeout=PAGE_S * 1000)


def lines(path: Path) -> int:
    return len(path.read_text().splitlines()) if path.exists() else 0


def use_sample_data(page: Page, url: str) -> None:
    """Open the app and pick the sample data on its Data page."""
    page.goto(url)
    heading(page, "1 · Your images").wait_for(timeout=PAGE_S * 1000)
    pick_option(page, "Where do your images come from?", "Sample data")
    page.get_by_text("Dataset in use:").wait_for(timeout=PAGE_S * 1000)


def choose_model(page: Page, strategy: str, numbers: dict[str, int] | None = None) -> None:
    """On the Model page: the bundled backbone, `strategy`, then number inputs by label (e.g. {"Epochs": 2})."""
    open_page(page, "2 · Model & strategy")
    pick_backbone(page, BACKBONE)
    pick_strategy(page, strategy)
    for label, value in (numbers or {}).items():
        set_number(page, label, value)
    page.get_by_text("Next: train →").wait_for(timeout=PAGE_S * 1000)


def ready_to_train(page: Page, strategy: str, plan: str | None = None, button: str = "Train") -> Locator:
    """Open the Train page, check that it will run `strategy` on the backbone (and the `plan` line, if given), and
    return its Train button (named "Queue another run" while some run trains)."""
    open_page(page, "3 · Train")
    train = page.get_by_role("button", name=button, exact=True)
    train.wait_for(timeout=PAGE_S * 1000)
    expect(page.get_by_text(f"Backbone: {BACKBONE}")).to_be_visible()
    expect(page.get_by_text(f"Strategy: {STRATEGIES[strategy].title}")).to_be_visible()
    if plan:
        expect(page.get_by_text(plan)).to_be_visible()
    return train


# -------------------------------------------------------------------------------------------------------------------
# The journey, step by step


def direct_url_first(page: Page, server: Server) -> None:
    """The first visit after the server starts opens /train directly (a refresh after a restart): the app's own
    navigation and page must still be there, not Streamlit's legacy list of the files in pages/."""
    page.goto(f"{server.url}/train")
    heading(page, "3 · Train").wait_for(timeout=PAGE_S * 1000)
    wait_until(lambda: app_navigation(page), 30, f"the app's navigation {NAV_TITLES}")
    checked(page, "00_train_opened_directly.png")


def pick_sample_data(page: Page, server: Server) -> None:
    use_sample_data(page, server.url)
    assert app_navigation(page), nav_titles(page)
    expect(page.get_by_text("sample_data/shapes")).to_be_visible()
    page.get_by_text("A few images of each class").wait_for(timeout=PAGE_S * 1000)
    checked(page, "01_data.png")


def train_to_the_end(page: Page, timings: dict) -> str:
    """Click Train, time the first point of the loss curve, wait for the finished run; return its id."""
    choose_model(page, "linear_probe")
    checked(page, "02_model_linear_probe.png")
    train = ready_to_train(page, "linear_probe")
    checked(page, "03_train_ready.png")
    train.click()
    clicked = time.monotonic()
    wait_until(lambda: loss_points(page) > 0, FIRST_POINT_LIMIT_S, "the first point of the loss curve")
    timings["first_chart_point_s"] = round(time.monotonic() - clicked, 2)
    # A linear probe trains its head on cached features in about a second, so its curve may first show complete;
    # that curves fill in while a run trains is checked on the fine-tune below.
    checked(page, "04_train_first_point.png")
    run_heading(page).filter(has_text="— finished").wait_for(timeout=RUN_S * 1000)
    timings["linear_probe_run_s"] = round(time.monotonic() - clicked, 2)
    wait_until(lambda: confusion_matrices(page), 30, "the confusion matrix")
    assert loss_points(page) > 1, figures(page)
    expect(page.get_by_text("Validation accuracy", exact=True)).to_be_visible()
    checked(page, "05_train_finished.png")
    return run_id_in_url(page)


def start_long_fine_tune(page: Page, screenshots: bool = True) -> str:
    """A full fine-tune with more epochs than it will get to: started, to be refreshed and stopped."""
    choose_model(page, "full", {"Image size (px)": 96, "Epochs": LONG_EPOCHS})
    if screenshots:
        checked(page, "06_model_full.png")
    ready_to_train(page, "full", f"Epochs: {LONG_EPOCHS} · Image size: 96 px · Batch: 32").click()
    run_heading(page).filter(has_text="full").wait_for(timeout=PAGE_S * 1000)
    return run_id_in_url(page)


def progress_line(page: Page) -> str:
    bar = page.locator('[data-testid="stProgress"]')
    return bar.inner_text() if bar.count() else ""


def refresh_reattaches(page: Page, server: Server, run_id: str, timings: dict) -> None:
    """After an epoch (so there is something to keep), refresh: the same run, still running, still moving."""
    run_dir = server.runs_dir / run_id
    wait_until(lambda: lines(run_dir / runs.METRICS_FILE) >= 1, RUN_S, "the fine-tune's first epoch")
    page.reload()
    run_heading(page).filter(has_text="— running").wait_for(timeout=PAGE_S * 1000)
    assert run_id_in_url(page) == run_id
    assert app_navigation(page), nav_titles(page)
    before = wait_until(lambda: progress_line(page), 30, "the progress bar")
    moved = wait_until(lambda: progress_line(page) not in ("", before) and progress_line(page), 60,
                       f"the progress to move on from {before!r}")
    timings["after_refresh_progress"] = [before, moved]
    points = wait_until(lambda: loss_points(page), 30, "the loss curve after the refresh")
    wait_until(lambda: loss_points(page) > points, 60, "the loss curve to grow while the fine-tune trains")
    assert run_heading(page).filter(has_text="— running").count() == 1, "the curve must fill in while it trains"
    checked(page, "07_train_refreshed_mid_run.png")


def stop_it(page: Page, server: Server, run_id: str, timings: dict) -> None:
    run_dir = server.runs_dir / run_id
    batches_at_click = lines(run_dir / runs.BATCHES_FILE)
    page.get_by_role("button", name="Stop", exact=True).click()
    clicked = time.monotonic()
    run_heading(page).filter(has_text="— stopped").wait_for(timeout=RUN_S * 1000)
    timings["stop_to_stopped_s"] = round(time.monotonic() - clicked, 2)
    summary = json.loads((run_dir / runs.SUMMARY_FILE).read_text())
    extra = lines(run_dir / runs.BATCHES_FILE) - batches_at_click
    timings["batches_after_stop_click"] = extra
    # The batch in flight finishes; one more may have started while the click travelled to the server.
    assert extra <= 2, f"{extra} batches ran after Stop was clicked"
    assert summary["status"] == "stopped"
    assert summary["epochs_completed"] >= 1 and summary["val_accuracy"] is not None
    assert summary["confusion_matrix"]
    assert lines(run_dir / runs.METRICS_FILE) == summary["epochs_completed"]
    expect(page.get_by_text(re.compile(r"^Stopped after \d+ full epoch"))).to_be_visible()
    checked(page, "08_train_stopped.png")


def both_on_compare(page: Page) -> None:
    open_page(page, "4 · Compare")
    page.get_by_text("2 of 2 runs").wait_for(timeout=PAGE_S * 1000)
    table = page.locator('[data-testid="stDataFrame"]').first
    table.wait_for()
    wait_until(lambda: len(confusion_matrices(page)) == 2, 30, "both runs' confusion matrices")
    picked = page.locator('[data-testid="stMultiSelect"]').filter(has_text="Runs to compare").inner_text()
    assert "linear_probe" in picked and "full" in picked, picked
    checked(page, "09_compare.png")


def queue_behind(mine: Page, theirs: Page, server: Server, timings: dict) -> tuple[str, str]:
    """The first user fine-tunes; a second user's linear probe, started meanwhile, waits in the queue behind it
    (one training at a time per device) instead of running alongside."""
    use_sample_data(mine, server.url)
    first = start_long_fine_tune(mine, screenshots=False)
    use_sample_data(theirs, server.url)
    choose_model(theirs, "linear_probe")
    # The second user's Train page shows the run training now, whoever started it, and offers to queue theirs.
    queue = ready_to_train(theirs, "linear_probe", button="Queue another run")
    expect(run_heading(theirs).filter(has_text="full")).to_be_visible()
    queue.click()
    run_heading(theirs).filter(has_text="— queued").wait_for(timeout=PAGE_S * 1000)
    expect(theirs.get_by_text(re.compile(r"^Waiting in the queue: 1 run before this one"))).to_be_visible()
    second = run_id_in_url(theirs)
    assert second != first
    assert run_heading(mine).filter(has_text="— running").count() == 1
    checked(theirs, "10_second_user_queued.png")
    return first, second


def stop_mine_not_theirs(mine: Page, theirs: Page, server: Server, runs_of: tuple[str, str],
                         timings: dict) -> None:
    """Stopping the first user's run stops only that run: the second user's starts and finishes."""
    first, second = runs_of
    mine.get_by_role("button", name="Stop", exact=True).click()
    run_heading(mine).filter(has_text="— stopped").wait_for(timeout=RUN_S * 1000)
    clicked = time.monotonic()
    run_heading(theirs).filter(has_text="— finished").wait_for(timeout=RUN_S * 1000)
    timings["queued_run_done_after_stop_s"] = round(time.monotonic() - clicked, 2)
    first_summary = json.loads((server.runs_dir / first / runs.SUMMARY_FILE).read_text())
    second_summary = json.loads((server.runs_dir / second / runs.SUMMARY_FILE).read_text())
    assert first_summary["status"] == "stopped"
    assert second_summary["status"] == "finished" and second_summary["val_accuracy"] > 0.5
    wait_until(lambda: confusion_matrices(theirs), 30, "the second user's confusion matrix")
    checked(theirs, "11_second_user_finished.png")


@contextlib.contextmanager
def journey(timings_file: str, *failure_shots: tuple[Page, str]) -> Iterator[dict]:
    """The timings a journey measures, written to artifacts/`timings_file` however it ends; on a failure, a
    screenshot of each (page, file name) first."""
    timings: dict = {}
    try:
        yield timings
    except BaseException:
        for shown, name in failure_shots:
            screenshot(shown, name)
        raise
    finally:
        ARTIFACTS.mkdir(exist_ok=True)
        (ARTIFACTS / timings_file).write_text(json.dumps(timings, indent=2) + "\n")
        print(f"\nbrowser timings ({timings_file}): {json.dumps(timings)}")


def test_a_new_user_trains_refreshes_stops_and_compares(page: Page, server):
    with journey("timings.json", (page, "failure.png")) as timings:
        direct_url_first(page, server)
        pick_sample_data(page, server)
        probe_id = train_to_the_end(page, timings)
        stopped_id = start_long_fine_tune(page)
        assert stopped_id != probe_id
        refresh_reattaches(page, server, stopped_id, timings)
        stop_it(page, server, stopped_id, timings)
        both_on_compare(page)


def test_two_users_share_one_queue_and_stop_only_their_own_run(page: Page, server):
    """Two browser sessions at once (a classroom): they see one run registry, the device trains one run at a
    time, and Stop stops only the run it belongs to."""
    theirs = second_user(page)
    try:
        with journey("timings_two_users.json", (page, "failure_first_user.png"),
                     (theirs, "failure_second_user.png")) as timings:
            runs_of = queue_behind(page, theirs, server, timings)
            stop_mine_not_theirs(page, theirs, server, runs_of, timings)
    finally:
        theirs.context.close()


# -------------------------------------------------------------------------------------------------------------------
# Inside a finished run, then take the model out and back in


def finished_probe(server: Server) -> str:
    """A finished linear probe in the server's runs folder, trained through the library (the first test already
    trains one by clicks): the app finds runs on disk."""
    config = RunConfig(data=str(SHAPES), backbone=BACKBONE, strategy="linear_probe", image_size=96, epochs=10,
                       runs_dir=str(server.runs_dir))
    run = Run(config).run()
    assert run.status == "finished", run.error
    return run.id


def open_a_confusion_cell(page: Page, server: Server, run_id: str, timings: dict) -> str:
    """Click the middle cell of the confusion matrix (the middle class, on both axes whichever way they run):
    the validation images behind it appear. Returns that class."""
    page.goto(f"{server.url}/insight?run={run_id}")
    heading(page, "6 · Inside the model").wait_for(timeout=PAGE_S * 1000)
    chart = page.locator('[data-testid="stPlotlyChart"]').first
    chart.wait_for(timeout=PAGE_S * 1000)
    middle = sorted(p.name for p in SHAPES.iterdir() if p.is_dir())[2]
    plot_area = chart.locator(".nsewdrag").first
    box = plot_area.bounding_box()
    started = time.monotonic()
    settled(page, lambda: page.mouse.click(box["x"] + box["width"] / 2, box["y"] + box["height"] / 2))
    cell = page.get_by_text(re.compile(rf"^\d+ image\(s\) of {middle} predicted as {middle} \(right\)"))
    cell.wait_for(timeout=PAGE_S * 1000)
    timings["confusion_cell_s"] = round(time.monotonic() - started, 2)
    shown = int(cell.inner_text().split()[0])
    assert shown > 0
    assert page.get_by_text(re.compile(r" · \d+% sure$")).count() >= min(shown, 36)  # one caption per image
    checked(page, "12_insight_confusion_cell.png")
    return middle


def see_a_grad_cam(page: Page, timings: dict) -> None:
    started = time.monotonic()
    page.get_by_role("tab", name="Grad-CAM").click()
    page.get_by_text(re.compile(r"^Heat for .+; the model predicts ")).wait_for(timeout=PAGE_S * 1000)
    timings["grad_cam_s"] = round(time.monotonic() - started, 2)
    assert page.locator('[data-testid="stImage"]').count() >= 1
    checked(page, "13_insight_grad_cam.png")


def export_the_zip(page: Page, run_id: str, folder: Path, timings: dict) -> Path:
    open_page(page, "5 · Predict & export")
    started = time.monotonic()
    page.get_by_role("button", name="Prepare the download").click()
    page.get_by_text(re.compile(r"^ONNX: same top-1 on (\d+)/\1 ")).wait_for(timeout=RUN_S * 1000)
    timings["export_s"] = round(time.monotonic() - started, 2)
    with page.expect_download() as download:
        page.get_by_role("button", name="Download the model (.zip)").click()
    assert download.value.suggested_filename == f"{run_id}.zip"
    path = folder / download.value.suggested_filename
    download.value.save_as(path)
    checked(page, "14_predict_exported.png")
    return path


def uploader(page: Page, label: str) -> Locator:
    return page.locator('[data-testid="stFileUploader"]').filter(has_text=label)


def import_it_back(page: Page, zip_path: Path) -> None:
    page.get_by_text("Import a model zip").click()
    box = uploader(page, "Model zip")
    # the rerun that the finished upload causes: until then the app has no file behind the Import button
    settled(page, lambda: box.locator('input[type="file"]').set_input_files(zip_path))
    expect(box).to_contain_text(".zip")  # its name, shortened
    settled(page, lambda: page.get_by_role("button", name="Import", exact=True).click())
    page.get_by_text(f"Imported {zip_path.name}: it is selected above.").wait_for(timeout=PAGE_S * 1000)
    checked(page, "15_predict_imported.png")


def predict_an_upload(page: Page) -> None:
    picture = sorted((SHAPES / "star").iterdir())[0]
    uploader(page, "Pictures to classify").locator('input[type="file"]').set_input_files(picture)
    answer = page.get_by_text(re.compile(r"^(circle|cross|square|star|triangle) \(\d+% sure\)$"))
    answer.wait_for(timeout=PAGE_S * 1000)
    assert answer.inner_text().startswith("star"), answer.inner_text()
    checked(page, "16_predict_upload.png")


def test_inside_a_run_then_export_import_and_predict(page: Page, server, tmp_path):
    """Issue 6's journey: a finished run's confusion cell and its images, a Grad-CAM, the model exported as a zip,
    imported back, and asked about an uploaded picture."""
    with journey("timings_inside.json", (page, "failure_inside.png")) as timings:
        run_id = finished_probe(server)
        open_a_confusion_cell(page, server, run_id, timings)
        see_a_grad_cam(page, timings)
        zip_path = export_the_zip(page, run_id, tmp_path, timings)
        import_it_back(page, zip_path)
        predict_an_upload(page)
