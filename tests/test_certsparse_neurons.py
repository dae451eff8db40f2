"""Stability scores and ``ticketlab neurons``: stability-based neuron pruning and linearity grafting."""
import json
import math

import pytest
import torch
from helpers import killed_then_resumed, one_line_exit_2, without_config

from ticketlab.certsparse import (
    NeuronsConfig,
    lowest,
    nrs,
    per_channel,
    run_neurons,
    stability_scores,
)
from ticketlab.cli import main
from ticketlab.io import load_tensors
from ticketlab.models.graft import GraftedReLU
from ticketlab.train import TrainConfig

# -- scores, hand-worked -------------------------------------------------------------------------------------

def test_stability_scores_rank_a_stably_inactive_neuron_first_then_the_most_unstable():
    """Four neurons over two samples: stably inactive (u <= 0 on both), unstable wide, unstable narrow,
    stably active. The dead one goes first; then the widest straddle of 0 (l u most negative)."""
    lo = torch.tensor([[-2.0, -3.0, -0.1, 0.5], [-1.0, -2.0, -0.2, 1.0]])
    hi = torch.tensor([[-0.5, 3.0, 0.1, 2.0], [0.0, 2.0, 0.2, 3.0]])
    s = stability_scores(lo, hi)
    assert s[0] == -math.inf
    assert s[1] == pytest.approx((math.tanh(1 - 9) + math.tanh(1 - 4)) / 2)
    assert s[2] == pytest.approx((math.tanh(1 - 0.01) + math.tanh(1 - 0.04)) / 2)
    assert s[3] == pytest.approx((math.tanh(2) + math.tanh(4)) / 2)
    order = torch.argsort(s).tolist()
    assert order == [0, 1, 2, 3]
    chosen = lowest([s], 0.25, "layerwise", torch.Generator().manual_seed(0))[0]
    assert chosen.tolist() == [True, False, False, False]


def test_nrs_divides_by_the_batchnorm_scale_squared():
    lo, hi, g = torch.tensor([-1.0]), torch.tensor([2.0]), torch.tensor([2.0])
    assert nrs(lo, hi, g).item() == pytest.approx(math.tanh(1 - 2 / 4))


def test_channel_scores_are_position_means_and_dead_only_when_dead_everywhere():
    s = torch.tensor([[[1.0, 3.0]], [[-math.inf, 0.5]], [[-math.inf, -math.inf]]])
    c = per_channel(s)
    assert c[0] == 2.0 and c[1] == 0.5 and c[2] == -math.inf


def test_lowest_is_per_layer_or_global():
    a, b = torch.tensor([0.1, 0.9, 0.5, 0.3]), torch.tensor([0.2, 0.8])
    g = torch.Generator().manual_seed(0)
    lay = lowest([a, b], 0.5, "layerwise", g)
    assert lay[0].tolist() == [True, False, False, True] and lay[1].tolist() == [True, False]
    glob = lowest([a, b], 0.5, "global", g)
    assert glob[0].tolist() == [True, False, False, True] and glob[1].tolist() == [True, False]
    glob = lowest([a, b], 1 / 3, "global", g)
    assert glob[0].tolist() == [True, False, False, False] and glob[1].tolist() == [True, False]


# -- ticketlab neurons --------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def source(tmp_path_factory):
    run = tmp_path_factory.mktemp("neu") / "imp"
    assert main(["imp", "--dataset", "digits", "--model", "mlp1d", "--iterations", "150", "--rounds", "1",
                 "--quiet", "--out", str(run)]) == 0
    return run


def ncfg(source, **kw):
    return NeuronsConfig(dataset="digits", model="mlp1d", source=str(source), score_samples=200,
                         train=TrainConfig(iterations=60, eval_every=20, batch_size=60), **kw)


