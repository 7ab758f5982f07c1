"""Domain-adversarial training (DANN, Ganin et al. 2016): labelled source images, unlabelled target images.

Every training step takes a source batch and a target batch of the same size through the backbone together
(`forward_features` + `forward_head(pre_logits=True)`, so BatchNorm sees both domains). The classifier head learns
the source labels; a small domain classifier learns to tell source features from target features, behind a
gradient-reversal layer: the backbone receives the domain classifier's gradient multiplied by -lambda, so it
learns features in which the two domains cannot be told apart. lambda follows the paper's schedule,
lambda_p = 2 / (1 + exp(-10 p)) - 1 with p the share of training done: near 0 while the domain classifier's
answers are still noise, close to 1 at the end.

The learning rate follows the run's own schedule (cosine with warmup by default) rather than the paper's
mu_p = mu_0 / (1 + 10 p)^0.75: both anneal from large early steps to small late ones, and keeping the engine's
schedule makes a DANN run comparable with every other run of the same budget.

Target class folders, when present and named like source classes, are used only to measure target accuracy after
each epoch, never for training. The target images are both what DANN adapts to and what it is measured on, as in
the paper's unsupervised setting. Before the first step and after the last, the pooled features of source and
target images are projected to 2-D (PCA) for a map of how far apart the domains are; the map is saved in the run
directory as feature_map.json.
"""

from __future__ import annotations

import json
import math
import random
import tempfile
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader

from workbench.core.plot_style import LAYOUT, epoch_axis
from workbench.core.runfolder import write_json
from workbench.data import AUGMENTATIONS, IMAGE_EXTENSIONS, DataError, Sample, load_rgb, open_dataset
from workbench.models.trained import Predictor, load_model
from workbench.strategies.base import Figure, Objective, Panel, Strategy, TrainingContext, register
from workbench.strategies.code import StrategyCode
from workbench.strategies.discriminative import LayerDecayOptions, layer_decay_code, layer_decay_groups

if TYPE_CHECKING:
    import plotly.graph_objects as go

    from workbench.engine.config import RunConfig
    from workbench.runs.records import RunRecord

FEATURE_MAP_FILE = "feature_map.json"
MAP_POINTS_PER_DOMAIN = 200  # a readable scatter; a seeded sample of larger datasets
DOMAIN_HIDDEN = 256  # width of the domain classifier's hidden layer
# The domain classifier learns at the run's own learning rate, like the classifier head (the backbone's layers learn
# more slowly: the strategy uses layer-wise rates). Measured before those layer-wise rates, with every layer at the
# run's rate: at 10x (the usual rate for new layers) the domain classifier won the game outright on the sample data
# (it stayed 70-99% right, and target accuracy ended no better than source-only, 66% vs 63%; lite0, 64 px, 4 epochs,
# lr 1e-3). With layer-wise rates at 1x, DANN beat the same source-only recipe on every seed tried (tests/test_dann).
DOMAIN_LR_SCALE = 1.0
UNLABELLED = -1


class GradientReversal(torch.autograd.Function):
    """Identity on the way forward; on the way back the gradient is multiplied by -lambda."""

    @staticmethod
    def forward(ctx, x: torch.Tensor, lam: float) -> torch.Tensor:
        ctx.lam = lam
        return x.view_as(x)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> tuple[torch.Tensor, None]:
        return -ctx.lam * grad, None


def reverse_gradient(x: torch.Tensor, lam: float) -> torch.Tensor:
    return GradientReversal.apply(x, lam)


def dann_lambda(progress: float, gamma: float = 10.0) -> float:
    """The paper's schedule: 2 / (1 + exp(-gamma p)) - 1 for training progress p in [0, 1]."""
    return 2.0 / (1.0 + math.exp(-gamma * min(max(progress, 0.0), 1.0))) - 1.0


def domain_classifier(num_features: int, hidden: int = DOMAIN_HIDDEN) -> torch.nn.Module:
    """A small MLP: pooled features -> one logit, > 0 meaning 'target'."""
    return torch.nn.Sequential(torch.nn.Linear(num_features, hidden), torch.nn.ReLU(), torch.nn.Dropout(0.5),
                               torch.nn.Linear(hidden, 1))


