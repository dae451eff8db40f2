"""Stability scores and ``ticketlab neurons``: stability-based neuron pruning and linearity grafting."""

import json
import math

import pytest
import torch
from helpers import killed_then_resumed, one_line_exit_2, without_config, write_imp_source
from torch import nn

from ticketlab.certsparse import (
    NeuronsConfig,
    lowest,
    nrs,
    per_channel,
    run_neurons,
    stability_scores,
)
from ticketlab.cli import main
from ticketlab.errors import UserError
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


def test_stability_scores_pass_the_batchnorm_scale_on():
    lo, hi, gamma = torch.tensor([[-1.0], [-1.0]]), torch.tensor([[2.0], [2.0]]), torch.tensor([2.0])
    assert stability_scores(lo, hi, gamma).item() == pytest.approx(math.tanh(1 - 2 / 4))  # not tanh(1 - 2)


def test_relu_inputs_with_crown_are_crowns_bounds_tighter_than_ibps():
    from types import SimpleNamespace

    from ticketlab.certsparse.scores import relu_inputs
    from ticketlab.verify import input_box, pre_bounds, to_ops

    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 8), nn.ReLU(), nn.Linear(8, 2))
    data = SimpleNamespace(input_shape=(3,), mean=None, std=None, pixel_range=(0.0, 1.0))
    x = torch.rand(4, 3)
    crown, ibp = relu_inputs(net, data, x, 0.2, "crown"), relu_inputs(net, data, x, 0.2)
    ops = to_ops(net, (3,))
    want, _ = pre_bounds(ops, *input_box(x, 0.2, (0.0, 1.0)), "crown")
    assert all(torch.equal(a, b) for (c, w) in zip(crown, [want[i] for i in sorted(want)]) for a, b in zip(c, w))
    assert torch.equal(crown[0][0], ibp[0][0])  # the first ReLU's input is exact either way
    assert (crown[1][1] <= ibp[1][1] + 1e-6).all() and (crown[1][1] < ibp[1][1] - 1e-4).any()
    from ticketlab.certsparse.scores import neuron_scores

    scores = neuron_scores("stability", net, data, x, eps=0.2, bound="crown")
    assert all(torch.equal(s, stability_scores(lo, hi)) for s, (lo, hi) in zip(scores, crown))


def test_nrs_divides_by_the_batchnorm_scale_squared():
    lo, hi, g = torch.tensor([-1.0]), torch.tensor([2.0]), torch.tensor([2.0])
    assert nrs(lo, hi, g).item() == pytest.approx(math.tanh(1 - 2 / 4))


def test_channel_scores_are_position_means_and_dead_only_when_dead_everywhere():
    s = torch.tensor([[[1.0, 3.0]], [[-math.inf, 0.5]], [[-math.inf, -math.inf]], [[-0.5, -0.25]]])
    c = per_channel(s)
    assert c[0] == 2.0 and c[1] == 0.5 and c[2] == -math.inf and c[3] == -0.375  # negative scores are no deaths
    assert torch.equal(per_channel(torch.tensor([0.3, -0.2])), torch.tensor([0.3, -0.2]))  # a Linear's: as is


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
    return write_imp_source(tmp_path_factory.mktemp("src") / "imp")


def ncfg(source, **kw):
    """A neurons config on the digits source; ``kw`` adds settings or overrides these."""
    base = dict(
        dataset="digits",
        model="mlp1d",
        source=str(source),
        score_samples=200,
        train=TrainConfig(iterations=60, eval_every=20, batch_size=60),
    )
    return NeuronsConfig(**(base | kw))


