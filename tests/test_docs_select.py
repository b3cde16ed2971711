"""docs/select.md runs: every ```python cell in order, in one namespace, in a scratch
directory; each ```text block right after a cell is that cell's expected output.

Decimal numbers are compared to a tolerance (half a unit in the last printed digit, plus
0.5%), integers and everything else exactly up to runs of spaces (and the length of
table rules), so the page breaks when behaviour changes
but not on float noise. An output block whose numbers move with the CPU's rounding
(a binary network's gradients: a sign that flips on one machine and not another) says
by how much in its fence, ```` ```text rtol=0.25 ````, and the page says why in its
prose. After a deliberate change:

    python tests/test_docs_select.py --update     # rewrites the output blocks
"""

from __future__ import annotations

import contextlib
import io
import os
import re
import sys
from typing import NamedTuple

import pytest

DOC = os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "docs", "select.md")
CELL = re.compile(r"```python\n(.*?)```\n(?:\n```text( rtol=[\d.]+)?\n(.*?)```\n)?", re.S)
NUMBER = re.compile(r"-?\d[\d,]*(?:\.\d+)?(?:e[-+]?\d+)?")


class Expected(NamedTuple):
    """A cell's output block: its text and what its fence adds after ``text``."""

    text: str
    fence: str  # " rtol=0.25", or "" for the default tolerance

    @property
    def rtol(self) -> float:
        return float(self.fence.split("=")[1]) if self.fence else 0.0


def cells(text: str) -> list[tuple[re.Match, str, Expected | None]]:
    """``(match, code, expected output or None)`` for every python cell."""
    found = []
    for m in CELL.finditer(text):
        expected = None if m.group(3) is None else Expected(m.group(3), m.group(2) or "")
        found.append((m, m.group(1), expected))
    return found


def run_cells(text: str, workdir: str) -> list[str]:
    """Runs the cells in one namespace inside ``workdir``; returns each cell's stdout."""
    namespace: dict = {"__name__": "__docs__"}
    outputs = []
    cwd = os.getcwd()
    os.chdir(workdir)
    try:
        for index, (_, code, _) in enumerate(cells(text)):
            buffer = io.StringIO()
            with contextlib.redirect_stdout(buffer):
                # dont_inherit: a cell runs as in a notebook, without this file's __future__ imports
                # (which would turn a Flax module's annotations into strings)
                cell = compile(code, f"docs/select.md cell {index + 1}", "exec", dont_inherit=True)
                exec(cell, namespace)
            outputs.append(buffer.getvalue())
    finally:
        os.chdir(cwd)
    return outputs


def _tokens(text: str):
    text = re.sub(r"-{3,}", "---", text)  # table rules follow the column widths
    parts, last = [], 0
    for m in NUMBER.finditer(text):
        parts.append(("text", " ".join(text[last : m.start()].split())))
        parts.append(("number", m.group()))
        last = m.end()
    parts.append(("text", " ".join(text[last:].split())))
    return parts


def _close(got: str, expected: str, rtol: float = 0.0) -> bool:
    g, e = float(got.replace(",", "")), float(expected.replace(",", ""))
    if "." not in expected:  # counts, names' digits: exact
        return g == e
    decimals = len(expected.split(".")[1].split("e")[0])
    return abs(g - e) <= 0.5 * 10.0**-decimals + max(5e-3, rtol) * abs(e)


def assert_same_output(got: str, expected: str, where: str, rtol: float = 0.0) -> None:
    g, e = _tokens(got), _tokens(expected)
    kinds_match = [kind for kind, _ in g] == [kind for kind, _ in e]
    assert kinds_match, f"{where}: output changed:\n{got}\n--- expected ---\n{expected}"
    for (kind, a), (_, b) in zip(g, e, strict=True):
        ok = _close(a, b, rtol) if kind == "number" else a == b
        assert ok, f"{where}: {a!r} != {b!r} in output:\n{got}\n--- expected ---\n{expected}"


def update(text: str, outputs: list[str]) -> str:
    """``text`` with every cell's output block replaced by ``outputs``."""
    pieces, last = [], 0
    for (m, code, expected), out in zip(cells(text), outputs, strict=True):
        pieces.append(text[last : m.start()])
        pieces.append(f"```python\n{code}```\n")
        if out:
            fence = expected.fence if expected else ""
            pieces.append(f"\n```text{fence}\n{out}```\n")
        last = m.end()
    pieces.append(text[last:])
    return "".join(pieces)


def test_docs_select_runs_and_prints_what_it_shows(tmp_path):
    with open(DOC) as f:
        text = f.read()
    found = cells(text)
    assert len(found) >= 8, "docs/select.md lost its code cells"
    outputs = run_cells(text, str(tmp_path))
    for index, ((_, _, expected), got) in enumerate(zip(found, outputs, strict=True)):
        where = f"docs/select.md cell {index + 1}"
        if expected is None:
            assert not got, f"{where} prints but the page shows no output:\n{got}"
        else:
            assert_same_output(got, expected.text, where, expected.rtol)
    for name in ("select.json", "plan.json", "scores.png", "frontier.png"):
        assert (tmp_path / name).stat().st_size > 0


def test_output_comparison_tolerates_noise_only():
    assert_same_output("rmse 0.7841  (12 layers)", "rmse 0.7840 (12 layers)", "t")
    with pytest.raises(AssertionError):
        assert_same_output("rmse 0.7901", "rmse 0.7840", "t")
    with pytest.raises(AssertionError):
        assert_same_output("exact ('conv5',)", "exact ('conv6',)", "t")
    assert_same_output("fisher 0.0214", "fisher 0.0188", "t", rtol=0.25)
    with pytest.raises(AssertionError):
        assert_same_output("fisher 0.0250", "fisher 0.0188", "t", rtol=0.25)
    with pytest.raises(AssertionError):
        assert_same_output("count 11", "count 10", "t", rtol=0.25)  # integers stay exact


def test_a_fence_names_its_block_tolerance_and_an_update_keeps_it():
    page = "```python\nprint(1.0)\n```\n\n```text rtol=0.25\n1.1\n```\n"
    ((_, code, expected),) = cells(page)
    assert code == "print(1.0)\n" and expected == Expected("1.1\n", " rtol=0.25")
    assert expected.rtol == 0.25
    assert update(page, ["1.0\n"]) == page.replace("1.1", "1.0")


if __name__ == "__main__":
    import tempfile

    if sys.argv[1:] != ["--update"]:
        sys.exit("usage: python tests/test_docs_select.py --update")
    sys.path.insert(0, os.path.dirname(os.path.dirname(DOC)))
    with open(DOC) as f:
        source = f.read()
    with tempfile.TemporaryDirectory() as scratch:
        new = update(source, run_cells(source, scratch))
    with open(DOC, "w") as f:
        f.write(new)
    print(f"rewrote the outputs of {len(cells(new))} cells in {DOC}")
