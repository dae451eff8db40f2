import pytest
import torch
import torch.nn.functional as F
from torch import nn

from ticketlab.sparse import MaskEnforcer, ones_mask

OPTIMIZERS = {
    "sgd-momentum-wd": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, weight_decay=0.1),
    "sgd-nesterov": lambda p: torch.optim.SGD(p, lr=0.1, momentum=0.9, nesterov=True),
    "adam-l2": lambda p: torch.optim.Adam(p, lr=0.01, weight_decay=0.1),
    "adamw": lambda p: torch.optim.AdamW(p, lr=0.01, weight_decay=0.5),
    "rmsprop": lambda p: torch.optim.RMSprop(p, lr=0.01, momentum=0.5, weight_decay=0.1),
}


def setup(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Linear(6, 8), nn.ReLU(), nn.Linear(8, 3))
    mask = ones_mask(model)
    g = torch.Generator().manual_seed(1)
    for m in mask.values():
        m.copy_(torch.rand(m.shape, generator=g) > 0.5)
    return model, mask


def steps(model, opt, enforcer, n=20, use_step=True):
    g = torch.Generator().manual_seed(2)
    for _ in range(n):
        x, y = torch.randn(16, 6, generator=g), torch.randint(0, 3, (16,), generator=g)
        opt.zero_grad()
        F.cross_entropy(model(x), y).backward()
        if use_step:
            enforcer.step()
        else:
            opt.step()


def pruned_values(model, mask):
    params = dict(model.named_parameters())
    return torch.cat([params[n][~m] for n, m in mask.items()])


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_pruned_weights_stay_exactly_zero(name):
    model, mask = setup()
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    opt = OPTIMIZERS[name](model.parameters())
    enforcer = MaskEnforcer(model, mask, opt)
    steps(model, opt, enforcer)
    assert torch.count_nonzero(pruned_values(model, mask)) == 0
    params = dict(model.named_parameters())
    moved = [(params[n][m] - before[n][m]).abs().max() for n, m in mask.items()]
    assert all(v > 0 for v in moved)  # kept weights do train


@pytest.mark.parametrize("name", sorted(OPTIMIZERS))
def test_optimizer_state_of_pruned_entries_is_zero(name):
    model, mask = setup()
    opt = OPTIMIZERS[name](model.parameters())
    enforcer = MaskEnforcer(model, mask, opt)
    steps(model, opt, enforcer)
    params = dict(model.named_parameters())
    for n, m in mask.items():
        for key, value in opt.state[params[n]].items():
            if torch.is_tensor(value) and value.shape == m.shape:
                assert torch.count_nonzero(value[~m]) == 0, key


def test_new_mask_mid_training_clears_stale_state_so_nothing_resurrects():
    model, mask = setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    dense = MaskEnforcer(model, ones_mask(model), opt)
    steps(model, opt, dense, n=5)  # momentum buffers are now non-zero everywhere
    enforcer = MaskEnforcer(model, mask, opt)
    # Without grad masking a plain step would resurrect entries through momentum; the state was cleared.
    params = dict(model.named_parameters())
    for n, m in mask.items():
        assert torch.count_nonzero(opt.state[params[n]]["momentum_buffer"][~m]) == 0
    steps(model, opt, enforcer, n=5)
    assert torch.count_nonzero(pruned_values(model, mask)) == 0


def test_attach_enforces_inside_a_plain_loop():
    model, mask = setup()
    opt = torch.optim.Adam(model.parameters(), lr=0.01, weight_decay=0.1)
    enforcer = MaskEnforcer(model, mask, opt).attach()
    steps(model, opt, enforcer, use_step=False)
    assert torch.count_nonzero(pruned_values(model, mask)) == 0
    enforcer.detach()
    steps(model, opt, enforcer, n=3, use_step=False)
    assert torch.count_nonzero(pruned_values(model, mask)) > 0  # hooks really were what enforced it


def test_unknown_mask_name_is_rejected():
    model, _ = setup()
    with pytest.raises(KeyError, match=r"mask names not in the model: \['nope.weight'\]"):
        MaskEnforcer(model, {"nope.weight": torch.ones(2, dtype=torch.bool)})
    bad = {f"x{i}.weight": torch.ones(2, dtype=torch.bool) for i in range(4)}
    with pytest.raises(KeyError, match=r"\['x0.weight', 'x1.weight', 'x2.weight'\]\"$"):  # the first three
        MaskEnforcer(model, bad)


def test_frozen_pruned_entries_hold_their_values_and_never_train():
    model, mask = setup()
    frozen = {n: torch.full_like(p, 0.25) for n, p in model.named_parameters() if n in mask}
    opt = torch.optim.AdamW(model.parameters(), lr=0.01, weight_decay=0.5)
    enforcer = MaskEnforcer(model, mask, opt, frozen=frozen)
    steps(model, opt, enforcer)
    assert torch.all(pruned_values(model, mask) == 0.25)


def test_enforcer_step_is_grad_pass_then_step_then_weight_pass():
    model, mask = setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    enforcer = MaskEnforcer(model, mask, opt)
    params = dict(model.named_parameters())
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(0)), torch.tensor([0, 1, 2] * 2 + [0, 1])
    F.cross_entropy(model(x), y).backward()
    with torch.no_grad():  # something that is not the optimizer puts weight where it is pruned
        for n, m in mask.items():
            params[n][~m] = 1.0
    grads = {n: params[n].grad.clone() for n in mask}
    enforcer.step()
    for n, m in mask.items():
        assert torch.count_nonzero(params[n][~m]) == 0  # the weight pass removed it
        assert torch.count_nonzero(params[n].grad[~m]) == 0 and torch.equal(params[n].grad[m], grads[n][m])


