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

from workbench.analysis import insight
from workbench.analysis.charts import data_efficiency_table, runs_table, tradeoff_table
from workbench.analysis.fewshot import METHODS, CurveConfig, data_efficiency, parse_shots, prototype_run
from workbench.data import DataError
from workbench.deploy import tradeoff
from workbench.deploy.codegen import script_for_run
from workbench.deploy.compress import CompressConfig, compress_run, config_help, progress_printer
from workbench.deploy.export import export_zip, read_report
from workbench.engine import Event, Run, find_lr
from workbench.engine.config import RunConfig
from workbench.lessons import LESSONS, LessonBook, get_lesson, make_handout
from workbench.lessons.base import SAMPLE
from workbench.models.backbones import BackboneError, list_backbones
from workbench.models.trained import Predictor, describe
from workbench.runs.cluster import RayBackend
from workbench.runs.jobs import Reporter
from workbench.runs.records import load_run
from workbench.runs.registry import RunRegistry
from workbench.strategies import STRATEGIES, option_fields
from workbench.strategies.distill import teacher_student_comparison


def _field_type(field: dataclasses.Field) -> type:
    """The concrete type behind `int | None` style annotations (they are strings under `from __future__`); a
    strategy option's is its default's (options always have one)."""
    if field.name not in {f.name for f in dataclasses.fields(RunConfig)}:
        return type(field.default)
    hints = typing.get_type_hints(RunConfig)
    hint = hints[field.name]
    if isinstance(hint, types.UnionType) or typing.get_origin(hint) is typing.Union:
        hint = next(a for a in typing.get_args(hint) if a is not type(None))
    return hint


def _add_field(parser: argparse.ArgumentParser, field: dataclasses.Field, default) -> None:
    flag = "--" + field.name.replace("_", "-")
    kind = _field_type(field)
    if kind is bool:
        parser.add_argument(flag, action=argparse.BooleanOptionalAction, default=default,
                            help=field.metadata.get("help", ""))
        return
    parser.add_argument(flag, type=kind, default=default, required=field.default is dataclasses.MISSING,
                        help=field.metadata.get("help", ""))


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """One option per RunConfig field, then one per strategy option (each strategy's `Options` dataclass), each
    with the field's own help text."""
    for field in dataclasses.fields(RunConfig):
        if field.name != "options":
            _add_field(parser, field, None if field.default is dataclasses.MISSING else field.default)
    for field in option_fields().values():
        _add_field(parser, field, None)  # None: not given, so the chosen strategy's own default applies


def config_from_args(args: argparse.Namespace) -> RunConfig:
    common = {f.name: getattr(args, f.name) for f in dataclasses.fields(RunConfig) if f.name != "options"}
    options = {name: getattr(args, name) for name in option_fields() if getattr(args, name) is not None}
    return RunConfig(**common, options=options)


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
            # The first report comes after a chunk of work: counted as done before the bar's clock, not in no time.
            self.bar = tqdm(desc=self.prefix + desc, total=total, unit=unit, leave=True, initial=done)
        postfix = {"img_s": f"{rate:.1f}"} if rate else {}
        if loss is not None:
            postfix["loss"] = f"{loss:.3f}"
        self.bar.set_postfix(postfix, refresh=False)
        # update() redraws at most every 0.1 s, with the rate over that time: reports that arrive together (a
        # finished chunk of image checks) would otherwise show a rate of millions per second
        self.bar.update(done - self.bar.n)

    def _close_bar(self) -> None:
        if self.bar is not None:
            self.bar.close()
            self.bar = None

    def _health(self, report: dict) -> None:
        for line in health_lines(report):
            self._write(line)

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
        print(f"error: {run.error}" + (f"\nwhat to try: {run.hint}" if run.hint else ""), file=sys.stderr)
        return 2
    s = run.summary
    print(f"run {run.status}: {run.dir}")
    if s["val_accuracy"] is not None:
        print(f"validation accuracy: {s['val_accuracy']:.1%}")
    print(held_out_result(s))
    print(f"pretrained: {s['pretrained']['description']}")
    if run.status == "failed":
        print(f"error: {run.error}\nwhat to try: {run.hint}", file=sys.stderr)
        return 1
    return 0


