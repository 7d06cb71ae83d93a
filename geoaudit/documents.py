"""The ``Document`` every stage reads and writes, its stable ids, and document file I/O.

A document's id is a hash of its canonical URL (so a recrawl updates, never duplicates) and its
``content_hash`` a hash of its text (so rewrites and answers are keyed by content, not by name).
"""

from __future__ import annotations

import hashlib
import json
import os
import secrets
from collections.abc import Iterable, Iterator
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from geoaudit.errors import InputError

HASH_PREFIX = "d1:"


def sha256(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()


def document_id(canonical_url: str) -> str:
    """Stable id of a document: the first 16 hex digits of sha256 of its canonical URL."""
    return sha256(HASH_PREFIX + canonical_url.strip())[:16]


def content_hash(text: str) -> str:
    return sha256(text)


def now_iso() -> str:
    return datetime.now(UTC).replace(microsecond=0).isoformat()


@dataclass(frozen=True)
class Document:
    """One page or draft: what crawl produces and rewrite, engine and simulate consume."""

    id: str
    url: str
    title: str
    text: str
    metadata: dict[str, Any] = field(default_factory=dict)
    fetched_at: str | None = None
    content_hash: str = ""

    def __post_init__(self) -> None:
        if not self.content_hash:
            object.__setattr__(self, "content_hash", content_hash(self.text))

    @classmethod
    def create(
        cls,
        url: str,
        text: str,
        title: str = "",
        metadata: dict[str, Any] | None = None,
        fetched_at: str | None = None,
        canonical_url: str | None = None,
    ) -> Document:
        return cls(
            id=document_id(canonical_url or url),
            url=url,
            title=title,
            text=text,
            metadata=dict(metadata or {}),
            fetched_at=fetched_at or now_iso(),
        )

    def with_text(self, text: str, **metadata: Any) -> Document:
        """A copy with new text (and a recomputed content hash); the id stays the same."""
        return replace(self, text=text, content_hash=content_hash(text), metadata={**self.metadata, **metadata})

    @property
    def word_count(self) -> int:
        return len(self.text.split())

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any], *, source: str = "") -> Document:
        """Build a Document from a JSON record; ``id`` and ``content_hash`` are derived when absent."""
        if not isinstance(data, dict):
            raise InputError(f"{source}: a document must be a JSON object")
        text = data.get("text")
        if not isinstance(text, str):
            raise InputError(f"{source}: document has no 'text' string")
        url = str(data.get("url") or "")
        doc_id = str(data.get("id") or document_id(url or sha256(text)))
        return cls(
            id=doc_id,
            url=url,
            title=str(data.get("title") or ""),
            text=text,
            metadata=dict(data.get("metadata") or {}),
            fetched_at=data.get("fetched_at"),
            content_hash=str(data.get("content_hash") or content_hash(text)),
        )


