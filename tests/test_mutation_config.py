"""`make mutation`'s configuration names files that exist (a renamed test file made mutmut's first pass fail)."""

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
MUTMUT = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["mutmut"]


def test_every_mutated_module_exists():
    missing = [p for p in MUTMUT["only_mutate"] if not (ROOT / p).is_file()]
    assert not missing, missing


def test_every_selected_test_file_exists():
    files = [a for a in MUTMUT["pytest_add_cli_args_test_selection"] if a.startswith("tests/")]
    missing = [f for f in files if not (ROOT / f).is_file()]
    assert files and not missing, missing


def test_every_verify_module_with_tests_is_mutated():
    """The issue's verify/ family: each of its modules that has its own test file is mutated and selected."""
    mutated = set(MUTMUT["only_mutate"])
    selected = set(MUTMUT["pytest_add_cli_args_test_selection"])
    for name in ("graph", "bounds", "complete", "training", "bab"):
        assert f"src/ticketlab/verify/{name}.py" in mutated
        assert f"tests/test_verify_{name}.py" in selected


def test_equivalent_survivors_name_mutated_modules():
    modules = {p.removeprefix("src/").removesuffix(".py").replace("/", ".") for p in MUTMUT["only_mutate"]}
    lines = (ROOT / "tests/mutation/equivalent.txt").read_text().splitlines()
    names = [line.split()[0] for line in lines if line.strip() and not line.startswith("#")]
    stale = [n for n in names if n.split(".x")[0] not in modules]
    assert names and not stale, stale[:5]