def test_stability_pruning_removes_whole_neurons_exactly(source, tmp_path):
    s = run_neurons(ncfg(source, method="prune", score="stability", fraction=0.5), tmp_path / "p", quiet=True)
    mask = load_tensors(tmp_path / "p" / "mask.safetensors")
    final = load_tensors(tmp_path / "p" / "final.safetensors")
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    assert s["chosen_per_layer"] == [round(0.5 * u) for u in s["units_per_layer"]]
    w0 = final["net.1.weight"] if "net.1.weight" in final else next(v for k, v in final.items() if k.endswith("weight"))
    dead_rows = int((w0.abs().sum(1) == 0).sum())
    assert dead_rows >= s["chosen_per_layer"][0]
    assert s["weight_density"] < 1
    parent = json.loads((source / "summary.json").read_text())["rounds"][0]["test_acc"]
    assert s["dense_test_acc"] == parent


def test_grafting_keeps_the_chosen_neurons_linear_and_trains_their_lines(source, tmp_path):
    s = run_neurons(ncfg(source, method="graft", score="magnitude", fraction=0.25), tmp_path / "g", quiet=True)
    final = load_tensors(tmp_path / "g" / "final.safetensors")
    grafts = {k: v for k, v in final.items() if k.endswith(".graft")}
    assert grafts and sum(int(v.sum()) for v in grafts.values()) == s["chosen"]
    slopes = [final[k[:-len("graft")] + "slope"][v] for k, v in grafts.items()]
    assert any((sl != 0.4).any() for sl in slopes)  # the lines were trained
    assert s["weight_density"] == 1.0


def test_neurons_resumes_bitwise(source, tmp_path, monkeypatch):
    c = ncfg(source, method="graft", score="stability", fraction=0.3)
    ref = run_neurons(c, tmp_path / "ref", quiet=True, checkpoint_every=20)
    s = killed_then_resumed(run_neurons, c, tmp_path / "r", monkeypatch, quiet=True, checkpoint_every=20)
    assert without_config(s) == without_config(ref)
    a, b = (load_tensors(tmp_path / d / "final.safetensors") for d in ("ref", "r"))
    assert all(torch.equal(a[k], b[k]) for k in a)


def test_verify_reads_a_grafted_run(source, tmp_path, capsys):
    run = tmp_path / "g"
    assert main(["neurons", "--source", str(source), "--dataset", "digits", "--model", "mlp1d", "--method", "graft",
                 "--score", "magnitude", "--fraction", "0.5", "--iterations", "30", "--score-samples", "100",
                 "--quiet", "--out", str(run)]) == 0
    assert main(["verify", str(run), "--eps", "0.01", "--samples", "5", "--method", "ibp,crown,complete",
                 "--quiet"]) == 0
    rows = json.loads(next(run.glob("verify-*")).joinpath("results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["dense parent", "magnitude grafted 0.5"]
    grafted = rows[1]["neurons_per_sample"]["crown"]
    assert sum(lay["grafted"] for lay in grafted) > 0
    assert rows[0]["neurons_per_sample"]["crown"][0]["grafted"] == 0


@pytest.mark.parametrize("args, msg", [
    ([], "neurons needs --source RUN"),
    (["--source", "SRC", "--method", "nope"], "unknown --method 'nope'"),
    (["--source", "SRC", "--score", "nope"], "unknown --score 'nope'"),
    (["--source", "SRC", "--fraction", "1"], "--fraction must be in [0, 1)"),
    (["--source", "SRC", "--score-eps", "0"], "--score stability needs --score-eps > 0"),
    (["--source", "SRC", "--model", "lenet300"], "use the same --model and --dataset"),
    (["--source", "NOTRUN"], "is not an IMP run directory"),
])
def test_bad_neurons_input_is_one_line(source, tmp_path, capsys, args, msg):
    args = [str(source) if a == "SRC" else str(tmp_path) if a == "NOTRUN" else a for a in args]
    base = ["neurons", "--dataset", "digits", "--quiet", "--out", str(tmp_path / "x")]
    if "--model" not in args:
        base += ["--model", "mlp1d"]
    one_line_exit_2(main(base + args), capsys.readouterr().err, msg)
    assert not (tmp_path / "x").exists()


def test_grafted_relu_is_a_module_of_the_models():
    assert issubclass(GraftedReLU, torch.nn.Module)
