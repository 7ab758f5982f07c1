"""Who may see and change which run, and each person's share of the server, on a classroom server.

The rule, checked here for the library and the pages alike: the teacher sees and may stop, delete or export every
run; a student sees their own runs and the runs the teacher shares, and may stop, delete or export only their own.
On a personal server (`classroom.ME`) everything is allowed. Limits: runs queued or training at once, uploads kept
and their size, and the disk a person's uploads and runs use; unused uploads older than the limit are cleaned.
"""

from __future__ import annotations

import shutil
import time
from pathlib import Path

from workbench.core import runfolder
from workbench.core.classroom import AccessError, Limits, Person
from workbench.runs.records import RunRecord, load_run

SHARED_FILE = "shared.json"
"""In a run folder: the teacher shared this run with the class."""
ACTIONS = {"stop": "stop", "delete": "delete", "export": "export"}


def owner_of(record: RunRecord) -> str | None:
    """Who started the run (None: a personal server's run, or one from before owners were recorded)."""
    return record.facts.get("owner")


def is_shared(record: RunRecord) -> bool:
    return (record.dir / SHARED_FILE).exists()


def can_see(person: Person, record: RunRecord) -> bool:
    return visible(person, owner_of(record), record.dir)


def visible(person: Person, owner: str | None, run_dir: Path) -> bool:
    """`can_see` from the two facts it needs (cheap enough for every poll of a live run)."""
    return may_change(person, owner) or (Path(run_dir) / SHARED_FILE).exists()


def can_change(person: Person, record: RunRecord) -> bool:
    return may_change(person, owner_of(record))


def may_change(person: Person, owner: str | None) -> bool:
    """The teacher, and whoever started the run, may change it (stop, delete, export)."""
    return person.is_teacher or owner == person.name


def require_visible(person: Person, record: RunRecord | None, run_id: str) -> RunRecord:
    """The record, if this person may see it; AccessError (the same words whether it exists or not, so ids cannot
    be probed)."""
    if record is None or not can_see(person, record):
        raise _not_yours(run_id)
    return record


def _not_yours(run_id: str) -> AccessError:
    return AccessError(f"There is no run '{run_id}' that you can open. Runs you started, and runs your teacher "
                       "shared, are listed on the Compare page.")


def require_change(person: Person, record: RunRecord, action: str) -> None:
    """AccessError unless this person may `action` (stop, delete, export) the run."""
    check_change(person, owner_of(record), record.dir, record.id, action)


def check_change(person: Person, owner: str | None, run_dir: Path, run_id: str, action: str) -> None:
    """`require_change` from the facts it needs (a live run in memory has no record yet)."""
    if not visible(person, owner, run_dir):
        raise _not_yours(run_id)
    if not may_change(person, owner):
        raise AccessError(f"Only {owner or 'its owner'} or the teacher may {ACTIONS[action]} run '{run_id}'. You can "
                          "look at it, and start a run of your own with the same choices.")


def share(person: Person, run_dir: Path, shared: bool = True) -> None:
    """The teacher shares a run with the class (or stops sharing it)."""
    if not person.is_teacher:
        raise AccessError("Only the teacher can share a run with the class.")
    marker = Path(run_dir) / SHARED_FILE
    if shared:
        runfolder.write_json(marker, {"shared_by": person.name, "at": time.time()})
    else:
        marker.unlink(missing_ok=True)


def delete_run(person: Person, run_dir: Path) -> None:
    """Delete an ended run's folder, if this person may."""
    record = load_run(run_dir)
    require_change(person, record, "delete")
    if record.status in ("running", "queued", "preparing"):
        raise AccessError(f"Run '{record.id}' is still training: stop it first, then delete it.")
    shutil.rmtree(record.dir)


# --- each person's share ------------------------------------------------------------------------------------------


def folder_bytes(folder: Path) -> int:
    return sum(p.stat().st_size for p in Path(folder).rglob("*") if p.is_file() and not p.is_symlink())


def disk_used(person: Person, runs: list[RunRecord], uploads_dir: Path | None = None) -> int:
    """Bytes of this person's run folders (and of their uploads, if `uploads_dir` is given)."""
    mine = [r.dir for r in runs if owner_of(r) == person.name and r.dir.is_dir()]
    uploads = folder_bytes(uploads_dir) if uploads_dir is not None and Path(uploads_dir).is_dir() else 0
    return sum(folder_bytes(d) for d in mine) + uploads


def check_submit(person: Person, limits: Limits, live_runs_of_person: int) -> None:
    """AccessError when this person already has as many runs queued or training as the class allows."""
    if not person.is_teacher and live_runs_of_person >= limits.queued_runs:
        raise AccessError(f"You have {live_runs_of_person} runs queued or training, the most this class allows at "
                          "once. Wait for one to finish, or stop one on the Train page.")


def check_disk(person: Person, limits: Limits, used: int, adding: int, what: str) -> None:
    """AccessError when `adding` bytes more would take this person past their disk limit."""
    if person.is_teacher:
        return
    limit = limits.disk_mb * 2**20
    if used + adding > limit:
        raise AccessError(f"{what} would take your runs and uploads to {(used + adding) / 2**20:.0f} MB, past the "
                          f"{limits.disk_mb} MB each person may use. Delete runs you no longer need (Compare page) or "
                          "old uploads, then try again.")


def check_upload(person: Person, limits: Limits, uploads_dir: Path, size: int, used: int) -> None:
    """AccessError for an upload past the person's limits: its size, how many uploads they keep, their disk."""
    if person.is_teacher:
        return
    if size > limits.upload_mb * 2**20:
        raise AccessError(f"This upload is {size / 2**20:.0f} MB, more than the {limits.upload_mb} MB one upload may "
                          "be in this class. Use fewer or smaller images.")
    kept = [p for p in Path(uploads_dir).iterdir() if p.is_dir()] if Path(uploads_dir).is_dir() else []
    if len(kept) >= limits.uploads:
        raise AccessError(f"You keep {len(kept)} uploads, the most this class allows. Delete one you no longer need "
                          "(Data page: 'Your uploads') before uploading another.")
    check_disk(person, limits, used, size, "This upload")


def clean_uploads(uploads_root: Path, limits: Limits, in_use: set[Path], now: float | None = None) -> list[Path]:
    """Delete uploads (folders two levels down: <uploads>/<person>/<upload>) not used by any run or session and
    older than the limit; returns what was deleted."""
    now = time.time() if now is None else now
    deleted = []
    for person_dir in (p for p in Path(uploads_root).iterdir() if p.is_dir()) if Path(uploads_root).is_dir() else []:
        for upload in (p for p in person_dir.iterdir() if p.is_dir()):
            old = now - upload.stat().st_mtime > limits.upload_days * 86400
            if old and upload.resolve() not in in_use:
                shutil.rmtree(upload, ignore_errors=True)
                deleted.append(upload)
    return deleted
