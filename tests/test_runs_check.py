import json

import pytest
import torch

from ticketlab.errors import UserError
from ticketlab.io import save_tensors
from ticketlab.runs.check import check_run_files


def put(path, obj):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(obj))


@pytest.fixture
def run(tmp_path):
    put(tmp_path / "r" / "config.json", {"kind": "someone", "config": {"a": 1}})
    return tmp_path / "r"


def test_a_method_own_json_may_be_any_json_but_the_engines_objects_must_be_objects(run):
    put(run / "rounds.json", [{"round": 1}])  # COLT's: a list
    check_run_files(run)
    put(run / "summary.json", [1])
    with pytest.raises(UserError, match=r"summary\.json is damaged \(not a JSON object\)"):
        check_run_files(run)


@pytest.mark.parametrize(
    "record",
    [{"summary": {"test_acc": "x"}}, {"history": 3}, {"history": [{"iter": "1"}]}, {"other": 1}, [1]],
)
def test_a_training_record_of_the_wrong_shape_is_refused(run, record):
    put(run / "round_00" / "metrics.json", record)
    with pytest.raises(UserError, match=r"metrics\.json is damaged"):
        check_run_files(run)


def test_non_finite_weights_are_refused_but_a_checkpoints_optimizer_state_may_hold_any_value(run):
    save_tensors(
        run / "checkpoint.safetensors",
        {"model.w": torch.ones(2), "opt.0.v": torch.tensor([float("inf")])},
        metadata={"iteration": "3", "history": "[]", "optimizer": "{}"},
    )
    check_run_files(run)
    save_tensors(run / "final.safetensors", {"w": torch.tensor([1.0, float("nan")])})
    with pytest.raises(UserError, match=r"final\.safetensors holds non-finite values \(NaN or inf in w\)"):
        check_run_files(run)


def test_a_nested_analysis_is_skipped_and_a_groups_members_are_checked(tmp_path, run):
    put(run / "verify-abc" / "config.json", {"kind": "verify", "config": {}})
    (run / "verify-abc" / "results.json").write_text("{broken")
    check_run_files(run)  # the run never reads its analyses
    group = tmp_path / "g"
    put(group / "config.json", {"kind": "seeds", "config": {"experiment": "someone"}})
    put(group / "seed_0" / "config.json", {"kind": "someone", "config": {}})
    (group / "seed_0" / "summary.json").write_text("{broken")
    with pytest.raises(UserError, match=r"seed_0/summary\.json is corrupt or not JSON"):
        check_run_files(group)


def test_a_folder_that_is_not_a_run_or_of_another_kind_is_left_to_open_run_dir(tmp_path, run):
    (tmp_path / "plain").mkdir()
    (tmp_path / "plain" / "x.json").write_text("{broken")
    check_run_files(tmp_path / "plain")
    (run / "summary.json").write_text("{broken")
    check_run_files(run, kind="imp")
