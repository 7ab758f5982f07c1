"""The Data page's webcam source: name a few classes, take pictures of each with the browser's camera, delete the bad
ones, and use them as a dataset (saved under the uploads folder, then read and checked like any other folder).

The pictures live in a `workbench.data.webcam.WebcamDataset` kept in session_state, one per browser session; this
module only draws it and passes the user's clicks to it.
"""

from __future__ import annotations

import streamlit as st

from ui_common import uploads_dir
from workbench.data.webcam import (
    GOOD_SHOTS_PER_CLASS,
    MAX_CLASS_NAME_LENGTH,
    MIN_SHOTS_PER_CLASS,
    WebcamDataset,
    WebcamError,
)

PICTURES = "data.webcam.pictures"  # session keys: the session's WebcamDataset
SELECTED = "data.webcam.class"  # the class the camera adds to
NEW_CLASS = "data.webcam.new_class"
TAKEN = "data.webcam.taken"  # file ids of camera pictures already kept: a rerun never keeps one twice
CAMERA_ROUND = "data.webcam.round"  # grows after each picture kept: a new camera key brings the camera back live
REFUSED = "data.webcam.refused"  # why the last picture was not kept, shown once
SAVED = "data.webcam.saved"  # {"revision": the pictures' revision when saved, "path": the folder}
CAMERA_WIDTH = 480
THUMBNAIL_PX = 96
THUMBNAILS_PER_ROW = 8


def pictures() -> WebcamDataset:
    """This session's pictures (an empty set the first time)."""
    return st.session_state.setdefault(PICTURES, WebcamDataset())


def keep_picture(camera_key: str, class_name: str) -> None:
    """The camera's callback: keep its new picture once (or say why not), then give the next rerun a fresh camera,
    live for the next picture."""
    picture = st.session_state.get(camera_key)
    taken = st.session_state.setdefault(TAKEN, set())
    if picture is None or picture.file_id in taken:  # "Clear photo", or a picture already kept
        return
    taken.add(picture.file_id)
    try:
        pictures().add_shot(class_name, picture.getvalue())
    except WebcamError as e:
        st.session_state[REFUSED] = str(e)
    st.session_state[CAMERA_ROUND] = st.session_state.get(CAMERA_ROUND, 0) + 1


def add_class_ui(shots: WebcamDataset) -> None:
    """A name field and its button; a new class becomes the one the camera adds to."""
    with st.form("data.webcam.add_form", clear_on_submit=True, border=False):
        left, right = st.columns([3, 1], vertical_alignment="bottom")
        name = left.text_input("Name a class (one thing the model should recognise)", key=NEW_CLASS,
                               max_chars=MAX_CLASS_NAME_LENGTH, placeholder="e.g. thumbs up")
        added = right.form_submit_button("Add class", icon=":material/add:", key="data.webcam.add")
    if added:
        try:
            st.session_state[SELECTED] = shots.add_class(name)
        except WebcamError as e:
            st.error(str(e))


def camera_ui(shots: WebcamDataset, class_name: str) -> None:
    key = f"data.webcam.camera.{class_name}.{st.session_state.get(CAMERA_ROUND, 0)}"
    st.camera_input(f"Take a picture of {class_name}", key=key, on_change=keep_picture, args=(key, class_name),
                    width=CAMERA_WIDTH)
    refused = st.session_state.pop(REFUSED, None)
    if refused:
        st.warning(refused)


def thumbnails_ui(shots: WebcamDataset, class_name: str) -> None:
    """The class's pictures, small, each with a button that deletes it."""
    images = shots.shots(class_name)
    st.markdown(f"**{class_name}** · {len(images)} picture{'' if len(images) == 1 else 's'}")
    for start in range(0, len(images), THUMBNAILS_PER_ROW):
        for offset, column in enumerate(st.columns(THUMBNAILS_PER_ROW)):
            index = start + offset
            if index < len(images):
                column.image(images[index], width=THUMBNAIL_PX)
                column.button("Delete", key=f"data.webcam.delete.{class_name}.{index}", icon=":material/delete:",
                              on_click=shots.delete_shot, args=(class_name, index),
                              help=f"Delete picture {index + 1} of {class_name}")
    with st.popover(f"Remove the class {class_name}", icon=":material/close:"):
        st.button(f"Remove {class_name} and its {len(images)} picture{'' if len(images) == 1 else 's'}",
                  key="data.webcam.remove", on_click=shots.remove_class, args=(class_name,))


def use_ui(shots: WebcamDataset) -> str | None:
    """The button that saves the pictures as a dataset; the saved folder while it still holds these pictures."""
    saved = st.session_state.get(SAVED)
    if saved and saved["revision"] != shots.revision:
        st.session_state.pop(SAVED)
        st.caption("The pictures changed since they were last used: click *Use these pictures* to use them as they "
                   "are now.")
        saved = None
    if st.button("Use these pictures", type="primary", icon=":material/check:", key="data.webcam.use") and not saved:
        try:
            with st.spinner("Saving the pictures…"):
                folder = shots.save(uploads_dir())
        except WebcamError as e:
            st.error(str(e))
            return None
        except OSError as e:
            st.error(f"The pictures could not be saved under '{uploads_dir()}': {e}. Check that the folder can be "
                     "written to and the disk has free space, then click again.")
            return None
        saved = st.session_state[SAVED] = {"revision": shots.revision, "path": str(folder)}
    return saved["path"] if saved else None


def webcam_ui() -> str | None:
    """The webcam source: the saved dataset folder once the user has clicked *Use these pictures* (and nothing
    changed since), else None."""
    shots = pictures()
    st.caption(f"Name a class, then take pictures of it with your camera; then the next class. Take at least "
               f"{MIN_SHOTS_PER_CLASS} pictures of each class, {GOOD_SHOTS_PER_CLASS} or more to learn well, and vary "
               "the angle, distance and background so the model learns the thing, not the scene. Your browser asks "
               "once for the camera; the pictures are saved only in the workbench's uploads folder.")
    add_class_ui(shots)
    names = shots.class_names
    if not names:
        st.info("No classes yet: name the first thing the model should recognise, e.g. *thumbs up*, then a second, "
                "e.g. *thumbs down*.")
        return None
    if st.session_state.get(SELECTED) not in names:  # nothing chosen yet, or that class was removed
        st.session_state[SELECTED] = names[-1]
    chosen = st.segmented_control("Class to take pictures of", names, key=SELECTED, required=True,
                                  format_func=lambda name: f"{name} · {shots.count(name)}")
    camera_ui(shots, chosen)
    thumbnails_ui(shots, chosen)
    return use_ui(shots)
