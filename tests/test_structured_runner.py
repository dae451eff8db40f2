import pytest
import torch
from helpers import die_after_checkpoints

from ticketlab.cli import main
from ticketlab.io import load_tensors
from ticketlab.structured.runner import StructuredConfig, run_structured
from ticketlab.train import TrainConfig


def cfg(**kw):
    return StructuredConfig(
        **(
            {"dataset": "digits", "model": "conv2bn", "train": TrainConfig(iterations=40, eval_every=20, batch_size=32)}
            | kw
        )
    )


def test_slimming_prunes_the_requested_share_of_channels_and_compacts(tmp_path):
    s = run_structured(cfg(sparsity=0.5, finetune_iterations=20, scratch=["e", "b"]), tmp_path / "r", quiet=True)
    [p] = s["passes"]
    kept = sum(v[0] for v in p["channels"].values())
    assert kept == 64 and sum(v[1] for v in p["channels"].values()) == 128
    assert s["params"]["compact"] < s["params"]["dense"] and s["forward_flops"]["compact"] < s["forward_flops"]["dense"]
    assert s["scratch"]["e"]["iterations"] == 40
    ratio = s["forward_flops"]["dense"] / s["forward_flops"]["compact"]
    assert ratio > 2 and s["scratch"]["b"]["iterations"] == 80  # same FLOPs, capped at 2x
    final, mask = load_tensors(tmp_path / "r" / "final.safetensors"), load_tensors(tmp_path / "r" / "mask.safetensors")
    assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
    assert (
        run_structured(cfg(sparsity=0.5, finetune_iterations=20, scratch=["e", "b"]), tmp_path / "r", quiet=True) == s
    )


def test_multi_pass_l1_neuron_pruning_compounds(tmp_path):
    s = run_structured(
        cfg(model="lenet300", method="l1", sparsity=0.75, passes=2, finetune_iterations=10), tmp_path / "r", quiet=True
    )
    counts = [sum(v[0] for v in p["channels"].values()) for p in s["passes"]]
    assert counts == [200, 100]  # 400 neurons: half of them per pass, layer by layer
    assert s["widths"]["1"] == [75, 64] and s["widths"]["3"] == [25, 75]


def test_gibbs_filter_run_removes_channels(tmp_path):
    s = run_structured(cfg(model="conv2", method="gibbs", sparsity=0.5, mcmc_steps=2), tmp_path / "r", quiet=True)
    assert s["widths"]["0"][0] == 32 and s["params"]["compact"] < s["params"]["dense"]


def test_interrupted_slimming_resumes_bitwise(tmp_path, monkeypatch):
    c = cfg(train=TrainConfig(iterations=40, eval_every=20, batch_size=32), finetune_iterations=20)
    ref = run_structured(c, tmp_path / "a", quiet=True, checkpoint_every=10)
    restore = die_after_checkpoints(monkeypatch, 2)
    with pytest.raises(KeyboardInterrupt):
        run_structured(c, tmp_path / "b", quiet=True, checkpoint_every=10)
    restore()
    assert run_structured(c, tmp_path / "b", quiet=True, checkpoint_every=10)["passes"] == ref["passes"]
    a, b = load_tensors(tmp_path / "a" / "final.safetensors"), load_tensors(tmp_path / "b" / "final.safetensors")
    assert all(torch.equal(a[k], b[k]) for k in a)


@pytest.mark.parametrize(
    "args,msg",
    [
        (["--method", "nope"], "unknown structured method"),
        (["--sparsity", "1.5"], "--sparsity must be"),
        (["--scratch", "x"], "--scratch takes e and/or b"),
        (["--method", "gibbs", "--passes", "2"], "gibbs prunes during one training"),
        (["--model", "lenet300"], "bn-scale needs BatchNorm"),
    ],
)
def test_bad_structured_flags_exit_2_with_one_line(tmp_path, capsys, args, msg):
    assert (
        main(["structured", "--dataset", "digits", "--iterations", "2", "--quiet", "--out", str(tmp_path / "r"), *args])
        == 2
    )
    err = capsys.readouterr().err
    assert msg in err and err.count("\n") == 1


def test_slimming_a_model_without_batchnorm_is_refused_before_any_training(tmp_path, monkeypatch):
    from ticketlab.errors import UserError
    from ticketlab.runs import training

    monkeypatch.setattr(training, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("trained")))
    with pytest.raises(UserError, match="bn-scale needs BatchNorm layers"):
        run_structured(cfg(model="conv2", sparsity=0.5), tmp_path / "r", quiet=True)
