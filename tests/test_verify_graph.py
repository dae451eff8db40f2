"""Models as ops: every layer option's op computes the layer, every affine op's transpose and absolute value
are those of its explicit matrix (built column by column), the sparse copy is used exactly below its density,
MaxPool's relaxation on a hand-worked window, each refusal named, and check_ops catching a forward of its own."""

import pytest
import torch
from torch import nn

from ticketlab.errors import UserError
from ticketlab.models.graft import GraftedReLU
from ticketlab.verify.graph import SPARSE_BELOW, Dense, MaxPool, ReLU, check_ops, forward, to_ops


def dbl(m):
    torch.manual_seed(0)
    m.anchor = nn.Parameter(torch.zeros(1))  # a parameter-free model would give pools the default dtype
    m = m.double().eval()
    with torch.no_grad():
        for p in m.parameters():
            p.normal_()
        for b in m.buffers():
            if b.dtype.is_floating_point:
                b.uniform_(0.5, 1.5)
    return m


def matrix(op):
    """The explicit matrix of an affine op's linear part, one basis vector at a time."""
    n = op.in_shape
    eye = torch.eye(int(torch.tensor(n).prod()), dtype=torch.float64).reshape(-1, *n)
    return op.apply(eye).reshape(eye.shape[0], -1).t()  # (out, in)


def check_affine(op):
    a = matrix(op)
    g = torch.Generator().manual_seed(1)
    x = torch.randn(3, *op.in_shape, generator=g, dtype=torch.float64)
    lam = torch.randn(3, *op.out_shape, generator=g, dtype=torch.float64)
    assert torch.allclose(op.apply(x).reshape(3, -1), x.reshape(3, -1) @ a.t(), atol=1e-10)
    assert op.apply_t(lam).shape == (3, *op.in_shape)
    assert torch.allclose(op.apply_t(lam).reshape(3, -1), lam.reshape(3, -1) @ a, atol=1e-10)
    r = x.abs()
    assert torch.allclose(op.apply_abs(r).reshape(3, -1), r.reshape(3, -1) @ a.abs().t(), atol=1e-10)
    if op.bias is not None:
        b = (op.forward(torch.zeros(1, *op.in_shape, dtype=torch.float64))).reshape(-1)
        assert torch.allclose(op.bias_dot(lam), lam.reshape(3, -1) @ b, atol=1e-10)
    else:
        assert op.bias_dot(lam) is None


LAYERS = [
    ((5,), nn.Linear(5, 3)),
    ((5,), nn.Linear(5, 3, bias=False)),
    ((2, 9), nn.Conv1d(2, 4, 3, stride=2, padding=1)),
    ((2, 9), nn.Conv1d(2, 4, 3, dilation=2, padding="same")),
    ((2, 10), nn.Conv1d(2, 2, 4, stride=3, groups=2, padding="valid")),
    ((2, 7, 6), nn.Conv2d(2, 3, (3, 2), stride=(2, 1), padding=(1, 0))),
    ((2, 7, 6), nn.Conv2d(2, 4, 3, padding="same", groups=2, bias=False)),
    ((2, 8, 8), nn.Conv2d(2, 2, 3, stride=3, dilation=2)),
    ((3, 6), nn.BatchNorm1d(3)),
    ((3, 4, 4), nn.BatchNorm2d(3)),
    ((3, 4, 4), nn.BatchNorm2d(3, affine=False)),
    ((2, 3, 4), nn.Flatten()),
    ((2, 9), nn.AvgPool1d(3)),
    ((2, 9), nn.AvgPool1d(3, stride=2)),
    ((2, 6, 6), nn.AvgPool2d(2)),
    ((2, 7, 7), nn.AvgPool2d((3, 2), stride=(2, 3))),
]


