"""Does `torch.compile` pay on this machine? The training step and the feature pass, compiled against the same code
uncompiled, for one backbone at the engine's default sizes, and what that means for a run of the default length.

1. Training step, as `Trainer.train_step` runs it: channels_last, forward + cross-entropy + backward + timm AdamW
   (the model compiled, the optimiser not), bf16 autocast on CUDA. Random batches already on the device: no data
   path, so the ratio is the most compiling can change.
2. Feature pass, as a linear probe runs it: eval mode, inference mode, `forward_features` then `forward_head(...,
   pre_logits=True)`, at the backbone's native size.

Each side runs in a fresh spawned process with a fresh Inductor cache folder (a user's first compiled run: nothing
compiled yet); `--warm-cache` also measures a compiled side that finds the first one's cache (a later run of the same
model and sizes). Both sides follow the same batch sequence as a default run: a first batch (compiled: the compile),
full batches, then the last, smaller batch of an epoch (190 training images = 5 x 32 + 30; compiled: a recompile,
since the batch size changed), then the timed full batches. Reported: seconds per image in steady state, the ratio
uncompiled / compiled, the compile seconds (the extra time of the first and of the odd-sized batch), the break-even
run length in images, and the ratio for a run of the default length with the compile counted in.

    HF_HUB_OFFLINE=1 python bench/bench_compile.py --repeats 3 --json-out bench/results/compile-cpu.json
"""

from __future__ import annotations

import argparse
import multiprocessing
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor
from datetime import datetime, timezone
from pathlib import Path

import timm.optim
import torch
import torch.nn.functional as F
from bench_train import publish

from workbench.engine.config import CPU_IMAGE_SIZE
from workbench.models.backbones import backbone_info, create_backbone
from workbench.strategies import get_strategy

DEFAULT_TRAIN_IMAGES = 190  # sample_data/shapes at the default 80/20 split: 240 images, 190 of them train
DEFAULT_VAL_IMAGES = 50
NUM_CLASSES = 5


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="timm model name")
    parser.add_argument("--device", default="cuda" if torch.cuda.is_available() else "cpu")
    parser.add_argument("--image-size", type=int, default=None,
                        help="training-step size (default: the engine's fine-tune default on this device)")
    parser.add_argument("--feature-size", type=int, default=None,
                        help="feature-pass size (default: the backbone's native size, a probe's default)")
    parser.add_argument("--batch-size", type=int, default=32, help="the engine's default batch")
    parser.add_argument("--steps", type=int, default=8, help="timed full batches per side")
    parser.add_argument("--train-images", type=int, default=DEFAULT_TRAIN_IMAGES,
                        help="training images of the default run (its last batch has the odd size)")
    parser.add_argument("--val-images", type=int, default=DEFAULT_VAL_IMAGES)
    parser.add_argument("--epochs", type=int, default=None,
                        help="epochs of the default run (default: strategy 'full's default)")
    parser.add_argument("--repeats", type=int, default=1, help="uncompiled/compiled pairs, order alternating")
    parser.add_argument("--warm-cache", action="store_true",
                        help="also measure a compiled side that finds the first one's Inductor cache")
    parser.add_argument("--backend", default="inductor",
                        help="torch.compile backend: 'inductor' (the default, what the engine uses); 'eager' only "
                             "checks the plumbing (gpu_check's CPU smoke run)")
    parser.add_argument("--skip", choices=["train", "features"], help="leave one measurement out")
    parser.add_argument("--in-process", action="store_true",
                        help="run every side in this process: quick, but not a measurement (shared caches)")
    parser.add_argument("--json-out", type=Path)
    args = parser.parse_args(argv)
    native = backbone_info(args.backbone).input_size
    on_cpu = torch.device(args.device).type == "cpu"
    args.image_size = args.image_size or (min(native, CPU_IMAGE_SIZE) if on_cpu else native)
    args.feature_size = args.feature_size or native
    args.epochs = args.epochs or get_strategy("full").default_epochs
    return args


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(device: torch.device, call) -> float:
    synchronize(device)
    start = time.perf_counter()
    call()
    synchronize(device)
    return time.perf_counter() - start


def odd_batch(total: int, batch_size: int) -> int:
    """The size of an epoch's last batch (the full size when `total` divides evenly)."""
    return total % batch_size or batch_size


