import pytest
import torch
from torch import nn

from ticketlab.errors import UserError
from ticketlab.models import MODELS, build_model, glorot_normal_init

SHAPES = {
    "lenet300": (1, 28, 28),
    "conv2": (1, 28, 28),
    "conv4": (3, 32, 32),
    "conv6": (3, 32, 32),
    "resnet20": (3, 32, 32),
    "vgg16": (3, 32, 32),
    "mlp1d": (1, 40),
    "cnn1d": (1, 40),
    "conv2bn": (1, 28, 28),
    "conv4bn": (3, 32, 32),
    "conv6bn": (3, 32, 32),
    "vit": (1, 28, 28),
    "cnn-small": (1, 28, 28),
}


def test_every_registered_model_has_a_shape_check_here():
    assert set(MODELS.names()) == set(SHAPES)


@pytest.mark.parametrize("name", sorted(SHAPES))
def test_models_adapt_to_input_and_classes(name):
    model = build_model(name, SHAPES[name], 7)
    model.eval()
    assert model(torch.randn(2, *SHAPES[name])).shape == (2, 7)


def test_an_mlp_family_name_gives_those_hidden_sizes():
    shapes = [
        tuple(p.shape) for n, p in build_model("mlp-64-32", (1, 28, 28), 10).named_parameters() if n.endswith("weight")
    ]
    assert shapes == [(64, 784), (32, 64), (10, 32)]
    assert "mlp-4096-4096" in MODELS and "mlp-4096-x" not in MODELS and "mlp-0" not in MODELS


def test_an_unreadable_mlp_name_is_refused_in_one_line():
    with pytest.raises(UserError, match="dash-separated"):
        build_model("mlp-4096,4096", (1, 28, 28), 10)


def test_lenet300_is_784_300_100_10():
    shapes = [
        tuple(p.shape) for n, p in build_model("lenet300", (1, 28, 28), 10).named_parameters() if n.endswith("weight")
    ]
    assert shapes == [(300, 784), (100, 300), (10, 100)]


def test_batchnorm_conv_variants_put_a_batchnorm_after_every_bias_free_conv():
    model = build_model("conv4bn", (3, 32, 32), 10)
    convs = [m for m in model.modules() if isinstance(m, nn.Conv2d)]
    norms = [m for m in model.modules() if isinstance(m, nn.BatchNorm2d)]
    assert [m.out_channels for m in convs] == [m.num_features for m in norms] == [64, 64, 128, 128]
    assert all(m.bias is None for m in convs)


def test_cnn_small_is_wong_and_kolters_small_model():
    model = build_model("cnn-small", (1, 28, 28), 10)
    shapes = [tuple(p.shape) for n, p in model.named_parameters() if n.endswith("weight")]
    assert shapes == [(16, 1, 4, 4), (32, 16, 4, 4), (100, 32 * 7 * 7), (10, 100)]


def test_conv_models_have_the_lth_fc_head():
    linears = [m for m in build_model("conv4", (3, 32, 32), 10).modules() if isinstance(m, nn.Linear)]
    assert [(m.in_features, m.out_features) for m in linears] == [(8 * 8 * 128, 256), (256, 256), (256, 10)]


def test_vit_embeds_7x7_patches_and_exposes_every_weight_matrix_as_a_linear():
    model = build_model("vit", (1, 28, 28), 10, seed=0)
    from ticketlab.sparse import prunable_names

    names = prunable_names(model)
    assert names[0] == "embed.weight" and model.embed.weight.shape == (64, 49) and model.pos.shape == (1, 17, 64)
    assert {"blocks.0.attn.qkv.weight", "blocks.1.attn.proj.weight", "blocks.1.mlp.2.weight", "head.weight"} <= set(
        names
    )
    assert build_model("vit", (3, 32, 32), 10).embed.weight.shape == (64, 48)  # 4x4 RGB patches
    # the class token and position embeddings are drawn from the seed, like the weights
    again, other = build_model("vit", (1, 28, 28), 10, seed=0), build_model("vit", (1, 28, 28), 10, seed=1)
    assert torch.equal(model.pos, again.pos) and not torch.equal(model.pos, other.pos)
    assert 0.01 < float(model.pos.std()) < 0.03


def test_vit_attention_mixes_tokens():
    model = build_model("vit", (1, 28, 28), 10, seed=0).eval()
    x = torch.zeros(1, 1, 28, 28)
    y = x.clone()
    y[0, 0, :7, :7] = 1.0  # change only the first patch: the class token's output moves through attention
    assert not torch.allclose(model(x), model(y))


@pytest.mark.parametrize(
    "name,shape",
    [("vit", (1, 16, 16)), ("conv2", (1, 40)), ("vgg16", (1, 8, 8)), ("cnn1d", (1, 28, 28)), ("conv6", (1, 4, 4))],
)
def test_model_that_does_not_fit_the_input_is_a_user_error(name, shape):
    with pytest.raises(UserError, match="pick"):
        build_model(name, shape, 10)


def test_gaussian_glorot_init_std_and_zero_biases():
    model = build_model("lenet300", (1, 28, 28), 10, seed=3)
    w = model[1].weight.detach()
    expected = (2 / (784 + 300)) ** 0.5
    assert abs(float(w.std()) - expected) / expected < 0.02
    assert float(w.mean()).__abs__() < 1e-3
    assert torch.count_nonzero(model[1].bias) == 0


def test_init_is_a_function_of_the_seed():
    a = build_model("conv2", (1, 28, 28), 10, seed=1)
    b = build_model("conv2", (1, 28, 28), 10, seed=1)
    c = glorot_normal_init(build_model("conv2", (1, 28, 28), 10, seed=1), seed=2)
    assert all(torch.equal(p, q) for p, q in zip(a.parameters(), b.parameters()))
    assert not torch.equal(a[0].weight, c[0].weight)
