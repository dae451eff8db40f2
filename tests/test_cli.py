import json
import os
import signal
import subprocess
import sys
import time

import pytest
from helpers import one_line_exit_2

from ticketlab.cli import build_parser, imp_config_from_args, main

SMALL = ["--dataset", "digits", "--model", "lenet300", "--iterations", "30", "--eval-every", "10", "--quiet"]


def run_cli(capsys, *args):
    code = main(list(args))
    out, err = capsys.readouterr()
    return code, out, err


def test_imp_prints_the_table_and_show_prints_it_again(tmp_path, capsys):
    code, out, _ = run_cli(capsys, "imp", *SMALL, "--rounds", "2", "--control", "reinit", "--out", str(tmp_path / "r"))
    assert code == 0
    assert "round" in out and "reinit acc" in out and "accuracy_vs_density.png" in out
    table, files = out.split("\n\nrun: ")
    run = tmp_path / "r"
    assert files.splitlines() == [
        f"{run}  (`ticketlab show {run}` prints this again; `ticketlab report` makes a page)",
        f"summary: {run / 'summary.json'}",
        f"plots: {run / 'accuracy_vs_density.png'}",
        f"       {run / 'test_acc_by_round.png'}",
    ]
    code, shown, _ = run_cli(capsys, "show", str(tmp_path / "r"))
    assert code == 0 and shown.strip() == table.strip()
    code, layers, _ = run_cli(capsys, "show", str(tmp_path / "r"), "--layers")
    rows = {line.split()[0]: line.split()[1:] for line in layers.strip().splitlines()[1:]}
    assert code == 0 and rows["1.weight"] == ["100.00%", "80.00%", "64.00%"]
    assert rows["5.weight"] == ["100.00%", "90.00%", "81.00%"]
    summary = json.loads((tmp_path / "r/summary.json").read_text())
    assert summary["config"]["train"]["iterations"] == 30 and len(summary["rounds"]) == 3


def test_preset_fills_in_and_explicit_flags_win():
    ns = build_parser().parse_args(["imp", "--preset", "lth-lenet300", "--dataset", "digits", "--iterations", "20"])
    cfg = imp_config_from_args(ns)
    assert (cfg.model, cfg.dataset, cfg.train.optimizer, cfg.train.lr, cfg.train.batch_size) == (
        "lenet300",
        "digits",
        "adam",
        1.2e-3,
        60,
    )
    assert cfg.train.iterations == 20 and cfg.rate == 0.2
    ns = build_parser().parse_args(["imp", "--preset", "lth-conv6", "--epochs", "3"])
    cfg = imp_config_from_args(ns)
    assert cfg.train.epochs == 3 and cfg.train.iterations is None and cfg.conv_rate == 0.15


BAD = {
    "unknown model": (["--model", "nope"], "unknown model 'nope'"),
    "unknown dataset": (["--dataset", "nope"], "unknown dataset 'nope'"),
    "unknown preset": (["--preset", "nope"], "unknown preset 'nope'"),
    "rate 0": (["--rate", "0"], "--rate must be in (0, 1)"),
    "rate 1": (["--rate", "1"], "--rate must be in (0, 1)"),
    "conv rate": (["--conv-rate", "-0.1"], "--conv-rate must be in (0, 1)"),
    "rounds 0": (["--rounds", "0"], "--rounds must be >= 1"),
    "target density": (["--target-density", "1.5"], "--target-density must be in (0, 1)"),
    "rounds and target": (["--rounds", "2", "--target-density", "0.5"], "not both"),
    "model does not fit": (["--model", "vgg16"], "needs images of at least 16x16"),
    "1d model on images": (["--model", "cnn1d"], "needs 1-D input"),
    "bad rewind": (["--rewind", "soon"], "--rewind must be"),
    "negative rewind": (["--rewind", "-3"], "--rewind must be >= 0"),
    "unknown control": (["--control", "nope"], "unknown control 'nope'"),
    "iterations 0": (["--iterations", "0"], "--iterations must be >= 1"),
    "unknown optimizer": (["--optimizer", "lion"], "unknown optimizer 'lion'"),
    "non-number": (["--rate", "abc"], "invalid float value"),
    "unknown flag": (["--bogus"], "unrecognized arguments: --bogus"),
    "no cuda": (["--device", "cuda"], "CUDA is not available"),
    "unknown criterion": (["--criterion", "nope"], "unknown criterion 'nope'"),
    "unknown reinit": (["--reinit", "nope"], "unknown --reinit 'nope'"),
    "unknown mask-zero": (["--mask-zero", "nope"], "unknown --mask-zero 'nope'"),
}