def held_out_result(summary: dict) -> str:
    """The held-out test accuracy of a run's summary, or why there is none, in one line."""
    if summary.get("test_accuracy") is not None:
        return (f"test accuracy (held-out): {summary['test_accuracy']:.1%} on {summary['num_test']} test images, "
                "measured once on the saved model")
    if summary.get("num_test"):
        return f"test accuracy (held-out): not measured ({summary['num_test']} test images; the run did not finish)"
    return "test accuracy: no test set (add a test/ folder beside train/, or use --test-fraction)"


DEFAULT_RACE = "linear_probe,partial,full,gradual,discriminative,l2sp,scratch"
RACE_COLUMNS = ["strategy", "freeze depth", "epochs", "image size", "val accuracy", "test accuracy",
                "trainable params", "time s", "images/s", "weight source", "status"]
BEST_IS_HIGHEST = {"val accuracy": True, "trainable params": False, "time s": False, "images/s": True}
"""Bold marks the best of these; never of "test accuracy": the best run is chosen on validation alone."""


def markdown_table(table: pd.DataFrame, best_is_highest: dict[str, bool] | None = None) -> str:
    """A markdown table with the best value of each comparable column in bold (`best_is_highest`: column -> whether
    its best is its highest; default BEST_IS_HIGHEST, the race's)."""
    shown = table.copy().astype(object)
    for column, highest in (best_is_highest or BEST_IS_HIGHEST).items():
        if column not in table:
            continue
        values = pd.to_numeric(table[column], errors="coerce")
        if values.notna().any():
            best = values.max() if highest else values.min()
            shown[column] = [f"**{v}**" if v == best else v for v in shown[column]]
    for column in ("val accuracy", "test accuracy"):
        if column in shown:
            shown[column] = [_percent(v) for v in shown[column]]
    return shown.to_markdown(index=False)


def _percent(value) -> str:
    if pd.isna(value):  # e.g. no test accuracy: a run whose data had no test split
        return "–"
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


def _report_many(runs_done: list[Run], args: argparse.Namespace, title: str,
                 columns: list[str] | None = None) -> int:
    records = [load_run(run.dir) if run.dir.exists() else None for run in runs_done]
    for run, record in zip(runs_done, records, strict=True):
        if record is None:
            print(f"  {run.config.backbone} · {run.config.strategy}: {run.status}: {run.error}", file=sys.stderr)
    table = runs_table([r for r in records if r is not None])[columns or RACE_COLUMNS]
    text = f"{title}\n\n{markdown_table(table)}\n"
    if table["test accuracy"].notna().any():
        text += ("\nBold: the best of a column. Pick a run by validation accuracy; test accuracy was measured once, "
                 "at the end, on held-out images, and is never used to pick.\n")
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
        print(f"table written to {args.markdown}")
    return 0 if all(run.status == "finished" for run in runs_done) else 1


def registry_for(args: argparse.Namespace, config: RunConfig) -> RunRegistry:
    """The registry of a race or sweep: on the Ray cluster at --ray-address if given (else $WORKBENCH_RAY_ADDRESS's,
    if set), else on this computer."""
    return RunRegistry(config.runs_path(), backend=RayBackend(args.ray_address) if args.ray_address else None)


def _where(registry: RunRegistry) -> str:
    if isinstance(registry.backend, RayBackend):
        return f"the Ray cluster at {registry.backend.address}"
    return f"{os.cpu_count()} CPU cores{', CUDA' if torch.cuda.is_available() else ''}"


def cmd_race(args: argparse.Namespace) -> int:
    if args.backbones:
        return _backbone_race(args)
    config = config_from_args(args)
    registry = registry_for(args, config)
    runs_started = registry.race(config, _comma_list(args.strategies or DEFAULT_RACE))
    for run in runs_started:
        run.subscribe(ProgressPrinter(prefix=f"[{run.config.strategy}] "))
    _wait_for(runs_started, registry)
    first = runs_started[0].config
    title = (f"Strategy race on `{Path(first.data).name}` with `{first.backbone}`, {time.strftime('%Y-%m-%d')}, "
             f"{_where(registry)}, torch {torch.__version__}")
    return _report_many(runs_started, args, title)


BACKBONE_COLUMNS = ["model", "weights", "parameters", "MACs (M)", "size MB", "latency ms", "CPU ms", "train s",
                    "val accuracy", "test accuracy", "Pareto front"]
BACKBONE_BEST = {"val accuracy": True, "parameters": False, "MACs (M)": False, "size MB": False, "latency ms": False,
                 "CPU ms": False, "train s": False}


