"""The README's Python example runs as written, and the set-up commands match .ci/run."""

import contextlib
import io
import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
README = REPO / "README.md"


def python_blocks(markdown: str) -> list[str]:
    """The ```python fenced blocks in order, each padded with blank lines so that its line
    numbers in a traceback are those of README.md."""
    blocks = []
    for match in re.finditer(r"^```python\n(.*?)^```", markdown, flags=re.S | re.M):
        first_line = markdown.count("\n", 0, match.start(1))  # lines before the block's body
        blocks.append("\n" * first_line + match.group(1))
    return blocks


def test_readme_has_one_python_example():
    assert len(python_blocks(README.read_text(encoding="utf-8"))) >= 1


def test_readme_example_trains(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)  # whatever the example writes lands here
    blocks = python_blocks(README.read_text(encoding="utf-8"))
    # The first block is the training example; the others (if any) are short snippets.
    namespace = {"__name__": "__readme__"}
    printed = io.StringIO()
    with contextlib.redirect_stdout(printed):
        exec(compile(blocks[0], str(README), "exec"), namespace)
    assert "training loss after" in printed.getvalue()
    # Starting from log(2) = 0.69 for two balanced classes, 100 Adam steps must fit the
    # linearly separable cell types almost perfectly.
    assert namespace["loss"].item() < 0.1


def test_every_python_snippet_runs(monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for block in python_blocks(README.read_text(encoding="utf-8"))[1:]:
        exec(compile(block, str(README), "exec"), {"__name__": "__readme__"})


def test_readme_set_up_commands_are_what_ci_runs():
    readme = README.read_text(encoding="utf-8")
    shell_blocks = re.findall(r"^```bash\n(.*?)^```", readme, flags=re.S | re.M)
    assert "pip install .\nranvier demo\n" in shell_blocks
    assert 'pip install ".[test]"\npytest\n' in shell_blocks
    ci = (REPO / ".ci" / "run").read_text(encoding="utf-8")
    assert re.search(r'^pip install "\.\[test\]"$', ci, flags=re.M)
    assert re.search(r"^pytest \|\| status=\$\?$", ci, flags=re.M)
