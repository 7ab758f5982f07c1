"""A run: `Run` trains one RunConfig in a background thread, emits events that any number of listeners read, writes its
record to disk as it goes, and can be stopped between batches.

The state machine is queued -> preparing -> running -> finished | stopped | failed. Preparing validates everything
(data, backbone, the strategy's choices) before anything is written; the loops themselves are `engine.loop.Trainer`.
"""

from __future__ import annotations

import random
import shutil
import threading
import time
import traceback
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import torch

from workbench.core import runfolder
from workbench.core.errors import Diverged, StopRequested
from workbench.core.metrics import per_class_report
from workbench.data import ImageDataset
from workbench.engine.config import RunConfig
from workbench.engine.failures import describe_failure, failure_hint, peak_memory_mb, release_memory
from workbench.engine.loop import Trainer
from workbench.models.backbones import LayerGroup, WeightsSource, create_backbone, data_config, layer_groups
from workbench.models.trained import save_run_model, saved_epoch
from workbench.strategies import Objective, Strategy, get_strategy, trainable_parameter_count

TERMINAL = ("finished", "stopped", "failed")


@dataclass
class Event:
    kind: str  # status | health | started | progress | epoch_start | batch | epoch_end | finished | stopped | failed
    data: dict
    time: float = field(default_factory=time.time)


@dataclass
class Prepared:
    """What a run needs before the first batch: data, model and their facts."""

    config: RunConfig  # resolved
    dataset: ImageDataset
    model: torch.nn.Module
    strategy: Strategy
    weights: WeightsSource
    frozen_groups: int
    data_cfg: dict
    groups: list[LayerGroup]
    objective: Objective  # the strategy's additions to the loop (the base Objective adds nothing)


RECORD_BYTES = 16 << 20  # a run's record beside its weights: metrics, batches, health, summary (generous)


def check_disk_room(runs_dir: Path, model: torch.nn.Module) -> None:
    """ValueError, before anything is written, when the disk holding `runs_dir` cannot take the run: its weights
    twice (a checkpoint is written beside the last one, then replaces it) and its record."""
    need = 2 * sum(t.numel() * t.element_size() for t in model.state_dict().values()) + RECORD_BYTES
    folder = next(p for p in (runs_dir.absolute(), *runs_dir.absolute().parents) if p.exists())
    free = shutil.disk_usage(folder).free
    if free < need:
        raise ValueError(f"The disk holding {runs_dir} has {free / 2**20:.0f} MB free, and this run needs about "
                         f"{need / 2**20:.0f} MB (its model, a checkpoint and its record). Delete runs you no longer "
                         "need (Compare page) or free some space, then start it again.")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)


# ---------------------------------------------------------------------------------------------------------------
# The run


