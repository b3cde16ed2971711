"""Every reference in a docstring, comment or doc names a file of this repository, and
every ``method.md section N`` a section docs/method.md has."""

import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
SOURCES = [
    *(p for d in ("binflax", "tests", "configs", "benchmarks") for p in (ROOT / d).rglob("*.py")),
    *(ROOT / "docs").glob("*.md"),
    ROOT / "README.md",
]
# File names a run writes or a user's tree holds: names of outputs, not references.
OUTPUT_NAMES = {"results.md"}
MD_FILE = re.compile(r"(?<![\w/.-])([\w./-]+\.md)\b")
SECTION = re.compile(r"method\.md\s*(?:#\s*)?sections? (\d+)(?:(?: and |-)(\d+))?")


def _exists(name: str, source: pathlib.Path) -> bool:
    return any((base / name).is_file() for base in (ROOT, source.parent, ROOT / "docs"))


def test_every_md_reference_names_a_file_that_exists():
    missing = [
        f"{source.relative_to(ROOT)}: {name}"
        for source in SOURCES
        for name in MD_FILE.findall(source.read_text())
        if pathlib.PurePath(name).name not in OUTPUT_NAMES and not _exists(name, source)
    ]
    assert not missing, missing


def test_every_method_section_reference_names_a_section():
    method = (ROOT / "docs" / "method.md").read_text()
    sections = {int(n) for n in re.findall(r"^## (\d+)\.", method, re.MULTILINE)}
    wrong = [
        f"{source.relative_to(ROOT)}: section {number}"
        for source in SOURCES
        for match in SECTION.finditer(source.read_text())
        for number in match.groups()
        if number is not None and int(number) not in sections
    ]
    assert not wrong, wrong
    assert len(sections) >= 11
