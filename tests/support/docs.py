"""Reading the Markdown docs in tests: sections, table rows, links and headings' anchors."""

from __future__ import annotations

import re
from pathlib import Path

from perennial.api.docgen import slug

REPO = Path(__file__).resolve().parents[2]
DOCS = REPO / "docs"
README = REPO / "README.md"
OPERATIONS = DOCS / "operations.md"

_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", flags=re.MULTILINE | re.DOTALL)


def section(path: Path, heading: str) -> str:
    """The text under the level-2 ``heading`` of ``path``, up to the next level-2 heading."""
    text = path.read_text()
    marker = f"\n## {heading}\n"
    assert marker in text, f"{path.relative_to(REPO)} has no section '## {heading}'"
    return text.split(marker, 1)[1].split("\n## ", 1)[0]


def first_cells(section_text: str) -> list[list[str]]:
    """The cells of every table row whose first cell starts with a code span (header rows excluded)."""
    rows = []
    for line in section_text.splitlines():
        if line.startswith("| `"):
            cells = re.split(r"(?<!\\)\|", line.strip())[1:-1]
            rows.append([cell.strip() for cell in cells])
    return rows


def without_code(text: str) -> str:
    """Markdown without fenced blocks and code spans: what is left may hold links."""
    return re.sub(r"`[^`\n]*`", "", _FENCE.sub("", text))


def links(path: Path) -> list[str]:
    """Targets of the inline links of a Markdown file (images included)."""
    return re.findall(r"\]\(([^()\s]+)(?:\s+\"[^\"]*\")?\)", without_code(path.read_text()))


def anchors(path: Path) -> set[str]:
    """GitHub's anchors for the headings of a Markdown file (a repeated heading gets -1, -2, ...)."""
    found: set[str] = set()
    counts: dict[str, int] = {}
    for line in _FENCE.sub("", path.read_text()).splitlines():
        heading = re.match(r"^#{1,6}\s+(.*?)\s*#*\s*$", line)
        if heading is None:
            continue
        base = slug(re.sub(r"\[([^\]]*)\]\([^)]*\)", r"\1", heading.group(1)))
        count = counts.get(base, 0)
        counts[base] = count + 1
        found.add(base if count == 0 else f"{base}-{count}")
    return found