@pytest.mark.parametrize("shape, layer", LAYERS, ids=[repr(lyr) for _, lyr in LAYERS])
def test_each_affine_layers_op_computes_it_and_its_transpose_and_absolute_value(shape, layer):
    model = dbl(nn.Sequential(layer))
    (op,) = to_ops(model, shape)
    x = torch.randn(4, *shape, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(op.forward(x), model(x), atol=1e-10)
    assert op.out_shape == tuple(model(x).shape[1:]) and op.in_shape == shape
    check_affine(op)
    lo, hi = x - 0.3, x + 0.3
    l, u = op.ibp(lo, hi)
    pts = lo + (hi - lo) * torch.rand(200, *x.shape, dtype=torch.float64)
    with torch.no_grad():
        out = torch.stack([model(p) for p in pts])
    assert (out >= l - 1e-10).all() and (out <= u + 1e-10).all()
    a = matrix(op)  # and the box is exact for one affine map: its ends are m -+ |A| r
    mid, rad = ((lo + hi) / 2).reshape(4, -1), ((hi - lo) / 2).reshape(4, -1)
    m = op.forward((lo + hi) / 2).reshape(4, -1)
    assert torch.allclose(l.reshape(4, -1), m - rad @ a.abs().t()) and torch.allclose(
        u.reshape(4, -1), m + rad @ a.abs().t()
    )
    del mid


def test_the_standardisation_is_the_first_op_per_channel_or_scalar():
    mean, std = torch.tensor([0.5, 0.2], dtype=torch.float64), torch.tensor([0.25, 0.5], dtype=torch.float64)
    ops = to_ops(nn.Sequential(nn.Identity()), (2, 3), mean.view(2, 1), std.view(2, 1))
    x = torch.rand(2, 2, 3, dtype=torch.float64)
    assert len(ops) == 1 and torch.allclose(ops[0].forward(x), (x - mean.view(2, 1)) / std.view(2, 1))
    check_affine(ops[0])
    ops = to_ops(nn.Sequential(nn.Identity()), (2, 3), torch.tensor(0.5), torch.tensor(0.25))
    assert torch.allclose(ops[0].forward(x), (x - 0.5) / 0.25)
    assert to_ops(nn.Sequential(nn.Identity(), nn.Dropout()), (2, 3)) == []  # identities take no op


def test_a_dense_layer_keeps_a_sparse_copy_only_below_the_density_that_pays():
    w = torch.zeros(10, 100, dtype=torch.float64)
    n_below = int(SPARSE_BELOW * 1000) - 1
    w.view(-1)[torch.randperm(1000)[:n_below]] = torch.randn(n_below, dtype=torch.float64)
    op = Dense(w, None, sparse=True)
    assert op.csr is not None
    check_affine(op)
    assert torch.allclose(matrix(op), w)
    w2 = w.clone()
    w2.view(-1)[torch.randperm(1000)[: int(SPARSE_BELOW * 1000) + 1]] = 1.0
    assert Dense(w2, None, sparse=True).csr is None
    assert Dense(w, None, sparse=False).csr is None


def test_relu_and_grafted_relu_ops():
    relu = ReLU((3,))
    assert relu.graft is None
    lo, hi = torch.tensor([[-1.0, -1.0, 1.0]]), torch.tensor([[2.0, -0.5, 3.0]])
    assert [t.tolist() for t in relu.ibp(lo, hi)] == [[[0.0, 0.0, 1.0]], [[2.0, 0.0, 3.0]]]
    g = ReLU((3,), torch.tensor([True, False, False]), torch.tensor([-2.0, 1, 1]), torch.tensor([1.0, 0, 0]))
    l, u = g.ibp(lo, hi)  # the grafted neuron is -2x + 1 over [-1, 2]: [-3, 3], the others ReLU
    assert l.tolist() == [[-3.0, 0.0, 1.0]] and u.tolist() == [[3.0, 0.0, 3.0]]
    assert g.forward(torch.tensor([[1.0, -1.0, 2.0]])).tolist() == [[-1.0, 0.0, 2.0]]
    none = ReLU((2,), torch.tensor([False, False]), torch.ones(2), torch.zeros(2))
    assert none.graft is None and none.slope is None and none.intercept is None


def test_a_grafted_relu_module_becomes_a_grafted_op_of_its_shape():
    m = GraftedReLU((4,), slope=0.5, intercept=0.1)
    m.graft[1] = True
    (op,) = to_ops(nn.Sequential(m), (4,))
    assert op.graft.tolist() == [False, True, False, False] and float(op.slope[1].detach()) == 0.5
    with pytest.raises(UserError, match=r"of shape \(4,\) on inputs of shape \(5,\)"):
        to_ops(nn.Sequential(m), (5,))


def test_maxpool_relaxation_on_a_hand_worked_window():
    op = MaxPool((2,), 1, (1, 4), (1, 2))
    lo = torch.tensor([[[0.0, 1.0, -1.0, 0.5]]])
    hi = torch.tensor([[[0.5, 2.0, 3.0, 1.0]]])
    idx, exact, umax = op.relaxation(lo, hi)
    # window 1: input 1 has the largest lower bound (1.0) and it beats the other's upper bound 0.5: exact
    # window 2: input 3 has the largest lower bound (0.5), but input 2 can reach 3.0: not exact, max <= 3.0
    assert idx.tolist() == [[[1, 3]]] and exact.tolist() == [[[True, False]]] and umax.tolist() == [[[2.0, 3.0]]]
    assert op.scatter(torch.tensor([[[7.0, 9.0]]]), idx).tolist() == [[[0.0, 7.0, 0.0, 9.0]]]
    assert [t.tolist() for t in op.ibp(lo, hi)] == [[[[1.0, 0.5]]], [[[2.0, 3.0]]]]


def test_a_tie_between_lower_and_upper_bounds_counts_as_exact():
    op = MaxPool((2,), 1, (1, 2), (1, 1))
    _, exact, _ = op.relaxation(torch.tensor([[[1.0, 0.0]]]), torch.tensor([[[2.0, 1.0]]]))
    assert exact.tolist() == [[[True]]]


def test_maxpool_2d_ops_pool_and_scatter_in_two_dimensions():
    model = nn.Sequential(nn.MaxPool2d(2))
    (op,) = to_ops(model, (1, 4, 6))
    x = torch.randn(2, 1, 4, 6)
    assert op.out_shape == (1, 2, 3) and torch.equal(op.forward(x), model(x))
    idx = op.relaxation(x, x + 1)[0]
    assert op.scatter(torch.ones(2, 1, 2, 3), idx).sum() == 12


@pytest.mark.parametrize(
    "layer, shape, why",
    [
        (nn.Linear(4, 2), (1, 4), "Linear after a non-flat input"),
        (nn.Conv1d(1, 1, 3, padding=1, padding_mode="reflect"), (1, 5), "Conv1d, padding mode reflect"),
        (nn.Conv1d(1, 1, 2, padding="same"), (1, 5), "Conv1d, asymmetric 'same' padding"),
        (nn.AvgPool1d(2, padding=1), (1, 6), "AvgPool1d with padding or ceil_mode"),
        (nn.AvgPool2d(2, ceil_mode=True), (1, 5, 5), "AvgPool2d with padding or ceil_mode"),
        (nn.MaxPool1d(2, stride=1), (1, 6), "MaxPool1d with stride != kernel, padding or dilation"),
        (nn.MaxPool2d(2, padding=1), (1, 6, 6), "MaxPool2d with stride != kernel, padding or dilation"),
        (nn.MaxPool1d(2, dilation=2), (1, 8), "MaxPool1d with stride != kernel, padding or dilation"),
        (nn.MaxPool2d(2, ceil_mode=True), (1, 5, 5), "MaxPool2d with stride != kernel, padding or dilation"),
        (nn.BatchNorm1d(3, track_running_stats=False), (3,), "BatchNorm1d without running statistics"),
        (nn.Tanh(), (3,), "Tanh"),
    ],
)
def test_each_unsupported_layer_option_is_refused_by_name(layer, shape, why):
    with pytest.raises(UserError, match=rf"does not support layer 0 \({why}\); it takes Linear"):
        to_ops(nn.Sequential(layer), shape)


def test_a_refused_layer_is_named_by_its_path_in_nested_containers_or_by_its_type():
    model = nn.Sequential(nn.Flatten(), nn.Sequential(nn.Linear(4, 4), nn.Sequential(nn.ReLU(), nn.GELU())))
    with pytest.raises(UserError, match=r"layer 1\.1\.1 \(GELU\)"):
        to_ops(model, (4,))
    with pytest.raises(UserError, match=r"layer GELU \(GELU\)"):
        to_ops(nn.GELU(), (4,))


def test_nested_containers_are_flattened_in_order():
    model = dbl(nn.Sequential(nn.Sequential(nn.Linear(3, 4), nn.ReLU()), nn.Sequential(nn.Sequential(nn.Linear(4, 2)))))
    ops = to_ops(model, (3,))
    assert [type(op).__name__ for op in ops] == ["Dense", "ReLU", "Dense"]
    x = torch.randn(5, 3, dtype=torch.float64)
    with torch.no_grad():
        assert torch.allclose(forward(ops, x), model(x))


def test_the_ops_share_the_models_parameters():
    model = nn.Sequential(nn.Linear(3, 2))
    (op,) = to_ops(model, (3,))
    assert op.weight is model[0].weight and op.bias is model[0].bias


class Residual(nn.Sequential):
    def forward(self, x):
        return x + super().forward(x)


def test_check_ops_refuses_ops_that_do_not_compute_the_model_and_restores_its_mode():
    model = nn.Sequential(nn.Linear(3, 3), nn.ReLU()).train()
    ops = to_ops(nn.Sequential(nn.Linear(3, 3)), (3,))  # another function
    with pytest.raises(UserError, match="verification cannot follow Sequential: its forward is not the sequence"):
        check_ops(ops, model, (3,), None, None)
    assert model.training
    plain = nn.Sequential(nn.Linear(3, 3)).train()
    check_ops(to_ops(plain, (3,)), plain, (3,), None, None)
    assert plain.training


def test_check_ops_compares_on_the_standardised_input():
    model = nn.Sequential(nn.Linear(3, 2))
    mean, std = torch.tensor(0.5), torch.tensor(0.2)
    check_ops(to_ops(model, (3,), mean, std), model, (3,), mean, std)
    with pytest.raises(UserError, match="cannot follow"):
        check_ops(to_ops(model, (3,)), model, (3,), mean, std)  # ops without the standardisation differ
    with pytest.raises(UserError, match="cannot follow"):
        check_ops(to_ops(nn.Sequential(nn.Linear(3, 3)), (3,)), model, (3,), None, None)  # other shape


# -- every entry point is sound: to_ops itself refuses a module whose function is not the one its ops model ----


class OwnLinear(nn.Linear):
    def forward(self, x):
        return 2 * super().forward(x)


class OwnConv(nn.Conv2d):
    def forward(self, x):
        return super().forward(x).abs()


class OwnReLU(nn.ReLU):
    def forward(self, x):
        return super().forward(x) - 1


class PlainLinear(nn.Linear):  # a subclass that keeps Linear's forward computes a Linear: accepted
    pass


@pytest.mark.parametrize(
    "model, shape, why",
    [
        (Residual(nn.Linear(3, 3)), (3,), r"layer Residual \(Residual, a Sequential with a forward of its own\)"),
        (nn.Sequential(nn.Sequential(Residual(nn.Linear(3, 3)))), (3,), r"layer 0\.0 \(Residual, a Sequential"),
        (nn.Sequential(OwnLinear(3, 2)), (3,), r"layer 0 \(OwnLinear, a Linear with a forward of its own\)"),
        (nn.Sequential(OwnConv(1, 1, 3)), (1, 5, 5), r"layer 0 \(OwnConv, a Conv2d with a forward of its own\)"),
        (nn.Sequential(nn.Linear(3, 3), OwnReLU()), (3,), r"layer 1 \(OwnReLU, a ReLU with a forward of its own\)"),
        (nn.Sequential(nn.AvgPool2d(2, divisor_override=3)), (1, 4, 4), r"AvgPool2d with divisor_override"),
        (nn.Sequential(nn.MaxPool2d(2, return_indices=True)), (1, 4, 4), r"MaxPool2d with return_indices"),
        (nn.Sequential(nn.Flatten(2)), (2, 3, 3), r"Flatten of dims 2\.\.-1"),
        (nn.Sequential(nn.Flatten(1, 2)), (2, 3, 3), r"Flatten of dims 1\.\.2"),
    ],
)
def test_to_ops_refuses_every_module_whose_function_its_ops_do_not_compute(model, shape, why):
    with pytest.raises(UserError, match=why):
        to_ops(model, shape)


def test_a_torch_prune_reparametrised_layer_is_refused_with_the_way_out():
    import torch.nn.utils.prune as tprune

    net = nn.Sequential(nn.Linear(4, 3))
    tprune.l1_unstructured(net[0], "weight", amount=0.5)  # a forward pre-hook recomputes the weight
    with pytest.raises(UserError, match=r"layer 0 \(Linear with a forward hook .*from_torch_prune"):
        to_ops(net, (4,))
    tprune.remove(net[0], "weight")
    to_ops(net, (4,))  # the mask made permanent: a plain Linear


def test_a_plain_subclass_and_an_observing_hook_are_accepted():
    from ticketlab.hooks import observes_only

    net = nn.Sequential(PlainLinear(3, 2))
    seen = []
    net[0].register_forward_hook(observes_only(lambda m, i, o: seen.append(o.shape)))
    (op,) = to_ops(net, (3,))
    x = torch.randn(4, 3)
    assert torch.allclose(op.forward(x), net(x)) and seen == [(4, 2)]
    net[0].register_forward_hook(lambda m, i, o: o * 0)  # may change the output: refused
    with pytest.raises(UserError, match="forward hook"):
        to_ops(net, (3,))


TRAPS = {
    "own-linear": lambda: OwnLinear(6, 6),
    "own-relu": lambda: OwnReLU(),
    "residual": lambda: Residual(nn.Linear(6, 6)),
    "hooked": lambda: hooked(nn.Linear(6, 6)),
}
BENIGN = {"plain-linear": lambda: PlainLinear(6, 6), "linear": lambda: nn.Linear(6, 6), "relu": lambda: nn.ReLU()}


def hooked(m):
    m.register_forward_hook(lambda _m, _i, out: out + 0.5)
    return m


@pytest.mark.parametrize("seed", range(40))
def test_library_api_fuzz_every_net_is_refused_or_its_crown_bounds_hold_on_the_module_itself(seed):
    """Random nets of modelled layers, some with a trap: ``to_ops`` then refuses; otherwise CROWN's bounds
    (no check_ops) contain the module's own outputs at sampled points of the box, and at eps 0 they are its
    outputs."""
    from ticketlab.verify.bounds import crown, input_box

    g = torch.Generator().manual_seed(seed)
    picks = [list(BENIGN)[int(i)] for i in torch.randint(len(BENIGN), (4,), generator=g)]
    if seed % 2:  # every other net hides one trap somewhere
        picks[int(torch.randint(4, (1,), generator=g))] = list(TRAPS)[int(torch.randint(len(TRAPS), (1,), generator=g))]
    torch.manual_seed(seed)
    net = nn.Sequential(nn.Linear(5, 6), *[(BENIGN | TRAPS)[n]() for n in picks], nn.ReLU(), nn.Linear(6, 3)).double()
    trapped = any(n in TRAPS for n in picks)
    try:
        ops = to_ops(net, (5,))
    except UserError:
        assert trapped, picks
        return
    assert not trapped, picks
    x = torch.rand(3, 5, generator=g, dtype=torch.float64)
    lo, hi = input_box(x, 0.0, (0.0, 1.0))
    b = crown(ops, lo, hi)
    with torch.no_grad():
        assert torch.allclose(b.lower, net(x), atol=1e-9) and torch.allclose(b.upper, net(x), atol=1e-9)
    lo, hi = input_box(x, 0.1, (0.0, 1.0))
    b = crown(ops, lo, hi)
    pts = lo + (hi - lo) * torch.rand(500, *lo.shape, generator=g, dtype=torch.float64)
    with torch.no_grad():
        out = torch.stack([net(p) for p in pts])
    assert (out >= b.lower - 1e-9).all() and (out <= b.upper + 1e-9).all()


def test_float64_copies_of_the_ops_keep_the_sparse_products():
    from ticketlab.verify.graph import Dense, as_float64

    net = nn.Sequential(nn.Linear(400, 300))
    with torch.no_grad():
        net[0].weight.mul_((torch.rand(300, 400) < 0.01).float())
    (op,) = to_ops(net, (400,), sparse=True)
    assert op.csr is not None
    (op64,) = as_float64([op])
    assert isinstance(op64, Dense) and op64.csr is not None and op64.weight.dtype == torch.float64
    x = torch.rand(3, 400, dtype=torch.float64)
    assert torch.allclose(op64.forward(x), net.double()(x))
