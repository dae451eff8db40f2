"""Every `ticketlab ...` line in the shell blocks of the README and the docs pages parses with today's CLI: a
renamed or dropped flag, or a value its flag no longer takes, fails here (the commands are parsed, not run).
Usage lines are read as usage: [optional] parts are included, the first of a|b alternatives is taken, `...`
and `[train flags]` stand for other flags, and an UPPERCASE placeholder after a flag stands for a number;
`--help` lines run and must exit 0."""

import contextlib
import io
import re
import shlex
import tomllib

import pytest
from docs_blocks import ROOT, blocks

from ticketlab import cli, commands

PLUGIN = ROOT / "examples" / "plugin" / "pyproject.toml"
PLUGIN_COMMANDS = set(tomllib.loads(PLUGIN.read_text())["project"]["entry-points"]["ticketlab.commands"])


def shell_lines() -> list[str]:
    """The ticketlab lines of every plain block, but the example plugin's commands (tested by test_plugins.py)
    and sentences of a diagram that happen to start with the word."""
    out = []
    for b in blocks():
        for line in b.commands() if b.lang == "" else []:
            bare = line.replace("...", "")
            prose = ". " in bare or bare.endswith(".")
            if not prose and not PLUGIN_COMMANDS & set(line.split()):
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


def test_the_docs_show_commands():
    assert len(LINES) >= 60


@pytest.mark.parametrize("line", LINES)
def test_every_docs_command_parses(line):
    argv = as_argv(line.replace("ticketlab COMMAND", "ticketlab imp"))
    if "--help" in argv:  # help prints and exits 0
        try:
            with contextlib.redirect_stdout(io.StringIO()):
                code = cli.main(argv)
        except SystemExit as e:
            code = e.code
        assert code in (0, None)
        return
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
