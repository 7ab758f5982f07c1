"""A lesson's one-page handout: the question, the class's prediction tally, the class's numbers, the explanation,
the discussion prompts and the "show me the code" script of the lesson's main run, as Markdown and as a printable
HTML page. Everything on it is read from the lesson's record and its runs, as the lesson screen shows them."""

from __future__ import annotations

import html
import re
import time
from dataclasses import dataclass, field

import pandas as pd

from workbench.deploy.codegen import CodegenError, script_for_run
from workbench.lessons.base import Lesson, Results, accuracy, duration, seconds

NUMBER_COLUMNS = ["run", "strategy", "backbone", "image size", "epochs", "status", "val accuracy", "training time",
                  "run id"]


@dataclass
class Handout:
    title: str
    question: str
    tally: dict[str, int]  # choice words -> votes
    result: str | None  # the choice the runs bore out, in words (None while they run)
    numbers: pd.DataFrame
    explanation: list[str]
    prompts: list[str]
    timing: str
    code: str | None
    code_note: str
    made: str = field(default_factory=lambda: time.strftime("%Y-%m-%d %H:%M"))

    def markdown(self) -> str:
        votes = "\n".join(f"| {choice} | {count} |" for choice, count in self.tally.items())
        parts = [
            f"# {self.title}", f"*Transfer Learning Workbench lesson, {self.made}. {self.timing}*",
            "## The question", self.question,
            "## The class's predictions", "| prediction | votes |\n|---|---|\n" + votes,
            f"**What the runs showed:** {self.result}" if self.result else "*The runs had not finished.*",
            "## The class's numbers",
            self.numbers.to_markdown(index=False) if not self.numbers.empty else "*No run yet.*",
            "## What happened", "\n".join(f"- {line}" for line in self.explanation),
            "## To discuss", "\n".join(f"{i}. {prompt}" for i, prompt in enumerate(self.prompts, start=1)),
            "## Show me the code", self.code_note,
        ]
        if self.code:
            parts.append(f"```python\n{self.code.rstrip()}\n```")
        return "\n\n".join(parts) + "\n"

    def html(self) -> str:
        votes = "".join(f"<tr><td>{_inline(c)}</td><td>{n}</td></tr>" for c, n in self.tally.items())
        numbers = self.numbers.to_html(index=False, na_rep="–", border=0) if not self.numbers.empty else \
            "<p><em>No run yet.</em></p>"
        body = [
            f"<h1>{_inline(self.title)}</h1>",
            f"<p class='meta'>Transfer Learning Workbench lesson, {html.escape(self.made)}. "
            f"{_inline(self.timing)}</p>",
            "<h2>The question</h2>", f"<p>{_inline(self.question)}</p>",
            "<h2>The class's predictions</h2>",
            f"<table><tr><th>prediction</th><th>votes</th></tr>{votes}</table>",
            f"<p><strong>What the runs showed:</strong> {_inline(self.result)}</p>" if self.result
            else "<p><em>The runs had not finished.</em></p>",
            "<h2>The class's numbers</h2>", numbers,
            "<h2>What happened</h2>", "<ul>" + "".join(f"<li>{_inline(x)}</li>" for x in self.explanation) + "</ul>",
            "<h2>To discuss</h2>", "<ol>" + "".join(f"<li>{_inline(x)}</li>" for x in self.prompts) + "</ol>",
            "<h2>Show me the code</h2>", f"<p>{_inline(self.code_note)}</p>",
        ]
        if self.code:
            body.append(f"<pre><code>{html.escape(self.code)}</code></pre>")
        return (f"<!DOCTYPE html>\n<html lang='en'><head><meta charset='utf-8'><title>{html.escape(self.title)}"
                f"</title><style>{STYLE}</style></head><body>{''.join(body)}</body></html>\n")


STYLE = ("body{font-family:system-ui,sans-serif;max-width:48rem;margin:2rem auto;line-height:1.45;color:#222}"
         "table{border-collapse:collapse;margin:.5rem 0}td,th{border:1px solid #bbb;padding:.2rem .5rem;"
         "text-align:left}pre{background:#f6f6f6;padding:.6rem;font-size:.72rem;white-space:pre-wrap}"
         ".meta{color:#666}@media print{pre{font-size:.6rem}h2{break-after:avoid}}")


def _inline(text: str) -> str:
    """Escaped text with the lesson's Markdown emphasis (**bold**, *italic*) as HTML."""
    escaped = html.escape(text)
    escaped = re.sub(r"\*\*(.+?)\*\*", r"<strong>\1</strong>", escaped)
    return re.sub(r"\*(.+?)\*", r"<em>\1</em>", escaped)


def numbers_table(lesson: Lesson, results: Results) -> pd.DataFrame:
    """One row per run of the attempt, as recorded now."""
    rows = []
    for role, record in results.records.items():
        config = record.config
        rows.append({"run": lesson.role_title(role), "strategy": record.strategy, "backbone": record.backbone,
                     "image size": config.image_size if config else None,
                     "epochs": f"{len(record.metrics)} of {config.epochs}" if config and config.epochs else
                     len(record.metrics),
                     "status": results.status(role),
                     "val accuracy": None if accuracy(record) is None else f"{accuracy(record):.1%}",
                     "training time": duration(seconds(record)), "run id": record.id})
    return pd.DataFrame(rows, columns=NUMBER_COLUMNS)


def timing_sentence(results: Results, estimate: float | None = None) -> str:
    if results.attempt is not None and results.attempt.seconds is not None:
        return f"It took {duration(results.attempt.seconds)} on this machine."
    return f"Estimated time on this machine: {duration(estimate)}." if estimate else ""


def make_handout(lesson: Lesson, results: Results, tally: dict[str, int], estimate: float | None = None) -> Handout:
    """The handout of the attempt in `results`, with the class's `tally` (choice key -> votes)."""
    answer = lesson.winner(results)
    main = results.run(lesson.main_role)
    code, note = None, "The lesson's main run has not been recorded yet."
    if main is not None and main.dir.is_dir():
        try:
            code = script_for_run(main.dir)
            note = (f"The training of *{lesson.role_title(lesson.main_role)}* (run {main.id}) as one standalone "
                    "Python script, using only timm and PyTorch.")
        except (CodegenError, FileNotFoundError) as error:
            note = f"No script for run {main.id}: {error}"
    return Handout(title=f"L{lesson.number} · {lesson.title}", question=lesson.question,
                   tally={lesson.choices[key]: count for key, count in tally.items()},
                   result=lesson.choices[answer] if answer else None, numbers=numbers_table(lesson, results),
                   explanation=lesson.explain(results), prompts=list(lesson.prompts),
                   timing=timing_sentence(results, estimate), code=code, code_note=note)
