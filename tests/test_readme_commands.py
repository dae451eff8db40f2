"""Every `ticketlab ...` line in the README's shell blocks parses with today's CLI: a renamed or dropped flag,
or a value its flag no longer takes, fails here (the commands are parsed, not run). Usage lines are read as
usage: [optional] parts are included, the first of a|b alternatives is taken, `...` and `[train flags]`
stand for other flags, and an UPPERCASE placeholder after a flag stands for a number."""

import re
import shlex
from pathlib import Path

import pytest

from ticketlab import commands

README = Path(__file__).resolve().parent.parent / "README.md"


def shell_lines() -> list[str]:
    out, fence, text = [], None, README.read_text()
    for line in text.replace("\\\n", " ").splitlines():
        if line.startswith("```"):
            fence = (line.strip()[3:] or "plain") if fence is None else None
            continue
        if fence == "plain":
            line = re.sub(r"^\$ ", "", line.split("  #")[0].strip())
            bare = line.replace("...", "")
            prose = ". " in bare or bare.endswith(".")  # a sentence in a diagram, not a command
            if line.startswith("ticketlab ") and not prose:
                out.append(line)
    return out


def as_argv(line: str) -> list[str]:
    line = line.replace("[train flags]", "").replace("...", "")
    line = re.sub(r"\|\s+\w+\]", "]", line)  # "[--method a,b | all]": the first form
    argv = []
    for tok in shlex.split(line)[1:]:
        tok = tok.strip("[]")
        if not tok:
            continue
        tok = tok.split("|")[0] if "|" in tok and not tok.startswith("-") else tok
        if argv and argv[-1].startswith("--") and re.fullmatch(r"[A-Z][A-Z_]*", tok) and tok not in ("RUN",):
            tok = "1"  # a placeholder value: K, A, N
        argv.append(tok)
    return argv


LINES = shell_lines()


def test_the_readme_shows_commands():
    assert len(LINES) >= 30


@pytest.mark.parametrize("line", LINES)
def test_every_readme_command_parses(line):
    argv = as_argv(line)
    e = commands.entry(argv[0])
    obj = commands.load(e)
    if isinstance(obj, commands.Command) and obj.raw_args:  # sweep: its own flags, then the command's
        parser = commands.Parser(prog="ticketlab sweep", allow_abbrev=False)
        obj.configure(parser)
        _, rest = parser.parse_known_args(argv[1:])
        if rest and not rest[0].startswith("-"):
            sub = commands.entry(rest[0])
            commands.command_parser(sub).parse_args(rest[1:])
        return
    commands.command_parser(e, obj).parse_args(argv[1:])
