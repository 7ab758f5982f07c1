"""How long a run would take on this machine: time a couple of real steps of the model, then scale up.

The measurement builds the backbone with random weights (the speed does not depend on them), runs one warm-up
step and one or two timed steps on random images, and remembers the result for the life of the process, so asking
again is free. It is a rough guide: decoding the images and evaluating add a little, other work on the machine
slows everything down.
"""

from __future__ import annotations

import statistics
import threading
import time

import timm
import torch
import torch.nn.functional as F

from workbench.engine.config import RunConfig
from workbench.strategies import get_strategy

MEASURE_BATCH_SIZE = 8  # keeps a measurement to a few seconds on a laptop CPU; larger batches are rarely faster there
SLOW_STEP_SECONDS = 1.0  # after a step this slow, one timed step is accurate enough
HEAD_SECONDS_PER_EPOCH = 0.05  # a linear head on cached features: tiny next to the backbone pass

_measured: dict[tuple, float] = {}
# One measurement at a time: two at once would share the CPU and both come out too slow.
_measure_lock = threading.Lock()


def _key(backbone: str, image_size: int, batch_size: int, trains_backbone: bool, device: str | torch.device) -> tuple:
    return backbone, image_size, min(batch_size, MEASURE_BATCH_SIZE), trains_backbone, torch.device(device).type


def measured_images_per_second(backbone: str, image_size: int, batch_size: int, trains_backbone: bool,
                               device: str | torch.device = "cpu") -> float | None:
    """The remembered result of `measure_images_per_second` for these arguments, or None if not measured yet."""
    return _measured.get(_key(backbone, image_size, batch_size, trains_backbone, device))


def measure_images_per_second(backbone: str, image_size: int, batch_size: int, trains_backbone: bool,
                              device: str | torch.device = "cpu") -> float:
    """Images per second `backbone` processes at `image_size` px on `device`: forward and backward when
    `trains_backbone`, forward only otherwise. Batches above MEASURE_BATCH_SIZE are timed at that size."""
    key = _key(backbone, image_size, batch_size, trains_backbone, device)
    with _measure_lock:
        if key not in _measured:
            _measured[key] = _time_steps(*key)
        return _measured[key]


def _time_steps(backbone: str, image_size: int, batch_size: int, trains_backbone: bool, device_type: str) -> float:
    device = torch.device(device_type)
    model = timm.create_model(backbone, pretrained=False, num_classes=10)
    model = model.to(device, memory_format=torch.channels_last).train(trains_backbone)
    images = torch.randn(batch_size, 3, image_size, image_size, device=device)
    images = images.contiguous(memory_format=torch.channels_last)
    targets = torch.randint(0, 10, (batch_size,), device=device)
    # Same precision as the training loop: bf16 autocast on GPUs, fp32 on the CPU.
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step() -> float:
        start = time.perf_counter()
        with torch.set_grad_enabled(trains_backbone), torch.autocast(**autocast):
            logits = model(images)
            if trains_backbone:
                F.cross_entropy(logits.float(), targets).backward()
                model.zero_grad(set_to_none=True)
        if device.type == "cuda":
            torch.cuda.synchronize(device)  # GPU work is asynchronous: wait for it before reading the clock
        return time.perf_counter() - start

    step()  # warm-up: first-call allocations and kernel selection
    timed = [step()]
    # The median of three steps: one step can land on a moment when something else holds the CPU (a lesson's
    # estimates were 10x too long from single slow steps). After a slow step, one more is enough.
    while len(timed) < (2 if timed[0] >= SLOW_STEP_SECONDS else 3):
        timed.append(step())
    return batch_size / statistics.median(timed)


def strategy_trains_backbone(strategy: str) -> bool:
    """The strategy's answer to `Strategy.trains_backbone` for a run with its default settings."""
    return get_strategy(strategy).trains_backbone(RunConfig(data="", strategy=strategy))


def estimate_run_seconds(strategy: str, num_train: int, num_val: int, epochs: int, images_per_second_train: float,
                         images_per_second_infer: float) -> float:
    """Seconds a run takes. A strategy that trains nothing below the head (a linear probe) passes every image
    through the backbone once and then trains only the head on the cached features; every other strategy trains on
    the images its `epoch_images` says (each training image once, for most) and looks at the rest each epoch."""
    if not strategy_trains_backbone(strategy):
        return (num_train + num_val) / images_per_second_infer + epochs * HEAD_SECONDS_PER_EPOCH
    trained, looked_at = get_strategy(strategy).epoch_images(RunConfig(data="", strategy=strategy), num_train, num_val)
    return epochs * (trained / images_per_second_train + looked_at / images_per_second_infer)


def estimate_for_machine(backbone: str, strategy: str, image_size: int, batch_size: int, epochs: int, num_train: int,
                         num_val: int, device: str | torch.device = "cpu", measure: bool = True) -> float | None:
    """`estimate_run_seconds` with the speeds measured here. With measure=False, only from speeds measured
    before: None if one is missing (so a page can show a remembered estimate without waiting)."""
    speed = measure_images_per_second if measure else measured_images_per_second
    infer = speed(backbone, image_size, batch_size, False, device)
    train = speed(backbone, image_size, batch_size, True, device) if strategy_trains_backbone(strategy) else infer
    if infer is None or train is None:
        return None
    return estimate_run_seconds(strategy, num_train, num_val, epochs, train, infer)


def describe_seconds(seconds: float) -> str:
    """A duration as a person would say it: 'under a minute', 'about 4 minutes', 'about 1.5 hours'."""
    if seconds < 60:
        return "under a minute"
    if seconds < 90 * 60:
        minutes = round(seconds / 60)
        return f"about {minutes} minute{'s' if minutes != 1 else ''}"
    return f"about {seconds / 3600:.1f} hours"


def image_size_note(trains_backbone: bool, image_size: int, native_image_size: int) -> str:
    """One sentence on what `image_size` costs and buys against the model's native size, for a strategy that trains
    the backbone every epoch or one that runs it once per image (only the head trains). The cost of a pass grows
    with the pixels, (size / native)^2; the accuracy figures were measured with lite0 on four real photo datasets
    (a linear probe: 2.5-5 points lower at 160 px than at 224, for 1.3-1.6x less time)."""
    pixels = (native_image_size / image_size) ** 2
    if image_size == native_image_size:
        if trains_backbone:
            return (f"Native size {image_size} px: the most accurate choice, but every epoch runs the backbone on "
                    f"every image: on a CPU a smaller size trains much faster for a few points of accuracy.")
        return (f"Native size {image_size} px: best accuracy when only the head trains, and cheap: the backbone "
                f"runs once per image.")
    if image_size < native_image_size:
        if trains_backbone:
            return (f"{image_size} px instead of the native {native_image_size}: about {pixels:.1f}× faster training, "
                    f"for a few points of accuracy.")
        return (f"{image_size} px instead of the native {native_image_size}: saves little time, since the backbone "
                f"runs once per image, and costs accuracy (on real photos, lite0 at 160 px instead of 224: 2.5-5 "
                f"points lower, for only 1.3-1.6× less time).")
    return (f"{image_size} px, above the native {native_image_size}: about {1 / pixels:.1f}× slower, and rarely more "
            f"accurate than the size the backbone was trained at.")
