"""How long each lesson takes here: every lesson of `workbench.lessons` run end to end through the library, as the
Start button runs it (its runs queued in a run registry, the next runs queued once earlier ones end, the measuring
after them), on the sample data, one lesson after another. Prints one row per lesson: its duration, the estimate made
before it from this machine's measured speed, its answer, and the first lines of its explanation; the load average
before and after is printed too, since other programs on the machine slow every lesson.

    HF_HUB_OFFLINE=1 nice -n -10 python bench/bench_lessons.py --json-out bench/results/lessons-cpu.json
    HF_HUB_OFFLINE=1 python bench/bench_lessons.py --lessons transfer,freezing
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from workbench.lessons import LESSONS, LessonBook, estimate_seconds
from workbench.lessons.base import SAMPLE, duration
from workbench.runs.registry import RunRegistry

POLL_SECONDS = 1.0


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lessons", default=",".join(LESSONS), help="lesson ids, comma-separated (default: all)")
    parser.add_argument("--limit", type=float, default=1800, help="seconds after which a lesson is given up")
    parser.add_argument("--json-out", type=Path, help="also write the rows to this JSON file")
    return parser.parse_args(argv)


def run_lesson(lesson_id: str, runs_dir: Path, limit: float) -> dict:
    """One lesson, start to complete, in a registry of its own."""
    lesson = LESSONS[lesson_id]
    book = LessonBook(RunRegistry(runs_dir))
    estimate = estimate_seconds(lesson, str(SAMPLE))
    started = time.perf_counter()
    book.start(lesson_id, str(SAMPLE))
    results = book.advance(lesson_id, background=False)
    while not results.complete and time.perf_counter() - started < limit:
        time.sleep(POLL_SECONDS)
        results = book.advance(lesson_id, background=False)
    wall = time.perf_counter() - started
    answer = lesson.winner(results)
    return {"lesson": f"L{lesson.number} {lesson.title}", "id": lesson_id, "complete": results.complete,
            "seconds": round(wall, 1), "estimate_first_runs_s": round(estimate, 1) if estimate else None,
            "runs": {role: results.status(role) for role in results.attempt.runs},
            "answer": lesson.choices.get(answer) if answer else None,
            "measure_error": results.measured.get("error"), "explanation": lesson.explain(results)}


def main(argv: list[str] | None = None) -> None:
    args = parse_args(argv)
    chosen = [name.strip() for name in args.lessons.split(",") if name.strip()]
    unknown = [name for name in chosen if name not in LESSONS]
    if unknown:
        raise SystemExit(f"Unknown lessons {unknown}; the lessons are {', '.join(LESSONS)}.")
    rows = []
    print(f"load average before: {', '.join(f'{x:.2f}' for x in os.getloadavg())}; {os.cpu_count()} CPUs", flush=True)
    with tempfile.TemporaryDirectory(prefix="bench-lessons-") as scratch:
        for lesson_id in chosen:
            row = run_lesson(lesson_id, Path(scratch) / lesson_id, args.limit)
            row["load_after"] = [round(x, 2) for x in os.getloadavg()]
            rows.append(row)
            print(f"{row['lesson']}: {duration(row['seconds'])} ({'complete' if row['complete'] else 'NOT complete'}"
                  f"; estimate for its first runs {duration(row['estimate_first_runs_s'])}); runs {row['runs']}; "
                  f"answer: {row['answer']}; load {row['load_after']}", flush=True)
            for line in row["explanation"]:
                print(f"    {line}", flush=True)
            if row["measure_error"]:
                print(f"    measuring failed: {row['measure_error']}", flush=True)
    print("\n| lesson | time on this machine | estimate (first runs) | answer |\n|---|---|---|---|")
    for row in rows:
        print(f"| {row['lesson']} | {duration(row['seconds'])} | {duration(row['estimate_first_runs_s'])} | "
              f"{row['answer'] or '–'} |")
    if args.json_out:
        args.json_out.parent.mkdir(parents=True, exist_ok=True)
        args.json_out.write_text(json.dumps(rows, indent=2))


if __name__ == "__main__":
    main()
