"""Extractability: what an engine's extractor gets from a page (the extraction ``crawl`` uses)."""

from __future__ import annotations

from geoaudit.check.model import Finding, PageFacts
from geoaudit.check.rules import finding
from geoaudit.documents import extract_html
from geoaudit.fetch import normalize_url

#: Below this many words of main text a page is reported as thin (a judgement call, said as such).
THIN_WORDS = 150


def check_extractability(
    html: str,
    url: str,
    *,
    status: int | None,
    final_url: str,
    content_type: str,
    last_modified_header: str = "",
    local: bool = False,
) -> tuple[PageFacts, list[Finding]]:
    """Extract ``html`` with :func:`geoaudit.documents.extract_html` and report what engines would see.

    ``local``: a file on disk, whose canonical link names where it will be published (not compared).
    """
    doc = extract_html(html, final_url or url, content_type=content_type or None)
    meta = doc.metadata
    headings = tuple((int(h["level"]), str(h["text"])) for h in meta.get("headings") or [])
    text_chars = len(doc.text)
    html_chars = len(html)
    share = text_chars / html_chars if html_chars else 0.0
    if last_modified_header:
        modified, source = last_modified_header, "HTTP Last-Modified header"
    elif meta.get("modified"):
        modified, source = str(meta["modified"]), "page metadata (article:modified_time / JSON-LD dateModified)"
    elif meta.get("published"):
        modified, source = str(meta["published"]), "publication date in page metadata (no modification date)"
    else:
        modified, source = "", ""
    facts = PageFacts(
        final_url=final_url or url,
        status=status,
        content_type=content_type,
        title=str(meta.get("title") or ""),
        description=str(meta.get("description") or ""),
        canonical=str(meta.get("canonical") or ""),
        lang=str(meta.get("lang") or ""),
        last_modified=modified,
        last_modified_source=source,
        headings=headings,
        words=doc.word_count,
        text_chars=text_chars,
        html_chars=html_chars,
        text_share=share,
        extractor=str(meta.get("extractor") or ""),
    )
    return facts, _findings(facts, url, local)


def _findings(f: PageFacts, url: str, local: bool) -> list[Finding]:
    out: list[Finding] = []
    how = f"{f.extractor} extraction, as geoaudit crawl does" if f.extractor else "crawl's extraction"
    if f.words == 0:
        out.append(
            finding(
                "extract.empty",
                "error",
                f"No main text found ({how}); the HTML is {f.html_chars:,} characters.",
                url=url,
            )
        )
    else:
        if f.words < THIN_WORDS:
            out.append(
                finding(
                    "extract.thin",
                    "warning",
                    f"Only {f.words} words of main text (geoaudit flags fewer than {THIN_WORDS}).",
                    url=url,
                )
            )
        out.append(
            finding(
                "extract.text",
                "info",
                f"Main text: {f.words:,} words, {f.text_chars:,} characters = {f.text_share:.1%} of the "
                f"{f.html_chars:,} characters of HTML ({how}).",
                url=url,
            )
        )
    out.append(
        finding("extract.title", "pass", f"Title: {f.title}", url=url)
        if f.title
        else finding("extract.title", "warning", "The page has no title.", url=url)
    )
    out.append(
        finding("extract.description", "pass", f"Description: {f.description[:200]}", url=url)
        if f.description
        else finding("extract.description", "warning", "No meta description.", url=url)
    )
    if not f.canonical:
        out.append(finding("extract.canonical", "info", "No canonical link.", url=url))
    elif local:
        out.append(
            finding(
                "extract.canonical",
                "pass",
                f"Canonical: {f.canonical} (a local file: not compared with its address).",
                url=url,
            )
        )
    elif _same_url(f.canonical, f.final_url):
        out.append(finding("extract.canonical", "pass", f"Canonical: {f.canonical}", url=url))
    else:
        out.append(
            finding(
                "extract.canonical",
                "warning",
                f"The canonical link points to another URL: {f.canonical}; engines may credit that one.",
                evidence=f"page {f.final_url}",
                url=url,
            )
        )
    out.append(
        finding("extract.lang", "pass", f"Language: {f.lang}", url=url)
        if f.lang
        else finding("extract.lang", "info", "No language declared (<html lang>).", url=url)
    )
    out.append(_heading_finding(f, url))
    out.append(
        finding(
            "extract.date", "pass", f"Last modified: {f.last_modified} (from the {f.last_modified_source}).", url=url
        )
        if f.last_modified
        else finding(
            "extract.date", "info", "No modification or publication date (HTTP header, meta tags or JSON-LD).", url=url
        )
    )
    return out


def _heading_finding(f: PageFacts, url: str) -> Finding:
    outline = " / ".join(f"H{level} {text[:60]}" for level, text in f.headings[:12])
    if len(f.headings) > 12:
        outline += f" / ... ({len(f.headings)} headings)"
    h1 = sum(1 for level, _ in f.headings if level == 1)
    skips = [f"H{a}→H{b}" for (a, _), (b, _) in zip(f.headings, f.headings[1:]) if b > a + 1]
    if h1 == 0:
        return finding(
            "extract.headings",
            "warning",
            f"No H1 heading ({len(f.headings)} headings in all).",
            evidence=outline,
            url=url,
        )
    notes = []
    if h1 > 1:
        notes.append(f"{h1} H1 headings")
    if skips:
        notes.append(f"skipped levels {', '.join(dict.fromkeys(skips))}")
    if notes:
        return finding("extract.headings", "info", f"Headings: {'; '.join(notes)}.", evidence=outline, url=url)
    return finding(
        "extract.headings", "pass", f"{len(f.headings)} headings, one H1, no skipped levels.", evidence=outline, url=url
    )


def _same_url(a: str, b: str) -> bool:
    try:
        return normalize_url(a).rstrip("/") == normalize_url(b).rstrip("/")
    except ValueError:
        return a == b
