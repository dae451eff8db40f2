"""The README's own-loop example must run as written."""

import re
from pathlib import Path

README = Path(__file__).resolve().parent.parent / "README.md"


def test_readme_own_loop_example_runs(capsys):
    text = README.read_text()
    block = re.search(r"<!-- readme-example: own-loop -->\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    assert "density 0.2" in capsys.readouterr().out


def test_readme_dst_loop_example_runs(capsys):
    text = README.read_text()
    block = re.search(r"<!-- readme-example: dst-loop -->\n```python\n(.*?)```", text, re.S).group(1)
    exec(compile(block, "README.md", "exec"), {})
    assert "density 0.1000" in capsys.readouterr().out
