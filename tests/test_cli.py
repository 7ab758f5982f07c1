"""The command line: what a user types and reads."""

import json

import pytest

from workbench.cli import main

from .conftest import SHAPES


def test_train_prints_progress_run_directory_and_accuracy(runs_dir, capsys):
    code = main(["train", "--data", str(SHAPES), "--backbone", "test_resnet", "--strategy", "full",
                 "--epochs", "1", "--image-size", "64"])
    out, err = capsys.readouterr()
    assert code == 0, err
    assert "epoch 1: train loss" in out + err
    assert "validation accuracy:" in out
    run_dir = next(runs_dir.iterdir())
    assert f"run finished: {run_dir}" in out
    assert "pretrained: none (random init)" in out
    assert json.loads((run_dir / "summary.json").read_text())["status"] == "finished"


def test_strategies_lists_every_strategy_with_its_explanation(capsys):
    assert main(["strategies"]) == 0
    out = capsys.readouterr().out
    for name in ("linear_probe", "partial", "full", "scratch"):
        assert f"{name} — " in out
    assert "feature extractor" in out


def test_backbones_shows_where_pretrained_weights_come_from(capsys):
    assert main(["backbones", "lite"]) == 0
    out = capsys.readouterr().out
    assert "tf_efficientnet_lite0" in out and "bundled" in out


@pytest.mark.parametrize(("args", "message"), [
    (["--data", "/no/such/folder"], "/no/such/folder"),
    (["--backbone", "resnet5O"], "Did you mean"),
    (["--strategy", "partial", "--backbone", "test_resnet", "--freeze-depth", "99"], "--freeze-depth 99"),
    (["--val-fraction", "1.5"], "--val-fraction"),
    (["--strategy", "nope"], "Choose one of"),
    (["--weights", "/no/such/weights.safetensors", "--backbone", "test_resnet"], "/no/such/weights.safetensors"),
])
def test_bad_input_gets_a_clear_message_and_writes_nothing(runs_dir, capsys, args, message):
    argv = ["train", "--data", str(SHAPES), "--image-size", "64", *args]
    code = main(argv)
    err = capsys.readouterr().err
    assert code == 2
    assert message in err
    assert not runs_dir.exists() or not any(runs_dir.iterdir())


def test_race_runs_every_strategy_with_the_same_budget_and_prints_a_table(runs_dir, capsys, tmp_path):
    table = tmp_path / "race.md"
    code = main(["race", "--data", str(SHAPES), "--backbone", "test_resnet", "--image-size", "64", "--epochs", "1",
                 "--strategies", "linear_probe,scratch", "--markdown", str(table)])
    out = capsys.readouterr().out
    assert code == 0
    assert "| linear_probe" in out and "| scratch" in out
    assert table.read_text().count("| finished") == 2
    configs = [json.loads((d / "config.json").read_text()) for d in runs_dir.iterdir()]
    assert {c["epochs"] for c in configs} == {1} and {c["image_size"] for c in configs} == {64}
