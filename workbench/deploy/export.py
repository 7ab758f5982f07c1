"""Take a trained model out of the workbench, and bring one back in.

`export_zip(run_dir, dest)` writes one zip that works without the workbench: the weights (safetensors), `model.json`
(backbone, classes, preprocessing, and the tasks of a model with several), a small `predict.py` that needs only torch,
timm, pillow and safetensors and prints every task's answer, a
README, a TorchScript copy and an ONNX copy when the model can be exported that way (each checked against the
original on the run's validation images), and `export_report.json` with the outcome of those checks.
`import_zip(zip_path, runs_dir)` turns such a zip into a run directory the app can list and predict with. Nothing is
ever unpickled: weights are read only through safetensors.
"""

from __future__ import annotations

import dataclasses
import io
import json
import os
import tempfile
import time
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING

import pandas as pd
import timm
import torch
from safetensors import SafetensorError
from safetensors.torch import load as load_safetensors

from workbench import runs
from workbench.core.classroom import ME, Person
from workbench.data import RESIZE_METHOD, DataError, check_zip
from workbench.models.backbones import BackboneError, check_backbone_name
from workbench.models.heads import TASKS_KEY, attach_task_heads, tasks_of
from workbench.models.trained import Predictor, resize_size
from workbench.runs import access
from workbench.runs.records import validation_images

if TYPE_CHECKING:
    import onnxruntime

EXPORT_FILE = "export.zip"
"""Where the app keeps a run's export, inside its run directory (built once, reused while the model is unchanged)."""
FORMAT = "workbench-model/1"
WEIGHTS_MEMBER = runs.MODEL_FILE
INFO_MEMBER = "model.json"
SCRIPT_MEMBER = "predict.py"
README_MEMBER = "README.txt"
TORCHSCRIPT_MEMBER = "model.torchscript.pt"
ONNX_MEMBER = "model.onnx"
ONNX_INPUT, ONNX_OUTPUT = "images", "logits"
REPORT_MEMBER = "export_report.json"
IMPORTED = "imported"  # the strategy name an imported run is recorded under


class ExportError(ValueError):
    """A model that cannot be exported, or a zip that cannot be imported; the message says what to do."""


@dataclass
class CopyCheck:
    """One copy of the model in another format (TorchScript, ONNX): whether it could be made, and how often it gives
    the original's top-1 class on the run's validation images. A copy is only trusted if it always does."""

    format: str
    """"TorchScript" or "ONNX"."""
    exported: bool
    """The copy is in the zip."""
    error: str | None = None
    """Why the copy could not be made, when it could not."""
    same_top1: int | None = None
    """Validation images on which the copy and the original give the same top-1 class."""
    checked: int | None = None
    """Validation images compared (None: not checked)."""
    not_checked_because: str | None = None
    how: str | None = None
    """How the copy was made, when there is more than one way (the ONNX exporter used)."""

    @property
    def agreement(self) -> float | None:
        return self.same_top1 / self.checked if self.checked else None

    def sentence(self) -> str:
        """One plain line for the page, the CLI and the README."""
        if not self.exported:
            return f"{self.format}: not exported ({self.error}). The safetensors model works as usual."
        if not self.checked:
            return f"{self.format}: exported, not checked ({self.not_checked_because})."
        return f"{self.format}: same top-1 on {self.same_top1}/{self.checked} validation images."


@dataclass
class ExportReport:
    """How the export went: one CopyCheck per extra format in the zip."""

    run_id: str
    torchscript: CopyCheck
    onnx: CopyCheck

    @property
    def copies(self) -> list[CopyCheck]:
        return [self.torchscript, self.onnx]

    def sentence(self) -> str:
        """One line per copy, for the CLI and the README."""
        return "\n".join(copy.sentence() for copy in self.copies)

    def to_dict(self) -> dict:
        return {"run_id": self.run_id, **{key: {**dataclasses.asdict(copy), "agreement": copy.agreement,
                                                "sentence": copy.sentence()}
                                          for key, copy in (("torchscript", self.torchscript), ("onnx", self.onnx))}}

    @classmethod
    def from_dict(cls, values: dict) -> ExportReport:
        names = [f.name for f in dataclasses.fields(CopyCheck)]
        return cls(values["run_id"], *(CopyCheck(**{n: values[key].get(n) for n in names})
                                       for key in ("torchscript", "onnx")))