# ---------------------------------------------------------------------------------------------------------------
# Target images


@dataclass
class TargetImages:
    samples: list[Sample]  # label is the source class index, or UNLABELLED
    labelled: bool
    note: str  # one sentence on how the folder was read


def _loose_images(root: Path) -> list[Path]:
    return sorted(p for p in root.rglob("*") if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
                  and not any(part.startswith(".") or part == "__MACOSX" for part in p.relative_to(root).parts))


def _unlabelled(root: Path, source: str, why: str) -> TargetImages:
    readable, unreadable = [], []
    for path in _loose_images(root):
        try:
            load_rgb(path)
            readable.append(path)
        except DataError:
            unreadable.append(path.name)
    if not readable:
        raise DataError(f"Target data '{source}' holds no readable images. Give a folder (or .zip) of images of the "
                        "target domain, loose or in class subfolders.")
    skipped = f" {len(unreadable)} unreadable file(s) skipped, e.g. {unreadable[0]}." if unreadable else ""
    return TargetImages([Sample(p, UNLABELLED, "target") for p in readable], False,
                        f"{len(readable)} target images without labels ({why}).{skipped}")


def open_target(path: str, class_names: list[str], scratch: Path) -> TargetImages:
    """Read the target images. Class subfolders named like source classes become labels for evaluation only;
    anything else is read as unlabelled images. A zip is extracted into `scratch`."""
    if not path:
        raise DataError("DANN needs target images: give --target-data, a folder or .zip of images from the domain "
                        "the model must work on (e.g. sample_data/shapes_shifted).")
    source = Path(path).expanduser()
    if not source.exists():
        raise DataError(f"Target data '{source}' does not exist. Check the spelling, or give the folder of target "
                        "images.")
    extracted = scratch / "target"
    try:
        dataset = open_dataset(source, seed=0, extract_to=extracted)
    except DataError as error:
        if "refused" in str(error) or "not a readable .zip" in str(error):
            raise  # an unsafe or broken zip is refused outright
        return _unlabelled(source if source.is_dir() else extracted, path, "no class folders")
    samples = dataset.train + dataset.val + dataset.test  # unlabelled for DANN: every split is target data
    if not set(dataset.class_names) <= set(class_names):
        root = dataset.root
        return _unlabelled(root, path, f"its folders {', '.join(dataset.class_names)} are not source classes")
    remapped = [Sample(s.path, class_names.index(dataset.class_names[s.label]), "target") for s in samples]
    return TargetImages(remapped, True, f"{len(remapped)} target images; their class folders are used only to "
                                        "measure target accuracy")


# ---------------------------------------------------------------------------------------------------------------
# The 2-D map of features


def pca_2d(features: torch.Tensor) -> torch.Tensor:
    """[N, D] -> [N, 2]: the two directions of largest variance (exact PCA through an SVD of the centred data)."""
    centred = features.float() - features.float().mean(0, keepdim=True)
    _, _, v = torch.linalg.svd(centred, full_matrices=False)
    return centred @ v[:2].T


def map_points(source: torch.Tensor, source_labels: torch.Tensor, target: torch.Tensor,
               target_labels: torch.Tensor, class_names: list[str]) -> dict:
    """One map: source and target features projected together, with each point's domain and class."""
    xy = pca_2d(torch.cat([source, target]))
    labels = torch.cat([source_labels, target_labels]).tolist()
    return {"x": [round(v, 4) for v in xy[:, 0].tolist()], "y": [round(v, 4) for v in xy[:, 1].tolist()],
            "domain": ["source"] * len(source) + ["target"] * len(target),
            "class": [class_names[i] if i >= 0 else "unlabelled" for i in labels]}


def feature_map(run_dir: str | Path) -> dict | None:
    """{"before": map, "after": map} of a DANN run (either may be missing when the run stopped early); None when
    the run has no map."""
    path = Path(run_dir) / FEATURE_MAP_FILE
    return json.loads(path.read_text()) if path.exists() else None


