"""llms.txt: parse and validate against the format proposed at https://llmstxt.org/.

The format, in order: an H1 with the site or project name (the only required part); an optional
``>`` blockquote summary; optional notes (paragraphs, lists; no headings); then H2 sections whose
content is a list of links ``- [name](url)`` with optional ``: notes``. An H2 named ``Optional``
marks links that may be skipped. This module is pure (text in, structure and problems out); the
runner fetches the file and checks that its links resolve.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

from geoaudit.documents import markdown_heading

# Possessive repeats: each is followed by a character it cannot match, so giving back never helps
# (and untrusted files cannot make the match backtrack; issue 11).
_LINK_ITEM = re.compile(
    r"^[-*]\s++\[(?P<name>[^\]]++)\]\((?P<url>[^)\s]++)(?:\s++\"[^\"]*+\")?\)\s*+(?::\s*+(?P<notes>.*+))?$"
)


@dataclass
class LlmsTxt:
    """What an llms.txt says, and where it departs from the format (``problems``: line, message)."""

    title: str = ""
    summary: str = ""
    sections: list[tuple[str, list[tuple[str, str]]]] = field(default_factory=list)
    problems: list[tuple[int, str]] = field(default_factory=list)
    has_title: bool = False

    @property
    def links(self) -> list[str]:
        return [url for _, items in self.sections for _, url in items]


def parse_llms_txt(text: str, base_url: str = "") -> LlmsTxt:
    """Parse ``text``; links are resolved against ``base_url`` (the llms.txt URL) when relative."""
    out = LlmsTxt()
    lines = text.replace("\r\n", "\n").replace("\r", "\n").split("\n")
    numbered = [(i + 1, line.rstrip()) for i, line in enumerate(lines)]
    content = [(n, line) for n, line in numbered if line.strip()]
    if not content:
        out.problems.append((1, "the file is empty"))
        return out
    first_n, first = content[0]
    m = markdown_heading(first.strip())
    if m and m[0] == 1 and m[1]:
        out.title = m[1]
        out.has_title = True
        rest = content[1:]
    else:
        out.problems.append((first_n, f"the first line must be an H1 title ('# Name'), found: {first.strip()[:80]!r}"))
        rest = content
    # The summary: a blockquote right after the title.
    quote: list[str] = []
    while rest and rest[0][1].lstrip().startswith(">"):
        quote.append(rest[0][1].lstrip()[1:].strip())
        rest = rest[1:]
    out.summary = " ".join(q for q in quote if q)
    section: tuple[str, list[tuple[str, str]]] | None = None
    for n, line in rest:
        stripped = line.strip()
        h = markdown_heading(stripped)
        if h:
            level = h[0]
            if level == 2:
                section = (h[1], [])
                out.sections.append(section)
            elif level == 1:
                out.problems.append((n, "a second H1 title; llms.txt has exactly one"))
            else:
                out.problems.append((n, f"an H{level} heading; only the H1 title and H2 sections belong to the format"))
            continue
        if section is None:
            continue  # free-form notes between the summary and the first section
        item = _LINK_ITEM.match(stripped)
        if item is None:
            out.problems.append(
                (n, f"in section {section[0]!r}, not a link item '- [name](url): notes': {stripped[:80]!r}")
            )
            continue
        url = urljoin(base_url, item.group("url")) if base_url else item.group("url")
        if urlsplit(url).scheme not in ("http", "https"):
            out.problems.append((n, f"link {item.group('url')!r} is not an http(s) URL"))
            continue
        section[1].append((item.group("name").strip(), url))
    for name, items in out.sections:
        if not items:
            out.problems.append((0, f"section {name!r} lists no links"))
    return out
