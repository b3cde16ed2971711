"""The docs' maps and links against the tree they describe: method.md section 8 names
every module of binflax, choices.md's contents list every section with its choices,
every link to a section of a page names a heading that page has, and benchmarks.md's
tables are the ones its results files hold."""

import json
import pathlib
import re

ROOT = pathlib.Path(__file__).resolve().parent.parent
DOCS = ROOT / "docs"
PAGES = [*sorted(DOCS.glob("*.md")), ROOT / "README.md"]
MAP_LINK = re.compile(r"\]\(\.\./binflax/([^)]+)\)")
SECTION_LINK = re.compile(r"\]\(([\w.-]*\.md)?#([^)]+)\)")
FENCE = re.compile(r"^```.*?^```", re.M | re.S)
RESULTS = ROOT / "benchmarks" / "results"
RESULTS_LINK = re.compile(r"\]\(\.\./benchmarks/results/([^)]+\.json)\)")


def anchor(heading: str) -> str:
    """GitHub's anchor of a heading: its text as shown (a link by its text, code without
    backticks), lower case, without punctuation but ``-`` and ``_``, spaces as ``-``."""
    shown = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading).replace("`", "")
    return re.sub(r"[^\w\- ]", "", shown.lower()).replace(" ", "-")


def headings(page: pathlib.Path) -> list[str]:
    """The page's headings, outside code blocks (where ``#`` starts a comment)."""
    return re.findall(r"^#+ (.+)$", FENCE.sub("", page.read_text()), re.M)


def test_the_module_map_names_every_module_of_binflax_once():
    """Section 8 ("Where each piece lives"), one row per module or subpackage."""
    method = (DOCS / "method.md").read_text()
    section = method.split("\n## 8. ")[1].split("\n## ")[0]
    rows = [MAP_LINK.findall(line) for line in section.splitlines() if MAP_LINK.search(line)]
    assert all(len(links) == 1 for links in rows), [r for r in rows if len(r) != 1]
    targets = [links[0] for links in rows]
    assert all((ROOT / "binflax" / target).is_file() for target in targets), targets
    mapped = [target.split("/")[0].removesuffix(".py") for target in targets]
    package = ROOT / "binflax"
    modules = {p.stem for p in package.glob("*.py") if p.name != "__init__.py"}
    modules |= {p.name for p in package.iterdir() if (p / "__init__.py").is_file()}
    assert sorted(mapped) == sorted(modules)


def test_the_choices_contents_list_every_section_and_its_choices():
    """Choices are cited by number ("choice 96"), so they run 1, 2, ... across the
    sections, and the contents say which numbers each section holds."""
    text = (DOCS / "choices.md").read_text()
    contents, sections = text.split("\n## Contents\n")[1].split("\n## ", 1)
    listed = [
        (title, link, first, last or first)  # one choice: "137", several: "138-156"
        for title, link, first, last in re.findall(
            r"^- \[(.+)\]\(#([\w-]+)\): (\d+)(?:-(\d+))?$", contents, re.M
        )
    ]
    expected, numbers = [], []
    for section in sections.split("\n## "):
        title, body = section.split("\n", 1)
        held = [int(n) for n in re.findall(r"^(\d+)\. ", body, re.M)]
        assert held, title
        expected.append((title, anchor(title), str(held[0]), str(held[-1])))
        numbers += held
    assert listed == expected
    assert numbers == list(range(1, len(numbers) + 1))


def test_every_link_to_a_section_names_a_heading_of_its_page():
    broken = [
        f"{page.relative_to(ROOT)}: {target or page.name}#{name}"
        for page in PAGES
        for target, name in SECTION_LINK.findall(page.read_text())
        if name not in {anchor(h) for h in headings(page.parent / target if target else page)}
    ]
    assert not broken, broken


def markdown_tables(text: str) -> list[tuple[list[str], list[list[str]]]]:
    """Each table's column names and rows, cells as shown (bold marks dropped; a row that
    stops short has its missing cells empty)."""

    def cells(line: str) -> list[str]:
        return [c.strip().replace("**", "") for c in line.strip().strip("|").split("|")]

    tables = []
    for block in re.findall(r"^(\|.*\n\|[-:| ]+\|\s*\n(?:\|.*\n?)*)", text, re.M):
        header, _, *rows = block.strip("\n").split("\n")
        columns = cells(header)
        tables.append((columns, [cells(r) + [""] * (len(columns) - len(cells(r))) for r in rows]))
    return tables


def test_benchmarks_md_cites_every_results_file_and_shows_the_tables_they_hold():
    """A figure moved into benchmarks/results/ is cited from the page, and a table the
    page still shows is the table of the file it cites (the files transcribed from the
    page, the ones a benchmark wrote cited in words)."""
    page = (DOCS / "benchmarks.md").read_text()
    cited = set(RESULTS_LINK.findall(page))
    files = {path.name for path in RESULTS.glob("*.json")}
    assert cited == files
    shown = markdown_tables(page)
    for name in sorted(files):
        record = json.loads((RESULTS / name).read_text())
        assert record["provenance"]["cpu"]["tag"] in name, name
        if record.get("transcribed_from") != "docs/benchmarks.md":
            continue
        for table in record["tables"]:
            if "from" in table:  # put together from a sentence of the page: its figures
                assert all(cell in page for row in table["rows"] for cell in row[1:]), name
            else:
                assert (table["columns"], table["rows"]) in shown, (name, table["columns"])
