"""The fenced code blocks of the README and the docs pages, with the test directives written beside them.

A block may be preceded by an HTML comment (invisible on the site) that tells the tests how to run it:
``<!-- docs-test: run; replace A => B; expect TEXT -->``. ``run`` makes a shell block's ``ticketlab`` lines
run for real (python blocks always run); ``replace`` swaps text first (small settings for the test);
``expect`` is text the block must print.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
PAGES = [ROOT / "README.md", *sorted((ROOT / "docs").glob("*.md"))]


@dataclass
class Block:
    page: Path
    line: int  # of the opening fence, 1-based
    lang: str  # "python", "toml", ... or "" for a plain (shell) block
    code: str
    run: bool = False
    replace: list[tuple[str, str]] = field(default_factory=list)
    expect: list[str] = field(default_factory=list)

    @property
    def id(self) -> str:
        return f"{self.page.relative_to(ROOT)}:{self.line}"

    def prepared(self) -> str:
        code = self.code
        for a, b in self.replace:
            assert a in code, f"{self.id}: the test's replacement {a!r} is not in the block"
            code = code.replace(a, b)
        return code

    def commands(self) -> list[str]:
        """The ``ticketlab`` lines of a shell block (continuations joined, comments and ``$ `` dropped)."""
        out = []
        for line in self.prepared().replace("\\\n", " ").splitlines():
            line = re.sub(r"^\$ ", "", line.split("  #")[0].strip())
            if line.startswith("ticketlab "):
                out.append(line)
        return out


def directive(text: str) -> dict:
    out = {"run": False, "replace": [], "expect": []}
    for part in (p.strip() for p in text.split(";")):
        if part == "run":
            out["run"] = True
        elif part.startswith("replace "):
            a, b = part[len("replace ") :].split(" => ")
            out["replace"].append((a, b))
        elif part.startswith("expect "):
            out["expect"].append(part[len("expect ") :])
        elif part:
            raise ValueError(f"unknown docs-test directive {part!r}")
    return out


def blocks(pages=PAGES) -> list[Block]:
    out = []
    for page in pages:
        lines = page.read_text().splitlines()
        i = 0
        while i < len(lines):
            m = re.match(r"^```(\w*)\s*$", lines[i])
            if not m:
                i += 1
                continue
            j = i + 1
            while not lines[j].startswith("```"):
                j += 1
            d = {"run": False, "replace": [], "expect": []}
            prev = lines[i - 1] if i else ""
            found = re.fullmatch(r"<!-- docs-test: (.*) -->", prev.strip())
            if found:
                d = directive(found.group(1))
            out.append(Block(page, i + 1, m.group(1), "\n".join(lines[i + 1 : j]) + "\n", **d))
            i = j + 1
    return out
