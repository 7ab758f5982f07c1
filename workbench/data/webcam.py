"""A dataset taken with the browser's camera: the user names a few classes, takes pictures of each, and the pictures
become an image folder that `open_dataset` reads like any other.

`WebcamDataset` keeps the pictures in memory (the Data page holds one per browser session) and checks each class
name and picture as it arrives, so a problem is reported where the user made it. `save` writes
`<class>/shot-001.jpg ...` into a fresh folder under the uploads root and refuses, naming the class and the fix,
while some class has too few pictures to both train on and check with.
"""

from __future__ import annotations

import io
import shutil
import tempfile
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

from PIL import Image

from workbench.data.images import IGNORED_NAMES, DataError, decode_resized

MAX_CLASSES = 20
MAX_SHOTS_PER_CLASS = 200
MAX_CLASS_NAME_LENGTH = 60
MAX_SHOT_MB = 10  # a camera picture is well under 1 MB; this only keeps a strange one from filling the memory
MIN_SHOTS_PER_CLASS = 2  # one to learn from, one to check with
GOOD_SHOTS_PER_CLASS = 10  # the number the messages recommend
# Folder names a dataset reader takes for a split rather than a class, in any case.
SPLIT_NAMES = frozenset({"train", "training", "val", "valid", "validation", "test", "testing"})
# Characters no folder name may hold on Windows or macOS, so a saved dataset can be copied to any computer.
FORBIDDEN_CHARACTERS = '/\\:*?"<>|'
CHECK_SIZE = 64  # decoding at this size proves a picture is readable, cheaply (JPEG draft mode)
# A picture whose pixels all lie within this many levels is one flat colour: a camera clicked before its first frame
# arrived (browsers then send a black picture), or a covered lens. It teaches nothing, so it is refused.
FLAT_RANGE = 4
_SUFFIXES = {"JPEG": ".jpg", "PNG": ".png"}  # what browsers' cameras send, and the name each is saved under


class WebcamError(ValueError):
    """A class name, picture or save we refuse; the message says what was found and what to do."""


@dataclass(frozen=True)
class Shot:
    """One picture as the camera sent it."""

    data: bytes
    suffix: str  # ".jpg" or ".png", from the picture's own format


class WebcamDataset:
    """Classes in the order they were named, each with its pictures in the order they were taken.

    `revision` grows with every change, so a caller can tell whether a folder it saved still holds these pictures.
    """

    def __init__(self) -> None:
        self._shots: dict[str, list[Shot]] = {}
        self.revision = 0

    @property
    def class_names(self) -> list[str]:
        return list(self._shots)

    def add_class(self, name: str) -> str:
        """Add an empty class and return its name as kept (trimmed). Raises WebcamError if the name cannot be a
        class folder, is taken, or there are already MAX_CLASSES classes."""
        if len(self._shots) >= MAX_CLASSES:
            raise WebcamError(f"There are already {MAX_CLASSES} classes, the most a webcam dataset can have. Remove "
                              "one before adding another.")
        name = check_class_name(name, self._shots)
        self._shots[name] = []
        self.revision += 1
        return name

    def remove_class(self, name: str) -> None:
        """Forget a class and all its pictures."""
        del self._shots[self._known(name)]
        self.revision += 1

    def add_shot(self, class_name: str, data: bytes) -> None:
        """Keep a picture (JPEG or PNG bytes) for `class_name`. Raises WebcamError if it is not a readable JPEG or
        PNG image, too big, or the class already has MAX_SHOTS_PER_CLASS pictures."""
        shots = self._shots[self._known(class_name)]
        if len(shots) >= MAX_SHOTS_PER_CLASS:
            raise WebcamError(f"Class '{class_name}' already has {MAX_SHOTS_PER_CLASS} pictures, the most a class can "
                              "have here. Delete some before taking more.")
        shots.append(Shot(data, picture_suffix(data)))
        self.revision += 1

    def delete_shot(self, class_name: str, index: int) -> None:
        """Delete the `index`-th picture (from 0, in the order taken) of `class_name`."""
        shots = self._shots[self._known(class_name)]
        if not 0 <= index < len(shots):
            raise WebcamError(f"Class '{class_name}' has no picture number {index + 1}: it has {len(shots)}.")
        del shots[index]
        self.revision += 1

    def shots(self, class_name: str) -> list[bytes]:
        """The pictures of `class_name`, as the bytes the camera sent."""
        return [shot.data for shot in self._shots[self._known(class_name)]]

    def count(self, class_name: str) -> int:
        return len(self._shots[self._known(class_name)])

    def problems(self) -> list[str]:
        """Why these pictures cannot be saved as a dataset yet (each line names the class and the fix); empty when
        they can."""
        found = []
        if len(self._shots) < 2:
            found.append(f"There {'is' if len(self._shots) == 1 else 'are'} {len(self._shots)} "
                         f"class{'' if len(self._shots) == 1 else 'es'}: add at least 2, since the model learns to "
                         "tell classes apart.")
        for name, shots in self._shots.items():
            if len(shots) < MIN_SHOTS_PER_CLASS:
                found.append(f"Class '{name}' has {_shots_phrase(len(shots))}: take at least {MIN_SHOTS_PER_CLASS} "
                             f"(one to learn from, one to check with), {GOOD_SHOTS_PER_CLASS} or more to learn well.")
        return found

    def save(self, dest_root: Path | str) -> Path:
        """Write the pictures as `<class>/shot-001.jpg ...` into a fresh folder under `dest_root` (created if
        needed; nothing already there is touched) and return that folder, for `open_dataset`.

        Raises WebcamError (every problem, each naming the class and the fix) when `problems()` finds any; nothing is
        written then. A failed write removes the partly written folder and re-raises the OSError.
        """
        problems = self.problems()
        if problems:
            raise WebcamError(" ".join(problems))
        root = Path(dest_root)
        root.mkdir(parents=True, exist_ok=True)
        folder = Path(tempfile.mkdtemp(prefix="webcam-", dir=root))
        try:
            for name, shots in self._shots.items():
                (folder / name).mkdir()
                for number, shot in enumerate(shots, start=1):
                    (folder / name / f"shot-{number:03d}{shot.suffix}").write_bytes(shot.data)
        except BaseException:
            shutil.rmtree(folder, ignore_errors=True)  # all or nothing: no half-saved dataset is left to be read
            raise
        return folder

    def _known(self, class_name: str) -> str:
        if class_name not in self._shots:
            raise WebcamError(f"There is no class '{class_name}'. Add it first.")
        return class_name


