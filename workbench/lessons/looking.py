"""Lesson 6, what the network looks at: Grad-CAM heatmaps of the same pictures before and after fine-tuning, and how
far each layer group's weights moved."""

from __future__ import annotations

from pathlib import Path

from workbench.analysis.charts import weight_drift_figure
from workbench.analysis.insight import GroupDrift, explain, feature_map, starting_model, weight_drift
from workbench.engine.config import RunConfig
from workbench.lessons.base import (
    BACKBONE,
    Chart,
    Lesson,
    Pictures,
    Results,
    accuracy,
    duration,
    pct,
    progress,
    seconds,
    trained,
)
from workbench.models.trained import Predictor

EPOCHS = 3
IMAGE_SIZE = 96
PICTURES = 3  # one validation picture of each of the first classes


def part_of(index: int, groups: int) -> str:
    """Which third of the network a layer group sits in: early (stem side), middle or late (head side)."""
    return "early" if index < groups / 3 else "late" if index >= 2 * groups / 3 else "middle"


class WhatTheNetworkLooksAt(Lesson):
    id = "looking"
    number = 6
    title = "What the network looks at"
    question = ("We fine-tune every layer of a pretrained network on the shapes. Which of its pretrained layers will "
                "change the most, relative to where they started? (The new last layer starts random, so it is not in "
                "the race.)")
    choices = {"early": "The early layers (edges, colours, textures)",
               "middle": "The middle layers (parts and patterns)",
               "late": "The late layers, near the answer"}
    deeper = ("insight", "6 · Inside the model: Grad-CAM of any picture, weight drift, the feature map")
    prompts = ("The heatmap before fine-tuning is for a random last layer. Why does it still light up on the shape "
               "at times?",
               "If the early layers hardly changed, what does that say about what they learned from ImageNet?",
               "Did the network look at the right place for the right reason? How could you tell if it were using "
               "the background instead?")
    what_runs = (f"A full fine-tune of {BACKBONE} at {IMAGE_SIZE} px for {EPOCHS} epochs; then Grad-CAM of "
                 f"{PICTURES} validation pictures with the starting and the trained weights, and the weight drift of "
                 "every layer group.")
    main_role = "finetune"

    def plan(self, data: str, results: Results, folder: Path) -> dict[str, RunConfig]:
        return {"finetune": RunConfig(data=data, backbone=BACKBONE, strategy="full", epochs=EPOCHS,
                                      image_size=IMAGE_SIZE, seed=0)}

    def measure(self, results: Results, folder: Path) -> dict:
        record = results.run("finetune")
        if record is None or not record.has_model:
            return {"error": "The fine-tune did not save a model, so there is nothing to look inside."}
        after = Predictor.from_run(record.dir)
        start, start_words = starting_model(record.dir)
        before = Predictor(start, after.class_names, after.info)
        pictures = []
        with record.validation_images() as samples:
            firsts = {}
            for sample in samples:
                firsts.setdefault(sample.label, sample)
            for sample in [firsts[label] for label in sorted(firsts)][:PICTURES]:
                entry = {"class": after.class_names[sample.label]}
                for stage, predictor in (("before", before), ("after", after)):
                    seen = explain(predictor, sample.path)
                    path = folder / f"{len(pictures)}-{stage}.png"
                    seen.overlay().save(path)
                    entry[stage] = {"image": str(path), "predicted": seen.predicted_class,
                                    "probability": round(seen.predicted_probability, 4)}
                pictures.append(entry)
        found = feature_map(record.dir)
        return {"drift": [d.to_dict() for d in weight_drift(record.dir)], "pictures": pictures, "start": start_words,
                "separation": {"before": round(found.separation_before, 4), "after": round(found.separation_after, 4)}}

    def role_title(self, role: str) -> str:
        return "full fine-tune"

    @staticmethod
    def drifts(results: Results) -> list[GroupDrift]:
        return [GroupDrift(**d) for d in results.measured.get("drift", [])]

    def explain(self, results: Results) -> list[str]:
        record = results.run("finetune")
        where = progress(record, results.status("finetune"))
        lines = [f"The fine-tune reached **{pct(accuracy(record))}** validation accuracy {where}, in "
                 f"{duration(seconds(record))}." if trained(record) else f"The fine-tune: {where}."]
        if results.runs_ended and not results.measured:
            lines.append("Now drawing the heatmaps and measuring how far each layer moved…")
        drifts = self.drifts(results)
        if drifts:
            head, pretrained = drifts[-1], self.pretrained_drifts(results)
            lines.append(f"The new last layer (**{head.name}**), which started random, moved by {head.drift:.0%} "
                         "of its size.")
            if pretrained:
                most, least = max(pretrained, key=lambda d: d.drift), min(pretrained, key=lambda d: d.drift)
                lines.append(f"Among the pretrained layers, **{most.name}** (group {most.index + 1} of {len(drifts)}) "
                             f"moved the most, by {most.drift:.2%}; **{least.name}** moved least, by "
                             f"{least.drift:.2%}.")
        pictures = results.measured.get("pictures", [])
        if pictures:
            right_before = sum(p["before"]["predicted"] == p["class"] for p in pictures)
            right_after = sum(p["after"]["predicted"] == p["class"] for p in pictures)
            lines.append(f"Of the {len(pictures)} pictures below, the network named {right_before} correctly before "
                         f"fine-tuning (its last layer was random) and {right_after} after.")
        separation = results.measured.get("separation")
        if separation:
            lines.append(f"How well the classes stand apart in the features (silhouette, -1 to 1): "
                         f"{separation['before']:.2f} before, {separation['after']:.2f} after.")
        answer = self.winner(results)
        if answer is not None:
            lines.append(f"**The {answer} layers changed the most.**")
        return lines

    def pretrained_drifts(self, results: Results) -> list[GroupDrift]:
        """Every group but the head (the last, which started from random weights), with a number (NaN: no
        weights)."""
        return [d for d in self.drifts(results)[:-1] if d.drift == d.drift]

    def winner(self, results: Results) -> str | None:
        pretrained = self.pretrained_drifts(results)
        if not results.complete or not pretrained:
            return None
        return part_of(max(pretrained, key=lambda d: d.drift).index, len(pretrained))

    def figures(self, results: Results) -> list[Chart | Pictures]:
        figures: list[Chart | Pictures] = []
        for picture in results.measured.get("pictures", []):
            images = [(Path(picture[stage]["image"]),
                       f"{stage}: says {picture[stage]['predicted']} ({picture[stage]['probability']:.0%})")
                      for stage in ("before", "after")]
            figures.append(Pictures(f"A {picture['class']}, before and after fine-tuning", images,
                                    "Red: where the evidence for the class it names lies; blue: none."))
        drifts = self.drifts(results)
        if drifts:
            figures.append(Chart("Weight drift per layer group", weight_drift_figure(drifts),
                                 "How far each group's weights moved from where they started, relative to their "
                                 "size."))
        return figures
