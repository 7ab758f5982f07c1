"""Seeing inside a finished run: which validation images it gets wrong and how sure it was, where in an image the
evidence for a class lies (Grad-CAM), how the validation set looks in the network's feature space before and after
training, how far each layer group moved from its starting weights, and precision / recall / F1 per class.

Everything here reads the run directory (model, config, summary) and the run's own validation split; the validation
predictions are cached in the run directory (`val_predictions.json` and small thumbnails), so a page opens instantly
the second time. The last section checks what the Inside-the-model page's browser picked and words what it shows.
"""

from __future__ import annotations

import io
import json
import math
import threading
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import TypeVar

import numpy as np
import pandas as pd
import plotly.colors
import torch
import torch.nn.functional as F
from PIL import Image
from safetensors.torch import load_file

from workbench import runs
from workbench.core.metrics import confusion_matrix, per_class_report
from workbench.data import DataError, load_rgb
from workbench.engine.config import RunConfig
from workbench.models.backbones import BackboneError, WeightsSource, create_backbone, layer_groups
from workbench.models.trained import BATCH_SIZE, ImageInput, Predictor
from workbench.runs.records import validation_images
from workbench.strategies import get_strategy

PREDICTIONS_FILE = "val_predictions.json"
THUMBNAILS_DIR = "val_thumbnails"
THUMBNAIL_SIZE = 112
PROJECTIONS = {"pca": "PCA", "tsne": "t-SNE"}


class InsightError(ValueError):
    """A view that cannot be computed for this run; the message says why and what to do instead."""


# ---------------------------------------------------------------------------------------------------------------
# Validation predictions (cached in the run directory)


@dataclass(frozen=True)
class ValPrediction:
    """The model's answer for one validation image."""

    index: int  # position in the run's validation split
    name: str  # "<class folder>/<file name>", as the user knows the image
    path: str  # where it was read from (gone again for a zipped dataset: use `thumbnail` to show it)
    thumbnail: str  # a small JPEG of what the network saw (the evaluation crop), inside the run directory
    true_class: str
    predicted_class: str
    confidence: float  # the model's probability for the class it predicted
    true_probability: float  # ... and for the right class
    loss: float  # cross-entropy: -log(true_probability)

    @property
    def correct(self) -> bool:
        return self.true_class == self.predicted_class


def _model_stamp(run_dir: Path) -> list[int]:
    """Changes whenever the saved model does: the cache is only valid for the weights it was computed with."""
    stat = (run_dir / runs.MODEL_FILE).stat()
    return [stat.st_mtime_ns, stat.st_size]


def _with_thumbnail(run_dir: Path, row: dict) -> ValPrediction:
    return ValPrediction(**row, thumbnail=str(run_dir / THUMBNAILS_DIR / f"{row['index']:05d}.jpg"))


def validation_predictions(run_dir: str | Path) -> list[ValPrediction]:
    """Every validation image of the run with its true and predicted class, confidence and loss, in split order.

    Computed once per saved model and cached in the run directory. InsightError for a run without a saved model
    or without a dataset (an imported model); DataError naming the image if the dataset cannot be read any more.
    """
    run_dir = Path(run_dir)
    if not (run_dir / runs.MODEL_FILE).exists():
        raise InsightError(f"Run '{run_dir.name}' has no saved model (it failed before the end): nothing to look "
                           "inside. Pick a finished run.")
    cache = run_dir / PREDICTIONS_FILE
    if cache.exists():
        stored = json.loads(cache.read_text())
        if stored.get("model") == _model_stamp(run_dir):
            return [_with_thumbnail(run_dir, row) for row in stored["predictions"]]
    rows = _predict_validation_set(run_dir)
    runs.write_json(cache, {"model": _model_stamp(run_dir), "predictions": rows})
    return [_with_thumbnail(run_dir, row) for row in rows]


