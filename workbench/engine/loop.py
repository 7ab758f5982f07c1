"""The training loops of one run: one for training through the backbone, one for a head on cached features, and the
training step both (and the LR finder) share.

`Trainer` is also the `strategies.TrainingContext` a strategy's objective sees: it names no strategy and reads none of
their settings; what a strategy changes reaches the loop through its hooks (`begin_epoch`, `param_groups`, the
objective's `forward` / `loss` / `epoch_metrics`).
"""

from __future__ import annotations

import math
import time
from collections.abc import Callable
from pathlib import Path
from typing import TYPE_CHECKING

import timm.data
import timm.optim
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, TensorDataset

from workbench.core import runfolder
from workbench.core.errors import Diverged
from workbench.core.metrics import confusion_matrix
from workbench.core.normalize import Normalizer
from workbench.data import AUGMENTATIONS, CachedImages, ImageCache, Sample, eval_transform
from workbench.engine.schedule import lr_at
from workbench.models.trained import save_run_model
from workbench.strategies import Objective, Strategy, set_train_mode

if TYPE_CHECKING:
    from workbench.engine.run import Prepared, Run

TESTING_PHASE = "testing on the held-out test set"
CHECKPOINT_SHARE = 0.1
"""Per-epoch checkpoints may take at most about this share of the training time (a linear probe's epochs on cached
features last milliseconds: those are checkpointed every few epochs, real training epochs every epoch)."""


class IndexedImages(CachedImages):
    """CachedImages whose items also carry their position in the training set (for objectives that look up
    something per image, such as a teacher's cached answer)."""

    def __getitem__(self, index: int) -> tuple[torch.Tensor, int, int]:
        image, label = super().__getitem__(index)
        return image, label, index


def build_optimizer(model: torch.nn.Module, groups: list, config, strategy: Strategy) -> torch.optim.Optimizer:
    """AdamW over the parameters that require grad (so freezing needs no special case), in the strategy's parameter
    groups; by default timm's (no weight decay on biases and norms). A group's `lr_scale` is applied by the loop."""
    params = strategy.param_groups(model, groups, config)
    return timm.optim.create_optimizer_v2(model if params is None else params, opt="adamw", lr=config.lr,
                                          weight_decay=config.weight_decay)


