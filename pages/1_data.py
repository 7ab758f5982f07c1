"""Page 1 · Data: choose the images (sample, upload or a folder here) and see what the health check found."""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from pathlib import Path

import pandas as pd
import streamlit as st

from ui_common import DATA_CHOICES, DATASET, SAMPLE_DATASETS, check_upload_room, serving, uploads_dir
from ui_webcam import webcam_ui
from workbench.analysis.model_views import class_counts_figure, thumbnails
from workbench.core.classroom import AccessError, inside_roots
from workbench.data import (
    IMAGE_EXTENSIONS,
    NO_FOLDER,
    DataError,
    DataSpec,
    ImageDataset,
    LayoutChoice,
    layout_options,
    unpack_zip,
    uploads,
)
from workbench.engine.config import RunConfig

SOURCES = {"sample": "Sample data", "upload": "Upload a folder or zip", "local": "Folder on this computer",
           "webcam": "Webcam"}
SOURCE = "data.source"  # widget keys of this page
SAMPLE = "data.sample"
LOCAL_PATH = "data.local_path"
UPLOADED = "data.uploaded"  # {upload signature: saved folder}, so a rerun never saves the same upload twice
TEST_PERCENT = "data.test_percent"
LAYOUT_KEYS = {name: f"data.{name}" for name in LayoutChoice.__dataclass_fields__}
LAYOUT_FOR = "data.layout_for"  # the dataset the layout choices were made for
RECOGNISED = ""  # a layout choice left to the workbench
MAX_SCANS_KEPT = 16
# The split a run makes by default, so the counts shown here are the ones training will use.
VAL_FRACTION = next(f.default for f in dataclasses.fields(RunConfig) if f.name == "val_fraction")


@st.cache_resource
def scanned() -> dict[DataSpec, ImageDataset]:
    """Datasets already read, shared by every session (not `st.cache_resource` on the scan itself: its progress bar
    lives outside it, which Streamlit cannot replay)."""
    return {}


def scan(spec: DataSpec, progress: Callable[[int, int], None] | None = None) -> ImageDataset:
    cache = scanned()
    if spec not in cache:
        dataset = spec.open(progress=progress)
        while len(cache) >= MAX_SCANS_KEPT:
            cache.pop(next(iter(cache)), None)  # the oldest first
        cache[spec] = dataset
    return cache[spec]


