"""How this server is shared: *personal* (the default: one person, every local folder) or *classroom* (switched on by
a file the teacher writes, named by $WORKBENCH_CLASSROOM): people sign in with an access code, students see their
own runs and uploads plus what the teacher shares, local folders are read only under the data roots the teacher
names, and per-person limits apply.

classroom.toml:

    data_roots = ["/srv/class-data"]          # the only folders "Folder on this computer" may read
    [limits]                                  # per person; every key optional
    queued_runs = 2                           # runs queued or training at once
    upload_mb = 200                           # one upload
    uploads = 20                              # uploads kept
    disk_mb = 2000                            # uploads + run folders
    upload_days = 7                           # unused uploads older than this are deleted
    [[people]]
    name = "teacher"
    role = "teacher"
    code_sha256 = "..."                       # sha256 of the access code (or `code = "..."` in plain text)
    [[people]]
    name = "ada"
    code = "maple-7"

Everything a browser sends is checked here or in the layer that uses it: access codes, names, paths.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import re
from dataclasses import dataclass, field
from pathlib import Path

try:
    import tomllib
except ModuleNotFoundError:  # Python 3.10
    import tomli as tomllib

CLASSROOM_ENV = "WORKBENCH_CLASSROOM"
ROLES = ("teacher", "student")
_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,39}$")  # becomes a folder name: no separators, no dots first


class AccessError(PermissionError):
    """Something this person may not do, or a limit reached; the message says which and what to do instead."""


@dataclass(frozen=True)
class Person:
    name: str
    role: str = "student"
    code_sha256: str = field(default="", repr=False)

    @property
    def is_teacher(self) -> bool:
        return self.role == "teacher"


ME = Person("me", "teacher")
"""The one person of a personal server: they may do everything."""


@dataclass(frozen=True)
class Limits:
    queued_runs: int = 2
    upload_mb: int = 200
    uploads: int = 20
    disk_mb: int = 2000
    upload_days: float = 7.0


@dataclass(frozen=True)
class ServerMode:
    classroom: bool = False
    data_roots: tuple[Path, ...] = ()
    people: tuple[Person, ...] = ()
    limits: Limits = field(default_factory=Limits)
    source: str = ""
    """The classroom file this mode was read from ("" for personal)."""

    def sign_in(self, code: str) -> Person:
        """The person this access code belongs to; AccessError for a wrong code (or any code on a personal server,
        which needs none)."""
        if not self.classroom:
            return ME
        digest = hashlib.sha256(str(code).strip().encode()).hexdigest()
        for person in self.people:
            if hmac.compare_digest(person.code_sha256, digest):
                return person
        raise AccessError("That access code is not one of this class's. Check it with your teacher (codes are case "
                          "sensitive).")

    def person_named(self, name: str) -> Person | None:
        """The class member signed in through an identity provider under `name` (st.login's email or name)."""
        return next((p for p in self.people if p.name == name), None)

    def describe(self) -> list[str]:
        """What this mode allows, in a few plain lines (the sidebar shows them)."""
        if not self.classroom:
            return ["**Personal mode**: only this computer can open the app, and any folder on it can be used."]
        roots = ", ".join(f"`{r}`" for r in self.data_roots) or "none (uploads only)"
        limits = self.limits
        return [
            "**Classroom mode**: each person signs in with their access code.",
            f"Folders on the server: only under {roots}.",
            "Students see their own runs and uploads, and the runs the teacher shares; the teacher sees everything.",
            f"Each person: {limits.queued_runs} runs queued or training at once, uploads up to {limits.upload_mb} MB "
            f"each and {limits.uploads} kept, {limits.disk_mb} MB of disk in all.",
        ]


def server_mode(environ: dict | None = None) -> ServerMode:
    """The mode $WORKBENCH_CLASSROOM sets: unset, personal; a classroom.toml path, classroom (ValueError naming the
    file and the problem if it cannot be used: a server must not start half-protected)."""
    path = (environ if environ is not None else os.environ).get(CLASSROOM_ENV, "").strip()
    return read_classroom(Path(path)) if path else ServerMode()


def read_classroom(path: Path) -> ServerMode:
    try:
        values = tomllib.loads(path.read_text())
    except (OSError, tomllib.TOMLDecodeError) as e:
        raise ValueError(f"Classroom file '{path}' cannot be read: {e}.") from None
    people = tuple(_person(entry, path) for entry in values.get("people", []))
    if not any(p.is_teacher for p in people):
        raise ValueError(f"Classroom file '{path}' names no teacher: add a [[people]] entry with role = \"teacher\".")
    names = [p.name for p in people]
    if len(set(names)) != len(names) or len({p.code_sha256 for p in people}) != len(people):
        raise ValueError(f"Classroom file '{path}': every person needs their own name and their own access code.")
    roots = tuple(Path(r).expanduser().resolve() for r in values.get("data_roots", []))
    missing = [str(r) for r in roots if not r.is_dir()]
    if missing:
        raise ValueError(f"Classroom file '{path}': data root(s) {', '.join(missing)} are not folders on this server.")
    known = Limits.__dataclass_fields__
    unknown = set(values.get("limits", {})) - set(known)
    if unknown:
        raise ValueError(f"Classroom file '{path}': unknown limit(s) {', '.join(sorted(unknown))}; the limits are "
                         f"{', '.join(known)}.")
    limits = Limits(**{k: type(getattr(Limits(), k))(v) for k, v in values.get("limits", {}).items()})
    return ServerMode(True, roots, people, limits, str(path))


def _person(entry: dict, path: Path) -> Person:
    name, role = str(entry.get("name", "")), str(entry.get("role", "student"))
    if not _NAME.match(name):
        raise ValueError(f"Classroom file '{path}': '{name}' cannot be a name (letters, digits, '-', '_' and '.', "
                         "at most 40, not starting with '.').")
    if role not in ROLES:
        raise ValueError(f"Classroom file '{path}': {name}'s role must be teacher or student, not '{role}'.")
    digest = str(entry.get("code_sha256", "")).lower() or (
        hashlib.sha256(str(entry["code"]).strip().encode()).hexdigest() if entry.get("code") else "")
    if not re.fullmatch(r"[0-9a-f]{64}", digest):
        raise ValueError(f"Classroom file '{path}': {name} needs an access code (code = \"...\" or code_sha256).")
    return Person(name, role, digest)


def inside_roots(path: str | Path, roots: tuple[Path, ...]) -> Path:
    """`path` resolved (symlinks followed, `..` applied) if it lies inside one of `roots`; AccessError otherwise.
    With no roots, nothing on the server may be read."""
    text = str(path).strip()
    resolved = Path(text).expanduser().resolve()
    if any(resolved == root or resolved.is_relative_to(root) for root in roots):
        return resolved
    shown = ", ".join(str(r) for r in roots) or "none: use an upload"
    how = " (it leads through a symbolic link)" if _through_link(Path(text).expanduser()) else \
        " (it climbs out with '..')" if ".." in Path(text).parts else ""
    raise AccessError(f"'{text}' is outside the folders this class may read{how}. Folders the teacher opened: "
                      f"{shown}. Choose a folder inside one of them, or upload your images.")


def _through_link(path: Path) -> bool:
    parts = path.absolute().parts
    return any(Path(*parts[:i]).is_symlink() for i in range(2, len(parts) + 1))
