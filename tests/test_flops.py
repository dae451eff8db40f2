import torch
from torch import nn

from ticketlab.flops import forward_flops, training_flops, weight_uses


def test_linear_and_conv_forward_flops_by_hand():
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Conv2d(4, 4, 3, stride=2), nn.Flatten(), nn.Linear(4 * 3 * 3, 5)
    )
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


def test_cnn1d_conv1d_with_stride_and_padding_by_hand():
    from ticketlab.models import build_model

    model = build_model("cnn1d", (1, 40), 10)
    # Conv1d(k=5, stride=2, padding=2): length (L + 4 - 5) // 2 + 1: 40 -> 20 -> 10 -> 5
    assert weight_uses(model, (1, 40)) == {"0.weight": 20, "2.weight": 10, "4.weight": 5, "7.weight": 1}
    assert forward_flops(model, (1, 40)) == {
        "0.weight": 2 * (32 * 1 * 5) * 20,
        "2.weight": 2 * (32 * 32 * 5) * 10,
        "4.weight": 2 * (32 * 32 * 5) * 5,
        "7.weight": 2 * (32 * 5 * 10),
    }


def test_lenet_and_conv2_by_hand():
    from ticketlab.models import build_model

    f = forward_flops(build_model("lenet300", (1, 28, 28), 10), (1, 28, 28))
    assert f == {"1.weight": 2 * 784 * 300, "3.weight": 2 * 300 * 100, "5.weight": 2 * 100 * 10}
    f = forward_flops(build_model("conv2", (1, 8, 8), 10), (1, 8, 8))
    # two same-padded 3x3 convs at 8x8, 2x2 max-pool, then FC 64*4*4 -> 256 -> 256 -> 10
    assert f == {
        "0.weight": 2 * 64 * 9 * 64,
        "2.weight": 2 * 64 * 64 * 9 * 64,
        "5.1.weight": 2 * 1024 * 256,
        "5.3.weight": 2 * 256 * 256,
        "5.5.weight": 2 * 256 * 10,
    }
    # BatchNorm layers are not counted
    assert set(forward_flops(build_model("conv2bn", (1, 8, 8), 10), (1, 8, 8))) == {
        "0.weight",
        "3.weight",
        "7.1.weight",
        "7.3.weight",
        "7.5.weight",
    }


def test_resnet20_strided_convs_and_projection_shortcuts_by_hand():
    from ticketlab.models import build_model

    f = forward_flops(build_model("resnet20", (3, 8, 8), 10), (3, 8, 8))
    want = {"conv.weight": 16 * 3 * 9 * 64, "fc.weight": 64 * 10}
    for b in range(3):  # stage 1 at 8x8
        want |= {f"blocks.{b}.conv1.weight": 16 * 16 * 9 * 64, f"blocks.{b}.conv2.weight": 16 * 16 * 9 * 64}
    for b, (c, side) in zip((3, 6), ((32, 4), (64, 2))):  # stages 2, 3: stride-2 first block, 1x1 projection
        want |= {
            f"blocks.{b}.conv1.weight": c * (c // 2) * 9 * side**2,
            f"blocks.{b}.conv2.weight": c * c * 9 * side**2,
            f"blocks.{b}.shortcut.0.weight": c * (c // 2) * side**2,
        }
        for i in (1, 2):
            want |= {
                f"blocks.{b + i}.conv1.weight": c * c * 9 * side**2,
                f"blocks.{b + i}.conv2.weight": c * c * 9 * side**2,
            }
    assert f == {k: 2 * v for k, v in want.items()}


def test_vgg16_by_hand():
    from ticketlab.models import build_model
    from ticketlab.models.vgg import CFG16

    f = forward_flops(build_model("vgg16", (3, 16, 16), 10), (3, 16, 16))
    want, c, side = [], 3, 16
    for v in CFG16:
        if v == "M":
            side //= 2
        else:
            want.append(2 * v * c * 9 * side**2)
            c = v
    assert list(f.values()) == want + [2 * 512 * 10]


def test_masked_conv_flops_count_kept_entries_times_positions_and_training_is_three_forwards():
    model = nn.Sequential(nn.Conv1d(2, 3, 3, stride=2, padding=1), nn.Flatten(), nn.Linear(3 * 5, 2))
    mask = {"0.weight": torch.zeros(3, 2, 3, dtype=torch.bool)}
    mask["0.weight"][0, 0] = True  # 3 kept entries, each used at 5 output positions
    assert forward_flops(model, (2, 10), mask) == {"0.weight": 2 * 3 * 5, "2.weight": 2 * 30}
    assert training_flops(model, (2, 10), iterations=7, batch_size=3) == 3 * (2 * 18 * 5 + 60) * 3 * 7


def test_linear_on_a_sequence_counts_every_position_and_the_model_mode_is_restored():
    model = nn.Sequential(nn.Linear(4, 6), nn.Linear(6, 2))
    model.train()
    assert weight_uses(model, (5, 4)) == {"0.weight": 5, "1.weight": 5}
    assert model.training
    model.eval()
    weight_uses(model, (5, 4))
    assert not model.training


def test_a_bare_layer_is_keyed_weight():
    assert forward_flops(nn.Linear(3, 2), (3,)) == {"weight": 12}