def jsonl_records(path: Path | str) -> Iterator[tuple[int, Any]]:
    """``(line number, parsed JSON)`` for each non-blank line of a UTF-8 JSONL file (a BOM is allowed).

    Raises:
        InputError: the file is missing or unreadable, a line is not UTF-8, or not valid JSON
            (the message names the file and line).
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such file: {path}")
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise InputError(f"cannot read {path}: {exc.strerror}") from None
    with fh:
        for lineno, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8-sig" if lineno == 1 else "utf-8")
            except UnicodeDecodeError as exc:
                raise InputError(
                    f"{path}:{lineno}: not UTF-8 text (byte {exc.start + 1} of the line)",
                    hint="save the file as UTF-8",
                ) from None
            if not line.strip():
                continue
            try:
                yield lineno, json.loads(line)
            except json.JSONDecodeError as exc:
                raise InputError(f"{path}:{lineno}: not valid JSON ({exc.msg})") from None
            except RecursionError:
                raise InputError(f"{path}:{lineno}: JSON nested too deeply") from None


def read_jsonl(path: Path | str) -> list[Document]:
    """Read documents from a JSONL file (one Document record per line).

    Raises:
        InputError: the file is missing, empty, not UTF-8, or a line is not a document record.
    """
    path = Path(path)
    docs = []
    for lineno, data in jsonl_records(path):
        docs.append(Document.from_dict(data, source=f"{path}:{lineno}"))
    if not docs:
        raise InputError(f"{path} holds no documents")
    return docs


@contextmanager
def atomic_path(path: Path | str) -> Iterator[Path]:
    """``with atomic_path(out) as tmp:`` write ``tmp`` any way you like (pandas, bytes, text).

    On success ``tmp`` replaces ``path`` in one ``os.replace`` (readers never see a half-written
    file); on any error, an interrupt included, ``tmp`` is removed and ``path`` is untouched. The
    temporary file is hidden, unique per call and next to ``path`` (same filesystem).

    Raises:
        InputError: ``path`` is an existing directory (before anything is written).
    """
    path = Path(path)
    if path.is_dir():
        raise InputError(f"{path} is a directory", hint="give a file name, e.g. results.csv")
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}-{secrets.token_hex(4)}.tmp")
    try:
        yield tmp
        os.replace(tmp, path)
    except OSError as exc:
        tmp.unlink(missing_ok=True)
        if exc.filename is not None and os.fspath(exc.filename) == str(tmp):
            # The temporary name means nothing to the user: report the path they gave.
            raise OSError(exc.errno, exc.strerror, str(path)) from None
        raise
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise


def atomic_write_text(path: Path | str, text: str) -> Path:
    """Write ``text`` to ``path`` atomically (see :func:`atomic_path`): never a half-written file."""
    path = Path(path)
    with atomic_path(path) as tmp:
        tmp.write_text(text, encoding="utf-8")
    return path


def write_jsonl(path: Path | str, docs: Iterable[Document]) -> int:
    lines = [json.dumps(d.to_dict(), ensure_ascii=False) for d in docs]
    atomic_write_text(path, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


# --------------------------------------------------------------------------------------------------
# Extraction: HTML -> Document, and loading local drafts (HTML, Markdown, text, JSONL) as Documents.
# --------------------------------------------------------------------------------------------------

import glob as _glob  # noqa: E402
import re as _re  # noqa: E402
from collections.abc import Sequence  # noqa: E402
from urllib.parse import urldefrag, urljoin, urlsplit  # noqa: E402

HTML_SUFFIXES = (".html", ".htm")
TEXT_SUFFIXES = (".md", ".markdown", ".txt")
JSONL_SUFFIXES = (".jsonl",)
INPUT_SUFFIXES = HTML_SUFFIXES + TEXT_SUFFIXES + JSONL_SUFFIXES

#: Outgoing links kept per document (a link farm should not bloat the store).
MAX_LINKS = 2000
_HEADING_TAGS = ("h1", "h2", "h3", "h4", "h5", "h6")
# Bounded inside the tag: an unclosed "<meta" must not be rescanned up to "charset" from each start.
_CHARSET_RE = _re.compile(rb"""<meta[^>]{1,500}charset\s{0,8}=\s{0,8}["']?\s{0,8}([A-Za-z0-9_.:-]+)""", _re.I)
_MD_HEADING_RE = _re.compile(r"^(#{1,6})(\s.+)$")
_GLOB_CHARS = set("*?[")


def _header_charset(content_type: str | None) -> str | None:
    if not content_type:
        return None
    match = _re.search(r"charset\s*=\s*[\"']?([A-Za-z0-9_.:-]+)", content_type, _re.I)
    return match.group(1).lower() if match else None


def decode_html(body: bytes, content_type: str | None = None) -> tuple[str, str]:
    """Decode a fetched body to text; returns ``(text, charset_used)``.

    Order: a BOM, then strict UTF-8 (valid UTF-8 is almost never another encoding by accident,
    which rescues pages whose header or meta tag names the wrong charset), then the charset the
    Content-Type header declares, then a ``<meta charset>``, then cp1252 with replacement.
    """
    if body.startswith(b"\xef\xbb\xbf"):
        return body[3:].decode("utf-8", errors="replace"), "utf-8-sig"
    if body.startswith((b"\xff\xfe", b"\xfe\xff")):
        return body.decode("utf-16", errors="replace"), "utf-16"
    try:
        return body.decode("utf-8"), "utf-8"
    except UnicodeDecodeError:
        pass
    meta = _CHARSET_RE.search(body[:4096])
    candidates = [_header_charset(content_type), meta.group(1).decode("ascii", "ignore").lower() if meta else None]
    for charset in candidates:
        if not charset or charset.replace("-", "") == "utf8":
            continue
        try:
            return body.decode(charset), charset
        except (LookupError, UnicodeDecodeError):
            continue
    return body.decode("cp1252", errors="replace"), "cp1252"


def looks_binary(body: bytes) -> bool:
    """True when a body is not text: NUL bytes or many control characters in its first 2 KiB."""
    sample = body[:2048]
    if not sample:
        return False
    if b"\x00" in sample:
        return True
    controls = sum(1 for b in sample if b < 32 and b not in (9, 10, 12, 13))
    return controls / len(sample) > 0.1


