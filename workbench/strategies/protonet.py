"""Prototypical Networks (Snell, Swersky and Zemel, 2017): the backbone meta-trained on few-shot episodes.

An episode imitates the test the model will face: N classes drawn from the meta-training classes, K support images
and Q query images of each. The support images' features, averaged per class, are the episode's prototypes; each
query is scored by its distance to every prototype and the loss is the cross-entropy of those scores against the
query's class within the episode. One episode is one optimisation step: the backbone learns features in which a
class's images lie close to their mean and far from other classes' means, whatever the classes are.

Distances are squared Euclidean distances between L2-normalised features and prototypes, times SCALE / 2. On unit
vectors |f - p|^2 = 2 - 2 cos(f, p), so this ranks classes exactly as the workbench's prototypes do
(`analysis.fewshot`) and as the saved classifier does (normalised prototypes as weights, no bias). The paper's raw
features were 64 numbers from a small network trained from scratch; a pretrained backbone's 1280 pooled features have
squared distances in the tens to hundreds, which turns the softmax into a hard argmax whose gradient vanishes, so
the scale is fixed instead (the temperature of Oreshkin et al.'s TADAM, 2018).

Novel-class evaluation, the point of meta-learning: some classes can be held out of meta-training. Before the first
episode (the pretrained backbone) and after the last, their images' features are computed once and many seeded
N-way k-shot episodes are sampled on those cached features (k = 1 and 5); the mean accuracy and its 95% confidence
interval are written to novel_eval.json in the run folder and to the summary. Every class, held out or not, gets a
prototype from its training images after every epoch, set as the model's classifier: validation accuracy is the
prototype classifier's, and the saved run predicts, exports and compresses like any other.
"""

from __future__ import annotations

import json
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING

import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Sampler

from workbench.core.fields import help_field
from workbench.core.plot_style import LAYOUT, epoch_axis
from workbench.core.runfolder import write_json
from workbench.data import AUGMENTATIONS, Sample
from workbench.strategies.base import Figure, Objective, Panel, Strategy, Table, TrainingContext, register
from workbench.strategies.code import StrategyCode, setting

if TYPE_CHECKING:
    from collections.abc import Callable, Iterator

    import plotly.graph_objects as go

    from workbench.engine.config import RunConfig
    from workbench.runs.records import RunRecord

SCALE = 10.0
"""Multiplies the cosine similarity (minus half the squared distance of unit vectors): the softmax's temperature."""
AUTO = "auto"
NONE = "none"
AUTO_SHARE = 0.4  # 'auto' holds out about this share of the classes...
AUTO_MIN_CLASSES = 4  # ...when there are at least this many (2 held out, 2 to meta-train on)
MIN_META_CLASSES = 2  # an episode compares at least two classes
NOVEL_SHOTS = (1, 5)
NOVEL_EPISODES = 200
NOVEL_QUERIES = 15  # queries per class in a novel-class episode, fewer when a class has fewer images
NOVEL_FILE = "novel_eval.json"
UNMIXED_AUGMENT = "standard"  # what a run asked to blend images gets instead: the strongest that keeps images whole


# ---------------------------------------------------------------------------------------------------------------
# Prototypes and episodes


def class_prototypes(features: torch.Tensor, labels: torch.Tensor, num_classes: int) -> torch.Tensor:
    """[num_classes, D]: each class's mean L2-normalised feature, L2-normalised. A class with no example gets a zero
    row (it never wins)."""
    unit = F.normalize(features.float(), dim=1)
    sums = torch.zeros(num_classes, unit.shape[1], device=unit.device).index_add_(0, labels.to(unit.device), unit)
    return F.normalize(sums, dim=1)


def episode_logits(features: torch.Tensor, ways: int, shots: int, scale: float = SCALE) -> torch.Tensor:
    """The queries' scores against the episode's prototypes. `features`: [ways * shots support, then the queries, D],
    the support class by class. Score = -scale / 2 * squared distance between unit vectors (= scale * cosine - scale).
    """
    unit = F.normalize(features.float(), dim=1)
    support, queries = unit[:ways * shots], unit[ways * shots:]
    protos = F.normalize(support.reshape(ways, shots, -1).mean(1), dim=1)
    return -scale / 2 * (queries[:, None, :] - protos[None, :, :]).pow(2).sum(-1)


