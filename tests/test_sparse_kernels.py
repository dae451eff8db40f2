"""Sparse training kernels against the masked dense layer: outputs, gradients and whole optimizer steps."""

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.sparse import MaskEnforcer
from ticketlab.sparse import kernels as K

pytestmark = pytest.mark.skipif(not K.available(), reason="the sparse kernels need a C compiler")


def _masked_linear(n_in, n_out, density, seed, bias=True):
    g = torch.Generator().manual_seed(seed)
    layer = nn.Linear(n_in, n_out, bias=bias)
    with torch.no_grad():
        layer.weight.copy_(torch.randn(n_out, n_in, generator=g))
        if bias:
            layer.bias.copy_(torch.randn(n_out, generator=g))
        mask = torch.rand(n_out, n_in, generator=g) < density
        layer.weight.mul_(mask)
    return layer, mask


def test_tile_and_untile_are_inverse_and_pad_with_zeros():
    x = torch.arange(70 * 3, dtype=torch.float32).view(70, 3)
    t = K.tile(x)
    assert t.shape == (2, 3, 64)
    assert torch.equal(t[0, :, 5], x[5]) and torch.equal(t[1, :, 1], x[65])
    assert torch.equal(t[1, :, 6:], torch.zeros(3, 58))  # rows 70..127 are padding
    assert torch.equal(K.untile(t, 70), x)


def test_structure_orders_match_the_mask():
    mask = torch.tensor([[1, 0, 1], [0, 0, 0], [1, 1, 0]], dtype=torch.bool)
    st = K.Structure(mask)
    assert st.nnz == 4
    assert st.ptr.tolist() == [0, 2, 2, 4] and st.idx.tolist() == [0, 2, 0, 1]
    assert st.pos.tolist() == [0, 2, 6, 7]
    assert st.cptr.tolist() == [0, 2, 3, 4] and st.cidx.tolist() == [0, 2, 2, 0]
    assert st.cpos.tolist() == [0, 6, 7, 2]
    assert st.cpos[st.cslot].tolist() == st.pos.tolist()  # cslot: row order -> column order


@pytest.mark.parametrize("batch", [1, 64, 100])
@pytest.mark.parametrize("bias", [True, False])
def test_forward_and_gradients_equal_the_masked_dense_layer(batch, bias):
    layer, mask = _masked_linear(37, 29, 0.3, seed=batch, bias=bias)
    st = K.Structure(mask)
    x = torch.randn(batch, 37, requires_grad=True)
    gy = torch.randn(batch, 29)
    h = torch.zeros(st.nnz, requires_grad=True)
    y = K._SparseLinear.apply(x, h, layer.weight, layer.bias, st)
    y.backward(gy)
    gx, gh = x.grad.clone(), h.grad.clone()
    gb = None if not bias else layer.bias.grad.clone()
    x.grad = None
    if bias:
        layer.bias.grad = None
    yd = layer(x)
    yd.backward(gy)
    torch.testing.assert_close(y, yd, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gh, layer.weight.grad[mask], rtol=1e-5, atol=1e-5)
    if bias:
        torch.testing.assert_close(gb, layer.bias.grad, rtol=1e-5, atol=1e-5)


def test_leading_dimensions_are_kept():
    layer, mask = _masked_linear(8, 5, 0.5, seed=3)
    st = K.Structure(mask)
    x = torch.randn(2, 3, 8)
    y = K._SparseLinear.apply(x, torch.zeros(st.nnz), layer.weight, layer.bias, st)
    torch.testing.assert_close(y, layer(x), rtol=1e-5, atol=1e-5)


def _net(seed=0):
    torch.manual_seed(seed)
    return nn.Sequential(nn.Linear(30, 40), nn.ReLU(), nn.Linear(40, 40), nn.ReLU(), nn.Linear(40, 5))


OPTIMIZERS = {
    "sgd": lambda p: torch.optim.SGD(p, lr=0.05),
    "momentum": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, weight_decay=1e-3),
    "nesterov": lambda p: torch.optim.SGD(p, lr=0.05, momentum=0.9, nesterov=True, weight_decay=1e-3),
    "adam": lambda p: torch.optim.Adam(p, lr=1e-2, weight_decay=1e-3),
    "adamw": lambda p: torch.optim.AdamW(p, lr=1e-2, weight_decay=0.1),
}


