"""Run records on disk: `runs/<run_id>/` holds config.json, health.json, metrics.jsonl (one line per epoch, flushed
as it is written), summary.json and model.safetensors. Listing and loading past runs is done here."""

from __future__ import annotations

import json
import os
import secrets
import time
from dataclasses import dataclass, field
from pathlib import Path

import timm
import torch
from safetensors.torch import load_file, save_model

CONFIG_FILE = "config.json"
HEALTH_FILE = "health.json"
METRICS_FILE = "metrics.jsonl"
BATCHES_FILE = "batches.jsonl"
SUMMARY_FILE = "summary.json"
MODEL_FILE = "model.safetensors"
MODEL_INFO_FILE = "model.json"


def new_run_id(strategy: str, backbone: str) -> str:
    stamp = time.strftime("%Y%m%d-%H%M%S")
    return f"{stamp}-{strategy}-{backbone}-{secrets.token_hex(2)}"


def write_json(path: Path, value: dict) -> None:
    """Write via a temporary file and rename, so a reader never sees half a file."""
    tmp = path.with_suffix(path.suffix + ".tmp")
    tmp.write_text(json.dumps(value, indent=2, default=str))
    os.replace(tmp, path)


def append_jsonl(path: Path, value: dict) -> None:
    with path.open("a") as f:
        f.write(json.dumps(value, default=str) + "\n")
        f.flush()


def read_jsonl(path: Path) -> list[dict]:
    if not path.exists():
        return []
    rows = []
    for line in path.read_text().splitlines():
        try:
            rows.append(json.loads(line))
        except json.JSONDecodeError:
            break  # a line being written right now
    return rows


def save_run_model(run_dir: Path, model: torch.nn.Module, info: dict) -> None:
    """Weights as safetensors plus what is needed to rebuild the model (backbone name, classes, preprocessing)."""
    model = model.to("cpu", memory_format=torch.contiguous_format)
    save_model(model, str(run_dir / MODEL_FILE))
    write_json(run_dir / MODEL_INFO_FILE, info)


@dataclass
class RunRecord:
    """A run as found on disk (finished, stopped, failed, or still being written)."""

    id: str
    dir: Path
    config: dict
    metrics: list[dict] = field(default_factory=list)
    summary: dict | None = None

    @property
    def status(self) -> str:
        return self.summary["status"] if self.summary else "running or interrupted"

    @property
    def has_model(self) -> bool:
        return (self.dir / MODEL_FILE).exists() and (self.dir / MODEL_INFO_FILE).exists()

    def batches(self) -> list[dict]:
        return read_jsonl(self.dir / BATCHES_FILE)

    def health(self) -> dict | None:
        path = self.dir / HEALTH_FILE
        return json.loads(path.read_text()) if path.exists() else None


def load_run(run_dir: str | Path) -> RunRecord:
    run_dir = Path(run_dir)
    config_path = run_dir / CONFIG_FILE
    if not config_path.exists():
        raise FileNotFoundError(f"'{run_dir}' is not a run directory (no {CONFIG_FILE}).")
    summary_path = run_dir / SUMMARY_FILE
    return RunRecord(
        id=run_dir.name,
        dir=run_dir,
        config=json.loads(config_path.read_text()),
        metrics=read_jsonl(run_dir / METRICS_FILE),
        summary=json.loads(summary_path.read_text()) if summary_path.exists() else None,
    )


def list_runs(runs_dir: str | Path) -> list[RunRecord]:
    """Every run under `runs_dir`, newest first."""
    runs_dir = Path(runs_dir)
    if not runs_dir.is_dir():
        return []
    records = []
    for path in runs_dir.iterdir():
        if (path / CONFIG_FILE).exists():
            try:
                records.append(load_run(path))
            except (OSError, json.JSONDecodeError):
                continue  # being created right now
    return sorted(records, key=lambda r: r.id, reverse=True)


@dataclass
class LoadedModel:
    model: torch.nn.Module
    class_names: list[str]
    info: dict  # backbone, image_size, mean, std, crop_pct, interpolation


def load_model(run_dir: str | Path, device: str = "cpu") -> LoadedModel:
    """Rebuild a run's trained model (in eval mode) from its safetensors weights."""
    run_dir = Path(run_dir)
    info_path = run_dir / MODEL_INFO_FILE
    if not info_path.exists():
        raise FileNotFoundError(f"Run '{run_dir.name}' has no saved model (it may have failed before the end).")
    info = json.loads(info_path.read_text())
    model = timm.create_model(info["backbone"], pretrained=False, num_classes=len(info["class_names"]))
    model.load_state_dict(load_file(str(run_dir / MODEL_FILE)))
    return LoadedModel(model.to(device).eval(), info["class_names"], info)
