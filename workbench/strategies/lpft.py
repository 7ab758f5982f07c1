"""LP-FT (Kumar, Raghunathan, Jones, Ma and Liang, ICLR 2022): a linear probe first, then a full fine-tune from it.

Fine-tuning with a new, random head sends large, arbitrary gradients into the pretrained layers in the first steps,
until the head makes sense: the features the backbone brought are distorted to fit a head that is still noise. LP-FT
first trains the head alone on the frozen backbone's features (phase one: exactly a linear probe, on cached features,
in seconds), then fine-tunes every layer starting from that head (phase two). The head is already good, so the
gradients reaching the backbone are small and the pretrained features move less, which in the paper keeps more of
their robustness out of distribution.

Phase one is not counted in the run's epochs (it is preparation, like a teacher's answers for distillation); its
head is saved in the run folder as probe_head.safetensors, and its validation accuracy is in the summary.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from safetensors.torch import save_file

from workbench.core.fields import help_field
from workbench.core.runfolder import replacing
from workbench.strategies.base import Objective, Panel, Strategy, TrainingContext, register
from workbench.strategies.code import StrategyCode, setting

if TYPE_CHECKING:
    from workbench.engine.config import RunConfig
    from workbench.runs.records import RunRecord

PROBE_HEAD_FILE = "probe_head.safetensors"
PROBE_CODE = """\
@torch.no_grad()
def pooled_features(model, loader, device):
    \"\"\"The backbone's pooled features (what the head sees) of every image, in evaluation mode.\"\"\"
    model.eval()
    features, labels = [], []
    for images, targets in loader:
        features.append(model.forward_head(model.forward_features(images.to(device)), pre_logits=True))
        labels.append(targets.to(device))
    return torch.cat(features), torch.cat(labels)


def probe_head(model, device):
    \"\"\"Phase 1 of LP-FT: a linear probe. The new head alone learns, on the frozen backbone's features of the
    training images, computed once (no augmentation); phase 2 then fine-tunes every layer from this head.\"\"\"
    train, _ = train_val_split()
    loader = DataLoader(Images(train, EVAL_TRANSFORM), batch_size=BATCH_SIZE)
    features, labels = pooled_features(model, loader, device)
    head = model.get_classifier()
    optimizer = torch.optim.AdamW(head.parameters(), lr=PROBE_LR, weight_decay=WEIGHT_DECAY)
    for _ in range(PROBE_EPOCHS):
        for batch in torch.randperm(len(labels), device=labels.device).split(BATCH_SIZE):
            loss = F.cross_entropy(head(features[batch]), labels[batch])
            optimizer.zero_grad(set_to_none=True)
            loss.backward()
            optimizer.step()
    print(f"phase 1 (linear probe): the head trained {PROBE_EPOCHS} passes over the cached features")"""


@dataclass(frozen=True)
class LPFTOptions:
    probe_epochs: int = field(default=30, **help_field("LP-FT: passes of the linear probe (phase one) over the "
                                                       "cached features, before the fine-tune."))
    probe_lr: float = field(default=1e-2, **help_field("LP-FT: peak learning rate of the linear probe (phase one)."))

    def __post_init__(self) -> None:
        if self.probe_epochs < 1:
            raise ValueError(f"--probe-epochs must be at least 1, got {self.probe_epochs}.")
        if self.probe_lr <= 0:
            raise ValueError(f"--probe-lr must be positive, got {self.probe_lr}.")


class ProbeFirst(Objective):
    """Phase one in `setup`, before the first fine-tuning batch; phase two is the ordinary loop."""

    def __init__(self, options: LPFTOptions):
        self.options = options
        self.probe: dict = {}

    def setup(self, ctx: TrainingContext) -> list[dict]:
        self.probe = ctx.fit_head(self.options.probe_epochs, self.options.probe_lr)
        head = {name: p.detach().cpu().contiguous() for name, p in ctx.model.get_classifier().state_dict().items()}
        with replacing(ctx.run_dir / PROBE_HEAD_FILE) as tmp:
            save_file(head, str(tmp))
        return []

    def summary(self, final: dict, ctx: TrainingContext) -> dict:
        return {"probe_val_accuracy": self.probe.get("val_acc"), "probe_epochs": self.options.probe_epochs}


@register
class LPFT(Strategy):
    name = "lpft"
    title = "LP-FT: linear probe, then fine-tune"
    explanation = (
        "Two phases. First a linear probe: the pretrained network stays frozen and only a new head learns, on features "
        "computed once (seconds). Then every layer fine-tunes, starting from that trained head instead of a random "
        "one. With a random head, the first steps of an ordinary fine-tune push large, meaningless corrections into "
        "the pretrained layers and bend their features to fit noise; with a head that already works, the "
        "corrections are small, so the backbone keeps more of what it learned from millions of photos. Kumar et "
        "al. (2022) found this keeps accuracy better on images unlike the training ones (another camera, drawings) "
        "while matching plain fine-tuning on images like them. It costs one linear probe more than a full fine-tune."
    )
    trains = "the head first (on cached features), then every layer from that head"
    default_epochs = 5
    default_lr = 5e-4
    Options = LPFTOptions

    def objective(self, config: RunConfig, class_names: list[str]) -> Objective:
        return ProbeFirst(config.options)

    def freeze_note(self, groups, config: RunConfig, frozen: int) -> str:
        return ("Shown: phase 2, the fine-tune of every layer. Before it, phase 1 trains only the head, on features "
                "the frozen network computes once per image.")

    def plan(self, config: RunConfig) -> list[str]:
        return [f"**Phase 1:** linear probe, {config.options.probe_epochs} passes at lr {config.options.probe_lr:g} "
                f"on cached features · **Phase 2:** every layer, {config.epochs} epochs, from that head"]

    def panels(self, record: RunRecord) -> list[Panel]:
        probe = record.summary.get("probe_val_accuracy") if record.summary else None
        if probe is None:
            return [Panel("LP-FT", ["Phase 1, the linear probe of the head, runs before the first epoch; its accuracy "
                                    "shows here when the run has finished."])]
        final = record.summary.val_accuracy
        change = f", and the fine-tune took it to {final:.1%}" if final is not None else ""
        return [Panel("LP-FT", [f"Phase 1 (the linear probe) reached **{probe:.1%}** validation accuracy with the "
                                f"backbone frozen{change}. The curves above are phase 2, which started from that "
                                "head rather than a random one."])]

    def code(self, config: RunConfig, groups) -> StrategyCode:
        options = config.options
        return StrategyCode(
            prepare_doc="Every layer trains (phase 2), starting from the head that phase 1, a linear probe, trained.",
            settings=[setting("PROBE_EPOCHS", options.probe_epochs, "phase 1: passes of the linear probe"),
                      setting("PROBE_LR", options.probe_lr, "phase 1: the linear probe's learning rate")],
            definitions=[PROBE_CODE],
            train_setup=["probe_head(model, device)"],
            left_out=["the learning-rate warmup and decay of phase 1 (the linear probe here keeps PROBE_LR)"])