def _pair(name, density=0.3):
    a = _net()
    b = copy.deepcopy(a)
    g = torch.Generator().manual_seed(1)
    mask = {n: torch.rand(p.shape, generator=g) < density for n, p in a.named_parameters() if n.endswith("weight")}
    oa, ob = OPTIMIZERS[name](a.parameters()), OPTIMIZERS[name](b.parameters())
    ea, eb = MaskEnforcer(a, mask, oa, after_step=False), MaskEnforcer(b, mask, ob, after_step=False)
    return a, b, mask, oa, ob, ea, eb


def _steps(model, opt, enforcer, n, seed=5):
    g = torch.Generator().manual_seed(seed)
    for _ in range(n):
        x, y = torch.randn(70, 30, generator=g), torch.randint(0, 5, (70,), generator=g)
        opt.zero_grad(set_to_none=True)
        F.cross_entropy(model(x), y).backward()
        enforcer.step()


@pytest.mark.parametrize("name", list(OPTIMIZERS))
def test_one_sparse_step_equals_the_masked_dense_step(name):
    a, b, mask, oa, ob, ea, eb = _pair(name)
    _steps(a, oa, ea, 1)
    with K.SparseKernels(b, lambda: mask, ob):
        _steps(b, ob, eb, 1)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=1e-6, msg=n)
    for pa, pb in zip(a.parameters(), b.parameters()):  # optimizer state in torch's own keys, same values
        sa, sb = oa.state[pa], ob.state[pb]
        assert set(sa) == set(sb)
        for k in sa:
            torch.testing.assert_close(torch.as_tensor(sb[k]), torch.as_tensor(sa[k]), rtol=0, atol=1e-6)


@pytest.mark.parametrize("name", ["momentum", "adam"])
def test_training_stays_with_the_dense_path_and_pruned_weights_stay_exactly_zero(name):
    a, b, mask, oa, ob, ea, eb = _pair(name, density=0.2)
    _steps(a, oa, ea, 15)
    with K.SparseKernels(b, lambda: mask, ob):
        _steps(b, ob, eb, 15)
    for n, p in b.named_parameters():
        if n in mask:
            assert torch.count_nonzero(p[~mask[n]]) == 0
            assert p.grad is None  # the sparse layers' gradients never went dense
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=5e-5)


def test_leaving_restores_the_dense_forward_and_drops_the_hooks():
    a, b, mask, oa, ob, ea, eb = _pair("momentum")
    with K.SparseKernels(b, lambda: mask, ob):
        assert "forward" in vars(b[0])
    assert all("forward" not in vars(m) for m in b)
    assert not ob._optimizer_step_pre_hooks and not ob._optimizer_step_post_hooks
    _steps(a, oa, ea, 2)
    _steps(b, ob, eb, 2)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)  # outside, exactly the dense path


def test_a_mask_change_rebuilds_the_structure():
    a, b, mask, oa, ob, ea, eb = _pair("sgd")
    current = dict(mask)
    k = K.SparseKernels(b, lambda: current, ob)
    with k:
        _steps(b, ob, eb, 1)
        before = k.layers[0].st
        new = torch.zeros_like(mask["0.weight"])
        new[:, :3] = True  # only the first three inputs
        current["0.weight"] = new
        with torch.no_grad():
            b[0].weight.mul_(new)
        x = torch.randn(4, 30)
        y = b(x)
        assert k.layers[0].st is not before and k.layers[0].st.nnz == int(new.sum())
        x2 = x.clone()
        x2[:, 3:] = 0  # inputs the new mask does not read
        torch.testing.assert_close(b(x2), y)


def test_a_weight_changed_in_place_is_read_again():
    layer, mask = _masked_linear(20, 10, 0.5, seed=2)
    k = K.SparseKernels(nn.Sequential(layer), lambda: {"0.weight": mask})
    with k, torch.no_grad():
        x = torch.randn(3, 20)
        layer(x)
        layer.weight.mul_(2)  # an in-place change bumps the weight's version
        torch.testing.assert_close(layer(x), F.linear(x, layer.weight, layer.bias), rtol=1e-5, atol=1e-5)


def test_no_masks_or_a_dense_step_runs_the_dense_layer():
    a, b, mask, oa, ob, ea, eb = _pair("momentum")
    state = {"masks": mask, "dense": False}
    with K.SparseKernels(b, lambda: state["masks"], ob, dense_step=lambda: state["dense"]):
        state["dense"] = True
        _steps(b, ob, eb, 1)
        assert b[0].weight.grad is not None  # the dense gradient, as a growth step needs
        state["dense"], state["masks"] = False, None
        _steps(b, ob, eb, 1)
        assert b[0].weight.grad is not None
    _steps(a, oa, ea, 1)
    _steps(a, oa, ea, 1)
    for pa, pb in zip(a.parameters(), b.parameters()):
        assert torch.equal(pa, pb)