def _open_validation_set(run_dir: Path):
    """`predict.validation_images`, refusing up front a run that has no dataset."""
    if not runs.load_run(run_dir).data:
        raise InsightError(f"Run '{run_dir.name}' has no recorded dataset (an imported model), so the views that "
                           "need its validation images are not available. Grad-CAM on an uploaded picture works.")
    return validation_images(run_dir)


def _predict_validation_set(run_dir: Path) -> list[dict]:
    predictor = Predictor.from_run(run_dir)
    thumbnails = run_dir / THUMBNAILS_DIR
    thumbnails.mkdir(exist_ok=True)
    rows: list[dict] = []
    with _open_validation_set(run_dir) as samples:
        for start in range(0, len(samples), BATCH_SIZE):
            chunk = samples[start:start + BATCH_SIZE]
            crops = [predictor.preprocess(sample.path) for sample in chunk]
            with torch.inference_mode():
                logits = predictor.model(predictor.normalize(torch.stack(crops))).float().cpu()
            probabilities = logits.softmax(dim=1)
            for offset, (sample, crop, probs) in enumerate(zip(chunk, crops, probabilities, strict=True)):
                index = start + offset
                _save_thumbnail(crop, thumbnails / f"{index:05d}.jpg")
                rows.append(_prediction_row(index, sample.path, sample.label, probs, predictor.class_names))
    return rows


def _prediction_row(index: int, path: Path, label: int, probs: torch.Tensor, class_names: list[str]) -> dict:
    predicted = int(probs.argmax())
    true_probability = float(probs[label])
    return {
        "index": index, "name": f"{path.parent.name}/{path.name}", "path": str(path),
        "true_class": class_names[label], "predicted_class": class_names[predicted],
        "confidence": round(float(probs[predicted]), 6), "true_probability": round(true_probability, 6),
        "loss": round(-math.log(max(true_probability, 1e-12)), 6),
    }


def _save_thumbnail(crop: torch.Tensor, path: Path) -> None:
    image = Image.fromarray(crop.permute(1, 2, 0).numpy())
    image.thumbnail((THUMBNAIL_SIZE, THUMBNAIL_SIZE))
    image.save(path, quality=85)


def prediction_matrix(predictions: Sequence[ValPrediction], class_names: list[str]) -> list[list[int]]:
    """The confusion matrix of these predictions (rows true, columns predicted)."""
    index = {name: i for i, name in enumerate(class_names)}
    targets = torch.tensor([index[p.true_class] for p in predictions], dtype=torch.long)
    preds = torch.tensor([index[p.predicted_class] for p in predictions], dtype=torch.long)
    return confusion_matrix(targets, preds, len(class_names))


def in_cell(predictions: Sequence[ValPrediction], true_class: str, predicted_class: str) -> list[ValPrediction]:
    """The predictions of one confusion-matrix cell (this true class, predicted as that one), most confident first."""
    cell = [p for p in predictions if p.true_class == true_class and p.predicted_class == predicted_class]
    return sorted(cell, key=lambda p: -p.confidence)


def most_wrong(predictions: Sequence[ValPrediction], n: int = 12) -> list[ValPrediction]:
    """The `n` most confidently wrong predictions: misclassified ones, highest loss first (fastai's top losses)."""
    return sorted((p for p in predictions if not p.correct), key=lambda p: -p.loss)[:n]


def cell_images(run_dir: str | Path, true_class: str, predicted_class: str) -> list[ValPrediction]:
    """The validation images of one confusion-matrix cell of the run, most confident first."""
    return in_cell(validation_predictions(run_dir), true_class, predicted_class)


def top_losses(run_dir: str | Path, n: int = 12) -> list[ValPrediction]:
    """The run's `n` most confidently wrong validation images, highest loss first."""
    return most_wrong(validation_predictions(run_dir), n)


