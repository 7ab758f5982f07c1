"""Reading one image file: every format Pillow (and its registered plugins) opens, made RGB, checked once.

`load_rgb` and `decode_resized` are what training, prediction and the insight views use; `check_image_file` is the
health check's one look at each file (it decodes and hashes it), `check_files` runs it over many files on every core.
"""

from __future__ import annotations

import hashlib
import io
import multiprocessing
import os
import struct
import sys
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ProcessPoolExecutor
from concurrent.futures.process import BrokenProcessPool
from contextlib import contextmanager, suppress
from pathlib import Path
from typing import IO

import numpy as np
import pillow_heif
import torch
from PIL import Image, ImageOps
from torchvision.transforms.v2.functional import pil_to_tensor

# iPhone photos are HEIC; Pillow reads them through pillow-heif's plugin (AVIF it reads itself, since 11.2.1). Its
# draft() decodes an embedded thumbnail when one is big enough, as JPEG draft mode decodes at a reduced scale; a file
# cut short still fails to open, because libheif checks the main image's extent against the file's size.
pillow_heif.register_heif_opener()

IMAGE_EXTENSIONS = frozenset({".jpg", ".jpeg", ".png", ".bmp", ".gif", ".webp", ".tif", ".tiff",
                              ".heic", ".heif", ".avif"})
IGNORED_NAMES = frozenset({"__MACOSX", "Thumbs.db", "desktop.ini"})  # OS clutter, never the user's data
ARCHIVE_EXTENSIONS = frozenset({".zip", ".tar", ".gz", ".tgz", ".bz2", ".xz", ".7z", ".rar"})
VERIFY_DRAFT_SIZE = (64, 64)  # checking a file decodes is enough; JPEG draft mode makes it cheap
RESIZE_METHOD = Image.Resampling.BICUBIC  # how every image is resized, for training and prediction

# PIL raises any of these on malformed files, depending on the format and where the bytes go wrong.
_DECODE_FAILURES = (OSError, ValueError, SyntaxError, EOFError, IndexError, TypeError, RuntimeError, struct.error)


class DataError(ValueError):
    """Bad dataset input. The message names the file/folder/option and says what to do."""

    def __init__(self, message: str):
        super().__init__(readable_name(message))  # it quotes paths, which may not be valid UTF-8


def load_rgb(path: Path) -> Image.Image:
    """Open an image as RGB: EXIF orientation applied; grayscale (L, I;16, I, F), LA, RGBA/PA/P-with-transparency
    (composited on white), palette, CMYK converted. Raises DataError naming the file on failure."""
    return _load_rgb(path, None)


def decode_resized(image: str | Path | IO[bytes] | Image.Image, size: int) -> torch.Tensor:
    """uint8 [3, size, size]: the image as RGB (see `load_rgb`), its short side resized to `size` (bicubic) and the
    centre cropped square. This is what training keeps of every image before augmentation or the evaluation crop.

    `image` is a file path, an open binary file read from its start (an upload; its `name` is used in errors) or a PIL
    image. Files decode like the training cache decodes them (JPEGs in draft mode at about `size`), so predictions
    match training's own evaluation exactly. Raises DataError naming the image if it cannot be read."""
    if isinstance(image, Image.Image):
        try:
            rgb = _to_rgb(ImageOps.exif_transpose(image))
        except _Unreadable as e:
            raise DataError(f"Cannot use the image given: {e}.") from None
    elif isinstance(image, str | Path):
        rgb = _load_rgb(Path(image), (size, size))
    else:
        image.seek(0)  # an upload may have been read before (by an earlier rerun of the page, or st.image)
        rgb = _load_rgb(image, (size, size))
    square = ImageOps.fit(rgb, (size, size), method=RESIZE_METHOD)
    return pil_to_tensor(square).contiguous()


def _load_rgb(source: Path | IO[bytes], draft_size: tuple[int, int] | None) -> Image.Image:
    try:
        return _decode(source, draft_size)
    except _Unreadable as e:
        name = source if isinstance(source, Path) else getattr(source, "name", "the uploaded image")
        raise DataError(f"Cannot read image '{name}': {e}. Fix, convert or remove this file.") from None


def readable_name(name: str) -> str:
    """A file or folder name as text that can be shown and saved anywhere. Names that are not valid UTF-8 on disk
    (e.g. Latin-1 from an old USB stick) reach Python with surrogate escapes, which a web page cannot display."""
    return name.encode("utf-8", "surrogateescape").decode("utf-8", "replace")



class _Unreadable(Exception):
    """An image that cannot be decoded; the message is the plain-language reason."""




def check_image_file(path: Path) -> tuple[str | None, str | None]:
    """(problem, sha256): why the file cannot be used (None if it can), and the hash of its bytes (None if not)."""
    suffix = path.suffix.lower()
    if not path.is_file():  # a named pipe or device would block or never end when read
        return "not a regular file", None
    if suffix in ARCHIVE_EXTENSIONS:
        return (f"an archive inside the dataset ({suffix}), not opened: unpack its images into the class folder",
                None)
    if suffix not in IMAGE_EXTENSIONS:
        return f"not an image ({suffix or 'no extension'})", None
    try:
        data = path.read_bytes()
        _decode(io.BytesIO(data), VERIFY_DRAFT_SIZE)
    except OSError as e:
        return f"cannot read file: {e.strerror}", None
    except _Unreadable as e:
        return str(e), None
    return None, hashlib.sha256(data).hexdigest()


_POOL_MIN_FILES = 1000  # below these, checking here is quicker than starting worker processes
_POOL_MIN_BYTES = 32 * 2**20
_MAX_WORKERS = 8  # the thread pool's cap before; only 2 cores have been measured


