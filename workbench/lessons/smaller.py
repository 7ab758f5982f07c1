"""Lesson 5, smaller and faster: a trained model (the teacher) made cheaper three ways, distillation into a student
that looks at smaller pictures, pruning half its weights, and 8-bit weights (int8), all on one accuracy-against-speed
chart measured on this computer."""

from __future__ import annotations

import dataclasses
from pathlib import Path

from workbench.deploy.compress import CompressConfig, compress_run
from workbench.deploy.tradeoff import (
    CLOSE_ENOUGH_POINTS,
    TRAINED,
    TradeoffPoint,
    advice,
    points_for_runs,
    tradeoff_figure,
)
from workbench.engine.config import RunConfig
from workbench.lessons.base import BACKBONE, Chart, Lesson, Results, accuracy, pct, progress, trained

TEACHER = dict(backbone=BACKBONE, strategy="linear_probe", image_size=128, epochs=5, seed=0)
STUDENT = dict(backbone=BACKBONE, strategy="distill", image_size=64, batch_size=16, epochs=3, seed=0)
COMPRESSION = dict(sparsities=(0.5,), quantize=("dynamic", "static"), latency_repeats=10)


def kind_of(point: TradeoffPoint) -> str:
    """Which of the lesson's choices a point stands for."""
    if point.strategy == STUDENT["strategy"]:
        return "student"
    if point.variant == TRAINED:
        return "teacher"
    return "int8" if point.variant.startswith("int8") else "pruned"


class SmallerAndFaster(Lesson):
    id = "smaller"
    number = 5
    title = "Smaller and faster"
    question = ("A model that recognises the shapes well has to run on a cheap phone. Which way of making it faster "
                f"keeps its accuracy best: the fastest model within {CLOSE_ENOUGH_POINTS:g} points of the most "
                "accurate one wins.")
    choices = {"student": "Distillation: a student looking at smaller pictures learns from the model's answers",
               "pruned": "Pruning: set half of the weights to zero",
               "int8": "Quantisation: store the weights in 8 bits instead of 32",
               "teacher": "None of them: the original stays the best choice"}
    deeper = ("compress", "7 · Compress: every pruning and int8 variant of any run")
    prompts = ("Pruning made half the weights zero. Why did the model not get twice as fast on this computer?",
               "The student looks at pictures a quarter of the size. What does it lose, and what does it keep?",
               "Which matters more on a phone: the file's size or the time per picture? When is it the other way?")
    what_runs = (f"The teacher: a linear probe of {BACKBONE} at 128 px, 5 epochs. Then the student: the same network "
                 "at 64 px, 3 epochs, learning from the teacher's answers (distillation). Then the teacher pruned "
                 "by 50% and in int8; every model is timed on this computer.")
    main_role = "student"

    def plan(self, data: str, results: Results, folder: Path) -> dict[str, RunConfig]:
        if not results.attempt or not results.attempt.runs:
            return {"teacher": RunConfig(data=data, **TEACHER)}
        teacher = results.run("teacher")
        if teacher is None or results.status("teacher") != "finished":
            return {}  # the student has nothing to learn from
        return {"student": RunConfig(data=data, options={"teacher_run": str(teacher.dir)}, **STUDENT)}

    def measure(self, results: Results, folder: Path) -> dict:
        teacher, student = results.run("teacher"), results.run("student")
        if teacher is None or not teacher.has_model:
            return {"error": "The teacher run did not finish with a model, so there is nothing to make smaller."}
        report = compress_run(CompressConfig(run=str(teacher.dir), **COMPRESSION))
        failed = [v["name"] for v in report["variants"] if v["status"] != "ok"]
        dirs = [teacher.dir] + ([student.dir] if student is not None and student.has_model else [])
        points = points_for_runs(dirs, include_compressed=True)
        return {"points": [dataclasses.asdict(p) for p in points], "failed_variants": failed}

    def role_title(self, role: str) -> str:
        return {"teacher": "teacher (128 px)", "student": "distilled student (64 px)"}[role]

    @staticmethod
    def points(results: Results) -> list[TradeoffPoint]:
        return [TradeoffPoint(**p) for p in results.measured.get("points", [])]

    def explain(self, results: Results) -> list[str]:
        lines = []
        for role in ("teacher", "student"):
            record = results.run(role)
            if role not in (results.attempt.runs if results.attempt else {}):
                if role == "student":
                    lines.append("**The student** starts once the teacher has finished.")
                continue
            where = progress(record, results.status(role))
            lines.append(f"**The {self.role_title(role)}**: {pct(accuracy(record))} {where}." if trained(record)
                         else f"**The {self.role_title(role)}**: {where}.")
        points = self.points(results)
        if results.runs_ended and not points and "error" not in results.measured:
            lines.append("Now pruning and quantising the teacher, then timing every model on this computer…")
        teacher = next((p for p in points if kind_of(p) == "teacher"), None)
        for point in points:
            cost = f"{point.latency_ms:.1f} ms per picture" if point.latency_ms is not None else "not timed"
            line = f"{point.label}: **{pct(point.val_accuracy)}**, {cost}, {point.size_mb:.1f} MB on disk"
            if teacher is not None and point is not teacher and point.latency_ms and teacher.latency_ms:
                line += f" ({teacher.latency_ms / point.latency_ms:.1f}× the teacher's speed)"
            lines.append(line + ".")
        if results.measured.get("failed_variants"):
            lines.append(f"Could not be built here: {', '.join(results.measured['failed_variants'])}.")
        if points:
            lines.append(advice(points))
        answer = self.winner(results)
        if answer is not None:
            lines.append(f"**Fastest within {CLOSE_ENOUGH_POINTS:g} points of the best: "
                         f"{self.choices[answer].split(':')[0].lower()}.**")
        return lines

    def winner(self, results: Results) -> str | None:
        timed = [p for p in self.points(results) if p.latency_ms is not None]
        if not results.complete or not timed:
            return None
        best = max(p.val_accuracy for p in timed)
        close = [p for p in timed if (best - p.val_accuracy) * 100 <= CLOSE_ENOUGH_POINTS]
        return kind_of(min(close, key=lambda p: (p.latency_ms, -p.val_accuracy)))

    def figures(self, results: Results) -> list[Chart]:
        points = self.points(results)
        if not points:
            return []
        return [Chart("Accuracy against time per picture", tradeoff_figure(points, "latency_ms"),
                      "Top left is best: accurate and fast. The dashed line joins the models nothing beats on both."),
                Chart("Accuracy against size on disk", tradeoff_figure(points, "size_mb"))]
