"""`python -m workbench ...`: the same library calls the Streamlit pages make, from a terminal."""

from __future__ import annotations

import argparse
import dataclasses
import sys
import textwrap
import types
import typing

from tqdm import tqdm

from .backbones import BackboneError, list_backbones
from .config import RunConfig
from .strategies import STRATEGIES
from .train import Event, Run


def _field_type(field: dataclasses.Field) -> type:
    """The concrete type behind `int | None` style annotations (they are strings under `from __future__`)."""
    hints = typing.get_type_hints(RunConfig)
    hint = hints[field.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per RunConfig field, with the field's own help text."""
    for field in dataclasses.fields(RunConfig):
        flag = "--" + field.name.replace("_", "-")
        required = field.default is dataclasses.MISSING
        default = None if required else field.default
        kind = _field_type(field)
        if kind is bool:
            parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                                help=field.metadata.get("help", ""))
            continue
        parser.add_argument(flag, type=kind, default=default, required=required, help=field.metadata.get("help", ""))


def config_from_args(args: argparse.Namespace) -> RunConfig:
    return RunConfig(**{f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig)})


class ProgressPrinter:
    """Prints a run's events: a progress bar per epoch, then the epoch's validation accuracy."""

    def __init__(self) -> None:
        self.bar: tqdm | None = None
        self.epochs = 0

    def __call__(self, event: Event) -> None:
        data = event.data
        if event.kind == "status":
            self._close_bar()
            tqdm.write(f"· {data['phase']}")
        elif event.kind == "health":
            self._health(data["report"])
        elif event.kind == "started":
            self._started(data["info"], data["run_dir"])
        elif event.kind == "progress":
            self._show(data["phase"], data["done"], data["total"], "img", data.get("images_per_s"), None)
        elif event.kind == "batch" and data["phase"] == "training":
            self._show(f"epoch {data['epoch']}/{self.epochs}", data["batch"], data["batches"], "batch",
                       data["images_per_s"], data["loss"])
        elif event.kind == "epoch_start":
            self.epochs = data["epochs"]
        elif event.kind == "epoch_end":
            self._close_bar()
            m = data["metrics"]
            if self.epochs <= 10 or m["epoch"] % (self.epochs // 10) == 0 or m["epoch"] == self.epochs:
                tqdm.write(f"  epoch {m['epoch']}: train loss {m['train_loss']:.3f}  val loss {m['val_loss']:.3f}  "
                           f"val accuracy {m['val_acc']:.1%}  ({m['images_per_s'] or 0:.1f} img/s)")
        elif event.kind in ("finished", "stopped", "failed"):
            self._close_bar()

    def _show(self, desc: str, done: int, total: int, unit: str, rate: float | None, loss: float | None) -> None:
        if self.bar is None or self.bar.desc != desc:
            self._close_bar()
            self.bar = tqdm(desc=desc, total=total, unit=unit, leave=True)
        self.bar.n = done
        postfix = {"img_s": f"{rate:.1f}"} if rate else {}
        if loss is not None:
            postfix["loss"] = f"{loss:.3f}"
        self.bar.set_postfix(postfix, refresh=True)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    @staticmethod
    def _health(report: dict) -> None:
        counts = ", ".join(f"{c}: {n['train']}+{n['val']}" for c, n in report["counts"].items())
        tqdm.write(f"  classes (train+val): {counts}")
        for problem in report.get("problems", []):
            tqdm.write(f"  ! {problem}")

    @staticmethod
    def _started(info: dict, run_dir: str) -> None:
        source = info["weights_source"]
        loud = "" if source["pretrained"] else "   <-- NOT PRETRAINED"
        tqdm.write(f"  pretrained: {source['description']}{loud}")
        tqdm.write(f"  trainable parameters: {info['trainable_params']:,} of {info['total_params']:,}"
                   f"  ({info['frozen_groups']} of {len(info['layer_groups'])} layer groups frozen)")
        tqdm.write(f"  run directory: {run_dir}")


def cmd_train(args: argparse.Namespace) -> int:
    try:
        config = config_from_args(args)
    except ValueError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    run = Run(config)
    run.subscribe(ProgressPrinter())
    run.start()
    try:
        while not run.wait(0.5):
            pass
    except KeyboardInterrupt:
        print("\nStopping after the current batch…", file=sys.stderr)
        run.stop()
        run.wait()
    if run.summary is None:  # failed before anything was written
        print(f"error: {run.error}", file=sys.stderr)
        return 2
    s = run.summary
    print(f"run {run.status}: {run.dir}")
    if s["val_accuracy"] is not None:
        print(f"validation accuracy: {s['val_accuracy']:.1%}")
    print(f"pretrained: {s['pretrained']['description']}")
    if run.status == "failed":
        print(f"error: {run.error}\nwhat to try: {run.hint}", file=sys.stderr)
        return 1
    return 0


def cmd_backbones(args: argparse.Namespace) -> int:
    infos = list_backbones(args.query)
    ready = [b for b in infos if b.weights in ("bundled", "cached")]
    print("Pretrained weights available here (work offline):")
    for b in ready:
        print(f"  {b.name:32s} {b.weights:8s} input {b.input_size}px")
    if not ready:
        print("  (none)")
    rest = [b for b in infos if b.weights not in ("bundled", "cached")]
    download = [b.name for b in rest if b.weights == "download"]
    print(f"\n{len(download)} more timm models have pretrained weights on the Hugging Face hub (downloaded on first "
          f"use when online){':' if args.all else '; --all lists them.'}")
    if args.all:
        print(textwrap.fill(", ".join(download), width=118, initial_indent="  ", subsequent_indent="  "))
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    for s in STRATEGIES.values():
        print(f"{s.name} — {s.title}")
        print(f"  trains: {s.trains}; defaults: {s.default_epochs} epochs, lr {s.default_lr:g}")
        print(textwrap.fill(s.explanation, width=110, initial_indent="  ", subsequent_indent="  "))
        print()
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Transfer Learning Workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a backbone on an image folder with a transfer strategy")
    add_config_arguments(train)
    train.set_defaults(func=cmd_train)
    backbones = sub.add_parser("backbones", help="which backbones have pretrained weights here, and from where")
    backbones.add_argument("query", nargs="?", default="", help="filter names (substring or glob)")
    backbones.add_argument("--all", action="store_true", help="also list models that would download weights")
    backbones.set_defaults(func=cmd_backbones)
    strategies = sub.add_parser("strategies", help="every strategy with its explanation")
    strategies.set_defaults(func=cmd_strategies)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (BackboneError, ValueError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