def most_confused(matrix: list[list[int]], class_names: list[str], n: int = 5) -> list[tuple[str, str, int]]:
    """(true class, predicted class, count) of the most frequent mistakes, most frequent first (fastai's
    `most_confused`)."""
    pairs = [(class_names[t], class_names[p], count) for t, row in enumerate(matrix) for p, count in enumerate(row)
             if t != p and count > 0]
    return sorted(pairs, key=lambda pair: -pair[2])[:n]


# ---------------------------------------------------------------------------------------------------------------
# Per-class report


def class_report(matrix: list[list[int]], class_names: list[str]) -> pd.DataFrame:
    """Precision, recall, F1 and support (validation images) per class, from a confusion matrix."""
    table = pd.DataFrame.from_dict(per_class_report(matrix, class_names), orient="index")
    p, r = table["precision"], table["recall"]
    table["f1"] = (2 * p * r / (p + r)).where(p + r > 0, 0.0)
    table["support"] = table["support"].astype(int)
    return table[["precision", "recall", "f1", "support"]].rename_axis("class")


# ---------------------------------------------------------------------------------------------------------------
# Grad-CAM

_CAM_LOCK = threading.Lock()
CNN_METHOD = "Grad-CAM on the last feature map (the output of forward_features, before pooling)"
TOKEN_METHOD = "Grad-CAM on the patch tokens entering the last transformer block (class/prefix tokens skipped)"


def _last_block(model: torch.nn.Module) -> torch.nn.Module | None:
    """The deepest module timm lists in `feature_info` (for a ViT: its last block), if the model lists any."""
    info = getattr(model, "feature_info", None)
    if not info:
        return None
    try:
        return model.get_submodule(info[-1]["module"])
    except (AttributeError, KeyError, TypeError):
        return None


def _as_grid(tokens: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    """[1, N, C] tokens -> [1, C, h, w] map of the patch tokens (prefix tokens, such as the class token, dropped)."""
    patches = tokens[0, getattr(model, "num_prefix_tokens", 0):]
    side = math.isqrt(patches.shape[0])
    if side * side != patches.shape[0]:
        raise InsightError(f"Cannot arrange {patches.shape[0]} patch tokens into a square grid: Grad-CAM needs a "
                           "square input.")
    return patches.T.reshape(1, -1, side, side)


def _channels_first(features: torch.Tensor, model: torch.nn.Module) -> torch.Tensor:
    return features.permute(0, 3, 1, 2) if getattr(model, "output_fmt", "NCHW") == "NHWC" else features


def grad_cam(model: torch.nn.Module, batch: torch.Tensor,
             class_index: int | None = None) -> tuple[torch.Tensor, torch.Tensor, str]:
    """(heatmap [H, W] in [0, 1] at the input's resolution, logits [num_classes], method) for one normalised image
    `batch` [1, 3, H, W], for `class_index` (default: the predicted class).

    Grad-CAM (Selvaraju et al. 2017): each channel of a spatial map is weighted by the mean gradient of the class
    score over that map, the weighted sum is clipped at 0. CNNs (4-D `forward_features`) use that output, the layer
    before pooling. Token models (3-D `forward_features`) use the patch tokens entering the last block: with class
    token pooling the final patch tokens get no gradient, but the class token reads the patches in that last block.
    """
    maps, grads, logits, method = _maps_and_gradients(model, batch, class_index)
    weights = grads.mean(dim=(2, 3), keepdim=True)
    cam = F.relu((weights * maps).sum(dim=1, keepdim=True)).detach()
    cam = F.interpolate(cam, size=batch.shape[-2:], mode="bilinear", align_corners=False)[0, 0]
    peak = cam.max()
    return (cam / peak if peak > 0 else cam), logits, method


def _maps_and_gradients(model: torch.nn.Module, batch: torch.Tensor,
                        class_index: int | None) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor, str]:
    """The spatial map Grad-CAM weighs [1, C, h, w], the class score's gradient on it, the logits and the method."""
    model.eval()
    block = _last_block(model)
    captured: dict[str, torch.Tensor] = {}

    def keep_tokens(_module: torch.nn.Module, args: tuple) -> None:
        captured["tokens"] = args[0]

    # One at a time: a model shared between app sessions would otherwise feed one session's tokens to another's hook.
    with _CAM_LOCK:
        hook = block.register_forward_pre_hook(keep_tokens) if block is not None else None
        try:
            with torch.enable_grad():
                # grad through the input makes every activation part of the graph, even if weights are frozen
                features = model.forward_features(batch.detach().clone().requires_grad_(True))
                logits = model.forward_head(features)[0]
                index = int(logits.argmax()) if class_index is None else class_index
                spatial = features if features.ndim == 4 else captured.get("tokens")
                if spatial is None:
                    raise InsightError(f"{type(model).__name__} does not say (in timm's feature_info) which block "
                                       "comes last, so Grad-CAM cannot find its patch tokens.")
                gradients = torch.autograd.grad(logits[index], spatial)[0]
        finally:
            if hook is not None:
                hook.remove()
    if features.ndim == 4:
        return _channels_first(spatial, model), _channels_first(gradients, model), logits.detach(), CNN_METHOD
    return _as_grid(spatial, model), _as_grid(gradients, model), logits.detach(), TOKEN_METHOD