class EpisodeSampler(Sampler[list[int]]):
    """`episodes` batches of dataset positions per pass: `ways` classes drawn from `classes`, then `shots` support
    positions of each (class by class), then `queries` query positions of each (class by class). Seeded; each pass
    draws new episodes from the same generator, so a run's episodes depend on its seed alone."""

    def __init__(self, labels: list[int], classes: list[int], ways: int, shots: int, queries: int, episodes: int,
                 seed: int):
        self.by_class = {c: torch.tensor([i for i, label in enumerate(labels) if label == c]) for c in classes}
        self.classes = torch.tensor(classes)
        self.ways, self.shots, self.queries, self.episodes = ways, shots, queries, episodes
        self.generator = torch.Generator().manual_seed(seed)

    def __len__(self) -> int:
        return self.episodes

    def __iter__(self) -> Iterator[list[int]]:
        for _ in range(self.episodes):
            chosen = self.classes[torch.randperm(len(self.classes), generator=self.generator)[:self.ways]]
            support, queries = [], []
            for c in chosen.tolist():
                mine = self.by_class[c]
                picked = mine[torch.randperm(len(mine), generator=self.generator)[:self.shots + self.queries]]
                support += picked[:self.shots].tolist()
                queries += picked[self.shots:].tolist()
            yield support + queries


def few_shot_accuracy(features: torch.Tensor, labels: torch.Tensor, shots: int, ways: int, queries: int,
                      episodes: int, seed: int) -> dict:
    """{"mean", "ci95"}: the accuracy of nearest-prototype classification over `episodes` seeded `ways`-way
    `shots`-shot episodes with `queries` queries per class, sampled from cached `features` (cosine, as the saved
    classifier decides). The same seed and labels draw the same episodes, so two backbones are compared on identical
    tasks. ci95 is 1.96 standard errors of the mean."""
    generator = torch.Generator().manual_seed(seed)
    unit = F.normalize(features.float(), dim=1)
    classes = labels.unique()
    accuracies = []
    for _ in range(episodes):
        chosen = classes[torch.randperm(len(classes), generator=generator)[:ways]]
        support, query = [], []
        for c in chosen:
            mine = (labels == c).nonzero().squeeze(1)
            picked = mine[torch.randperm(len(mine), generator=generator)[:shots + queries]]
            support.append(picked[:shots])
            query.append(picked[shots:])
        protos = F.normalize(torch.stack([unit[s].mean(0) for s in support]), dim=1)
        scores = unit[torch.cat(query)] @ protos.T
        truth = torch.arange(ways).repeat_interleave(torch.tensor([len(q) for q in query]))
        accuracies.append((scores.argmax(1) == truth).float().mean().item())
    values = torch.tensor(accuracies)
    spread = values.std().item() if episodes > 1 else 0.0
    return {"mean": round(values.mean().item(), 5), "ci95": round(1.96 * spread / math.sqrt(episodes), 5)}


def held_out_classes(choice: str, class_names: list[str], seed: int = 0) -> list[str]:
    """The classes kept out of meta-training, in class order. 'none': none; 'auto': about AUTO_SHARE of them, at least
    2, drawn with `seed`, when there are at least AUTO_MIN_CLASSES classes (none otherwise); else comma-separated
    class names. ValueError, in words, for an unknown name or a choice leaving fewer than 2 classes to meta-train."""
    choice = choice.strip()
    if choice.lower() in (NONE, ""):
        return []
    if choice.lower() == AUTO:
        if len(class_names) < AUTO_MIN_CLASSES:
            return []
        count = max(2, round(AUTO_SHARE * len(class_names)))
        order = torch.randperm(len(class_names), generator=torch.Generator().manual_seed(seed))[:count]
        return [class_names[i] for i in sorted(order.tolist())]
    named = list(dict.fromkeys(name.strip() for name in choice.split(",") if name.strip()))
    unknown = [name for name in named if name not in class_names]
    if unknown:
        raise ValueError(f"--held-out names {', '.join(repr(n) for n in unknown)}, which the data has no class "
                         f"called. Its classes are: {', '.join(class_names)}.")
    left = len(class_names) - len(named)
    if left < MIN_META_CLASSES:
        raise ValueError(f"Holding out {', '.join(named)} leaves {left} class(es) to meta-train on, and an episode "
                         f"needs at least {MIN_META_CLASSES}. Hold out fewer classes, or 'none'.")
    return [name for name in class_names if name in named]


