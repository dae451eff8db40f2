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


def test_er_ignores_kernel_dims():
    d = layer_densities({"a": (8, 4, 3, 3), "b": (64, 64)}, 0.2, "er")
    eps = d["b"] / ((64 + 64) / (64 * 64))
    assert d["a"] == pytest.approx(min(1.0, eps * (8 + 36) / (8 * 36)))


def test_overrides_are_kept_and_the_rest_re_solved():
    d = layer_densities(SHAPES, 0.1, "erk", overrides={"out": 1.0})
    assert d["out"] == 1.0 and total(d) == pytest.approx(0.1)


@pytest.mark.parametrize("args,msg", [((SHAPES, 0.1, "gaussian"), "unknown sparsity distribution"),
                                      ((SHAPES, 1.5, "erk"), "density must be in"),
                                      ((SHAPES, 0.001, "erk", {"fc": 1.0}), "no feasible density"),
                                      ((SHAPES, 0.1, "erk", {"nope": 1.0}), "unknown layer")])
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