@dataclass
class ModelCopy:
    """A copy made for the zip (its bytes) and a function that runs it the way a user would load it: a normalised
    float batch in, one score per class out."""

    member: str
    data: bytes
    run: Callable[[torch.Tensor], torch.Tensor]


# ---------------------------------------------------------------------------------------------------------------
# Export


def export_zip(run_dir: str | Path, dest: str | Path, viewer: Person = ME) -> Path:
    """Write the run's model as a self-contained zip at `dest` (replaced whole, never left half-written).
    AccessError unless `viewer` may export the run (the teacher, or whoever started it)."""
    run_dir, dest = Path(run_dir), Path(dest)
    record = runs.load_run(run_dir)
    access.require_change(viewer, record, "export")
    predictor = Predictor.from_run(run_dir)
    made = [torchscript_copy(predictor), onnx_copy(predictor)]
    report = ExportReport(run_dir.name, *check_copies(predictor, run_dir, made))
    members = {
        WEIGHTS_MEMBER: (run_dir / runs.MODEL_FILE).read_bytes(),
        INFO_MEMBER: json.dumps(exported_info(predictor.info, record), indent=2),
        SCRIPT_MEMBER: PREDICT_SCRIPT,
        README_MEMBER: readme(predictor.info, record, report),
        REPORT_MEMBER: json.dumps(report.to_dict(), indent=2),
        **{copy.member: copy.data for copy, _ in made if copy is not None},
    }
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_name(dest.name + ".partial")
    with zipfile.ZipFile(partial, "w", compression=zipfile.ZIP_DEFLATED) as zf:
        for name, content in members.items():
            zf.writestr(name, content)
    os.replace(partial, dest)
    return dest


def existing_export(run_dir: str | Path) -> Path | None:
    """The export kept in the run's directory, if there is one at least as new as the model and as this version's
    exports (one made before the ONNX copy existed is made again)."""
    dest, model = Path(run_dir) / EXPORT_FILE, Path(run_dir) / runs.MODEL_FILE
    if not (dest.exists() and model.exists() and dest.stat().st_mtime >= model.stat().st_mtime):
        return None
    try:
        read_report(dest)
    except (AttributeError, KeyError, TypeError, ValueError, zipfile.BadZipFile):
        return None
    return dest


def cached_export(run_dir: str | Path, viewer: Person = ME) -> Path:
    """The run's export kept in its directory: built now unless an up-to-date one is already there. AccessError
    unless `viewer` may export the run."""
    if viewer is not ME:  # a personal server's one user may export anything
        access.require_change(viewer, runs.load_run(run_dir), "export")
    return existing_export(run_dir) or export_zip(run_dir, Path(run_dir) / EXPORT_FILE, viewer)


def read_report(zip_path: str | Path) -> ExportReport:
    with zipfile.ZipFile(zip_path) as zf:
        return ExportReport.from_dict(json.loads(zf.read(REPORT_MEMBER)))


def exported_info(info: dict, record: runs.RunRecord) -> dict:
    """model.json of an export: what a stranger needs to rebuild the model and feed it images (and, for a model
    with several tasks, each task's name and classes: the first answered by the model's classifier, the others by
    its `task_heads`, in order)."""
    return {
        "format": FORMAT,
        "backbone": info["backbone"],
        "class_names": info["class_names"],
        **({TASKS_KEY: [{"name": t["name"], "class_names": t["class_names"]} for t in info[TASKS_KEY]]}
           if info.get(TASKS_KEY) else {}),
        "preprocessing": {
            "image_size": info["image_size"],
            "resize_to": resize_size(info),
            "crop_pct": info.get("crop_pct"),
            "mean": info["mean"],
            "std": info["std"],
            # training always resizes this way, whatever the backbone's own pretrained config prefers
            "interpolation": RESIZE_METHOD.name.lower(),
        },
        "trained": {
            "run_id": record.id,
            "strategy": record.strategy,
            "dataset": Path(record.data).name if record.data else None,
            "val_accuracy": record.summary.val_accuracy if record.summary else None,
            "test_accuracy": record.summary.test_accuracy if record.summary else None,
            "timm_version": timm.__version__,
        },
    }


