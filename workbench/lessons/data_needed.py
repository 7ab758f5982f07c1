"""Lesson 3, how many pictures do I need: accuracy against training images per class for four ways to use a
pretrained network (prototypes, linear probe, fine-tune) and for training from scratch, on one validation set."""

from __future__ import annotations

from pathlib import Path

from workbench.analysis import charts
from workbench.analysis.fewshot import ALL, PROTOTYPES, evaluate_prototypes, feature_bank, kshot_folder
from workbench.data import open_dataset
from workbench.engine.config import RunConfig
from workbench.lessons.base import BACKBONE, Chart, Lesson, Results, accuracy, chance, pct, progress, trained

SHOTS = (1, 5, ALL)
METHODS = {"linear_probe": "linear probe", "partial": "fine-tune (upper layers)", "scratch": "from scratch"}
EPOCHS = 3
IMAGE_SIZE = 96
SEED = 0
VAL_FRACTION = 0.2
ASKED_SHOTS = 5  # the prediction is about this many pictures per class


def role(method: str, shots: int | str) -> str:
    return f"{method}-k{shots}"


class HowManyPictures(Lesson):
    id = "pictures"
    number = 3
    title = "How many pictures do I need?"
    question = (f"Suppose you only have **{ASKED_SHOTS} pictures of each shape**. Which way of using a network gets "
                "the most right on new pictures?")
    choices = {PROTOTYPES: "Prototypes: no training, compare with each class's average",
               "linear_probe": "Linear probe: train only the last layer",
               "partial": "Fine-tune the upper layers",
               "scratch": "Train from scratch"}
    deeper = ("few-shot", "8 · Few-shot: prototypes for any number of pictures, and the full curve")
    prompts = ("Where does each curve flatten out? What would more pictures buy there?",
               "Prototypes need no training at all. Why do they work with a single picture per class?",
               "Collecting a picture costs time. How many would you collect for a new class, and why?")
    what_runs = (f"{BACKBONE} at {IMAGE_SIZE} px, {EPOCHS} epochs per trained run: a linear probe, an upper-layer "
                 f"fine-tune and a network from scratch on 1, 5 and all training pictures per class (9 runs), then "
                 "prototypes at each size (seconds, no training). Every run is scored on the same validation "
                 "pictures.")
    main_role = role("linear_probe", ASKED_SHOTS)

    def plan(self, data: str, results: Results, folder: Path) -> dict[str, RunConfig]:
        queued = results.attempt.runs if results.attempt else {}
        missing = [(method, shots) for shots in SHOTS for method in METHODS if role(method, shots) not in queued]
        if not missing:
            return {}
        dataset = open_dataset(data, VAL_FRACTION, SEED)
        planned = {}
        for method, shots in missing:
            subset = folder / f"k-{shots}"
            if not subset.is_dir():  # written once: runs queued earlier read it
                kshot_folder(dataset, shots, subset, SEED)
            planned[role(method, shots)] = RunConfig(data=str(subset), backbone=BACKBONE, strategy=method,
                                                     epochs=EPOCHS, image_size=IMAGE_SIZE, seed=SEED)
        return planned

    def measure(self, results: Results, folder: Path) -> dict:
        bank = feature_bank(results.attempt.data, BACKBONE, IMAGE_SIZE, val_fraction=VAL_FRACTION, seed=SEED)
        points = []
        for shots in SHOTS:
            result = evaluate_prototypes(bank, shots, SEED)
            per_class = sum(result.images_per_class.values()) / len(result.images_per_class)
            points.append({"shots": shots, "images_per_class": round(per_class, 2),
                           "val_accuracy": result.val_accuracy})
        return {"prototypes": points, "feature_seconds": bank.seconds}

    def role_title(self, role_name: str) -> str:
        method, _, shots = role_name.rpartition("-k")
        return f"{METHODS.get(method, method)}, {'all' if shots == ALL else shots} per class"

    def points(self, results: Results) -> list[dict]:
        """The curve's points so far: trained runs as they report, prototypes once measured."""
        found = []
        for method in METHODS:
            for shots in SHOTS:
                record = results.run(role(method, shots))
                if trained(record):
                    per_class = record.facts.get("num_train", 0) / max(1, len(record.class_names))
                    found.append({"method": method, "shots": shots, "images_per_class": round(per_class, 2),
                                  "val_accuracy": accuracy(record)})
        found += [{"method": PROTOTYPES, **point} for point in results.measured.get("prototypes", [])]
        return found

    def explain(self, results: Results) -> list[str]:
        points = self.points(results)
        lines = []
        for shots in SHOTS:
            here = [p for p in points if p["shots"] == shots]
            if not here:
                continue
            label = "all the training pictures" if shots == ALL else f"{shots} picture{'s' if shots != 1 else ''}"
            size = f" ({here[0]['images_per_class']:g} per class)" if shots == ALL else " per class"
            parts = ", ".join(f"{self._method(p['method'])} {pct(p['val_accuracy'])}" for p in
                              sorted(here, key=lambda p: -p["val_accuracy"]))
            lines.append(f"With **{label}**{size}: {parts}.")
        waiting = [self.role_title(name) + f" ({progress(record, results.status(name))})"
                   for name, record in results.records.items() if not trained(record)]
        if waiting:
            lines.append("Still to come: " + "; ".join(waiting) + ".")
        if results.runs_ended and "prototypes" not in results.measured and "error" not in results.measured:
            lines.append("Prototypes are being computed now (the network looks at every picture once).")
        guess = next((chance(r) for r in results.records.values() if chance(r)), None)
        if guess is not None and points:
            lines.append(f"Guessing would score {pct(guess)}.")
        answer = self.winner(results)
        if answer is not None:
            best = self._at_asked(points)[answer]
            lines.append(f"**With {ASKED_SHOTS} pictures per class, {self._method(answer)} did best: "
                         f"{pct(best)}.**")
        return lines

    @staticmethod
    def _method(name: str) -> str:
        return "prototypes" if name == PROTOTYPES else METHODS[name]

    @staticmethod
    def _at_asked(points: list[dict]) -> dict[str, float]:
        return {p["method"]: p["val_accuracy"] for p in points if p["shots"] == ASKED_SHOTS}

    def winner(self, results: Results) -> str | None:
        if not results.complete:
            return None
        scores = self._at_asked(self.points(results))
        return max(scores, key=lambda m: (scores[m], m == PROTOTYPES)) if scores else None

    def figures(self, results: Results) -> list[Chart]:
        points = self.points(results)
        if not points:
            return []
        guess = next((chance(r) for r in results.records.values() if chance(r)), None)
        return [Chart("Accuracy against pictures per class", charts.data_efficiency_figure(points, guess),
                      "Each line is one way of using the network; every point is scored on the same validation "
                      "pictures.")]
