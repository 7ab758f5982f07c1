"""The Lessons pages: one screen per lesson of `workbench.lessons`, drawn by `lesson_page(lesson_id)`.

A lesson screen asks its question, records this browser's prediction (a random token kept in the URL and the session,
so a refresh keeps it), queues the lesson's runs with one button, and shows the charts and the explanation as the runs
report, polling while they are live. Once the results are in, the class's predictions are revealed beside the
answer. The teacher's box says how long the lesson takes here and offers the handout. Every check (lesson id, token,
choice, who may see which runs) is the library's.
"""

from __future__ import annotations

import functools
import secrets
from pathlib import Path

import streamlit as st

from ui_common import DATASET, get_registry, person
from workbench.core.classroom import AccessError
from workbench.lessons import (
    LESSONS,
    Chart,
    LessonBook,
    LessonError,
    Results,
    check_token,
    estimate_seconds,
    get_lesson,
    make_handout,
)
from workbench.lessons.base import SAMPLE, duration
from workbench.lessons.handout import numbers_table

TOKEN_PARAM = "voter"  # the URL's query parameter holding this browser's prediction token
TOKEN_KEY = "lessons.token"  # the same token in session_state (a page switch drops query parameters)
REFRESH_SECONDS = 2.0
ESTIMATES = "lessons.estimates"  # session_state: (lesson id, data) -> estimated seconds
PAGE_FILES = {"compare": "pages/4_compare.py", "model": "pages/2_model.py", "train": "pages/3_train.py",
              "insight": "pages/6_insight.py", "compress": "pages/7_compress.py", "few-shot": "pages/8_few_shot.py"}
"""A lesson's `deeper` page (its URL path) -> the page file st.page_link opens."""


@st.cache_resource
def lesson_book() -> LessonBook:
    """The lessons of this server's run registry (their records live on disk; this holds no state of its own)."""
    return LessonBook(get_registry())


def lesson_pages() -> list[st.Page]:
    """One navigation entry per lesson, in order."""
    return [st.Page(functools.partial(lesson_page, lesson.id), title=f"L{lesson.number} · {lesson.title}",
                    icon="🎓", url_path=f"lesson-{lesson.id}") for lesson in LESSONS.values()]


def browser_token() -> str:
    """This browser's prediction token: from the URL or the session when it is a valid one, else a new one."""
    for candidate in (st.query_params.get(TOKEN_PARAM), st.session_state.get(TOKEN_KEY)):
        try:
            token = check_token(candidate)
            break
        except LessonError:
            continue
    else:
        token = secrets.token_hex(16)
    st.session_state[TOKEN_KEY] = token
    st.query_params[TOKEN_PARAM] = token
    return token


# -------------------------------------------------------------------------------------------------------------------
# The parts of a lesson screen


def prediction_ui(lesson_id: str, results: Results, token: str) -> None:
    """Before the results: this browser's prediction. After: the answer beside the class's tally."""
    book, lesson = lesson_book(), get_lesson(lesson_id)
    mine = book.prediction(lesson_id, token)
    tally = book.tally(lesson_id)
    answer = lesson.winner(results)
    st.subheader("Your prediction")
    if answer is not None:
        verdict = ("you were right" if mine == answer else f"you predicted: {lesson.choices[mine]}" if mine
                   else "you made no prediction")
        st.success(f"**The runs say: {lesson.choices[answer]}** ({verdict}).")
        st.markdown("**What the class predicted:**")
        st.dataframe({"prediction": list(lesson.choices.values()), "votes": list(tally.values())},
                     hide_index=True, key=f"{lesson_id}.tally")
        return
    choices = list(lesson.choices)
    if results.attempt is not None and not results.complete:
        votes = sum(tally.values())
        st.caption((f"You predicted: **{lesson.choices[mine]}**. " if mine else "") + f"Predictions are closed while "
                   f"the experiment runs ({votes} recorded); the class's choices are shown once the results are in.")
        return
    with st.form(f"{lesson_id}.predict"):
        choice = st.radio("Which will win?", choices, format_func=lesson.choices.get,
                          index=choices.index(mine) if mine else None, key=f"{lesson_id}.choice")
        if st.form_submit_button("Record my prediction"):
            if choice is None:
                st.warning("Pick one of the answers first.")
            else:
                try:
                    book.predict(lesson_id, token, choice, person())
                    mine = choice
                    tally = book.tally(lesson_id)
                except LessonError as error:
                    st.error(str(error))
    votes = sum(tally.values())
    recorded = f"You predicted: **{lesson.choices[mine]}**. " if mine else ""
    st.caption(f"{recorded}{votes} prediction{'s' if votes != 1 else ''} recorded so far; the class's choices are "
               "shown once the results are in.")


def data_ui(lesson_id: str) -> str:
    """The sample data, unless the teacher picks the images chosen on the Data page (for lessons that can use them)."""
    lesson = get_lesson(lesson_id)
    chosen = st.session_state.get(DATASET)
    if not lesson.own_data or not chosen:
        return str(SAMPLE)
    options = {str(SAMPLE): "the sample shapes", chosen: f"the images chosen on the Data page ({Path(chosen).name})"}
    return st.radio("Images", list(options), format_func=options.get, key=f"{lesson_id}.data", horizontal=True)