def check_class_name(name: str, taken: Iterable[str] = ()) -> str:
    """`name` trimmed (and in Unicode's composed form), if it can be a class folder beside those in `taken`;
    otherwise WebcamError says why and what to do."""
    name = unicodedata.normalize("NFC", name.strip())
    if not name:
        raise WebcamError("Type a name for the class first, e.g. 'thumbs up' or 'my mug'.")
    if len(name) > MAX_CLASS_NAME_LENGTH:
        raise WebcamError(f"The class name is {len(name)} characters long: keep it to {MAX_CLASS_NAME_LENGTH} or "
                          "fewer.")
    if any(c in FORBIDDEN_CHARACTERS or not c.isprintable() for c in name):
        raise WebcamError(f"Class '{name}' holds a character a folder name cannot hold (any of {FORBIDDEN_CHARACTERS} "
                          "or an invisible one): each class is saved as a folder. Use letters, digits, spaces, '-' "
                          "or '_'.")
    if name.startswith("."):
        raise WebcamError(f"Class '{name}' starts with a dot: folders whose names start with a dot are hidden and "
                          "not read. Choose a name that starts with a letter or digit.")
    if name.lower() in SPLIT_NAMES or name in IGNORED_NAMES:
        raise WebcamError(f"Class '{name}' cannot be used: a folder with that name is read as a dataset split "
                          "(train, val, test) or skipped, not as a class. Choose another name.")
    same = next((other for other in taken if other.casefold() == name.casefold()), None)
    if same is not None:
        raise WebcamError(f"There is already a class '{same}'. Class names must differ by more than upper and lower "
                          "case (each is saved as a folder): choose another name, or take more pictures of that one.")
    return name


def picture_suffix(data: bytes) -> str:
    """".jpg" or ".png": what a camera picture is saved as. Raises WebcamError if `data` is too big, is not a JPEG
    or PNG image that decodes, or is one flat colour."""
    if len(data) > MAX_SHOT_MB * 2**20:
        raise WebcamError(f"The picture is {len(data) / 2**20:.0f} MB, more than the {MAX_SHOT_MB} MB a camera "
                          "picture may be. Take it again, at a lower resolution.")
    try:
        pixels = decode_resized(io.BytesIO(data), CHECK_SIZE)
        with Image.open(io.BytesIO(data)) as image:
            format_name = image.format
    except DataError:
        raise WebcamError("The picture could not be read as an image, so it was not kept. Take it again.") from None
    if format_name not in _SUFFIXES:
        raise WebcamError(f"The picture is a {format_name} image; only JPEG and PNG pictures are kept. Take it again "
                          "with the camera.")
    if int(pixels.max()) - int(pixels.min()) <= FLAT_RANGE:
        raise WebcamError("The picture is all one colour (the camera was not ready yet, or something covers it), so "
                          "it was not kept. Wait until the camera shows a picture, then take it again.")
    return _SUFFIXES[format_name]


def _shots_phrase(count: int) -> str:
    return "no pictures yet" if count == 0 else f"only {count} shot"
