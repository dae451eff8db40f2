import pytest
from torch import nn

from ticketlab.errors import UserError
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
    assert (100 * 0.8**t + 10 * 0.9**t) / 110 == pytest.approx(0.05, rel=1e-9)


def test_layer_densities_per_round_are_powers_of_the_keep_factor():
    m = conv_mlp()
    plan = make_plan(m, prunable_names(m), IMPConfig(rate=0.5, conv_rate=0.25, rounds=3))
    assert plan.layer_densities(0) == {"0.weight": 1.0, "2.weight": 1.0, "3.weight": 1.0}
    assert plan.layer_densities(3) == {"0.weight": 0.75**3, "2.weight": 0.125, "3.weight": 0.75**3}
    assert plan.exponents == [1.0, 2.0, 3.0] and plan.global_rate is None
    # expected density: parameter-weighted, conv 36, fc 2880, out 200
    assert plan.expected_density(1) == pytest.approx((36 * 0.75 + 2880 * 0.5 + 200 * 0.75) / 3116, rel=1e-12)


def test_global_plan_and_default_round_count():
    m = conv_mlp()
    plan = make_plan(m, prunable_names(m), IMPConfig(rate=0.5, global_pruning=True))
    assert plan.rounds == 5 and plan.global_rate == 0.5  # DEFAULT_ROUNDS
    assert plan.global_density(0) == 1.0 and plan.global_density(2) == 0.25 and plan.expected_density(3) == 0.125


@pytest.mark.parametrize("target,rounds", [(0.25, 2), (0.2, 3), (0.5, 1), (0.125, 3)])
def test_target_density_round_count_is_the_ceiling_of_the_exponent(target, rounds):
    m = conv_mlp()
    plan = make_plan(m, prunable_names(m), IMPConfig(rate=0.5, target_density=target, global_pruning=True))
    # (1 - 0.5)^t = target: t = log2(1 / target); an exact integer t needs no extra round
    assert plan.rounds == rounds and plan.global_density(rounds) == pytest.approx(target, rel=1e-12)
    assert plan.exponents[:-1] == [float(k) for k in range(1, rounds)]


def test_solve_exponent_beyond_one_round_and_at_the_ends():
    sizes, rates = {"a": 100}, {"a": 0.5}
    assert solve_exponent(sizes, rates, 0.5) == pytest.approx(1.0, abs=1e-12)
    assert solve_exponent(sizes, rates, 0.01) == pytest.approx(6.643856189774724, rel=1e-12)  # log2(100)
    assert solve_exponent(sizes, rates, 0.9) == pytest.approx(0.15200309344504997, rel=1e-12)


def test_layer_rates_with_no_names_and_rate_overrides_for_conv():
    m = conv_mlp()
    assert layer_rates(m, [], IMPConfig(rate=0.2)) == {}
    rates = layer_rates(m, ["0.weight", "2.weight"], IMPConfig(rate=0.3, conv_rate=0.15, output_rate=0.05))
    assert rates == {"0.weight": 0.15, "2.weight": 0.05}  # the last name given is the output layer


def test_conv_layers_are_found_by_their_full_module_name():
    m = nn.Sequential(nn.Sequential(nn.Conv2d(1, 4, 3), nn.Flatten()), nn.Linear(36 * 4, 20), nn.Linear(20, 10))
    rates = layer_rates(m, prunable_names(m), IMPConfig(rate=0.2, conv_rate=0.1))
    assert rates == {"0.0.weight": 0.1, "1.weight": 0.2, "2.weight": 0.1}


def test_excluded_layers_count_in_the_global_rate_only_with_exclude_counts_all():
    """Layer 0 (10 x 10 = 100 weights) pruned, layer 1 (6 x 10 = 60) excluded; --global --rate 0.5, one
    round. ticketlab's default prunes half of the included weights: 50 kept. open_lth's rule prunes half of
    all 160 prunable weights, from layer 0 only: 160 / 2 = 80 kept in all, 60 of them the excluded layer's,
    so layer 0 keeps 20 (density 0.2)."""
    net = nn.Sequential(nn.Linear(10, 10), nn.ReLU(), nn.Linear(10, 6))
    names = prunable_names(net, None, ["2.weight"])
    assert names == ["0.weight"]
    inc = make_plan(net, names, IMPConfig(global_pruning=True, rate=0.5, rounds=1, prune_exclude=["2.weight"]))
    every = make_plan(
        net, names, IMPConfig(global_pruning=True, rate=0.5, rounds=1, prune_exclude=["2.weight"], exclude_counts="all")
    )
    assert inc.global_density(1) == 0.5 and every.global_density(1) == pytest.approx(0.2)
    assert every.global_density(0) == 1.0
    with pytest.raises(UserError, match="exceed what the last round keeps"):
        make_plan(
            net,
            names,
            IMPConfig(global_pruning=True, rate=0.5, rounds=2, prune_exclude=["2.weight"], exclude_counts="all"),
        )
    with pytest.raises(UserError, match="add --global"):
        IMPConfig(exclude_counts="all").validate()
    assert "exclude_counts" not in IMPConfig().to_dict()


def test_rewind_lr_is_learning_rate_rewinding_stored_as_none():
    c = IMPConfig(rewind="lr")
    c.validate()
    assert c.rewind == "none" and c.rewind_iter is None
    assert c.to_dict()["rewind"] == IMPConfig(rewind="none").to_dict()["rewind"]