def novel_eval_file(run_dir: str | Path) -> dict | None:
    """novel_eval.json of a run (the "before" part appears before the first episode, "after" at the end); None when
    the run held no class out or has not got that far."""
    path = Path(run_dir) / NOVEL_FILE
    return json.loads(path.read_text()) if path.exists() else None


# ---------------------------------------------------------------------------------------------------------------
# The objective


class Episodes(Objective):
    """Episodes instead of shuffled batches, prototype logits instead of the head's, prototypes as the classifier
    after every epoch, and the novel-class evaluation before and after."""

    def __init__(self, config: RunConfig, class_names: list[str]):
        options = config.options
        self.config, self.class_names = config, class_names
        self.held_out = held_out_classes(options.held_out, class_names, config.seed)
        self.meta_classes = [name for name in class_names if name not in self.held_out]
        self.ways = min(options.proto_ways, len(self.meta_classes))
        self.shots, self.queries, self.episodes = options.proto_shots, options.proto_queries, options.proto_episodes
        self.novel: dict | None = None
        self._novel_images: tuple[list[Sample], torch.Tensor] | None = None  # the held-out classes' images

    def info(self) -> dict:
        return {"meta_training_classes": self.meta_classes, "held_out_classes": self.held_out,
                "episode": {"ways": self.ways, "shots": self.shots, "queries": self.queries,
                            "episodes_per_epoch": self.episodes}}

    def _meta_samples(self, ctx: TrainingContext) -> list[Sample]:
        meta = {self.class_names.index(name) for name in self.meta_classes}
        return [s for s in ctx.train_samples if s.label in meta]

    def _check_counts(self, ctx: TrainingContext) -> None:
        need = self.shots + self.queries
        counts = {name: sum(1 for s in ctx.train_samples if s.label == self.class_names.index(name))
                  for name in self.meta_classes}
        short = {name: n for name, n in counts.items() if n < need}
        if short:
            name, n = min(short.items(), key=lambda item: item[1])
            raise ValueError(f"Each episode takes {self.shots} support + {self.queries} query images of a class, and "
                             f"class '{name}' has only {n} training images. Lower --proto-shots or --proto-queries "
                             f"so they add up to {n} or less, or add images.")

    def setup(self, ctx: TrainingContext) -> list[dict]:
        self._check_counts(ctx)
        if self.held_out:
            held = {self.class_names.index(name) for name in self.held_out}
            samples = [s for s in ctx.train_samples + ctx.val_samples if s.label in held]
            counts = [sum(1 for s in samples if s.label == c) for c in held]
            shots = [k for k in NOVEL_SHOTS if k < min(counts)]
            self.novel = {"classes": self.held_out, "ways": min(self.config.options.proto_ways, len(held)),
                          "episodes": NOVEL_EPISODES,
                          "queries": min(NOVEL_QUERIES, min(counts) - max(shots)) if shots else 0,
                          "shots": shots, "images": len(samples), "before": None, "after": None}
            self._novel_images = (samples, torch.tensor([s.label for s in samples]))
            self._measure(ctx, "before")
        # the pretrained backbone's prototypes as the classifier: a run stopped in its first epoch still predicts
        self.before_evaluation(ctx)
        return []

    def _measure(self, ctx: TrainingContext, stage: str) -> None:
        """Few-shot accuracy on the held-out classes with the backbone as it is now (features computed once)."""
        ctx.set_phase(f"measuring few-shot accuracy on the held-out classes ({stage} meta-training)")
        samples, labels = self._novel_images
        features, _ = ctx.features(samples, f"held-out classes ({stage})")
        novel = self.novel
        novel[stage] = {str(k): few_shot_accuracy(features.cpu(), labels, k, novel["ways"], novel["queries"],
                                                  NOVEL_EPISODES, self.config.seed) for k in novel["shots"]}
        write_json(ctx.run_dir / NOVEL_FILE, novel)

    def train_loader(self, ctx: TrainingContext, transform: Callable) -> DataLoader:
        samples = self._meta_samples(ctx)
        classes = sorted({s.label for s in samples})
        sampler = EpisodeSampler([s.label for s in samples], classes, self.ways, self.shots, self.queries,
                                 self.episodes, self.config.seed)
        return DataLoader(ctx.images(samples, transform), batch_sampler=sampler,
                          pin_memory=ctx.device.type == "cuda")

    def targets(self, targets: torch.Tensor, extra: list[torch.Tensor]) -> torch.Tensor:
        # the queries come class by class after the support images: query j of episode class c is labelled c
        return torch.arange(self.ways, device=targets.device).repeat_interleave(self.queries)

    def forward(self, model: torch.nn.Module, inputs: torch.Tensor) -> torch.Tensor:
        features = model.forward_head(model.forward_features(inputs), pre_logits=True)
        return episode_logits(features, self.ways, self.shots)

    def before_evaluation(self, ctx: TrainingContext) -> None:
        features, labels = ctx.features(ctx.train_samples, "prototype")
        protos = class_prototypes(features, labels, len(self.class_names))
        head = ctx.model.get_classifier()
        with torch.no_grad():
            head.weight.copy_(protos.to(head.weight.dtype))
            if head.bias is not None:
                head.bias.zero_()

    def finish(self, ctx: TrainingContext) -> None:
        if self.novel is not None:
            self._measure(ctx, "after")

    def summary(self, final: dict, ctx: TrainingContext) -> dict:
        novel = None
        if self.novel is not None:
            novel = {key: self.novel[key] for key in ("classes", "ways", "episodes", "queries", "before", "after")}
        return {**self.info(), "novel_eval": novel}


