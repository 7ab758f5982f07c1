"""The Compress and Few-shot pages, driven like a user would (streamlit.testing.v1.AppTest)."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from ui_common import DATASET, get_registry
from workbench.analysis.fewshot import CURVE_FILE, CURVES_DIR
from workbench.deploy.compress import CompressConfig, compress_run
from workbench.engine import Run
from workbench.engine.config import RunConfig

from .conftest import REPO, SHAPES

COMPRESS_PAGE = str(REPO / "pages" / "7_compress.py")
FEWSHOT_PAGE = str(REPO / "pages" / "8_few_shot.py")
TIMEOUT = 120


@pytest.fixture(autouse=True)
def fresh_registry():
    get_registry.clear()
    yield
    get_registry.clear()


def _texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "success", "warning", "error", "subheader")
    return "\n".join(str(element.value) for kind in kinds for element in at.get(kind))


def test_compress_page_without_runs_says_what_to_do(runs_dir):
    at = AppTest.from_file(COMPRESS_PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    assert "No finished run to compress yet" in _texts(at)


def test_compress_page_shows_the_tradeoff_of_a_compressed_run(runs_dir):
    run = Run(RunConfig(data=str(SHAPES), backbone="test_resnet", strategy="linear_probe", epochs=1, image_size=32,
                        runs_dir=str(runs_dir))).run()
    compress_run(CompressConfig(run=str(run.dir), sparsities=(0.5,), quantize=(), latency_repeats=2))
    at = AppTest.from_file(COMPRESS_PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table["variant"]) == ["original", "pruned-50"]
    assert at.selectbox(key="variant").value == "pruned-50"
    assert "50% of the weights" in _texts(at)
    assert at.form  # the settings form is there to compress again


def test_few_shot_page_classifies_from_k_images_per_class_instantly(runs_dir):
    at = AppTest.from_file(FEWSHOT_PAGE, default_timeout=TIMEOUT)
    at.session_state[DATASET] = str(SHAPES)
    at.run()
    at.text_input(key="fewshot_backbone").set_value("test_resnet")
    at.number_input(key="fewshot_size").set_value(64)
    at.button(key="compute_features").click().run()
    assert not at.exception
    assert at.metric[0].label == "Validation accuracy"
    assert "random features" in _texts(at)  # test_resnet has no pretrained weights: the page says so
    at.slider(key="fewshot_shots").set_value(2).run()
    assert "From 2 image(s) per class" in _texts(at)
    at.button(key="save_prototypes").click().run()
    assert not at.exception
    saved = list(runs_dir.glob("*-prototypes-test_resnet-*"))
    assert len(saved) == 1 and saved[0].name in _texts(at)


def test_few_shot_page_draws_the_latest_curve(runs_dir):
    curve_dir = runs_dir / CURVES_DIR / "20000101-000000-test_resnet"
    curve_dir.mkdir(parents=True)
    points = [{"method": m, "shots": k, "images_per_class": n, "train_images": 5 * n, "val_accuracy": acc,
               "seconds": 1.0, "run_id": None, "status": "finished", "error": None}
              for m, base in (("prototypes", 0.6), ("scratch", 0.2))
              for k, n, acc in ((1, 1, base), (5, 5, base + 0.2))]
    (curve_dir / CURVE_FILE).write_text(json.dumps({
        "id": curve_dir.name, "backbone": "test_resnet", "image_size": 64, "epochs": 1, "val_images": 50,
        "chance": 0.2, "created": "2000-01-01 00:00:00", "points": points}))
    at = AppTest.from_file(FEWSHOT_PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    table = at.dataframe[0].value
    assert list(table.index) == ["prototypes", "scratch"] and list(table.columns) == ["1", "5"]
    assert "Latest curve: test_resnet" in _texts(at)


def test_few_shot_page_sizes_prototypes_like_the_backbone_and_offers_a_meta_trained_backbone(runs_dir):
    meta = Run(RunConfig(data=str(SHAPES), backbone="test_resnet", strategy="protonet", epochs=1, image_size=32,
                         runs_dir=str(runs_dir), options={"proto_episodes": 2, "proto_shots": 2,
                                                          "proto_queries": 2})).run()
    assert meta.status == "finished", meta.error
    at = AppTest.from_file(FEWSHOT_PAGE, default_timeout=TIMEOUT)
    at.session_state[DATASET] = str(SHAPES)
    at.run()
    assert not at.exception
    assert at.number_input(key="fewshot_size").value is None  # the backbone's own size unless one is chosen
    offered = at.selectbox(key="curve_meta_run")
    assert offered.options[0] == "no" and len(offered.options) == 2
    assert "protonet" in offered.options[1]
