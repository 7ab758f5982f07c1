"""The run folder's format: its file names, crash-safe writes, and whether a process is training it right now.

`runs/<run_id>/` holds config.json, health.json, metrics.jsonl (one line per epoch, flushed as it is written),
batches.jsonl, summary.json and model.safetensors + model.json.

Crash safety: every file except the two .jsonl logs is written to a temporary file, flushed to disk and renamed over
the old one, so a reader, or the app after a crash or power cut, sees the old file or the new one, never half of one.
The logs are appended a line at a time; a torn last line (the process was killed mid-write) is skipped when read.
While a process trains a run, `running.json` names that process; a run with no summary whose process is gone (killed,
closed, out of memory) is `interrupted`, and it keeps every epoch it flushed and the weights of its last checkpoint.
"""

from __future__ import annotations

import contextlib
import json
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import psutil

CONFIG_FILE = "config.json"
HEALTH_FILE = "health.json"
METRICS_FILE = "metrics.jsonl"
BATCHES_FILE = "batches.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.safetensors"
MODEL_INFO_FILE = "model.json"
LIVE_FILE = "running.json"
"""Present while a process trains the run: its pid, the process's start time and the host."""
STALE_AFTER_S = 600
"""A run trained on another host (a shared runs folder) counts as live while it wrote something this recently."""


RUN_ID = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,199}")
"""What a run id may be: one plain folder name (what `new_run_id` makes, or an imported run's), never a path."""


def run_folder(runs_dir: str | Path, run_id: str) -> Path | None:
    """The folder of run `run_id` under `runs_dir`, or None when `run_id` is not a plain run id (a browser's ?run=
    may hold anything: "../..", an absolute path, a link out of the runs folder)."""
    if not isinstance(run_id, str) or not RUN_ID.fullmatch(run_id) or ".." in run_id:
        return None
    root = Path(runs_dir).resolve()
    folder = (root / run_id).resolve()
    return folder if folder.parent == root else None


def new_run_id(strategy: str, backbone: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{strategy}-{backbone}-{secrets.token_hex(2)}"


# -------------------------------------------------------------------------------------------------------------------
# Writing


@contextmanager
def replacing(path: Path) -> Iterator[Path]:
    """A temporary path next to `path` to write the new content to; when the block ends it is flushed to disk and
    renamed over `path` in one step. If anything fails (a full disk), the temporary file is removed and `path` keeps
    its old content."""
    # pid and thread in the name: two writers of the same file never share a temporary file
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{threading.get_ident()}.tmp")
    try:
        yield tmp
        _flush_to_disk(tmp)
        os.replace(tmp, path)
    except OSError as e:
        tmp.unlink(missing_ok=True)
        raise OSError(e.errno, e.strerror, str(path)) from e  # name the file the user knows, not the temporary one
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def _flush_to_disk(path: Path) -> None:
    # Renaming is atomic, but without fsync a power cut can leave the renamed file empty on some filesystems.
    with open(path, "rb+") as f:
        os.fsync(f.fileno())


def write_json(path: Path, value: dict | list) -> None:
    """Write `value` as JSON, atomically (see `replacing`)."""
    with replacing(path) as tmp:
        tmp.write_text(json.dumps(value, indent=2, default=str))


def append_jsonl(path: Path, value: dict) -> None:
    """Append one line in one write, so a crash can tear at most the last line (which `read_jsonl` skips)."""
    with path.open("a") as f:
        f.write(json.dumps(value, default=str) + "\n")
        f.flush()


def read_jsonl(path: Path) -> list[dict]:
    """Every complete line of a log; a torn or damaged line (a crash mid-write, a line being written) is skipped."""
    if not path.exists():
        return []
    rows = []
    for line in path.read_bytes().decode("utf-8", errors="replace").splitlines():
        try:
            row = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(row, dict):
            rows.append(row)
    return rows


# -------------------------------------------------------------------------------------------------------------------
# Which runs are still training


def mark_live(run_dir: Path) -> None:
    """Record that this process trains the run (removed again by `clear_live` when the run ends)."""
    pid = os.getpid()
    write_json(Path(run_dir) / LIVE_FILE, {"pid": pid, "started": _process_start(pid), "host": socket.gethostname()})


def clear_live(run_dir: Path) -> None:
    with contextlib.suppress(OSError):  # a marker that cannot be removed is judged by its (ended) process anyway
        (Path(run_dir) / LIVE_FILE).unlink(missing_ok=True)


def is_live(run_dir: Path) -> bool:
    """True while the process named in the run's `running.json` is still the one that wrote it. A pid alone is not
    enough: after a restart (a container's app is often pid 1 again) another process may carry the same number."""
    try:
        marker = json.loads((Path(run_dir) / LIVE_FILE).read_text())
        pid, started, host = int(marker["pid"]), marker["started"], marker["host"]
    except (OSError, ValueError, KeyError, TypeError):
        return False
    if host != socket.gethostname():  # its process cannot be seen from here: judge by how recently it wrote
        newest = max((p.stat().st_mtime for p in Path(run_dir).iterdir() if p.is_file()), default=0.0)
        return time.time() - newest < STALE_AFTER_S
    now = _process_start(pid)
    return now is not None and started is not None and abs(now - started) < 1.0


TEMP_NAME = re.compile(r"\..+\.(\d+)-\d+\.tmp")
"""`replacing`'s temporary files: `.<name>.<pid>-<thread>.tmp`."""


def sweep_temps(run_dir: Path) -> None:
    """Remove the temporary files of writers that died mid-write (a kill during a checkpoint): the file they were
    replacing kept its old content, so what is left is only a half-written copy. A live writer's are left alone."""
    for path in Path(run_dir).glob(".*.tmp"):
        match = TEMP_NAME.fullmatch(path.name)
        if match and not psutil.pid_exists(int(match.group(1))):
            with contextlib.suppress(OSError):
                path.unlink()


def _process_start(pid: int) -> float | None:
    try:
        return psutil.Process(pid).create_time()
    except psutil.Error:
        return None
