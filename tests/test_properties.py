"""Property-based tests (hypothesis): rules that hold for every shape and density, not only hand-picked ones.

Examples are derandomized (conftest's profile), so a run is repeatable; ``--hypothesis-seed`` explores others.
"""

import math

import numpy as np
import torch
from hypothesis import given
from hypothesis import strategies as st

from ticketlab.sparse import global_prune, keep_count, layerwise_prune, random_mask_like, select_topk_mask, topk_mask
from ticketlab.sparse.distributions import layer_counts, layer_densities
from ticketlab.ticket.golomb import decode, encode, golomb_parameter

shapes = st.lists(st.integers(1, 7), min_size=1, max_size=4).map(tuple)
layer_shapes = st.dictionaries(st.sampled_from(["a", "b", "c", "d", "e"]), shapes, min_size=1, max_size=5)
densities = st.floats(0.0, 1.0, allow_nan=False)
positive = st.floats(1e-3, 1.0, allow_nan=False)


def rand(shape, seed):
    return torch.rand(shape, generator=torch.Generator().manual_seed(seed))


@given(shape=shapes, d=densities, seed=st.integers(0, 2**16))
def test_topk_keeps_exactly_the_count_and_only_the_largest(shape, d, seed):
    s = rand(shape, seed).round(decimals=1)  # many ties
    k = keep_count(s.numel(), d)
    for select in (topk_mask, select_topk_mask):
        m = select(s, k, torch.Generator().manual_seed(seed))
        assert m.shape == s.shape and int(m.sum()) == k
        if 0 < k < s.numel():
            assert s[m].min() >= s[~m].max()


@given(layers=layer_shapes, d=densities, seed=st.integers(0, 2**16), prior=st.floats(0.0, 1.0))
def test_layerwise_prune_keeps_round_numel_times_density_capped_by_what_is_kept(layers, d, seed, prior):
    mask = {n: rand(s, seed + i) < prior for i, (n, s) in enumerate(layers.items())}
    scores = {n: rand(s, seed + 99 + i) for i, (n, s) in enumerate(layers.items())}
    out = layerwise_prune(scores, mask, {n: d for n in layers}, torch.Generator().manual_seed(seed))
    for n, m in mask.items():
        assert int(out[n].sum()) == min(int(round(m.numel() * d)), int(m.sum()))
        assert not (out[n] & ~m).any()  # nothing pruned comes back


@given(layers=layer_shapes, d=densities, seed=st.integers(0, 2**16), prior=st.floats(0.0, 1.0))
def test_global_prune_keeps_round_total_times_density_capped_by_what_is_kept(layers, d, seed, prior):
    mask = {n: rand(s, seed + i) < prior for i, (n, s) in enumerate(layers.items())}
    scores = {n: rand(s, seed + 99 + i) for i, (n, s) in enumerate(layers.items())}
    out = global_prune(scores, mask, d, torch.Generator().manual_seed(seed))
    total = sum(m.numel() for m in mask.values())
    assert sum(int(m.sum()) for m in out.values()) == min(
        int(round(total * d)), sum(int(m.sum()) for m in mask.values())
    )
    assert all(not (out[n] & ~mask[n]).any() and out[n].shape == mask[n].shape for n in mask)


@given(layers=layer_shapes, seed=st.integers(0, 2**16))
def test_random_mask_keeps_every_layers_count(layers, seed):
    mask = {n: rand(s, seed + i) < 0.3 for i, (n, s) in enumerate(layers.items())}
    out = random_mask_like(mask, torch.Generator().manual_seed(seed))
    assert {n: int(m.sum()) for n, m in out.items()} == {n: int(m.sum()) for n, m in mask.items()}


@given(layers=layer_shapes, d=positive, kind=st.sampled_from(["uniform", "er", "erk"]))
def test_distributions_meet_the_target_and_counts_sum_to_it_exactly(layers, d, kind):
    dens = layer_densities(layers, d, kind)
    sizes = {n: math.prod(s) for n, s in layers.items()}
    n_all = sum(sizes.values())
    assert math.isclose(sum(sizes[n] * dens[n] for n in layers), d * n_all, rel_tol=1e-9, abs_tol=1e-9)
    assert all(-1e-12 <= v <= 1 + 1e-12 for v in dens.values())
    counts = layer_counts(layers, d, kind)
    assert sum(counts.values()) == round(n_all * d)
    assert all(0 <= counts[n] <= sizes[n] and abs(counts[n] - dens[n] * sizes[n]) < 1 + 1e-9 for n in layers)


@given(n=st.integers(1, 3000), q=st.floats(0.0, 1.0), seed=st.integers(0, 2**16), m_extra=st.integers(0, 3))
def test_golomb_round_trips_any_positions_with_any_parameter(n, q, seed, m_extra):
    positions = np.flatnonzero(np.random.default_rng(seed).random(n) < q)
    for M in {golomb_parameter(positions.size / n), golomb_parameter(positions.size / n) + m_extra, 1}:
        data, nbits = encode(positions, M)
        assert len(data) == (nbits + 7) // 8
        assert np.array_equal(decode(data, positions.size, M, nbits), positions)
