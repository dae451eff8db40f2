import pytest
import torch

from ticketlab.data import load_dataset, with_label_noise
from ticketlab.double_descent import DoubleDescentConfig, run_double_descent
from ticketlab.errors import UserError
from ticketlab.lottery import IMPConfig
from ticketlab.train import TrainConfig


def test_label_noise_flips_exactly_that_fraction_to_other_classes():
    d = load_dataset("digits")
    noisy = with_label_noise(d, 0.2, seed=3)
    changed = noisy.y_train != d.y_train
    assert int(changed.sum()) == round(0.2 * len(d.y_train))
    assert torch.equal(noisy.y_test, d.y_test) and torch.equal(noisy.y_val, d.y_val)
    assert torch.equal(with_label_noise(d, 0.2, seed=3).y_train, noisy.y_train)
    assert with_label_noise(d, 0.0, seed=3) is d


def test_double_descent_records_accuracy_and_learning_distance_on_both_curves(tmp_path):
    cfg = DoubleDescentConfig(
        dataset="digits", min_density=0.5, label_noise=0.1, train=TrainConfig(iterations=30, eval_every=10)
    )
    r = run_double_descent(cfg, tmp_path / "s", quiet=True)
    imp, one = r["imp"], r["one-shot"]
    assert [p["density"] for p in imp] == pytest.approx([p["density"] for p in one], abs=1e-3)
    assert imp[-1]["density"] == pytest.approx(0.5, abs=2e-3)
    assert all(p["learning_distance"] > 0 for p in imp + one)
    assert one[1] == imp[1]  # the first pruned round is the same experiment in both modes
    assert (tmp_path / "s" / "double_descent.png").exists()


def test_bad_double_descent_settings():
    for kw, msg in [
        ({"label_noise": 1.0}, "--label-noise"),
        ({"retrain": "scratch"}, "unknown --retrain"),
        ({"min_density": 0}, "--min-density"),
    ]:
        with pytest.raises(UserError, match=msg):
            DoubleDescentConfig(**kw).validate()
    with pytest.raises(UserError, match="--label-noise"):
        IMPConfig(label_noise=-0.1).validate()
