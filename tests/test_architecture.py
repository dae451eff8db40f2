"""The layout is the architecture: the shared floors (train, runs, data, models, sparse and the top-level
shared modules) import no method family, the engine names no run kind, and no two modules import each other.
Read from the source (the import statements), so a change that breaks a rule fails here."""

import ast
from pathlib import Path

import pytest

SRC = Path(__file__).parent.parent / "src" / "ticketlab"
FAMILIES = {
    "baselines", "certsparse", "colt", "compress", "criteria", "deconstruct", "deploy", "double_descent", "dst",
    "lottery", "pruners", "report", "robust", "structured", "supermask", "ticket", "verify",
}  # fmt: skip
FLOORS = ("train", "runs", "data", "models", "sparse")
SHARED = ("attacks.py", "commands.py", "errors.py", "flags.py", "flops.py", "hooks.py", "io.py", "metrics.py",
          "registry.py", "seeding.py")  # fmt: skip


def module_name(path: Path) -> str:
    parts = list(path.relative_to(SRC).with_suffix("").parts)
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path) -> set[str]:
    """The ticketlab modules ``path`` imports (relative imports resolved), module-level and in functions."""
    pkg = list(path.relative_to(SRC).parts[:-1])
    out = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.ImportFrom) and node.level:
            base = pkg[: len(pkg) - node.level + 1]
            names = [node.module] if node.module else [a.name for a in node.names]
            out |= {".".join(base + n.split(".")) for n in names}
        elif isinstance(node, ast.ImportFrom) and (node.module or "").startswith("ticketlab."):
            out.add(node.module.removeprefix("ticketlab."))
        elif isinstance(node, ast.Import):
            out |= {a.name.removeprefix("ticketlab.") for a in node.names if a.name.startswith("ticketlab.")}
    return out


def sources(*where: str) -> list[Path]:
    out = []
    for w in where:
        p = SRC / w
        out += sorted(p.rglob("*.py")) if p.is_dir() else [p]
    return out


@pytest.mark.parametrize("path", sources(*FLOORS, *SHARED), ids=lambda p: str(p.relative_to(SRC)))
def test_the_shared_floors_import_no_method_family(path):
    families = {m for m in imports(path) if m.split(".")[0] in FAMILIES}
    assert not families, f"{path.relative_to(SRC)} imports {sorted(families)}: move what it needs down"


def test_the_engine_names_no_run_kind():
    from ticketlab.runs import experiments

    kinds = set(experiments()) - {"sweep"}
    for path in sources("runs"):
        text = path.read_text()
        named = sorted(k for k in kinds if f'"{k}"' in text or f"'{k}'" in text)
        assert not named, f"{path.relative_to(SRC)} names the run kinds {named}: let the experiment say it"


def test_no_two_modules_import_each_other():
    graph = {module_name(p): imports(p) for p in sources(".")}
    cycles = sorted(
        (a, b) for a, deps in graph.items() for b in deps if a < b and b in graph and a in graph[b] and a != b
    )
    packages = {m for m in graph if (SRC / Path(*m.split("."))).is_dir()}
    cycles = [(a, b) for a, b in cycles if a not in packages and b not in packages]  # a package's __init__ re-exports
    assert not cycles, f"import circles: {cycles}"


def test_files_are_written_only_through_the_atomic_writers():
    """No module writes a file in place: plots go through plotting.save_figure, everything else through io's
    writers (a temporary file of its own, renamed onto the target). The report's SVGs go to memory, a download
    streams to a temporary of its own (checked, then renamed), a new Ray folder's owner file is in a fresh folder."""
    allowed = {
        "plotting.py": "savefig(",
        "report/figures.py": "savefig(",
        "io.py": 'open(tmp, "wb")',
        "data/download.py": 'open(tmp, "wb")',
        "runs/watchdog.py": ".write_text(",
    }
    bad = []
    for path in sorted(SRC.rglob("*.py")):
        rel = str(path.relative_to(SRC))
        for n, line in enumerate(path.read_text().splitlines(), 1):
            for pattern in ("savefig(", ".write_text(", ".write_bytes(", 'open(tmp, "wb")', ', "w")'):
                if pattern in line and allowed.get(rel) != pattern and "probe" not in line:
                    bad.append(f"{rel}:{n}: {line.strip()}")
    assert bad == []
