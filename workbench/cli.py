"""`python -m workbench ...`: the same library calls the Streamlit pages make, from a terminal."""

from __future__ import annotations

import argparse
import dataclasses
import os
import sys
import textwrap
import time
import types
import typing
from pathlib import Path

import pandas as pd
import torch
from tqdm import tqdm

from .backbones import BackboneError, list_backbones
from .charts import runs_table
from .config import RunConfig
from .data import DataError
from .export import export_zip, read_report
from .predict import Predictor, describe
from .registry import RunRegistry
from .runs import load_run
from .strategies import STRATEGIES
from .train import Event, Run, find_lr


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

    def __init__(self, prefix: str = "") -> None:
        self.bar: tqdm | None = None
        self.epochs = 0
        self.prefix = prefix

    def _write(self, text: str) -> None:
        tqdm.write(self.prefix + text)

    def __call__(self, event: Event) -> None:
        data = event.data
        if event.kind == "status":
            self._close_bar()
            self._write(f"· {data['phase']}")
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
                self._write(f"  epoch {m['epoch']}: train loss {m['train_loss']:.3f}  val loss {m['val_loss']:.3f}  "
                           f"val accuracy {m['val_acc']:.1%}  ({m['images_per_s'] or 0:.1f} img/s)")
        elif event.kind in ("finished", "stopped", "failed"):
            self._close_bar()

    def _show(self, desc: str, done: int, total: int, unit: str, rate: float | None, loss: float | None) -> None:
        if self.bar is None or self.bar.desc != self.prefix + desc:
            self._close_bar()
            self.bar = tqdm(desc=self.prefix + desc, total=total, unit=unit, leave=True)
        self.bar.n = done
        postfix = {"img_s": f"{rate:.1f}"} if rate else {}
        if loss is not None:
            postfix["loss"] = f"{loss:.3f}"
        self.bar.set_postfix(postfix, refresh=True)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _health(self, report: dict) -> None:
        counts = ", ".join(f"{c}: {n['train']}+{n['val']}" for c, n in report["counts"].items())
        self._write(f"  classes (train+val): {counts}")
        for problem in report.get("problems", []):
            self._write(f"  ! {problem}")

    def _started(self, info: dict, run_dir: str) -> None:
        source = info["weights_source"]
        loud = "" if source["pretrained"] else "   <-- NOT PRETRAINED"
        self._write(f"  pretrained: {source['description']}{loud}")
        self._write(f"  trainable parameters: {info['trainable_params']:,} of {info['total_params']:,}"
                   f"  ({info['frozen_groups']} of {len(info['layer_groups'])} layer groups frozen)")
        self._write(f"  run directory: {run_dir}")


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


RACE_COLUMNS = ["strategy", "freeze depth", "epochs", "image size", "val accuracy", "trainable params", "time s",
                "images/s", "weight source", "status"]
BEST_IS_HIGHEST = {"val accuracy": True, "trainable params": False, "time s": False, "images/s": True}


def markdown_table(table: pd.DataFrame) -> str:
    """A markdown table with the best value of each comparable column in bold."""
    shown = table.copy().astype(object)
    for column, highest in BEST_IS_HIGHEST.items():
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().any():
            best = values.max() if highest else values.min()
            shown[column] = [f"**{v}**" if v == best else v for v in shown[column]]
    shown["val accuracy"] = [_percent(v) for v in shown["val accuracy"]]
    return shown.to_markdown(index=False)


def _percent(value) -> str:
    text = str(value)
    bold = text.startswith("**")
    number = text.strip("*")
    try:
        formatted = f"{float(number):.1%}"
    except ValueError:
        return text
    return f"**{formatted}**" if bold else formatted


def _wait_for(runs_to_wait: list[Run], registry: RunRegistry) -> None:
    try:
        for run in runs_to_wait:
            run.wait()
    except KeyboardInterrupt:
        print("\nStopping: the current run after its batch, the queued ones at once…", file=sys.stderr)
        for run in runs_to_wait:
            registry.stop(run.id)
        for run in runs_to_wait:
            run.wait()


def _report_many(runs_done: list[Run], args: argparse.Namespace, title: str) -> int:
    records = [load_run(run.dir) if run.dir.exists() else None for run in runs_done]
    for run, record in zip(runs_done, records, strict=True):
        if record is None:
            print(f"  {run.config.strategy}: {run.status}: {run.error}", file=sys.stderr)
    table = runs_table([r for r in records if r is not None])[RACE_COLUMNS]
    text = f"{title}\n\n{markdown_table(table)}\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
        print(f"table written to {args.markdown}")
    return 0 if all(run.status == "finished" for run in runs_done) else 1


