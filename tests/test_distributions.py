import math

import pytest

from ticketlab.errors import UserError
from ticketlab.sparse.distributions import layer_densities

SHAPES = {"conv1": (16, 3, 3, 3), "conv2": (32, 16, 3, 3), "fc": (256, 512), "out": (10, 256)}


def total(d):
    return sum(math.prod(SHAPES[n]) * v for n, v in d.items()) / sum(math.prod(s) for s in SHAPES.values())


@pytest.mark.parametrize("kind", ["uniform", "er", "erk"])
@pytest.mark.parametrize("target", [0.5, 0.1, 0.02])
def test_densities_meet_the_target_and_stay_in_range(kind, target):
    d = layer_densities(SHAPES, target, kind)
    assert total(d) == pytest.approx(target, rel=1e-9)
    assert all(0 < v <= 1 for v in d.values())


def test_erk_is_proportional_to_sum_over_product_of_dims():
    d = layer_densities(SHAPES, 0.1, "erk")
    free = [n for n in SHAPES if d[n] < 1]
    ratios = {n: d[n] / (sum(SHAPES[n]) / math.prod(SHAPES[n])) for n in free}
    assert max(ratios.values()) == pytest.approx(min(ratios.values()))
    assert d["out"] == 1.0  # (10 + 256) / 2560 is the largest factor: it would exceed 1, so it is dense


def test_er_erk_and_uniform_on_a_conv_layer_by_hand():
    # conv (8, 4, 3, 3): 288 weights; fc (16, 32): 512 weights.
    # ER: (c_in + c_out) / (c_in c_out) - channels only, kernel ignored: conv 12/32 = 0.375, fc 48/512 = 0.09375.
    # At total 0.195 (156 of 800 kept) the scale is exactly 1.
    shapes = {"conv": (8, 4, 3, 3), "fc": (16, 32)}
    assert layer_densities(shapes, 0.195, "er") == pytest.approx({"conv": 0.375, "fc": 0.09375}, rel=1e-12)
    # ERK: sum of dims / product: conv 18/288 = 0.0625, fc 0.09375; at total 0.0825 (66 of 800) the scale is 1.
    assert layer_densities(shapes, 0.0825, "erk") == pytest.approx({"conv": 0.0625, "fc": 0.09375}, rel=1e-12)
    # the same total split the three ways
    er, erk = layer_densities(shapes, 0.0825, "er"), layer_densities(shapes, 0.0825, "erk")
    assert er == pytest.approx({"conv": 0.375 * 66 / 156, "fc": 0.09375 * 66 / 156}, rel=1e-12)
    assert layer_densities(shapes, 0.0825, "uniform") == pytest.approx({"conv": 0.0825, "fc": 0.0825}, rel=1e-12)
    assert erk["conv"] < 0.0825 < er["conv"]


def test_a_layer_that_would_pass_density_one_is_made_dense_and_the_rest_re_solved():
    # ERK raw: a (2, 2): 4 / 4 = 1; b (100, 100): 200 / 10^4 = 0.02. Target 0.1 keeps 1000.4 of 10004:
    # the first scale 1000.4 / 204 = 4.9 would give a 4.9, so a is dense and b gets 996.4 / 10^4.
    d = layer_densities({"a": (2, 2), "b": (100, 100)}, 0.1, "erk")
    assert d["a"] == 1.0 and d["b"] == pytest.approx(0.09964, rel=1e-12)
    # layers tied at the largest raw factor become dense together
    d = layer_densities({"a": (2, 2), "a2": (2, 2), "b": (100, 100)}, 0.1, "erk")
    assert d["a"] == d["a2"] == 1.0 and d["b"] == pytest.approx((0.1 * 10008 - 8) / 10000, rel=1e-12)
    # a layer exactly at density 1 stays in the solve (not over 1)
    d = layer_densities({"a": (2, 2), "b": (100, 100)}, 204 / 10004, "erk")
    assert d == pytest.approx({"a": 1.0, "b": 0.02}, rel=1e-12)


