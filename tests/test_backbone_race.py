"""The backbone race: one run per backbone (per backbone and strategy for a grid) at one budget, from the registry, the
command line and the Compare page, ending in the trade-off table, the picture and one sentence of advice."""

from __future__ import annotations

import json

import pytest
from streamlit.testing.v1 import AppTest

from ui_common import CHOICES, DATASET, get_registry
from workbench import cli
from workbench.deploy import tradeoff
from workbench.engine import Run
from workbench.engine.config import RunConfig
from workbench.models.backbones import BackboneError, catalogue
from workbench.runs.registry import RunRegistry, backbone_race_configs, planned_config, race_budget

from .conftest import REPO, SHAPES
from .test_pages_train_compare import fresh_registry  # noqa: F401 - autouse: every test starts with an empty registry

COMPARE_PAGE = str(REPO / "pages" / "4_compare.py")
TINY = ["test_resnet", "test_efficientnet"]


class CancelEverything:
    """A backend that trains nothing: it records each run it is handed and ends it as stopped."""

    slots = None

    def __init__(self) -> None:
        self.seen: list[RunConfig] = []

    def execute(self, run: Run) -> None:
        self.seen.append(run.config)
        run.cancel()

    def stop(self, run: Run) -> None:
        run.cancel()


def test_a_grid_queues_every_backbone_with_every_strategy_at_one_budget(runs_dir):
    registry = RunRegistry(runs_dir, backend=CancelEverything())
    config = RunConfig(data=str(SHAPES), seed=7, weights="none")
    raced = registry.backbone_race(config, TINY, ["linear_probe", "partial"])
    assert [(r.config.backbone, r.config.strategy) for r in raced] == [
        ("test_resnet", "linear_probe"), ("test_resnet", "partial"),
        ("test_efficientnet", "linear_probe"), ("test_efficientnet", "partial")]
    budget = race_budget(config)  # several strategies: a strategy race's budget, for every backbone
    assert {(r.config.epochs, r.config.seed, r.config.image_size) for r in raced} == {(budget.epochs, 7,
                                                                                        budget.image_size)}
    assert {r.config.weights for r in raced} == {"auto"}  # each backbone's best weights, random where there are none


def test_one_strategy_races_at_its_own_budget_and_each_backbone_by_the_same_size_rule(runs_dir):
    registry = RunRegistry(runs_dir, backend=CancelEverything())
    config = RunConfig(data=str(SHAPES), strategy="linear_probe")
    raced = registry.backbone_race(config, ["tf_efficientnet_lite0", "tf_efficientnet_lite2"])
    for run in raced:
        planned = planned_config(RunConfig(data=str(SHAPES), strategy="linear_probe", backbone=run.config.backbone))
        assert (run.config.epochs, run.config.image_size) == (planned.epochs, planned.image_size)
    fixed = registry.backbone_race(RunConfig(data=str(SHAPES), epochs=2, image_size=64), TINY)
    assert {(r.config.epochs, r.config.image_size) for r in fixed} == {(2, 64)}


def test_a_misspelt_backbone_queues_nothing(runs_dir):
    registry = RunRegistry(runs_dir, backend=CancelEverything())
    with pytest.raises(BackboneError, match="Did you mean"):
        registry.backbone_race(RunConfig(data=str(SHAPES)), ["test_resnet", "tf_efficientnet_lite9"])
    assert registry.runs() == []


def test_the_cli_grid_queues_backbones_times_strategies_with_the_same_budget_and_seed(runs_dir, monkeypatch, capsys):
    backend = CancelEverything()
    monkeypatch.setattr(cli, "registry_for", lambda args, config: RunRegistry(runs_dir, backend=backend))
    code = cli.main(["race", "--data", str(SHAPES), "--backbones", ",".join(TINY), "--strategies",
                     "linear_probe,scratch", "--epochs", "3", "--seed", "5", "--image-size", "48"])
    assert code == 1  # nothing trained here: said so, not hidden
    assert sorted((c.backbone, c.strategy) for c in backend.seen) == sorted(
        (b, s) for b in TINY for s in ("linear_probe", "scratch"))
    assert {(c.epochs, c.seed, c.image_size) for c in backend.seen} == {(3, 5, 48)}
    assert "No run finished with a model to measure." in capsys.readouterr().err


