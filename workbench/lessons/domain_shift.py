"""Lesson 4, when the world changes: a model trained on one kind of picture meets another kind. Plain training on
the labelled pictures against domain adaptation (DANN), which also sees the new kind, without labels."""

from __future__ import annotations

from pathlib import Path

import plotly.graph_objects as go

from workbench.core.plot_style import LAYOUT
from workbench.engine.config import RunConfig
from workbench.lessons.base import (
    BACKBONE,
    SAMPLE_SHIFTED,
    Chart,
    Lesson,
    Results,
    accuracy,
    chance,
    pct,
    progress,
    trained,
)
from workbench.strategies.dann import dann_curves, feature_map, feature_map_figure, target_accuracy

# The recipe tests/test_dann.py measured: layer-wise learning rates for both runs, DANN adding only its adversary.
BUDGET = dict(backbone=BACKBONE, image_size=64, batch_size=16, epochs=4, lr=1e-3, seed=0)
TIE_POINTS = 3
COLOURS = {"source": "#7f7f7f", "dann": "#d62728"}


def target_of(results: Results) -> dict[str, float | None]:
    """role -> accuracy on the shifted pictures: DANN measures its own each epoch; the source-only run's is measured
    once it has ended."""
    adapted = results.run("dann")
    recorded = None
    if adapted is not None:
        recorded = adapted.summary.get("target_accuracy") if adapted.summary else None
        if recorded is None and adapted.metrics:
            recorded = adapted.metrics[-1].get("target_acc")
    return {"source": results.measured.get("source_target_accuracy"), "dann": recorded}


class WhenTheWorldChanges(Lesson):
    id = "shift"
    number = 4
    title = "When the world changes"
    question = ("A model learns the shapes from one set of drawings, then has to recognise shapes drawn in a "
                "different style (other colours, textures and strokes). Both models below learn from the same "
                "labelled drawings; the second one is also shown the new-style drawings, **without their labels**. "
                "Which recognises the new style better?")
    choices = {"dann": "The one that also saw the new style (domain adaptation)",
               "source": "The one trained on the labelled drawings only",
               "tie": "No real difference"}
    deeper = ("train", "3 · Train: a DANN run's curves and feature map")
    prompts = ("The adapted model never saw a label for the new style. What did it learn from those pictures?",
               "Look at the feature map: what changed between before and after? Why does that help the classifier?",
               "Where in real life would the pictures a model meets differ from the ones it learned from?")
    what_runs = ("On the sample shapes (training) and the same shapes in a shifted style (the new world): "
                 f"{BACKBONE} at 64 px for 4 epochs, trained on the labelled shapes only, and again with domain "
                 "adaptation (DANN) on the shifted ones.")
    own_data = False
    main_role = "source"

    def plan(self, data: str, results: Results, folder: Path) -> dict[str, RunConfig]:
        return {"source": RunConfig(data=data, strategy="discriminative", **BUDGET),
                "dann": RunConfig(data=data, strategy="dann", options={"target_data": str(SAMPLE_SHIFTED)},
                                  **BUDGET)}

    def measure(self, results: Results, folder: Path) -> dict:
        source = results.run("source")
        if source is None or not source.has_model:
            return {"error": "The plain run has no saved model, so its accuracy on the new style cannot be measured."}
        return {"source_target_accuracy": target_accuracy(source.dir, str(SAMPLE_SHIFTED))}

    def role_title(self, role: str) -> str:
        return {"source": "Labelled drawings only", "dann": "Domain adaptation (DANN)"}[role]

    def explain(self, results: Results) -> list[str]:
        target = target_of(results)
        lines = []
        for role in ("source", "dann"):
            record = results.run(role)
            where = progress(record, results.status(role))
            if not trained(record):
                lines.append(f"**{self.role_title(role)}**: {where}.")
                continue
            line = (f"**{self.role_title(role)}**: {pct(accuracy(record))} on the original style "
                    f"{where}")
            if target[role] is not None:
                line += f", **{pct(target[role])} on the new style**"
            elif role == "source" and results.runs_ended:
                line += "; its accuracy on the new style is being measured now"
            lines.append(line + ".")
        dann = results.run("dann")
        if dann is not None and dann.metrics and dann.metrics[-1].get("domain_acc") is not None:
            lines.append(f"DANN's domain classifier told the two styles apart {pct(dann.metrics[-1]['domain_acc'])} "
                         "of the time in the last epoch (50% means the features no longer give the style away).")
        guess = chance(results.run("source"))
        if guess is not None and any(v is not None for v in target.values()):
            lines.append(f"Guessing would score {pct(guess)}.")
        answer = self.winner(results)
        if answer is not None:
            gap = abs(target["dann"] - target["source"]) * 100
            lines.append({"dann": f"**Adaptation won on the new style by {gap:.0f} points.**",
                          "source": f"**Plain training won on the new style by {gap:.0f} points.**",
                          "tie": f"**A tie on the new style: {gap:.0f} points apart.**"}[answer])
        return lines

    def winner(self, results: Results) -> str | None:
        target = target_of(results)
        if not results.complete or None in target.values():
            return None
        gap = (target["dann"] - target["source"]) * 100
        return "tie" if abs(gap) < TIE_POINTS else "dann" if gap > 0 else "source"

    def figures(self, results: Results) -> list[Chart]:
        figures = []
        target = target_of(results)
        if any(v is not None for v in target.values()):
            roles = [r for r in ("source", "dann") if target[r] is not None]
            fig = go.Figure(go.Bar(x=[self.role_title(r) for r in roles], y=[target[r] for r in roles],
                                   text=[pct(target[r]) for r in roles], marker_color=[COLOURS[r] for r in roles]))
            fig.update_yaxes(range=[0, 1.02], tickformat=".0%", title_text="accuracy on the new style")
            figures.append(Chart("Accuracy on the new style", fig.update_layout(**LAYOUT, height=320),
                                 "Both models learned only the original style's labels."))
        dann = results.run("dann")
        if dann is not None and dann.metrics:
            figures.append(Chart("DANN, epoch by epoch", dann_curves(dann.metrics, BUDGET["epochs"]),
                                 "Red: accuracy on the new style; grey: how well the domain classifier tells the "
                                 "styles apart."))
        maps = feature_map(dann.dir) if dann is not None else None
        if maps:
            figures.append(Chart("The feature map", feature_map_figure(maps),
                                 "Each dot is a picture (blue: original style, red: new style). Adaptation pulls the "
                                 "two clouds together."))
        return figures
