"""The Predict & export page, driven like a user would (streamlit.testing.v1.AppTest)."""

# The trained run and its export are fixtures of test_predict.py, imported and then named as test arguments.
# ruff: noqa: F401, F811

from __future__ import annotations

import shutil
import zipfile

import pytest
from streamlit.testing.v1 import AppTest

from ui_common import RUN_ID, get_registry
from workbench.deploy.codegen import script_for_run
from workbench.deploy.export import EXPORT_FILE

from .conftest import REPO, SHAPES
from .test_predict import exported, tiny_run

PAGE = str(REPO / "pages" / "5_predict.py")
TIMEOUT = 60
pytestmark = pytest.mark.filterwarnings("ignore:`torch.jit:FutureWarning")


@pytest.fixture(autouse=True)
def fresh_registry():
    get_registry.clear()
    yield
    get_registry.clear()


@pytest.fixture
def two_runs(tiny_run, runs_dir):
    """The trained run twice in this test's runs folder: the newest first, as the app lists them."""
    older = runs_dir / "20000101-000000-full-test_resnet-aaaa"
    newer = runs_dir / "20000101-000001-full-test_resnet-bbbb"
    for path in (older, newer):
        shutil.copytree(tiny_run, path)
    return older, newer


def _texts(at: AppTest) -> str:
    kinds = ("markdown", "caption", "info", "success", "warning", "error", "subheader")
    return "\n".join(str(element.value) for kind in kinds for element in at.get(kind))


def test_without_a_trained_model_the_page_says_what_to_do(runs_dir):
    at = AppTest.from_file(str(REPO / "app.py"), default_timeout=TIMEOUT)
    at.switch_page("pages/5_predict.py").run()
    assert not at.exception
    assert at.title[0].value == "5 · Predict & export"
    assert "No trained model yet" in at.info[0].value
    assert at.button(key="import") is not None


def test_the_run_from_the_train_page_is_chosen_and_pictures_get_their_top_classes(two_runs):
    older, newer = two_runs
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT)
    at.session_state[RUN_ID] = older.name
    at.run()
    assert not at.exception
    assert at.selectbox(key="predict_run").value == older.name
    assert at.selectbox(key="predict_run").options[0].startswith("full · test_resnet · 00:00:01")

    picture = (SHAPES / "star" / "star_004.jpg").read_bytes()
    at.file_uploader(key="predict_uploads").set_value([("star.jpg", picture, "image/jpeg"),
                                                       ("oops.jpg", b"not a picture", "image/jpeg")]).run()
    assert not at.exception
    assert len(at.get("progress")) == 3  # the top 3 classes of the good picture
    assert "% sure" in _texts(at)
    assert "oops.jpg" in at.error[0].value


def _download_labels(at: AppTest) -> list[str]:
    return [element.proto.label for element in at.get("download_button")]


def test_export_builds_the_zip_once_and_reports_the_torchscript_and_onnx_checks(two_runs):
    _, newer = two_runs
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert at.selectbox(key="predict_run").value == newer.name
    assert "Download the model (.zip)" not in _download_labels(at)
    at.button(key="export").click().run()
    assert not at.exception
    assert [s.value for s in at.success] == ["TorchScript: same top-1 on 50/50 validation images.",
                                             "ONNX: same top-1 on 50/50 validation images."]
    assert "Download the model (.zip)" in _download_labels(at)
    assert (newer / EXPORT_FILE).exists()
    at.run()  # the kept zip is offered again without building it
    assert "Download the model (.zip)" in _download_labels(at)


def test_show_me_the_code_shows_the_runs_training_script_to_read_and_download(two_runs):
    _, newer = two_runs
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    assert not at.exception
    script = at.code[0].value
    assert script == script_for_run(newer).rstrip("\n")  # st.code drops the final newline
    assert 'BACKBONE = "test_resnet"' in script and "create_optimizer_v2" in script and "import workbench" not in script
    assert "Download the script (.py)" in _download_labels(at)


def test_an_imported_zip_becomes_the_chosen_model(two_runs, runs_dir, exported):
    at = AppTest.from_file(PAGE, default_timeout=TIMEOUT).run()
    at.file_uploader(key="import_zip").set_value(("class model.zip", exported.read_bytes(), "application/zip")).run()
    at.button(key="import").click().run()
    assert not at.exception
    chosen = at.selectbox(key="predict_run").value
    assert "imported" in chosen and (runs_dir / chosen / "model.safetensors").exists()
    assert "Imported **class model.zip**" in at.success[-1].value
    assert "no recorded training setup" in at.info[0].value  # no script for a model trained elsewhere
    assert not at.code

    bad = zipfile.ZipFile(runs_dir / "bad.zip", "w")
    bad.writestr("../x", b"evil")
    bad.close()
    at.file_uploader(key="import_zip").set_value(("bad.zip", (runs_dir / "bad.zip").read_bytes(),
                                                  "application/zip")).run()
    at.button(key="import").click().run()
    assert "was refused" in at.error[0].value
    assert at.selectbox(key="predict_run").value == chosen