def cmd_race(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    registry = RunRegistry(config.runs_path())
    runs_started = registry.race(config, [s.strip() for s in args.strategies.split(",") if s.strip()])
    for run in runs_started:
        run.subscribe(ProgressPrinter(prefix=f"[{run.config.strategy}] "))
    _wait_for(runs_started, registry)
    first = runs_started[0].config
    title = (f"Strategy race on `{Path(first.data).name}` with `{first.backbone}`, {time.strftime('%Y-%m-%d')}, "
             f"{os.cpu_count()} CPU cores, torch {torch.__version__}"
             f"{', CUDA' if torch.cuda.is_available() else ''}")
    return _report_many(runs_started, args, title)


def cmd_sweep(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    registry = RunRegistry(config.runs_path())
    depths = [int(d) for d in args.depths.split(",")] if args.depths else None
    runs_started = registry.freeze_sweep(config, depths)
    for run in runs_started:
        run.subscribe(ProgressPrinter(prefix=f"[depth {run.config.freeze_depth}] "))
    _wait_for(runs_started, registry)
    return _report_many(runs_started, args, f"Freeze-depth sweep with `{config.backbone}`")


def cmd_lr_find(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    with tqdm(total=args.steps, desc="lr sweep", unit="step") as bar:
        result = find_lr(config, args.min_lr, args.max_lr, args.steps, lambda done, _: bar.update(done - bar.n))
    print(f"{'learning rate':>14}  smoothed loss")
    for lr, loss in zip(result.lrs, result.losses, strict=True):
        marker = "  <-- suggested" if lr == result.suggestion else ""
        print(f"{lr:14.2e}  {loss:.4f}{marker}")
    print(f"suggested learning rate: {result.suggestion:.2e}  (use it with --lr)")
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


def cmd_predict(args: argparse.Namespace) -> int:
    try:
        predictor = Predictor.from_run(args.run)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    failed = 0
    for image in args.images:  # one at a time, so one unreadable image does not hide the others' answers
        try:
            print(f"{image}: {describe(predictor.predict([image], args.top_k)[0])}")
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    try:
        path = export_zip(args.run, args.out)
    except FileNotFoundError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    print(f"model exported to {path}")
    print(read_report(path).sentence())
    return 0


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="workbench", description="Transfer Learning Workbench")
    sub = parser.add_subparsers(dest="command", required=True)
    train = sub.add_parser("train", help="train a backbone on an image folder with a transfer strategy")
    add_config_arguments(train)
    train.set_defaults(func=cmd_train)
    lr_find = sub.add_parser("lr-find", help="sweep the learning rate and suggest one (before fine-tuning)")
    add_config_arguments(lr_find)
    lr_find.add_argument("--min-lr", type=float, default=1e-6)
    lr_find.add_argument("--max-lr", type=float, default=1.0)
    lr_find.add_argument("--steps", type=int, default=40, help="optimisation steps in the sweep")
    lr_find.set_defaults(func=cmd_lr_find)
    race = sub.add_parser("race", help="the same data and backbone under several strategies, then a table")
    add_config_arguments(race)
    race.add_argument("--strategies", default="linear_probe,partial,full,gradual,discriminative,l2sp,scratch",
                      help="comma-separated strategy names")
    race.add_argument("--markdown", help="also write the result table to this markdown file")
    race.set_defaults(func=cmd_race)
    sweep = sub.add_parser("sweep", help="partial fine-tuning at every freeze depth: accuracy and time vs depth")
    add_config_arguments(sweep)
    sweep.add_argument("--depths", help="comma-separated freeze depths (default: every depth)")
    sweep.add_argument("--markdown", help="also write the result table to this markdown file")
    sweep.set_defaults(func=cmd_sweep)
    backbones = sub.add_parser("backbones", help="which backbones have pretrained weights here, and from where")
    backbones.add_argument("query", nargs="?", default="", help="filter names (substring or glob)")
    backbones.add_argument("--all", action="store_true", help="also list models that would download weights")
    backbones.set_defaults(func=cmd_backbones)
    strategies = sub.add_parser("strategies", help="every strategy with its explanation")
    strategies.set_defaults(func=cmd_strategies)
    predict = sub.add_parser("predict", help="classify images with a trained run's model (top classes per image)")
    predict.add_argument("--run", required=True, help="the run directory (runs/<run id>)")
    predict.add_argument("--top-k", type=int, default=3, help="how many classes to show per image")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.set_defaults(func=cmd_predict)
    export = sub.add_parser("export", help="write a run's model as a zip that works without the workbench")
    export.add_argument("--run", required=True, help="the run directory (runs/<run id>)")
    export.add_argument("--out", required=True, help="the .zip file to write")
    export.set_defaults(func=cmd_export)
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
