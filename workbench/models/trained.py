"""A trained model on disk and predictions from it: `Predictor.from_run(run_dir).predict([image, ...])`.

A run's model is `model.safetensors` (weights only: nothing is unpickled) plus `model.json` (backbone, classes and
preprocessing; for a model with several tasks, their names and classes too, see `models.heads`). Every image goes
through exactly what training's own evaluation did: decoded and resized like the training cache
(`data.decode_resized`), the evaluation centre crop (`data.eval_transform`), then the run's normalisation
(`core.normalize.Normalizer`). So the predictions on the run's validation images reproduce its recorded accuracy
exactly.
"""

from __future__ import annotations

import json
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import IO

import timm
import torch
from PIL import Image
from safetensors import SafetensorError, safe_open
from safetensors.torch import load_file, save_file

from workbench.core.normalize import Normalizer
from workbench.core.runfolder import MODEL_FILE, MODEL_INFO_FILE, replacing, write_json
from workbench.data import decode_resized, eval_transform
from workbench.models.heads import attach_task_heads, task_logits, tasks_of


def model_files(run_dir: str | Path) -> tuple[Path, Path]:
    """(weights, model.json) of the run in `run_dir`: where its trained model is, whether or not it exists yet."""
    return Path(run_dir) / MODEL_FILE, Path(run_dir) / MODEL_INFO_FILE


def has_model_files(run_dir: str | Path) -> bool:
    """Both files a trained model needs are on disk (what `load_model` reads)."""
    return all(path.is_file() for path in model_files(run_dir))


def save_run_model(run_dir: Path, model: torch.nn.Module, info: dict, epoch: int | None = None) -> None:
    """Weights as safetensors (atomically, tagged with the epoch they come from) plus what is needed to rebuild the
    model (backbone name, classes, preprocessing). The model itself is left as it is: this also runs mid-training."""
    # A CPU copy: the model may be on a GPU or in channels_last; copies also keep tied weights saveable as is.
    state = {name: tensor.detach().to("cpu", memory_format=torch.contiguous_format, copy=True)
             for name, tensor in model.state_dict().items()}
    with replacing(run_dir / MODEL_FILE) as tmp:
        save_file(state, str(tmp), metadata={"epoch": str(epoch)} if epoch is not None else None)
    write_json(run_dir / MODEL_INFO_FILE, info)


def saved_epoch(run_dir: Path) -> int | None:
    """The epoch the run's saved weights come from; None if there are none or they do not say."""
    try:
        with safe_open(str(Path(run_dir) / MODEL_FILE), framework="pt") as f:
            epoch = (f.metadata() or {}).get("epoch", "")
    except (OSError, SafetensorError):
        return None
    return int(epoch) if epoch.isdigit() else None


@dataclass
class LoadedModel:
    model: torch.nn.Module
    class_names: list[str]
    info: dict  # backbone, image_size, mean, std, crop_pct, interpolation


def load_model(run_dir: str | Path, device: str = "cpu") -> LoadedModel:
    """Rebuild a run's trained model (in eval mode) from its safetensors weights, with the extra head of every task
    its model.json lists beyond the first."""
    run_dir = Path(run_dir)
    info_path = run_dir / MODEL_INFO_FILE
    if not info_path.exists():
        raise FileNotFoundError(f"Run '{run_dir.name}' has no saved model (it may have failed before the end).")
    info = json.loads(info_path.read_text())
    model = timm.create_model(info["backbone"], pretrained=False, num_classes=len(info["class_names"]))
    attach_task_heads(model, tasks_of(info))
    model.load_state_dict(load_file(str(run_dir / MODEL_FILE)))
    return LoadedModel(model.to(device).eval(), info["class_names"], info)


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
        self.tasks = tasks_of({"class_names": self.class_names, **info})
        """Every task the model answers ({"name", "class_names"}), its own classes first; one for a plain model."""
        self.resize_to = resize_size(info)
        self.crop = eval_transform(info["image_size"])
        self.normalize = Normalizer(info["mean"], info["std"], self.device)

    @classmethod
    def from_run(cls, run_dir: str | Path, device: str = "cpu") -> Predictor:
        loaded = load_model(run_dir)
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

    @torch.inference_mode()
    def task_logits(self, images: Sequence[ImageInput]) -> list[torch.Tensor]:
        """One [len(images), classes of the task] tensor of raw scores per task in `tasks`, from one pass through
        the backbone per batch."""
        if not images:
            return [torch.empty(0, len(task["class_names"])) for task in self.tasks]
        per_batch = [[t.float().cpu() for t in task_logits(self.model, batch)] for batch in self.batches(images)]
        return [torch.cat(scores) for scores in zip(*per_batch, strict=True)]

    def predict(self, images: Sequence[ImageInput], top_k: int = 3) -> list[list[tuple[str, float]]]:
        """For each image, its `top_k` most likely classes as (class name, probability), most likely first."""
        return _top(self.logits(images), self.class_names, top_k)

    def predict_tasks(self, images: Sequence[ImageInput], top_k: int = 3) -> list[dict[str, list[tuple[str, float]]]]:
        """For each image, every task's `top_k` most likely classes (task name -> as `predict` gives them)."""
        per_task = [_top(logits, task["class_names"], top_k)
                    for logits, task in zip(self.task_logits(images), self.tasks, strict=True)]
        return [{task["name"]: answers[i] for task, answers in zip(self.tasks, per_task, strict=True)}
                for i in range(len(images))]


def _top(logits: torch.Tensor, class_names: list[str], top_k: int) -> list[list[tuple[str, float]]]:
    top = logits.softmax(dim=1).topk(min(top_k, len(class_names)), dim=1)
    return [[(class_names[i], float(p)) for p, i in zip(row_p, row_i, strict=True)]
            for row_p, row_i in zip(top.values.tolist(), top.indices.tolist(), strict=True)]


def describe(top: list[tuple[str, float]]) -> str:
    """'circle 91.2% · square 5.0% · star 1.1%': one image's top classes on one line."""
    return " · ".join(f"{name} {probability:.1%}" for name, probability in top)