def test_a_dense_gradient_of_the_same_weight_is_merged_into_one_step():
    """A loss that reads a weight directly as well as through the layer (certified training's bounds) gets one
    optimizer step from the sum of both gradients; torch's fused step of it (which leaves the weight's version
    as it was) must not leave the kernels reading stale weights at the next step."""
    a, b, mask, oa, ob, ea, eb = _pair("momentum")
    g = torch.Generator().manual_seed(4)
    with K.SparseKernels(b, lambda: mask, ob):
        for _ in range(4):
            x, y = torch.randn(70, 30, generator=g), torch.randint(0, 5, (70,), generator=g)
            for model, opt, enf in ((a, oa, ea), (b, ob, eb)):
                opt.zero_grad(set_to_none=True)
                loss = F.cross_entropy(model(x), y) + model[2].weight.square().sum()
                loss.backward()
                enf.step()
    for pa, pb in zip(a.parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=1e-6)


def test_auto_keeps_the_dense_layer_where_sparse_does_not_pay():
    model = nn.Sequential(nn.Linear(8, 8))
    mask = {"0.weight": torch.ones(8, 8, dtype=torch.bool)}
    k = K.SparseKernels(model, lambda: mask, mode="auto", batch=4)
    with k, torch.no_grad():
        model(torch.randn(4, 8))
    assert k.choices() == {"0.weight": "dense"}  # a full 8x8 layer at batch 4: padding to 64 columns costs


@pytest.mark.parametrize(
    ("density", "ratio", "choice"), [(0.1, 0.5, "sparse"), (0.1, 0.9, "dense"), (0.5, 0.1, "dense")]
)
def test_auto_goes_sparse_only_on_a_sparse_layer_that_measured_faster(monkeypatch, density, ratio, choice):
    """Under 0.75x the dense time, and never above 30% density (there it is not even timed)."""
    seen = []
    monkeypatch.setattr(K, "_measure", lambda layer, shape: seen.append(shape) or ratio)
    model = nn.Sequential(nn.Linear(20, 10))
    mask = {"0.weight": torch.arange(200).view(10, 20) < 200 * density}
    k = K.SparseKernels(model, lambda: mask, mode="auto", batch=32)
    with k, torch.no_grad():
        model(torch.randn(5, 20))
    assert k.choices() == {"0.weight": choice}
    assert seen == ([] if density > 0.3 else [(32, 20)])  # timed at the training batch, not this one's


def test_unsupported_optimizers_are_refused():
    model = _net()
    mask = {"0.weight": torch.ones(40, 30, dtype=torch.bool)}
    with pytest.raises(K.KernelsUnavailable, match="SGD, Adam and AdamW"):
        K.SparseKernels(model, lambda: mask, torch.optim.RMSprop(model.parameters()))
    with pytest.raises(K.KernelsUnavailable, match="amsgrad"):
        K.SparseKernels(model, lambda: mask, torch.optim.Adam(model.parameters(), amsgrad=True))


def test_kernels_enter_the_stored_config_only_when_not_dense():
    from ticketlab.train import TrainConfig

    assert "kernels" not in TrainConfig().to_dict()  # old run folders keep their hashes
    assert TrainConfig(kernels="sparse").to_dict()["kernels"] == "sparse"


def test_an_unknown_kernels_value_is_refused():
    from ticketlab.errors import UserError
    from ticketlab.train import TrainConfig

    with pytest.raises(UserError, match="unknown --kernels 'fast'"):
        TrainConfig(kernels="fast").validate()


