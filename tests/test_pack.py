import pytest
import torch

from ticketlab.errors import UserError
from ticketlab.io import load_tensors
from ticketlab.lottery import IMPConfig, imp
from ticketlab.ticket import describe, pack_run, unpack_ticket
from ticketlab.train import TrainConfig


@pytest.fixture(scope="module")
def run_dir(tmp_path_factory):
    out = tmp_path_factory.mktemp("pack") / "run"
    cfg = IMPConfig(model="lenet300", dataset="digits", rounds=3, train=TrainConfig(iterations=30, eval_every=10))
    imp(cfg, out, quiet=True)
    return out


@pytest.mark.parametrize("weights", [None, "fp32", "fp16"])
def test_unpack_rebuilds_init_and_mask_bitwise(run_dir, tmp_path, weights):
    pack_run(run_dir, 3, tmp_path / "t.safetensors", weights=weights)
    t = unpack_ticket(tmp_path / "t.safetensors")
    init = load_tensors(run_dir / "init.safetensors")
    mask = load_tensors(run_dir / "round_03" / "mask.safetensors")
    assert all(torch.equal(v, init[k]) for k, v in t.model.state_dict().items())
    assert set(t.mask) == set(mask) and all(torch.equal(t.mask[n], mask[n]) for n in mask)
    if weights is None:
        assert t.weights is None
    else:
        final = load_tensors(run_dir / "round_03" / "final.safetensors")
        tol = 0 if weights == "fp32" else 1e-3
        assert all(torch.allclose(t.weights[k], final[k], atol=tol, rtol=tol) for k in final)


def test_mask_costs_about_the_binary_entropy_plus_a_09_kb_header(run_dir, tmp_path):
    d = pack_run(run_dir, 3, tmp_path / "t.safetensors")  # density 0.52: within 1% of the entropy
    assert 0.5 < d["density"] < 0.55 and d["ratio_to_entropy"] <= 1.01
    header = d["file_bytes"] - d["mask_bits"] / 8  # the JSON recipe and the safetensors index
    assert 800 <= header <= 1000
    assert d["file_bytes"] < d["prunable_weights"] * 4 / 20  # far below fp32 dense weights
    d1 = pack_run(run_dir, 1, tmp_path / "t1.safetensors")  # density 0.80 (rarer symbol 20%): also within 1%
    assert d1["ratio_to_entropy"] <= 1.01 and 800 <= d1["file_bytes"] - d1["mask_bits"] / 8 <= 1000


def test_foreign_and_corrupt_files_are_refused(run_dir, tmp_path):
    with pytest.raises(UserError, match="not a ticketlab ticket"):
        unpack_ticket(run_dir / "init.safetensors")
    (tmp_path / "junk").write_bytes(b"junk")
    with pytest.raises(UserError, match="not a ticketlab ticket"):
        unpack_ticket(tmp_path / "junk")


def test_pack_refuses_unfinished_rounds_and_non_runs(run_dir, tmp_path):
    with pytest.raises(UserError, match="has not finished"):
        pack_run(run_dir, 9, tmp_path / "t.safetensors")
    with pytest.raises(UserError, match="not an IMP run"):
        pack_run(tmp_path, 1, tmp_path / "t.safetensors")


def test_describe_reports_bits_per_weight(run_dir, tmp_path):
    pack_run(run_dir, 1, tmp_path / "t.safetensors")
    from ticketlab.ticket import read_ticket

    header, _ = read_ticket(tmp_path / "t.safetensors")
    d = describe(header, tmp_path / "t.safetensors")
    assert 0.7 < d["density"] < 0.9 and d["bits_per_weight"] == pytest.approx(d["mask_bits"] / d["prunable_weights"])
