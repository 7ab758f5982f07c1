"""Backbones: weights sources, the bundled ImageNet weights being real, and timm's layer groups."""

import numpy as np
import pytest
import timm
import torch
from PIL import Image
from safetensors.torch import save_file
from skimage import data as skdata

from workbench.models.backbones import (
    BackboneError,
    _top_level_groups,
    create_backbone,
    layer_groups,
    list_backbones,
    weights_availability,
)

TINY = ["test_resnet", "test_vit", "test_efficientnet"]


def _imagenet_top1(model: torch.nn.Module, image: np.ndarray) -> int:
    cfg = timm.data.resolve_model_data_config(model)
    transform = timm.data.create_transform(**cfg)
    with torch.inference_mode():
        return int(model.eval()(transform(Image.fromarray(image)).unsqueeze(0)).argmax())


def test_bundled_lite0_weights_recognise_a_cat_and_an_espresso():
    model, source = create_backbone("tf_efficientnet_lite0", num_classes=1000)
    assert source.kind == "bundled" and source.pretrained
    assert 281 <= _imagenet_top1(model, skdata.chelsea()) <= 285  # tabby, tiger cat, Persian, Siamese, Egyptian cat
    assert _imagenet_top1(model, skdata.coffee()) == 967  # espresso


def test_bundled_weights_keep_backbone_and_get_a_fresh_head():
    model, _ = create_backbone("tf_efficientnet_lite0", num_classes=5)
    assert model.get_classifier().out_features == 5
    reference, _ = create_backbone("tf_efficientnet_lite0", num_classes=1000)
    assert torch.equal(model.conv_stem.weight, reference.conv_stem.weight)


def test_model_without_weights_says_random_init_loudly():
    _, source = create_backbone("test_resnet", num_classes=3)
    assert not source.pretrained
    assert source.describe() == "none (random init)"


def test_local_weights_file_loads_exactly(tmp_path):
    trained = timm.create_model("test_resnet", num_classes=10)
    path = tmp_path / "mine.safetensors"
    save_file({k: v.contiguous() for k, v in trained.state_dict().items()}, str(path))
    model, source = create_backbone("test_resnet", num_classes=3, weights=str(path))
    assert source.kind == "file" and source.detail == str(path)
    body = {k: v for k, v in trained.state_dict().items() if not k.startswith("fc.")}
    for name, value in body.items():
        assert torch.equal(model.state_dict()[name], value), name
    assert model.get_classifier().out_features == 3


def test_weights_file_with_wrong_shapes_is_refused_with_the_layer_named(tmp_path):
    other = timm.create_model("test_vit")
    path = tmp_path / "vit.pth"
    torch.save(other.state_dict(), path)
    with pytest.raises(BackboneError, match="do not fit"):
        create_backbone("test_resnet", num_classes=3, weights=str(path))


def test_pickled_objects_are_never_unpickled(tmp_path):
    path = tmp_path / "evil.pth"
    torch.save({"model": torch.nn.Linear(2, 2)}, path)  # a whole module, not a state_dict
    with pytest.raises(BackboneError, match="Could not read weights file"):
        create_backbone("test_resnet", num_classes=3, weights=str(path))


def test_unknown_backbone_suggests_close_names():
    with pytest.raises(BackboneError, match=r"Unknown backbone 'resnet5O'.*resnet50"):
        create_backbone("resnet5O", num_classes=3)


def test_backbone_listing_puts_offline_ready_first():
    infos = list_backbones("efficientnet_lite")
    assert infos[0].weights == "bundled"
    assert {b.name for b in infos if b.weights == "bundled"} >= {"tf_efficientnet_lite0", "tf_efficientnet_lite1"}
    assert weights_availability("test_resnet") in ("download", "none")


@pytest.mark.parametrize("name", TINY)
def test_layer_groups_cover_every_parameter_once_from_stem_to_head(name):
    model = timm.create_model(name, num_classes=4)
    groups = layer_groups(model)
    names = [n for g in groups for n in g.param_names]
    assert sorted(names) == sorted(n for n, _ in model.named_parameters())
    head = {n for n, p in model.named_parameters() if any(p is q for q in model.get_classifier().parameters())}
    assert set(groups[-1].param_names) == head
    assert len(groups) >= 3


def test_fallback_groups_follow_module_order_with_head_last():
    model = timm.create_model("test_resnet", num_classes=4)
    groups = _top_level_groups(model)
    ordered = [names for _, names in sorted(groups.items())]
    assert ordered[0][0].startswith("conv1")
    assert all(n.startswith("fc.") for n in ordered[-1])
