"""Lesson 1, what transfer buys: the same network and budget, from pretrained features or from random weights."""

from __future__ import annotations

from pathlib import Path

from workbench.analysis import charts
from workbench.engine.config import RunConfig
from workbench.lessons.base import (
    BACKBONE,
    Chart,
    Lesson,
    Results,
    accuracy,
    chance,
    duration,
    pct,
    progress,
    seconds,
    trained,
)

EPOCHS = 5
IMAGE_SIZE = 96
TIE_POINTS = 5  # closer than this many accuracy points: neither way of starting won


class WhatTransferBuys(Lesson):
    id = "transfer"
    number = 1
    title = "What transfer buys"
    question = ("The same network trains on the same pictures for the same number of epochs. One starts from "
                "features learned on a million photos (ImageNet) and trains only its last layer; the other starts "
                "from random weights and trains every layer. Which one recognises the shapes better?")
    choices = {"probe": "The pretrained network (only its last layer learns)",
               "scratch": "The network from random weights (every layer learns)",
               "tie": "About the same"}
    deeper = ("compare", "4 · Compare: race any strategies on the same budget")
    prompts = ("The network from random weights trained far more parameters. Why did that not help?",
               "When might training from scratch be the better choice? (Think of X-rays, or sounds drawn as "
               "pictures.)",
               "The pretrained network never saw these shapes. What did it bring with it?")
    what_runs = (f"{BACKBONE} at {IMAGE_SIZE} px for {EPOCHS} epochs, twice: a linear probe of its pretrained "
                 "features, and the same network from random weights.")
    main_role = "probe"

    def plan(self, data: str, results: Results, folder: Path) -> dict[str, RunConfig]:
        budget = dict(data=data, backbone=BACKBONE, epochs=EPOCHS, image_size=IMAGE_SIZE, seed=0)
        return {"probe": RunConfig(strategy="linear_probe", **budget),
                "scratch": RunConfig(strategy="scratch", **budget)}

    def role_title(self, role: str) -> str:
        return {"probe": "pretrained, last layer trained", "scratch": "random weights, every layer trained"}[role]

    def explain(self, results: Results) -> list[str]:
        probe, scratch = results.run("probe"), results.run("scratch")
        lines = []
        for role, record, start in (("probe", probe, "The **pretrained** features"),
                                    ("scratch", scratch, "From **random weights** the same network")):
            where = progress(record, results.status(role))
            if trained(record):
                lines.append(f"{start} reached **{pct(accuracy(record))}** validation accuracy {where}, in "
                             f"{duration(seconds(record))} of training.")
            else:
                lines.append(f"{start}: {where}.")
        guess = chance(probe) or chance(scratch)
        if guess is not None and trained(scratch) and accuracy(scratch) <= guess + 0.1:
            lines.append(f"Guessing would be right {pct(guess)} of the time with {round(1 / guess)} classes: from "
                         f"random weights, at {pct(accuracy(scratch))}, the network has barely learned anything yet.")
        if probe is not None and probe.facts.get("trainable_params") and probe.facts.get("total_params"):
            share = probe.facts["trainable_params"] / probe.facts["total_params"]
            lines.append(f"The probe trained {probe.facts['trainable_params']:,} of {probe.facts['total_params']:,} "
                         f"parameters ({share:.1%}); everything else came ready-made.")
        answer = self.winner(results)
        if answer is not None:
            gap = abs(accuracy(probe) - accuracy(scratch)) * 100
            lines.append({"probe": f"**Transfer won by {gap:.0f} points.**",
                          "scratch": f"**Training from scratch won by {gap:.0f} points.**",
                          "tie": f"**A tie: the two ended {gap:.0f} points apart.**"}[answer])
        return lines

    def winner(self, results: Results) -> str | None:
        probe, scratch = results.run("probe"), results.run("scratch")
        if not results.runs_ended or accuracy(probe) is None or accuracy(scratch) is None:
            return None
        gap = (accuracy(probe) - accuracy(scratch)) * 100
        return "tie" if abs(gap) < TIE_POINTS else "probe" if gap > 0 else "scratch"

    def figures(self, results: Results) -> list[Chart]:
        curves = {self.role_title(role): record.metrics for role, record in results.records.items() if record.metrics}
        if not curves:
            return []
        return [Chart("Validation accuracy, epoch by epoch", charts.overlay_curves(curves, "val_acc"),
                      "Each point is one pass over the training images; both runs get the same number.")]