def _example_batch(predictor: Predictor, size: int = 2) -> torch.Tensor:
    # Two images, not one: exporters may treat a dimension of size 1 as fixed, and the batch must stay free.
    side = predictor.info["image_size"]
    return torch.zeros(size, 3, side, side, device=predictor.device).contiguous(memory_format=torch.channels_last)


def _failed(format_name: str, error: Exception) -> CopyCheck:
    return CopyCheck(format_name, exported=False, error=f"{type(error).__name__}: {str(error).splitlines()[0]}")


def torchscript_copy(predictor: Predictor) -> tuple[ModelCopy | None, CopyCheck]:
    """The model traced to TorchScript (eval mode), reloaded from its bytes as a user would load it."""
    try:
        with torch.no_grad():
            traced = torch.jit.trace(predictor.model, _example_batch(predictor))
        buffer = io.BytesIO()
        torch.jit.save(traced, buffer)
    except Exception as e:  # noqa: BLE001 - some architectures do not trace; the safetensors export still works
        return None, _failed("TorchScript", e)
    scripted = buffer.getvalue()
    reloaded = torch.jit.load(io.BytesIO(scripted), map_location=predictor.device).eval()
    return ModelCopy(TORCHSCRIPT_MEMBER, scripted, reloaded), CopyCheck("TorchScript", exported=True)


# torch has two ONNX exporters. The TorchScript-based one exports a small CNN in under a second; the torch.export-based
# one (torch's default since 2.9) is several times slower but handles more models, e.g. a ViT whose position
# embedding is resized at a non-native image size. We try the fast one first and fall back on the other.
ONNX_EXPORTERS = {"TorchScript-based exporter": False, "torch.export-based exporter": True}


def _onnx_bytes(model: torch.nn.Module, example: torch.Tensor, dynamo: bool) -> bytes:
    names = {"input_names": [ONNX_INPUT], "output_names": [ONNX_OUTPUT]}
    with torch.no_grad():
        if dynamo:
            program = torch.onnx.export(model, (example,), dynamo=True, verbose=False, optimize=True,
                                        dynamic_shapes=({0: torch.export.Dim("batch")},), **names)
            return program.model_proto.SerializeToString()
        buffer = io.BytesIO()
        torch.onnx.export(model, (example,), buffer, dynamo=False,
                          dynamic_axes={ONNX_INPUT: {0: "batch"}, ONNX_OUTPUT: {0: "batch"}}, **names)
        return buffer.getvalue()


def onnx_copy(predictor: Predictor) -> tuple[ModelCopy | None, CopyCheck]:
    """The model as ONNX (batch size free), run by onnxruntime as a user would run it."""
    import onnxruntime  # here, not at the top: every CLI command imports this module, only exports need it

    errors = []
    for how, dynamo in ONNX_EXPORTERS.items():
        try:
            data = _onnx_bytes(predictor.model, _example_batch(predictor), dynamo)
            session = onnxruntime.InferenceSession(data, providers=["CPUExecutionProvider"])
        except Exception as e:  # noqa: BLE001 - an exporter that cannot handle an operator; try the next one
            errors.append(_failed("ONNX", e).error)
            continue
        return ModelCopy(ONNX_MEMBER, data, _onnx_runner(session)), CopyCheck("ONNX", exported=True, how=how)
    return None, CopyCheck("ONNX", exported=False, error="; ".join(errors))


def _onnx_runner(session: onnxruntime.InferenceSession) -> Callable[[torch.Tensor], torch.Tensor]:
    def run(batch: torch.Tensor) -> torch.Tensor:
        # onnxruntime reads plain contiguous NCHW arrays; the predictor's batches are channels_last
        outputs = session.run([ONNX_OUTPUT], {ONNX_INPUT: batch.cpu().contiguous().numpy()})
        return torch.from_numpy(outputs[0]).to(batch.device)

    return run


