"""What the Train page says of one run in words: how it ended when it did not finish, and the weights it really
started from. Each note is (level, Markdown sentence), level one of "error", "info", "warning" or "caption", so a page
draws it with the Streamlit call of that name and the CLI can print it as it is."""

from __future__ import annotations

from workbench.runs.registry import RunView
from workbench.strategies import get_strategy


def outcome_notes(view: RunView) -> list[tuple[str, str]]:
    """Why a failed, stopped or interrupted run ended and what it kept; nothing for the other states."""
    if view.status == "failed":
        return [("error", f"**The run failed.** {view.error}"),
                *([("info", f"**What to try:** {view.hint}")] if view.hint else [])]
    if view.status == "stopped":
        done = len(view.metrics)
        kept = "What the model learned so far is saved." if view.summary else "Nothing was trained yet."
        return [("warning", f"**Stopped** after {done} full epoch{'s' if done != 1 else ''}. {kept}")]
    if view.status == "interrupted":
        kept = view.kept_epoch
        return [("warning", "**Interrupted:** the process training this run ended before the run did (the app was "
                            "closed or restarted, or the computer ran out of memory). What was recorded is shown"
                            + (f"; the model as it was after epoch {kept} is saved." if kept else "."))]
    return []


def weights_used_notes(view: RunView) -> list[tuple[str, str]]:
    """The weights the run started from, once it has loaded them; a warning when a strategy meant to transfer
    started from random weights."""
    source = view.facts.get("weights_source")
    if not source:
        return []
    meant_to_transfer = view.config is not None and get_strategy(view.config.strategy).pretrained
    if meant_to_transfer and not source.get("pretrained"):
        return [("warning", f"Started from **random weights** ({source['description']}): no pretrained knowledge.")]
    return [("caption", f"Starting weights: {source['description']}.")]