@pytest.mark.parametrize("method", ["static", "rigl"])
def test_the_trainer_on_sparse_kernels_follows_the_dense_run(tiny_data, method):
    """Static masks and RigL (whose growth steps read dense gradients) through ``train``: the same masks,
    weights to float rounding, pruned weights exactly zero."""
    from ticketlab import dst
    from ticketlab.models import build_model
    from ticketlab.train import TrainConfig, train

    runs = {}
    for kernels in ("dense", "sparse"):
        model = build_model("mlp-64", (1, 16), 10, seed=0)
        cfg = TrainConfig(iterations=60, batch_size=50, optimizer="sgd", lr=0.05, eval_every=30, kernels=kernels)
        made = []

        def updater(opt, model=model, made=made):
            made.append(dst.make(method, model, opt, density=0.3, total_steps=60, delta_t=20, seed=0))
            return made[0]

        result = train(model, tiny_data, cfg, sparse=updater, seed=0)
        runs[kernels] = (model, result, made[0].masks)
    (a, ra, ma), (b, rb, mb) = runs["dense"], runs["sparse"]
    assert set(ma) == set(mb) and all(torch.equal(ma[n], mb[n]) for n in ma)
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=1e-4, msg=n)
        if n in mb:
            assert torch.count_nonzero(pb[~mb[n]]) == 0
    assert abs(ra.final["test_acc"] - rb.final["test_acc"]) <= 0.02
    if method == "static":  # the sparse path ran: its weights' gradients never went dense
        assert all(p.grad is None for n, p in b.named_parameters() if n in mb)
        assert all(p.grad is not None for n, p in a.named_parameters() if n in ma)


def test_auto_takes_its_choices_from_a_preset_and_drops_the_dense_layers_wrapper():
    model = _net()
    mask = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    preset = {"0.weight": "sparse", "2.weight": "dense", "4.weight": "dense"}
    k = K.SparseKernels(model, lambda: mask, mode="auto", preset=preset)
    assert k.choices() == preset  # nothing measured
    with k:
        assert "forward" in vars(model[0]) and "forward" not in vars(model[2])


def test_a_checkpoint_keeps_autos_choices(tmp_path):
    from ticketlab.train.checkpoint import Checkpointer

    model = _net()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    ck = Checkpointer(tmp_path / "c.safetensors")
    ck.save(3, model, opt, [], kernels={"0.weight": "sparse"})
    again = Checkpointer(tmp_path / "c.safetensors")
    assert again.load(model, opt) == (3, []) and again.kernels == {"0.weight": "sparse"}
    ck.save(3, model, opt, [])
    assert again.load(model, opt) == (3, []) and again.kernels is None


@pytest.mark.parametrize(
    "kw",
    [
        dict(kernel_size=3, padding=1),
        dict(kernel_size=3, stride=2),
        dict(kernel_size=(2, 3), padding=(1, 0), dilation=(2, 1)),
        dict(kernel_size=1, bias=False),
        dict(kernel_size=3, padding=2, dilation=2),
        dict(kernel_size=(2, 3), padding=(1, 0)),
    ],
    ids=["pad1", "stride2", "dilation21", "1x1", "dilation2", "2x3"],
)
def test_conv_forward_and_gradients_equal_the_masked_dense_conv(kw):
    """Stride 1 with equal dilation goes the direct way (shifted planes), the rest through patches."""
    torch.manual_seed(0)
    conv = nn.Conv2d(3, 5, **kw)
    mask = torch.rand(conv.weight.shape) < 0.4
    with torch.no_grad():
        conv.weight.mul_(mask)
    st = K.Structure(mask)
    x = torch.randn(6, 3, 9, 8, requires_grad=True)
    layer = K._Layer("weight", conv)
    layer.update(mask)
    y = layer.forward(x)
    gy = torch.randn_like(y)
    y.backward(gy)
    gx, gh = x.grad.clone(), layer.handle.grad.clone()
    gb = None if conv.bias is None else conv.bias.grad.clone()
    x.grad = None
    if conv.bias is not None:
        conv.bias.grad = None
    yd = conv(x)
    yd.backward(gy)
    assert st.nnz == layer.st.nnz
    torch.testing.assert_close(y, yd, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gx, x.grad, rtol=1e-5, atol=1e-5)
    torch.testing.assert_close(gh, conv.weight.grad[mask], rtol=1e-5, atol=1e-4)
    if gb is not None:
        torch.testing.assert_close(gb, conv.bias.grad, rtol=1e-5, atol=1e-4)