@dataclass
class Explanation:
    """Where in an image the evidence for one class lies, as a trained model sees it."""

    class_name: str  # the class the heat is for
    probability: float  # the model's probability for that class
    predicted_class: str
    predicted_probability: float
    heatmap: np.ndarray  # [H, W] float32 in [0, 1] (1: the strongest evidence), at the network's input size
    image: np.ndarray  # [H, W, 3] uint8: what the network saw (the evaluation crop)
    method: str

    def sentence(self) -> str:
        """What the heat is for and what the model answers, in one Markdown line under the picture."""
        return (f"Heat for **{self.class_name}** ({self.probability:.0%}); the model predicts "
                f"**{self.predicted_class}** ({self.predicted_probability:.0%}).")

    def overlay(self, strength: float = 0.5) -> Image.Image:
        """The image with the heatmap over it in the Turbo colour scale (blue: none, red: the most evidence)."""
        colours = _turbo_lut()[np.round(self.heatmap * 255).astype(np.uint8)]
        blended = (1 - strength) * self.image.astype(np.float32) + strength * colours
        return Image.fromarray(blended.clip(0, 255).astype(np.uint8))


def _turbo_lut() -> np.ndarray:
    """[256, 3] float32 RGB: plotly's Turbo colour scale, the same one the charts use."""
    samples = plotly.colors.sample_colorscale("Turbo", list(np.linspace(0, 1, 256)))
    return np.array([plotly.colors.unlabel_rgb(colour) for colour in samples], dtype=np.float32)


def explain(predictor: Predictor, image: ImageInput | bytes, class_name: str | None = None) -> Explanation:
    """Grad-CAM of `image` (a path, an open file, a PIL image, or the bytes of an uploaded file) for `class_name`
    (default: the class the model predicts). DataError if the image cannot be read; InsightError for a class the
    model does not know."""
    if class_name is not None and class_name not in predictor.class_names:
        raise InsightError(f"This model does not know the class '{class_name}'. It knows: "
                           f"{', '.join(predictor.class_names)}.")
    crop = predictor.preprocess(io.BytesIO(image) if isinstance(image, bytes) else image)
    batch = predictor.normalize(crop.unsqueeze(0))
    wanted = None if class_name is None else predictor.class_names.index(class_name)
    heatmap, logits, method = grad_cam(predictor.model, batch, wanted)
    probabilities = logits.float().softmax(dim=0).cpu()
    predicted = int(probabilities.argmax())
    chosen = predicted if wanted is None else wanted
    return Explanation(
        class_name=predictor.class_names[chosen], probability=float(probabilities[chosen]),
        predicted_class=predictor.class_names[predicted], predicted_probability=float(probabilities[predicted]),
        heatmap=heatmap.float().cpu().numpy(), image=crop.permute(1, 2, 0).numpy(), method=method)