def _backbone_race(args: argparse.Namespace) -> int:
    """Every backbone (times every strategy) at one budget; then the runs, their trade-off table and the advice."""
    config = config_from_args(args)
    registry = registry_for(args, config)
    strategies = _comma_list(args.strategies) or [config.strategy]
    started = time.perf_counter()
    runs_started = registry.backbone_race(config, _comma_list(args.backbones), strategies)
    grid = len(strategies) > 1
    for run in runs_started:
        name = f"{run.config.backbone} · {run.config.strategy}" if grid else run.config.backbone
        run.subscribe(ProgressPrinter(prefix=f"[{name}] "))
    _wait_for(runs_started, registry)
    seconds = time.perf_counter() - started
    first = runs_started[0].config
    epochs = f"{first.epochs} epoch{'s' if first.epochs != 1 else ''}"
    title = (f"Backbone race on `{Path(first.data).name}` ({', '.join(strategies)}; {epochs}, seed "
             f"{first.seed}), {time.strftime('%Y-%m-%d')}, {_where(registry)}, torch {torch.__version__}; "
             f"{seconds:.0f} s in all")
    code = _report_many(runs_started, args, title, ["backbone", *RACE_COLUMNS])
    print("Measuring each saved model on this computer (latency, size, MACs)…", flush=True)
    points = tradeoff.points_for_runs([run.dir for run in runs_started if run.dir.exists()])
    if not points:
        print("No run finished with a model to measure.", file=sys.stderr)
        return 1
    table = markdown_table(tradeoff.tradeoff_table(points)[BACKBONE_COLUMNS], BACKBONE_BEST)
    text = (f"\nTrade-off of the saved models: latency is the median of {tradeoff.LATENCY_REPEATS} single-image "
            f"forwards on this computer's CPU ({tradeoff.LATENCY_THREADS} thread; CPU ms: that thread's CPU time), "
            f"size is the model file on disk, MACs at the run's image size.\n\n{table}\n\n"
            f"{tradeoff.advice(points)}\n")
    busy = tradeoff.busy_note(points)
    text += f"\n{busy}\n" if busy else ""
    print(text)
    if args.markdown:
        with Path(args.markdown).open("a") as out:
            out.write(text)
    return code


def cmd_sweep(args: argparse.Namespace) -> int:
    config = config_from_args(args)
    registry = registry_for(args, config)
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


def health_lines(report: dict) -> list[str]:
    """A dataset's health report as the CLI prints it: what was recognised, images per class and split, problems."""
    has_test = any(n.get("test") for n in report["counts"].values())
    splits = "train+val+test" if has_test else "train+val"
    counts = ", ".join(f"{c}: {n['train']}+{n['val']}" + (f"+{n.get('test', 0)}" if has_test else "")
                       for c, n in report["counts"].items())
    lines = [f"  recognised: {report['layout']}"] if report.get("layout") else []
    return [*lines, f"  classes ({splits}): {counts}", *(f"  ! {problem}" for problem in report.get("problems", []))]


def cmd_data(args: argparse.Namespace) -> int:
    """Read and check a dataset as a run would, with a progress bar, and print what was found."""
    spec = config_from_args(args).data_spec()
    with tqdm(desc="checking images", unit="img") as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        dataset = spec.open(progress=progress)
    print(f"{dataset.source}: {len(dataset.train)} training, {len(dataset.val)} validation, {len(dataset.test)} "
          "held-out test images")
    print("\n".join(health_lines(dataset.report.to_dict())))
    return 0


def cmd_strategies(args: argparse.Namespace) -> int:
    for s in STRATEGIES.values():
        print(f"{s.name} — {s.title}")
        print(f"  trains: {s.trains}; defaults: {s.default_epochs} epochs, lr {s.default_lr:g}")
        print(textwrap.fill(s.explanation, width=110, initial_indent="  ", subsequent_indent="  "))
        for option in dataclasses.fields(s.Options):
            flag = '--' + option.name.replace('_', '-')
            print(f"  {flag} (default {option.default!r}): {option.metadata.get('help', '')}")
        print()
    return 0


