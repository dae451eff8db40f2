"""Every code block of the README and the docs site runs: python blocks are executed, the shell blocks
marked ``<!-- docs-test: run -->`` (the getting-started path: your own data, a ticket, a sweep, its report)
run their ``ticketlab`` lines for real, with the small settings their directive swaps in; TOML blocks parse.
Each page runs in a fresh folder of its own, its blocks in order (a later block may use an earlier one's
files). Every other shell line is parsed against today's CLI by test_readme_commands.py."""

import contextlib
import io
import shlex
import sys
import tomllib
import types

import pytest
from docs_blocks import blocks

from ticketlab.cli import main
from ticketlab.registry import Registry

BLOCKS = blocks()
RUNNABLE = [b for b in BLOCKS if b.lang == "python" or (b.lang == "" and b.run)]
PAGES = sorted({b.page for b in RUNNABLE})
PROMISED = {"getting-started.md": ["my.npz", "runs/my-ticket/summary.json", "runs/my-sweep/sweep.png", "report.html"]}


def test_the_docs_have_runnable_examples_on_the_pages_a_newcomer_reads_first():
    names = {p.name for p in PAGES}
    assert {"README.md", "getting-started.md", "own-code.md", "dynamic-sparse.md", "index.md"} <= names
    assert sum(b.run for b in BLOCKS) >= 3


@pytest.mark.parametrize("page", PAGES, ids=lambda p: p.name)
def test_every_code_block_of_the_page_runs(page, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    for reg in registries():  # what a block registers goes away after it
        monkeypatch.setattr(reg, "_items", dict(reg._items))
    for b in (b for b in RUNNABLE if b.page == page):
        out = io.StringIO()
        with contextlib.redirect_stdout(out):
            if b.lang == "python":
                run_python(b, monkeypatch)
            else:
                for line in b.commands():
                    rc = main(shlex.split(line)[1:] + ["--quiet"] * quiet(line))
                    assert rc == 0, f"{b.id}: `{line}` exited {rc}"
        for text in b.expect:
            assert text in out.getvalue(), f"{b.id}: expected {text!r} in its output"
    for name in PROMISED.get(page.name, []):
        assert (tmp_path / name).is_file(), f"{page.name} promises {name}"
    if page.name == "getting-started.md":
        html = (tmp_path / "report.html").read_text()
        assert "my-ticket" in html and "my-sweep" in html


def registries() -> list[Registry]:
    mods = [m for n, m in list(sys.modules.items()) if n.startswith("ticketlab") and m is not None]
    found = {id(v): v for m in mods for v in vars(m).values() if isinstance(v, Registry)}
    return list(found.values())


def run_python(b, monkeypatch) -> None:
    """The block as the body of a module of its own (dataclasses and pickling look their module up)."""
    module = types.ModuleType("docs_block")
    monkeypatch.setitem(sys.modules, module.__name__, module)
    exec(compile(b.prepared(), b.id, "exec"), module.__dict__)


def quiet(line: str) -> bool:
    """Training commands take --quiet (no progress bars in the test log)."""
    return line.split()[1] in ("imp", "dst", "sweep", "prune-init", "supermask") and "--quiet" not in line


@pytest.mark.parametrize("block", [b for b in BLOCKS if b.lang == "toml"], ids=lambda b: b.id)
def test_every_toml_block_parses(block):
    tomllib.loads(block.code)


def test_no_block_is_in_a_language_the_tests_do_not_read():
    assert {b.lang for b in BLOCKS} <= {"", "python", "toml"}, sorted({b.lang for b in BLOCKS})
