import json

import pytest

from ticketlab.deconstruct import DeconstructConfig, run_deconstruct
from ticketlab.errors import UserError
from ticketlab.lottery import IMPConfig
from ticketlab.train import TrainConfig

IMP = IMPConfig(model="lenet300", dataset="digits", rounds=2, train=TrainConfig(iterations=40, eval_every=10))


@pytest.fixture(scope="module")
def result(tmp_path_factory):
    run = tmp_path_factory.mktemp("dc") / "run"
    d = DeconstructConfig(
        criteria=["large_final", "large_final_same_sign", "random"], kept=["original", "constant"], iterations=20
    )
    return run, d, run_deconstruct(run, d, IMP, quiet=True)


def test_matrix_has_every_criterion_and_kept_rule_at_every_round(result):
    _, _, r = result
    assert set(r["criteria"]) == {"large_final", "large_final_same_sign", "random"}
    assert set(r["kept_values"]) == {"original", "constant", "constant-signed"}
    for cells in list(r["criteria"].values()) + list(r["kept_values"].values()):
        assert [c["round"] for c in cells] == [1, 2]
        assert all({"density", "untrained_test_acc", "test_acc", "early_stop_iter"} <= set(c) for c in cells)
    assert all("untrained_signed_constant_test_acc" in c for c in r["criteria"]["random"])


def test_same_densities_as_the_imp_rounds(result):
    run, _, r = result
    summary = json.loads((run / "summary.json").read_text())
    for cells in r["criteria"].values():
        assert [c["density"] for c in cells] == pytest.approx([x["density"] for x in summary["rounds"][1:]], abs=1e-3)


def test_original_values_of_large_final_are_the_criteria_cell(result):
    _, _, r = result
    assert [c["untrained_test_acc"] for c in r["kept_values"]["original"]] == [
        c["untrained_test_acc"] for c in r["criteria"]["large_final"]
    ]


def test_rerun_reuses_cached_cells_and_writes_plots(result, monkeypatch):
    run, d, r = result
    from ticketlab.runs import training as imp_runner

    monkeypatch.setattr(imp_runner, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    again = run_deconstruct(run, d, quiet=True)
    assert again["criteria"] == r["criteria"]
    assert (next(run.glob("deconstruct-*")) / "criteria_untrained.png").exists()


def test_needs_a_run_or_flags(tmp_path):
    with pytest.raises(UserError, match="holds no IMP run"):
        run_deconstruct(tmp_path / "nothing", DeconstructConfig(), quiet=True)


def test_unknown_names_and_rounds(result):
    run, _, _ = result
    with pytest.raises(UserError, match="unknown criterion"):
        run_deconstruct(run, DeconstructConfig(criteria=["nope"]), quiet=True)
    with pytest.raises(UserError, match="unknown kept-value rule"):
        run_deconstruct(run, DeconstructConfig(kept=["nope"]), quiet=True)
    with pytest.raises(UserError, match="not a pruned round"):
        run_deconstruct(run, DeconstructConfig(rounds=[7]), quiet=True)


def test_cells_survive_an_upgrade_that_adds_imp_settings(result, monkeypatch):
    run, d, r = result
    out = next(run.glob("deconstruct-*"))
    stored = json.loads((out / "config.json").read_text())
    del stored["config"]["imp_run"]["label_noise"]  # as written by a ticketlab before --label-noise existed
    (out / "config.json").write_text(json.dumps(stored))
    from ticketlab.runs import training as imp_runner

    monkeypatch.setattr(imp_runner, "train", lambda *a, **k: (_ for _ in ()).throw(AssertionError("retrained")))
    assert run_deconstruct(run, d, quiet=True)["criteria"] == r["criteria"]
    assert len(list(run.glob("deconstruct-*"))) == 1
