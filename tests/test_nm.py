"""N:M semi-structured sparsity: exactly N kept in every group of M along the input dimension, the best
scores kept, held through training, and prune-init's --pattern."""

import pytest
import torch

from ticketlab.cli import main
from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.sparse import nm_prune, parse_pattern


def test_two_of_four_keeps_the_two_best_of_each_group_of_four_inputs():
    s = torch.tensor([[4.0, 1.0, 3.0, 2.0, 0.1, 0.4, 0.2, 0.3], [1.0, 1.0, 5.0, 0.0, 9.0, 8.0, 7.0, 6.0]])
    m = nm_prune({"w": s}, {"w": torch.ones(2, 8, dtype=torch.bool)}, 2, 4, torch.Generator().manual_seed(0))["w"]
    assert m.tolist() == [
        [True, False, True, False, False, True, False, True],
        [True, False, True, False, True, True, False, False],
    ] or m.tolist() == [
        [True, False, True, False, False, True, False, True],
        [False, True, True, False, True, True, False, False],
    ]  # the 1.0 tie goes either way
    assert (m.view(2, 2, 4).sum(-1) == 2).all()


def test_conv_groups_run_over_input_channels_and_pruned_weights_score_lowest():
    g = torch.Generator().manual_seed(0)
    s = torch.rand(3, 8, 2, 2, generator=g)
    old = torch.ones(3, 8, 2, 2, dtype=torch.bool)
    old[:, 0] = False  # input channel 0 already pruned: never kept while others are available
    m = nm_prune({"c": s}, {"c": old}, 1, 4, g)["c"]
    per_group = m.movedim(1, -1).reshape(-1, 4).sum(-1)
    assert (per_group == 1).all() and not m[:, 0].any()
    best = torch.where(old, s, torch.full_like(s, -1)).movedim(1, -1).reshape(-1, 4).argmax(-1)
    assert torch.equal(m.movedim(1, -1).reshape(-1, 4).float().argmax(-1), best)


def test_bad_patterns_and_shapes_are_user_errors():
    for bad in ("2-4", "4:2", "0:4", "a:b"):
        with pytest.raises(UserError, match="--pattern"):
            parse_pattern(bad)
    with pytest.raises(UserError, match="not a multiple of 4"):
        nm_prune({"w": torch.rand(2, 6)}, {"w": torch.ones(2, 6, dtype=torch.bool)}, 2, 4, torch.Generator())