def test_after_step_false_skips_the_weight_pass_and_refuses_held_values():
    model, mask = setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    enforcer = MaskEnforcer(model, mask, opt, after_step=False)
    params = dict(model.named_parameters())
    with torch.no_grad():
        params["0.weight"][~mask["0.weight"]] = 1.0
    enforcer.step()  # no gradients at all: the optimizer does nothing, and nothing re-masks
    assert torch.all(params["0.weight"][~mask["0.weight"]] == 1.0)
    assert len(enforcer.attach()._handles) == 1
    with pytest.raises(ValueError, match="^held \\(frozen\\) values need the after-step weight pass$"):
        MaskEnforcer(model, mask, opt, frozen={n: torch.zeros_like(params[n]) for n in mask}, after_step=False)


def test_construction_zeroes_pruned_weights_and_only_per_element_state():
    model, mask = setup()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    steps(model, opt, MaskEnforcer(model, ones_mask(model), opt), n=2)
    params = dict(model.named_parameters())
    step_before = {n: opt.state[params[n]]["step"].clone() for n in mask}
    MaskEnforcer(model, mask, opt)
    for n, m in mask.items():
        assert torch.count_nonzero(params[n][~m]) == 0 and torch.count_nonzero(params[n][m]) == int(m.sum())
        assert torch.equal(opt.state[params[n]]["step"], step_before[n])  # scalars untouched
        assert torch.count_nonzero(opt.state[params[n]]["exp_avg"][m]) == int(m.sum())
    MaskEnforcer(model, mask)  # no optimizer: masks the weights only


def test_closure_is_passed_through():
    model, mask = setup()
    opt = torch.optim.LBFGS(model.parameters(), lr=0.1, max_iter=2)
    enforcer = MaskEnforcer(model, mask, opt)
    x, y = torch.randn(8, 6, generator=torch.Generator().manual_seed(1)), torch.zeros(8, dtype=torch.long)

    def closure():
        opt.zero_grad()
        loss = F.cross_entropy(model(x), y)
        loss.backward()
        return loss

    loss = enforcer.step(closure)
    assert torch.is_tensor(loss) and torch.count_nonzero(pruned_values(model, mask)) == 0


def test_detach_twice_and_reattach():
    model, mask = setup()
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    enforcer = MaskEnforcer(model, mask, opt).attach()
    assert len(enforcer._handles) == 2
    enforcer.detach()
    enforcer.detach()
    enforcer.attach()
    steps(model, opt, enforcer, n=3, use_step=False)
    assert torch.count_nonzero(pruned_values(model, mask)) == 0


def test_attached_hooks_mask_gradients_before_and_hold_values_after_each_step():
    model, mask = setup()
    opt = torch.optim.Adam(model.parameters(), lr=0.01)
    MaskEnforcer(model, mask, opt).attach()
    steps(model, opt, None, n=5, use_step=False)
    params = dict(model.named_parameters())
    for n, m in mask.items():  # the pre-step hook kept the moments of pruned entries at zero
        assert torch.count_nonzero(opt.state[params[n]]["exp_avg"][~m]) == 0
    model, mask = setup()
    frozen = {n: torch.full_like(p, -0.5) for n, p in model.named_parameters() if n in mask}
    opt = torch.optim.SGD(model.parameters(), lr=0.1, weight_decay=0.1)  # decay would move held values
    MaskEnforcer(model, mask, opt, frozen=frozen).attach()
    steps(model, opt, None, n=3, use_step=False)
    assert torch.all(pruned_values(model, mask) == -0.5)  # the post-step hook restored the held values


def test_held_values_in_another_dtype_are_held_in_the_weights_dtype():
    model, mask = setup()
    frozen = {n: torch.full(p.shape, 0.1, dtype=torch.float64) for n, p in model.named_parameters() if n in mask}
    opt = torch.optim.SGD(model.parameters(), lr=0.1)
    enforcer = MaskEnforcer(model, mask, opt, frozen=frozen)
    steps(model, opt, enforcer, n=2)
    held = pruned_values(model, mask)
    assert held.dtype == torch.float32 and torch.all(held == torch.tensor(0.1, dtype=torch.float32))


def test_held_values_touch_only_pruned_entries():
    model, mask = setup()
    params = dict(model.named_parameters())
    frozen = {n: torch.full_like(params[n], 0.25) for n in mask}
    opt = torch.optim.SGD(model.parameters(), lr=0.0)  # nothing trains: kept weights must not move at all
    before = {n: params[n].detach().clone() for n in mask}
    enforcer = MaskEnforcer(model, mask, opt, frozen=frozen)
    steps(model, opt, enforcer, n=2)
    for n, m in mask.items():
        assert torch.equal(params[n][m], before[n][m]) and torch.all(params[n][~m] == 0.25)


def test_detach_before_attach_is_harmless():
    model, mask = setup()
    MaskEnforcer(model, mask, torch.optim.SGD(model.parameters(), lr=0.1)).detach()


def test_the_enforcers_masks_are_named_bool_tensors_as_given():
    net = torch.nn.Sequential(torch.nn.Linear(3, 2), torch.nn.ReLU(), torch.nn.Linear(2, 2))
    mask = {"0.weight": torch.tensor([[True, False, True], [False, False, True]]), "2.weight": torch.eye(2).bool()}
    enf = MaskEnforcer(net, mask)
    assert list(enf.masks) == ["0.weight", "2.weight"]
    assert all(enf.masks[n].dtype == torch.bool and torch.equal(enf.masks[n], mask[n]) for n in mask)