def cmd_lesson(args: argparse.Namespace) -> int:
    """A ready-made lesson, as its page runs it: queue its runs, move it on until every result is in, then print the
    explanation written from the runs' numbers (and write the handout when asked)."""
    if not args.id:
        for lesson in LESSONS.values():
            print(f"{lesson.id:<10} L{lesson.number} · {lesson.title}: {lesson.question.replace('**', '')}")
        return 0
    lesson = get_lesson(args.id)  # LessonError (a ValueError) names the lessons there are
    data = args.data or str(SAMPLE)
    book = LessonBook(RunRegistry(RunConfig(data=data, runs_dir=args.runs_dir).runs_path()))
    print(f"L{lesson.number} · {lesson.title}\n{lesson.question}\n")
    started = time.perf_counter()
    book.start(lesson.id, data)
    results = book.advance(lesson.id, background=False)
    try:
        while not results.complete:
            time.sleep(1.0)
            results = book.advance(lesson.id, background=False)
    except KeyboardInterrupt:
        print("\nStopped waiting; the lesson's runs go on only while this command runs.", file=sys.stderr)
        return 1
    for line in lesson.explain(results):
        print(textwrap.fill(line.replace("**", ""), width=110))
    answer = lesson.winner(results)
    print(f"\nAnswer: {lesson.choices.get(answer, '–') if answer else '–'}  ({time.perf_counter() - started:.0f} s)")
    if args.handout:
        handout = make_handout(lesson, results, book.tally(lesson.id))
        out = Path(args.handout)
        out.write_text(handout.html() if out.suffix.lower() in (".html", ".htm") else handout.markdown())
        print(f"handout written to {out}")
    return 0


def cmd_predict(args: argparse.Namespace) -> int:
    predictor = Predictor.from_run(args.run)
    failed = 0
    for image in args.images:  # one at a time, so one unreadable image does not hide the others' answers
        try:
            print(f"{image}: {describe(predictor.predict([image], args.top_k)[0])}")
        except DataError as e:
            print(f"error: {e}", file=sys.stderr)
            failed += 1
    return 1 if failed else 0


def cmd_export(args: argparse.Namespace) -> int:
    path = export_zip(args.run, args.out)
    print(f"model exported to {path}")
    print(read_report(path).sentence())
    return 0


def cmd_code(args: argparse.Namespace) -> int:
    script = script_for_run(args.run)
    if not args.out:
        print(script, end="")
        return 0
    Path(args.out).write_text(script)
    print(f"script written to {args.out}; run it with: python {args.out}")
    return 0


def cmd_distill_report(args: argparse.Namespace) -> int:
    table = teacher_student_comparison(load_run(args.run))
    print(f"Teacher and student of {Path(args.run).name}, measured now on one thread of this computer's CPU "
          f"({os.cpu_count()} cores, torch {torch.__version__}); accuracy on the student's validation images:\n")
    print(table.to_markdown())
    return 0


def cmd_explain(args: argparse.Namespace) -> int:
    predictor = Predictor.from_run(args.run)
    found = insight.explain(predictor, args.image, args.class_name)
    found.overlay().save(args.out)
    print(f"{args.image}: predicted {found.predicted_class} ({found.predicted_probability:.1%}); heatmap for "
          f"{found.class_name} ({found.probability:.1%}) written to {args.out}")
    print(f"method: {found.method}")
    return 0


def _print_drift(run_dir: str) -> None:
    print("\nWeight drift per layer group, stem -> head (||w - w0|| / ||w0||):")
    try:
        drifts = insight.weight_drift(run_dir)
    except insight.InsightError as e:
        print(f"  not available: {e}")
        return
    for d in drifts:
        print(f"  {d.index:2d} {d.name:40s} {d.drift:8.2%}{'  (frozen)' if d.frozen else ''}")


def _print_separation(run_dir: str) -> None:
    try:
        found = insight.feature_map(run_dir)
    except (insight.InsightError, DataError) as e:
        print(f"\nClass separation: not available: {e}")
        return
    print(f"\nClass separation of the validation features (silhouette, cosine; -1 mixed .. 1 apart): "
          f"before training {found.separation_before:.3f} -> after {found.separation_after:.3f}")