def check_copies(predictor: Predictor, run_dir: Path,
                 made: list[tuple[ModelCopy | None, CopyCheck]]) -> list[CopyCheck]:
    """Each check completed with the copy's top-1 agreement with the original on the run's validation images (read
    once for all copies)."""
    checks = [check for _, check in made]
    copies = [copy for copy, _ in made if copy is not None]
    if not copies:
        return checks
    try:
        with validation_images(run_dir) as samples:
            same, total = top1_agreement(predictor, [copy.run for copy in copies], [s.path for s in samples])
    except (DataError, ValueError) as e:
        return [dataclasses.replace(check, not_checked_because=str(e)) if check.exported else check
                for check in checks]
    agreeing = iter(same)
    return [dataclasses.replace(check, same_top1=next(agreeing), checked=total) if check.exported else check
            for check in checks]


@torch.inference_mode()
def top1_agreement(predictor: Predictor, others: list[Callable[[torch.Tensor], torch.Tensor]],
                   images: list[Path]) -> tuple[list[int], int]:
    """(for each of `others`, the images where it gives the predictor's top-1 class; images compared), each image
    decoded once and fed identically to all."""
    same = [0] * len(others)
    for batch in predictor.batches(images):
        expected = predictor.model(batch).argmax(1)
        for i, other in enumerate(others):
            same[i] += int((other(batch).argmax(1) == expected).sum())
    return same, len(images)


def measured_text(summary: runs.RunSummary | None) -> str:
    """The README's account of how well the model did: validation accuracy and, beside it, the held-out test
    accuracy, each with its confusion matrix, labelled so that one is never taken for the other."""
    if summary is None or summary.val_accuracy is None:
        return ""
    names = summary.class_names or []
    lines = [f"Validation accuracy when it was trained: {summary.val_accuracy:.1%} (the validation images also "
             "guided the choices made in training, so it can read a little high)."]
    if summary.test_accuracy is not None:
        lines.append(f"Test accuracy (held-out): {summary.test_accuracy:.1%} on {summary.num_test} test images that "
                     "training never saw, measured once on this model after training.")
    elif summary.num_test:
        lines.append(f"Test accuracy (held-out): not measured, the run ended before its {summary.num_test} test "
                     "images were used.")
    else:
        lines.append("Test accuracy (held-out): not measured, the data had no separate test images.")
    for title, matrix in (("Test confusion matrix (held-out)", summary.test_confusion_matrix),
                          ("Validation confusion matrix", summary.confusion_matrix)):
        if matrix and len(matrix) == len(names):
            table = pd.DataFrame(matrix, index=[f"true {n}" for n in names], columns=names).to_string()
            lines += ["", f"{title}, rows the true class, columns the predicted one:",
                      *("  " + line for line in table.splitlines())]
    return "\n".join(lines) + "\n"


def tasks_text(info: dict, summary: runs.RunSummary | None) -> str:
    """The README's account of a model with several tasks: each task, its classes and its validation accuracy;
    empty for a model with one."""
    tasks = tasks_of(info)
    if len(tasks) < 2:
        return ""
    measured = {t["name"]: t for t in (summary.get(TASKS_KEY) if summary else None) or []}
    lines = [f"It answers {len(tasks)} tasks at once, one head each on the same backbone (the first task's scores "
             "are the model's own output; the TorchScript and ONNX copies give only those):"]
    for task in tasks:
        accuracy = measured.get(task["name"], {}).get("val_accuracy")
        scored = f"{accuracy:.1%} right on validation" if accuracy is not None else "accuracy not measured"
        untrained = " (weight 0: measured, never trained)" if measured.get(task["name"], {}).get("weight") == 0 else ""
        lines.append(f"  {task['name']}: {scored}{untrained}; classes {', '.join(task['class_names'])}")
    return "\n".join(lines) + "\n"


def readme(info: dict, record: runs.RunRecord, report: ExportReport) -> str:
    measured = tasks_text(info, record.summary) + measured_text(record.summary)
    return README.format(backbone=info["backbone"], classes=", ".join(info["class_names"]), run_id=record.id,
                         measured=measured, size=info["image_size"], resize_to=resize_size(info),
                         torchscript=report.torchscript.sentence(), onnx=report.onnx.sentence(),
                         onnx_input=ONNX_INPUT)