def _map_sample(samples: list[Sample], seed: int) -> list[Sample]:
    if len(samples) <= MAP_POINTS_PER_DOMAIN:
        return list(samples)
    return random.Random(seed).sample(samples, MAP_POINTS_PER_DOMAIN)


# ---------------------------------------------------------------------------------------------------------------
# The objective


class DannObjective(Objective):
    def __init__(self, config: RunConfig, class_names: list[str]):
        self.config = config
        self.target_data = config.options.target_data
        self.class_names = class_names
        self._scratch = tempfile.TemporaryDirectory(prefix="workbench-target-")
        self.target = open_target(self.target_data, class_names, Path(self._scratch.name))
        self.ctx: TrainingContext | None = None
        self.classifier: torch.nn.Module | None = None
        self.maps: dict = {}
        self.lam = 0.0
        self.domain_correct, self.domain_seen = 0, 0
        self._batches = None
        self._features: torch.Tensor | None = None  # this batch's pooled features, source then target
        self._map_features: tuple[torch.Tensor, torch.Tensor] | None = None  # the last map's (source, target)

    def info(self) -> dict:
        return {"target": {"data": self.target_data, "images": len(self.target.samples),
                           "labelled": self.target.labelled, "note": self.target.note}}

    def setup(self, ctx: TrainingContext) -> list[dict]:
        self.ctx = ctx
        ctx.set_phase("decoding target images")
        ctx.decode(self.target.samples, "decoding target images")
        self._add_map(ctx, "before")
        self.classifier = domain_classifier(self._map_features[0].shape[1]).to(ctx.device)
        self._batches = self._target_batches(ctx)
        return [{"params": list(self.classifier.parameters()), "lr_scale": DOMAIN_LR_SCALE}]

    def _target_batches(self, ctx: TrainingContext):
        """Target batches for ever, reshuffled each pass, with the source's training augmentation."""
        transform = AUGMENTATIONS[self.config.augment].train_transform(self.config.image_size)
        dataset = ctx.images(self.target.samples, transform)
        loader = DataLoader(dataset, batch_size=self.config.batch_size, shuffle=True,
                            generator=torch.Generator().manual_seed(self.config.seed + 1),
                            drop_last=len(dataset) > self.config.batch_size)
        while True:
            yield from loader

    def _add_map(self, ctx: TrainingContext, stage: str) -> None:
        source = _map_sample(ctx.train_samples + ctx.val_samples, self.config.seed)
        target = _map_sample(self.target.samples, self.config.seed)
        source_x, source_y = ctx.features(source, f"source ({stage} adaptation)")
        target_x, target_y = ctx.features(target, f"target ({stage} adaptation)")
        self._map_features = (source_x, target_x)
        self.maps[stage] = map_points(source_x.cpu(), source_y, target_x.cpu(), target_y, self.class_names)
        write_json(ctx.run_dir / FEATURE_MAP_FILE, self.maps)

    def forward(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        images, _ = next(self._batches)
        both = torch.cat([inputs, self.ctx.normalize(images)])
        features = model.forward_head(model.forward_features(both), pre_logits=True)
        self._features = features
        return model.get_classifier()(features[:len(inputs)])

    def loss(self, label_loss: torch.Tensor, logits: torch.Tensor, targets: torch.Tensor,
             extra: list[torch.Tensor]) -> torch.Tensor:
        self.lam = dann_lambda(self.ctx.step / max(1, self.ctx.total_steps))
        features, n_source = self._features, len(logits)
        domain_logits = self.classifier(reverse_gradient(features, self.lam)).squeeze(1).float()
        domains = torch.zeros_like(domain_logits)
        domains[n_source:] = 1.0
        self.domain_correct += ((domain_logits > 0) == (domains > 0.5)).sum().item()
        self.domain_seen += len(domains)
        self._features = None
        return label_loss + F.binary_cross_entropy_with_logits(domain_logits, domains)

    def epoch_metrics(self, ctx: TrainingContext) -> dict:
        metrics = {"domain_acc": round(self.domain_correct / max(1, self.domain_seen), 5),
                   "dann_lambda": round(self.lam, 5)}
        self.domain_correct, self.domain_seen = 0, 0
        if self.target.labelled:
            logits, labels = ctx.logits_of(self.target.samples)
            metrics["target_acc"] = round((logits.argmax(1) == labels).float().mean().item(), 5)
        return metrics

    def finish(self, ctx: TrainingContext) -> None:
        self._add_map(ctx, "after")

    def summary(self, final: dict, ctx: TrainingContext) -> dict:
        last = ctx.metrics[-1] if ctx.metrics else {}
        return {**self.info(), "target_accuracy": final.get("target_acc", last.get("target_acc")),
                "domain_accuracy": final.get("domain_acc", last.get("domain_acc"))}

    def close(self) -> None:
        self._scratch.cleanup()


def target_accuracy(run_dir: str | Path, target_data: str) -> float:
    """Accuracy of any run's saved model on labelled target images (e.g. a source-only run, for comparison)."""
    loaded = load_model(run_dir)
    with tempfile.TemporaryDirectory(prefix="workbench-target-") as scratch:
        target = open_target(target_data, loaded.class_names, Path(scratch))
        if not target.labelled:
            raise DataError(f"Target data '{target_data}' has no class folders named like the run's classes, so "
                            "there is nothing to measure accuracy against.")
        predictor = Predictor(loaded.model, loaded.class_names, loaded.info)
        logits = predictor.logits([s.path for s in target.samples])
    labels = torch.tensor([s.label for s in target.samples])
    return round((logits.argmax(1) == labels).float().mean().item(), 5)


# ---------------------------------------------------------------------------------------------------------------
# The strategy


@dataclass(frozen=True)
class DannOptions(LayerDecayOptions):
    target_data: str = field(default="", metadata={
        "help": "DANN: target-domain images (folder or .zip); class subfolders, if any, are used only to measure "
                "target accuracy.", "kind": "images"})


@register
class Dann(Strategy):
    name = "dann"
    title = "Domain adaptation (DANN)"
    explanation = (
        "Your labelled images (the source) and the images the model will really meet (the target, e.g. photos "
        "from another camera, or drawings instead of photos) often look different, and a model trained on one "
        "loses accuracy on the other. DANN trains the network on the labelled source images while a small second "
        "network, the domain classifier, tries to tell from the features whether an image came from the source "
        "or the target. A gradient-reversal layer turns its success into a penalty for the backbone, so the "
        "backbone learns features that work for the classes but look the same in both domains (Ganin et al., "
        "2016). The target images need no labels; if they have class folders, those are used only to measure "
        "target accuracy. Every layer trains, the pretrained ones more slowly than the new heads (discriminative "
        "learning rates, as the paper's fine-tuned networks did): when the whole backbone moved as fast as the "
        "domain classifier, the adversarial game swung wildly and the result depended on the seed."
    )
    trains = "every layer (layer-wise learning rates), plus a domain classifier behind a gradient-reversal layer"
    default_epochs = 5
    default_lr = 1e-3
    Options = DannOptions
    race = False  # needs target images

    def param_groups(self, model, groups, config):
        return layer_decay_groups(model, config.weight_decay, config.options.layer_decay)

    def objective(self, config: RunConfig, class_names: list[str]) -> Objective:
        return DannObjective(config, class_names)

    def option_notes(self, config: RunConfig, class_names: list[str]) -> list[str]:
        return [target_note(config.options.target_data, tuple(class_names))]

    def plan(self, config: RunConfig) -> list[str]:
        target = config.options.target_data
        return [f"**Target images:** {Path(target).name if target else 'none chosen'}"]

    def code(self, config: RunConfig, groups) -> StrategyCode:
        # The script keeps the layer-wise learning rates but not the adversarial part, which needs the target images
        # and a second network: it says so (the note covers the target_data option).
        return replace(layer_decay_code(config.options), left_out=[
            "the domain classifier and its gradient-reversal layer: the workbench also aligned the target images' "
            "features; this script trains on the labelled images alone, as a plain full fine-tune"])

    def panels(self, record: RunRecord) -> list[Panel]:
        target = record.facts.get("target") or {}
        panel = Panel("Domain adaptation", [f"Target images: `{target.get('data')}`: "
                                            f"{target.get('note', '').rstrip('.')}."])
        if record.metrics:
            panel.blocks += [
                Figure(dann_curves(record.metrics, record.config.epochs), "dann_curves"),
                "The domain classifier tries to tell source from target features; the backbone is trained to fool "
                "it (λ weighs how hard). Near 50% it can no longer tell them apart."]
        maps = feature_map(record.dir)
        if maps:
            panel.blocks += [
                Figure(feature_map_figure(maps), "feature_map"),
                "Each dot is an image: its pooled features projected to 2-D (PCA), source in blue, target in red. "
                "Adaptation should bring the two clouds together while each class stays a group of its own."
                + ("" if "after" in maps else " The map after adaptation appears when training has finished.")]
        return [panel]


def target_note(path: str, class_names: tuple[str, ...]) -> str:
    """How the target images at `path` are read, in one sentence; DataError if they cannot be."""
    with tempfile.TemporaryDirectory(prefix="workbench-target-") as scratch:
        return open_target(path, list(class_names), Path(scratch)).note


# ---------------------------------------------------------------------------------------------------------------
# Charts


DOMAIN_COLOURS = {"source": "#1f77b4", "target": "#d62728"}
DANN_CURVES = (("val_acc", "source accuracy (validation)", "#1f77b4", None),
               ("target_acc", "target accuracy", "#d62728", None),
               ("domain_acc", "domain classifier accuracy", "#7f7f7f", "dot"),
               ("dann_lambda", "λ (weight of the reversed gradient)", "#2ca02c", "dash"))


def dann_curves(metrics: list[dict], epochs: int | None = None) -> go.Figure:
    """Per epoch: source and target accuracy, the domain classifier's accuracy (50% = the domains look alike to
    it) and λ. Target accuracy only when the target images have labels."""
    # plotly and pandas only for the pages' charts: importing them with the engine cost every training process about
    # 70 MB and a quarter of a second
    import plotly.graph_objects as go

    fig = go.Figure()
    done = [m["epoch"] for m in metrics]
    for key, name, colour, dash in DANN_CURVES:
        if any(m.get(key) is not None for m in metrics):
            fig.add_scatter(x=done, y=[m.get(key) for m in metrics], mode="lines+markers", name=name,
                            line=dict(color=colour, dash=dash))
    fig.add_hline(y=0.5, line=dict(color="#bbbbbb", width=1), annotation_text="domains indistinguishable",
                  annotation_position="bottom right")
    epoch_axis(fig, done, epochs)
    fig.update_yaxes(range=[0, 1.02], tickformat=".0%")
    return fig.update_layout(**LAYOUT, height=360, title="Domain adaptation, epoch by epoch")


def feature_map_figure(maps: dict) -> go.Figure:
    """Source and target images as points of their pooled features projected to 2-D (PCA), before adaptation (the
    pretrained backbone) and after it, side by side. Overlapping clouds = features that no longer tell the domains
    apart."""
    stages = [stage for stage in ("before", "after") if stage in maps]
    titles = {"before": "Before adaptation (pretrained backbone)", "after": "After adaptation (trained)"}
    import pandas as pd
    from plotly.subplots import make_subplots

    fig = make_subplots(rows=1, cols=len(stages), subplot_titles=[titles[s] for s in stages])
    for col, stage in enumerate(stages, start=1):
        points = pd.DataFrame(maps[stage])
        for domain, colour in DOMAIN_COLOURS.items():
            part = points[points["domain"] == domain]
            fig.add_scatter(x=part["x"], y=part["y"], mode="markers", name=f"{domain} images",
                            marker=dict(color=colour, size=6, opacity=0.6), text=part["class"],
                            hovertemplate=f"{domain}: %{{text}}<extra></extra>", showlegend=col == 1,
                            row=1, col=col)
    fig.update_xaxes(showticklabels=False, title_text="1st principal component")
    fig.update_yaxes(showticklabels=False, title_text="2nd principal component")
    return fig.update_layout(**LAYOUT, height=380)