def cmd_report(args: argparse.Namespace) -> int:
    record = load_run(args.run)
    try:
        predictions = insight.validation_predictions(args.run)
    except (insight.InsightError, DataError) as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    names = record.class_names
    matrix = insight.prediction_matrix(predictions, names)
    accuracy = sum(p.correct for p in predictions) / max(1, len(predictions))
    print(f"{record.id}: {record.strategy} · {record.backbone} · "
          f"{accuracy:.1%} of {len(predictions)} validation images right\n")
    print(insight.class_report(matrix, names).to_markdown(floatfmt=("", ".3f", ".3f", ".3f", ".0f")))
    confused = insight.most_confused(matrix, names)
    if confused:
        print("\nMost confused: " + ", ".join(f"{t} -> {p} ({n})" for t, p, n in confused))
    for p in insight.most_wrong(predictions, args.top_losses):
        print(f"  {p.name}: {p.true_class} predicted {p.predicted_class} ({p.confidence:.0%} sure, loss {p.loss:.2f})")
    if not args.quick:
        _print_drift(args.run)
        _print_separation(args.run)
    return 0


RAY_ADDRESS_HELP = ("train the runs on the Ray cluster whose head is at this address (host:6379), side by side; "
                    "every node must see the runs folder and the data at the same path")


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
    race = sub.add_parser("race", help="the same data and backbone under several strategies (or several backbones "
                                       "with --backbones), then a table")
    add_config_arguments(race)
    race.add_argument("--strategies", help=f"comma-separated strategy names (default: {DEFAULT_RACE}; with "
                                           "--backbones: the --strategy)")
    race.add_argument("--backbones", help="comma-separated timm models to race on the same data, seed and epochs "
                                          "(with --strategies: every backbone with every strategy); prints the "
                                          "trade-off of accuracy, latency and size, and which backbone to use")
    race.add_argument("--markdown", help="also write the result table to this markdown file")
    race.add_argument("--ray-address", help=RAY_ADDRESS_HELP)
    race.set_defaults(func=cmd_race)
    sweep = sub.add_parser("sweep", help="partial fine-tuning at every freeze depth: accuracy and time vs depth")
    add_config_arguments(sweep)
    sweep.add_argument("--depths", help="comma-separated freeze depths (default: every depth)")
    sweep.add_argument("--markdown", help="also write the result table to this markdown file")
    sweep.add_argument("--ray-address", help=RAY_ADDRESS_HELP)
    sweep.set_defaults(func=cmd_sweep)
    backbones = sub.add_parser("backbones", help="which backbones have pretrained weights here, and from where")
    backbones.add_argument("query", nargs="?", default="", help="filter names (substring or glob)")
    backbones.add_argument("--all", action="store_true", help="also list models that would download weights")
    backbones.set_defaults(func=cmd_backbones)
    data = sub.add_parser("data", help="read and check a dataset as a run would: its layout, split and problems")
    add_config_arguments(data)
    data.set_defaults(func=cmd_data)
    strategies = sub.add_parser("strategies", help="every strategy with its explanation")
    strategies.set_defaults(func=cmd_strategies)
    lesson = sub.add_parser("lesson", help="run a ready-made lesson and print its explanation (no --id: list them)")
    lesson.add_argument("--id", help="the lesson, e.g. transfer (list them with `workbench lesson`)")
    lesson.add_argument("--data", help="images to run it on (default: the sample data)")
    lesson.add_argument("--runs-dir", help="where runs are written (default: $WORKBENCH_RUNS_DIR or ./runs)")
    lesson.add_argument("--handout", help="also write the handout to this file (.md, or .html for the printable page)")
    lesson.set_defaults(func=cmd_lesson)
    predict = sub.add_parser("predict", help="classify images with a trained run's model (top classes per image)")
    predict.add_argument("--run", required=True, help="the run directory (runs/<run id>)")
    predict.add_argument("--top-k", type=int, default=3, help="how many classes to show per image")
    predict.add_argument("images", nargs="+", metavar="IMAGE")
    predict.set_defaults(func=cmd_predict)
    export = sub.add_parser("export", help="write a run's model as a zip that works without the workbench")
    export.add_argument("--run", required=True, help="the run directory (runs/<run id>)")
    export.add_argument("--out", required=True, help="the .zip file to write")
    export.set_defaults(func=cmd_export)
    code = sub.add_parser("code", help="show me the code: the run as a plain timm + torch training script")
    code.add_argument("--run", required=True, help="the run directory (runs/<run id>)")
    code.add_argument("--out", help="write the script to this file (default: print it)")
    code.set_defaults(func=cmd_code)
    distill_report = sub.add_parser("distill-report", help="a distillation run's teacher and student side by side: "
                                                           "accuracy, parameters, size on disk, CPU latency")
    distill_report.add_argument("--run", required=True, help="the student's run directory (runs/<run id>)")
    distill_report.set_defaults(func=cmd_distill_report)
    _add_insight_commands(sub)
    _add_compress_fewshot_commands(sub)
    return parser