def validation_image(run_dir: str | Path, prediction: ValPrediction) -> str | bytes:
    """The original validation image behind a prediction, as `explain` takes it and a cache can key on: its path,
    or for a zipped dataset (extracted only while it is read) the image as PNG bytes."""
    if Path(prediction.path).is_file():
        return prediction.path
    with _open_validation_set(Path(run_dir)) as samples:
        image = load_rgb(samples[prediction.index].path)
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


# ---------------------------------------------------------------------------------------------------------------
# Where training started


def _config_of(record: runs.RunRecord) -> RunConfig:
    """The run's config; InsightError for a model not trained by a strategy (imported, prototypes), whose start is
    not recorded."""
    if record.config is None:
        raise InsightError(f"Run '{record.id}' is an imported model: where its weights started is not known, so "
                           "nothing can be compared with its start.")
    return record.config


def _same_source(recorded: dict, now: WeightsSource) -> bool:
    """A run that downloaded its weights finds them in the Hugging Face cache now: the same weights."""
    kinds = {recorded.get("kind"), now.kind}
    return (kinds <= {"hub", "hub-cache"} and recorded.get("detail") == now.detail) or \
        (recorded.get("kind") == now.kind and recorded.get("detail", "") == now.detail)


def starting_model(run_dir: str | Path) -> tuple[torch.nn.Module, str]:
    """The run's model as it was before its first step, and a sentence saying what that was.

    Rebuilt exactly as training built it: the same backbone and weights source, after the same seeding. A random
    head (and, for `scratch`, the whole random network) comes out the same because timm initialises from torch's
    RNG, which the run seeded first. InsightError when the start cannot be rebuilt (an imported model, a weights
    file that is gone, or weights that now come from elsewhere).
    """
    record = runs.load_run(run_dir)
    config, recorded = _config_of(record), record.facts.get("weights_source") or {}
    weights = config.weights if get_strategy(config.strategy).pretrained else "none"
    try:
        # a forked RNG: the app's other threads (a run training now) keep their random state
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(config.seed)  # as `Run.prepare` seeded everything before it built the model
            model, source = create_backbone(config.backbone, len(record.class_names), weights, allow_download=False)
    except BackboneError as error:
        raise InsightError(f"The starting weights of run '{record.id}' cannot be loaded again: {error}") from None
    if not _same_source(recorded, source):
        raise InsightError(f"Run '{record.id}' started from {recorded.get('description', 'unknown weights')}, but "
                           f"here they would now come from {source.describe()}: the comparison would be wrong.")
    if source.pretrained:
        return model.eval(), f"the pretrained backbone ({source.describe()}) with a fresh random head"
    return model.eval(), f"random weights, recreated from the run's seed ({config.seed})"


# ---------------------------------------------------------------------------------------------------------------
# Weight drift


@dataclass(frozen=True)
class GroupDrift:
    """How far one layer group moved in training: ||w - w0|| / ||w0|| over all its parameters."""

    index: int
    name: str
    num_params: int
    drift: float  # relative change; 0.0 exactly when not a single weight of the group changed
    frozen: bool  # frozen for the whole run (the run's record)

    def to_dict(self) -> dict:
        return asdict(self)


