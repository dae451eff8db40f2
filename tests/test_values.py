import pytest
import torch

from ticketlab.sparse.values import kept_values, pruned_values

W = torch.tensor([[0.5, -0.2, 0.3], [-0.7, 0.1, -0.4]])
MASK = torch.tensor([[True, True, False], [True, False, True]])
FRESH = torch.tensor([[-0.05, 0.06, 0.07], [0.08, -0.09, 0.11]])


def kv(rule, signed, seed=0):
    return kept_values(rule, signed, {"w": W}, {"w": MASK}, {"w": FRESH}, torch.Generator().manual_seed(seed))["w"]


def test_original_is_the_ticket():
    assert torch.equal(kv("original", False), W) and torch.equal(kv("original", True), W)


def test_reinit_draws_fresh_values_and_signed_keeps_original_signs():
    r = kv("reinit", False)
    assert torch.equal(r[MASK], FRESH[MASK]) and torch.equal(r[~MASK], W[~MASK])
    s = kv("reinit", True)
    assert torch.equal(s[MASK], FRESH[MASK].abs() * W[MASK].sign())


def test_reshuffle_permutes_kept_values_among_kept_positions():
    r = kv("reshuffle", False, seed=3)
    assert sorted(r[MASK].tolist()) == sorted(W[MASK].tolist()) and torch.equal(r[~MASK], W[~MASK])
    assert any(not torch.equal(kv("reshuffle", False, seed=s)[MASK], W[MASK]) for s in range(5))
    s = kv("reshuffle", True, seed=3)
    assert torch.equal(s[MASK].sign(), W[MASK].sign())
    assert sorted(s[MASK].abs().tolist()) == sorted(W[MASK].abs().tolist())


def test_constant_is_plus_minus_the_layer_population_std():
    """Zhou et al.'s code takes np.std: the population std (divide by n), not the sample std."""
    std = float(((W - W.mean()) ** 2).mean().sqrt())
    assert std != pytest.approx(float(W.std()))
    s = kv("constant", True)
    assert torch.allclose(s[MASK], std * W[MASK].sign())
    u = kv("constant", False)
    assert torch.allclose(u[MASK].abs(), torch.full((4,), std))


def test_pruned_values_rules():
    wi = {"w": torch.tensor([0.5, -0.5, 0.2, -0.2])}
    wf = {"w": torch.tensor([0.1, -0.9, 0.0, 0.3])}
    m = {"w": torch.tensor([False, False, False, True])}
    assert pruned_values("zero", wi, wf, m) is None
    assert torch.equal(pruned_values("freeze-init", wi, wf, m)["w"], wi["w"])
    # moved toward zero (|wf| < |wi|): entries 0 and 2 -> 0; moved away: entries 1, 3 -> frozen at init
    assert torch.equal(pruned_values("toward-zero", wi, wf, m)["w"], torch.tensor([0.0, -0.5, 0.0, -0.2]))


@pytest.mark.parametrize("rule", ["bogus"])
def test_unknown_rules_are_user_errors(rule):
    from ticketlab.errors import UserError

    with pytest.raises(UserError):
        kv(rule, False)