def test_a_conv_net_trains_as_on_the_dense_path():
    torch.manual_seed(0)
    a = nn.Sequential(nn.Conv2d(1, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 6, 3, stride=2), nn.ReLU(),
                      nn.Flatten(), nn.Linear(6 * 3 * 3, 5))  # fmt: skip
    b = copy.deepcopy(a)
    g = torch.Generator().manual_seed(1)
    mask = {n: torch.rand(p.shape, generator=g) < 0.5 for n, p in a.named_parameters() if n.endswith("weight")}
    oa = torch.optim.SGD(a.parameters(), lr=0.05, momentum=0.9)
    ob = torch.optim.SGD(b.parameters(), lr=0.05, momentum=0.9)
    ea, eb = MaskEnforcer(a, mask, oa, after_step=False), MaskEnforcer(b, mask, ob, after_step=False)
    k = K.SparseKernels(b, lambda: mask, ob)
    assert [layer.name for layer in k.layers] == ["0.weight", "2.weight", "5.weight"]
    with k:
        for _ in range(5):
            x, y = torch.randn(20, 1, 8, 8, generator=g), torch.randint(0, 5, (20,), generator=g)
            for model, opt, enf in ((a, oa, ea), (b, ob, eb)):
                opt.zero_grad(set_to_none=True)
                F.cross_entropy(model(x), y).backward()
                enf.step()
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=1e-5, msg=n)
        if n in mask:
            assert torch.count_nonzero(pb[~mask[n]]) == 0


def test_grouped_or_named_padding_convs_stay_dense():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.Conv2d(4, 4, 3, padding="same"), nn.Conv2d(4, 4, 3))
    mask = {n: torch.ones(p.shape, dtype=torch.bool) for n, p in model.named_parameters() if n.endswith("weight")}
    assert [layer.name for layer in K.SparseKernels(model, lambda: mask).layers] == ["2.weight"]


@pytest.mark.parametrize(
    "terms",
    [dict(adv="pgd", adv_eps=0.1, adv_steps=3), dict(certified="ibp", cert_eps=0.05, cert_start=0.0, cert_ramp=0.5)],
    ids=["pgd", "ibp"],
)
def test_adversarial_and_certified_training_on_sparse_kernels_follow_the_dense_run(tiny_data, terms):
    """PGD's attack steps go through the sparse layers for input gradients only; IBP's bounds read the weights
    directly, so their dense gradient and the layers' kept-position one make one optimizer step together."""
    from ticketlab.models import build_model
    from ticketlab.sparse import ones_mask
    from ticketlab.train import TrainConfig, train

    out = {}
    for kernels in ("dense", "sparse"):
        model = build_model("mlp-32", (1, 16), 10, seed=0)
        g = torch.Generator().manual_seed(2)
        mask = {n: torch.rand(m.shape, generator=g) < 0.4 for n, m in ones_mask(model).items()}
        cfg = TrainConfig(iterations=20, batch_size=50, optimizer="sgd", lr=0.05, eval_every=20, kernels=kernels,
                          **terms)  # fmt: skip
        train(model, tiny_data, cfg, mask=mask, seed=0)
        out[kernels] = (model, mask)
    (a, mask), (b, _) = out["dense"], out["sparse"]
    for (n, pa), pb in zip(a.named_parameters(), b.parameters()):
        torch.testing.assert_close(pb, pa, rtol=0, atol=1e-4, msg=n)
        if n in mask:
            assert torch.count_nonzero(pb[~mask[n]]) == 0


@pytest.mark.parametrize(("method", "kernels"), [("static", "sparse"), ("rigl", "sparse"), ("static", "auto")])
def test_an_interrupted_run_on_sparse_kernels_resumes_bitwise(tmp_path, monkeypatch, method, kernels):
    from helpers import die_after_checkpoints

    from ticketlab.dst.runner import DSTConfig, run_dst
    from ticketlab.train import TrainConfig

    def cfg():
        train = TrainConfig(iterations=60, eval_every=20, batch_size=60, kernels=kernels)
        return DSTConfig(dataset="digits", method=method, density=0.2, delta_t=10, train=train)

    ref = run_dst(cfg(), tmp_path / "ref", quiet=True, checkpoint_every=20)
    restore = die_after_checkpoints(monkeypatch, n=2)
    with pytest.raises(KeyboardInterrupt):
        run_dst(cfg(), tmp_path / "r", quiet=True, checkpoint_every=20)
    restore()
    assert run_dst(cfg(), tmp_path / "r", quiet=True, checkpoint_every=20) == ref
    assert f'"kernels": "{kernels}"' in (tmp_path / "r" / "config.json").read_text()


def test_a_run_folder_of_dense_kernels_refuses_sparse_ones(tmp_path, capsys):
    from ticketlab.cli import main

    argv = ["dst", "--dataset", "digits", "--method", "static", "--iterations", "20", "--quiet", "--out"]
    assert main([*argv, str(tmp_path / "r")]) == 0
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    assert main([*argv, str(tmp_path / "r"), "--kernels", "sparse"]) == 2
    assert "differs in: train.kernels" in capsys.readouterr().err
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before
