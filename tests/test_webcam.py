"""A dataset from the webcam: classes named, pictures kept and deleted, refusals that say what to do, and the saved
folder read like any dataset; then the Data page's webcam section (ui_webcam) driven through AppTest."""

from __future__ import annotations

import io

import pytest
from PIL import Image
from streamlit.testing.v1 import AppTest

from workbench.data import open_dataset
from workbench.data.uploads import UPLOADS_DIR_ENV
from workbench.data.webcam import MAX_CLASSES, MAX_SHOTS_PER_CLASS, WebcamDataset, WebcamError, check_class_name

TIMEOUT = 30


def picture(shade: int, format_name: str = "JPEG") -> bytes:
    """A small camera-like picture (not one flat colour); `shade` makes each one different."""
    image = Image.new("RGB", (64, 48), (shade, 255 - shade, 120))
    image.paste((255, 255, 255), (0, 0, 16, 16))
    out = io.BytesIO()
    image.save(out, format_name)
    return out.getvalue()


def flat_picture() -> bytes:
    """What a browser sends when Take Photo is clicked before the camera's first frame: all black."""
    out = io.BytesIO()
    Image.new("RGB", (64, 48)).save(out, "JPEG")
    return out.getvalue()


def two_classes(shots: dict[str, int]) -> WebcamDataset:
    pictures = WebcamDataset()
    for name, count in shots.items():
        pictures.add_class(name)
        for i in range(count):
            pictures.add_shot(name, picture(20 * i))
    return pictures


# -------------------------------------------------------------------------------------------------------------------
# The library


def test_saved_pictures_are_a_dataset_with_each_class_and_its_count(tmp_path):
    pictures = two_classes({"thumbs up": 5, "thumbs down": 3})
    pictures.add_shot("thumbs down", picture(200, "PNG"))
    folder = pictures.save(tmp_path / "uploads")
    assert folder.parent == tmp_path / "uploads" and folder.name.startswith("webcam-")
    assert sorted(p.name for p in (folder / "thumbs down").iterdir()) == [
        "shot-001.jpg", "shot-002.jpg", "shot-003.jpg", "shot-004.png"]
    dataset = open_dataset(folder)
    assert dataset.class_names == ["thumbs down", "thumbs up"]
    assert {name: sum(c.values()) for name, c in dataset.report.counts.items()} == {"thumbs down": 4, "thumbs up": 5}
    assert not dataset.report.skipped


def test_saving_twice_never_overwrites(tmp_path):
    pictures = two_classes({"a": 2, "b": 2})
    assert pictures.save(tmp_path) != pictures.save(tmp_path)


def test_two_pictures_per_class_give_one_to_learn_from_and_one_to_check_with(tmp_path):
    dataset = open_dataset(two_classes({"a": 2, "b": 2}).save(tmp_path))
    assert all(counts["train"] >= 1 and counts["val"] >= 1 for counts in dataset.report.counts.values())


def test_a_class_with_one_shot_is_refused_naming_it_and_nothing_is_written(tmp_path):
    pictures = two_classes({"cup": 4, "pen": 1})
    with pytest.raises(WebcamError) as refused:
        pictures.save(tmp_path / "uploads")
    assert str(refused.value) == ("Class 'pen' has only 1 shot: take at least 2 (one to learn from, one to check "
                                  "with), 10 or more to learn well.")
    assert not (tmp_path / "uploads").exists()


def test_every_problem_is_named_before_saving():
    pictures = two_classes({"cup": 0})
    assert pictures.problems() == [
        "There is 1 class: add at least 2, since the model learns to tell classes apart.",
        "Class 'cup' has no pictures yet: take at least 2 (one to learn from, one to check with), 10 or more to "
        "learn well."]
    assert "There are 0 classes" in WebcamDataset().problems()[0]


