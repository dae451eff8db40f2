import pytest
import torch

from ticketlab.colt import COLTConfig, run_colt, split_segments
from ticketlab.data import load_dataset
from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.sparse import layerwise_prune, magnitude_scores
from ticketlab.train import TrainConfig


def test_class_split_is_disjoint_and_complete():
    d = load_dataset("digits")
    a, b = split_segments(d, 2, "classes", 0)
    assert set(a.y_train.tolist()) == {0, 1, 2, 3, 4} and set(b.y_train.tolist()) == {5, 6, 7, 8, 9}
    assert len(a.y_train) + len(b.y_train) == len(d.y_train)
    r = split_segments(d, 3, "random", 0)
    assert sum(len(s.y_train) for s in r) == len(d.y_train)


@pytest.mark.slow
def test_colt_keeps_the_overlap_and_compares_with_imp(tmp_path):
    cfg = COLTConfig(dataset="digits", target_density=0.5, train=TrainConfig(iterations=30, eval_every=10))
    r = run_colt(cfg, tmp_path / "c", quiet=True)
    k = r["colt"]["pruning_rounds"]
    assert r["density"] <= 0.5 and [x["round"] for x in r["rounds"]] == list(range(1, k + 1))
    prev = {n: torch.ones_like(m) for n, m in load_tensors(tmp_path / "c/round_01/mask.safetensors").items()}
    rates = {"1.weight": 0.2, "3.weight": 0.2, "5.weight": 0.1}
    for i in range(1, k + 1):
        rdir = tmp_path / "c" / f"round_{i:02d}"
        mask = load_tensors(rdir / "mask.safetensors")
        expected = {n: torch.ones_like(m) for n, m in mask.items()}
        for s in (0, 1):  # each segment's copy, pruned by magnitude among the previous round's weights
            w = load_tensors(rdir / f"segment_{s}" / "final.safetensors")
            dens = {n: float(prev[n].float().mean()) * (1 - rates[n]) for n in mask}
            seg = layerwise_prune(magnitude_scores(w, list(mask)), prev, dens, torch.Generator().manual_seed(0))
            expected = {n: expected[n] & seg[n] for n in mask}
        assert all(torch.equal(mask[n], expected[n]) for n in mask)  # the overlap, exactly
        prev = mask
    assert r["imp"]["density"] == pytest.approx(r["density"], abs=2e-3)
    assert r["colt"]["training_iterations"] == 30 * (2 * k + 1)
    assert run_colt(cfg, tmp_path / "c", quiet=True) == r  # cached: rerun gives the same result


@pytest.mark.parametrize(
    "kw,msg",
    [
        ({"segments": 1}, "--segments"),
        ({"split": "odd"}, "unknown --split"),
        ({"rate": 1.0}, "--rate"),
        ({"target_density": 0}, "--target-density"),
    ],
)
def test_bad_settings(kw, msg):
    with pytest.raises(UserError, match=msg):
        COLTConfig(**kw).validate()


@pytest.mark.slow
def test_colt_reports_training_flops_of_every_training(tmp_path):
    cfg = COLTConfig(dataset="digits", target_density=0.7, train=TrainConfig(iterations=20, eval_every=10))
    r = run_colt(cfg, tmp_path / "c", quiet=True)
    masks = [
        load_tensors(tmp_path / "c" / f"round_{k:02d}" / "mask.safetensors")
        for k in range(1, r["colt"]["pruning_rounds"] + 1)
    ]
    kept = [sum(int(m.sum()) for m in mk.values()) for mk in masks]
    n = 64 * 300 + 300 * 100 + 100 * 10  # lenet300 on 8x8 digits
    per = lambda k: 3 * 2 * k * 100 * 20  # noqa: E731  3 x (2 x kept) x batch 100 x 20 iterations
    expected = 2 * per(n) + sum(2 * per(k) for k in kept[:-1]) + per(kept[-1])
    # two segment copies per round from each round's starting mask, then the final ticket on all data
    assert r["colt"]["training_flops"] == expected
    assert r["imp"]["training_flops"] > 0