def _clean(text: str | None) -> str:
    return " ".join((text or "").split())


def _absolute_http(href: str | None, base: str) -> str | None:
    """Absolute http(s) URL for ``href`` relative to ``base``, without fragment; None otherwise."""
    if not href:
        return None
    href = href.strip()
    if not href or href.startswith(("#", "javascript:", "mailto:", "tel:", "data:")):
        return None
    try:
        absolute = urldefrag(urljoin(base, href))[0]
        parts = urlsplit(absolute)
    except ValueError:
        return None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        return None
    return absolute


def _jsonld_objects(soup: Any) -> list[dict[str, Any]]:
    """Every JSON object in the page's JSON-LD scripts, flattened through ``@graph`` and lists."""
    found: list[dict[str, Any]] = []

    def walk(node: Any, depth: int = 0) -> None:
        if depth > 20:
            return
        if isinstance(node, list):
            for item in node:
                walk(item, depth + 1)
        elif isinstance(node, dict):
            found.append(node)
            for key in ("@graph", "mainEntity", "itemListElement"):
                if key in node:
                    walk(node[key], depth + 1)

    for script in soup.find_all("script", attrs={"type": _re.compile(r"ld\+json", _re.I)}):
        raw = script.string or script.get_text() or ""
        try:
            walk(json.loads(raw.strip()))
        except (json.JSONDecodeError, ValueError, RecursionError):
            continue
    return found


def _jsonld_types(objects: list[dict[str, Any]]) -> list[str]:
    types: list[str] = []
    for obj in objects:
        value = obj.get("@type")
        for t in value if isinstance(value, list) else [value]:
            if isinstance(t, str) and t and t not in types:
                types.append(t)
    return types


def _jsonld_field(objects: list[dict[str, Any]], key: str) -> str | None:
    for obj in objects:
        value = obj.get(key)
        if isinstance(value, list) and value:
            value = value[0]
        if isinstance(value, dict):
            value = value.get("name") or value.get("@id")
        if isinstance(value, str) and value.strip():
            return value.strip()
    return None


def _meta_index(soup: Any) -> dict[str, str]:
    """``{lower-cased name, property or http-equiv: content}`` of the page's ``<meta>`` tags (first wins)."""
    index: dict[str, str] = {}
    for tag in soup.find_all("meta"):
        content = _clean(tag.get("content"))
        if not content:
            continue
        for attr in ("name", "property", "http-equiv", "itemprop"):
            key = tag.get(attr)
            if isinstance(key, str) and key.strip():
                index.setdefault(key.strip().lower(), content)
    return index


def _attr(tag: Any, name: str) -> str | None:
    """A single-valued attribute of ``tag`` (None when absent); bs4 types every value as possibly a list."""
    value = tag.get(name) if tag else None
    return value if isinstance(value, str) else None


def _meta(index: dict[str, str], *names: str) -> str | None:
    """Content of the first of ``names`` present among the page's meta tags."""
    for name in names:
        if name.lower() in index:
            return index[name.lower()]
    return None


def _fallback_text(soup: Any) -> str:
    """Markdown-ish text from block elements, used when trafilatura finds no main content."""
    for tag in soup.find_all(["script", "style", "noscript", "template", "nav", "footer", "header", "aside", "form"]):
        tag.decompose()
    body = soup.body or soup
    blocks: list[str] = []
    for el in body.find_all(["h1", "h2", "h3", "h4", "h5", "h6", "p", "li", "pre", "blockquote", "td", "dd", "dt"]):
        # Only innermost blocks, so nested <li><p> is not emitted twice.
        if el.find(["p", "li", "pre", "blockquote", "td"]):
            continue
        text = _clean(el.get_text(" "))
        if not text:
            continue
        if el.name in _HEADING_TAGS:
            blocks.append("#" * int(el.name[1]) + " " + text)
        elif el.name == "li":
            blocks.append("- " + text)
        elif el.name == "blockquote":
            blocks.append("> " + text)
        else:
            blocks.append(text)
    if not blocks:
        loose = _clean(body.get_text(" "))
        if loose:
            blocks.append(loose)
    return "\n\n".join(blocks)


def _main_text(html: str, url: str) -> str:
    import logging

    import trafilatura

    # trafilatura logs a warning for every page it finds empty; we record that as data instead.
    logging.getLogger("trafilatura").setLevel(logging.ERROR)

    try:
        text = trafilatura.extract(
            html,
            url=url or None,
            output_format="markdown",
            include_formatting=True,
            include_tables=True,
            include_links=False,
            include_images=False,
            include_comments=False,
            favor_recall=True,
        )
    except Exception:  # trafilatura/lxml can choke on hostile markup; the fallback handles it
        text = None
    return (text or "").strip()


