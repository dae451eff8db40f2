"""runs.models: a finished run's trained models come from its experiment's ``models``; a run kind with none,
a half-written summary or a missing weights file is a one-line refusal."""

import json

import pytest

from ticketlab.errors import UserError
from ticketlab.runs.models import trained_models


def fake_run(path, kind, summary):
    path.mkdir()
    (path / "config.json").write_text(json.dumps({"kind": kind, "config": {}}))
    (path / "summary.json").write_text(json.dumps(summary))
    return path


def test_a_kind_without_trained_models_is_refused_naming_the_kinds_that_have_them(tmp_path):
    run = fake_run(tmp_path / "c", "colt", {})
    with pytest.raises(
        UserError, match=r"is a colt run, which holds no trained models to evaluate; give a run of: .*imp.*prune-init"
    ) as e:
        trained_models(run)
    assert "colt" not in str(e.value).split("run of:")[1]


def test_the_experiments_models_are_read_and_their_files_checked(tmp_path):
    run = fake_run(tmp_path / "p", "prune-init", {"config": {"method": "snip"}, "density": 0.1})
    with pytest.raises(UserError, match="holds no trained model for snip; finish the run first"):
        trained_models(run)
    (run / "final.safetensors").write_bytes(b"")
    record, models = trained_models(run)
    assert record["kind"] == "prune-init"
    assert models == [{"label": "snip", "group": "prune-init", "density": 0.1, "weights": run / "final.safetensors"}]


def test_a_summary_without_what_its_experiment_reads_is_corrupt(tmp_path):
    run = fake_run(tmp_path / "d", "dst", {"config": {}})
    with pytest.raises(UserError, match="summary.json is corrupt or from another program"):
        trained_models(run)
