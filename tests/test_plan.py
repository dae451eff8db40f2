import pytest
from torch import nn

from ticketlab.lottery import IMPConfig, make_plan
from ticketlab.lottery.plan import layer_rates, solve_exponent
from ticketlab.sparse import prunable_names


def conv_mlp():
    return nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten(), nn.Linear(36 * 4, 20), nn.Linear(20, 10))


def test_layerwise_rates_conv_fc_and_half_rate_output():
    m = conv_mlp()
    rates = layer_rates(m, prunable_names(m), IMPConfig(rate=0.2, conv_rate=0.1))
    assert rates == {"0.weight": 0.1, "2.weight": 0.2, "3.weight": 0.1}
    rates = layer_rates(m, prunable_names(m), IMPConfig(rate=0.2, output_rate=0.2))
    assert rates["3.weight"] == 0.2 and rates["0.weight"] == 0.2


def test_round_k_keeps_one_minus_rate_to_the_k():
    m = conv_mlp()
    plan = make_plan(m, prunable_names(m), IMPConfig(rate=0.2, rounds=3))
    assert plan.rounds == 3
    d = plan.layer_densities(2)
    assert d["2.weight"] == pytest.approx(0.64) and d["3.weight"] == pytest.approx(0.81)


@pytest.mark.parametrize("global_pruning", [False, True])
def test_target_density_is_met_exactly_in_the_last_round(global_pruning):
    m = conv_mlp()
    plan = make_plan(m, prunable_names(m), IMPConfig(rate=0.2, target_density=0.3, global_pruning=global_pruning))
    assert plan.expected_density(plan.rounds) == pytest.approx(0.3, abs=1e-9)
    assert plan.expected_density(plan.rounds - 1) > 0.3
    assert plan.rounds == (6 if global_pruning else plan.rounds)


def test_one_shot_prunes_to_the_same_densities_in_one_round():
    m = conv_mlp()
    names = prunable_names(m)
    iterative = make_plan(m, names, IMPConfig(rate=0.2, rounds=4))
    one_shot = make_plan(m, names, IMPConfig(rate=0.2, rounds=4, one_shot=True))
    assert one_shot.rounds == 1 and one_shot.layer_densities(1) == iterative.layer_densities(4)


def test_solve_exponent_hits_target():
    sizes, rates = {"a": 100, "b": 10}, {"a": 0.2, "b": 0.1}
    t = solve_exponent(sizes, rates, 0.05)
    assert (100 * 0.8 ** t + 10 * 0.9 ** t) / 110 == pytest.approx(0.05, rel=1e-9)