def extract_html(
    html: str | bytes,
    url: str,
    *,
    content_type: str | None = None,
    fetched_at: str | None = None,
) -> Document:
    """Turn one HTML page into a :class:`Document`: main text plus what a GEO audit looks at.

    The text is trafilatura's main content as markdown-ish text (``#`` headings, ``-`` lists,
    paragraphs); when trafilatura finds nothing, a BeautifulSoup pass over block elements is used
    (``metadata["extractor"]`` says which). ``metadata`` holds ``title``, ``description``,
    ``canonical``, ``lang``, ``headings`` (``[{"level", "text"}]``), ``jsonld_types``, ``author``,
    ``published``, ``modified``, ``links`` (absolute http(s), de-duplicated), ``word_count``,
    ``charset`` and, when no text was found, ``no_main_content: True``. The id is
    ``document_id(canonical or url)``. Never raises on malformed markup.
    """
    from bs4 import BeautifulSoup

    charset = None
    if isinstance(html, bytes):
        html, charset = decode_html(html, content_type)
    html = html.replace("\x00", "")
    text = _main_text(html, url)
    extractor = "trafilatura"
    try:
        soup = BeautifulSoup(html, "lxml")
    except Exception:
        soup = BeautifulSoup("", "lxml")

    meta: dict[str, Any] = {}
    try:
        metas = _meta_index(soup)
        title = _clean(soup.title.get_text()) if soup.title else ""
        title = title or _meta(metas, "og:title", "twitter:title") or ""
        h1 = soup.find("h1")
        if not title and h1:
            title = _clean(h1.get_text(" "))
        canonical_tag = soup.find(
            "link", rel=lambda v: bool(v) and "canonical" in [x.lower() for x in (v if isinstance(v, list) else [v])]
        )
        canonical = _absolute_http(_attr(canonical_tag, "href"), url) if url else None
        html_tag = soup.find("html")
        lang = _clean(_attr(html_tag, "lang")) if _attr(html_tag, "lang") else None
        lang = lang or _meta(metas, "content-language", "og:locale")
        headings = [
            {"level": int(h.name[1]), "text": _clean(h.get_text(" "))}
            for h in soup.find_all(list(_HEADING_TAGS))
            if _clean(h.get_text(" "))
        ]
        objects = _jsonld_objects(soup)
        links: list[str] = []
        seen: set[str] = set()
        for a in soup.find_all("a", href=True):
            link = _absolute_http(_attr(a, "href"), url) if url else None
            if link and link not in seen:
                seen.add(link)
                links.append(link)
                if len(links) >= MAX_LINKS:
                    break
        time_tag = soup.find("time", attrs={"datetime": True})
        meta = {
            "title": title,
            "description": _meta(metas, "description", "og:description", "twitter:description"),
            "canonical": canonical,
            "lang": lang,
            "headings": headings,
            "jsonld_types": _jsonld_types(objects),
            "author": _meta(metas, "author", "article:author") or _jsonld_field(objects, "author"),
            "published": _meta(metas, "article:published_time", "date", "dc.date", "datePublished")
            or _jsonld_field(objects, "datePublished")
            or (_clean(_attr(time_tag, "datetime")) if time_tag else None),
            "modified": _meta(metas, "article:modified_time", "og:updated_time", "dateModified")
            or _jsonld_field(objects, "dateModified"),
            "links": links,
        }
        if not text:
            text = _fallback_text(soup)
            extractor = "fallback"
    except RecursionError:  # absurdly deep markup: keep whatever main text we have
        meta = meta or {"title": "", "headings": [], "jsonld_types": [], "links": []}
    title = meta.get("title") or ""
    meta["word_count"] = len(text.split())
    meta["extractor"] = extractor
    if content_type:
        meta["content_type"] = content_type
    if charset:
        meta["charset"] = charset
    if not text.strip():
        meta["no_main_content"] = True
    canonical = meta.get("canonical")
    return Document.create(
        url=url,
        text=text,
        title=title,
        metadata=meta,
        fetched_at=fetched_at,
        canonical_url=canonical or url,
    )


