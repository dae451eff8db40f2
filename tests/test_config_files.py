"""Config files: `ticketlab show RUN --config` writes a run's config as TOML of flag names, `--config FILE`
reads it back to the same config (same hash); flags given on the command line win; unknown keys are one line."""

import json

import pytest
from helpers import one_line_exit_2

from ticketlab.cli import main
from ticketlab.runs import config_hash


def stored(run):
    return json.loads((run / "config.json").read_text())["config"]


@pytest.mark.slow
def test_show_config_then_config_gives_the_same_config_hash(tmp_path, capsys):
    for argv in (
        [
            "imp",
            "--dataset",
            "digits",
            "--model",
            "mlp1d",
            "--iterations",
            "20",
            "--rounds",
            "1",
            "--global",
            "--lr",
            "0.003",
            "--milestones",
            "5,10",
            "--lr-schedule",
            "step",
            "--control",
            "reinit",
        ],
        [
            "dst",
            "--dataset",
            "digits",
            "--method",
            "set",
            "--density",
            "0.2",
            "--iterations",
            "20",
            "--adv",
            "pgd",
            "--adv-eps",
            "0.05",
            "--adv-steps",
            "2",
        ],
    ):
        a = tmp_path / f"{argv[0]}-a"
        assert main([*argv, "--quiet", "--out", str(a)]) == 0
        capsys.readouterr()
        assert main(["show", str(a), "--config"]) == 0
        (tmp_path / "saved.toml").write_text(capsys.readouterr().out)
        b = tmp_path / f"{argv[0]}-b"
        assert main([argv[0], "--config", str(tmp_path / "saved.toml"), "--quiet", "--out", str(b)]) == 0
        assert stored(a) == stored(b) and config_hash(stored(a)) == config_hash(stored(b))
        # a flag given on the command line wins over the file
        c = tmp_path / f"{argv[0]}-c"
        assert (
            main([argv[0], "--config", str(tmp_path / "saved.toml"), "--iterations", "10", "--quiet", "--out", str(c)])
            == 0
        )
        assert stored(c)["train"]["iterations"] == 10


def test_bad_config_files_are_one_line(tmp_path, capsys):
    (tmp_path / "bad.toml").write_text("nope = 3\n")
    (tmp_path / "broken.toml").write_text("lr = \n")
    for f, msg in (
        ("bad.toml", "unknown key 'nope'"),
        ("broken.toml", "is not valid TOML"),
        ("missing.toml", "no such file"),
    ):
        one_line_exit_2(
            main(["imp", "--config", str(tmp_path / f), "--quiet", "--out", str(tmp_path / "x")]),
            capsys.readouterr().err,
            msg,
        )
        assert not (tmp_path / "x").exists()
    one_line_exit_2(main(["show", str(tmp_path), "--config"]), capsys.readouterr().err, "not a run directory")
