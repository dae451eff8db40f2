import pytest
import torch

from ticketlab.criteria import CRITERIA, criterion_mask, criterion_scores
from ticketlab.errors import UserError

WI = torch.tensor([0.5, -0.1, 0.3, -0.8, 0.05, 0.6])
WF = torch.tensor([0.9, 0.4, -0.2, -0.1, 0.7, 0.65])
ALL = torch.ones(6, dtype=torch.bool)


def keep(name, k, kept=ALL, seed=0):
    d = k / 6
    return (
        criterion_mask(name, {"w": WI}, {"w": WF}, {"w": kept.clone()}, {"w": d}, torch.Generator().manual_seed(seed))[
            "w"
        ]
        .nonzero()
        .flatten()
        .tolist()
    )


@pytest.mark.parametrize(
    "name,expected",
    [
        ("large_final", [0, 4, 5]),  # |wf| = .9 .4 .2 .1 .7 .65
        ("small_final", [1, 2, 3]),
        ("large_init", [0, 3, 5]),  # |wi| = .5 .1 .3 .8 .05 .6
        ("small_init", [1, 2, 4]),
        ("magnitude_increase", [0, 1, 4]),  # |wf|-|wi| = .4 .3 -.1 -.7 .65 .05
        ("movement", [3, 4]),  # |wf-wi| = .4 .5 .5 .7 .65 .05
        ("large_final_same_sign", [0, 4, 5]),  # same sign at 0, 3, 4, 5 -> scores .9 0 0 .1 .7 .65
        ("large_final_diff_sign", [1, 2]),  # only 1 and 2 flip sign; the rest score 0 (ties)
    ],
)
def test_criteria_on_hand_made_weights(name, expected):
    got = keep(name, len(expected))
    assert got == expected


def test_diff_sign_fills_with_random_ties_beyond_the_flipped_ones():
    picks = {tuple(keep("large_final_diff_sign", 3, seed=s)) for s in range(20)}
    assert all(set(p) >= {1, 2} for p in picks) and len(picks) > 1  # third pick is a random tie


def test_large_init_large_final_keeps_weights_past_one_shared_percentile():
    # ranks of |wi|: 0:3 1:1 2:2 3:5 4:0 5:4 ; ranks of |wf|: 0:5 1:2 2:1 3:0 4:4 5:3 ; min: 3 1 1 0 0 3
    assert keep("large_init_large_final", 2) == [0, 5]
    # -|wi| ranks: 2 4 3 0 5 1 ; -|wf| ranks: 0 3 4 5 1 2 ; min: 0 3 3 0 1 1
    assert keep("small_init_small_final", 2) == [1, 2]


def test_rank_criteria_rank_among_kept_entries_only():
    kept = torch.tensor([False, True, True, True, True, True])
    # among 1..5: |wi| ranks 1:1 2:2 3:4 4:0 5:3 ; |wf| ranks 1:2 2:1 3:0 4:4 5:3 ; min: 1 1 0 0 3
    assert keep("large_init_large_final", 1, kept=kept) == [5]
    assert keep("large_final", 2, kept=kept) == [4, 5]  # index 0 is never revived


def test_random_criterion_depends_only_on_the_generator():
    a, b = keep("random", 3, seed=1), keep("random", 3, seed=1)
    assert a == b and len(a) == 3


def test_every_criterion_returns_scores_of_the_weight_shape():
    w = torch.randn(4, 5)
    for name in CRITERIA:
        s = criterion_scores(
            name, {"w": w}, {"w": w * 2}, {"w": torch.ones(4, 5, dtype=torch.bool)}, torch.Generator().manual_seed(0)
        )
        assert s["w"].shape == (4, 5), name


def test_unknown_criterion():
    with pytest.raises(UserError, match="unknown criterion"):
        keep("biggest", 2)


def test_sign_rules_separate_same_sign_diff_sign_and_sign_blind():
    wi = torch.tensor([0.5, -0.6, 0.2, -0.1, 0.3, 0.05])
    wf = torch.tensor([0.9, 0.8, 0.1, -0.7, -0.2, 0.4])  # |wf| = .9 .8 .1 .7 .2 .4; signs flip at 1 and 4

    def pick(name, k):
        d = {"w": k / 6}
        return (
            criterion_mask(name, {"w": wi}, {"w": wf}, {"w": ALL.clone()}, d, torch.Generator().manual_seed(0))["w"]
            .nonzero()
            .flatten()
            .tolist()
        )

    assert pick("large_final", 3) == [0, 1, 3]  # sign-blind: the flipped .8 is kept
    assert pick("large_final_same_sign", 3) == [0, 3, 5]  # .9 .7 .4 among unflipped
    assert pick("large_final_diff_sign", 2) == [1, 4]  # .8 .2 among flipped
    scores = criterion_scores("large_final_same_sign", {"w": wi}, {"w": wf}, {"w": ALL}, torch.Generator())["w"]
    # the paper's max(0, w_i w_f / |w_i|)
    assert torch.allclose(scores, torch.clamp(wi * wf / wi.abs(), min=0))


def test_every_criterion_disagrees_with_large_final_somewhere():
    # On the module's weights at k = 2 and 3, each criterion's mask differs from magnitude pruning's
    # at some k (large_final_same_sign separates on the weights of the sign test above).
    base = {k: keep("large_final", k) for k in (2, 3)}
    for name in CRITERIA:
        if name in ("large_final", "large_final_same_sign", "random"):
            continue
        assert any(keep(name, k) != base[k] for k in (2, 3)), name


def test_random_criterion_ignores_the_weights():
    g1, g2 = torch.Generator().manual_seed(4), torch.Generator().manual_seed(4)
    a = criterion_scores("random", {"w": WI}, {"w": WF}, {"w": ALL}, g1)["w"]
    b = criterion_scores("random", {"w": -WI * 3}, {"w": WF * 0}, {"w": ALL}, g2)["w"]
    assert torch.equal(a, b) and len(set(a.tolist())) == 6


def test_rank_among_kept_ranks_ties_in_index_order_and_marks_pruned_minus_one():
    from ticketlab.criteria.scores import rank_among_kept

    values = torch.tensor([[3.0, 1.0, 3.0], [1.0, 9.0, 2.0]])
    kept = torch.tensor([[True, True, True], [True, False, True]])
    assert rank_among_kept(values, kept).tolist() == [[3.0, 0.0, 4.0], [1.0, -1.0, 2.0]]
    many = torch.arange(6000).remainder(3).float()  # 2000 ties of each value: a stable sort keeps index order
    ranks = rank_among_kept(many, torch.ones(6000, dtype=torch.bool))
    assert torch.equal(ranks[0::3], torch.arange(2000.0)) and torch.equal(ranks[1::3], torch.arange(2000.0, 4000.0))
