"""The documentation: README.md stays one screen, docs/cli.md is the commands' current help, links resolve.

Nothing here runs a model; it reads Markdown files and renders click's help.
"""

from __future__ import annotations

import importlib.util
import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
README = ROOT / "README.md"
DOCS = ROOT / "docs"
README_LIMIT = 12_000  # characters: the README is an overview, the reference lives in docs/

FENCE = re.compile(r"^(```|~~~).*?^\1[ \t]*$", re.M | re.S)
INLINE_CODE = re.compile(r"`[^`\n]*`")
LINK = re.compile(r"(?<!!)\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^)\s>]+)>?(?:\s+\"[^\"]*\")?\s*\)")
HEADING = re.compile(r"^#{1,6}[ \t]+(.+?)[ \t#]*$", re.M)


def _load_generator():
    spec = importlib.util.spec_from_file_location("generate_cli", DOCS / "generate_cli.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def _markdown_files() -> list[Path]:
    return [README, *sorted(DOCS.glob("*.md"))]


def _prose(text: str) -> str:
    """The text outside code: fenced blocks and inline code spans hold no links or headings."""
    return INLINE_CODE.sub("", FENCE.sub("", text))


def slug(heading: str) -> str:
    """GitHub's anchor for a heading: lowercase, punctuation dropped (except - and _), spaces to -."""
    text = re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.strip().lower())  # a link keeps its text
    text = re.sub(r"[^\w\- ]", "", text)
    return text.replace(" ", "-")


def anchors(path: Path) -> set[str]:
    seen: dict[str, int] = {}
    found = set()
    for match in HEADING.finditer(FENCE.sub("", path.read_text(encoding="utf-8"))):
        base = slug(match.group(1))
        count = seen.get(base, 0)
        seen[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found


def _section(text: str, title: str) -> str:
    """The body of the level-2 section `## title`, up to the next level-2 heading."""
    match = re.search(rf"^## {re.escape(title)}[ \t]*$(.*?)(?=^## |\Z)", text, re.M | re.S)
    assert match, f"README.md has no '## {title}' section"
    return match.group(1)


def test_cli_reference_is_current():
    expected = _load_generator().render()
    actual = (DOCS / "cli.md").read_text(encoding="utf-8")
    assert actual == expected, "docs/cli.md is not the commands' current --help: run `make docs` and commit it"


def test_cli_reference_is_independent_of_the_terminal(monkeypatch):
    generator = _load_generator()
    monkeypatch.setenv("COLUMNS", "40")
    narrow = generator.render()
    monkeypatch.setenv("COLUMNS", "250")
    assert narrow == generator.render()


def test_cli_reference_has_every_command_in_order():
    from commands import all_commands

    text = (DOCS / "cli.md").read_text(encoding="utf-8")
    sections = re.findall(r"^## xfer (\S+)$", text, re.M)
    assert sections == sorted(all_commands())


def test_readme_is_one_screen():
    size = len(README.read_text(encoding="utf-8"))
    assert size < README_LIMIT, (
        f"README.md has {size:,} characters (limit {README_LIMIT:,}): move the detail into a page of docs/"
    )


@pytest.mark.parametrize("path", _markdown_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_relative_links_resolve(path):
    broken = []
    for target in LINK.findall(_prose(path.read_text(encoding="utf-8"))):
        if re.match(r"^[a-z][a-z0-9+.-]*:", target, re.I):  # https:, mailto:, ...
            continue
        file_part, _, anchor = target.partition("#")
        linked = (path.parent / file_part).resolve() if file_part else path
        if not linked.exists():
            broken.append(f"{target}: no file {linked.relative_to(ROOT) if linked.is_relative_to(ROOT) else linked}")
        elif anchor and linked.suffix == ".md" and anchor not in anchors(linked):
            broken.append(f"{target}: no heading #{anchor} in {linked.relative_to(ROOT)}")
    assert not broken, f"{path.relative_to(ROOT)} has broken links:\n" + "\n".join(broken)


@pytest.mark.parametrize("path", sorted(DOCS.glob("*.md")), ids=lambda p: p.name)
def test_docs_pages_start_with_a_title_and_a_way_back(path):
    lines = path.read_text(encoding="utf-8").splitlines()
    assert lines and lines[0].startswith("# "), f"{path.name} must start with a '# Title'"
    head = "\n".join(lines[:8])
    assert "](../README.md" in head, f"{path.name} must link back to the README near its top"


def test_every_command_is_in_the_readme_table():
    from commands import all_commands

    rows = [line for line in README.read_text(encoding="utf-8").splitlines() if line.lstrip().startswith("|")]
    missing = [
        name
        for name in sorted(all_commands())
        if not any(re.search(rf"xfer {re.escape(name)}\b|`{re.escape(name)}`", row) for row in rows)
    ]
    assert not missing, f"commands missing from the README's command table: {', '.join(missing)}"


def test_readme_test_command_is_what_ci_runs():
    text = README.read_text(encoding="utf-8")
    setup = _section(text, "Set up and run")
    assert re.search(r"^make test\b", setup, re.M), "the README's set-up commands must include `make test`"
    assert "`make test` runs the suite" in _section(text, "Development")
    ci = [
        line.strip()
        for line in (ROOT / ".ci" / "run").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.lstrip().startswith("#")
    ]
    assert ci[-1] == "make test", "CI (.ci/run) must end by running the README's test command, `make test`"


def test_python_api_page_shows_the_readme_example():
    """tests/test_transformer.py runs the README's `## Python` blocks; the docs page's copy must be the same."""
    readme_blocks = re.findall(r"```python\n(.*?)```", _section(README.read_text(encoding="utf-8"), "Python"), re.S)
    page_blocks = re.findall(r"```python\n(.*?)```", (DOCS / "python-api.md").read_text(encoding="utf-8"), re.S)
    assert readme_blocks, "README.md's '## Python' section must keep its example (tests/test_transformer.py runs it)"
    assert page_blocks == readme_blocks, "docs/python-api.md's example differs from README.md's '## Python' example"


def test_slug_follows_github():
    assert slug("Bad inputs and crashes") == "bad-inputs-and-crashes"
    assert slug("Rank backbones and layers (`xfer rank`)") == "rank-backbones-and-layers-xfer-rank"
    assert slug("Object storage, Parquet and WebDataset") == "object-storage-parquet-and-webdataset"
    assert slug("Speed: precision, runtimes and devices") == "speed-precision-runtimes-and-devices"
