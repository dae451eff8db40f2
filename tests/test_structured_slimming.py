import torch

from ticketlab.models import build_model
from ticketlab.sparse import MaskEnforcer
from ticketlab.structured import channel_groups, group_mask
from ticketlab.structured.slimming import SlimmingPenalty


def test_penalty_adds_the_l1_subgradient_to_batchnorm_scales_only():
    model = build_model("conv2bn", (1, 8, 8), 10)
    opt = torch.optim.SGD(model.parameters(), lr=1.0)
    with torch.no_grad():
        model[1].weight.copy_(torch.linspace(-1, 1, 64))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    penalty = SlimmingPenalty(opt, model, 0.01)
    for p in model.parameters():
        p.grad = torch.zeros_like(p)
    opt.step()
    after = dict(model.named_parameters())
    assert torch.allclose(after["1.weight"], before["1.weight"] - 0.01 * torch.sign(before["1.weight"]))
    assert torch.equal(after["0.weight"], before["0.weight"]) and torch.equal(after["1.bias"], before["1.bias"])
    penalty.detach()


def test_pruned_channels_stay_exactly_zero_under_the_penalty_and_momentum():
    torch.manual_seed(0)
    model = build_model("conv2bn", (1, 8, 8), 10)
    groups = channel_groups(model, (1, 8, 8))
    mask = group_mask(model, groups, {"0": torch.arange(64) < 20})
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    enforcer = MaskEnforcer(model, mask, opt)
    SlimmingPenalty(opt, model, 0.1)
    for _ in range(3):
        loss = model(torch.randn(4, 1, 8, 8)).sum()
        opt.zero_grad()
        loss.backward()
        enforcer.step()
    params = dict(model.named_parameters())
    for n, m in mask.items():
        assert torch.count_nonzero(params[n][~m]) == 0
