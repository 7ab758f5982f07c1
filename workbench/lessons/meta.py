"""Lesson 7, learning to learn: few-shot accuracy on classes the network never practised on, before and after
meta-learning on small quizzes (prototypical networks)."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from workbench.core.plot_style import LAYOUT
from workbench.engine.config import RunConfig
from workbench.lessons.base import BACKBONE, Chart, Lesson, Results, duration, progress, seconds
from workbench.strategies import STRATEGIES

STRATEGY = "protonet"
BUDGET = dict(backbone=BACKBONE, strategy=STRATEGY, image_size=64, epochs=3, seed=0)  # the strategy's own options
ASKED_SHOTS = "1"  # the prediction is about one picture per new class


def novel_eval(results: Results) -> dict | None:
    """The run's few-shot measurement on its held-out classes: from the summary once it has ended, else from the
    file the run writes before its first episode (the "before" part) and after its last."""
    record = results.run("meta")
    if record is None:
        return None
    if record.summary is not None and record.summary.get("novel_eval"):
        return record.summary.get("novel_eval")
    from workbench.strategies.protonet import novel_eval_file  # only where the strategy is installed

    return novel_eval_file(record.dir) if record.dir.is_dir() else None


def _score(value: dict) -> str:
    return f"{value['mean']:.0%} (± {value['ci95']:.0%})"


class LearningToLearn(Lesson):
    id = "meta"
    number = 7
    title = "Learning to learn"
    question = ("Some shapes are kept hidden. The network practises on the other shapes with thousands of small "
                "quizzes: *here is one example of each of a few shapes, now which is this one?* Afterwards, shown "
                "**one** example of each hidden shape, will it recognise them better than before practising?")
    choices = {"better": "Better: practice at learning transfers to new shapes",
               "same": "No real change",
               "worse": "Worse: it over-specialised on the practice shapes"}
    deeper = ("few-shot", "8 · Few-shot: prototypes on any data, no training")
    prompts = ("Why hold shapes out at all? What would the measurement mean if the hidden shapes were practised on?",
               "The ± is a 95% confidence interval over many random quizzes. When is a difference worth trusting?",
               "A strong pretrained network already makes good prototypes. When would practising still help?")
    what_runs = (f"Prototypical networks (meta-learning) on {BACKBONE} at 64 px for 3 epochs, with the strategy's own "
                 "settings: about 40% of the classes are held out, and few-shot accuracy on them is measured before "
                 "and after.")
    main_role = "meta"

    def unavailable(self) -> str | None:
        if STRATEGY not in STRATEGIES:
            return "This lesson needs the meta-learning strategy (prototypical networks), which this installation " \
                   "does not have. Update the workbench to run it."
        return None

    def plan(self, data: str, results: Results, folder: Path) -> dict[str, RunConfig]:
        return {"meta": RunConfig(data=data, **BUDGET)}

    def role_title(self, role: str) -> str:
        return "meta-learning (prototypical networks)"

    def explain(self, results: Results) -> list[str]:
        record = results.run("meta")
        where = progress(record, results.status("meta"))
        lines = [f"Meta-learning: {where}" + (f", {duration(seconds(record))} of training." if seconds(record)
                                              else ".")]
        novel = novel_eval(results)
        if novel:
            hidden = ", ".join(novel.get("classes", []))
            lines.append(f"Hidden shapes: **{hidden}**; each quiz asks {novel['ways']}-way, scored over "
                         f"{novel['episodes']} random quizzes of {novel['queries']} questions per shape.")
            for shots, words in (("1", "one example"), ("5", "five examples")):
                before = (novel.get("before") or {}).get(shots)
                after = (novel.get("after") or {}).get(shots)
                if before and after:
                    lines.append(f"With **{words}** per hidden shape: {_score(before)} before practising, "
                                 f"**{_score(after)}** after.")
                elif before:
                    lines.append(f"With **{words}** per hidden shape, before practising: {_score(before)}; the "
                                 "measurement after comes at the end of the run.")
        elif record is not None and results.runs_ended:
            lines.append("This run held no shapes out (too few classes), so there is nothing to measure on new "
                         "shapes.")
        answer = self.winner(results)
        if answer is not None:
            lines.append({"better": "**Practice helped on shapes it had never seen.**",
                          "same": "**No change beyond the quizzes' own noise (the ± ranges overlap).**",
                          "worse": "**Practice hurt on the hidden shapes.**"}[answer])
        return lines

    def winner(self, results: Results) -> str | None:
        novel = novel_eval(results)
        if not results.complete or not novel or not (novel.get("after") or {}).get(ASKED_SHOTS):
            return None
        before, after = novel["before"][ASKED_SHOTS], novel["after"][ASKED_SHOTS]
        gap = after["mean"] - before["mean"]
        if abs(gap) <= max(before["ci95"], after["ci95"]):
            return "same"
        return "better" if gap > 0 else "worse"

    def figures(self, results: Results) -> list[Chart]:
        novel = novel_eval(results)
        if not novel:
            return []
        fig = go.Figure()
        for stage, colour in (("before", "#7f7f7f"), ("after", "#1f77b4")):
            scores = novel.get(stage) or {}
            shots = sorted(scores, key=int)
            fig.add_bar(x=[f"{k} example{'s' if k != '1' else ''} per shape" for k in shots],
                        y=[scores[k]["mean"] for k in shots], name=f"{stage} practising", marker_color=colour,
                        error_y=dict(type="data", array=[scores[k]["ci95"] for k in shots]))
        fig.update_yaxes(range=[0, 1.05], tickformat=".0%", title_text="accuracy on hidden shapes")
        return [Chart("Few-shot accuracy on the hidden shapes", fig.update_layout(**LAYOUT, height=340,
                                                                                  barmode="group"),
                      "Bars: mean over random quizzes; whiskers: 95% confidence interval.")]