# ---------------------------------------------------------------------------------------------------------------
# The script's version (see `ProtoNet.code`): the episodes, the prototype logits and the prototypes as the classifier


EPISODES_SCRIPT = '''
def held_out_classes():
    """The classes kept out of the episodes (HELD_OUT): "none"; "auto", about 40% of them (at least 2, drawn with
    SEED) when there are at least 4 classes; or class names separated by commas."""
    choice = HELD_OUT.strip()
    if choice.lower() == "none":
        return []
    if choice.lower() == "auto":
        if len(CLASS_NAMES) < 4:
            return []
        count = max(2, round(0.4 * len(CLASS_NAMES)))
        order = torch.randperm(len(CLASS_NAMES), generator=torch.Generator().manual_seed(SEED))[:count]
        return [CLASS_NAMES[i] for i in sorted(order.tolist())]
    named = [name.strip() for name in choice.split(",")]
    return [name for name in CLASS_NAMES if name in named]


class EpisodeSampler(torch.utils.data.Sampler):
    """EPISODES batches per pass, each one episode: WAYS classes drawn at random (fewer if there are fewer), then
    SHOTS support images of each, class by class, then QUERIES query images of each, class by class."""

    def __init__(self, labels):
        self.by_class = {}
        for index, label in enumerate(labels):
            self.by_class.setdefault(label, []).append(index)
        self.ways = min(WAYS, len(self.by_class))
        self.generator = torch.Generator().manual_seed(SEED)

    def __len__(self):
        return EPISODES

    def __iter__(self):
        classes = sorted(self.by_class)
        for _ in range(EPISODES):
            chosen = torch.randperm(len(classes), generator=self.generator)[:self.ways]
            support, queries = [], []
            for label in [classes[i] for i in chosen]:
                mine = self.by_class[label]
                picked = [mine[i] for i in torch.randperm(len(mine), generator=self.generator)[:SHOTS + QUERIES]]
                support += picked[:SHOTS]
                queries += picked[SHOTS:]
            yield support + queries


def episode_loader():
    """The training images of the classes not held out, in episodes. A batch's labels are what its queries are
    scored against: their class's place in the episode (0, 0, ..., 1, 1, ...), not their class in CLASS_NAMES."""
    train, _ = train_val_split()
    held = held_out_classes()
    meta = [(path, label) for path, label in train if CLASS_NAMES[label] not in held]
    print(f"episodes from {len(meta)} training images; held out of them: {', '.join(held) or 'no class'}")
    sampler = EpisodeSampler([label for _, label in meta])

    def episode(items):
        images = torch.stack([image for image, _ in items])
        return images, torch.arange(sampler.ways).repeat_interleave(QUERIES)

    return DataLoader(Images(meta, TRAIN_TRANSFORM), batch_sampler=sampler, collate_fn=episode)


@torch.no_grad()
def set_prototypes(model, device):
    """The classifier becomes the class prototypes: each class's mean L2-normalised feature over its training images
    (held-out classes too), normalised, as the weights; no bias. A class's output is then the image's feature length
    times its cosine with the prototype, so the nearest prototype wins."""
    train, _ = train_val_split()
    model.eval()
    head = model.get_classifier()
    sums = torch.zeros_like(head.weight)
    for images, labels in DataLoader(Images(train, EVAL_TRANSFORM), batch_size=BATCH_SIZE):
        features = model.forward_head(model.forward_features(images.to(device)), pre_logits=True)
        sums.index_add_(0, labels.to(device), F.normalize(features, dim=1))
    head.weight.copy_(F.normalize(sums, dim=1))
    if head.bias is not None:
        head.bias.zero_()


class PrototypeTraining(torch.nn.Module):
    """The model as prototypical networks train it. In training mode a batch is an episode and the output is the
    queries' scores against the support images' prototypes: -SCALE / 2 times the squared distance between their
    L2-normalised features (SCALE times the cosine, less a constant). Switching to evaluation mode, as `evaluate`
    does after every epoch, first sets the model's classifier to the prototypes of every class."""

    def __init__(self, model, device):
        super().__init__()
        self.model, self.device = model, device

    def forward(self, images):
        if not self.training:
            return self.model(images)
        features = self.model.forward_head(self.model.forward_features(images), pre_logits=True)
        features = F.normalize(features, dim=1)
        ways = len(features) // (SHOTS + QUERIES)
        support, queries = features[:ways * SHOTS], features[ways * SHOTS:]
        prototypes = F.normalize(support.reshape(ways, SHOTS, -1).mean(1), dim=1)
        return -SCALE / 2 * (queries[:, None, :] - prototypes[None, :, :]).pow(2).sum(-1)

    def train(self, mode=True):
        if not mode:
            set_prototypes(self.model, self.device)
        return super().train(mode)
'''


