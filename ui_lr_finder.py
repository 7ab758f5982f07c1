"""The Model page's learning-rate finder: a button that sweeps the learning rate on the user's images with the
choices made above it, the curve it draws, and a button that puts the suggested rate into the learning-rate widget.

The sweep is `workbench.engine.find_lr`; which choices it depends on and the sentences about it come from
`workbench.analysis.choices` and `workbench.analysis.model_views`.
"""

from __future__ import annotations

import streamlit as st

from ui_common import choice_key
from workbench import engine
from workbench.analysis import choices
from workbench.analysis import model_views as views
from workbench.engine.config import RunConfig

FINDER_STEPS = 30  # enough for a readable curve, short enough to wait for on a CPU
LR_FINDER = "model.lr_finder"  # session key, the last search: {"choices": finder_key, "lrs", "losses", "suggestion"}


def run_lr_finder(config: RunConfig) -> dict | None:
    """Run the finder with a progress bar; the result as plain values (kept in session_state), None if it failed."""
    bar = st.progress(0.0, text="Reading the images and building the model…")
    try:
        with st.spinner("Searching: on a CPU this can take a few minutes…"):
            result = engine.find_lr(config, steps=FINDER_STEPS, on_step=lambda done, total: bar.progress(
                done / total, text=f"Step {done} of {total}"))
    except Exception as error:  # noqa: BLE001 - whatever went wrong, say it on the page and keep the page usable
        st.error(choices.finder_failure(error))
        return None
    finally:
        bar.empty()
    st.session_state[LR_FINDER] = {"choices": choices.finder_key(config), **result.to_dict()}
    return st.session_state[LR_FINDER]


def lr_finder_ui(config: RunConfig) -> None:
    """The finder's section for the checked `config`: its button, the last search while it still holds for these
    choices, and the suggestion with a button that uses it."""
    st.subheader("Find a learning rate")
    st.caption(f"The LR finder (fastai's lr_find) trains {FINDER_STEPS} steps on your images with the choices "
               "above, the learning rate growing from 1e-6 to 1, and records the loss. It takes from seconds to a "
               "few minutes; nothing is saved.")
    if not config.data:
        st.info("No dataset chosen yet: the finder needs your images. Choose them on page 1.")
        return
    found = run_lr_finder(config) if st.button("Find a learning rate", icon="🔎") else st.session_state.get(LR_FINDER)
    if found is None:
        return
    if found["choices"] != choices.finder_key(config):
        st.caption("The last search was made with other choices: search again for these.")
        return
    suggestion = views.round_lr(found["suggestion"])
    figure = views.lr_finder_figure(found["lrs"], found["losses"], found["suggestion"], config.lr)
    st.plotly_chart(figure, width="stretch")
    left, right = st.columns([1, 3], vertical_alignment="center")
    # a callback: it runs before the next rerun, so the LR widget is created with the suggestion
    left.button("Use this learning rate", on_click=st.session_state.update, args=({choice_key("lr"): suggestion},),
                disabled=config.lr == suggestion, type="primary")
    right.markdown(views.suggestion_note(suggestion, config.lr))