README = """\
An image classifier exported from the Transfer Learning Workbench (run {run_id}).

Backbone: {backbone}
Classes: {classes}
{measured}
What is inside
  model.safetensors     the trained weights (safetensors: plain numbers, no code)
  model.json            the backbone name, the class names and how to prepare an image
  predict.py            a small program that classifies images with the model
  model.torchscript.pt  the same model as TorchScript, when it could be made (see below)
  model.onnx            the same model as ONNX, when it could be made (see below)
  export_report.json    how the TorchScript and ONNX copies compared with the original

Classify images
  pip install torch timm pillow safetensors
  python predict.py photo1.jpg photo2.png
It prints the three most likely classes of each image with their probabilities (for a model with several
tasks, those of every task, one after the other on the image's line).

How images are prepared (predict.py does this for you)
  RGB, shorter side resized to {resize_to} px (bicubic), centre crop of {size} x {size} px, then each channel
  normalised with the mean and std in model.json. Other preparation gives other (worse) answers.

TorchScript
  {torchscript}
  model = torch.jit.load("model.torchscript.pt") takes a float batch [N, 3, {size}, {size}], prepared as above,
  and returns one score per class (softmax gives probabilities). It needs torch only, not timm.

ONNX
  {onnx}
  For onnxruntime and other ONNX tools (no torch needed): pip install onnxruntime numpy, then
    session = onnxruntime.InferenceSession("model.onnx")
    scores = session.run(None, {{"{onnx_input}": batch}})[0]
  where batch is a float32 numpy array [N, 3, {size}, {size}] prepared as above; one score per class comes back.
"""

PREDICT_SCRIPT = '''\
"""Classify images with a model exported from the Transfer Learning Workbench.

usage: python predict.py IMAGE [IMAGE ...]
needs: pip install torch timm pillow safetensors
"""

import json
import sys
from pathlib import Path

import timm
import torch
from PIL import Image, ImageOps
from safetensors.torch import load_file

HERE = Path(__file__).resolve().parent
TOP_K = 3


def load_model():
    """(model, model.json, tasks): a model with several tasks answers the first with its own classifier and each
    further one with an extra linear head (model.task_heads) on the same pooled features."""
    info = json.loads((HERE / "model.json").read_text())
    tasks = info.get("tasks") or [{"name": "class", "class_names": info["class_names"]}]
    model = timm.create_model(info["backbone"], pretrained=False, num_classes=len(info["class_names"]))
    state = load_file(str(HERE / "model.safetensors"))
    if len(tasks) > 1:
        model.task_heads = torch.nn.ModuleList(
            torch.nn.Linear(state[f"task_heads.{i}.weight"].shape[1], len(task["class_names"]))
            for i, task in enumerate(tasks[1:]))
    model.load_state_dict(state)
    return model.eval(), info, tasks


def scores(model, batch):
    """Every task's scores for a prepared batch: the classifier's, then each extra head's."""
    if not hasattr(model, "task_heads"):
        return [model(batch)]
    features = model.forward_head(model.forward_features(batch), pre_logits=True)
    return [model.get_classifier()(features), *(head(features) for head in model.task_heads)]


def best(logits, class_names):
    """'circle 91.2% · square 5.0% · star 1.1%': the TOP_K most likely classes of one image."""
    probabilities = logits.softmax(dim=0)
    top = probabilities.topk(min(TOP_K, len(probabilities)))
    return " · ".join(f"{class_names[i]} {p:.1%}" for p, i in zip(top.values.tolist(), top.indices.tolist()))


def prepare(path, prep):
    """As in training: RGB, shorter side resized (bicubic), centre crop, normalised: a [3, size, size] tensor."""
    size, resize_to = prep["image_size"], prep["resize_to"]
    with Image.open(path) as img:
        img.draft("RGB", (resize_to, resize_to))  # JPEGs decode at reduced scale, as the workbench does
        img = ImageOps.exif_transpose(img)
        if img.mode in ("RGBA", "LA", "PA") or "transparency" in img.info:
            img = Image.alpha_composite(Image.new("RGBA", img.size, "white"), img.convert("RGBA"))
        img = img.convert("RGB")
    img = ImageOps.fit(img, (resize_to, resize_to), method=Image.Resampling.BICUBIC)
    left = top = round((resize_to - size) / 2)
    img = img.crop((left, top, left + size, top + size))
    pixels = torch.frombuffer(bytearray(img.tobytes()), dtype=torch.uint8).view(size, size, 3).permute(2, 0, 1)
    mean = torch.tensor(prep["mean"]).view(3, 1, 1) * 255
    std = torch.tensor(prep["std"]).view(3, 1, 1) * 255
    return (pixels.float() - mean) / std


def main(paths):
    if not paths:
        print(__doc__.strip(), file=sys.stderr)
        return 2
    model, info, tasks = load_model()
    failed = 0
    for path in paths:
        try:
            batch = prepare(path, info["preprocessing"]).unsqueeze(0)
        except (OSError, ValueError) as e:
            print(f"{path}: cannot read this image ({e})", file=sys.stderr)
            failed += 1
            continue
        with torch.no_grad():
            answers = [best(logits[0], task["class_names"]) for logits, task in zip(scores(model, batch), tasks)]
        if len(tasks) == 1:
            print(f"{path}: {answers[0]}")
        else:
            print(f"{path}: " + " | ".join(f"{task['name']}: {answer}" for task, answer in zip(tasks, answers)))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
'''