def scan_with_progress(spec: DataSpec) -> ImageDataset:
    """`scan`, with a progress bar while a folder not read before is checked file by file."""
    bar = st.empty()

    def progress(done: int, total: int) -> None:
        if done == total or done % max(1, total // 100) == 0:
            bar.progress(done / total, text=f"Checking every image once: {done:,} of {total:,}")

    try:
        return scan(spec, progress)
    finally:
        bar.empty()


@st.cache_resource(show_spinner=False, max_entries=16)
def class_thumbnails(spec: DataSpec) -> dict:
    return thumbnails(scan(spec))


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
        return saved_upload(tuple(f.file_id for f in files), sum(f.size for f in files),
                            lambda dest: uploads.save_uploads(((f.name, f.getvalue()) for f in files), dest))
    if zipped:
        return saved_upload((zipped.file_id,), zipped.size,
                            lambda dest: unpacked_zip(zipped.name, zipped.getvalue(), dest))
    return None


def unpacked_zip(name: str, data: bytes, dest: Path) -> str:
    """Save the zip and extract it once, next to itself, so every later step reads a plain folder (and its layout
    can be chosen)."""
    zip_path = uploads.save_zip_upload(name, data, dest)
    folder = unpack_zip(zip_path, zip_path.with_suffix(""))
    zip_path.unlink()
    return str(folder)


def saved_upload(signature: tuple, size: int, save: Callable[[Path], str | Path]) -> str | None:
    """Save an upload of `size` bytes once (`save(uploads folder)` -> dataset path) and return where it went; None
    after an error (a classroom limit reached, a refused file)."""
    saved = st.session_state.setdefault(UPLOADED, {})
    if signature not in saved:
        try:
            check_upload_room(size)
            with st.spinner("Saving the upload…"):
                saved[signature] = str(save(uploads_dir()))
        except (uploads.UploadError, DataError, AccessError) as e:
            st.error(str(e))
            return None
    return saved[signature]


def local_ui() -> str | None:
    remembered(LOCAL_PATH, "")
    path = st.text_input("Path of the dataset folder (or .zip) on the computer running the workbench", key=LOCAL_PATH,
                         placeholder="/home/me/photos/birds",
                         help="The folder must hold one subfolder per class, optionally inside train/ and val/.")
    path = path.strip()
    if path and serving().classroom:
        try:  # a classroom server reads only the folders the teacher opened
            inside_roots(path, serving().data_roots)
        except AccessError as e:
            st.error(str(e))
            return None
    if path.lower().endswith(".zip") and Path(path).expanduser().is_file():
        # Unpacked once, like an uploaded zip, so its layout can be chosen below.
        return saved_upload(("local zip", path, Path(path).expanduser().stat().st_mtime_ns),
                            Path(path).expanduser().stat().st_size,
                            lambda dest: uploads.unpack_zip_copy(Path(path).expanduser(), dest))
    return path or None


def source_ui() -> str | None:
    """The dataset the user picks on this run, or None if they have not picked one yet."""
    remembered(SOURCE, None)
    source = st.radio("Where do your images come from?", list(SOURCES), format_func=SOURCES.get, horizontal=True,
                      key=SOURCE)
    if source == "sample":
        return sample_ui()
    if source == "upload":
        if serving().classroom:
            my_uploads_ui()
        return upload_ui()
    if source == "local":
        return local_ui()
    if source == "webcam":
        return webcam_ui()
    return None


def my_uploads_ui() -> None:
    """A classroom student's uploads, each with Delete (uploads count against their limits)."""
    folder = uploads_dir()
    kept = sorted(p for p in folder.iterdir() if p.is_dir()) if folder.is_dir() else []
    with st.expander(f"Your uploads ({len(kept)} of {serving().limits.uploads} kept)"):
        if not kept:
            st.caption("None yet.")
        for upload in kept:
            left, right = st.columns([4, 1])
            left.markdown(f"`{upload.name}`")
            if right.button("Delete", key=f"data.delete_upload.{upload.name}"):
                uploads.delete_upload(upload, folder)
                st.rerun()


def layout_ui(path: str) -> DataSpec:
    """What the user says about the layout (test share, which folder validates or tests, which label file and
    columns): drawn even when the data cannot be read yet, since a choice here may be the fix."""
    folder = Path(path).expanduser()
    if st.session_state.get(LAYOUT_FOR) != path:  # choices made for another dataset do not carry over
        for key in (TEST_PERCENT, *LAYOUT_KEYS.values()):
            st.session_state.pop(key, None)
            st.session_state.pop(f"kept.{key}", None)
        st.session_state[LAYOUT_FOR] = path
    remembered(TEST_PERCENT, 0)
    for key in LAYOUT_KEYS.values():
        remembered(key, RECOGNISED)
    with st.expander("How the images are split and labelled", expanded=bool(chosen_layout())):
        st.slider("Hold out for the final test", 0, 40, step=5, format="%d%%", key=TEST_PERCENT,
                  help="A share of each class kept aside and used only once, after training, to measure the final "
                       "model on images nothing was chosen with. Used only when the data has no test/ folder.")
        if folder.is_dir():
            folder_choices_ui(folder)
    choice = LayoutChoice(**chosen_layout())
    spec = DataSpec(path, VAL_FRACTION, 0, st.session_state[TEST_PERCENT] / 100, choice)
    st.session_state[DATA_CHOICES] = {"test_fraction": spec.test_fraction, **chosen_layout()}
    return spec


def chosen_layout() -> dict:
    return {name: st.session_state[key] for name, key in LAYOUT_KEYS.items() if st.session_state.get(key)}


def folder_choices_ui(folder: Path) -> None:
    options = layout_options(folder, st.session_state.get(LAYOUT_KEYS["label_file"], ""))
    if options.folders:
        left, right = st.columns(2)
        for column, name, what in ((left, "val_folder", "Validation folder"), (right, "test_folder", "Test folder")):
            choice_ui(column, what, name, options.folders,
                      "Which top-level folder holds these images. 'As recognised' reads folders named val/, valid/, "
                      "validation/ and test/ as what they are named.")
    if options.label_files:
        choice_ui(st, "Label file", "label_file", options.label_files,
                  "A CSV/TSV file with one row per image: its file name and its label.", none=False)
        for name, what in (("file_column", "File-name column"), ("label_column", "Label column")):
            choice_ui(st, what, name, options.columns, "The label file's column that holds this.", none=False)
        choice_ui(st, "Split column (train/val/test)", "split_column", options.columns,
                  "A column saying which images are for training, validation or the final test ('none': the "
                  "workbench splits them).")


def choice_ui(where, label: str, name: str, offered: list[str], help: str, none: bool = True) -> None:
    """A layout choice among `offered`, plus 'as recognised' (and 'none'); a choice no longer offered (another label
    file was picked) falls back to 'as recognised'."""
    key = LAYOUT_KEYS[name]
    options = [RECOGNISED, *offered, *([NO_FOLDER] if none else [])]
    if st.session_state.get(key) not in options:
        st.session_state[key] = RECOGNISED
    where.selectbox(label, options, key=key, help=help,
                    format_func=lambda value: {RECOGNISED: "as recognised", NO_FOLDER: "none"}.get(value, value))


def summary_ui(dataset: ImageDataset) -> None:
    report = dataset.report
    num_train, num_val, num_test = len(dataset.train), len(dataset.val), len(dataset.test)
    st.info(f"**Recognised:** {report.layout}.", icon="🗂️")
    cols = st.columns(5)
    cols[0].metric("Images", f"{num_train + num_val + num_test:,}")
    cols[1].metric("Classes", len(dataset.class_names))
    cols[2].metric("For training", f"{num_train:,}")
    cols[3].metric("For validation", f"{num_val:,}", help="Held back to measure accuracy after every epoch, and to "
                   "choose the best epoch: images the model never trained on.")
    cols[4].metric("Held-out test", f"{num_test:,}", help="Used once, after training, to measure the final model on "
                   "images that nothing (not even the choice of the best epoch) was based on.")
    if not num_test:
        st.caption("No held-out test set: add a test/ folder, or hold out a share for the final test above.")
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


def thumbnails_ui(dataset: ImageDataset, spec: DataSpec) -> None:
    st.subheader("A few images of each class")
    many = len(dataset.class_names) > 6  # beyond that, scroll inside a box instead of making the page endless
    with st.container(height=900 if many else "content"):
        for name, images in class_thumbnails(spec).items():
            counts = dataset.report.counts[name]
            test = f", {counts['test']} test" if counts.get("test") else ""
            st.markdown(f"**{name}** · {counts['train']} training, {counts['val']} validation{test} images")
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
spec = layout_ui(path)
try:
    dataset = scan_with_progress(spec)
except DataError as e:
    st.error(str(e))
    if not chosen_layout():
        st.session_state.pop(DATASET, None)  # the next pages must not go on with a dataset that cannot be read
    st.stop()
st.markdown(f"**Dataset in use:** `{path}`" + ("" if picked else " (chosen before: pick another above to replace it)"))
summary_ui(dataset)
problems_ui(dataset)
if st.button("Scan again", help="Read the folder again, e.g. after you fixed or added files."):
    scanned().clear()
    class_thumbnails.clear()
    st.rerun()
thumbnails_ui(dataset, spec)
st.page_link("pages/2_model.py", label="Next: choose a model →", icon="🧩")