def start_ui(lesson_id: str, results: Results) -> None:
    lesson = get_lesson(lesson_id)
    st.caption(f"**What runs:** {lesson.what_runs}")
    why_not = lesson.unavailable()
    if why_not:
        st.warning(why_not)
        return
    data = data_ui(lesson_id)
    going = results.attempt is not None and not results.complete
    label = "Run the experiment again" if results.complete else "Run the experiment"
    if st.button(label, type="primary", disabled=going, key=f"{lesson_id}.start",
                 help="Queues the lesson's runs; they train one after another while the charts fill in."):
        try:
            lesson_book().start(lesson_id, data, person())
        except (LessonError, AccessError, ValueError) as error:
            st.error(f"The lesson could not start: {error}")
            return
        st.rerun()


def draw_figures(lesson_id: str, results: Results) -> None:
    for number, figure in enumerate(get_lesson(lesson_id).figures(results)):
        if isinstance(figure, Chart):
            st.plotly_chart(figure.figure, key=f"{lesson_id}.figure.{number}")
        else:
            st.markdown(f"**{figure.title}**")
            for column, (path, caption) in zip(st.columns(len(figure.images)), figure.images, strict=True):
                if path.is_file():
                    column.image(str(path), caption=caption)
        caption = figure.caption if isinstance(figure, Chart) else figure.caption
        if caption:
            st.caption(caption)


def live_panel(lesson_id: str) -> None:
    """The explanation and the charts as the runs report; the whole page redraws once everything is in."""
    results = lesson_book().advance(lesson_id, person())
    if results.attempt is None:
        st.info("Make your prediction, then press **Run the experiment**: the charts and the explanation appear "
                "here as the runs report.")
        return
    if results.complete and st.session_state.pop(f"{lesson_id}.waiting", False):
        st.rerun()  # the reveal and the handout are drawn outside this fragment
    if not results.complete:
        st.session_state[f"{lesson_id}.waiting"] = True
    st.subheader("What happened" if results.complete else "What is happening")
    for line in get_lesson(lesson_id).explain(results):
        st.markdown(line)
    if results.measured.get("error"):
        st.warning(f"The lesson's last step failed: {results.measured['error']}")
    draw_figures(lesson_id, results)
    with st.expander("The runs, as recorded"):
        st.dataframe(numbers_table(get_lesson(lesson_id), results), hide_index=True, key=f"{lesson_id}.runs")


def teacher_ui(lesson_id: str, results: Results, token: str) -> None:
    lesson, book = get_lesson(lesson_id), lesson_book()
    with st.expander("For the teacher: time, discussion, handout", expanded=results.complete):
        timing_ui(lesson_id)
        st.markdown("**To discuss**")
        st.markdown("\n".join(f"{i}. {prompt}" for i, prompt in enumerate(lesson.prompts, start=1)))
        handout = make_handout(lesson, results, book.tally(lesson_id),
                               st.session_state.get(ESTIMATES, {}).get(lesson_id))
        left, right = st.columns(2)
        left.download_button("Handout (Markdown)", handout.markdown(), file_name=f"lesson-{lesson_id}.md",
                             mime="text/markdown", key=f"{lesson_id}.handout_md")
        right.download_button("Handout (printable page)", handout.html(), file_name=f"lesson-{lesson_id}.html",
                              mime="text/html", key=f"{lesson_id}.handout_html")
        if person().is_teacher and st.button("Clear the class's predictions", key=f"{lesson_id}.clear",
                                             help="For a new round with another class."):
            book.clear_predictions(lesson_id, person())
            st.rerun()


def timing_ui(lesson_id: str) -> None:
    """The times this lesson really took here, else an estimate from this machine's measured speed."""
    taken = lesson_book().durations(lesson_id)
    if taken:
        st.markdown(f"**Time on this machine:** {duration(taken[-1])} the last time"
                    + (f" ({len(taken)} runs of the lesson, {duration(min(taken))} to {duration(max(taken))})."
                       if len(taken) > 1 else "."))
        return
    estimates = st.session_state.setdefault(ESTIMATES, {})
    if lesson_id in estimates:
        st.markdown(f"**Estimated time on this machine:** {duration(estimates[lesson_id])} for the first runs, "
                    "from the speed measured here (the measured time replaces it once the lesson has run).")
    elif st.button("Estimate the time on this machine", key=f"{lesson_id}.estimate",
                   help="Times a few training steps of the lesson's network here (a few seconds)."):
        with st.spinner("Timing a few training steps…"):
            estimates[lesson_id] = estimate_seconds(get_lesson(lesson_id), str(SAMPLE))
        st.rerun()


# -------------------------------------------------------------------------------------------------------------------


def lesson_page(lesson_id: str) -> None:
    """The screen of one lesson (a page of the app's "Lessons" section)."""
    lesson = get_lesson(lesson_id)
    st.title(f"L{lesson.number} · {lesson.title}")
    st.markdown(f"**The question.** {lesson.question}")
    path, what = lesson.deeper
    st.page_link(PAGE_FILES[path], label=f"For a deeper look: {what}", icon="🔎")
    token = browser_token()
    results = lesson_book().results(lesson_id, person())
    prediction_ui(lesson_id, results, token)
    start_ui(lesson_id, results)
    live = results.attempt is not None and not results.complete
    st.fragment(live_panel, run_every=REFRESH_SECONDS if live else None)(lesson_id)
    teacher_ui(lesson_id, results, token)