def test_full_density_keeps_everything_and_zero_is_refused():
    assert layer_densities(SHAPES, 1.0, "erk") == pytest.approx({n: 1.0 for n in SHAPES})
    with pytest.raises(UserError, match="density must be in"):
        layer_densities(SHAPES, 0.0, "uniform")


def test_every_layer_overridden_returns_the_overrides():
    shapes = {"a": (10,), "b": (10,)}
    assert layer_densities(shapes, 0.5, "erk", overrides={"a": 0.2, "b": 0.8}) == {"a": 0.2, "b": 0.8}
    with pytest.raises(UserError, match="no feasible"):  # the rest would need density above 1
        layer_densities(shapes, 0.9, "uniform", overrides={"a": 0.5})


def test_overrides_are_kept_and_the_rest_re_solved():
    d = layer_densities(SHAPES, 0.1, "erk", overrides={"out": 1.0})
    assert d["out"] == 1.0 and total(d) == pytest.approx(0.1)
    # uniform: the others share what is left; a: 10 at 1.0, b: 30 share 0.5 * 40 - 10 = 10 -> 1/3
    d = layer_densities({"a": (10,), "b": (30,)}, 0.5, "uniform", overrides={"a": 1.0})
    assert d == pytest.approx({"a": 1.0, "b": 1 / 3}, rel=1e-12)


@pytest.mark.parametrize(
    "args,msg",
    [
        ((SHAPES, 0.1, "gaussian"), "unknown sparsity distribution"),
        ((SHAPES, 1.5, "erk"), "density must be in"),
        ((SHAPES, 0.001, "erk", {"fc": 1.0}), "no feasible density"),
        ((SHAPES, 0.1, "erk", {"nope": 1.0}), "unknown layer"),
    ],
)
def test_bad_requests(args, msg):
    with pytest.raises(UserError, match=msg):
        layer_densities(*args)


@pytest.mark.parametrize("kind", ["uniform", "er", "erk"])
@pytest.mark.parametrize("density", [0.02, 0.1, 0.37])
def test_layer_counts_sum_exactly_to_the_target(kind, density):
    from ticketlab.sparse.distributions import layer_counts

    shapes = {"a": (300, 784), "b": (100, 300), "c": (10, 100), "d": (16, 3, 3, 3)}
    counts = layer_counts(shapes, density, kind)
    n = sum(math.prod(s) for s in shapes.values())
    assert sum(counts.values()) == round(n * density)
    dens = layer_densities(shapes, density, kind)
    for name, s in shapes.items():  # each layer within one weight of its share
        assert abs(counts[name] - dens[name] * math.prod(s)) <= 1
        assert 0 <= counts[name] <= math.prod(s)


def test_layer_counts_hand_out_leftovers_by_largest_fraction():
    from ticketlab.sparse.distributions import layer_counts

    # shares 2.1, 2.7, 1.2 -> floors 2, 2, 1 = 5; round(20 x 0.3) = 6: the one left goes to b (.7)
    assert layer_counts({"a": (7,), "b": (9,), "c": (4,)}, 0.3, "uniform") == {"a": 2, "b": 3, "c": 1}
    # shares 2.5 each; round(7.5) = 8 (half to even): two leftovers, ties in layer order
    assert layer_counts({"a": (10,), "b": (10,), "c": (10,)}, 0.25, "uniform") == {"a": 3, "b": 3, "c": 2}
    # an overridden layer keeps its exact share; leftovers go to the free layers only
    # a: 10 x 0.55 = 5.5 -> 5 (fixed); b, c share 0.4 x 30 - 5.5 = 6.5 over 20: 3.25 each -> 3, 3; target 12
    assert layer_counts({"a": (10,), "b": (10,), "c": (10,)}, 0.4, "uniform", overrides={"a": 0.55}) == {
        "a": 5,
        "b": 4,
        "c": 3,
    }
    # a dense layer is never given more than its size
    assert layer_counts({"a": (2, 2), "b": (100, 100)}, 0.1, "erk") == {"a": 4, "b": 996}


