"""What the Train page says of a run that did not finish, and of the weights a run started from."""

from __future__ import annotations

from workbench.analysis.run_notes import outcome_notes, weights_used_notes
from workbench.engine.config import RunConfig
from workbench.runs import RunRecord, RunSummary
from workbench.runs.registry import RunView

RANDOM = {"pretrained": False, "description": "none (random init)"}
BUNDLED = {"pretrained": True, "description": "bundled with the workbench: pkg"}


def view(tmp_path, status: str | None, strategy: str = "full", source: dict | None = None, epochs: int = 0,
         **summary) -> RunView:
    facts = {"strategy": strategy, "backbone": "test_resnet", **({"weights_source": source} if source else {})}
    record = RunRecord(id="run", dir=tmp_path, facts=facts, config=RunConfig(data="", strategy=strategy),
                       metrics=[{"epoch": e + 1} for e in range(epochs)],
                       summary=RunSummary(status=status, **summary) if status else None)
    return RunView.of_record(record)


def test_a_failed_run_says_why_and_what_to_try(tmp_path):
    assert outcome_notes(view(tmp_path, "failed", error="Out of memory.", hint="Lower the batch size.")) == [
        ("error", "**The run failed.** Out of memory."), ("info", "**What to try:** Lower the batch size.")]
    assert [level for level, _ in outcome_notes(view(tmp_path, "failed", error="Boom."))] == ["error"]


def test_stopped_and_interrupted_runs_say_what_they_kept(tmp_path):
    ((level, text),) = outcome_notes(view(tmp_path, "stopped", epochs=2))
    assert level == "warning" and text.startswith("**Stopped** after 2 full epochs.") and "is saved" in text
    ((_, text),) = outcome_notes(view(tmp_path, None))  # no summary and nothing training it: interrupted
    assert text.startswith("**Interrupted:**") and text.endswith("What was recorded is shown.")
    assert outcome_notes(view(tmp_path, "finished")) == []


def test_random_weights_are_a_warning_only_where_the_strategy_meant_to_transfer(tmp_path):
    assert weights_used_notes(view(tmp_path, "finished")) == []  # not loaded yet
    ((level, text),) = weights_used_notes(view(tmp_path, "finished", source=RANDOM))
    assert level == "warning" and "**random weights**" in text
    assert weights_used_notes(view(tmp_path, "finished", strategy="scratch", source=RANDOM))[0][0] == "caption"
    assert weights_used_notes(view(tmp_path, "finished", source=BUNDLED)) == [
        ("caption", "Starting weights: bundled with the workbench: pkg.")]