def weight_drift(run_dir: str | Path) -> list[GroupDrift]:
    """Relative change of every layer group (stem -> head) between the run's starting and final weights."""
    run_dir = Path(run_dir)
    if not (run_dir / runs.MODEL_FILE).exists():
        raise InsightError(f"Run '{run_dir.name}' has no saved model: there are no final weights to compare.")
    start, _ = starting_model(run_dir)
    final = load_file(str(run_dir / runs.MODEL_FILE))
    initial = dict(start.named_parameters())
    record = runs.load_run(run_dir)
    # where the run ended (gradual unfreezing changes it epoch by epoch), else where it started
    frozen = record.summary.frozen_groups if record.summary else None
    frozen = (record.facts.get("frozen_groups") if frozen is None else frozen) or 0
    return [GroupDrift(g.index, g.name, g.num_params, _relative_change(initial, final, g.param_names), g.index < frozen)
            for g in layer_groups(start)]


@torch.no_grad()
def _relative_change(initial: dict[str, torch.Tensor], final: dict[str, torch.Tensor], names: Sequence[str]) -> float:
    change = sum(float(((final[n].float() - initial[n].float()) ** 2).sum()) for n in names)
    size = sum(float((initial[n].float() ** 2).sum()) for n in names)
    return math.sqrt(change / size) if size > 0 else math.nan


# ---------------------------------------------------------------------------------------------------------------
# Feature map of the validation set


@dataclass
class FeatureMap:
    """The validation set in the network's feature space (the pooled features the head reads), projected to 2-D,
    before training and after."""

    method: str  # "pca" | "tsne"
    before: np.ndarray  # [N, 2]
    after: np.ndarray  # [N, 2]
    separation_before: float  # silhouette of the classes in the full feature space: -1 (mixed) .. 1 (apart)
    separation_after: float
    points: list[ValPrediction]  # one per row: class, file, prediction, thumbnail
    before_label: str  # what "before" was, in words


@torch.inference_mode()
def embed(predictor: Predictor, images: Sequence[ImageInput]) -> torch.Tensor:
    """[len(images), D] pooled features (what the classifier reads: timm's `forward_head(pre_logits=True)`)."""
    model = predictor.model.eval()
    chunks = [model.forward_head(model.forward_features(batch), pre_logits=True).float().cpu()
              for batch in predictor.batches(images)]
    return torch.cat(chunks).flatten(1)


def project(features: torch.Tensor, method: str = "pca", seed: int = 0) -> np.ndarray:
    """[N, 2]: PCA (torch.pca_lowrank, seeded) or t-SNE (scikit-learn)."""
    if method not in PROJECTIONS:
        raise InsightError(f"Unknown projection '{method}'. Choose one of: {', '.join(PROJECTIONS)}.")
    features = features.double()
    if method == "tsne":
        from sklearn.manifold import TSNE  # imported when asked: it takes a second
        from threadpoolctl import threadpool_limits

        perplexity = max(1.0, min(30.0, (len(features) - 1) / 3))
        tsne = TSNE(2, perplexity=perplexity, init="pca", random_state=seed)
        # For a few thousand points OpenMP threads cost more than they save, and on a busy CPU their spin-waiting
        # made a 60-point t-SNE ten times slower.
        with threadpool_limits(1 if len(features) < 2000 else None, user_api="openmp"):
            return tsne.fit_transform(features.numpy())
    with torch.random.fork_rng():
        torch.manual_seed(seed)  # pca_lowrank is randomised: the same run gives the same picture
        _, _, components = torch.pca_lowrank(features, q=min(2, *features.shape), center=True)
    projected = (features - features.mean(0)) @ components
    return np.pad(projected.numpy(), ((0, 0), (0, 2 - projected.shape[1])))


def separation(features: torch.Tensor, labels: Sequence[str]) -> float:
    """Silhouette score of the classes (cosine distance, in the full feature space, so the same for PCA and t-SNE):
    near 1 when every image is much closer to its own class than to any other, near 0 when classes overlap."""
    from sklearn.metrics import silhouette_score

    if not 2 <= len(set(labels)) <= len(labels) - 1:
        return math.nan
    return float(silhouette_score(features.numpy(), list(labels), metric="cosine"))


