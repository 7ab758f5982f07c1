"""Time estimates: measured speeds are positive and remembered; a linear probe is estimated cheaper than training."""

from __future__ import annotations

import time

import pytest

from workbench.analysis import estimate

ARGS = dict(backbone="test_resnet", image_size=32, batch_size=4, device="cpu")


@pytest.fixture(autouse=True)
def nothing_measured_yet(monkeypatch):
    monkeypatch.setattr(estimate, "_measured", {})


@pytest.mark.parametrize("trains_backbone", [False, True])
def test_measured_speed_is_positive_and_remembered(trains_backbone):
    first = estimate.measure_images_per_second(**ARGS, trains_backbone=trains_backbone)
    assert first > 0
    start = time.perf_counter()
    again = estimate.measure_images_per_second(**ARGS, trains_backbone=trains_backbone)
    assert again == first and time.perf_counter() - start < 0.05
    assert estimate.measured_images_per_second(**ARGS, trains_backbone=trains_backbone) == first


@pytest.fixture
def fixed_speeds(monkeypatch):
    """Training at 10 images/s, inference at 30, without timing anything."""
    monkeypatch.setattr(estimate, "_time_steps", lambda backbone, size, batch, trains, device: 10.0 if trains else 30.0)


def test_large_batches_are_timed_at_the_small_measuring_batch(fixed_speeds):
    estimate.measure_images_per_second(**{**ARGS, "batch_size": estimate.MEASURE_BATCH_SIZE}, trains_backbone=False)
    assert estimate.measured_images_per_second(**{**ARGS, "batch_size": 256}, trains_backbone=False) == 30.0


def test_run_estimates_follow_the_strategy():
    args = dict(num_train=800, num_val=200, epochs=5, images_per_second_train=10.0, images_per_second_infer=30.0)
    full = estimate.estimate_run_seconds("full", **args)
    probe = estimate.estimate_run_seconds("linear_probe", **args)
    assert full == pytest.approx(5 * (800 / 10 + 200 / 30))
    assert probe == pytest.approx(1000 / 30 + 5 * estimate.HEAD_SECONDS_PER_EPOCH)
    assert probe < full


def test_machine_estimate_waits_for_a_measurement_unless_asked_to_measure(fixed_speeds):
    args = dict(backbone="test_resnet", strategy="partial", image_size=32, batch_size=4, epochs=2, num_train=40,
                num_val=30, device="cpu")
    assert estimate.estimate_for_machine(**args, measure=False) is None
    assert estimate.estimate_for_machine(**args) == pytest.approx(2 * (40 / 10 + 30 / 30))
    assert estimate.estimate_for_machine(**args, measure=False) == pytest.approx(10.0)
    probe = estimate.estimate_for_machine(**{**args, "strategy": "linear_probe"}, measure=False)
    assert probe == pytest.approx(70 / 30 + 2 * estimate.HEAD_SECONDS_PER_EPOCH)


def test_durations_read_like_speech():
    assert estimate.describe_seconds(12) == "under a minute"
    assert estimate.describe_seconds(61) == "about 1 minute"
    assert estimate.describe_seconds(25 * 60) == "about 25 minutes"
    assert estimate.describe_seconds(3 * 3600) == "about 3.0 hours"