# ---------------------------------------------------------------------------------------------------------------
# Import


def import_zip(zip_path: str | Path, runs_dir: str | Path) -> Path:
    """Turn an exported zip into a new run directory under `runs_dir` (marked "imported") and return it.

    The zip is checked like a dataset zip before anything is read; only model.json and model.safetensors are read
    from it (anything else, the TorchScript and ONNX copies included, is ignored), and the weights must fit the
    backbone."""
    zip_path = Path(zip_path)
    check_zip(zip_path, remedy="Use the zip exactly as the workbench exported it.")
    exported, weights = _read_export(zip_path)
    _check_format(exported, zip_path)
    info = _run_info(exported, zip_path)
    _check_weights_fit(info, weights, zip_path)
    run_dir = Path(runs_dir) / runs.new_run_id(IMPORTED, info["backbone"])
    run_dir.mkdir(parents=True)
    (run_dir / runs.MODEL_FILE).write_bytes(weights)
    runs.write_json(run_dir / runs.MODEL_INFO_FILE, info)
    trained = exported.get("trained") or {}
    runs.write_json(run_dir / runs.SUMMARY_FILE, {
        "status": "finished", IMPORTED: True, "error": None, "hint": None,
        "val_accuracy": trained.get("val_accuracy"), "test_accuracy": trained.get("test_accuracy"),
        "class_names": info["class_names"],
        "pretrained": {"description": f"imported from {zip_path.name}"},
    })
    # config.json last: a run directory is listed once it has one, and by then everything else is in place
    runs.write_json(run_dir / runs.CONFIG_FILE, {
        "data": None, "backbone": info["backbone"], "strategy": IMPORTED, "image_size": info["image_size"],
        "class_names": info["class_names"], "imported_from": zip_path.name, "trained": trained,
        "created": time.time(),
    })
    return run_dir


def import_upload(name: str, data: bytes, runs_dir: str | Path) -> Path:
    """`import_zip` for a zip uploaded in the browser (its file name is kept for messages and the run record)."""
    with tempfile.TemporaryDirectory(prefix="workbench-import-") as scratch:
        base = PurePosixPath(name.replace("\\", "/")).name
        path = Path(scratch) / (base if base not in ("", ".", "..") else "model.zip")
        path.write_bytes(data)
        return import_zip(path, runs_dir)


def _read_export(zip_path: Path) -> tuple[dict, bytes]:
    """(model.json, the weights' bytes), found at the top of the zip or inside one folder (a re-zipped export)."""
    try:
        with zipfile.ZipFile(zip_path) as zf:
            found = [n for n in zf.namelist() if PurePosixPath(n).name == INFO_MEMBER]
            if len(found) != 1:
                raise ExportError(f"'{zip_path.name}' is not a model exported by the workbench: it holds "
                                  f"{len(found) or 'no'} {INFO_MEMBER}. Export the model again from the app.")
            folder = PurePosixPath(found[0]).parent
            weights_name = str(folder / WEIGHTS_MEMBER) if str(folder) != "." else WEIGHTS_MEMBER
            if weights_name not in zf.namelist():
                raise ExportError(f"'{zip_path.name}' has no {WEIGHTS_MEMBER} next to its {INFO_MEMBER}: the "
                                  "weights are missing. Export the model again from the app.")
            return json.loads(zf.read(found[0])), zf.read(weights_name)
    except (zipfile.BadZipFile, json.JSONDecodeError, UnicodeDecodeError) as e:
        raise ExportError(f"'{zip_path.name}' cannot be read as a model export ({e}). Export the model again.") \
            from None


