"""The experiments/ scripts behind the README's tables still run (tiny settings)."""
import runpy
import sys
from pathlib import Path

from ticketlab.cli import main

ROOT = Path(__file__).resolve().parents[1]


def test_compare_pruners_on_a_seed_group_prints_mean_and_std(tmp_path, monkeypatch, capsys):
    g = tmp_path / "g"
    assert main(["imp", "--dataset", "digits", "--model", "mlp1d", "--iterations", "20", "--rounds", "1",
                 "--seeds", "2", "--quiet", "--out", str(g)]) == 0
    monkeypatch.setattr(sys, "argv", ["compare_pruners.py", str(g), "--methods", "random,magnitude", "--quiet"])
    try:
        runpy.run_path(str(ROOT / "experiments" / "compare_pruners.py"), run_name="__main__")
    except SystemExit as e:
        assert e.code == 0
    out = capsys.readouterr().out
    assert "mean ± std over seeds 0, 1" in out and "| imp | imp shuffle | imp reinit | random | magnitude |" in out
    assert (g / "compare_pruners.png").stat().st_size > 0 and (g / "seed_1" / "compare").is_dir()
