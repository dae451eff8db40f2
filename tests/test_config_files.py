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


@pytest.mark.parametrize(
    ("line", "said"),
    [
        ('iterations = "fifty"', "--iterations must be an integer (or left out), got 'fifty'"),
        ("iterations = true", "--iterations must be an integer (or left out), got True"),  # bool is not an int
        ("iterations = [1, 2]", "--iterations must be an integer (or left out), got [1, 2]"),
        ("lr = nan", "--lr must be a finite number, got nan"),
        ("lr = inf", "--lr must be a finite number, got inf"),
        ("lr = true", "--lr must be a finite number, got True"),
        ('control = "reinit"', "--control must be a list of strings, got 'reinit'"),
        ("rounds = 2.5", "--rounds must be an integer (or left out), got 2.5"),
    ],
)
def test_a_config_value_of_the_wrong_type_is_refused_naming_the_file_and_flag(tmp_path, capsys, line, said):
    (tmp_path / "c.toml").write_text(line + "\n")
    code = main(["imp", "--config", str(tmp_path / "c.toml"), "--out", str(tmp_path / "r")])
    one_line_exit_2(code, capsys.readouterr().err, f"--config {tmp_path / 'c.toml'}: {said}")
    assert not (tmp_path / "r").exists()


def test_an_integer_is_a_number_where_a_float_goes(tmp_path, capsys):
    (tmp_path / "c.toml").write_text("lr = 1\niterations = 2\neval-every = 1\n")
    args = ["--dataset", "digits", "--model", "lenet300", "--rounds", "1", "--quiet", "--out", str(tmp_path / "r")]
    assert main(["imp", "--config", str(tmp_path / "c.toml"), *args]) == 0


@pytest.mark.parametrize("flag", [["--lr", "nan"], ["--lr", "inf"], ["--rate", "nan"]])
def test_a_non_finite_flag_value_is_refused(tmp_path, capsys, flag):
    code = main(["imp", *flag, "--out", str(tmp_path / "r")])
    one_line_exit_2(code, capsys.readouterr().err, f"{flag[0]} must be")
    assert not (tmp_path / "r").exists()


@pytest.mark.parametrize(
    ("flags", "said"),
    [
        (["--adv-eps", "0.1"], "--adv-eps is used only with --adv pgd, trades or fgsm-rs"),
        (["--adv-norm", "l2"], "--adv-norm is used only with --adv"),
        (["--cert-eps", "0.1"], "--cert-eps is used only with --certified ibp or crown-ibp"),
        (["--augment-sigma", "0.2"], "--augment-sigma is used only with --augment gaussian or augmix"),
        (["--rs-eps", "0.1"], "--rs-eps is used only with --rs-weight > 0"),
    ],
)
def test_a_setting_of_a_training_term_that_is_off_is_refused_in_a_single_run(tmp_path, capsys, flags, said):
    code = main(["imp", *flags, "--out", str(tmp_path / "r")])
    one_line_exit_2(code, capsys.readouterr().err, said)
    assert not (tmp_path / "r").exists()