@pytest.mark.parametrize(
    "case", [pytest.param(c, marks=pytest.mark.slow) if c == "unknown model" else c for c in sorted(BAD)]
)  # (that one generates MNIST-1D, the default dataset)
def test_bad_input_is_one_line_exit_2(case, tmp_path, capsys):
    args, expected = BAD[case]
    if case == "no cuda":
        pytest.importorskip("torch")
        import torch

        if torch.cuda.is_available():
            pytest.skip("CUDA present")
    base = ["--dataset", "digits", "--model", "lenet300"] if case not in ("unknown model", "unknown dataset") else []
    if case in ("model does not fit", "1d model on images"):
        base = ["--dataset", "digits"]
    code, out, err = run_cli(capsys, "imp", *base, *args, "--out", str(tmp_path / "r"), "--quiet")
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("ticketlab: error:") and expected in lines[0], err
    assert "Traceback" not in err
    assert not (tmp_path / "r").exists()


def test_unwritable_out_dir(tmp_path, capsys):
    (tmp_path / "file").write_text("x")
    code, _, err = run_cli(capsys, "imp", *SMALL, "--out", str(tmp_path / "file" / "sub"))
    assert code == 2 and "choose a writable directory" in err and len(err.strip().splitlines()) == 1


def test_out_is_a_file(tmp_path, capsys):
    (tmp_path / "file").write_text("keep")
    code, _, err = run_cli(capsys, "imp", *SMALL, "--out", str(tmp_path / "file"))
    assert code == 2 and "is a file" in err and (tmp_path / "file").read_text() == "keep"


