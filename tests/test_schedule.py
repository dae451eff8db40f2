import math

import pytest

from ticketlab.train import TrainConfig, lr_at


def test_constant_with_linear_warmup():
    cfg = TrainConfig(lr=1.0, warmup=4)
    assert [lr_at(cfg, i, 100) for i in range(5)] == [0.25, 0.5, 0.75, 1.0, 1.0]


def test_cosine_decays_from_peak_to_zero():
    cfg = TrainConfig(lr=1.0, lr_schedule="cosine")
    assert lr_at(cfg, 0, 100) == 1.0 and lr_at(cfg, 50, 100) == pytest.approx(0.5)
    assert lr_at(cfg, 100, 100) == pytest.approx(0.0, abs=1e-12)


def test_step_schedule_multiplies_at_milestones():
    cfg = TrainConfig(lr=1.0, lr_schedule="step", milestones=[10, 20], gamma=0.1)
    assert [lr_at(cfg, i, 30) for i in (9, 10, 19, 20)] == pytest.approx([1.0, 0.1, 0.1, 0.01])


def test_budget_in_epochs_or_iterations():
    assert TrainConfig(batch_size=10, epochs=2).total_iterations(105) == 20
    assert TrainConfig(iterations=7).total_iterations(105) == 7


def test_cosine_after_warmup_spans_the_rest_of_training():
    cfg = TrainConfig(lr=2.0, lr_schedule="cosine", warmup=4)
    assert [lr_at(cfg, i, 12) for i in range(4)] == [0.5, 1.0, 1.5, 2.0]
    assert lr_at(cfg, 4, 12) == 2.0 and lr_at(cfg, 8, 12) == pytest.approx(1.0, rel=1e-12)
    assert lr_at(cfg, 6, 12) == pytest.approx(1.0 + math.cos(math.pi / 4), rel=1e-12)
    assert lr_at(cfg, 12, 12) == pytest.approx(0.0, abs=1e-15) and lr_at(cfg, 20, 12) == lr_at(cfg, 12, 12)
    assert lr_at(TrainConfig(lr=1.0, lr_schedule="cosine", warmup=5), 5, 5) == 1.0  # no span left: stays at peak


def test_step_milestones_in_any_order_and_after_warmup():
    cfg = TrainConfig(lr=1.0, lr_schedule="step", milestones=[20, 10], gamma=0.5, warmup=2)
    assert [lr_at(cfg, i, 30) for i in (0, 1, 2, 9, 10, 19, 20, 29)] == [0.5, 1.0, 1.0, 1.0, 0.5, 0.5, 0.25, 0.25]


def test_cosine_with_a_single_step_after_warmup_reaches_zero():
    cfg = TrainConfig(lr=1.0, lr_schedule="cosine", warmup=5)
    assert lr_at(cfg, 6, 6) == pytest.approx(0.0, abs=1e-15)