def batch(size: int, count: int, device: torch.device) -> tuple[torch.Tensor, torch.Tensor]:
    images = torch.randn(count, 3, size, size, device=device).contiguous(memory_format=torch.channels_last)
    return images, torch.randint(0, NUM_CLASSES, (count,), device=device)


def sequence(args: argparse.Namespace, device: torch.device, size: int, odd: int, step) -> dict:
    """First batch, 2 full batches, the odd-sized batch, then `args.steps` timed full batches; each timed."""
    full, small = batch(size, args.batch_size, device), batch(size, odd, device)
    first = timed(device, lambda: step(*full))
    warm = [timed(device, lambda: step(*full)) for _ in range(2)]
    odd_seconds = timed(device, lambda: step(*small))
    steady = [timed(device, lambda: step(*full)) for _ in range(args.steps)]
    per_image = statistics.median(steady) / args.batch_size
    return {
        "first_batch_s": round(first, 3),
        "warm_batches_s": [round(s, 3) for s in warm],
        "odd_batch_s": round(odd_seconds, 3),
        "odd_batch_size": odd,
        "steady_batch_s": [round(s, 4) for s in steady],
        "seconds_per_image": per_image,
        # what the first and the odd-sized batch took beyond a steady batch of their size: the (re)compiles
        "overhead_s": round(first - per_image * args.batch_size + odd_seconds - per_image * odd, 2),
    }


def measure_train(args: argparse.Namespace, compiled: bool) -> dict:
    device = torch.device(args.device)
    torch.manual_seed(0)
    model, _ = create_backbone(args.backbone, NUM_CLASSES, "none")
    model = model.to(device, memory_format=torch.channels_last).train()
    optimizer = timm.optim.create_optimizer_v2(model, opt="adamw", lr=5e-4, weight_decay=0.01)
    forward = torch.compile(model, backend=args.backend) if compiled else model
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def step(images: torch.Tensor, targets: torch.Tensor) -> None:
        with torch.autocast(**autocast):
            loss = F.cross_entropy(forward(images).float(), targets)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()

    return sequence(args, device, args.image_size, odd_batch(args.train_images, args.batch_size), step)


def measure_features(args: argparse.Namespace, compiled: bool) -> dict:
    device = torch.device(args.device)
    model, _ = create_backbone(args.backbone, NUM_CLASSES, "none")
    model = model.to(device, memory_format=torch.channels_last).eval()
    autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")

    def pooled(images: torch.Tensor) -> torch.Tensor:
        return model.forward_head(model.forward_features(images), pre_logits=True)

    forward = torch.compile(pooled, backend=args.backend) if compiled else pooled

    @torch.inference_mode()
    def step(images: torch.Tensor, _targets: torch.Tensor) -> None:
        with torch.autocast(**autocast):
            forward(images).float()

    return sequence(args, device, args.feature_size, odd_batch(args.train_images, args.batch_size), step)


MEASURES = {"train": measure_train, "features": measure_features}


def in_fresh_process(name: str, args: argparse.Namespace, compiled: bool, cache_dir: str) -> dict:
    """One side in a new interpreter with its own Inductor cache folder (the environment is read at import);
    in this process with --in-process (quick, but caches shared: only for checking the plumbing)."""
    if args.in_process:
        return {**MEASURES[name](args, compiled), "load_average": os.getloadavg()}
    before = os.environ.get("TORCHINDUCTOR_CACHE_DIR")
    os.environ["TORCHINDUCTOR_CACHE_DIR"] = cache_dir
    try:
        with ProcessPoolExecutor(max_workers=1, mp_context=multiprocessing.get_context("spawn")) as pool:
            result = pool.submit(MEASURES[name], args, compiled).result()
    finally:
        if before is None:
            del os.environ["TORCHINDUCTOR_CACHE_DIR"]
        else:
            os.environ["TORCHINDUCTOR_CACHE_DIR"] = before
    return {**result, "load_average": os.getloadavg()}


def measure_pairs(args: argparse.Namespace, name: str) -> list[dict]:
    pairs = []
    for repeat in range(args.repeats):
        with tempfile.TemporaryDirectory() as cache_dir:
            sides = [("uncompiled", False), ("compiled", True)]
            pair = {}
            for side, compiled in sides if repeat % 2 == 0 else sides[::-1]:
                print(f"[{name} {repeat + 1}/{args.repeats}] {side} …", file=sys.stderr, flush=True)
                pair[side] = in_fresh_process(name, args, compiled, cache_dir)
            if args.warm_cache:
                print(f"[{name} {repeat + 1}/{args.repeats}] compiled, warm cache …", file=sys.stderr, flush=True)
                pair["compiled_warm_cache"] = in_fresh_process(name, args, True, cache_dir)
        pairs.append(pair)
    return pairs


