"""Page 1 · Data: choose the images (sample, upload or a folder here) and see what the health check found."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from ui_common import DATASET, SAMPLE_DATASETS
from workbench.analysis.model_views import class_counts_figure, thumbnails
from workbench.data import IMAGE_EXTENSIONS, DataError, ImageDataset, open_dataset, uploads
from workbench.engine.config import RunConfig

SOURCES = {"sample": "Sample data", "upload": "Upload a folder or zip", "local": "Folder on this computer"}
SOURCE = "data.source"  # widget keys of this page
SAMPLE = "data.sample"
LOCAL_PATH = "data.local_path"
UPLOADED = "data.uploaded"  # {upload signature: saved folder}, so a rerun never saves the same upload twice
# The split a run makes by default, so the counts shown here are the ones training will use.
VAL_FRACTION = next(f.default for f in dataclasses.fields(RunConfig) if f.name == "val_fraction")


@st.cache_resource(show_spinner="Reading every image once and checking the dataset…", max_entries=16)
def scan(path: str) -> ImageDataset:
    return open_dataset(path, val_fraction=VAL_FRACTION)


@st.cache_resource(show_spinner=False, max_entries=16)
def class_thumbnails(path: str) -> dict:
    return thumbnails(scan(path))


def remembered(key: str, default) -> None:
    """Streamlit forgets a widget's value when the user opens another page: keep a copy and restore it on return."""
    copy = f"kept.{key}"
    if key not in st.session_state:
        st.session_state[key] = st.session_state.get(copy, default)
    st.session_state[copy] = st.session_state[key]


def sample_ui() -> str:
    remembered(SAMPLE, "shapes" if "shapes" in SAMPLE_DATASETS else next(iter(SAMPLE_DATASETS)))
    name = st.selectbox("Sample dataset", list(SAMPLE_DATASETS), key=SAMPLE,
                        help="Small synthetic image sets that ship with the workbench: five shapes, 48 images each.")
    return str(SAMPLE_DATASETS[name])


def upload_ui() -> str | None:
    st.caption(f"Limits: up to {uploads.MAX_UPLOAD_FILES:,} files and {uploads.MAX_UPLOAD_MB} MB in total. "
               "For bigger datasets, use *Folder on this computer*.")
    left, right = st.columns(2)
    files = left.file_uploader("A folder of images (one subfolder per class)", accept_multiple_files="directory",
                               type=sorted(ext.lstrip(".") for ext in IMAGE_EXTENSIONS), key="data.upload_folder")
    zipped = right.file_uploader("…or a .zip of that folder", type=["zip"], key="data.upload_zip")
    if files:
        return saved_upload(tuple(f.file_id for f in files),
                            lambda dest: uploads.save_uploads(((f.name, f.getvalue()) for f in files), dest))
    if zipped:
        return saved_upload((zipped.file_id,), lambda dest: unpacked_zip(zipped.name, zipped.getvalue(), dest))
    return None


def unpacked_zip(name: str, data: bytes, dest: Path) -> str:
    """Save the zip and extract it once, next to itself, so every later step reads a plain folder."""
    zip_path = uploads.save_zip_upload(name, data, dest)
    folder = zip_path.with_suffix("")
    open_dataset(zip_path, extract_to=folder)
    zip_path.unlink()
    return str(folder)


def saved_upload(signature: tuple, save: Callable[[Path], str | Path]) -> str | None:
    """Save an upload once (`save(uploads folder)` -> dataset path) and return where it went; None after an error."""
    saved = st.session_state.setdefault(UPLOADED, {})
    if signature not in saved:
        try:
            with st.spinner("Saving the upload…"):
                saved[signature] = str(save(uploads.uploads_root()))
        except (uploads.UploadError, DataError) as e:
            st.error(str(e))
            return None
    return saved[signature]


def local_ui() -> str | None:
    remembered(LOCAL_PATH, "")
    path = st.text_input("Path of the dataset folder (or .zip) on the computer running the workbench", key=LOCAL_PATH,
                         placeholder="/home/me/photos/birds",
                         help="The folder must hold one subfolder per class, optionally inside train/ and val/.")
    return path.strip() or None


def source_ui() -> str | None:
    """The dataset the user picks on this run, or None if they have not picked one yet."""
    remembered(SOURCE, None)
    source = st.radio("Where do your images come from?", list(SOURCES), format_func=SOURCES.get, horizontal=True,
                      key=SOURCE)
    if source == "sample":
        return sample_ui()
    if source == "upload":
        return upload_ui()
    if source == "local":
        return local_ui()
    return None


def summary_ui(dataset: ImageDataset) -> None:
    report = dataset.report
    num_train, num_val = len(dataset.train), len(dataset.val)
    cols = st.columns(4)
    cols[0].metric("Images", f"{num_train + num_val:,}")
    cols[1].metric("Classes", len(dataset.class_names))
    cols[2].metric("For training", f"{num_train:,}")
    cols[3].metric("For validation", f"{num_val:,}", help="Held back to measure accuracy on images the model never "
                   "trained on.")
    if report.has_split:
        st.caption("The folder has its own train/ and val/ subfolders; they are used as they are.")
    else:
        st.caption(f"No train/ and val/ subfolders: {VAL_FRACTION:.0%} of each class is held back for validation "
                   "(the same images every time).")
    st.plotly_chart(class_counts_figure(report), width="stretch")


def problems_ui(dataset: ImageDataset) -> None:
    st.subheader("Health check")
    problems = dataset.report.problems()
    if not problems:
        st.success("No problems found: every file is a readable image, no duplicates, no class is too small, and "
                   "the classes are balanced.")
    for line in problems:
        st.warning(line)
    if dataset.report.skipped:
        st.markdown("**Files not used**")
        table = pd.DataFrame([{"file": s.path, "why": s.reason} for s in dataset.report.skipped])
        st.dataframe(table, hide_index=True, width="stretch")


def thumbnails_ui(dataset: ImageDataset, path: str) -> None:
    st.subheader("A few images of each class")
    many = len(dataset.class_names) > 6  # beyond that, scroll inside a box instead of making the page endless
    with st.container(height=900 if many else "content"):
        for name, images in class_thumbnails(path).items():
            counts = dataset.report.counts[name]
            st.markdown(f"**{name}** · {counts['train']} training, {counts['val']} validation images")
            st.image(images, width=96)


st.title("1 · Your images")
st.markdown("Pick the images the model will learn from. Each class (each thing to recognise) needs its own folder "
            "of images; the workbench checks every file and tells you what to fix before you train.")
picked = source_ui()
if picked:
    st.session_state[DATASET] = picked
path = st.session_state.get(DATASET)
if not path:
    st.info("Choose where your images come from to see what is in them. New here? Pick **Sample data**.")
    st.stop()
try:
    dataset = scan(path)
except DataError as e:
    st.session_state.pop(DATASET, None)  # the next pages must not go on with a dataset that cannot be read
    st.error(str(e))
    st.stop()
st.markdown(f"**Dataset in use:** `{path}`" + ("" if picked else " (chosen before: pick another above to replace it)"))
summary_ui(dataset)
problems_ui(dataset)
if st.button("Scan again", help="Read the folder again, e.g. after you fixed or added files."):
    scan.clear()
    class_thumbnails.clear()
    st.rerun()
thumbnails_ui(dataset, path)
st.page_link("pages/2_model.py", label="Next: choose a model →", icon="🧩")