def test_budget_edges_defaults_and_exact_messages():
    shapes = {"a": (10,), "b": (10,)}
    # overrides may leave exactly nothing or exactly everything for the rest
    assert layer_densities(shapes, 0.5, "uniform", overrides={"a": 1.0}) == {"a": 1.0, "b": 0.0}
    assert layer_densities(shapes, 1.0, "uniform", overrides={"a": 1.0}) == {"a": 1.0, "b": 1.0}
    with pytest.raises(
        UserError,
        match=r"^the overrides leave no feasible density for the other layers at total "
        r"0.78$",
    ):
        layer_densities(shapes, 0.78, "uniform", overrides={"a": 0.5})  # b would need 10.6 of 10
    assert layer_densities(SHAPES, 0.1) == layer_densities(SHAPES, 0.1, "erk")  # ERK by default
    with pytest.raises(UserError, match=r"^unknown sparsity distribution 'gaussian'; choose one of: uniform, er, erk$"):
        layer_densities(SHAPES, 0.1, "gaussian")
    with pytest.raises(UserError, match=r"^density override for unknown layer 'nope'; layers: conv1, conv2, fc, out$"):
        layer_densities(SHAPES, 0.1, "erk", {"nope": 1.0})


def test_layer_counts_by_largest_fraction_not_largest_share():
    from ticketlab.sparse.distributions import layer_counts

    # shares 5.1 and 2.4 -> floors 5 + 2; round(7.5) = 8: the leftover goes to b (.4 > .1), not to the larger a
    assert layer_counts({"a": (17,), "b": (8,)}, 0.3, "uniform") == {"a": 5, "b": 3}
    assert layer_counts(SHAPES, 0.1) == layer_counts(SHAPES, 0.1, "erk")


def test_er_on_a_one_dimensional_parameter_has_one_input():
    # a bias-like (10,) tensor: (1 + 10) / (1 x 10) = 1.1; a (10, 10) matrix: 20 / 100 = 0.2; scale 1 at 31/110
    d = layer_densities({"b": (10,), "w": (10, 10)}, 31 / 110, "er")
    assert d == pytest.approx({"b": 1.0, "w": 0.21}, rel=1e-12)  # b would be 1.1 x eps > 1: dense, w re-solved
    d = layer_densities({"b": (10,), "w": (10, 10)}, 0.1, "er")
    assert d["b"] / d["w"] == pytest.approx(1.1 / 0.2, rel=1e-12)


def test_erk_power_scale_raises_the_proportion_to_a_power_and_zero_is_uniform():
    """conv (8, 4, 3, 3) and fc (16, 32): ERK proportions 0.0625 and 0.09375 (above). Power 0.5: sqrt of
    each, 0.25 and 0.30619; at total 0.2 the scale s solves 288 * 0.25 s + 512 * 0.30619 s = 160."""
    shapes = {"conv": (8, 4, 3, 3), "fc": (16, 32)}
    s = 160 / (288 * 0.25 + 512 * math.sqrt(0.09375))
    half = layer_densities(shapes, 0.2, "erk", power_scale=0.5)
    assert half == pytest.approx({"conv": 0.25 * s, "fc": math.sqrt(0.09375) * s}, rel=1e-12)
    assert layer_densities(shapes, 0.2, "erk", power_scale=0.0) == pytest.approx({"conv": 0.2, "fc": 0.2})
    assert layer_densities(shapes, 0.2, "er", power_scale=0.0) == pytest.approx({"conv": 0.2, "fc": 0.2})
    with pytest.raises(UserError, match="--erk-power-scale must be >= 0"):
        layer_densities(shapes, 0.2, "erk", power_scale=-1)