def _add_insight_commands(sub: argparse._SubParsersAction) -> None:
    explain = sub.add_parser("explain", help="Grad-CAM: where in an image a run's model finds its evidence")
    explain.add_argument("--run", required=True, help="the run directory (runs/<run id>)")
    explain.add_argument("--out", required=True, help="the PNG to write (the picture with the heatmap over it)")
    explain.add_argument("--class", dest="class_name", help="the class to explain (default: the predicted one)")
    explain.add_argument("image", metavar="IMAGE")
    explain.set_defaults(func=cmd_explain)
    report = sub.add_parser("report", help="a finished run from the inside: per-class precision, recall and F1, the "
                                           "worst mistakes, weight drift per layer group and class separation")
    report.add_argument("--run", required=True, help="the run directory (runs/<run id>)")
    report.add_argument("--top-losses", type=int, default=5, help="how many of the worst mistakes to list")
    report.add_argument("--quick", action="store_true", help="only the validation predictions: skip weight drift "
                                                             "and class separation (they rebuild the start model)")
    report.set_defaults(func=cmd_report)


# -------------------------------------------------------------------------------------------------------------------
# Compression, prototypes and the data-efficiency curve


def _comma_list(text: str | None) -> list[str]:
    return [part.strip() for part in (text or "").split(",") if part.strip()]


def cmd_compress(args: argparse.Namespace) -> int:
    try:
        sparsities = tuple(float(s) for s in _comma_list(args.sparsity))
    except ValueError:
        print(f"error: --sparsity takes numbers between 0 and 1, e.g. 0.5,0.9; got '{args.sparsity}'.",
              file=sys.stderr)
        return 2
    config = CompressConfig(run=args.run, sparsities=sparsities, structured=args.structured,
                            finetune_epochs=args.finetune_epochs, finetune_lr=args.finetune_lr,
                            quantize=tuple(_comma_list(args.quantize)), calibration_images=args.calibration_images,
                            latency_repeats=args.latency_repeats, latency_threads=args.latency_threads)
    report = compress_run(config, Reporter(progress_printer()))
    table = tradeoff_table(report)
    print(table.drop(columns=["note"]).to_markdown(index=False))
    for _, row in table.iterrows():
        print(f"- {row['variant']}: {row['note']}")
    print(f"latency: {report['latency']}")
    print(f"variants and report.json written to {Path(args.run) / 'compressed'}")
    return 0 if all(v["status"] == "ok" for v in report["variants"]) else 1


def cmd_prototypes(args: argparse.Namespace) -> int:
    shots = parse_shots(args.shots)[0]
    runs_dir = RunConfig(data=args.data, runs_dir=args.runs_dir).runs_path()
    started = time.perf_counter()
    run_dir, result = prototype_run(args.data, args.backbone, shots, runs_dir, args.image_size, args.weights,
                                    args.val_fraction, args.seed, Reporter(progress_printer()))
    print(f"prototypes from {shots} image(s) per class: validation accuracy {result.val_accuracy:.1%} "
          f"(chance {1 / len(result.images_per_class):.0%}), {time.perf_counter() - started:.1f} s")
    source = load_run(run_dir).summary.pretrained or {}  # the run was saved finished, with its summary
    loud = "" if source.get("pretrained") else "   <-- NOT PRETRAINED: random features make poor prototypes"
    print(f"pretrained: {source.get('description')}{loud}")
    print(f"run directory: {run_dir}  (predict with: python -m workbench predict --run {run_dir} IMAGE)")
    return 0