def _check_format(exported: dict, zip_path: Path) -> None:
    """Refuse an export whose model.json this version cannot read: from a newer workbench, an older format, or
    something else entirely; the message says which and what to do."""
    name, _, version = str(exported.get("format", "")).partition("/")
    ours = int(FORMAT.partition("/")[2])
    if name != FORMAT.partition("/")[0] or not version.isdigit():
        raise ExportError(f"'{zip_path.name}' is not a model exported by the workbench: its {INFO_MEMBER} has no "
                          f"'format': '{FORMAT}'. Export the model again from the app.")
    if int(version) > ours:
        raise ExportError(f"'{zip_path.name}' was exported by a newer version of the workbench (format {version}; this "
                          f"one reads format {ours}). Update this workbench to that version, or export the model again "
                          "with this one.")
    if int(version) < ours:
        raise ExportError(f"'{zip_path.name}' was exported by an older version of the workbench (format {version}; "
                          f"this one reads format {ours}). Export the model again with this version.")


def _run_info(exported: dict, zip_path: Path) -> dict:
    """The run's model.json (see runs.load_model) from an export's."""
    try:
        prep = exported["preprocessing"]
        info = {"backbone": str(exported["backbone"]), "class_names": [str(c) for c in exported["class_names"]],
                "image_size": int(prep["image_size"]), "mean": [float(v) for v in prep["mean"]],
                "std": [float(v) for v in prep["std"]], "crop_pct": prep.get("crop_pct"),
                "interpolation": prep.get("interpolation")}
    except (KeyError, TypeError, ValueError) as e:
        raise ExportError(f"'{zip_path.name}': its {INFO_MEMBER} is incomplete or damaged ({e!r} is wrong or "
                          "missing). Export the model again from the app.") from None
    if len(info["class_names"]) < 2 or len(info["mean"]) != 3 or len(info["std"]) != 3:
        raise ExportError(f"'{zip_path.name}': its {INFO_MEMBER} needs at least 2 class names and 3 mean and std "
                          "values. Export the model again from the app.")
    if exported.get(TASKS_KEY):
        info[TASKS_KEY] = _tasks(exported[TASKS_KEY], info["class_names"], zip_path)
    return info


def _tasks(tasks: list, class_names: list[str], zip_path: Path) -> list[dict]:
    """An export's list of tasks, checked: names, at least 2 classes each, the first task's being the model's."""
    try:
        read = [{"name": str(t["name"]), "class_names": [str(c) for c in t["class_names"]]} for t in tasks]
    except (KeyError, TypeError) as e:
        raise ExportError(f"'{zip_path.name}': the tasks in its {INFO_MEMBER} are damaged ({e!r} is wrong or "
                          "missing). Export the model again from the app.") from None
    if read[0]["class_names"] != class_names or any(len(t["class_names"]) < 2 for t in read):
        raise ExportError(f"'{zip_path.name}': the tasks in its {INFO_MEMBER} do not fit its classes (the first "
                          "task must have the model's classes, every task at least 2). Export the model again.")
    return read


def _check_weights_fit(info: dict, weights: bytes, zip_path: Path) -> None:
    """Build the backbone and load the weights into it, so a broken zip fails here and not on the Predict page."""
    try:
        check_backbone_name(info["backbone"])  # a registered timm name only: never a hub or file reference
    except BackboneError as e:
        raise ExportError(f"'{zip_path.name}': {e}") from None
    try:
        state = load_safetensors(weights)
        model = timm.create_model(info["backbone"], pretrained=False, num_classes=len(info["class_names"]))
        attach_task_heads(model, tasks_of(info))
        model.load_state_dict(state)
    except (SafetensorError, RuntimeError, KeyError) as e:
        raise ExportError(f"'{zip_path.name}': the weights do not fit a {info['backbone']} with "
                          f"{len(info['class_names'])} classes ({str(e).splitlines()[0]}). Export the model again "
                          "from the app.") from None