def test_the_cli_race_prints_the_runs_the_trade_off_table_and_the_advice(runs_dir, tmp_path, capsys):
    markdown = tmp_path / "race.md"
    code = cli.main(["race", "--data", str(SHAPES), "--backbones", ",".join(TINY), "--strategy", "linear_probe",
                     "--epochs", "1", "--image-size", "32", "--markdown", str(markdown)])
    out = capsys.readouterr().out
    assert code == 0
    assert "Backbone race on `shapes` (linear_probe; 1 epoch, seed 0)" in out
    assert "| test_resnet (random weights)" in out and "| test_efficientnet (random weights)" in out
    assert "latency ms" in out and "Pareto front" in out and "\nFor this computer, " in out
    written = markdown.read_text()
    assert written.count("| finished") == 2 and "For this computer, " in written
    configs = [json.loads((d / "config.json").read_text()) for d in runs_dir.iterdir()]
    assert sorted(c["backbone"] for c in configs) == sorted(TINY)


def test_the_catalogue_says_family_size_and_whether_weights_are_here():
    lite = {entry.name: entry for entry in catalogue("tf_efficientnet_lite")}
    assert lite["tf_efficientnet_lite0"].pretrained_here and lite["tf_efficientnet_lite0"].family == "efficientnet"
    assert lite["tf_efficientnet_lite0"].params < lite["tf_efficientnet_lite2"].params
    assert not lite["tf_efficientnet_lite4"].pretrained_here  # not bundled, not cached: random weights offline
    small = catalogue("tf_efficientnet_lite", max_params=5_000_000)
    assert [entry.name for entry in small] == ["tf_efficientnet_lite0"]  # 4.7 M; lite1 has 5.4 M
    assert {entry.family for entry in catalogue("test_", family=["resnet"], count=False)} == {"resnet"}


# -------------------------------------------------------------------------------------------------------------------
# The Compare page


def trained_runs(runs_dir) -> list[Run]:
    """Two tiny linear probes on the sample data, trained here (a few seconds each)."""
    config = RunConfig(data=str(SHAPES), strategy="linear_probe", epochs=1, image_size=32, runs_dir=str(runs_dir))
    done = []
    for backbone in TINY:
        run = Run(backbone_race_configs(config, backbone, ["linear_probe"])[0])
        run.run()
        assert run.status == "finished", run.error
        done.append(run)
    return done


def test_the_compare_page_shows_the_picture_for_finished_runs(runs_dir):
    trained_runs(runs_dir)
    at = AppTest.from_file(COMPARE_PAGE, default_timeout=120)
    at.session_state[DATASET] = str(SHAPES)
    at.run()
    assert not at.exception
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    picture = next(spec for spec in specs if spec["layout"]["title"]["text"] == "Accuracy against speed on this "
                                                                                "computer")
    names = {trace.get("name") for trace in picture["data"]}
    assert {"test_resnet (random weights)", "test_efficientnet (random weights)", tradeoff.FRONT_NAME} <= names
    table = next(frame.value for frame in at.dataframe if "Pareto front" in frame.value)
    assert set(table["weights"]) == {"random weights"} and (table["latency ms"] > 0).all()
    assert at.success[0].value.startswith("For this computer, ")
    at.radio(key="backbone_race.x.False").set_value("size_mb").run()
    specs = [json.loads(chart.proto.spec) for chart in at.get("plotly_chart")]
    assert any(spec["layout"]["title"]["text"] == "Accuracy against size on disk" for spec in specs)


def test_the_compare_page_starts_a_backbone_grid_with_one_click(runs_dir):
    at = AppTest.from_file(COMPARE_PAGE, default_timeout=60)
    at.session_state[DATASET] = str(SHAPES)
    at.session_state[CHOICES] = {"backbone": "test_resnet", "strategy": "full", "image_size": 64}
    at.run()
    assert at.multiselect(key="backbone_race.backbones").value == ["tf_efficientnet_lite0", "tf_efficientnet_lite1",
                                                                    "tf_efficientnet_lite2"]
    at.multiselect(key="backbone_race.backbones").set_value(TINY)
    at.multiselect(key="backbone_race.strategies").set_value(["linear_probe", "partial"]).run()
    at.number_input(key="backbone_race.epochs.linear_probe.partial").set_value(1)
    at.number_input(key="backbone_race.image_size").set_value(32)
    at.button(key="backbone_race.start").click().run()
    assert not at.exception
    raced = get_registry().runs()
    assert sorted((r.config.backbone, r.config.strategy) for r in raced) == sorted(
        (b, s) for b in TINY for s in ("linear_probe", "partial"))
    assert {(r.config.epochs, r.config.image_size) for r in raced} == {(1, 32)}
