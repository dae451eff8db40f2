"""--precision bf16: autocast in the training step only; masks exact, pruned weights exactly zero, old hashes kept."""

import pytest
import torch
from helpers import one_line_exit_2

from ticketlab.cli import main
from ticketlab.io import load_tensors
from ticketlab.lottery import IMPConfig, imp
from ticketlab.runs.rundir import config_hash
from ticketlab.train import TrainConfig


def cfg(precision):
    return IMPConfig(
        model="lenet300",
        dataset="digits",
        rounds=2,
        rate=0.5,
        controls=["reinit"],
        train=TrainConfig(iterations=60, eval_every=20, batch_size=60, precision=precision),
    )


@pytest.mark.slow
def test_bf16_keeps_masks_exact_and_pruned_weights_zero_and_trains_as_well(tmp_path):
    s16 = imp(cfg("bf16"), tmp_path / "bf16", quiet=True)
    s32 = imp(cfg("fp32"), tmp_path / "fp32", quiet=True)
    for r in (1, 2):
        d = tmp_path / "bf16" / f"round_0{r}"
        for where in (d, d / "reinit"):
            final = load_tensors(where / "final.safetensors")
            mask = load_tensors(d / "mask.safetensors")
            assert all(torch.count_nonzero(final[n][~m]) == 0 for n, m in mask.items())
            assert all(final[n].dtype == torch.float32 for n in mask)  # weights stay fp32
        assert s16["rounds"][r]["layer_densities"] == s32["rounds"][r]["layer_densities"]  # exact per-layer counts
    f16 = load_tensors(tmp_path / "bf16" / "round_00" / "final.safetensors")
    f32 = load_tensors(tmp_path / "fp32" / "round_00" / "final.safetensors")
    assert any(not torch.equal(f16[n], f32[n]) for n in f16)  # autocast really ran
    for a, b in zip(s16["rounds"], s32["rounds"]):
        assert abs(a["test_acc"] - b["test_acc"]) < 0.05


@pytest.mark.slow
def test_bf16_is_deterministic(tmp_path):
    a = imp(cfg("bf16"), tmp_path / "a", quiet=True)
    b = imp(cfg("bf16"), tmp_path / "b", quiet=True)
    strip = lambda s: {k: v for k, v in s.items() if k != "config"}  # noqa: E731
    assert strip(a) == strip(b)


def test_fp32_leaves_the_config_and_its_hash_as_before():
    assert "precision" not in TrainConfig().to_dict()
    assert TrainConfig(precision="bf16").to_dict()["precision"] == "bf16"
    assert config_hash(cfg("fp32").to_dict()) != config_hash(cfg("bf16").to_dict())


def test_unknown_precision_is_one_line(tmp_path, capsys):
    code = main(
        ["imp", "--dataset", "digits", "--model", "lenet300", "--precision", "fp16", "--out", str(tmp_path / "r")]
    )
    one_line_exit_2(code, capsys.readouterr().err, "unknown --precision 'fp16'")
    assert not (tmp_path / "r").exists()