# ---------------------------------------------------------------------------------------------------------------
# The strategy


@dataclass(frozen=True)
class ProtoNetOptions:
    proto_ways: int = field(default=5, **help_field("ProtoNet: classes per episode (N; at most the meta-training "
                                                    "classes)."))
    proto_shots: int = field(default=5, **help_field("ProtoNet: support images per class in an episode (K)."))
    proto_queries: int = field(default=5, **help_field("ProtoNet: query images per class in an episode (Q)."))
    # 10 episodes of 3 classes x 10 images: an epoch costs about what one pass over the sample data's training images
    # does, so the default run takes about as long on a CPU as a full fine-tune.
    proto_episodes: int = field(default=10, **help_field("ProtoNet: episodes (optimisation steps) per epoch."))
    held_out: str = field(default=AUTO, **help_field("ProtoNet: classes kept out of meta-training to measure few-shot "
                                                     "accuracy on unseen classes: 'auto' (about 2 in 5 when there are "
                                                     "4 or more), 'none', or class names separated by commas."))

    def __post_init__(self) -> None:
        if self.proto_ways < 2:
            raise ValueError(f"--proto-ways must be at least 2 (an episode compares classes), got {self.proto_ways}.")
        for name in ("proto_shots", "proto_queries", "proto_episodes"):
            if getattr(self, name) < 1:
                raise ValueError(f"--{name.replace('_', '-')} must be at least 1, got {getattr(self, name)}.")
        if not self.held_out.strip():
            raise ValueError("--held-out is empty: say 'auto', 'none', or class names separated by commas.")