def markdown_heading(line: str, *, max_indent: int = 0) -> tuple[int, str] | None:
    """(level, text) of an ATX heading line (``## Title ##``), or None.

    Up to ``max_indent`` leading spaces, 1-6 ``#``, then whitespace before the text; trailing ``#``s
    and blanks are not part of the text. Written out rather than as a regex: the lazy pattern it
    replaces took quadratic or worse time on long lines of blanks (issue 11).
    """
    body = line.lstrip(" ")
    if len(line) - len(body) > max_indent:
        return None
    level = len(body) - len(body.lstrip("#"))
    rest = body[level:]
    if not 1 <= level <= 6 or not rest or not rest[0].isspace():
        return None
    return level, rest.strip().rstrip("#").rstrip()


def _heading_text(rest: str) -> str:
    """The text of an ATX heading from what follows its #s: without closing #s and blanks.

    Written out because the lazy regex it replaces (``\\s+(.+?)\\s*#*\\s*$``) took cubic time
    on a long line of blanks; it gives the same results (at least one character is kept).
    """
    body = rest.lstrip() or rest[-1]
    kept = body.rstrip().rstrip("#").rstrip() or body[0]
    return kept.strip()


def _markdown_title_and_headings(text: str) -> tuple[str, list[dict[str, Any]]]:
    headings: list[dict[str, Any]] = []
    for line in text.splitlines():
        match = _MD_HEADING_RE.match(line)
        if match:
            headings.append({"level": len(match.group(1)), "text": _heading_text(match.group(2))})
    if headings:
        return headings[0]["text"], headings
    first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
    return first[:200], headings


def _load_file(path: Path) -> list[Document]:
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return read_jsonl(path)
    if suffix not in HTML_SUFFIXES + TEXT_SUFFIXES:
        raise InputError(
            f"unsupported file type {path.suffix or '(none)'}: {path}",
            hint="use .html, .htm, .md, .markdown, .txt or .jsonl",
        )
    raw = path.read_bytes()
    if not raw.strip():
        raise InputError(f"{path} is empty")
    url = path.resolve().as_uri()
    mtime = datetime.fromtimestamp(path.stat().st_mtime, UTC).replace(microsecond=0).isoformat()
    if suffix in HTML_SUFFIXES:
        doc = extract_html(raw, url, content_type="text/html", fetched_at=mtime)
        return [replace(doc, metadata={**doc.metadata, "source_path": str(path.resolve())})]
    text, charset = decode_html(raw)
    text = text.replace("\r\n", "\n").strip()
    title, headings = _markdown_title_and_headings(text)
    meta = {
        "title": title,
        "headings": headings,
        "word_count": len(text.split()),
        "format": "text" if suffix == ".txt" else "markdown",
        "source_path": str(path.resolve()),
        "charset": charset,
    }
    return [Document.create(url=url, text=text, title=title, metadata=meta, fetched_at=mtime)]


def _expand_input(entry: str | Path) -> list[Path]:
    path = Path(entry).expanduser()
    if path.is_dir():
        files = sorted(
            p
            for p in path.rglob("*")
            if p.is_file()
            and p.suffix.lower() in INPUT_SUFFIXES
            and not any(part.startswith(".") for part in p.relative_to(path).parts)
        )
        if not files:
            raise InputError(f"directory {path} holds no .html/.htm/.md/.markdown/.txt/.jsonl files")
        return files
    if path.is_file():
        return [path]
    text = str(entry)
    if _GLOB_CHARS & set(text):
        matches = sorted(Path(m) for m in _glob.glob(os.path.expanduser(text), recursive=True))
        files = [m for m in matches if m.is_file() and m.suffix.lower() in INPUT_SUFFIXES]
        if not files:
            raise InputError(f"no supported files match {text!r}")
        return files
    raise InputError(f"no such file or directory: {entry}")


def load_inputs(paths: Sequence[str | Path]) -> list[Document]:
    """Load local drafts as Documents: files, directories (recursive, sorted) and glob patterns.

    ``.html``/``.htm`` go through :func:`extract_html`; ``.md``/``.markdown``/``.txt`` keep their
    text as-is (title = first heading, else first line); ``.jsonl`` holds Document records. Local
    files get ``url = file://<absolute path>`` and ``metadata["source_path"]``; ``fetched_at`` is the
    file's modification time. A file named twice is loaded once.

    Raises:
        InputError: nothing given, a path that does not exist, a glob or directory with no
            supported file, an empty file, or an unsupported extension named explicitly.
    """
    if not paths:
        raise InputError("no input files given")
    docs: list[Document] = []
    seen: set[Path] = set()
    for entry in paths:
        for path in _expand_input(entry):
            resolved = path.resolve()
            if resolved in seen:
                continue
            seen.add(resolved)
            docs.extend(_load_file(path))
    if not docs:
        raise InputError("the inputs hold no documents")
    return docs