def test_corrupt_config_json_in_out_dir(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text("{oops")
    code, _, err = run_cli(capsys, "imp", *SMALL, "--out", str(tmp_path / "r"))
    assert code == 2 and "corrupt" in err and (tmp_path / "r" / "config.json").read_text() == "{oops"


def test_foreign_config_json_in_out_dir(tmp_path, capsys):
    (tmp_path / "r").mkdir()
    (tmp_path / "r" / "config.json").write_text('{"name": "someone else"}')
    code, _, err = run_cli(capsys, "imp", *SMALL, "--out", str(tmp_path / "r"))
    assert code == 2 and "something other than a ticketlab imp run" in err


@pytest.mark.slow
def test_different_config_in_out_dir_exit_2_nothing_overwritten(tmp_path, capsys):
    assert run_cli(capsys, "imp", *SMALL, "--rounds", "1", "--out", str(tmp_path / "r"))[0] == 0
    before = {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()}
    code, _, err = run_cli(capsys, "imp", *SMALL, "--rounds", "1", "--lr", "0.5", "--out", str(tmp_path / "r"))
    assert code == 2 and "differs in: train.lr" in err
    assert {p: p.read_bytes() for p in (tmp_path / "r").rglob("*") if p.is_file()} == before


@pytest.mark.parametrize("content", [None, "[1, 2]", '{"rounds": [{"round": 0}], "config": {}}'])
def test_show_on_foreign_or_corrupt_dir(tmp_path, capsys, content):
    if content is not None:
        (tmp_path / "summary.json").write_text(content)
    code, _, err = run_cli(capsys, "show", str(tmp_path))
    assert code == 2 and len(err.strip().splitlines()) == 1 and "Traceback" not in err


def test_list_names_everything(capsys):
    code, out, _ = run_cli(capsys, "list")
    assert code == 0 and "lenet300" in out and "fashion-mnist" in out and "lth-conv6" in out


@pytest.mark.slow
def test_sigkill_at_any_moment_then_rerun_gives_the_uninterrupted_result(tmp_path):
    """A real kill -9 in the middle of a round; rerunning the command finishes with identical results."""
    args = [
        sys.executable,
        "-m",
        "ticketlab",
        "imp",
        "--dataset",
        "digits",
        "--model",
        "lenet300",
        "--iterations",
        "600",
        "--eval-every",
        "50",
        "--checkpoint-every",
        "50",
        "--rounds",
        "2",
        "--quiet",
    ]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    subprocess.run(args + ["--out", str(tmp_path / "ref")], check=True, env=env, capture_output=True)
    out = tmp_path / "r"
    proc = subprocess.Popen(args + ["--out", str(out)], env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while not (out / "round_01" / "checkpoint.safetensors").exists() and time.time() < deadline:
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert (out / "round_01" / "checkpoint.safetensors").exists()
    assert not (out / "round_01" / "metrics.json").exists()
    done = subprocess.run(args + ["--out", str(out)], env=env, capture_output=True, text=True)
    assert done.returncode == 0, done.stderr
    assert (out / "summary.json").read_text() == (tmp_path / "ref" / "summary.json").read_text()


def test_supermask_bad_input(tmp_path, capsys):
    code, _, err = run_cli(capsys, "supermask", "--method", "nope", "--out", str(tmp_path / "s"))
    one_line_exit_2(code, err, "unknown supermask method")
    code, _, err = run_cli(
        capsys,
        "supermask",
        "--method",
        "jackpot",
        "--dataset",
        "digits",
        "--pretrained",
        str(tmp_path),
        "--out",
        str(tmp_path / "s"),
    )
    one_line_exit_2(code, err, "not an IMP run directory")
    assert not (tmp_path / "s").exists()


def test_pack_and_unpack_from_the_command_line(tmp_path, capsys):
    assert run_cli(capsys, "imp", *SMALL, "--rounds", "2", "--out", str(tmp_path / "r"))[0] == 0
    code, out, _ = run_cli(capsys, "pack", str(tmp_path / "r"), "--round", "2")
    assert code == 0 and "bits per prunable weight" in out
    ticket = tmp_path / "r" / "ticket_round_02.safetensors"
    before = ticket.read_bytes()
    code, _, err = run_cli(capsys, "pack", str(tmp_path / "r"), "--round", "2")
    one_line_exit_2(code, err, "exists")
    assert ticket.read_bytes() == before
    code, out, _ = run_cli(capsys, "unpack", str(ticket), "--out", str(tmp_path / "u"))
    assert code == 0 and (tmp_path / "u" / "mask.safetensors").exists()
    code, _, err = run_cli(capsys, "unpack", str(ticket), "--out", str(tmp_path / "u"))
    one_line_exit_2(code, err, "not empty")
    code, _, err = run_cli(capsys, "unpack", str(tmp_path / "r" / "config.json"), "--out", str(tmp_path / "v"))
    one_line_exit_2(code, err, "not a ticketlab ticket")
    code, _, err = run_cli(
        capsys, "pack", str(tmp_path / "r"), "--round", "2", "--weights", "int3", "--out", str(tmp_path / "x.st")
    )
    one_line_exit_2(code, err, "--weights must be one of")


@pytest.mark.slow
def test_deconstruct_bad_input(tmp_path, capsys):
    (tmp_path / "empty").mkdir()
    code, _, err = run_cli(capsys, "deconstruct", str(tmp_path / "empty"), "--model", "nope")
    one_line_exit_2(code, err, "unknown model 'nope'")
    code, _, err = run_cli(capsys, "deconstruct", str(tmp_path / "empty"), *SMALL, "--criteria", "large_final,nope")
    one_line_exit_2(code, err, "unknown criterion 'nope'")


def test_checkpoint_every_below_one_is_refused_by_every_runner(tmp_path, capsys):
    code, _, err = run_cli(
        capsys, "colt", "--dataset", "digits", "--checkpoint-every", "0", "--out", str(tmp_path / "c")
    )
    one_line_exit_2(code, err, "--checkpoint-every must be >= 1")
    assert not (tmp_path / "c").exists()


@pytest.mark.parametrize("preset", ["lth-resnet20", pytest.param("lth-vgg16", marks=pytest.mark.slow)])
def test_cifar_presets_run_on_cifar_shaped_arrays_with_open_lths_settings(tmp_path, preset):
    """No CIFAR-10 here: CIFAR-shaped random images through --dataset npz:. The preset's settings (open_lth's
    default_hparams) reach the stored config; flags given on the command line shorten the run."""
    import json

    import numpy as np

    from ticketlab.io import load_tensors

    rng = np.random.default_rng(0)
    np.savez(
        tmp_path / "c.npz",
        x_train=rng.random((40, 3, 32, 32), dtype=np.float32),
        y_train=rng.integers(0, 10, 40),
        x_test=rng.random((20, 3, 32, 32), dtype=np.float32),
        y_test=rng.integers(0, 10, 20),
    )
    out = tmp_path / "r"
    assert (
        main(
            [
                "imp",
                "--preset",
                preset,
                "--dataset",
                f"npz:{tmp_path / 'c.npz'}",
                "--iterations",
                "4",
                "--milestones",
                "2,3",
                "--batch-size",
                "8",
                "--rewind",
                "2",
                "--rounds",
                "1",
                "--eval-every",
                "2",
                "--quiet",
                "--out",
                str(out),
            ]
        )
        == 0
    )
    c = json.loads((out / "config.json").read_text())["config"]
    t = c["train"]
    assert (t["optimizer"], t["lr"], t["momentum"], t["weight_decay"], t["augment"]) == (
        "sgd",
        0.1,
        0.9,
        1e-4,
        "crop-flip",
    )
    assert c["global_pruning"] and c["rate"] == 0.2
    mask = load_tensors(out / "round_01" / "mask.safetensors")
    if preset == "lth-vgg16":
        assert c["exclude_counts"] == "all" and "fc.weight" not in mask
    else:
        assert "fc.weight" in mask


def test_a_mistyped_flag_is_answered_with_the_nearest_flag_and_the_commands_help(capsys):
    code = main(["imp", "--iteratons", "5"])
    one_line_exit_2(code, capsys.readouterr().err, "did you mean --iterations? (see `ticketlab imp --help`)")
    code = main(["dst", "--zzzzzz", "5"])
    err = capsys.readouterr().err
    one_line_exit_2(code, err, "unrecognized arguments: --zzzzzz 5 (see `ticketlab dst --help`)")
    assert "did you mean" not in err


@pytest.mark.parametrize(
    "argv, near",
    [
        (["dst", "--method", "rigll"], "did you mean 'rigl'?"),
        (["imp", "--model", "lenet30"], "did you mean 'lenet300'?"),
        (["imp", "--dataset", "fashion_mnist"], "did you mean 'fashion-mnist'?"),
        (["prune-init", "--method", "snp"], "did you mean 'snip'?"),
    ],
)
def test_a_mistyped_name_is_answered_with_the_nearest_name(argv, near, capsys, tmp_path):
    code = main([*argv, "--out", str(tmp_path / "r"), "--quiet"])
    one_line_exit_2(code, capsys.readouterr().err, near)
    assert not (tmp_path / "r").exists()


def help_sections(command: str, capsys) -> dict[str, list[str]]:
    with pytest.raises(SystemExit):
        main([command, "--help"])
    out, sections, current = capsys.readouterr().out, {}, None
    for line in out.splitlines():
        if line and not line.startswith(" ") and line.endswith(":"):
            current = sections.setdefault(line[:-1], [])
        elif current is not None and line.startswith("  --"):
            current.append(line.split()[0])
    return sections


def test_a_training_commands_help_is_in_sections_each_flag_once(capsys):
    imp = help_sections("imp", capsys)
    assert list(imp)[:5] == ["options", "settings from a preset or a file", "model and data", "imp options", "training"]
    assert list(imp)[-1] == "run: folder, device, progress, checkpoints, logs"
    assert {"--model", "--dataset", "--seed", "--seeds"} <= set(imp["model and data"])
    assert {"--rate", "--rounds", "--rewind", "--control"} <= set(imp["imp options"])
    assert {"--lr", "--iterations", "--optimizer"} <= set(imp["training"]) and "--adv-eps" not in imp["training"]
    assert {"--adv", "--adv-eps", "--trades-beta"} <= set(imp["adversarial training"])
    assert {"--certified", "--cert-eps"} <= set(imp["certified training"])
    assert {"--out", "--device", "--quiet", "--log"} <= set(imp["run: folder, device, progress, checkpoints, logs"])
    flags = [f for fs in imp.values() for f in fs]
    assert len(flags) == len(set(flags))
    dst = help_sections("dst", capsys)
    assert {"--ctre-mode", "--ctre-probe"} <= set(dst["ctre options"])  # a method's own options
    assert {"--method", "--density"} <= set(dst["dst options"])


def test_every_training_command_prints_its_table_then_the_files_it_wrote(tmp_path, capsys):
    run = tmp_path / "d"
    code, out, _ = run_cli(capsys, "dst", *SMALL, "--method", "set", "--density", "0.2", "--out", str(run))
    assert code == 0
    head, table, flops, files = out.split("\n\n")
    assert table.splitlines()[0].split() == ["model", "density", "test", "acc", "NLL", "ECE"]
    assert table.splitlines()[2].split()[:3] == ["member", "0", "20.00%"]
    assert files.splitlines()[1:] == [f"summary: {run / 'summary.json'}", f"plots: {run / 'test_acc_by_iteration.png'}"]
    assert (run / "test_acc_by_iteration.png").stat().st_size > 5000


def test_the_rounds_plot_draws_every_round_labelled_by_density(tmp_path, monkeypatch):
    from ticketlab.lottery import plots

    drawn = []
    monkeypatch.setattr(plots, "plot_curves", lambda curves, *a, **k: drawn.append(curves))
    hist = [{"iter": 0, "test_acc": 0.1}, {"iter": 10, "test_acc": 0.9}]
    plots.plot_test_acc_curves([(0.8**k, hist) for k in range(7)], tmp_path / "p.png", "T")
    assert [label for label, _ in drawn[0]] == ["100.0%", "80.0%", "64.0%", "51.2%", "41.0%", "32.8%", "26.2%"]
