import pytest
import torch
from torch import nn

from ticketlab.deploy import SparseLinear, load_sparse, save_sparse, sparse_layers, sparsify
from ticketlab.errors import UserError
from ticketlab.io import save_tensors
from ticketlab.models import build_model
from ticketlab.sparse import apply_mask_, ones_mask


def random_mask(model, density, seed=0):
    g = torch.Generator().manual_seed(seed)
    return {n: torch.rand(m.shape, generator=g) < density for n, m in ones_mask(model).items()}


@pytest.mark.parametrize("density", [0.02, 0.2, 0.7])
@pytest.mark.parametrize("kernel", ["csr", "gather", "dense"])
def test_sparse_linear_matches_the_masked_dense_layer(density, kernel):
    torch.manual_seed(0)
    dense = nn.Linear(50, 30)
    m = torch.rand(30, 50) < density
    with torch.no_grad():
        dense.weight.mul_(m)
    layer = SparseLinear(dense.weight, dense.bias)
    assert layer.nnz == int(m.sum())
    for shape in [(1, 50), (7, 50), (256, 50), (3, 4, 50)]:
        x = torch.randn(*shape)
        assert torch.allclose(layer(x, kernel=kernel), dense(x), atol=1e-5)


@pytest.mark.parametrize(
    "name,shape",
    [("lenet300", (1, 28, 28)), pytest.param("conv2", (1, 28, 28), marks=pytest.mark.slow), ("mlp1d", (1, 40))],
)
def test_sparsified_models_give_the_masked_models_outputs(name, shape):
    model = build_model(name, shape, 10, seed=0).eval()
    mask = random_mask(model, 0.05)
    apply_mask_(model, mask)
    sp = sparsify(model, tune=False)
    assert len(sparse_layers(sp)) == sum(isinstance(m, (nn.Linear, nn.Conv1d, nn.Conv2d)) for m in model.modules())
    with torch.no_grad():
        for kernel in ("csr", "gather", "dense"):
            for layer in sparse_layers(sp).values():
                layer.kernels = {1: kernel}
            for b in (1, 5, 256):
                x = torch.randn(b, *shape)
                assert torch.allclose(sp(x), model(x), atol=1e-5)
        tuned = sparsify(model, tune=True, input_shape=shape, batch_sizes=(1, 64), repeats=2)
        x = torch.randn(64, *shape)
        assert torch.allclose(tuned(x), model(x), atol=1e-5)


def test_tuning_records_a_kernel_per_batch_size_and_the_nearest_one_is_used():
    layer = sparsify(nn.Sequential(nn.Linear(64, 64)), tune=True, batch_sizes=(1, 64), repeats=3)[0]
    assert set(layer.kernels) == {1, 64}
    assert {k.partition("@")[0] for k in layer.kernels.values()} <= {"csr", "gather", "dense"}
    layer.kernels = {1: "dense", 256: "csr"}
    assert layer.kernel_for(1) == "dense" and layer.kernel_for(10) == "dense"
    assert layer.kernel_for(20) == "csr" and layer.kernel_for(1000) == "csr"


def test_sparsify_applies_a_given_mask_and_leaves_the_original_alone():
    model = build_model("lenet300", (1, 28, 28), 10, seed=0)
    mask = random_mask(model, 0.1)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    sp = sparsify(model, mask, tune=False)
    assert sum(m.nnz for m in sparse_layers(sp).values()) == sum(int(m.sum()) for m in mask.values())
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_save_and_load_round_trip_is_exact_and_small(tmp_path):
    model = build_model("lenet300", (1, 28, 28), 10, seed=0).eval()
    apply_mask_(model, random_mask(model, 0.02))
    sp = sparsify(model, tune=False)
    sparse_layers(sp)["1"].kernels = {1: "dense", 256: "csr"}
    save_sparse(sp, tmp_path / "m.safetensors", {"model": "lenet300", "input_shape": [1, 28, 28], "num_classes": 10})
    save_tensors(tmp_path / "dense.safetensors", model.state_dict())
    loaded, recipe = load_sparse(tmp_path / "m.safetensors")
    assert recipe["model"] == "lenet300"
    x = torch.randn(8, 1, 28, 28)
    with torch.no_grad():
        assert torch.equal(loaded(x), sp(x))
    assert {n: m.kernels for n, m in sparse_layers(loaded).items()} == {
        n: m.kernels for n, m in sparse_layers(sp).items()
    }
    ratio = (tmp_path / "m.safetensors").stat().st_size / (tmp_path / "dense.safetensors").stat().st_size
    assert ratio < 0.05  # 2% of the weights, 8 bytes each (value, int32 column) against 4, plus biases


def test_foreign_files_are_refused(tmp_path):
    save_tensors(tmp_path / "x.safetensors", {"a": torch.zeros(2)})
    with pytest.raises(UserError, match="not a ticketlab sparse export"):
        load_sparse(tmp_path / "x.safetensors")
    (tmp_path / "y.safetensors").write_bytes(b"garbage")
    with pytest.raises(UserError, match="not a ticketlab sparse export"):
        load_sparse(tmp_path / "y.safetensors")


