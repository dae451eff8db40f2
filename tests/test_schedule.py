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
