"""A class watching one run: training speed with N sessions on its Train page, against the same run with none.

Each side starts `streamlit run app.py` afresh and starts the run by clicks in headless Chromium (the bundled
EfficientNet-Lite0, the sample data), then closes that browser. On the watched side N sessions open the Train page
on the run (`/train?run=<id>`) and stay until it ends. A session is, by default, Streamlit's own protocol over a
websocket (`--sessions websocket`): the server runs the page for it as for a browser (first draw, the
fragments' timers, the whole-page redraw at each epoch) while the client costs next to nothing, as the students'
own laptops would. `--sessions chromium` opens real pages in one headless Chromium instead; on one machine their
rendering competes with the training, so that figure is a worst case, not a classroom.

Measured, per side: training images/s over the epochs after the first (`--skip-epochs`; the watchers arrive during
the first), from the run's metrics.jsonl; the server process's CPU (training and serving: the run trains in it)
and resident memory over those epochs; on the watched side, each session's delay from the end of an epoch (its line
in metrics.jsonl) to its progress line moving past that epoch ("Epoch N+1 of …") and to its charts showing it (the
confusion matrix "…, epoch N"), and the CPU of the watching clients. With --repeats N the pairs run N times,
alternating which side goes first; the ratios are taken within each pair.

    HF_HUB_OFFLINE=1 python bench/bench_watchers.py --watchers 30 --repeats 3 --json-out bench/results/watchers.json
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import re
import statistics
import sys
import tempfile
import time
from dataclasses import dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import psutil
import torch
from streamlit.proto.BackMsg_pb2 import BackMsg
from streamlit.proto.ForwardMsg_pb2 import ForwardMsg
from websockets.asyncio.client import ClientConnection, connect

from workbench import runs

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))  # the browser test's helpers start the server and click through the app here too

from tests.test_browser import (  # noqa: E402
    CHROMIUM,
    CHROMIUM_FLAGS,
    PLOTLY_FIGURES,
    Server,
    choose_model,
    chromium_page,
    ready_to_train,
    run_id_in_url,
    streamlit_server,
    use_sample_data,
)

TRAIN_PAGE = "train"  # the Train page's URL path
MB = 2**20
# The Train page titles its confusion matrix "Validation confusion matrix, epoch N" while the run trains and "…, saved
# model" once it has ended: the first time a session receives "epoch N" (or "saved model") its charts show epoch N.
EPOCH_IN_CHARTS = re.compile(rb"confusion matrix, (?:epoch (\d+)|(saved model))")
# Its progress line says "Epoch N of M · batch …" from the first batch of epoch N (so N - 1 have ended), and "N epochs
# done." once the run has ended.
EPOCH_IN_PROGRESS = re.compile(rb"Epoch (\d+) of \d+ \xc2\xb7 batch|(\d+) epochs? done\.")
POLL_S = 0.05  # how often metrics.jsonl is checked for a new epoch
RUN_TIMEOUT_S = 1800
LAST_EPOCH_S = 60  # how long the watchers get to show the last epoch once the run has ended
TRAINING_THREAD_SHARE = 0.25


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--watchers", type=int, default=30, help="sessions on the Train page of the watched side")
    parser.add_argument("--sessions", choices=("websocket", "chromium"), default="websocket",
                        help="what a watcher is: Streamlit's protocol over a websocket, or a headless Chromium page")
    parser.add_argument("--strategy", default="full", help="a strategy that trains every batch (not linear_probe)")
    parser.add_argument("--epochs", type=int, default=20)
    parser.add_argument("--image-size", type=int, default=128)
    parser.add_argument("--skip-epochs", type=int, default=1, help="epochs left out of the rates (watchers arrive)")
    parser.add_argument("--repeats", type=int, default=1, help="pairs, alternating which side goes first")
    parser.add_argument("--quiet-cores", type=float, default=0.25,
                        help="an epoch is quiet when other processes kept fewer cores than this busy during it")
    parser.add_argument("--json-out", type=Path, help="write every figure here (and the table beside it, as .md)")
    return parser.parse_args(argv)


# -------------------------------------------------------------------------------------------------------------------
# One watcher: what it saw


@dataclass
class Seen:
    """What one watching session received."""

    drawn_at: float | None = None  # its first page finished drawing (time.time())
    charts: dict[int, float] = field(default_factory=dict)  # epoch -> when its charts first showed it (or a later one)
    progress: dict[int, float] = field(default_factory=dict)  # epoch -> when its progress line first said it ended
    full_runs: int = 0  # page runs from the top (the first draw, and one per new epoch)
    fragment_runs: int = 0  # the progress line's timer
    bytes: int = 0  # received

    def read(self, content: bytes, epochs: int, when: float) -> None:
        """Note the epochs that `content` (a message, or a page's text) shows as ended."""
        for shown in EPOCH_IN_CHARTS.finditer(content):
            _up_to(self.charts, epochs if shown[2] else int(shown[1]), when)
        for shown in EPOCH_IN_PROGRESS.finditer(content):
            _up_to(self.progress, int(shown[1]) - 1 if shown[1] else int(shown[2]), when)


def _up_to(shown: dict[int, float], epoch: int, when: float) -> None:
    for k in range(1, epoch + 1):
        shown.setdefault(k, when)


class WebsocketSession:
    """One browser tab as the server sees it, without the browser: Streamlit's protocol over its websocket.

    Like Streamlit's frontend it asks for the page with the run in its query string, keeps one timer per fragment
    that asked for `run_every` (replaced when the interval changes, all cleared when the whole page runs again, one
    cleared on `stop_auto_rerun`) and sends each timer's rerun with the current page. It sends no cached-message
    hashes, so the server sends every element in full, as to a freshly opened tab."""

    def __init__(self, ws_url: str, run_id: str, epochs: int, seen: Seen):
        self.ws_url, self.run_id, self.epochs, self.seen = ws_url, run_id, epochs, seen
        self._page_hash = ""
        self._timers: dict[str, tuple[float, asyncio.Task]] = {}

    async def watch(self, until: asyncio.Event) -> None:
        async with connect(self.ws_url, subprotocols=["streamlit"], max_size=None) as ws:
            await self._rerun(ws)
            reader, ended = asyncio.create_task(self._read(ws)), asyncio.create_task(until.wait())
            await asyncio.wait([reader, ended], return_when=asyncio.FIRST_COMPLETED)
            self._clear_timers()
            if reader.done():
                reader.result()  # the connection's end or error, raised here
                raise RuntimeError("the server closed a watcher's connection before the run ended")
            reader.cancel()

    async def _rerun(self, ws: ClientConnection, fragment_id: str = "") -> None:
        msg = BackMsg()
        state = msg.rerun_script
        state.query_string = f"run={self.run_id}"
        state.widget_states.SetInParent()
        state.page_script_hash = self._page_hash
        if not self._page_hash:
            state.page_name = TRAIN_PAGE  # the first request, as from the URL /train
        if fragment_id:
            state.fragment_id, state.is_auto_rerun = fragment_id, True
        await ws.send(msg.SerializeToString())

    async def _read(self, ws: ClientConnection) -> None:
        async for frame in ws:
            self.seen.bytes += len(frame)
            msg = ForwardMsg.FromString(frame)
            kind = msg.WhichOneof("type")
            if kind == "navigation":  # the page the app shows (the frontend keeps it for its next requests)
                self._page_hash = msg.navigation.page_script_hash
            elif kind == "new_session":
                if msg.metadata.run.fragment_ids:
                    self.seen.fragment_runs += 1
                else:
                    self.seen.full_runs += 1
                    self._clear_timers()
            elif kind == "auto_rerun":
                self._every(ws, msg.auto_rerun.fragment_id, msg.auto_rerun.interval)
            elif kind == "stop_auto_rerun":
                for fragment_id in msg.stop_auto_rerun.fragment_ids:
                    self._clear_timer(fragment_id)
            elif kind == "script_finished" and self.seen.drawn_at is None:
                self.seen.drawn_at = time.time()
            elif kind == "delta":
                self.seen.read(frame, self.epochs, time.time())

    def _every(self, ws: ClientConnection, fragment_id: str, interval: float) -> None:
        if fragment_id in self._timers and self._timers[fragment_id][0] == interval:
            return
        self._clear_timer(fragment_id)

        async def tick() -> None:
            while True:
                await asyncio.sleep(interval)
                await self._rerun(ws, fragment_id)

        self._timers[fragment_id] = (interval, asyncio.create_task(tick()))

    def _clear_timer(self, fragment_id: str) -> None:
        if fragment_id in self._timers:
            self._timers.pop(fragment_id)[1].cancel()

    def _clear_timers(self) -> None:
        for fragment_id in list(self._timers):
            self._clear_timer(fragment_id)


SHOWN_TEXT = f"""() => ({PLOTLY_FIGURES})().map(f => f.title).join('\\n') + '\\n' +
    Array.from(document.querySelectorAll('[data-testid="stProgress"]')).map(p => p.innerText).join('\\n')"""


async def chromium_watchers(url: str, run_id: str, seen: list[Seen], epochs: int, until: asyncio.Event) -> None:
    """A page of one headless Chromium per `seen` (a browser context each, so a Streamlit session each) on the run's
    Train page; each notes when its confusion matrix's title and its progress line first show an epoch."""
    from playwright.async_api import async_playwright

    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(executable_path=str(CHROMIUM), args=CHROMIUM_FLAGS)
        try:
            pages = [await (await browser.new_context(viewport={"width": 1400, "height": 1000})).new_page()
                     for _ in seen]
            # Thirty pages loading at once take longer than goto's 30 s on 2 cores: each waits for its heading instead.
            await asyncio.gather(*(page.goto(f"{url}/{TRAIN_PAGE}?run={run_id}", wait_until="commit",
                                             timeout=RUN_TIMEOUT_S * 1000) for page in pages))
            watching = [asyncio.create_task(_watch_page(page, s, epochs)) for page, s in zip(pages, seen, strict=True)]
            await until.wait()
            for task in watching:
                task.cancel()
        finally:
            await browser.close()


async def _watch_page(page, seen: Seen, epochs: int) -> None:
    await page.get_by_role("heading", name=re.compile(r"^Run: ")).wait_for(timeout=RUN_TIMEOUT_S * 1000)
    seen.drawn_at = time.time()
    while True:
        seen.read((await page.evaluate(SHOWN_TEXT)).encode(), epochs, time.time())
        await asyncio.sleep(0.25)


# -------------------------------------------------------------------------------------------------------------------
# The server and the run


def server_process(server: Server) -> psutil.Process:
    """The `streamlit run` process of `server` (a child of this one, found by its port)."""
    port = server.url.rsplit(":", 1)[1]
    for child in psutil.Process().children(recursive=True):
        with contextlib.suppress(psutil.Error):
            if "streamlit" in " ".join(child.cmdline()) and port in child.cmdline():
                return child
    raise RuntimeError(f"no streamlit process on port {port}")


def start_run(args: argparse.Namespace, server: Server) -> str:
    """Start the run by clicks in Chromium, as a user would, and close the browser; the run's id."""
    with chromium_page() as page:
        use_sample_data(page, server.url)
        choose_model(page, args.strategy, {"Epochs": args.epochs, "Image size (px)": args.image_size})
        plan = f"Epochs: {args.epochs} · Image size: {args.image_size} px · Batch: 32"  # the clicks took
        ready_to_train(page, args.strategy, plan).click()
        page.wait_for_url(re.compile(r"[?&]run="), timeout=60_000)
        return run_id_in_url(page)


class Sampler:
    """The server's resident memory every half second; CPU time, when asked, of the server, of the watchers and of the
    whole machine."""

    def __init__(self, server: psutil.Process):
        self.server, self.rss = server, []

    async def sample(self, until: asyncio.Event) -> None:
        while not until.is_set():
            self.rss.append(self.server.memory_info().rss)
            await asyncio.sleep(0.5)

    def cpu(self) -> tuple[float, float, float, float]:
        """(wall, server, watchers, whole machine) now, in seconds and CPU-seconds; the watchers are this process and
        its other children (the Chromium of --sessions chromium)."""
        own = psutil.Process()
        clients = sum(sum(p.cpu_times()[:2]) for p in own.children(recursive=True) if p.pid != self.server.pid)
        machine = psutil.cpu_times()
        busy = sum(machine) - machine.idle - getattr(machine, "iowait", 0.0)
        return time.time(), sum(self.server.cpu_times()[:2]), sum(own.cpu_times()[:2]) + clients, busy

    def threads(self) -> dict[int, float]:
        """CPU-seconds of each of the server's threads now (a page run's thread ends with it: only the long-lived
        ones are here)."""
        return {t.id: t.user_time + t.system_time for t in self.server.threads()}


def serving_cpu(server_seconds: float, wall: float, before: dict[int, float], after: dict[int, float],
                main: int) -> float:
    """The server's CPU-seconds not spent training: all of it but the threads that stayed busy for more than
    TRAINING_THREAD_SHARE of the time (the run's thread and torch's worker threads; the event loop (`main`) and the
    short-lived threads that run the pages never come near)."""
    training = [after[t] - before[t] for t in after if t in before and t != main
                and (after[t] - before[t]) / wall > TRAINING_THREAD_SHARE]
    return server_seconds - sum(training)


def others_cores(before: tuple, after: tuple) -> float:
    """How many cores everything but the server and the watchers kept busy between two `Sampler.cpu` readings (on a
    shared machine, other people's work)."""
    wall, server, clients, busy = (b - a for a, b in zip(before, after, strict=True))
    return (busy - server - clients) / wall


async def epoch_ends(metrics_file: Path, ends: dict[int, float], cpu_at: dict[int, tuple], sampler: Sampler,
                     until: asyncio.Event) -> None:
    """Note when each epoch's line lands in metrics.jsonl (the moment the run emits epoch_end), and the CPU readings
    then."""
    while not until.is_set():
        if metrics_file.exists():
            stamp = metrics_file.stat().st_mtime
            for line in metrics_file.read_text().splitlines():
                epoch = json.loads(line)["epoch"]
                if epoch not in ends:
                    ends[epoch], cpu_at[epoch] = stamp, sampler.cpu()
        await asyncio.sleep(POLL_S)


async def observe(args: argparse.Namespace, server: Server, run_id: str, watchers: int) -> dict:
    """Attach the watchers, note every epoch's end and the server's CPU and memory until the run has ended."""
    run_dir = server.runs_dir / run_id
    process = server_process(server)
    sampler, ends, cpu_at, marks = Sampler(process), {}, {}, {}
    done = asyncio.Event()
    tasks = [asyncio.create_task(epoch_ends(run_dir / runs.METRICS_FILE, ends, cpu_at, sampler, done)),
             asyncio.create_task(sampler.sample(done))]
    seen = [Seen() for _ in range(watchers)]
    ws_url = server.url.replace("http", "ws", 1) + "/_stcore/stream"
    if args.sessions == "websocket":
        watching = [asyncio.create_task(WebsocketSession(ws_url, run_id, args.epochs, s).watch(done)) for s in seen]
    else:
        watching = [asyncio.create_task(chromium_watchers(server.url, run_id, seen, args.epochs, done))] if seen else []
    deadline = time.monotonic() + RUN_TIMEOUT_S
    while not (run_dir / runs.SUMMARY_FILE).exists() and time.monotonic() < deadline:
        if args.skip_epochs in ends and "start" not in marks:
            marks["start"], marks["threads_start"] = sampler.cpu(), sampler.threads()
        await asyncio.sleep(POLL_S)
    marks["end"], marks["threads_end"] = sampler.cpu(), sampler.threads()
    last, deadline = max(ends), time.monotonic() + LAST_EPOCH_S
    while any(last not in s.charts for s in seen) and time.monotonic() < deadline:
        await asyncio.sleep(POLL_S)  # the last epoch reaches every watcher
    done.set()
    await asyncio.gather(*watching, *tasks)
    return measure(args, run_dir, watchers, ends, cpu_at, marks, sampler, seen)


def measure(args: argparse.Namespace, run_dir: Path, watchers: int, ends: dict[int, float], cpu_at: dict[int, tuple],
            marks: dict, sampler: Sampler, seen: list[Seen]) -> dict:
    record = runs.load_run(run_dir)
    trained = (record.config.epochs, record.config.image_size)
    if trained != (args.epochs, args.image_size):  # a click that did not take would compare two different runs
        raise RuntimeError(f"the run trained {trained[0]} epochs at {trained[1]} px, not the {args.epochs} epochs at "
                           f"{args.image_size} px chosen by clicks on the Model page")
    measured = [m for m in record.metrics if m["epoch"] > args.skip_epochs]
    images = sum(m["images_per_s"] * m["seconds"] for m in measured)
    (t0, server0, client0, _), (t1, server1, client1, _) = marks["start"], marks["end"]
    others = {k: round(others_cores(cpu_at[k - 1], cpu_at[k]), 2) for k in cpu_at if k - 1 in cpu_at}
    quiet = [m["images_per_s"] for m in measured if others.get(m["epoch"], float("inf")) < args.quiet_cores]
    last_end = max(ends.values())
    delays = [s.charts[epoch] - ends[epoch] for s in seen for epoch in ends if epoch in s.charts]
    in_progress = [s.progress[epoch] - ends[epoch] for s in seen for epoch in ends if epoch in s.progress]
    missed = sum(1 for s in seen for epoch in ends if epoch not in s.charts)
    drawn = [s.drawn_at for s in seen]
    return {
        "watchers": watchers, "sessions": args.sessions if watchers else None, "status": record.status,
        "epochs": len(record.metrics), "measured_epochs": [m["epoch"] for m in measured],
        "images_per_s": round(images / sum(m["seconds"] for m in measured), 2),
        "median_epoch_images_per_s": statistics.median(m["images_per_s"] for m in measured),
        "quiet_epochs": len(quiet), "quiet_median_images_per_s": statistics.median(quiet) if quiet else None,
        "others_cores": [others.get(m["epoch"]) for m in measured],
        "epoch_images_per_s": [m["images_per_s"] for m in record.metrics],
        "all_drawn_before_measuring": all(d is not None and d < ends.get(args.skip_epochs, 0) for d in drawn),
        "server_cpu_percent": round(100 * (server1 - server0) / (t1 - t0), 1),
        "serving_cpu_percent": round(100 * serving_cpu(server1 - server0, t1 - t0, marks["threads_start"],
                                                       marks["threads_end"], sampler.server.pid) / (t1 - t0), 1),
        "watcher_cpu_percent": round(100 * (client1 - client0) / (t1 - t0), 1),
        "server_rss_mb_peak": round(max(sampler.rss) / MB), "server_rss_mb_end": round(sampler.rss[-1] / MB),
        "delays_s": [round(d, 2) for d in sorted(delays)], "epochs_missed": missed,
        "progress_delays_s": [round(d, 2) for d in sorted(in_progress)],
        "full_runs": sum(s.full_runs for s in seen), "fragment_runs": sum(s.fragment_runs for s in seen),
        "mb_sent": round(sum(s.bytes for s in seen) / MB, 1), "window_s": round(t1 - t0, 1),
        "last_epoch_to_end_s": round(t1 - last_end, 1), "load_average": [round(x, 2) for x in os.getloadavg()],
    }


def side(args: argparse.Namespace, watchers: int) -> dict:
    with tempfile.TemporaryDirectory(prefix="bench-watchers-") as folder, streamlit_server(Path(folder)) as server:
        load = os.getloadavg()[0]
        run_id = start_run(args, server)
        result = asyncio.run(observe(args, server, run_id, watchers))
    return {"load_before": round(load, 2), **result}


# -------------------------------------------------------------------------------------------------------------------
# The table


def percentile(values: list[float], q: float) -> float | None:
    return statistics.quantiles(values, n=100, method="inclusive")[q - 1] if len(values) > 1 else \
        (values[0] if values else None)


def summary(delays: list[float]) -> str:
    """Median / 90th percentile / most of a list of delays, in seconds."""
    return f"{statistics.median(delays):.1f} / {percentile(delays, 90):.1f} / {max(delays):.1f}" if delays else "none"


RATES = (("images_per_s", "all measured epochs"), ("median_epoch_images_per_s", "median epoch"),
         ("quiet_median_images_per_s", "median quiet epoch"))


def rate(r: dict, key: str, baseline: dict | None) -> str:
    """A training rate, and its ratio to the unwatched side of the pair."""
    if r[key] is None:
        return "– | –"
    ratio = f"{r[key] / baseline[key]:.3f}" if baseline and baseline[key] else "–"
    return f"{r[key]:.2f} | {ratio}"


def row(r: dict, baseline: dict | None) -> str:
    charts, progress = (summary(r["delays_s"]), summary(r["progress_delays_s"])) if r["watchers"] else ("–", "–")
    rates = " | ".join(rate(r, key, baseline) for key, _ in RATES)
    # only the websocket client counts the page runs it asked for
    page_runs = "–" if r["sessions"] == "chromium" else f"{r['full_runs']} / {r['fragment_runs']}"
    return (f"| {r['repeat']} | {r['watchers']} {r['sessions'] or ''} | {rates} | {r['quiet_epochs']} "
            f"| {progress} | {charts} | {r['epochs_missed']} | {r['server_cpu_percent']:.0f}% "
            f"| {r['serving_cpu_percent']:.0f}% "
            f"| {r['server_rss_mb_peak']} | {r['watcher_cpu_percent']:.0f}% | {page_runs} "
            f"| {r['load_before']:.1f} → {r['load_average'][0]:.1f} |")


def pair_ratios(results: list[dict], key: str) -> list[float]:
    """Watched / unwatched `key` within each repeat (the two sides of a pair ran minutes apart)."""
    baseline = {r["repeat"]: r[key] for r in results if r["watchers"] == 0}
    return [r[key] / baseline[r["repeat"]] for r in results
            if r["watchers"] and r[key] and baseline.get(r["repeat"])]


def table(args: argparse.Namespace, results: list[dict]) -> str:
    by_repeat = {r["repeat"]: r for r in results if r["watchers"] == 0}
    watched = [r for r in results if r["watchers"]]
    lines = [
        f"`tf_efficientnet_lite0`, strategy `{args.strategy}`, {args.epochs} epochs at {args.image_size} px, batch 32, "
        f"sample data (shapes), CPU; training images/s of epochs {args.skip_epochs + 1}–{args.epochs}: over all of "
        f"them, their median, and the median of the quiet ones (other processes kept fewer than {args.quiet_cores} "
        f"cores busy). Measured {datetime.now(timezone.utc):%Y-%m-%d %H:%M} UTC on {platform.machine()}, "
        f"{os.cpu_count()} cores, torch {torch.__version__} ({torch.get_num_threads()} threads).",
        "",
        "| repeat | watchers | images/s, all epochs | vs none | median epoch | vs none | median quiet epoch | vs none "
        "| quiet epochs | epoch on the progress line after, s (median / p90 / max) | on the charts after, s "
        "| epochs missed | server CPU | of it serving | server peak RSS (MB) | watchers' CPU "
        "| page runs: whole / progress line | load average |",
        "|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|---|",
        *(row(r, by_repeat.get(r["repeat"]) if r["watchers"] else None) for r in results),
        "",
    ]
    for key, name in RATES:
        if ratios := pair_ratios(results, key):
            lines.append(f"Training with {args.watchers} watchers / without, {name}, per pair: "
                         f"{', '.join(f'{x:.3f}' for x in ratios)} (median **{statistics.median(ratios):.3f}**).")
    for where, key in (("progress line", "progress_delays_s"), ("charts", "delays_s")):
        if delays := [d for r in watched for d in r[key]]:
            lines.append(f"A finished epoch reached the watchers' {where} after {summary(delays)} s (median / p90 / "
                         f"max) over {len(delays)} epoch-watcher pairs.")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    results = []
    for repeat in range(args.repeats):
        order = (0, args.watchers) if repeat % 2 == 0 else (args.watchers, 0)
        for watchers in order:
            result = {"repeat": repeat + 1, **side(args, watchers)}
            print(json.dumps({**result, "delays_s": summary(result["delays_s"]),
                              "progress_delays_s": summary(result["progress_delays_s"])}), flush=True)
            results.append(result)
    report = table(args, results)
    print(report)
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps({"args": {k: str(v) for k, v in vars(args).items()}, "results": results,
                                             "machine": {"cpus": os.cpu_count(), "platform": platform.platform(),
                                                         "torch": torch.__version__}}, indent=2))
        args.json_out.with_suffix(".md").write_text(f"# Training with watchers on its Train page\n\n{report}\n")


if __name__ == "__main__":
    main()