class Trainer:
    """The loops of one run; reports through the Run it belongs to."""

    def __init__(self, run: Run, p: Prepared, device: torch.device):
        self.run, self.p, self.device = run, p, device
        self.config = p.config
        self.strategy = p.strategy
        self.model = p.model.to(device, memory_format=torch.channels_last)
        self.normalize = Normalizer(p.data_cfg["mean"], p.data_cfg["std"], device)
        crop_pct = p.data_cfg.get("crop_pct", 0.875) or 0.875
        self.cache = ImageCache(round(self.config.image_size / crop_pct))
        self.generator = torch.Generator().manual_seed(self.config.seed)
        self.class_names = p.dataset.class_names
        self.train_samples, self.val_samples = p.dataset.train, p.dataset.val
        self.run_dir: Path = run.dir
        self.feature_seconds: float | None = None
        self.val_features: torch.Tensor | None = None
        # bf16 autocast on GPUs that have it: roughly doubles throughput; the CPU path stays fp32.
        self.autocast = dict(device_type=device.type, dtype=torch.bfloat16, enabled=device.type == "cuda")
        self.step = 0
        self.total_steps = 0  # optimisation steps planned for the run (DANN's lambda follows its progress)
        self.frozen_now = p.frozen_groups
        self.best: tuple[float, dict, dict] | None = None  # (val loss, metrics, weights) for early stopping
        self.restored_best = False
        self.objective: Objective = p.objective
        self.checkpoint_seconds: float | None = None  # how long the last per-epoch checkpoint took to write
        self.checkpointed_at = 0.0
        self.pooled: Callable[[torch.Tensor], torch.Tensor] | None = None  # the feature pass, compiled if chosen

    # -- the TrainingContext a strategy's objective sees ------------------------------------------------------------
    @property
    def metrics(self) -> list[dict]:
        return self.run.metrics

    def set_phase(self, phase: str) -> None:
        self.run._set_phase(phase)

    def report_progress(self, phase: str, done: int, total: int) -> None:
        self.run._report_progress({"phase": phase, "done": done, "total": total})

    def check_stop(self) -> None:
        self.run._check_stop()

    def images(self, samples: list[Sample], transform: Callable) -> CachedImages:
        return CachedImages(samples, self.cache, transform)

    def decode(self, samples: list[Sample], phase: str) -> None:
        def progress(done: int, total: int) -> None:
            self.report_progress(phase, done, total)
            self.check_stop()

        self.cache.warm([s.path for s in samples], progress)

    @torch.inference_mode()
    def features(self, samples: list[Sample], label: str) -> tuple[torch.Tensor, torch.Tensor]:
        """Pooled features (the head's input) of `samples`, with progress; the backbone in evaluation mode."""
        self.model.eval()
        loader = self.loader(samples, eval_transform(self.config.image_size), False)
        feats, targets, start = [], [], time.perf_counter()
        pooled = self._pooled_features()
        for images, labels in loader:
            self.check_stop()
            with torch.autocast(**self.autocast):
                feats.append(pooled(self.normalize(images)).float())
            targets.append(labels)
            done = sum(len(t) for t in targets)
            rate = done / (time.perf_counter() - start)
            self.run._report_progress({
                "phase": f"extracting {label} features", "done": done, "total": len(samples),
                "images_per_s": round(rate, 2), "seconds_left": round((len(samples) - done) / rate, 1)})
        return torch.cat(feats), torch.cat(targets)

    @torch.inference_mode()
    def logits_of(self, samples: list[Sample], progress: Callable[[int, int], None] | None = None
                  ) -> tuple[torch.Tensor, torch.Tensor]:
        """(logits, labels) of `samples` through the model as it is now, seen as in evaluation; `progress(done,
        total)` after each batch when given."""
        self.model.eval()
        logits, targets = [], []
        for images, labels in self.loader(samples, eval_transform(self.config.image_size), False):
            with torch.autocast(**self.autocast):
                logits.append(self.model(self.normalize(images)).float().cpu())
            targets.append(labels)
            if progress:
                progress(sum(len(t) for t in targets), len(samples))
        return torch.cat(logits), torch.cat(targets)

    # -- data -------------------------------------------------------------------------------------------------------
    def decode_all(self) -> None:
        self.set_phase("decoding images")
        self.decode(self.train_samples + self.val_samples, "decoding images")

    def loader(self, samples, transform, shuffle: bool, indexed: bool = False) -> DataLoader:
        dataset = (IndexedImages if indexed else CachedImages)(samples, self.cache, transform)
        # Drop a last batch of 1: BatchNorm cannot train on a single image.
        drop_last = shuffle and len(samples) % self.config.batch_size == 1
        return DataLoader(dataset, batch_size=self.config.batch_size, shuffle=shuffle, generator=self.generator,
                          drop_last=drop_last, pin_memory=self.device.type == "cuda")

    def feature_loader(self, features: torch.Tensor, targets: torch.Tensor) -> DataLoader:
        return DataLoader(TensorDataset(features, targets), batch_size=self.config.batch_size, shuffle=True,
                          generator=self.generator)

    # -- the two ways to train --------------------------------------------------------------------------------------
    def fit(self) -> None:
        self.decode_all()
        if self.strategy.trains_backbone(self.config):
            self.fit_backbone()
        else:
            self.fit_head_on_features()

    def _head_on_features(self, lr: float) -> tuple[torch.nn.Module, torch.optim.Optimizer, DataLoader]:
        """The head, its optimiser and a shuffled loader of the training images' pooled features (computed once,
        the backbone in evaluation mode); the validation features are kept for evaluating the head."""
        self.set_phase("extracting features (the backbone runs once per image)" if not self.config.compile else
                       "compiling the model (torch.compile), then extracting features")
        start = time.perf_counter()
        train_x, train_y = self.features(self.train_samples, "training")
        self.val_features, self.val_targets = self.features(self.val_samples, "validation")
        self.feature_seconds = round(time.perf_counter() - start, 2)
        head = self.model.get_classifier()
        optimizer = torch.optim.AdamW(head.parameters(), lr=lr, weight_decay=self.config.weight_decay)
        return head, optimizer, self.feature_loader(train_x, train_y)

    def fit_head_on_features(self) -> None:
        """Nothing below the head trains: the backbone runs once per image, the head trains on cached features."""
        head, optimizer, loader = self._head_on_features(self.config.lr)
        self.run_epochs(head, optimizer, loader, phase="training the head on cached features", on_features=True)

    def fit_head(self, epochs: int, lr: float) -> dict:
        """TrainingContext: the head alone on cached features, `epochs` passes at peak `lr` under the run's schedule,
        batch for batch what `fit_head_on_features` does for a head-only run, but not recorded as the run's epochs.
        Returns the head's validation metrics; afterwards the run evaluates through the whole network again."""
        head, optimizer, loader = self._head_on_features(lr)
        self.set_phase("training the head on cached features")
        steps = len(loader)
        warmup = int(self.config.warmup_epochs * steps)
        for epoch in range(epochs):
            head.train()
            for index, (inputs, targets) in enumerate(loader):
                self.check_stop()
                rate = lr_at(epoch * steps + index, steps * epochs, warmup, lr, self.config.schedule)
                self.train_step(head, optimizer, inputs.to(self.device), targets.to(self.device), rate)
        metrics = self._evaluate()
        self.val_features = self.val_targets = None
        return metrics

    def fit_backbone(self) -> None:
        """The backbone runs every batch: the strategy's optimiser groups, its objective, the augmentation preset."""
        optimizer = build_optimizer(self.model, self.p.groups, self.config, self.strategy)
        for group in self.objective.setup(self):  # e.g. DANN's domain classifier
            optimizer.add_param_group({"weight_decay": self.config.weight_decay, **group})
        preset = AUGMENTATIONS[self.config.augment]
        transform = preset.train_transform(self.config.image_size)
        loader = self.objective.train_loader(self, transform) or self.loader(
            self.train_samples, transform, shuffle=True, indexed=self.objective.indexed)
        mixup = timm.data.Mixup(mixup_alpha=0.2, cutmix_alpha=1.0, num_classes=len(self.class_names),
                                label_smoothing=0.0) if preset.mixes_images else None
        self.run_epochs(self.model, optimizer, loader, phase="training", on_features=False, mixup=mixup)
        self.objective.finish(self)

    # -- one step, one epoch, the epochs ----------------------------------------------------------------------------
    def train_step(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, inputs: torch.Tensor,
                   targets: torch.Tensor, lr: float, objective: Objective | None = None, extra: list | None = None,
                   mixup: timm.data.Mixup | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """One optimisation step at learning rate `lr` (times each group's `lr_scale`) on a batch already on the
        device; (loss, logits). Shared by the training loops and the LR finder."""
        for group in optimizer.param_groups:
            group["lr"] = lr * group.get("lr_scale", 1.0)
        soft_targets = None
        if mixup is not None and len(targets) % 2 == 0:  # timm mixes pairs: needs an even batch
            inputs, soft_targets = mixup(inputs, targets)
        with torch.autocast(**self.autocast):
            logits = module(inputs) if objective is None else objective.forward(module, inputs)
            # with mixed images the label is a mix too: cross-entropy against the soft targets
            loss = F.cross_entropy(logits.float(), targets if soft_targets is None else soft_targets)
            if objective is not None:
                loss = objective.loss(loss, logits.float(), targets, extra or [])
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        return loss, logits

    def run_epochs(self, module: torch.nn.Module, optimizer: torch.optim.Optimizer, loader: DataLoader,
                   phase: str, on_features: bool, mixup: timm.data.Mixup | None = None) -> None:
        steps = len(loader)
        self.total_steps = total_steps = steps * self.config.epochs
        warmup = int(self.config.warmup_epochs * steps)
        objective = None if on_features else self.objective  # an objective works on images, not cached features
        # Only the training batches go through the compiled wrapper; `module` stays the one whose weights early
        # stopping copies and the run saves (a compiled wrapper's state_dict keys carry an "_orig_mod." prefix).
        forward = self._compiled(module) if self.config.compile and not on_features else module
        compiling = forward is not module  # the first batch compiles: say so until it is done
        self.set_phase("compiling the model (torch.compile): the first batch waits for it" if compiling else phase)
        started = time.perf_counter()
        for epoch in range(1, self.config.epochs + 1):
            self.run._emit("epoch_start", epoch=epoch, epochs=self.config.epochs)
            self.strategy.begin_epoch(self.model, self.p.groups, self.config, epoch)
            self.frozen_now = self.strategy.frozen_groups(self.p.groups, self.config, epoch)
            if on_features:
                module.train()
            else:
                set_train_mode(self.model)
            # `seen` counts what the loss and accuracy are over (an episode's queries), `images` every image that
            # went through the network (an episode's support images too): the speed the page shows.
            loss_sum, correct, seen, images, epoch_start = 0.0, 0, 0, 0, time.perf_counter()
            for index, (inputs, targets, *extra) in enumerate(loader):
                self.check_stop()
                lr = lr_at(self.step, total_steps, warmup, self.config.lr, self.config.schedule)
                inputs = inputs.to(self.device) if on_features else self.normalize(inputs)
                targets = targets.to(self.device, non_blocking=True)
                if objective is not None:
                    targets = objective.targets(targets, extra)
                loss, logits = self.train_step(forward, optimizer, inputs, targets, lr, objective, extra, mixup)
                self.step += 1
                if compiling:
                    compiling = False
                    self.set_phase(phase)
                # .item() is a CPU-GPU sync point; once per batch is cheap next to a backbone's forward/backward.
                loss_value = loss.item()
                if not math.isfinite(loss_value):
                    raise Diverged(f"The training loss became {loss_value} at epoch {epoch}, batch {index + 1} "
                                   f"(learning rate {lr:.2g}).")
                loss_sum += loss_value * len(targets)
                correct += (logits.argmax(1) == targets).sum().item()
                seen += len(targets)
                images += len(inputs)
                elapsed = time.perf_counter() - started
                rate = images / (time.perf_counter() - epoch_start)
                seconds_left = elapsed / self.step * (total_steps - self.step)
                if not on_features or index == steps - 1:
                    self._report_batch(epoch, index + 1, steps, loss_value, rate, seconds_left, lr, phase)
            self._end_epoch(epoch, loss_sum, correct, seen, images, time.perf_counter() - epoch_start, lr)
            if self._early_stop(module):
                break
        self._restore_best(module)

    def _compiled(self, forward: Callable) -> Callable:
        """`forward` (a module or a function of the model) compiled by torch.compile, lazily: the first batch waits
        for it. A module's compiled wrapper shares its parameters."""
        problem = self.config.compile_problem()
        if problem:
            raise RuntimeError(problem)
        return torch.compile(forward)

    def _pooled_features(self) -> Callable[[torch.Tensor], torch.Tensor]:
        """The backbone's pooled features of a normalised batch; compiled once per run when `compile` is chosen (on
        a CPU the feature pass is where compiling paid: see RunConfig.compile)."""
        if self.pooled is None:
            def pooled(images: torch.Tensor) -> torch.Tensor:
                return self.model.forward_head(self.model.forward_features(images), pre_logits=True)

            self.pooled = self._compiled(pooled) if self.config.compile else pooled
        return self.pooled

    # -- evaluation -------------------------------------------------------------------------------------------------
    def _scores(self, logits: torch.Tensor, targets: torch.Tensor) -> tuple[float, float, list[list[int]]]:
        """(loss, accuracy, confusion matrix) of class logits against the true labels."""
        preds = logits.argmax(1)
        return (round(F.cross_entropy(logits, targets).item(), 5), round((preds == targets).float().mean().item(), 5),
                confusion_matrix(targets, preds, len(self.class_names)))

    def _evaluate(self) -> dict:
        if self.val_features is not None:
            self.model.eval()
            with torch.inference_mode():
                logits = self.model.get_classifier()(self.val_features.to(self.device)).float().cpu()
            targets = self.val_targets
        else:
            logits, targets = self.logits_of(self.val_samples)
        loss, accuracy, matrix = self._scores(logits, targets)
        return {"val_loss": loss, "val_acc": accuracy, "confusion_matrix": matrix}

    def test_evaluation(self, samples: list[Sample]) -> dict:
        """Loss, accuracy and confusion matrix of the model as saved on the held-out test images (`samples`).

        Call it once, after the model is saved: the test images are decoded here for the first time, so nothing that
        chose the model (its epochs, early stopping, the weights kept, a race's best run) can have seen them. The
        whole network answers, whatever the strategy trained (a linear probe's head is the model's classifier)."""
        self.set_phase(TESTING_PHASE)

        def decoding(done: int, total: int) -> None:
            self.report_progress("decoding the test images", done, total)

        def testing(done: int, total: int) -> None:
            self.report_progress(TESTING_PHASE, done, total)

        # No Stop check here: training is over and the model is saved; this one pass belongs to writing the record.
        self.cache.warm([s.path for s in samples], decoding)
        loss, accuracy, matrix = self._scores(*self.logits_of(samples, testing))
        return {"test_loss": loss, "test_acc": accuracy, "test_confusion_matrix": matrix}

    def final_evaluation(self) -> dict:
        """Metrics of the weights being saved: the best epoch's (early stopping), the last epoch's, or fresh ones
        when stopped mid-epoch."""
        if self.restored_best:
            return self.best[1]
        if self.run.metrics and self.run.metrics[-1]["step"] == self.step:
            return self.run.metrics[-1]
        if self.step == 0 and self.val_features is None:
            return {}
        self.objective.before_evaluation(self)  # e.g. prototypes from the backbone as it was when stopped
        return self._evaluate()

    def _end_epoch(self, epoch: int, loss_sum: float, correct: int, seen: int, images: int, seconds: float,
                   lr: float) -> None:
        self.objective.before_evaluation(self)
        metrics = {
            "epoch": epoch,
            "train_loss": round(loss_sum / max(1, seen), 5),
            "train_acc": round(correct / max(1, seen), 5),
            **self._evaluate(),
            **self.objective.epoch_metrics(self),
            "lr": lr,
            "seconds": round(seconds, 3),
            "images_per_s": round(images / seconds, 2) if seconds > 0 else None,
            "step": self.step,
            "frozen_groups": self.frozen_now,
            "trainable_params": sum(p.numel() for p in self.model.parameters() if p.requires_grad),
        }
        if not math.isfinite(metrics["val_loss"]):
            raise Diverged(f"The validation loss became {metrics['val_loss']} after epoch {epoch} (learning rate "
                           f"{lr:.2g}): the weights have blown up.")
        # Checkpoint first, then the metrics line: a run killed in between has an epoch's weights but no line for
        # it, never a line whose weights are missing (unless _checkpoint skipped that epoch to save time).
        self._checkpoint(epoch)
        self.run.metrics.append(metrics)
        runfolder.append_jsonl(self.run.dir / runfolder.METRICS_FILE, metrics)
        self.run._emit("epoch_end", metrics=metrics)

    def _checkpoint(self, epoch: int) -> None:
        """Save this epoch's weights (atomically), so a crash, a kill or a later failure keeps them. Skipped while
        the last checkpoint is recent next to the time saving takes, so checkpoints cost at most CHECKPOINT_SHARE of
        the training time."""
        started = time.perf_counter()
        if self.checkpoint_seconds is not None and \
                started - self.checkpointed_at < self.checkpoint_seconds / CHECKPOINT_SHARE:
            return
        save_run_model(self.run.dir, self.model, self.run.model_info(self.p), epoch)
        self.checkpointed_at = time.perf_counter()
        self.checkpoint_seconds = self.checkpointed_at - started

    def _early_stop(self, module: torch.nn.Module) -> bool:
        """Remember the best epoch by validation loss; True once `patience` epochs brought no improvement."""
        if self.config.patience <= 0:
            return False
        metrics = self.run.metrics[-1]
        if self.best is None or metrics["val_loss"] < self.best[0]:
            weights = {k: v.detach().to("cpu", copy=True) for k, v in module.state_dict().items()}
            self.best = (metrics["val_loss"], metrics, weights)
            return False
        if metrics["epoch"] - self.best[1]["epoch"] >= self.config.patience:
            self.run._emit("status", phase=f"early stopping: no better validation loss since epoch "
                                           f"{self.best[1]['epoch']}")
            return True
        return False

    def _restore_best(self, module: torch.nn.Module) -> None:
        if self.best is not None and self.best[1]["epoch"] != self.run.metrics[-1]["epoch"]:
            module.load_state_dict(self.best[2])
            self.restored_best = True

    def _report_batch(self, epoch: int, index: int, steps: int, loss: float, images_per_s: float,
                      seconds_left: float, lr: float, phase: str) -> None:
        batch = {"epoch": epoch, "step": self.step, "batch": index, "batches": steps, "loss": round(loss, 5),
                 "images_per_s": round(images_per_s, 2), "seconds_left": round(seconds_left, 1), "lr": lr,
                 "phase": phase}
        self.run.progress = batch
        self.run.batches.append(batch)
        runfolder.append_jsonl(self.run.dir / runfolder.BATCHES_FILE, batch)
        self.run._emit("batch", **batch)