@register
class ProtoNet(Strategy):
    name = "protonet"
    title = "Meta-learning (prototypical networks)"
    explanation = (
        "Instead of learning your classes once, the network practises the task of learning new classes from a few "
        "examples. Each training step is a small quiz, an episode: a few classes are drawn, a few example images of "
        "each (the support set) are averaged into a prototype per class, and other images of those classes (the "
        "queries) must be recognised by the nearest prototype. The backbone is corrected after every quiz, so it "
        "learns features in which images of one class cluster around their mean, for whatever classes come up "
        "(Snell, Swersky and Zemel, 2017). The finished model classifies your classes by their prototypes, and "
        "some classes can be held out of the quizzes to measure what the point really is: how well prototypes "
        "work, from one or five examples, on classes the network never practised on, before and after. It helps "
        "when new classes will keep arriving with only a handful of photos each and resemble the practice "
        "classes. It fails when the practice classes are too few or too unlike the new ones (the features then "
        "specialise on the wrong differences), and with a strong pretrained network and very different new "
        "classes the gain can be nothing at all: that is what the before-and-after measurement is for."
    )
    trains = "every layer below the head, on few-shot episodes; the head is set to the class prototypes"
    default_epochs = 5
    # On the sample data (3 epochs, held out square and star) the mean episode loss fell from 0.88 to 0.50 at 5e-4
    # (64 px, 10 episodes an epoch), and only from 0.78 to 0.56 at 2e-4 (96 px, 8 episodes).
    default_lr = 5e-4
    Options = ProtoNetOptions

    def resolve(self, config: RunConfig) -> dict:
        # A blended image belongs to two classes, and a support image must stand for exactly one. Resolved rather
        # than refused, so a race with a blending preset still runs this strategy (option_notes says so).
        return {"augment": UNMIXED_AUGMENT} if AUGMENTATIONS[config.augment].mixes_images else {}

    def prepare_model(self, model, groups, config) -> None:
        # the head is not trained: it is set to the prototypes after every epoch
        for param in model.parameters():
            param.requires_grad_(True)
        for param in model.get_classifier().parameters():
            param.requires_grad_(False)

    def objective(self, config: RunConfig, class_names: list[str]) -> Objective:
        return Episodes(config, class_names)

    def epoch_images(self, config: RunConfig, num_train: int, num_val: int) -> tuple[int, int]:
        options = config.options
        # an epoch is the episodes, plus one pass over every training image for the prototypes
        return options.proto_episodes * options.proto_ways * (options.proto_shots + options.proto_queries), \
            num_train + num_val

    def freeze_note(self, groups, config: RunConfig, frozen: int) -> str:
        return ("The head does not learn by gradient: after every epoch it is set to the prototypes, the mean feature "
                "of each class's training images.")

    def option_notes(self, config: RunConfig, class_names: list[str]) -> list[str]:
        objective = Episodes(config, class_names)
        held = (f"Held out of meta-training, to measure few-shot accuracy on unseen classes: "
                f"**{', '.join(objective.held_out)}**." if objective.held_out else
                "No class is held out, so there is no measurement on unseen classes"
                + (" (auto holds classes out only when there are 4 or more)." if len(class_names) < AUTO_MIN_CLASSES
                   and config.options.held_out.strip().lower() == AUTO else "."))
        notes = [held, f"Episodes draw from {', '.join(objective.meta_classes)}: {objective.ways} classes × "
                       f"({objective.shots} support + {objective.queries} query) images each."]
        if AUGMENTATIONS[config.augment].mixes_images:
            notes.append(f"The '{config.augment}' augmentation blends pairs of images, which episodes cannot use "
                         f"(a support image must show one class): this run uses '{UNMIXED_AUGMENT}' instead.")
        return notes

    def plan(self, config: RunConfig) -> list[str]:
        o = config.options
        return [f"**Episodes:** {o.proto_episodes} per epoch, each {o.proto_ways}-way (or as many classes as "
                f"meta-train), {o.proto_shots} support + {o.proto_queries} query images per class · **Held out:** "
                f"{o.held_out}"]

    def panels(self, record: RunRecord) -> list[Panel]:
        panel = Panel("Meta-learning (prototypical networks)")
        meta, held = record.facts.get("meta_training_classes"), record.facts.get("held_out_classes")
        if meta:
            panel.blocks.append(f"Episodes drew from **{', '.join(meta)}**; "
                                + (f"held out: **{', '.join(held)}**." if held else "no class was held out."))
        novel = (record.summary.get("novel_eval") if record.summary else None) or novel_eval_file(record.dir)
        if novel and novel.get("before"):
            table = novel_table(novel)
            panel.blocks += [Table(table, dict.fromkeys(table.columns, "{:.1%}")),
                             f"Few-shot accuracy on the held-out classes (never in an episode): {novel['ways']}-way, "
                             f"mean of {novel['episodes']} seeded episodes with {novel['queries']} queries per class, "
                             "± half the 95% confidence interval. Chance is "
                             f"{1 / novel['ways']:.0%}." + ("" if novel.get("after") else
                                                           " The after column appears when training has finished.")]
        if record.metrics:
            panel.blocks += [Figure(episode_loss_figure(record.metrics, record.config.epochs if record.config
                                                        else None), "protonet_episode_loss"),
                             "The mean loss of the episodes' queries against their prototypes, epoch by epoch: it "
                             "falls as images of a class gather around their mean."]
        return [panel]

    def code(self, config: RunConfig, groups) -> StrategyCode:
        o = config.options
        return StrategyCode(
            prepare_doc="Every layer below the head trains, on episodes. The head learns nothing by gradient: before "
                        "every evaluation it is set to the class prototypes.",
            settings=[setting("WAYS", o.proto_ways, "classes per episode"),
                      setting("SHOTS", o.proto_shots, "support images per class in an episode"),
                      setting("QUERIES", o.proto_queries, "query images per class in an episode"),
                      setting("EPISODES", o.proto_episodes, "episodes (optimisation steps) per epoch"),
                      setting("HELD_OUT", o.held_out, "classes kept out of the episodes"),
                      setting("SCALE", SCALE, "the softmax's temperature on the distances")],
            definitions=[EPISODES_SCRIPT],
            freeze=["model.get_classifier().requires_grad_(False)  # set to the prototypes, never trained"],
            train_setup=["train_loader = episode_loader()  # episodes instead of shuffled batches",
                         "model = PrototypeTraining(model, device)"],
            left_out=["the few-shot accuracy on the held-out classes before and after meta-training (the "
                      "workbench's novel_eval, averaged over 200 episodes): this script prints the validation "
                      "accuracy of the prototype classifier"])


def novel_table(novel: dict):
    """Rows k = 1, 5; columns before and its 95% half-interval, then (once measured) after, its half-interval and
    the change."""
    import pandas as pd

    rows = []
    for k, before in (novel.get("before") or {}).items():
        row = {"support images per class": k, "before": before["mean"], "± before": before["ci95"]}
        after = (novel.get("after") or {}).get(k)
        if after:
            row.update({"after": after["mean"], "± after": after["ci95"], "change": after["mean"] - before["mean"]})
        rows.append(row)
    return pd.DataFrame(rows).set_index("support images per class")


def episode_loss_figure(metrics: list[dict], epochs: int | None = None) -> go.Figure:
    """The mean episode loss (the run's train_loss) per epoch."""
    import plotly.graph_objects as go

    done = [m["epoch"] for m in metrics]
    fig = go.Figure()
    fig.add_scatter(x=done, y=[m["train_loss"] for m in metrics], mode="lines+markers", name="mean episode loss")
    epoch_axis(fig, done, epochs)
    fig.update_yaxes(rangemode="tozero", title_text="loss")
    return fig.update_layout(**LAYOUT, height=320, title="Episode loss, epoch by epoch")
