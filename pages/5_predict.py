"""Predict & export: try a trained model on new pictures, take it out of the workbench as one zip, bring an exported
model back in, or read its training as a plain script. Predictions, exports, imports and scripts are done by
`workbench.predict`, `workbench.export` and `workbench.codegen`."""

from __future__ import annotations

import json
from pathlib import Path

import streamlit as st

from ui_common import IMAGE_TYPES, get_registry, loaded_model, model_stamp, person, pick_run, runs_with_model
from workbench.data import DataError
from workbench.deploy.codegen import CodegenError, script_for_run
from workbench.deploy.export import CopyCheck, ExportError, cached_export, existing_export, import_upload, read_report
from workbench.models.heads import tasks_of
from workbench.models.trained import Predictor
from workbench.runs import access
from workbench.runs.records import RunRecord

PICKED = "predict_run"  # session key: the run id chosen on this page
IMPORT_MESSAGE = "predict_import_message"  # session key: (kind, text) left by the import callback
TOP_K = 3


# -------------------------------------------------------------------------------------------------------------------
# Which model


def run_label(record: RunRecord, label: str) -> str:
    accuracy = record.summary.val_accuracy if record.summary else None
    scored = f" · {accuracy:.0%} right on validation" if accuracy is not None else ""
    return f"{label}{scored}"


def run_ui(records: list[RunRecord]) -> RunRecord | None:
    """The chosen run: the one picked here before, else the Train page's, else the newest."""
    if not records:
        st.info("No trained model yet. Train one on the **Train** page (the sample data trains in about a minute), "
                "or bring in a model exported earlier with **Import a model zip** below.")
        return None
    return pick_run(records, "Model", PICKED, describe=run_label,
                    help="Every run that ended with a saved model, newest first (a stopped, failed or interrupted run "
                         "keeps the model of its last saved epoch).")


# -------------------------------------------------------------------------------------------------------------------
# Predictions


def images_ui() -> list:
    """The uploaded pictures, and the photo if one was taken."""
    uploads = st.file_uploader("Pictures to classify", type=IMAGE_TYPES, accept_multiple_files=True,
                               key="predict_uploads", help="Pictures the model has never seen work best as a test.")
    with st.expander("📷 Take a photo with the camera"):
        photo = st.camera_input("Photo", key="predict_camera", label_visibility="collapsed")
    return [*(uploads or []), *([photo] if photo is not None else [])]


def prediction_ui(predictor: Predictor, image) -> None:
    """One picture next to its most likely classes (for a model with several tasks, every task's)."""
    try:
        answers = predictor.predict_tasks([image], TOP_K)[0]
    except DataError as error:
        st.error(str(error))
        return
    left, right = st.columns([1, 2])
    left.image(image, caption=getattr(image, "name", None), width=200)
    with right:
        for task, top in answers.items():
            best, probability = top[0]
            named = f"{task}: " if len(answers) > 1 else ""
            st.markdown(f"{named}**{best}** ({probability:.0%} sure)")
            for name, probability in top:
                st.progress(probability, text=f"{name}: {probability:.1%}")


def predict_ui(record: RunRecord) -> None:
    st.subheader("Try it on new pictures")
    tasks = tasks_of(json.loads(record.model_files[1].read_text()))
    if len(tasks) > 1:
        choices = "; ".join(f"for {t['name']}, between {', '.join(t['class_names'])}" for t in tasks)
        st.caption(f"The model answers {len(tasks)} questions about each picture, one head each on the "
                   f"same backbone: {choices}. It always picks one class per question, even for a picture of "
                   "something else, so a low percentage means it is unsure.")
    else:
        st.caption(f"The model chooses between: {', '.join(record.class_names)}. It always picks one of these, even "
                   "for a picture of something else, so a low percentage means it is unsure.")
    images = images_ui()
    if not images:
        return
    predictor = loaded_model(str(record.dir), model_stamp(record))
    for image in images:
        with st.container(border=True):
            prediction_ui(predictor, image)