def run_images(args: argparse.Namespace, name: str) -> int:
    """Images the default run sends through what is measured: a fine-tune's epochs, or a probe's one pass."""
    if name == "train":
        return args.train_images * args.epochs
    return args.train_images + args.val_images


def summarize(args: argparse.Namespace, name: str, pairs: list[dict]) -> dict:
    """Medians over the pairs. Break-even: images after which the compiled side has caught up its compile time."""
    def med(side: str, key: str) -> float:
        return statistics.median(p[side][key] for p in pairs)

    images = run_images(args, name)
    plain, fast = med("uncompiled", "seconds_per_image"), med("compiled", "seconds_per_image")
    overhead = max(0.0, med("compiled", "overhead_s") - med("uncompiled", "overhead_s"))
    saving = plain - fast
    summary = {
        "uncompiled_images_per_s": round(1 / plain, 2),
        "compiled_images_per_s": round(1 / fast, 2),
        "ratio": round(statistics.median(p["uncompiled"]["seconds_per_image"] / p["compiled"]["seconds_per_image"]
                                         for p in pairs), 2),
        "compile_s": round(overhead, 1),
        "break_even_images": round(overhead / saving) if saving > 0 else None,
        "default_run_images": images,
        "default_run_ratio": round(plain * images / (fast * images + overhead), 2),
    }
    if "compiled_warm_cache" in pairs[0]:
        warm = max(0.0, med("compiled_warm_cache", "overhead_s") - med("uncompiled", "overhead_s"))
        summary["compile_s_warm_cache"] = round(warm, 1)
        summary["default_run_ratio_warm_cache"] = round(plain * images / (fast * images + warm), 2)
    return summary


LABELS = {"train": "Training step (fine-tune)", "features": "Feature pass (linear probe)"}


def markdown(report: dict) -> str:
    a, m = report["args"], report["machine"]
    lines = [
        f"{m['date']} · {m['device']} · torch {m['torch']} ({m['torch_threads']} threads) · {a['backbone']} · "
        f"batch {a['batch_size']} · median of {a['repeats']} pair(s), each side in a fresh process and Inductor "
        f"cache · load average {m['load_before']} before, {m['load_after']} after",
        "",
        "| What | Size | Uncompiled images/s | Compiled images/s | Ratio | Compile s (cold cache) | Break-even | "
        "Default run: images / ratio with compile |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for name, s in report["summary"].items():
        size = a["image_size"] if name == "train" else a["feature_size"]
        warm = f" (warm cache: {s['compile_s_warm_cache']})" if "compile_s_warm_cache" in s else ""
        even = f"{s['break_even_images']} images" if s["break_even_images"] is not None else "never"
        warm_ratio = f" (warm cache: {s['default_run_ratio_warm_cache']:.2f}×)" if warm else ""
        lines.append(f"| {LABELS[name]} | {size} px | {s['uncompiled_images_per_s']} | {s['compiled_images_per_s']} | "
                     f"**{s['ratio']:.2f}×** | {s['compile_s']}{warm} | {even} | {s['default_run_images']} / "
                     f"{s['default_run_ratio']:.2f}×{warm_ratio} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    args = parse_args(argv)
    device = torch.device(args.device)
    machine = {
        "date": datetime.now(timezone.utc).isoformat(timespec="seconds"),
        "device": torch.cuda.get_device_name(device) if device.type == "cuda" else f"CPU, {os.cpu_count()} cores",
        "torch": torch.__version__,
        "torch_threads": torch.get_num_threads(),
        "load_before": round(os.getloadavg()[0], 2),
    }
    started = time.perf_counter()
    results = {name: measure_pairs(args, name) for name in MEASURES if name != args.skip}
    machine["load_after"] = round(os.getloadavg()[0], 2)
    report = {
        "machine": machine,
        "args": {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()},
        "summary": {name: summarize(args, name, pairs) for name, pairs in results.items()},
        "results": results,
        "bench_seconds": round(time.perf_counter() - started, 1),
    }
    publish(report, markdown(report), args.json_out)
    if args.json_out:
        args.json_out.with_suffix(".md").write_text(markdown(report) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