def test_prune_init_with_a_2_4_pattern_holds_it_through_training(tmp_path, capsys):
    out = tmp_path / "p"
    assert (
        main(
            [
                "prune-init",
                "--dataset",
                "digits",
                "--model",
                "lenet300",
                "--method",
                "magnitude",
                "--density",
                "0.5",
                "--pattern",
                "2:4",
                "--iterations",
                "40",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    mask = load_tensors(out / "mask.safetensors")
    final = load_tensors(out / "final.safetensors")
    for n, m in mask.items():
        assert (m.reshape(m.shape[0], -1, 4).sum(-1) == 2).all()
        assert torch.count_nonzero(final[n][~m]) == 0
    code = main(
        [
            "prune-init",
            "--dataset",
            "digits",
            "--model",
            "lenet300",
            "--density",
            "0.1",
            "--pattern",
            "2:4",
            "--quiet",
            "--out",
            str(tmp_path / "x"),
        ]
    )
    err = capsys.readouterr().err
    assert code == 2 and "set --density 0.5" in err and not (tmp_path / "x").exists()


def test_gradual_compress_to_2_4_steps_through_3_of_4_and_ends_exactly_2_4(tmp_path):
    """A trained lenet300 compressed to 2:4 in 3 steps on the linear path: densities 0.833, 0.667, 0.5 keep
    round(4 d) = 3, 3 and 2 of every 4 weights."""
    src = tmp_path / "imp"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "lenet300",
                "--iterations",
                "30",
                "--rounds",
                "1",
                "--quiet",
                "--out",
                str(src),
            ]
        )
        == 0
    )
    out = tmp_path / "c"
    assert (
        main(
            [
                "compress",
                "--source",
                str(src),
                "--dataset",
                "digits",
                "--model",
                "lenet300",
                "--method",
                "magnitude",
                "--density",
                "0.5",
                "--pattern",
                "2:4",
                "--steps",
                "3",
                "--schedule",
                "linear",
                "--iterations",
                "30",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    s = __import__("json").loads((out / "summary.json").read_text())
    assert [round(st["density"], 4) for st in s["steps"]] == [0.75, 0.75, 0.5]
    mask = load_tensors(out / "mask.safetensors")
    final = load_tensors(out / "final.safetensors")
    for n, m in mask.items():
        assert (m.reshape(m.shape[0], -1, 4).sum(-1) == 2).all()
        assert torch.count_nonzero(final[n][~m]) == 0


def test_imp_with_a_2_4_pattern_ends_on_exact_2_4_tickets(tmp_path, capsys):
    out = tmp_path / "imp"
    assert (
        main(
            [
                "imp",
                "--dataset",
                "digits",
                "--model",
                "lenet300",
                "--iterations",
                "20",
                "--rate",
                "0.3",
                "--target-density",
                "0.5",
                "--pattern",
                "2:4",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    s = __import__("json").loads((out / "summary.json").read_text())
    last = len(s["rounds"]) - 1
    assert last >= 2 and s["rounds"][-1]["density"] == 0.5
    assert s["rounds"][1]["density"] == 0.75  # round 1 keeps round(4 x 0.7) = 3 of every 4
    for k in range(1, last + 1):
        mask = load_tensors(out / f"round_{k:02d}" / "mask.safetensors")
        prev = load_tensors(out / f"round_{k - 1:02d}" / "mask.safetensors")
        for n, m in mask.items():
            assert (m <= prev[n]).all()  # a round only removes
        if k == last:
            assert all((m.reshape(m.shape[0], -1, 4).sum(-1) == 2).all() for m in mask.values())
    code = main(["imp", "--dataset", "digits", "--pattern", "2:4", "--quiet", "--out", str(tmp_path / "x")])
    assert code == 2 and "give --target-density 0.5" in capsys.readouterr().err


def test_semi_structured_export_checks_2_4_and_refuses_without_cuda():
    from torch import nn

    from ticketlab.deploy.semi import is_2_4, semi_structured_

    w = torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 4.0]])
    assert is_2_4(w) and not is_2_4(torch.ones(1, 8)) and not is_2_4(torch.zeros(2, 6))
    with pytest.raises(UserError, match="^2:4 semi-structured layers run on CUDA only") as e:
        semi_structured_(nn.Sequential(nn.Linear(8, 4)))
    assert "move the model with --device cuda, or export" in str(e.value)
    assert str(e.value).endswith("export the sparse or compact form for the CPU")


def test_a_cuda_model_is_converted_in_half_precision_by_torchs_semi_structured_format(monkeypatch):
    """On CUDA, semi_structured_ hands the model, fp16 (the default) or the asked dtype, and torch's own
    converter to convert_2_4_ (faked here: no test may need a GPU)."""
    from types import SimpleNamespace

    from torch import nn
    from torch.sparse import to_sparse_semi_structured

    import ticketlab.deploy.semi as semi

    calls = []
    monkeypatch.setattr(semi, "convert_2_4_", lambda *a: calls.append(a) or {"0": "2:4"})

    class OnCuda(nn.Module):
        def parameters(self, recurse=True):
            yield SimpleNamespace(device=torch.device("cuda", 0))

    model = OnCuda()
    assert semi.semi_structured_(model) == {"0": "2:4"}
    semi.semi_structured_(model, torch.bfloat16)
    assert calls == [
        (model, torch.float16, to_sparse_semi_structured),
        (model, torch.bfloat16, to_sparse_semi_structured),
    ]


@pytest.mark.parametrize(
    "w, ok",
    [
        ([[1.0, 1.0, 0.0, 0.0]], True),  # exactly 2 of 4
        ([[1.0, 1.0, 1.0, 0.0]], False),  # 3 of 4
        ([[0.0, 0.0, 0.0, 0.0]], True),  # fewer than 2 is still at most 2
        ([[1.0, 0.0, 0.0, 1.0], [1.0, 1.0, 1.0, 1.0]], False),  # one bad row is enough
        ([[1.0, 1.0, 0.0, 0.0, 1.0, 0.0, 1.0, 0.0]], True),
        ([[1.0, 0.0, 1.0, 0.0, 1.0, 1.0, 1.0, 0.0]], False),  # the second group of four has 3
        ([[1.0, 0.0, 1.0, 0.0, 0.0, 1.0]], False),  # inputs not a multiple of 4
        ([[[1.0, 0.0, 0.0, 0.0]]], False),  # not a matrix
    ],
)
def test_2_4_means_at_most_two_nonzeros_in_each_group_of_four_consecutive_inputs(w, ok):
    from ticketlab.deploy.semi import is_2_4

    assert is_2_4(torch.tensor(w)) is ok


def test_2_4_groups_run_along_the_input_dimension_not_down_the_outputs():
    from ticketlab.deploy.semi import is_2_4

    w = torch.tensor([[1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0], [1.0, 1.0, 0.0, 0.0]])
    assert is_2_4(w) and not is_2_4(w.t())  # each column of w has 4 nonzeros


def test_conversion_casts_the_model_and_converts_only_the_2_4_linear_layers():
    from torch import nn

    from ticketlab.deploy.semi import convert_2_4_

    model = nn.Sequential(nn.Linear(4, 8), nn.ReLU(), nn.Linear(8, 4), nn.Conv1d(1, 1, 3))
    with torch.no_grad():  # a dense layer first, then a 2:4 one: every layer is looked at
        model[2].weight.copy_(torch.tensor([[1.0, 0.0, 2.0, 0.0, 0.0, 3.0, 0.0, 4.0]] * 4))
    seen = []

    def convert(w):
        seen.append(w.dtype)
        return w * 2

    report = convert_2_4_(model, torch.float64, convert)
    assert report == {"0": "dense (not 2:4)", "2": "2:4"}
    assert seen == [torch.float64] and model[0].weight.dtype == torch.float64 and model[3].weight.dtype == torch.float64
    assert model[2].weight[0, 2] == 4.0 and not model[2].weight.requires_grad
    assert model[0].weight.requires_grad  # a dense layer is left as it was


@pytest.mark.parametrize("error", [RuntimeError, ValueError])
def test_a_layer_the_kernels_refuse_stays_dense_and_says_why_in_80_characters(error):
    from torch import nn

    from ticketlab.deploy.semi import convert_2_4_

    model = nn.Sequential(nn.Linear(4, 2))
    with torch.no_grad():
        model[0].weight.copy_(torch.tensor([[1.0, 0.0, 1.0, 0.0], [0.0, 1.0, 0.0, 1.0]]))
    before = model[0].weight

    def refuse(w):
        raise error("shape not supported " + "x" * 100 + "\nsecond line")

    report = convert_2_4_(model, torch.float32, refuse)
    assert report == {"0": f"dense ({('shape not supported ' + 'x' * 100)[:80]})"}
    assert model[0].weight is before


def test_the_semi_structured_benchmark_skips_without_cuda():
    import subprocess
    import sys
    from pathlib import Path

    if torch.cuda.is_available():
        pytest.skip("a GPU is present: the benchmark would run")
    script = Path(__file__).resolve().parent.parent / "benchmarks" / "bench_semi_structured.py"
    r = subprocess.run([sys.executable, str(script)], capture_output=True, text=True)
    assert r.returncode == 0 and "no CUDA device" in r.stdout


@pytest.mark.parametrize("method", ["static", "set", "rigl"])
def test_sparse_trainers_keep_every_group_at_n_through_drop_and_grow(method):
    import torch.nn.functional as F
    from torch import nn

    import ticketlab.dst as dst

    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(16, 32), nn.ReLU(), nn.Linear(32, 8))
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    t = dst.make(
        method,
        model,
        opt,
        density=0.5,
        distribution="uniform",
        total_steps=60,
        delta_t=5,
        pattern=(2, 4),
        input_shape=(16,),
    )
    g = torch.Generator().manual_seed(1)
    changed = False
    for _ in range(40):
        before = [m.clone() for m in t.mask_list]
        x, y = torch.randn(8, 16, generator=g), torch.randint(0, 8, (8,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        opt.step()
        t.step()
        changed |= any(not torch.equal(a, b) for a, b in zip(before, t.mask_list))
        for p, m in zip(t.params, t.mask_list):
            assert (m.reshape(m.shape[0], -1, 4).sum(-1) == 2).all()
            assert torch.count_nonzero(p[~m]) == 0
    assert changed is (method != "static")
    with pytest.raises(UserError, match="--pattern 2:4 takes"):
        dst.make("snfs", model, opt, density=0.5, total_steps=60, pattern=(2, 4))