# -------------------------------------------------------------------------------------------------------------------
# Export and import


def export_ui(record: RunRecord) -> None:
    st.subheader("Take the model with you")
    st.caption("One zip with the trained weights, a small `predict.py` that runs anywhere with Python (torch, timm, "
               "pillow and safetensors), a README, and TorchScript and ONNX copies of the model for other tools.")
    if not access.can_change(person(), record):
        st.caption(f"Only {access.owner_of(record) or 'its owner'} or the teacher can export this run.")
        return
    path = existing_export(record.dir)
    if path is None:
        if not st.button("Prepare the download", key="export", type="primary"):
            return
        with st.spinner("Packing the model and checking its TorchScript and ONNX copies on the validation pictures "
                        "(ONNX can take a minute for a large model)…"):
            path = cached_export(record.dir, person())
    for copy in read_report(path).copies:
        copy_check_ui(copy)
    st.download_button("Download the model (.zip)", data=path.read_bytes(), file_name=f"{record.id}.zip",
                       mime="application/zip", key="download", type="primary")


def copy_check_ui(copy: CopyCheck) -> None:
    """Whether a TorchScript or ONNX copy can be trusted: it must give the original's answer on every picture."""
    if copy.agreement == 1.0:
        st.success(copy.sentence(), icon="✅")
    elif copy.checked:
        st.warning(f"{copy.sentence()} Use `predict.py` (the safetensors model) rather than the {copy.format} copy.")
    else:
        st.info(copy.sentence())


# -------------------------------------------------------------------------------------------------------------------
# Show me the code


def code_ui(record: RunRecord) -> None:
    st.subheader("Show me the code")
    try:
        script = script_for_run(record.dir)
    except CodegenError as error:
        st.info(str(error))
        return
    st.caption("The same training written out as one plain Python script, with only timm and torch: the same "
               "folder, split, backbone, freezing rule, optimizer and schedule. Read it, change it, run it with "
               "`python train_script.py`, and compare its accuracy with this run's.")
    st.download_button("Download the script (.py)", data=script, file_name=f"train_{record.strategy}.py",
                       mime="text/x-python", key="download_code")
    with st.expander("The script", expanded=True):
        st.code(script, language="python", line_numbers=True)


def import_model() -> None:
    """Callback of the Import button: runs before the page is drawn, so the new run can be selected at once."""
    upload = st.session_state.get("import_zip")
    if upload is None:
        st.session_state[IMPORT_MESSAGE] = ("error", "Choose the model zip first (or wait until its upload ends).")
        return
    try:
        run_dir = import_upload(upload.name, upload.getvalue(), get_registry().runs_dir)
    except (ExportError, DataError) as error:
        st.session_state[IMPORT_MESSAGE] = ("error", str(error))
        return
    st.session_state[PICKED] = Path(run_dir).name
    st.session_state[IMPORT_MESSAGE] = ("success", f"Imported **{upload.name}**: it is selected above.")


def import_ui(expanded: bool) -> None:
    with st.expander("Import a model zip", expanded=expanded or IMPORT_MESSAGE in st.session_state):
        st.caption("A zip made by **Take the model with you** (here or on another computer) becomes a model you can "
                   "try on this page. Its weights are checked before it is added.")
        st.file_uploader("Model zip", type=["zip"], key="import_zip")
        st.button("Import", key="import", on_click=import_model)
        kind, text = st.session_state.pop(IMPORT_MESSAGE, (None, None))
        if kind == "error":
            st.error(text)
        elif kind == "success":
            st.success(text)


# -------------------------------------------------------------------------------------------------------------------

st.title("5 · Predict & export")
st.caption("Show the trained model new pictures and see what it thinks, take it with you as one zip file, and see "
           "its training written out as a plain script.")
chosen = run_ui(runs_with_model())
if chosen is not None:
    predict_ui(chosen)
    export_ui(chosen)
    code_ui(chosen)
import_ui(expanded=chosen is None)