def test_stability_pruning_removes_whole_neurons_exactly(source, tmp_path):
    """A quarter of the channels (not three quarters: a fraction at which the chosen set and its complement
    differ in count), their rows exactly zero after fine-tuning."""
    s = run_neurons(ncfg(source, method="prune", score="stability", fraction=0.25), tmp_path / "p", quiet=True)
    mask = load_tensors(tmp_path / "p" / "mask.safetensors")
    final = load_tensors(tmp_path / "p" / "final.safetensors")
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    assert s["chosen_per_layer"] == [round(0.25 * u) for u in s["units_per_layer"]]
    assert s["neurons"] == sum(s["units_per_layer"]) and s["chosen"] == sum(s["chosen_per_layer"])
    first = next(n for n in mask if n.endswith("weight"))
    assert int((~mask[first]).all(1).sum()) == s["chosen_per_layer"][0]  # the rows removed: the chosen ones
    assert s["weight_density"] < 1 and s["density"] == s["weight_density"]
    assert (tmp_path / "p" / "result.json").is_file()  # the on-disk layout its run folders have had
    parent = json.loads((source / "summary.json").read_text())["rounds"][0]["test_acc"]
    assert s["dense_test_acc"] == parent


def test_grafting_keeps_the_chosen_neurons_linear_and_trains_their_lines(source, tmp_path):
    s = run_neurons(ncfg(source, method="graft", score="magnitude", fraction=0.25), tmp_path / "g", quiet=True)
    final = load_tensors(tmp_path / "g" / "final.safetensors")
    grafts = {k: v for k, v in final.items() if k.endswith(".graft")}
    assert grafts and sum(int(v.sum()) for v in grafts.values()) == s["chosen"]
    slopes = [final[k[: -len("graft")] + "slope"][v] for k, v in grafts.items()]
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
    assert (
        main(
            [
                "neurons",
                "--source",
                str(source),
                "--dataset",
                "digits",
                "--model",
                "mlp1d",
                "--method",
                "graft",
                "--score",
                "magnitude",
                "--fraction",
                "0.5",
                "--iterations",
                "30",
                "--score-samples",
                "100",
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    assert (
        main(["verify", str(run), "--eps", "0.01", "--samples", "5", "--method", "ibp,crown,complete", "--quiet"]) == 0
    )
    rows = json.loads(next(run.glob("verify-*")).joinpath("results.json").read_text())["rows"]
    assert [r["label"] for r in rows] == ["dense parent", "magnitude grafted 0.5"]
    grafted = rows[1]["neurons_per_sample"]["crown"]
    assert sum(lay["grafted"] for lay in grafted) > 0
    assert rows[0]["neurons_per_sample"]["crown"][0]["grafted"] == 0


@pytest.mark.parametrize(
    "args, msg",
    [
        ([], "neurons needs --source RUN (an IMP run directory with a trained round 0)"),
        (["--source", "SRC", "--method", "nope"], "unknown --method 'nope'; choose one of: prune, graft"),
        (["--source", "SRC", "--score", "nope"], "unknown --score 'nope'"),
        (["--source", "SRC", "--fraction", "1"], "--fraction must be in [0, 1)"),
        (["--source", "SRC", "--score-eps", "0"], "--score stability needs --score-eps > 0"),
        (["--source", "SRC", "--model", "lenet300"], "use the same --model and --dataset"),
        (["--source", "NOTRUN"], "is not an IMP run directory"),
    ],
)
def test_bad_neurons_input_is_one_line(source, tmp_path, capsys, args, msg):
    args = [str(source) if a == "SRC" else str(tmp_path) if a == "NOTRUN" else a for a in args]
    base = ["neurons", "--dataset", "digits", "--quiet", "--out", str(tmp_path / "x")]
    if "--model" not in args:
        base += ["--model", "mlp1d"]
    one_line_exit_2(main(base + args), capsys.readouterr().err, msg)
    assert not (tmp_path / "x").exists()


def test_grafted_relu_is_a_module_of_the_models():
    assert issubclass(GraftedReLU, torch.nn.Module)


# -- the pieces of ``neurons``, by hand --------------------------------------------------------------------------


@pytest.fixture(scope="module")
def digits_net():
    from ticketlab.data import load_dataset
    from ticketlab.models import build_model

    data = load_dataset("digits", quiet=True)
    return data, build_model("mlp1d", data.input_shape, data.num_classes, seed=0).eval()


@pytest.mark.parametrize("score", ["magnitude", "stability"])
def test_scores_over_chunks_of_250_equal_one_pass_over_all_samples(digits_net, monkeypatch, score):
    from ticketlab.certsparse import neurons as mod
    from ticketlab.certsparse.scores import neuron_scores

    data, model = digits_net
    seen = {}
    real = mod.lowest
    monkeypatch.setattr(mod, "lowest", lambda s, *a: seen.setdefault("s", s) and real(s, *a))
    cfg = NeuronsConfig(source="x", score=score, score_samples=600, fraction=0.25, method="graft", score_eps=0.05)
    mod.choose(cfg, model, data)
    x = mod.scoring_inputs(cfg, data)
    assert len(x) == 600
    whole = neuron_scores(score, model, data, x, eps=0.05)
    for a, b in zip(seen["s"], whole):
        finite = torch.isfinite(b)
        assert torch.equal(torch.isinf(a), ~finite) and torch.allclose(a[finite].float(), b[finite], atol=1e-6)


def test_scoring_inputs_are_a_seeded_draw_of_at_most_the_training_set(digits_net):
    from ticketlab.certsparse.neurons import scoring_inputs
    from ticketlab.seeding import generator

    data, _ = digits_net
    x = scoring_inputs(NeuronsConfig(source="x", score_samples=7, seed=3), data)
    idx = torch.randperm(len(data.y_train), generator=generator(3, "neuron-scores"))[:7]
    assert torch.equal(x, data.x_train[idx])
    assert len(scoring_inputs(NeuronsConfig(source="x", score_samples=10**6), data)) == len(data.y_train)


def test_pruning_scores_channels_and_grafting_scores_every_neuron(monkeypatch):
    from ticketlab.certsparse import neurons as mod

    conv = torch.nn.Sequential(
        torch.nn.Conv1d(1, 2, 3, padding=1), torch.nn.ReLU(), torch.nn.Flatten(), torch.nn.Linear(8, 3)
    )
    data = type("D", (), {"x_train": torch.randn(10, 1, 4), "y_train": torch.zeros(10, dtype=torch.long)})()
    seen = []
    monkeypatch.setattr(mod, "lowest", lambda s, *a: seen.append([t.shape for t in s]) or s)
    mod.choose(NeuronsConfig(source="x", score="magnitude", method="graft", score_samples=10), conv, data)
    mod.choose(NeuronsConfig(source="x", score="magnitude", method="prune", score_samples=10), conv, data)
    assert seen == [[torch.Size([2, 4])], [torch.Size([2])]]


def test_each_relu_is_fed_by_the_layer_before_it():
    from ticketlab.certsparse.neurons import _roots

    m = torch.nn.Sequential(
        torch.nn.Linear(4, 4),
        torch.nn.ReLU(),
        torch.nn.Dropout(),
        torch.nn.Linear(4, 4),
        GraftedReLU((4,)),
        torch.nn.Linear(4, 2),
    )
    assert _roots(m) == ["0", "3"]


def test_weight_density_counts_the_prunable_weights_a_mask_keeps():
    from ticketlab.certsparse.neurons import weight_density

    m = torch.nn.Sequential(torch.nn.Linear(4, 3), torch.nn.ReLU(), torch.nn.Linear(3, 2))
    assert weight_density(m, None) == 1.0
    mask = {"0.weight": torch.zeros(3, 4, dtype=torch.bool)}  # 12 of the 18 weights removed
    assert weight_density(m, mask) == pytest.approx(6 / 18)


def test_the_neurons_table_says_what_was_chosen_where():
    from ticketlab.certsparse.neurons import format_neurons

    s = {
        "config": {"method": "prune", "score": "stability", "model": "mlp1d", "dataset": "digits"},
        "chosen": 5,
        "neurons": 20,
        "chosen_per_layer": [3, 2],
        "weight_density": 0.71234,
        "test_acc": 0.9,
        "dense_test_acc": 0.95,
    }
    assert format_neurons(s) == (
        "prune by stability on mlp1d / digits: 5/20 channels pruned (3/2 per layer); weight "
        "density 71.23%\ntest acc 0.9000 (dense parent 0.9500)"
    )
    s["config"]["method"] = "graft"
    assert "5/20 neurons grafted" in format_neurons(s)


@pytest.mark.parametrize(
    "kw, msg",
    [
        (dict(scope="local"), "unknown --scope 'local'"),
        (dict(score_bound="exact"), "unknown --score-bound 'exact'"),
        (dict(score_samples=0), "--score-samples must be >= 1"),
        (dict(fraction=-0.1), r"--fraction must be in \[0, 1\)"),
    ],
)
def test_more_bad_neurons_settings_are_refused(kw, msg):
    with pytest.raises(UserError, match=msg):
        NeuronsConfig(source="x", **kw).validate()
    NeuronsConfig(source="x", score="magnitude", score_eps=0.0).validate()  # only stability needs a radius
    for ok in (
        dict(scope="global"),
        dict(scope="layerwise"),
        dict(score_bound="crown"),
        dict(score_bound="ibp"),
        dict(method="graft"),
        dict(score="random"),
        dict(fraction=0.0),
        dict(score_samples=1),
    ):
        NeuronsConfig(source="x", **ok).validate()


def test_random_neuron_scores_come_from_the_runs_seed_not_the_global_rng():
    from ticketlab.certsparse.neurons import choose
    from ticketlab.data import load_dataset
    from ticketlab.models import build_model

    data = load_dataset("digits")
    model = build_model("lenet300", data.input_shape, data.num_classes, seed=0)

    def chosen(seed, global_seed):
        torch.manual_seed(global_seed)
        cfg = NeuronsConfig(source="SRC", method="graft", score="random", fraction=0.25, seed=seed)
        return choose(cfg, model, data)

    a = chosen(0, 0)
    assert [int(c.sum()) for c in a] == [75, 25]  # a quarter of each layer's 300 and 100 neurons
    assert all(torch.equal(x, y) for x, y in zip(a, chosen(0, 7)))
    assert not all(torch.equal(x, y) for x, y in zip(a, chosen(1, 0)))


def test_neurons_shows_its_progress_by_default_labelled_with_method_and_score(source, tmp_path, capsys):
    run_neurons(ncfg(source, method="prune", score="magnitude", fraction=0.25), tmp_path / "p")
    err = capsys.readouterr().err
    assert "neurons prune magnitude:" in err  # the progress bar's label (quiet is off unless asked)
    from ticketlab.runs.models import trained_models

    models = trained_models(tmp_path / "p")[1]
    assert [(m["label"], m["group"]) for m in models][1] == ("magnitude pruned 0.25", "prune-magnitude")
    assert models[0]["label"] == "dense parent"
    run_neurons(ncfg(source, method="prune", score="magnitude", fraction=0.5), tmp_path / "q", quiet=True)
    assert "neurons prune" not in capsys.readouterr().err


def test_nrs_squares_the_scale_and_survives_a_zero_one():
    lo, hi = torch.tensor([-1.0, -1.0]), torch.tensor([2.0, 2.0])
    s = nrs(lo, hi, torch.tensor([3.0, 0.0]))
    assert s[0].item() == pytest.approx(math.tanh(1 - 2 / 9))  # gamma^2 = 9, not 2 gamma = 6
    assert s[1].item() == -1.0  # a zero scale: l u / (0 + tiny) -> -inf, tanh -1 (not +1)


def test_global_ties_come_from_the_given_generator_in_score_then_tie_order():
    import numpy as np

    s = [torch.tensor([0.5] * 6 + [0.1] * 4), torch.tensor([0.5] * 10)]
    torch.manual_seed(0)
    a = lowest(s, 0.4, "global", torch.Generator().manual_seed(7))
    torch.manual_seed(99)
    b = lowest(s, 0.4, "global", torch.Generator().manual_seed(7))
    assert all(torch.equal(x, y) for x, y in zip(a, b))  # the global RNG plays no part
    flat = torch.cat(s)
    tie = torch.rand(flat.numel(), generator=torch.Generator().manual_seed(7))
    want = np.lexsort((tie.numpy(), flat.double().numpy()))[:8]  # by score, then by the tie draw
    got = torch.cat([x.reshape(-1) for x in a])
    assert sorted(torch.nonzero(got).flatten().tolist()) == sorted(want.tolist())


def test_an_unknown_scope_says_the_choices():
    with pytest.raises(UserError, match=r"^unknown --scope 'per-unit'; choose one of: layerwise, global$"):
        lowest([torch.zeros(3)], 0.5, "per-unit", torch.Generator())


def test_relu_inputs_take_the_datas_standardisation_into_the_bounds():
    """Standardised inputs: the eps-ball is in pixels, so the bounds are those of the graph with the data's
    mean and std in front (as verify builds it), not of the bare net."""
    from types import SimpleNamespace

    from ticketlab.attacks import to_pixels
    from ticketlab.certsparse.scores import relu_inputs
    from ticketlab.verify import input_box, pre_bounds, to_ops

    torch.manual_seed(1)
    net = nn.Sequential(nn.Linear(3, 6), nn.ReLU(), nn.Linear(6, 2))
    mean, std = torch.tensor([0.4, 0.5, 0.6]), torch.tensor([0.2, 0.25, 0.3])
    data = SimpleNamespace(input_shape=(3,), mean=mean, std=std, pixel_range=(0.0, 1.0))
    x = (torch.rand(4, 3) - mean) / std  # standardised, as datasets hold them
    got = relu_inputs(net, data, x, 0.1)
    ops = to_ops(net, (3,), mean, std)
    want, _ = pre_bounds(ops, *input_box(to_pixels(x, data), 0.1, (0.0, 1.0)), "ibp")
    assert torch.allclose(got[0][0], want[sorted(want)[0]][0], atol=1e-6)
    assert torch.allclose(got[0][1], want[sorted(want)[0]][1], atol=1e-6)


def test_score_and_fraction_refusals_are_their_whole_messages():
    from ticketlab.certsparse.scores import neuron_scores

    with pytest.raises(UserError, match=r"^--score stability needs --score-eps > 0 \(pixel units\), got 0\.0$"):
        neuron_scores("stability", None, None, None, eps=0.0)
    with pytest.raises(UserError, match=r"^unknown --score 'gain'; choose one of: stability, magnitude, random$"):
        neuron_scores("gain", None, None, None, eps=0.1)
    for f in (1.0, 1.5, -0.1):
        with pytest.raises(UserError, match=rf"^--fraction must be in \[0, 1\), got {f}$"):
            lowest([torch.zeros(3)], f, "layerwise", torch.Generator())


def test_a_fraction_of_0_removes_no_neuron():
    g = torch.Generator().manual_seed(0)
    for scope in ("layerwise", "global"):
        assert [m.tolist() for m in lowest([torch.arange(3.0), torch.zeros(2)], 0.0, scope, g)] == [
            [False] * 3,
            [False] * 2,
        ]


def test_random_scores_live_on_the_models_device():
    """Drawn on the CPU generator, then moved where the model's activations are (the meta device here,
    standing in for a GPU)."""
    from ticketlab.certsparse.scores import neuron_scores

    net = nn.Sequential(nn.Linear(4, 3), nn.ReLU(), nn.Linear(3, 2)).to("meta")
    s = neuron_scores("random", net, None, torch.zeros(5, 4, device="meta"), eps=0.0, generator=torch.Generator())
    assert [(t.device.type, tuple(t.shape)) for t in s] == [("meta", (3,))]


def test_chunk_scores_merge_by_size_weighted_mean_and_stay_dead_only_where_dead_in_every_chunk():
    from ticketlab.certsparse.neurons import merge_chunks

    inf = math.inf
    got = merge_chunks([torch.tensor([-inf, -inf, 1.0, 0.5]), torch.tensor([-inf, 2.0, 3.0, 0.5])], [250, 50])
    assert got.dtype == torch.float64
    assert got.tolist() == [-inf, pytest.approx(100 / 300), pytest.approx(400 / 300), 0.5]


def test_choose_scores_chunks_of_250_with_the_configured_bound(digits_net, monkeypatch):
    from ticketlab.certsparse import neurons as mod

    data, model = digits_net
    seen, real = [], mod.neuron_scores

    def spy(score, model, data, x, **kw):
        seen.append((len(x), kw["bound"], kw["eps"]))
        return real(score, model, data, x, **kw)

    monkeypatch.setattr(mod, "neuron_scores", spy)
    cfg = NeuronsConfig(source="x", score_samples=600, score_bound="crown", score_eps=0.02, method="graft")
    mod.choose(cfg, model, data)
    assert seen == [(250, "crown", 0.02), (250, "crown", 0.02), (100, "crown", 0.02)]


def test_ties_are_broken_by_the_runs_neuron_ties_stream():
    """A net whose every ReLU input is 0 (zero weights): every magnitude score ties, so the chosen neurons are
    the tie draw's, which comes from the run's seed under "neuron-ties" (what existing run folders chose)."""
    from ticketlab.certsparse.neurons import choose
    from ticketlab.seeding import generator

    net = nn.Sequential(nn.Linear(3, 8), nn.ReLU(), nn.Linear(8, 2))
    nn.init.zeros_(net[0].weight), nn.init.zeros_(net[0].bias)
    data = type("D", (), {"x_train": torch.randn(10, 3), "y_train": torch.zeros(10, dtype=torch.long)})()
    for seed in (0, 5):
        cfg = NeuronsConfig(source="x", score="magnitude", method="graft", fraction=0.5, seed=seed, score_samples=10)
        (got,) = choose(cfg, net, data)
        (want,) = lowest([torch.zeros(8, dtype=torch.float64)], 0.5, "layerwise", generator(seed, "neuron-ties"))
        assert torch.equal(got, want) and int(got.sum()) == 4


def test_only_stability_scores_need_a_net_the_bounds_can_follow(source, digits_net):
    from ticketlab.certsparse.neurons import check_neurons

    data, _ = digits_net
    tanh = nn.Sequential(nn.Flatten(), nn.Linear(64, 8), nn.ReLU(), nn.Tanh(), nn.Linear(8, 10))
    assert check_neurons(ncfg(source, score="magnitude"), tanh, data) is not None
    with pytest.raises(UserError, match=r"verification does not support layer 3 \(Tanh\)"):
        check_neurons(ncfg(source, score="stability"), tanh, data)
    with pytest.raises(UserError, match=r"^mlp1d has no ReLU modules to prune or graft$"):
        check_neurons(ncfg(source, score="magnitude"), nn.Sequential(nn.Flatten(), nn.Linear(64, 10)), data)


def test_a_channel_mask_removes_the_chosen_rows_biases_and_readers_columns():
    from ticketlab.certsparse.neurons import channel_mask

    net = nn.Sequential(nn.Linear(3, 4), nn.ReLU(), nn.Linear(4, 2))
    m = channel_mask(net, (3,), [torch.tensor([True, False, False, True])])
    assert m["0.weight"].all(1).tolist() == [False, True, True, False] and (~m["0.weight"][[0, 3]]).all()
    assert m["0.bias"].tolist() == [False, True, True, False]
    assert m["2.weight"].all(0).tolist() == [False, True, True, False] and (~m["2.weight"][:, [0, 3]]).all()


def test_pruning_a_relu_without_a_channel_group_before_it_is_refused_before_any_write(source, digits_net):
    from ticketlab.certsparse.neurons import check_neurons

    data, _ = digits_net
    first = nn.Sequential(nn.Flatten(), nn.ReLU(), nn.Linear(64, 10))
    with pytest.raises(UserError) as e:
        check_neurons(ncfg(source, score="magnitude", method="prune"), first, data)
    assert str(e.value) == "mlp1d: the ReLU after the input is not fed by a prunable channel group; use --method graft"
    assert check_neurons(ncfg(source, score="magnitude", method="graft"), first, data) is not None


def test_every_neurons_refusal_is_its_whole_message():
    for kw, msg in [
        (dict(source=None), "neurons needs --source RUN (an IMP run directory with a trained round 0)"),
        (dict(score="gain"), "unknown --score 'gain'; choose one of: stability, magnitude, random"),
        (dict(method="cut"), "unknown --method 'cut'; choose one of: prune, graft"),
        (dict(scope="local"), "unknown --scope 'local'; choose one of: layerwise, global"),
        (dict(score_bound="exact"), "unknown --score-bound 'exact'; choose one of: ibp, crown"),
        (dict(score_samples=0), "--score-samples must be >= 1, got 0"),
        (dict(score_eps=0.0), "--score stability needs --score-eps > 0 (pixel units), got 0.0"),
    ]:
        with pytest.raises(UserError) as e:
            NeuronsConfig(**({"source": "x"} | kw)).validate()
        assert str(e.value) == msg


def test_a_frozen_graft_keeps_its_given_slope_and_intercept(source, tmp_path):
    c = ncfg(source, method="graft", score="magnitude", fraction=0.25, slope=0.7, intercept=0.2, freeze_graft=True)
    run_neurons(c, tmp_path / "g", quiet=True)
    final = load_tensors(tmp_path / "g" / "final.safetensors")
    slopes = {k: v for k, v in final.items() if k.endswith(".slope")}
    assert slopes and all(torch.all(v == 0.7) for v in slopes.values())
    assert all(torch.all(final[k[: -len("slope")] + "intercept"] == 0.2) for k in slopes)


def test_a_finished_neurons_run_is_read_back_not_redone(source, tmp_path, monkeypatch):
    from ticketlab.certsparse import neurons as mod

    c = ncfg(source, method="graft", score="magnitude", fraction=0.25)
    first = run_neurons(c, tmp_path / "r", quiet=True)
    monkeypatch.setattr(mod, "choose", lambda *a: pytest.fail("a finished run chose again"))
    assert run_neurons(c, tmp_path / "r", quiet=True) == json.loads((tmp_path / "r" / "summary.json").read_text())
    assert first["test_acc"] == json.loads((tmp_path / "r" / "summary.json").read_text())["test_acc"]


def test_neurons_hands_its_data_folder_and_quiet_to_the_run_setup(source, tmp_path, monkeypatch):
    from ticketlab.certsparse import neurons as mod

    seen, real = [], mod.start_derived_run
    monkeypatch.setattr(mod, "start_derived_run", lambda *a: seen.append(a[3:6]) or real(*a))
    run_neurons(ncfg(source, score="magnitude", fraction=0.25), tmp_path / "r", data_dir=str(tmp_path), quiet=True)
    assert seen == [("cpu", str(tmp_path), True)]


def test_a_neurons_run_takes_its_budget_in_epochs(source, tmp_path):
    from ticketlab.data import load_dataset

    c = ncfg(
        source,
        score_samples=1000,
        score="magnitude",
        method="graft",
        fraction=0.25,
        train=TrainConfig(epochs=1, eval_every=100, batch_size=128),
    )
    s = run_neurons(c, tmp_path / "e", quiet=True)
    steps = c.train.total_iterations(len(load_dataset("digits").y_train))
    assert steps > 1 and s["early_stop_iter"] <= steps
    hist = json.loads((tmp_path / "e" / "metrics.json").read_text())["history"]
    assert hist[-1]["iter"] == steps