@pytest.mark.parametrize(("name", "why"), [
    ("   ", "Type a name"),
    ("a/b", "character a folder name cannot hold"),
    ("a\\b", "character a folder name cannot hold"),
    ("tab\there", "character a folder name cannot hold"),
    (".", "starts with a dot"),
    ("..", "starts with a dot"),
    (".hidden", "starts with a dot"),
    ("train", "read as a dataset split"),
    ("Val", "read as a dataset split"),
    ("test", "read as a dataset split"),
    ("__MACOSX", "skipped"),
    ("x" * 61, "61 characters long: keep it to 60"),
    ("CUP", "There is already a class 'cup'"),
])
def test_bad_class_names_are_refused_saying_why(name, why):
    pictures = two_classes({"cup": 0})
    with pytest.raises(WebcamError, match=why):
        pictures.add_class(name)
    assert pictures.class_names == ["cup"]


def test_a_class_name_is_trimmed_and_may_hold_spaces_and_accents():
    pictures = WebcamDataset()
    assert pictures.add_class("  thumbs up ") == "thumbs up"
    assert pictures.add_class("café") == "café"
    # the same name with a decomposed accent (as macOS may type it) is the same folder
    with pytest.raises(WebcamError, match="already a class"):
        check_class_name("cafe\u0301", pictures.class_names)


@pytest.mark.parametrize(("data", "why"), [
    (b"not a picture at all", "could not be read as an image"),
    (b"", "could not be read as an image"),
    (picture(10)[:200], "could not be read as an image"),  # a truncated JPEG
    (picture(10, "GIF"), "only JPEG and PNG"),
    (flat_picture(), "all one colour"),
])
def test_what_is_not_a_camera_picture_is_refused(data, why):
    pictures = two_classes({"cup": 1})
    with pytest.raises(WebcamError, match=why):
        pictures.add_shot("cup", data)
    assert pictures.count("cup") == 1


def test_deleting_a_shot_removes_that_one_and_keeps_the_order(tmp_path):
    pictures = two_classes({"cup": 3, "pen": 2})
    first, second, third = pictures.shots("cup")
    revision = pictures.revision
    pictures.delete_shot("cup", 1)
    assert pictures.shots("cup") == [first, third] and pictures.count("cup") == 2
    assert pictures.revision > revision  # a folder saved before no longer holds these pictures
    folder = pictures.save(tmp_path)
    assert (folder / "cup" / "shot-002.jpg").read_bytes() == third
    with pytest.raises(WebcamError, match="no picture number 3"):
        pictures.delete_shot("cup", 2)


def test_removing_a_class_forgets_its_pictures():
    pictures = two_classes({"cup": 2, "pen": 2})
    pictures.remove_class("cup")
    assert pictures.class_names == ["pen"]
    pictures.add_class("Cup")  # the name is free again


def test_the_number_of_classes_and_of_pictures_is_bounded():
    pictures = WebcamDataset()
    for i in range(MAX_CLASSES):
        pictures.add_class(f"class {i}")
    with pytest.raises(WebcamError, match=f"already {MAX_CLASSES} classes"):
        pictures.add_class("one more")
    shot = picture(0)
    for _ in range(MAX_SHOTS_PER_CLASS):
        pictures.add_shot("class 0", shot)
    with pytest.raises(WebcamError, match=f"already has {MAX_SHOTS_PER_CLASS} pictures"):
        pictures.add_shot("class 0", shot)


# -------------------------------------------------------------------------------------------------------------------
# The page section (ui_webcam), in a script of its own: the Data page calls webcam_ui() for its "Webcam" source


def webcam_section():
    import streamlit as st

    from ui_webcam import webcam_ui

    st.session_state["returned"] = webcam_ui()


def section(**state) -> AppTest:
    at = AppTest.from_function(webcam_section, default_timeout=TIMEOUT)
    for name, value in state.items():
        at.session_state[name] = value
    return at.run()


def add_class(at: AppTest, name: str) -> AppTest:
    at.text_input(key="data.webcam.new_class").input(name)
    return at.button(key="data.webcam.add").click().run()


def button(at: AppTest, label: str):
    return next(b for b in at.button if b.label == label)


