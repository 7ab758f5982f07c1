"""Predictions from a trained run: `Predictor.from_run(run_dir).predict([image, ...])`.

Every image goes through exactly what training's own evaluation did: decoded and resized like the training cache
(`data.decode_resized`), the evaluation centre crop (`data.eval_transform`), then the run's normalisation
(`train.Normalizer`). So the predictions on the run's validation images reproduce its recorded accuracy exactly.
"""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import IO

import torch
from PIL import Image

from . import runs
from .data import Sample, decode_resized, eval_transform, open_dataset
from .train import Normalizer

ImageInput = str | Path | IO[bytes] | Image.Image
"""A file path, an open binary file (an upload) or a PIL image."""

BATCH_SIZE = 32
DEFAULT_CROP_PCT = 0.875  # what training assumes when a model's config gives none


def resize_size(info: dict) -> int:
    """The short side images are resized to before the centre crop, as training's image cache does."""
    return round(info["image_size"] / (info.get("crop_pct") or DEFAULT_CROP_PCT))


class Predictor:
    """A trained model with the preprocessing it was trained with. Runs on the CPU unless told otherwise."""

    def __init__(self, model: torch.nn.Module, class_names: list[str], info: dict, device: str = "cpu"):
        self.device = torch.device(device)
        self.model = model.to(self.device, memory_format=torch.channels_last).eval()  # as in training
        self.class_names = list(class_names)
        self.info = info
        self.resize_to = resize_size(info)
        self.crop = eval_transform(info["image_size"])
        self.normalize = Normalizer(info["mean"], info["std"], self.device)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu") -> Predictor:
        loaded = runs.load_model(run_dir)
        return cls(loaded.model, loaded.class_names, loaded.info, device)

    def preprocess(self, image: ImageInput) -> torch.Tensor:
        """uint8 [3, image_size, image_size]: what the network sees of the image, before normalisation."""
        return self.crop(decode_resized(image, self.resize_to))

    def batches(self, images: Sequence[ImageInput]) -> Iterator[torch.Tensor]:
        """Normalised float batches, ready for the network, in the order given."""
        for start in range(0, len(images), BATCH_SIZE):
            chunk = [self.preprocess(image) for image in images[start:start + BATCH_SIZE]]
            yield self.normalize(torch.stack(chunk))

    @torch.inference_mode()
    def logits(self, images: Sequence[ImageInput]) -> torch.Tensor:
        """[len(images), num_classes] raw scores. DataError naming the image if one cannot be read."""
        if not images:
            return torch.empty(0, len(self.class_names))
        return torch.cat([self.model(batch).float().cpu() for batch in self.batches(images)])

    def predict(self, images: Sequence[ImageInput], top_k: int = 3) -> list[list[tuple[str, float]]]:
        """For each image, its `top_k` most likely classes as (class name, probability), most likely first."""
        probabilities = self.logits(images).softmax(dim=1)
        top = probabilities.topk(min(top_k, len(self.class_names)), dim=1)
        return [[(self.class_names[i], float(p)) for p, i in zip(row_p, row_i, strict=True)]
                for row_p, row_i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


@contextlib.contextmanager
def validation_images(run_dir: str | Path) -> Iterator[list[Sample]]:
    """The run's validation images, split again exactly as the run split them (same data, fraction and seed).

    Raises DataError if the run's images cannot be read any more, ValueError for a run with no recorded dataset
    (an imported model). A zipped dataset is extracted into a temporary folder that lives as long as the context.
    """
    config = runs.load_run(run_dir).config
    if not config.get("data"):
        raise ValueError(f"Run '{Path(run_dir).name}' has no recorded dataset (an imported model).")
    with tempfile.TemporaryDirectory(prefix="workbench-val-") as scratch:
        dataset = open_dataset(config["data"], config.get("val_fraction", 0.2), config.get("seed", 0),
                               extract_to=Path(scratch) / "data")
        yield dataset.val


def describe(top: list[tuple[str, float]]) -> str:
    """'circle 91.2% · square 5.0% · star 1.1%': one image's top classes on one line."""
    return " · ".join(f"{name} {probability:.1%}" for name, probability in top)
