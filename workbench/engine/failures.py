"""Why a run failed, in words a user can act on, and giving back what an ended run held."""

from __future__ import annotations

import ctypes
import ctypes.util
import errno
import functools
import gc
import resource

import torch

from workbench.core.errors import Diverged


def peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # KiB on Linux; whole process


def out_of_memory(error: BaseException) -> bool:
    """A GPU or CPU allocation failure (PyTorch raises a RuntimeError for the CPU one)."""
    text = str(error).lower()
    return (isinstance(error, torch.OutOfMemoryError | MemoryError) or "out of memory" in text
            or "can't allocate memory" in text)


def disk_full(error: BaseException) -> bool:
    return isinstance(error, OSError) and error.errno in (errno.ENOSPC, errno.EDQUOT)


def describe_failure(error: BaseException, config=None) -> str:
    """The error in a sentence that says what happened, for the run record and the page."""
    detail = f"{type(error).__name__}: {str(error).strip().splitlines()[0] if str(error).strip() else ''}"
    if out_of_memory(error) and config is not None:
        return f"Out of memory while training with batch size {config.batch_size} at {config.image_size} px ({detail})."
    if disk_full(error):
        return f"The disk is full: '{error.filename or 'a file'}' could not be written ({error.strerror})."
    if isinstance(error, Diverged):
        return str(error)
    return f"{type(error).__name__}: {error}"


def failure_hint(error: BaseException, config=None) -> str:
    """What to try, in plain words, for the failures people actually hit."""
    if out_of_memory(error):
        if config is not None and config.batch_size > 1:
            return (f"Train again with batch size {config.batch_size // 2} (or smaller images, or a smaller "
                    "backbone). The memory this run held has been given back, so the next run can start.")
        return "The model ran out of memory: lower the batch size or the image size, or pick a smaller backbone."
    if isinstance(error, Diverged):
        lower = f" (e.g. {config.lr / 10:.1g})" if config is not None and config.lr else ""
        return (f"Training diverged: the learning rate is probably too high. Train again with one about 10 times "
                f"lower{lower}, or let the learning-rate finder on the Model page (`python -m workbench lr-find`) "
                "suggest one.")
    if disk_full(error):
        return ("Free some disk space (for example delete runs you no longer need from the runs folder) and train "
                "again. Runs saved before are untouched.")
    return "See the error above; if it mentions a file, fix or remove that file and start again."


def release_memory(device: torch.device) -> None:
    """Give back what an ended run held, so the next one starts with the memory free: collect unreachable objects
    now rather than at some later collection, and on a GPU return the blocks PyTorch's allocator keeps cached (after
    an out-of-memory error they would otherwise stay reserved and the next run would fail too)."""
    gc.collect()
    if device.type == "cuda":
        torch.cuda.empty_cache()
    _trim_heap()


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL | None:
    try:
        return ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
    except OSError:
        return None


def _trim_heap() -> None:
    """Hand the C heap's free pages back to the operating system. glibc keeps what a run freed (decoded images,
    activations) mapped in the process, so a server's memory would ratchet up run after run (about 80 MB over 50
    tiny runs in bench/bench_soak.py) although nothing leaks. Elsewhere than glibc there is nothing to do."""
    libc = _libc()
    if libc is not None and hasattr(libc, "malloc_trim"):
        libc.malloc_trim(0)
