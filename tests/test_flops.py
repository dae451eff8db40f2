import torch
from torch import nn

from ticketlab.flops import forward_flops, training_flops, weight_uses


def test_linear_and_conv_forward_flops_by_hand():
    model = nn.Sequential(nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.Flatten(),
                          nn.Linear(4 * 3 * 3, 5))
    uses = weight_uses(model, (2, 8, 8))
    assert uses == {"0.weight": 64, "2.weight": 9, "4.weight": 1}  # 8x8 outputs, then 3x3, then one
    f = forward_flops(model, (2, 8, 8))
    assert f == {"0.weight": 2 * 72 * 64, "2.weight": 2 * 144 * 9, "4.weight": 2 * 180}


def test_masked_flops_count_only_kept_weights():
    model = nn.Sequential(nn.Flatten(), nn.Linear(6, 4), nn.ReLU(), nn.Linear(4, 2))
    mask = {"1.weight": torch.zeros(4, 6, dtype=torch.bool), "3.weight": torch.ones(2, 4, dtype=torch.bool)}
    mask["1.weight"][0, :3] = True
    assert forward_flops(model, (6,), mask) == {"1.weight": 6, "3.weight": 16}
    assert training_flops(model, (6,), iterations=10, batch_size=4, mask=mask) == 3 * 22 * 4 * 10