def feature_map(run_dir: str | Path, method: str = "pca") -> FeatureMap:
    """The validation set's features before training (the run's starting model) and after (its final model)."""
    run_dir = Path(run_dir)
    points = validation_predictions(run_dir)
    after_model = Predictor.from_run(run_dir)
    start, before_label = starting_model(run_dir)
    before_model = Predictor(start, after_model.class_names, after_model.info)
    with _open_validation_set(run_dir) as samples:
        paths = [sample.path for sample in samples]
        if len(paths) != len(points):
            raise DataError(f"The dataset of run '{run_dir.name}' changed since it trained ({len(paths)} validation "
                            f"images now, {len(points)} then).")
        before, after = embed(before_model, paths), embed(after_model, paths)
    labels = [p.true_class for p in points]
    seed = runs.load_run(run_dir).config.seed  # starting_model above refused a run without a config
    return FeatureMap(method, project(before, method, seed), project(after, method, seed),
                      separation(before, labels), separation(after, labels), points, before_label)


# ---------------------------------------------------------------------------------------------------------------
# The Inside-the-model page: which run, cell and points were picked (checked: a browser sent them), what a grid
# shows, and the sentences about it

MAX_SHOWN = 36
"""Images in one grid: a cell of a big validation set can hold thousands."""
VIEWS_EXPLAINED = {  # view -> how to read it, in words a teacher can read out (the page's captions)
    "top_losses": "The mistakes the model was surest about, worst first. Look for mislabelled images, confusing "
                  "backgrounds or classes that really do look alike.",
    "projections": "PCA: the two directions of largest spread (fast, faithful to distances). t-SNE: keeps neighbours "
                   "together (shows clusters better, distances between clusters mean little).",
    "separation": "Class separation: the silhouette score of the classes in the full feature space (cosine distance), "
                  "from −1 (mixed up) through 0 (overlapping) to 1 (far apart). It measures how tight and far apart "
                  "the clusters are, not whether the head can cut between them: a run can be 100% right with a "
                  "modest score.",
    "drift": "How far training moved each layer group from its starting weights, as a share of their size "
             "(‖w − w₀‖ / ‖w₀‖), from the stem (left) to the head (right). Frozen groups stay at exactly 0; in a "
             "fine-tune the lower layers usually move least, and L2-SP holds the whole backbone closer to its start. "
             "The head starts from random weights, so it usually moves most.",
    "report": "Precision: of the images predicted as this class, the share that were. Recall: of this class's images, "
              "the share found. F1: the harmonic mean of the two. Support: validation images of the class.",
}
T = TypeVar("T")


def default_run(records: Sequence[runs.RunRecord], *wanted: str | None) -> str:
    """The id of the run to open among `records` (newest first, not empty): the first of `wanted` (the URL's, the
    Train page's) that is one of them, else the newest finished run, else the newest."""
    ids = {record.id for record in records}
    found = next((run_id for run_id in wanted if run_id in ids), None)
    if found is not None:
        return found
    finished = [record for record in records if record.status == "finished"]
    return (finished or list(records))[0].id


def comparable_runs(record: runs.RunRecord, records: Sequence[runs.RunRecord]) -> list[runs.RunRecord]:
    """The other runs of `records` with the same classes: Grad-CAM can explain the same picture with both."""
    return [r for r in records if r.id != record.id and r.class_names == record.class_names]


def clicked_cell(points: Sequence[dict], class_names: Sequence[str]) -> tuple[str, str] | None:
    """(true class, predicted class) of the confusion-matrix cell clicked (its first point: y is the true class, x
    the predicted one); None when nothing is clicked or the point names a class the run does not have."""
    if not points or not isinstance(points[0], dict):
        return None
    cell = (str(points[0].get("y")), str(points[0].get("x")))
    return cell if set(cell) <= set(class_names) else None


