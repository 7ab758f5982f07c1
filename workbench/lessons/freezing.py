"""Lesson 2, how much to freeze: the same fine-tune with more and more of the network frozen, stem first."""

from __future__ import annotations

from pathlib import Path

from workbench.analysis import charts
from workbench.analysis.model_views import groups_figure
from workbench.engine.config import RunConfig
from workbench.lessons.base import (
    BACKBONE,
    Chart,
    Lesson,
    Results,
    accuracy,
    duration,
    pct,
    progress,
    seconds,
    share,
    trained,
)
from workbench.models.backbones import LayerGroup

EPOCHS = 3
IMAGE_SIZE = 96
DEPTHS = (0, 5, 8)  # of EfficientNet-Lite0's 9 layer groups: nothing, the stem and early stages, all but the head
SAME_POINTS = 2  # accuracies closer than this many points count as equal: the faster run wins


def role(depth: int) -> str:
    return f"depth-{depth}"


def depth_of(role_name: str) -> int:
    return int(role_name.removeprefix("depth-"))


class HowMuchToFreeze(Lesson):
    id = "freezing"
    number = 2
    title = "How much to freeze"
    question = ("A pretrained network is a stack of layers, from simple edges at the bottom to whole objects at the "
                "top. When it learns our shapes, should every layer change, or should we lock (freeze) the early "
                "layers and train only the later ones? Which gives the best accuracy for the time?")
    choices = {"none": "Freeze nothing: let every layer learn",
               "some": "Freeze the early layers, train the later ones",
               "all": "Freeze everything except the last layer"}
    deeper = ("model", "2 · Model & strategy: the freeze diagram of any strategy")
    prompts = ("Frozen layers still run on every picture. Why is training with them frozen faster anyway?",
               "Which layers would you unfreeze for pictures very unlike ImageNet's photos, such as microscope "
               "slides?",
               "With only ten pictures per class, would you freeze more or less? Why?")
    what_runs = (f"{BACKBONE} fine-tuned at {IMAGE_SIZE} px for {EPOCHS} epochs, once per freeze depth: "
                 f"{', '.join(str(d) for d in DEPTHS)} of its 9 layer groups frozen.")
    main_role = role(DEPTHS[1])

    def plan(self, data: str, results: Results, folder: Path) -> dict[str, RunConfig]:
        return {role(depth): RunConfig(data=data, backbone=BACKBONE, strategy="partial", freeze_depth=depth,
                                       epochs=EPOCHS, image_size=IMAGE_SIZE, seed=0) for depth in DEPTHS}

    def role_title(self, role_name: str) -> str:
        depth = depth_of(role_name)
        return "nothing frozen" if depth == 0 else f"{depth} groups frozen"

    def _points(self, results: Results) -> list[dict]:
        return [{"freeze_depth": depth_of(name), "val_acc": accuracy(record), "seconds": seconds(record),
                 "role": name} for name, record in results.records.items() if trained(record)]

    def explain(self, results: Results) -> list[str]:
        lines = []
        for name, record in results.records.items():
            groups = record.facts.get("layer_groups") or []
            learning = ""
            if record.facts.get("trainable_params") and record.facts.get("total_params"):
                learning = (f" ({share(record.facts['trainable_params'], record.facts['total_params'])} of the "
                            "parameters learning)")
            frozen = depth_of(name)
            head = f"**{frozen} of {len(groups)} groups frozen**" if groups else f"**{frozen} groups frozen**"
            head += learning
            where = progress(record, results.status(name))
            if trained(record):
                lines.append(f"{head}: {pct(accuracy(record))} {where}, {duration(seconds(record))} of training.")
            else:
                lines.append(f"{head}: {where}.")
        answer = self.winner(results)
        if answer is not None:
            points = self._points(results)
            best = max(points, key=lambda p: (p["val_acc"], -p["seconds"]))
            fastest = min(points, key=lambda p: p["seconds"])
            lines.append(f"**Best accuracy: {pct(best['val_acc'])} with {best['freeze_depth']} groups frozen, in "
                         f"{duration(best['seconds'])}.** The quickest run ({fastest['freeze_depth']} frozen) took "
                         f"{duration(fastest['seconds'])} and reached {pct(fastest['val_acc'])}.")
        return lines

    def winner(self, results: Results) -> str | None:
        points = self._points(results)
        if not results.runs_ended or not points:
            return None
        top = max(p["val_acc"] for p in points)
        # among the runs as good as the best, the most frozen is the cheapest: it is the answer
        depth = max(p["freeze_depth"] for p in points if (top - p["val_acc"]) * 100 < SAME_POINTS)
        return "none" if depth == 0 else "all" if depth == max(DEPTHS) else "some"

    def figures(self, results: Results) -> list[Chart]:
        points = self._points(results)
        if not points:
            return []
        figures = [Chart("Accuracy and time against freeze depth", charts.freeze_sweep_figure(points),
                         "Left: validation accuracy; right: training time. 0 trains every layer.")]
        best = max(points, key=lambda p: (p["val_acc"], -p["seconds"]))
        groups = results.run(best["role"]).facts.get("layer_groups")
        if groups:
            layer_groups = [LayerGroup(i, g["name"], (), g["num_params"]) for i, g in enumerate(groups)]
            figures.append(Chart(f"The most accurate run: {best['freeze_depth']} groups frozen",
                                 groups_figure(layer_groups, best["freeze_depth"]),
                                 "Grey boxes are frozen (they keep their pretrained weights); orange ones learn."))
        return figures