def cmd_data_efficiency(args: argparse.Namespace) -> int:
    config = CurveConfig(data=args.data, backbone=args.backbone, shots=args.shots,
                         methods=tuple(_comma_list(args.methods)), epochs=args.epochs, image_size=args.image_size,
                         seed=args.seed, val_fraction=args.val_fraction, weights=args.weights, runs_dir=args.runs_dir,
                         meta_run=args.meta_run or "")

    def show_point(point: dict) -> None:
        print(f"  {point['method']} with {point['images_per_class']:g} per class: "
              f"{point['val_accuracy']:.1%}  ({point['seconds']} s)" if point["val_accuracy"] is not None
              else f"  {point['method']}: {point['status']} {point['error']}", flush=True)

    try:
        curve = data_efficiency(config, Reporter(progress_printer(), show_point))
    except KeyboardInterrupt:
        print("\nStopped.", file=sys.stderr)
        return 1
    table = data_efficiency_table(curve["points"]).map(lambda v: f"{v:.1%}" if pd.notna(v) else "–")
    sizes = sorted(set(curve.get("image_sizes", {}).values()) or {curve["image_size"]})
    title = (f"Data efficiency on `{Path(config.data).name}` with `{config.backbone}` at "
             f"{' / '.join(map(str, sizes))} px, "
             f"{config.epochs} epochs per trained method, {curve['val_images']} validation images (the same for "
             f"every point), chance {curve['chance']:.0%}; {time.strftime('%Y-%m-%d')}, {os.cpu_count()} CPU cores, "
             f"torch {torch.__version__}")
    text = f"{title}\n\nvalidation accuracy by training images per class:\n\n{table.to_markdown()}\n"
    print(text)
    if args.markdown:
        Path(args.markdown).write_text(text)
        print(f"table written to {args.markdown}")
    return 0 if all(p["status"] == "finished" for p in curve["points"]) else 1


def _curve_help(name: str) -> str:
    """A data-efficiency setting's help text, from `CurveConfig`'s own field."""
    return next(f.metadata["help"] for f in dataclasses.fields(CurveConfig) if f.name == name)


def _add_compress_fewshot_commands(sub: argparse._SubParsersAction) -> None:
    compress = sub.add_parser("compress", help="prune and int8-quantise a finished run's model; measure accuracy, "
                                               "size and latency of each variant against the original")
    compress.add_argument("--run", required=True, help=config_help("run"))
    compress.add_argument("--sparsity", default="0.5,0.9", help=config_help("sparsities"))
    compress.add_argument("--structured", action="store_true", help=config_help("structured"))
    compress.add_argument("--finetune-epochs", type=int, default=0, help=config_help("finetune_epochs"))
    compress.add_argument("--finetune-lr", type=float, default=1e-4, help=config_help("finetune_lr"))
    compress.add_argument("--quantize", default="dynamic,static", help=config_help("quantize"))
    compress.add_argument("--calibration-images", type=int, default=64, help=config_help("calibration_images"))
    compress.add_argument("--latency-repeats", type=int, default=20, help=config_help("latency_repeats"))
    compress.add_argument("--latency-threads", type=int, default=1, help=config_help("latency_threads"))
    compress.set_defaults(func=cmd_compress)
    for name, func, help_text in (
            ("prototypes", cmd_prototypes, "few-shot: nearest-class-mean prototypes on frozen pretrained features, "
                                           "from k images per class, saved as a run (no training)"),
            ("data-efficiency", cmd_data_efficiency, "accuracy against training images per class for prototypes, "
                                                     "linear probe, partial fine-tune and scratch")):
        parser = sub.add_parser(name, help=help_text)
        parser.add_argument("--data", required=True, help="image folder or .zip (one subfolder per class)")
        parser.add_argument("--backbone", default="tf_efficientnet_lite0", help="any timm model name")
        parser.add_argument("--image-size", type=int, help="square input size in pixels (default: as training)")
        parser.add_argument("--weights", default="auto", help="'auto' (best pretrained weights) or a weights file")
        parser.add_argument("--val-fraction", type=float, default=0.2, help="share of each class held out")
        parser.add_argument("--seed", type=int, default=0, help="seed of the split and of the k-shot samples")
        parser.add_argument("--runs-dir", help="where runs are written (default: $WORKBENCH_RUNS_DIR or ./runs)")
        parser.set_defaults(func=func)
        if name == "prototypes":
            parser.add_argument("--shots", default="5", help="images per class the prototypes are built from "
                                                             "(a number, or 'all')")
        else:
            parser.add_argument("--shots", default="1,2,5,10,all", help="images per class, one point each")
            parser.add_argument("--methods", default=",".join(METHODS), help=f"comma-separated: {', '.join(METHODS)}")
            parser.add_argument("--epochs", type=int, default=5, help="epochs of every trained method")
            parser.add_argument("--markdown", help="also write the result table to this markdown file")
            parser.add_argument("--meta-run", help=_curve_help("meta_run"))


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.func(args)
    except (BackboneError, ValueError, FileNotFoundError) as e:  # a bad option, model or run folder: one line
        print(f"error: {e}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
