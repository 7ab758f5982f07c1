"""CPU latency of a model on one image, measured the same way wherever the workbench reports it."""

from __future__ import annotations

import statistics
import time

import torch


@torch.inference_mode()
def latency(model: torch.nn.Module, image: torch.Tensor, repeats: int = 20, threads: int = 1,
            warmup: int = 3) -> dict[str, float]:
    """Milliseconds per forward pass of one image on the CPU, after `warmup` untimed passes (the first calls allocate
    memory and pick kernels), with torch limited to `threads` threads meanwhile. `latency_ms` is the median wall
    clock; `cpu_ms` the median CPU time of this thread, which with one thread is the latency an idle core would
    show and barely moves when other programs load the machine."""
    previous = torch.get_num_threads()
    torch.set_num_threads(threads)
    try:
        for _ in range(warmup):
            model(image)
        wall, cpu = [], []
        for _ in range(repeats):
            start, start_cpu = time.perf_counter(), time.thread_time()
            model(image)
            wall.append((time.perf_counter() - start) * 1000)
            cpu.append((time.thread_time() - start_cpu) * 1000)
    finally:
        torch.set_num_threads(previous)
    return {"latency_ms": round(statistics.median(wall), 3), "cpu_ms": round(statistics.median(cpu), 3)}