def cell_or_first(cell: tuple[str | None, str | None], matrix: list[list[int]],
                  class_names: list[str]) -> tuple[str, str]:
    """`cell` (true class, predicted class) when both are classes of the run; else the cell to show first: the most
    frequent mistake, or the first class's right answers when there is none."""
    if set(cell) <= set(class_names):
        return cell
    worst = most_confused(matrix, class_names, 1)
    return (worst[0][0], worst[0][1]) if worst else (class_names[0], class_names[0])


def cell_heading(true_class: str, predicted_class: str, count: int) -> str:
    """The Markdown line above the images of a confusion-matrix cell."""
    verdict = "right" if true_class == predicted_class else "wrong"
    return (f"**{count} image(s)** of **{true_class}** predicted as **{predicted_class}** ({verdict}), most "
            "confident first.")


def cell_caption(prediction: ValPrediction) -> str:
    """An image in a cell (its classes are the cell's): 'star_004.jpg · 93% sure'."""
    return f"{prediction.name.split('/')[-1]} · {prediction.confidence:.0%} sure"


def mistake_caption(prediction: ValPrediction) -> str:
    """A top loss: 'star → circle · 93% sure'."""
    return f"{prediction.true_class} → {prediction.predicted_class} · {prediction.confidence:.0%} sure"


def point_caption(prediction: ValPrediction) -> str:
    """A point picked on the feature map: 'star → circle'."""
    return f"{prediction.true_class} → {prediction.predicted_class}"


def first_shown(items: Sequence[T], limit: int = MAX_SHOWN) -> tuple[list[T], str | None]:
    """The first `limit` of `items`, and a line saying how many more there are (None when all are shown)."""
    hidden = len(items) - limit
    return list(items[:limit]), (f"… and {hidden} more." if hidden > 0 else None)


def mistakes_first(predictions: Sequence[ValPrediction]) -> list[ValPrediction]:
    """Every prediction, the mistakes first (highest loss first: the ones worth explaining), then the right ones."""
    return most_wrong(predictions, len(predictions)) + [p for p in predictions if p.correct]


def image_label(prediction: ValPrediction) -> str:
    """A validation image in a picker: 'star/star_004.jpg (predicted circle, 93%)'."""
    return f"{prediction.name} (predicted {prediction.predicted_class}, {prediction.confidence:.0%})"


def picked_points(points: Sequence[dict], found: FeatureMap) -> list[ValPrediction]:
    """The validation images of the points picked on the feature map, in split order. Each point carries its row as
    `customdata[0]` (`charts.class_feature_map_figure`); a point without a row of this map is ignored."""
    rows = set()
    for point in points:
        data = point.get("customdata") if isinstance(point, dict) else None
        try:
            row = int(data[0])
        except (TypeError, ValueError, IndexError):
            continue
        if 0 <= row < len(found.points):
            rows.add(row)
    return [found.points[row] for row in sorted(rows)]


def problem_note(view: str, error: InsightError | DataError) -> tuple[str, str]:
    """(level, sentence) when a view cannot be computed for a run; level is "info" (this run has no such view, the
    error says why) or "error". `view` is "predictions" (the validation predictions: a DataError means their images
    cannot be read any more), "grad_cam" (an error either way: the picture or the class asked for) or another."""
    if view == "grad_cam":
        return "error", str(error)
    if view == "predictions" and isinstance(error, DataError):
        return "error", f"{error} The validation images of this run cannot be read any more."
    return "info", str(error)


def recount_note(recorded: list[list[int]] | None, matrix: list[list[int]]) -> str | None:
    """A warning when the confusion `matrix` of the predictions made now differs from the one the run `recorded` at
    its end (None when they agree, or when the run recorded none)."""
    if not recorded or recorded == matrix:
        return None
    return ("These predictions, made again now, differ from the matrix the run recorded at its end: the dataset may "
            "have changed since, or the run trained on a GPU (whose bfloat16 arithmetic rounds differently). The "
            "images below are the ones behind the matrix shown here.")