@pytest.fixture
def uploads_dir(tmp_path, monkeypatch):
    monkeypatch.setenv(UPLOADS_DIR_ENV, str(tmp_path / "uploads"))
    return tmp_path / "uploads"


def test_the_section_starts_by_asking_for_a_class():
    at = section()
    assert not at.exception
    assert "No classes yet" in at.info[0].value
    assert at.session_state["returned"] is None


def test_adding_classes_selects_the_newest_and_refuses_a_bad_name():
    at = add_class(section(), "thumbs up")
    at = add_class(at, "thumbs down")
    assert not at.exception
    assert at.session_state["data.webcam.pictures"].class_names == ["thumbs up", "thumbs down"]
    assert at.session_state["data.webcam.class"] == "thumbs down"  # the camera adds to the class just named
    assert any("Take a picture of thumbs down" in str(e.proto) for e in at.get("camera_input"))
    at = add_class(at, "Thumbs Up")
    assert "There is already a class 'thumbs up'" in at.error[0].value
    at = add_class(at, "test")
    assert "read as a dataset split" in at.error[0].value


def test_thumbnails_have_delete_buttons_and_too_few_pictures_are_refused_by_name(uploads_dir):
    at = section(**{"data.webcam.pictures": two_classes({"cup": 3, "pen": 1})})
    at.segmented_control(key="data.webcam.class").set_value("cup").run()
    assert len(at.get("image")) == 3 and sum(b.label == "Delete" for b in at.button) == 3
    button(at, "Delete").click().run()
    assert at.session_state["data.webcam.pictures"].count("cup") == 2
    assert len(at.get("image")) == 2
    button(at, "Use these pictures").click().run()
    assert not at.exception
    assert "Class 'pen' has only 1 shot: take at least 2" in at.error[0].value
    assert at.session_state["returned"] is None and not uploads_dir.exists()


def test_using_the_pictures_saves_them_once_and_a_change_asks_again(uploads_dir):
    at = section(**{"data.webcam.pictures": two_classes({"cup": 3, "pen": 2})})
    button(at, "Use these pictures").click().run()
    assert not at.exception
    path = at.session_state["returned"]
    assert path and open_dataset(path).class_names == ["cup", "pen"]
    at.run()  # any rerun (another widget, a page switch) keeps the same folder, saved once
    button(at, "Use these pictures").click().run()
    assert at.session_state["returned"] == path and len(list(uploads_dir.iterdir())) == 1
    button(at, "Delete").click().run()  # pen's first picture: the saved folder no longer holds these pictures
    assert at.session_state["returned"] is None
    assert "The pictures changed" in at.caption[-1].value


def camera_twice(data: bytes):
    """The Data page's webcam section after its camera's callback ran twice for the same picture (as it may, on
    reruns)."""
    import streamlit as st

    from ui_webcam import keep_picture, pictures, webcam_ui

    class Taken:  # what st.camera_input holds after a picture: an UploadedFile with a file id
        file_id = "picture-1"

        def getvalue(self) -> bytes:
            return data

    if "cup" not in pictures().class_names:
        pictures().add_class("cup")
    st.session_state["camera"] = Taken()
    keep_picture("camera", "cup")
    keep_picture("camera", "cup")
    webcam_ui()


def test_a_camera_picture_is_kept_once_however_often_the_page_reruns():
    at = AppTest.from_function(camera_twice, args=(picture(0),), default_timeout=TIMEOUT).run()
    at.run()
    assert not at.exception and not at.warning
    assert at.session_state["data.webcam.pictures"].count("cup") == 1
    assert len(at.get("image")) == 1


def test_a_black_picture_from_a_camera_not_ready_is_refused_saying_so():
    at = AppTest.from_function(camera_twice, args=(flat_picture(),), default_timeout=TIMEOUT).run()
    assert not at.exception
    assert at.session_state["data.webcam.pictures"].count("cup") == 0
    assert "all one colour" in at.warning[0].value
    assert at.session_state["data.webcam.round"] == 1  # a fresh camera, live for the next try