class Run:
    """One training run. `start()` trains in a background thread; `run()` trains in the calling thread.

    Listeners (`subscribe`) are called from the training thread: they must not call UI code directly. Pollers read
    `events_since(i)`, `metrics`, `progress` and `status`, which are safe to read from any thread.
    """

    def __init__(self, config: RunConfig, run_id: str | None = None, owner: str | None = None):
        self.config = config
        self.owner = owner  # who started it, on a classroom server (config.json's "owner")
        self.id = run_id or runfolder.new_run_id(config.strategy, config.backbone)
        self.dir = config.runs_path() / self.id
        self.status = "queued"
        self.phase = "waiting to start"
        self.error: str | None = None
        self.hint: str | None = None
        self.metrics: list[dict] = []
        self.batches: list[dict] = []
        self.progress: dict = {}
        self.summary: dict | None = None
        self.info: dict = {}  # facts known after preparation: classes, weights source, groups, resolved config
        self.health: dict | None = None
        self.created = time.time()
        self._events: list[Event] = []
        self._listeners: list[Callable[[Event], None]] = []
        self._lock = threading.Lock()
        self._stop = threading.Event()
        self._done = threading.Event()
        self._thread: threading.Thread | None = None

    # -- observing ----------------------------------------------------------------------------------------------
    def subscribe(self, listener: Callable[[Event], None]) -> None:
        self._listeners.append(listener)

    def events_since(self, index: int) -> list[Event]:
        with self._lock:
            return self._events[index:]

    @property
    def done(self) -> bool:
        return self._done.is_set()

    @property
    def stopping(self) -> bool:
        """Stop was asked for and the run has not ended yet."""
        return self._stop.is_set() and not self.done

    def wait(self, timeout: float | None = None) -> bool:
        finished = self._done.wait(timeout)
        if finished and self._thread is not None and self._thread is not threading.current_thread():
            self._thread.join()  # let the worker unwind fully before the caller (maybe the interpreter) moves on
        return finished

    def _emit(self, kind: str, **data) -> None:
        self._publish(Event(kind, data))

    def _publish(self, event: Event) -> None:
        with self._lock:
            self._events.append(event)
        for listener in self._listeners:
            try:
                listener(event)
            except Exception:  # noqa: BLE001 - a broken listener must not kill the training
                traceback.print_exc()

    def _report_progress(self, progress: dict) -> None:
        """Progress of work that is not a training batch (decoding, feature extraction)."""
        self.progress = progress
        self._emit("progress", **progress)

    def _set_phase(self, phase: str) -> None:
        self.phase = phase
        self._emit("status", phase=phase)

    # -- controlling --------------------------------------------------------------------------------------------
    def start(self) -> Run:
        self._thread = threading.Thread(target=self.run, name=f"run-{self.id}", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Ask the run to stop after the current batch."""
        self._stop.set()

    def cancel(self) -> None:
        """Mark a run that never started as stopped; nothing is written. The caller makes sure it will not start."""
        if self.status != "queued":
            raise RuntimeError(f"Run {self.id} has already started ({self.status}): use stop().")
        self._stop.set()
        self._finish_without_record("stopped", "Stopped before it started.")

    # -- trained elsewhere: a twin of this run trains in another process (`workbench.runs.cluster`) ------------
    def replay(self, event: Event, status: str, phase: str) -> None:
        """Take in an event the run's twin emitted in another process: apply the state change the event stands for,
        set the twin's `status` and `phase` as they were right after it, and pass the event on to this run's
        listeners, so this run reads exactly as if it had trained here. A terminal event ends this run."""
        data = event.data
        if event.kind == "health":
            self.health = data["report"]
        elif event.kind == "started":
            self.info = data["info"]
        elif event.kind == "progress":
            self.progress = dict(data)
        elif event.kind == "batch":
            self.progress = dict(data)
            self.batches.append(dict(data))
        elif event.kind == "epoch_end":
            self.metrics.append(data["metrics"])
        elif event.kind in TERMINAL:
            self.summary = data.get("summary")  # None when the twin ended before writing a record
            self.error, self.hint = data.get("error"), data.get("hint")
        self.status, self.phase = status, phase
        self._publish(event)
        if event.kind in TERMINAL:
            self._done.set()

    def end_lost(self, error: str, hint: str | None, summary: dict | None) -> None:
        """End the run as failed because its twin in another process was lost (the machine training it died), with
        the summary the caller recorded for it (None when nothing of it was on disk)."""
        self.status, self.error, self.hint, self.phase, self.summary = "failed", error, hint, "failed", summary
        self._emit("failed", summary=summary, error=error, hint=hint)
        self._done.set()

    def _check_stop(self) -> None:
        if self._stop.is_set():
            raise StopRequested

    def run(self) -> Run:
        """Train to the end (or until stopped / failed). Never raises: the outcome is in `status` and `summary`."""
        self.status = "preparing"
        try:
            prepared = self.prepare()
        except StopRequested:
            self._finish_without_record("stopped", "Stopped before training started.")
            return self
        except Exception as error:  # noqa: BLE001 - bad input is reported, nothing is written
            self._finish_without_record("failed", str(error), failure_hint(error))
            return self
        device = torch.device(prepared.config.device)
        self._train(prepared)
        del prepared  # the model and the decoded images: the last references, so release_memory can free them
        release_memory(device)
        return self

    def _finish_without_record(self, status: str, error: str, hint: str | None = None) -> None:
        self.status, self.error, self.hint = status, error, hint
        self.phase = status
        self._emit(status, error=error, hint=hint)
        self._done.set()

    # -- preparation: validate everything before writing anything -----------------------------------------------
    def prepare(self) -> Prepared:
        """Read the data, build the model and apply the strategy's freezing. Writes nothing; raises on bad input."""
        config = self.config
        strategy = get_strategy(config.strategy)
        seed_everything(config.seed)
        self._set_phase("reading the dataset")
        dataset = config.data_spec().open(progress=lambda done, total: self._report_progress(
            {"phase": "checking images", "done": done, "total": total}))
        self.health = dataset.report.to_dict()
        self._emit("health", report=self.health)
        self._check_stop()
        self._set_phase("loading the backbone")
        weights = "none" if not strategy.pretrained else config.weights
        model, source = create_backbone(config.backbone, len(dataset.class_names), weights)
        check_disk_room(config.runs_path(), model)
        groups = layer_groups(model)
        strategy.check_groups(groups, config)
        strategy.prepare_model(model, groups, config)
        frozen = strategy.frozen_groups(groups, config, 1)
        cfg = data_config(model)
        resolved = config.resolved(native_image_size=cfg["input_size"][-1])
        objective = strategy.objective(resolved, dataset.class_names)
        trainable, total = trainable_parameter_count(model)
        self.info = {
            "run_id": self.id,
            "class_names": dataset.class_names,
            "num_train": len(dataset.train),
            "num_val": len(dataset.val),
            "num_test": len(dataset.test),
            "weights_source": source.to_dict(),
            "layer_groups": [{"name": g.name, "num_params": g.num_params, "frozen": g.index < frozen}
                             for g in groups],
            "frozen_groups": frozen,
            "trainable_params": trainable,
            "total_params": total,
            "data_config": {k: list(v) if isinstance(v, tuple) else v for k, v in cfg.items()},
            "resolved": resolved.to_dict(),
            **objective.info(),
        }
        return Prepared(resolved, dataset, model, strategy, source, frozen, cfg, groups, objective)

    # -- training -----------------------------------------------------------------------------------------------
    def _start_record(self, p: Prepared) -> None:
        """The run's folder: the live marker first, config.json (which makes the run listed) last."""
        self.dir.mkdir(parents=True, exist_ok=True)
        runfolder.mark_live(self.dir)
        runfolder.write_json(self.dir / runfolder.HEALTH_FILE, self.health or {})
        record = {**p.config.to_dict(), **self.info, "created": self.created,
                  **({"owner": self.owner} if self.owner else {})}
        runfolder.write_json(self.dir / runfolder.CONFIG_FILE, record)

    def model_info(self, p: Prepared) -> dict:
        """model.json: what is needed to rebuild the trained model and prepare images for it."""
        return {
            "backbone": p.config.backbone, "class_names": p.dataset.class_names,
            "image_size": p.config.image_size, "mean": list(p.data_cfg["mean"]),
            "std": list(p.data_cfg["std"]), "crop_pct": p.data_cfg.get("crop_pct", 0.875),
            "interpolation": p.data_cfg.get("interpolation", "bicubic"),
            **p.objective.model_info(),
        }

    def _train(self, p: Prepared) -> None:
        try:
            self._start_record(p)
        except OSError as e:  # e.g. a full disk: a run that cannot record its config is not kept at all
            shutil.rmtree(self.dir, ignore_errors=True)
            self._finish_without_record("failed", describe_failure(e, p.config), failure_hint(e, p.config))
            return
        device = torch.device(p.config.device)
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        self.status = "running"
        self._emit("started", info=self.info, run_dir=str(self.dir))
        started = time.perf_counter()
        status, error, hint = "finished", None, None
        trainer = Trainer(self, p, device)
        try:
            trainer.fit()
        except StopRequested:
            status = "stopped"
        except Exception as e:  # noqa: BLE001 - the run record keeps the metrics and says why it stopped
            status, error, hint = "failed", describe_failure(e, p.config), failure_hint(e, p.config)
            if not isinstance(e, Diverged):
                traceback.print_exc()
        finally:
            p.objective.close()
        self._write_summary(p, trainer, status, error, hint, time.perf_counter() - started, device)

    def _write_summary(self, p: Prepared, trainer: Trainer, status: str, error: str | None, hint: str | None,
                       seconds: float, device: torch.device) -> None:
        tested: dict = {}
        try:
            if status != "failed":
                self._set_phase("saving the model")
                final = trainer.final_evaluation()
                save_run_model(self.dir, p.model, self.model_info(p), final.get("epoch"))
                # Only now, with every choice made and the model saved, are the held-out test images looked at
                # (not for a model stopped before it learned anything: there is nothing to measure).
                if p.dataset.test and final.get("val_acc") is not None:
                    tested = trainer.test_evaluation(p.dataset.test)
            else:
                final = self._kept_metrics()
        except Exception as e:  # noqa: BLE001
            status, error, hint = "failed", describe_failure(e, p.config), failure_hint(e, p.config)
            final, tested = self._kept_metrics(), {}
        if status == "failed":
            kept = saved_epoch(self.dir)
            hint = f"{hint} The model as it was after epoch {kept} is kept." if kept else hint
        matrix = final.get("confusion_matrix")
        last = self.metrics[-1] if self.metrics else {}
        trainable, total = trainable_parameter_count(p.model)
        self.summary = {
            "status": status,
            "error": error,
            "hint": hint,
            "val_accuracy": final.get("val_acc"),
            "val_loss": final.get("val_loss"),
            "epochs_completed": len(self.metrics),
            "best_epoch": final.get("epoch"),
            "class_names": p.dataset.class_names,
            "confusion_matrix": matrix,
            "per_class": per_class_report(matrix, p.dataset.class_names) if matrix else None,
            **self._test_summary(tested, p),
            # gradual unfreezing changes these epoch by epoch: the record keeps where the run ended
            "trainable_params": last.get("trainable_params", self.info.get("trainable_params", trainable)),
            "frozen_groups": last.get("frozen_groups", p.frozen_groups),
            "total_params": total,
            "pretrained": p.weights.to_dict(),
            "train_seconds": round(seconds, 2),
            "feature_seconds": trainer.feature_seconds,
            "images_per_s": self._backbone_images_per_s(p, trainer),
            "peak_memory_mb": round(peak_memory_mb(device), 1),
            "device": str(device),
            **p.objective.summary(final, trainer),
        }
        try:
            runfolder.write_json(self.dir / runfolder.SUMMARY_FILE, self.summary)
        except OSError as e:  # a full disk: the run still ends, and says why; on disk it reads as interrupted
            status, error, hint = "failed", describe_failure(e, p.config), failure_hint(e, p.config)
            self.summary.update(status=status, error=error, hint=hint)
        finally:
            runfolder.clear_live(self.dir)
        self.status, self.error, self.hint, self.phase = status, error, hint, status
        self._emit(status, summary=self.summary, error=error, hint=hint)
        self._done.set()


    @staticmethod
    def _test_summary(tested: dict, p: Prepared) -> dict:
        """The summary's held-out test entries: None when the run was not tested (no test set, or it failed)."""
        matrix = tested.get("test_confusion_matrix")
        return {
            "test_accuracy": tested.get("test_acc"),
            "test_loss": tested.get("test_loss"),
            "test_confusion_matrix": matrix,
            "test_per_class": per_class_report(matrix, p.dataset.class_names) if matrix else None,
            "num_test": len(p.dataset.test),
        }

    def _kept_metrics(self) -> dict:
        """The metrics of the epoch whose weights are saved (a failed run keeps its last checkpoint)."""
        epoch = saved_epoch(self.dir)
        return next((m for m in self.metrics if m["epoch"] == epoch), {})

    def _backbone_images_per_s(self, p: Prepared, trainer: Trainer) -> float | None:
        """Images per second through the backbone: the training epochs' mean, or for a linear probe its one
        feature-extraction pass (its head epochs run on cached features and say nothing about the backbone)."""
        if not p.strategy.trains_backbone(p.config):
            images = len(p.dataset.train) + len(p.dataset.val)
            return round(images / trainer.feature_seconds, 2) if trainer.feature_seconds else None
        return _mean([m["images_per_s"] for m in self.metrics if m.get("images_per_s")])


def _mean(values: list[float]) -> float | None:
    return round(sum(values) / len(values), 2) if values else None


