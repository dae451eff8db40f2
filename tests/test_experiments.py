"""The experiments/ scripts behind the README's tables still run (tiny settings)."""

import runpy
import sys
from pathlib import Path

import pytest

from ticketlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_compare_pruners_on_a_seed_group_prints_mean_and_std(tmp_path, monkeypatch, capsys):
    g = tmp_path / "g"
    assert (
        main(
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
                "--seeds",
                "2",
                "--quiet",
                "--out",
                str(g),
            ]
        )
        == 0
    )
    monkeypatch.setattr(sys, "argv", ["compare_pruners.py", str(g), "--methods", "random,magnitude", "--quiet"])
    try:
        runpy.run_path(str(ROOT / "experiments" / "compare_pruners.py"), run_name="__main__")
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "mean ± std over seeds 0, 1" in out and "| imp | imp shuffle | imp reinit | random | magnitude |" in out
    assert (g / "compare_pruners.png").stat().st_size > 0 and (g / "seed_1" / "compare").is_dir()


@pytest.mark.slow
def test_verify_table_prints_a_row_per_ticket_for_a_seed_group_and_a_single_run(tmp_path, monkeypatch, capsys):
    g, one = tmp_path / "g", tmp_path / "one"
    for out, extra in ((g, ["--seeds", "2"]), (one, [])):
        assert (
            main(
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
                    "--certified",
                    "ibp",
                    "--cert-eps",
                    "0.02",
                    "--quiet",
                    "--out",
                    str(out),
                    *extra,
                ]
            )
            == 0
        )
    monkeypatch.setattr(
        sys, "argv", ["verify_table.py", str(g), str(one), "--eps", "0.02", "--samples", "4", "--timeout", "5"]
    )
    runpy.run_path(str(ROOT / "experiments" / "verify_table.py"), run_name="__main__")
    rows = [line for line in capsys.readouterr().out.splitlines() if line.startswith("| mlp1d")]
    assert len(rows) == 4 and " ± " in rows[0] and " ± " not in rows[2]  # 2 tickets each; mean ± std for the group


@pytest.mark.slow
def test_verify_solvers_compares_milp_and_marabou_on_a_ticket(tmp_path, monkeypatch, capsys):
    import pytest

    pytest.importorskip("maraboupy")
    run = tmp_path / "r"
    assert (
        main(
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
                "--quiet",
                "--out",
                str(run),
            ]
        )
        == 0
    )
    monkeypatch.setattr(
        sys, "argv", ["verify_solvers.py", str(run), "--round", "1", "--eps", "0.005", "--samples", "3"]
    )
    runpy.run_path(str(ROOT / "experiments" / "verify_solvers.py"), run_name="__main__")
    assert "'disagree': 0" in capsys.readouterr().out


@pytest.mark.slow
def test_certsparse_table_averages_seeds_and_picks_rows(tmp_path, monkeypatch, capsys):
    runs = []
    for s in (0, 1):
        imp = tmp_path / f"imp{s}"
        assert (
            main(
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
                    "--seed",
                    str(s),
                    "--quiet",
                    "--out",
                    str(imp),
                ]
            )
            == 0
        )
        g = tmp_path / f"graft{s}"
        assert (
            main(
                [
                    "neurons",
                    "--source",
                    str(imp),
                    "--dataset",
                    "digits",
                    "--model",
                    "mlp1d",
                    "--method",
                    "graft",
                    "--score",
                    "magnitude",
                    "--iterations",
                    "10",
                    "--score-samples",
                    "50",
                    "--quiet",
                    "--out",
                    str(g),
                ]
            )
            == 0
        )
        runs.append((imp, g))
    spec_imp = f"dense={runs[0][0]}@0,{runs[1][0]}@0"
    spec_graft = f"graft={runs[0][1]},{runs[1][1]}"
    monkeypatch.setattr(
        sys, "argv", ["certsparse_table.py", spec_imp, spec_graft, "--eps", "0.01", "--samples", "4", "--bounds-only"]
    )
    runpy.run_path(str(ROOT / "experiments" / "certsparse_table.py"), run_name="__main__")
    out = capsys.readouterr().out
    rows = {line.split(" | ")[0][2:]: line.split(" | ") for line in out.splitlines() if line.startswith("| ")}
    assert set(rows) >= {"dense", "graft"}
    assert rows["dense"][1] == "100.0 ± 0.0%" and " ± " in rows["graft"][2]
    header = rows["method"]
    assert rows["graft"][header.index("grafted")] != "0 ± 0" and rows["dense"][header.index("grafted")] == "0 ± 0"


def test_the_run_scripts_parse():
    import subprocess

    for script in sorted((ROOT / "experiments").glob("*.sh")):
        assert subprocess.run(["bash", "-n", str(script)]).returncode == 0, script


def test_mask_agreement_counts_the_first_runs_kept_weights_the_second_keeps(tmp_path, monkeypatch, capsys):
    agreement = runpy.run_path(str(ROOT / "experiments" / "mask_agreement.py"))["agreement"]
    import torch

    a = {"w": torch.tensor([[1, 1, 0], [1, 0, 0]]), "v": torch.tensor([1, 1])}
    b = {"w": torch.tensor([[1, 0, 1], [1, 0, 1]]), "v": torch.tensor([0, 1])}
    per, total = agreement(a, b)
    assert per == {"w": 2 / 3, "v": 1 / 2} and total == 3 / 5  # not b's 6 kept, nor the 9 positions
    runs = []
    for density in ("0.3", "0.5"):
        out = tmp_path / density
        args = ["dst", "--method", "static", "--density", density, "--dataset", "digits", "--model", "lenet300"]
        assert main([*args, "--iterations", "5", "--quiet", "--out", str(out)]) == 0
        runs.append(str(out))
    monkeypatch.setattr(sys, "argv", ["mask_agreement.py", runs[0], runs[0]])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "experiments" / "mask_agreement.py"), run_name="__main__")
    assert e.value.code == 0 and "all layers: 1.000 of the kept weights shared" in capsys.readouterr().out
    monkeypatch.setattr(sys, "argv", ["mask_agreement.py", runs[0], str(tmp_path / "missing")])
    with pytest.raises(SystemExit) as e:
        runpy.run_path(str(ROOT / "experiments" / "mask_agreement.py"), run_name="__main__")
    assert e.value.code == 2 and "missing/train_0/mask.safetensors does not exist" in capsys.readouterr().err