def test_a_file_with_broken_csr_indices_is_refused_not_crashed(tmp_path):
    model = build_model("lenet300", (1, 28, 28), 10, seed=0).eval()
    apply_mask_(model, random_mask(model, 0.02))
    sp = sparsify(model, tune=False)
    sparse_layers(sp)["1"].col_indices[0] = 10**6  # out of range: would read outside the input
    save_sparse(sp, tmp_path / "bad.safetensors", {"model": "lenet300", "input_shape": [1, 28, 28], "num_classes": 10})
    with pytest.raises(UserError, match="does not match"):
        load_sparse(tmp_path / "bad.safetensors")


@pytest.mark.parametrize("kernel", ["csr", "gather", "dense"])
@pytest.mark.parametrize(
    "conv",
    [
        nn.Conv2d(3, 8, 3, padding=1),
        nn.Conv2d(4, 6, 3, stride=2, padding=2, dilation=2),
        nn.Conv1d(2, 5, 5, stride=2, padding=2),
        nn.Conv2d(3, 4, 1, bias=False),
    ],
)
def test_sparse_convolutions_match_the_masked_dense_convolution(conv, kernel):
    from ticketlab.deploy import SparseConv

    torch.manual_seed(0)
    with torch.no_grad():
        conv.weight.mul_(torch.rand(conv.weight.shape) < 0.1)
    layer = SparseConv(conv)
    assert layer.nnz == int(conv.weight.ne(0).sum())
    for b in (1, 5):
        x = torch.randn(b, conv.in_channels, *([9, 11] if isinstance(conv, nn.Conv2d) else [17]))
        with torch.no_grad():
            assert torch.allclose(layer(x, kernel=kernel), conv(x), atol=1e-5)


def test_tuned_sparse_conv_model_round_trips_through_its_file(tmp_path):
    model = build_model("conv2bn", (1, 12, 12), 10, seed=0).eval()
    mask = random_mask(model, 0.05)
    apply_mask_(model, mask)
    sp = sparsify(model, input_shape=(1, 12, 12), batch_sizes=(1, 16), repeats=2)
    assert sum(type(m).__name__ == "SparseConv" for m in sparse_layers(sp).values()) == 2
    save_sparse(sp, tmp_path / "s.safetensors", {"model": "conv2bn", "input_shape": [1, 12, 12], "num_classes": 10})
    back, _ = load_sparse(tmp_path / "s.safetensors")
    x = torch.randn(16, 1, 12, 12)
    with torch.no_grad():
        assert torch.allclose(back(x), model(x), atol=1e-5)
    assert [m.kernels for m in sparse_layers(back).values()] == [m.kernels for m in sparse_layers(sp).values()]


def test_a_thread_count_chosen_per_layer_and_batch_is_honoured_recorded_and_validated(tmp_path, monkeypatch):
    from ticketlab.deploy import SparseLinear, load_sparse, save_sparse, sparse_layers, sparsify
    from ticketlab.models import build_model

    layer = SparseLinear(torch.randn(6, 5) * (torch.rand(6, 5) < 0.5), torch.randn(6))
    layer.kernels = {1: "gather@1", 64: "csr"}
    assert layer.choice_for(1) == ("gather", 1) and layer.choice_for(100) == ("csr", None)
    for bad in ({1: "gather@0"}, {1: "fast"}, {1: "csr@x"}):
        with pytest.raises(ValueError):
            layer.kernels = bad
    torch.set_num_threads(2)
    seen = []
    real = layer._forward
    monkeypatch.setattr(layer, "_forward", lambda *a: (seen.append(torch.get_num_threads()), real(*a))[1])
    x = torch.randn(1, 5)
    y = layer(x)
    assert seen == [1] and torch.get_num_threads() == 2  # one thread inside the call, the caller's after
    assert torch.allclose(y, layer(x, kernel="dense"), atol=1e-6)
    layer(torch.randn(80, 5))
    assert seen[-1] == 2
    model = build_model("lenet300", (1, 8, 8), 10).eval()
    sp = sparsify(model, tune=False)
    for m in sparse_layers(sp).values():
        m.kernels = {1: "gather@1", 256: "csr"}
    save_sparse(sp, tmp_path / "s.safetensors", {"model": "lenet300", "input_shape": [1, 8, 8], "num_classes": 10})
    back, _ = load_sparse(tmp_path / "s.safetensors")
    assert all(m.kernels == {1: "gather@1", 256: "csr"} for m in sparse_layers(back).values())


def test_tuning_tries_one_thread_beside_the_callers():
    from ticketlab.deploy import SparseLinear, tune_

    torch.set_num_threads(2)
    layer = SparseLinear(torch.randn(8, 8) * (torch.rand(8, 8) < 0.3), None)
    timings = tune_(layer, batch_sizes=(1,), repeats=3)
    assert set(timings[1]) == {"csr", "gather", "dense", "csr@1", "gather@1", "dense@1"}
    assert layer.kernels[1] == min(timings[1], key=timings[1].get)