def check_files(paths: Sequence[Path], progress: Callable[[int, int], None] | None = None
                ) -> list[tuple[str | None, str | None]]:
    """`check_image_file` of every path, in order, calling progress(done, total) after each chunk of 8 to 256 files.

    Big folders are checked by one worker process per core (on Linux); small ones here, where that is quicker than
    starting workers. Raises DataError if a worker process dies (a decoder crash, or the machine out of memory)."""
    workers = _workers_for(paths)
    # Handing a worker a chunk costs about a millisecond, so chunks are big (up to 256 files), and about 16 per
    # worker, so that progress moves and the workers finish together.
    size = max(8, min(256, len(paths) // (workers * 16)))
    chunks = [list(paths[i:i + size]) for i in range(0, len(paths), size)]
    results: list[tuple[str | None, str | None]] = []
    with _process_pool(workers) as pool:
        checked_chunks = pool.map(_check_chunk, chunks) if pool else map(_check_chunk, chunks)
        try:
            for checked in checked_chunks:
                results.extend(checked)
                if progress:
                    progress(len(results), len(paths))
        except BrokenProcessPool:
            raise DataError(f"Checking the images stopped after {len(results):,} of {len(paths):,} files: a worker "
                            "process ended abruptly (the machine ran out of memory, or a file crashed the image "
                            "decoder). Try again; if it happens again, look for unusual files in the dataset."
                            ) from None
    return results


def _check_chunk(paths: list[Path]) -> list[tuple[str | None, str | None]]:
    return [check_image_file(path) for path in paths]


def _workers_for(paths: Sequence[Path]) -> int:
    """Worker processes to check `paths` with; 1: check them in this process.

    Processes, not threads: most of a small image's check is Pillow parsing its header in Python, which holds the
    GIL. On 20,000 small JPEGs two threads burnt 1.5x the CPU of one and took longer (bench/bench_scan.py). Only on
    Linux, where workers are forked: they start at once with this module loaded, where spawned ones (macOS, Windows)
    would each import torch first."""
    cores = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else 1
    if cores < 2 or sys.platform != "linux":
        return 1
    if len(paths) < _POOL_MIN_FILES:
        size = 0
        for path in paths:
            with suppress(OSError):  # a missing file is reported by its check
                size += path.stat().st_size
        if size < _POOL_MIN_BYTES:
            return 1
    return min(cores, _MAX_WORKERS)


@contextmanager
def _process_pool(workers: int) -> Iterator[ProcessPoolExecutor | None]:
    if workers < 2:
        yield None
        return
    pool = ProcessPoolExecutor(workers, mp_context=multiprocessing.get_context("fork"))
    try:
        yield pool
    finally:
        pool.shutdown(cancel_futures=True)  # after an error, the chunks not yet started are dropped


def _decode(source: Path | IO[bytes], draft_size: tuple[int, int] | None) -> Image.Image:
    """Decode to RGB, raising _Unreadable with a plain reason. `draft_size` lets JPEGs decode at reduced scale."""
    try:
        with Image.open(source) as img:
            _check_pixels(img)
            if draft_size:
                img.draft("RGB", draft_size)
            ImageOps.exif_transpose(img, in_place=True)
            return _to_rgb(img)
    except Image.DecompressionBombError as e:
        raise _Unreadable(f"image too large (decompression-bomb limit): {e}") from None
    except (FileNotFoundError, PermissionError, IsADirectoryError) as e:
        raise _Unreadable(f"cannot read file: {e.strerror}") from None
    except Image.UnidentifiedImageError:
        raise _Unreadable("corrupt or truncated image: not a format PIL recognises") from None
    except _DECODE_FAILURES as e:
        raise _Unreadable(f"corrupt or truncated image: {e}") from None


def _check_pixels(img: Image.Image) -> None:
    # PIL only warns between 1x and 2x its limit; turning that warning into an error with warnings.catch_warnings()
    # would change process-wide state from worker threads, so compare against the same limit here instead.
    limit = Image.MAX_IMAGE_PIXELS
    if limit and img.width * img.height > limit:
        raise _Unreadable(f"image too large (decompression-bomb limit): {img.width}x{img.height} = "
                          f"{img.width * img.height:,} pixels, limit {limit:,}")


def _to_rgb(img: Image.Image) -> Image.Image:
    if img.mode == "RGB":
        img.load()
        return img
    if img.mode in ("I;16", "I;16L", "I;16B", "I", "F"):
        return _high_depth_to_l(img).convert("RGB")
    if img.mode in ("RGBA", "LA", "PA", "RGBa", "La") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        white = Image.new("RGBA", rgba.size, (255, 255, 255, 255))
        return Image.alpha_composite(white, rgba).convert("RGB")
    try:
        return img.convert("RGB")
    except ValueError:
        raise _Unreadable(f"unreadable image mode {img.mode}") from None


def _high_depth_to_l(img: Image.Image) -> Image.Image:
    """Scale 16/32-bit and float grayscale to 0..255 (PIL's own convert('L') clips everything above 255)."""
    values = np.asarray(img, dtype=np.float32)
    low, high = (float(values.min()), float(values.max())) if values.size else (0.0, 0.0)
    if img.mode.startswith("I;16"):
        values = values / 257.0
    elif img.mode == "F" and low >= 0 and high <= 1:
        values = values * 255.0
    elif low < 0 or high > 255:
        values = (values - low) * (255.0 / (high - low))  # unknown range: stretch to fill 0..255
    return Image.fromarray(np.clip(np.rint(values), 0, 255).astype(np.uint8))

