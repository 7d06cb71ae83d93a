"""The audit's inputs: your page and the competitors, as URLs (crawled) or local files (loaded).

Nothing a competitor does stops the audit: an invalid URL, an unreachable host, a page robots.txt
keeps geoaudit out of, a page that extracts to no text, a duplicate: each becomes an
:class:`~geoaudit.audit.model.AuditInput` with ``used=False`` and the reason, and the audit goes on
with the others. Your own page is different only in that the simulation cannot run without it.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

from geoaudit.audit.model import AuditInput, InputKind, InputRole, Stage
from geoaudit.config import Settings
from geoaudit.crawl import CrawlOptions, crawl, validate_url
from geoaudit.documents import Document, load_inputs
from geoaudit.errors import InputError
from geoaudit.options import AuditOptions

_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")


def is_url(spec: str) -> bool:
    """``scheme:...`` but not a Windows drive letter (``C:\\``)."""
    return bool(_SCHEME.match(spec)) and not re.match(r"^[A-Za-z]:[\\/]", spec)


def read_competitors_file(path: Path | str) -> list[str]:
    """Competitors from a text file: one URL or path per line, blank lines and ``#`` comments ignored.

    A relative path is read relative to the file's directory.

    Raises:
        InputError: the file is missing or unreadable, or lists nothing.
    """
    p = Path(path).expanduser()
    if not p.is_file():
        raise InputError(f"no such competitors file: {path}", hint="one URL or path per line")
    try:
        lines = p.read_text(encoding="utf-8-sig").splitlines()
    except (OSError, UnicodeDecodeError) as exc:
        raise InputError(f"cannot read competitors file {path}: {exc}") from None
    out: list[str] = []
    for line in lines:
        spec = line.strip()
        if not spec or spec.startswith("#"):
            continue
        if not is_url(spec) and not Path(spec).expanduser().is_absolute():
            spec = str(p.parent / spec)
        out.append(spec)
    if not out:
        raise InputError(f"competitors file {path} lists no URL or path")
    return out


@dataclass
class Gathered:
    """Your page and the competitors: what was given, what is usable (``docs``, by spec order)."""

    page: AuditInput
    page_doc: Document | None
    competitors: list[AuditInput]
    competitor_docs: list[Document]
    warnings: list[str] = field(default_factory=list)


def _word_count(doc: Document) -> int:
    return len(doc.text.split())


def gather_inputs(
    page: str,
    competitors: Sequence[str],
    *,
    settings: Settings,
    options: AuditOptions,
    progress: Stage | None = None,
) -> Gathered:
    """Crawl the URLs (one polite crawl: robots.txt, per-host delay) and load the local files.

    Raises:
        InputError: your page is neither an http(s) URL nor an existing file, is an invalid URL, or a
            local path that holds more than one page. (Competitors never raise: they are skipped.)
    """
    page = page.strip()
    if not page:
        raise InputError("no page to audit", hint="give your page's URL or a local .html/.md file")
    # spec -> (role, kind, normalised URL or None); competitors that cannot even be classified are skipped now.
    entries: list[tuple[str, InputRole, InputKind, str]] = []  # (spec, role, kind, url-or-path)
    skipped: list[AuditInput] = []
    if is_url(page):
        try:
            entries.append((page, "page", "url", validate_url(page)))
        except InputError as exc:
            raise InputError(f"your page {page!r}: {exc.message}", hint=exc.hint) from None
    elif Path(page).expanduser().exists():
        entries.append((page, "page", "file", str(Path(page).expanduser().resolve())))
    else:
        raise InputError(
            f"your page {page!r} is neither an http(s) URL nor an existing file",
            hint="e.g. https://example.com/pricing or drafts/pricing.html",
        )
    seen = {entries[0][3]}
    for raw in competitors:
        spec = raw.strip()
        if not spec:
            continue
        kind: InputKind
        if is_url(spec):
            try:
                target = validate_url(spec)
            except InputError as exc:
                skipped.append(AuditInput(spec, "competitor", "url", False, f"invalid URL: {exc.message}"))
                continue
            kind = "url"
        elif Path(spec).expanduser().exists():
            target, kind = str(Path(spec).expanduser().resolve()), "file"
        else:
            skipped.append(AuditInput(spec, "competitor", "file", False, "neither an http(s) URL nor an existing file"))
            continue
        if target in seen:
            why = "the same as your page" if target == entries[0][3] else "listed twice"
            skipped.append(AuditInput(spec, "competitor", kind, False, why))
            continue
        seen.add(target)
        entries.append((spec, "competitor", kind, target))

    urls = [e[3] for e in entries if e[2] == "url"]
    docs_by_url: dict[str, tuple[Document | None, str]] = {}
    warnings: list[str] = []
    if urls:
        if progress:
            progress("crawl", {"done": 0, "total": len(urls)})
        result = crawl(
            urls,
            settings=settings,
            options=CrawlOptions(
                delay=options.delay,
                per_host=1,
                concurrency=8,
                allow_private=options.allow_private,
                respect_robots=options.respect_robots,
                timeout=options.timeout,
                retries=2,
            ),
            progress=(lambda p: progress("crawl", {"done": p.done, "total": len(urls)})) if progress else None,
        )
        warnings += result.warnings
        docs = {d.id: d for d in result.documents}
        records = result.by_url()
        for url in urls:
            rec = records.get(url)
            if rec is None:
                docs_by_url[url] = (None, "not crawled")
            elif rec.outcome in ("fetched", "unchanged") and rec.doc_id and rec.doc_id in docs:
                docs_by_url[url] = (docs[rec.doc_id], "")
            elif rec.outcome == "failed":
                docs_by_url[url] = (None, f"could not be fetched: {rec.reason}")
            else:
                docs_by_url[url] = (None, rec.reason or rec.outcome)  # the crawler's reason says it all

    page_input: AuditInput | None = None
    page_doc: Document | None = None
    comp_inputs: list[AuditInput] = []
    comp_docs: list[Document] = []
    for spec, role, kind, target in entries:
        loaded: list[tuple[Document | None, str]]
        if kind == "url":
            loaded = [docs_by_url.get(target, (None, "not crawled"))]
        else:
            try:
                loaded = [(d, "") for d in load_inputs([target])]
            except InputError as exc:
                loaded = [(None, exc.message)]
            if role == "page" and len(loaded) > 1:
                raise InputError(
                    f"your page {spec!r} holds {len(loaded)} documents", hint="give one file for your page"
                )
        for n, (doc, why) in enumerate(loaded):
            label = spec if len(loaded) == 1 else f"{spec} [{n + 1}]"
            if doc is not None and not doc.text.strip():
                doc, why = None, "extracts to no main text (rendered by JavaScript? an empty page?)"
            if doc is None:
                item = AuditInput(label, role, kind, False, why, url=target if kind == "url" else "")
            else:
                item = AuditInput(
                    label,
                    role,
                    kind,
                    True,
                    url=target if kind == "url" else doc.url,
                    title=doc.title,
                    words=_word_count(doc),
                )
            if role == "page":
                page_input, page_doc = item, doc
            else:
                comp_inputs.append(item)
                if doc is not None:
                    comp_docs.append(doc)
    assert page_input is not None
    # Skipped-at-parse competitors keep their place after the usable ones (order is the report's).
    return Gathered(page_input, page_doc, comp_inputs + skipped, comp_docs, warnings)
