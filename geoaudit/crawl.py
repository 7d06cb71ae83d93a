"""Polite, resumable crawling of web pages into :class:`~geoaudit.documents.Document` records.

Library use (a notebook can call this directly)::

    from geoaudit.config import load_settings
    from geoaudit.crawl import CrawlOptions, crawl

    result = crawl(["https://example.com/"], settings=load_settings(),
                   options=CrawlOptions(max_pages=50, same_domain=True, follow_links=True))
    result.counts, result.documents

How it behaves (three parts: the fetcher, the response-to-document step, the scheduler):

* **Fetching** is :class:`geoaudit.fetch.Fetcher`'s, with its rules: robots.txt (RFC 9309, via
  protego) for the configured user agent, per-host ``delay`` (or a larger robots.txt
  ``Crawl-delay``), at most ``concurrency`` requests in flight, retries with backoff and
  Retry-After, size and redirect caps, and no private, loopback, link-local or metadata address
  unless ``allow_private``, checked on every redirect hop with the connection pinned to the
  checked address (no DNS rebinding). ``respect_robots=False`` adds a warning to the result.
* **Pages** become documents in :func:`page_from_response` (HTML extraction, text pages, type
  and binary checks, 304 keeps the stored document).
* **Scheduling.** At most ``per_host`` pages of one host in flight; waiting for a host's turn
  never holds a global slot, so slow or polite hosts do not starve the others; links are followed
  breadth-first within ``max_pages``.
* **Failures are data.** Every URL ends as one :class:`FetchRecord` with an outcome (``fetched``,
  ``unchanged``, ``skipped``, ``failed``) and a reason; nothing a page does raises.
* **Resumable.** The frontier lives in SQLite next to the documents (``crawl_*`` tables in
  ``settings.store_path``). A page's document is stored, then its frontier row is marked done together
  with the links it revealed, in one transaction per page. Running the same crawl again after
  Ctrl-C or ``kill -9`` continues the unfinished job: finished pages are not fetched again.
  Running it again after it finished starts a new pass that sends ``If-None-Match`` /
  ``If-Modified-Since``; a 304 keeps the stored document (outcome ``unchanged``).
"""

from __future__ import annotations

import asyncio
import hashlib
import json
import re
import sqlite3
import zlib
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

import httpx

from geoaudit._async import run_sync
from geoaudit.config import Settings
from geoaudit.documents import Document, decode_html, extract_html, looks_binary, now_iso
from geoaudit.errors import InputError
from geoaudit.fetch import (  # noqa: F401 - check_public_host, is_public_address: re-exported for callers
    HTML_TYPES,
    TEXT_TYPES,
    FetchedResponse,
    Fetcher,
    FetchOptions,
    RequestEvent,
    Resolver,
    check_public_host,
    host_key,
    is_public_address,
    media_type,
    normalize_url,
)
from geoaudit.store import DocumentStore, Migration, Transaction, connect

SITEMAP_MAX_DEPTH = 3
SITEMAP_MAX_URLS = 50_000
#: Largest sitemap read, compressed or not: the sitemaps.org limit for one file (50 MiB uncompressed).
SITEMAP_MAX_BYTES = 52_428_800


# ------------------------------------------------------------------------------------------------
# Options, records, results
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CrawlOptions:
    """How to crawl. Defaults are polite enough for someone else's site."""

    #: Most URLs one crawl job visits (each ends fetched/unchanged/skipped/failed); None = no cap.
    max_pages: int | None = None
    #: Follow links found on fetched pages, breadth-first (bounded by ``max_pages``).
    follow_links: bool = False
    #: When following links or reading sitemaps, keep only hosts of the seeds (and their subdomains).
    same_domain: bool = False
    #: Regexes (``re.search`` on the URL); discovered URLs must match one include and no exclude.
    #: Seeds given explicitly are always visited.
    include: tuple[str, ...] = ()
    exclude: tuple[str, ...] = ()
    #: Sitemap URLs (urlset, sitemap index, gzip) whose URLs are added as seeds.
    sitemaps: tuple[str, ...] = ()
    #: Seconds between the starts of two requests to the same host.
    delay: float = 1.0
    per_host: int = 1
    concurrency: int = 16
    respect_robots: bool = True
    allow_private: bool = False
    #: None = ``settings.user_agent``.
    user_agent: str | None = None
    #: Seconds for one request, body included (a slow-drip body is cut off at this deadline).
    timeout: float = 20.0
    #: Bodies are cut at this many bytes (and the cut recorded).
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    #: Retries after the first attempt on 429/5xx and connection errors.
    retries: int = 3
    backoff: float = 0.5
    #: A Retry-After longer than this fails the page (a robots.txt Crawl-delay longer than this skips
    #: the host's pages) instead of stalling the crawl.
    max_retry_after: float = 120.0
    #: False = forget an unfinished job with the same inputs and start over.
    resume: bool = True
    #: Crawl state database; None = ``settings.store_path`` (the document store's file).
    state_path: Path | None = None

    def __post_init__(self) -> None:
        for name in ("delay", "timeout", "backoff", "max_retry_after"):
            value = getattr(self, name)
            # NaN compares false with everything, so `value < 0` alone let --delay nan through (a hang).
            if not 0 <= value < float("inf"):
                raise InputError(f"crawl option {name} must be a finite number of seconds, not negative, got {value}")
        for name in ("per_host", "concurrency", "max_bytes"):
            if getattr(self, name) < 1:
                raise InputError(f"crawl option {name} must be at least 1")
        if self.max_pages is not None and self.max_pages < 1:
            raise InputError("--max-pages must be at least 1")
        for pattern in (*self.include, *self.exclude):
            try:
                re.compile(pattern)
            except re.error as exc:
                raise InputError(f"invalid URL pattern {pattern!r}: {exc}") from None

    def fetch_options(self, settings: Settings) -> FetchOptions:
        """The :class:`~geoaudit.fetch.FetchOptions` these crawl options imply."""
        return FetchOptions(
            user_agent=self.user_agent or settings.user_agent,
            delay=self.delay,
            concurrency=self.concurrency,
            respect_robots=self.respect_robots,
            allow_private=self.allow_private,
            timeout=self.timeout,
            max_bytes=self.max_bytes,
            max_redirects=self.max_redirects,
            retries=self.retries,
            backoff=self.backoff,
            max_retry_after=self.max_retry_after,
        )


@dataclass(frozen=True)
class FetchRecord:
    """What happened to one URL of a crawl."""

    url: str
    outcome: str  # fetched | unchanged | skipped | failed
    reason: str = ""
    status: int | None = None
    final_url: str | None = None
    doc_id: str | None = None
    attempts: int = 0
    depth: int = 0


@dataclass(frozen=True)
class CrawlProgress:
    """A snapshot handed to the ``progress`` callback after each URL finishes."""

    done: int
    queued: int
    errors: int
    last: FetchRecord | None = None


@dataclass
class CrawlResult:
    """Outcome of a crawl job: one record per URL, and the documents it holds."""

    job_id: str
    records: list[FetchRecord]
    documents: list[Document]
    resumed: bool = False
    warnings: list[str] = field(default_factory=list)

    @property
    def counts(self) -> dict[str, int]:
        counts = Counter(r.outcome for r in self.records)
        return {k: counts.get(k, 0) for k in ("fetched", "unchanged", "skipped", "failed")}

    def reasons(self, outcome: str) -> dict[str, int]:
        """How many records of ``outcome`` per reason (URLs inside reasons replaced by ``<url>``)."""
        return dict(Counter(_reason_key(r.reason) for r in self.records if r.outcome == outcome).most_common())

    def by_url(self) -> dict[str, FetchRecord]:
        return {r.url: r for r in self.records}


def _reason_key(reason: str) -> str:
    # Group "redirect loop: back to <url>" across pages; keep status codes and content types apart.
    return re.sub(r"https?://\S+", "<url>", reason)


ProgressFn = Callable[[CrawlProgress], None]


# ------------------------------------------------------------------------------------------------
# URLs
# ------------------------------------------------------------------------------------------------


def validate_url(url: str) -> str:
    """The normalised form of a seed URL, or :class:`InputError` saying what is wrong with it."""
    raw = url.strip()
    if not raw:
        raise InputError("empty URL")
    if any(c.isspace() for c in raw):
        raise InputError(f"invalid URL {raw!r}: contains whitespace")
    try:
        parts = urlsplit(raw)
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise InputError(f"invalid URL {raw!r}: {exc}") from None
    if not parts.scheme:
        raise InputError(f"invalid URL {raw!r}: no scheme", hint=f"did you mean https://{raw}?")
    if parts.scheme.lower() not in ("http", "https"):
        raise InputError(f"unsupported URL scheme {parts.scheme}: in {raw!r}", hint="only http and https are crawled")
    if not parts.hostname:
        raise InputError(f"invalid URL {raw!r}: no host")
    return normalize_url(raw)


def read_url_file(path: Path | str) -> list[str]:
    """URLs from a text file, one per line (blank lines and ``#`` comments ignored).

    Raises:
        InputError: the file is missing, holds no URL, or a line is not an http(s) URL.
    """
    path = Path(path)
    if not path.is_file():
        raise InputError(f"no such URL file: {path}")
    urls = []
    for lineno, line in enumerate(path.read_text(encoding="utf-8", errors="replace").splitlines(), 1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        try:
            urls.append(validate_url(line))
        except InputError as exc:
            raise InputError(f"{path}:{lineno}: {exc.message}", hint=exc.hint) from None
    if not urls:
        raise InputError(f"URL file {path} holds no URLs")
    return urls


# ------------------------------------------------------------------------------------------------
# State (SQLite)
# ------------------------------------------------------------------------------------------------


def _crawl_v1(conn: sqlite3.Connection) -> None:
    conn.execute(
        """CREATE TABLE crawl_jobs (
            id TEXT PRIMARY KEY, key TEXT NOT NULL, status TEXT NOT NULL,
            options TEXT NOT NULL, created_at TEXT NOT NULL, finished_at TEXT)"""
    )
    conn.execute("CREATE INDEX crawl_jobs_key ON crawl_jobs(key, status)")
    conn.execute(
        """CREATE TABLE crawl_urls (
            job TEXT NOT NULL, url TEXT NOT NULL, seq INTEGER NOT NULL, depth INTEGER NOT NULL,
            state TEXT NOT NULL, outcome TEXT, reason TEXT, status INTEGER, final_url TEXT,
            doc_id TEXT, attempts INTEGER NOT NULL DEFAULT 0, updated_at TEXT,
            PRIMARY KEY (job, url))"""
    )
    conn.execute("CREATE INDEX crawl_urls_state ON crawl_urls(job, state, seq)")
    # Validators for conditional re-fetch, per requested URL, across jobs.
    conn.execute(
        """CREATE TABLE crawl_http_cache (
            url TEXT PRIMARY KEY, etag TEXT, last_modified TEXT, doc_id TEXT, fetched_at TEXT)"""
    )
    # One row per HTTP request made (every attempt and redirect hop): the fetch log.
    conn.execute(
        """CREATE TABLE crawl_requests (
            job TEXT NOT NULL, url TEXT NOT NULL, started_at TEXT NOT NULL,
            status INTEGER, elapsed REAL, error TEXT)"""
    )


CRAWL_MIGRATIONS: list[Migration] = [("crawl_v1", _crawl_v1)]


class CrawlState:
    """The frontier and fetch log of crawl jobs in one SQLite file."""

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.conn = connect(self.path, CRAWL_MIGRATIONS)

    def open_job(self, key: str, options: dict[str, Any], resume: bool) -> tuple[str, bool, bool]:
        """``(job_id, resumed, seeded)``: the unfinished job for ``key`` or a new one."""
        with Transaction(self.conn) as c:
            row = c.execute(
                "SELECT id, status FROM crawl_jobs WHERE key=? AND status IN ('seeding','running') "
                "ORDER BY created_at DESC LIMIT 1",
                (key,),
            ).fetchone()
            if row and resume:
                return row["id"], True, row["status"] == "running"
            if row:
                c.execute("UPDATE crawl_jobs SET status='abandoned' WHERE id=?", (row["id"],))
            n = c.execute("SELECT COUNT(*) FROM crawl_jobs WHERE key=?", (key,)).fetchone()[0]
            job_id = f"{key[:12]}-{n + 1}"
            c.execute(
                "INSERT INTO crawl_jobs VALUES (?,?,?,?,?,NULL)",
                (job_id, key, "seeding", json.dumps(options, sort_keys=True), now_iso()),
            )
        return job_id, False, False

    def set_job_status(self, job: str, status: str) -> None:
        with Transaction(self.conn) as c:
            c.execute(
                "UPDATE crawl_jobs SET status=?, finished_at=? WHERE id=?",
                (status, now_iso() if status == "complete" else None, job),
            )

    def count(self, job: str) -> int:
        return int(self.conn.execute("SELECT COUNT(*) FROM crawl_urls WHERE job=?", (job,)).fetchone()[0])

    def add(
        self, c: sqlite3.Connection, job: str, urls: Iterable[tuple[str, int]], budget: int | None
    ) -> list[tuple[str, int]]:
        """Insert new frontier URLs (inside the caller's transaction); returns those added."""
        added = []
        n = int(c.execute("SELECT COUNT(*) FROM crawl_urls WHERE job=?", (job,)).fetchone()[0])
        for url, depth in urls:
            if budget is not None and n >= budget:
                break
            cur = c.execute(
                "INSERT OR IGNORE INTO crawl_urls (job, url, seq, depth, state, updated_at) VALUES (?,?,?,?,?,?)",
                (job, url, n, depth, "queued", now_iso()),
            )
            if cur.rowcount:
                n += 1
                added.append((url, depth))
        return added

    def queued(self, job: str) -> list[tuple[str, int]]:
        rows = self.conn.execute(
            "SELECT url, depth FROM crawl_urls WHERE job=? AND state='queued' ORDER BY seq", (job,)
        ).fetchall()
        return [(r["url"], r["depth"]) for r in rows]

    def is_queued(self, job: str, url: str) -> bool:
        row = self.conn.execute("SELECT state FROM crawl_urls WHERE job=? AND url=?", (job, url)).fetchone()
        return bool(row) and row["state"] == "queued"

    def finish(self, c: sqlite3.Connection, job: str, rec: FetchRecord) -> None:
        c.execute(
            "UPDATE crawl_urls SET state='done', outcome=?, reason=?, status=?, final_url=?, doc_id=?, "
            "attempts=?, updated_at=? WHERE job=? AND url=?",
            (rec.outcome, rec.reason, rec.status, rec.final_url, rec.doc_id, rec.attempts, now_iso(), job, rec.url),
        )

    def records(self, job: str) -> list[FetchRecord]:
        rows = self.conn.execute(
            "SELECT * FROM crawl_urls WHERE job=? AND state='done' ORDER BY seq", (job,)
        ).fetchall()
        return [
            FetchRecord(
                url=r["url"],
                outcome=r["outcome"],
                reason=r["reason"] or "",
                status=r["status"],
                final_url=r["final_url"],
                doc_id=r["doc_id"],
                attempts=r["attempts"],
                depth=r["depth"],
            )
            for r in rows
        ]

    def validators(self, url: str) -> sqlite3.Row | None:
        row: sqlite3.Row | None = self.conn.execute("SELECT * FROM crawl_http_cache WHERE url=?", (url,)).fetchone()
        return row

    def log_request(
        self, job: str, url: str, started: float, status: int | None, elapsed: float, error: str | None
    ) -> None:
        stamp = datetime.fromtimestamp(started, UTC).isoformat(timespec="milliseconds")
        with Transaction(self.conn) as c:
            c.execute("INSERT INTO crawl_requests VALUES (?,?,?,?,?,?)", (job, url, stamp, status, elapsed, error))

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------------------------------------
# Response -> Document
# ------------------------------------------------------------------------------------------------


@dataclass
class PageResult:
    """What one URL of a crawl became: its record, the document (if any), links and HTTP validators."""

    record: FetchRecord
    document: Document | None = None
    links: list[str] = field(default_factory=list)
    etag: str | None = None
    last_modified: str | None = None


async def page_from_response(
    resp: FetchedResponse, *, depth: int = 0, old_doc: Document | None = None, max_bytes: int | None = None
) -> PageResult:
    """Turn a fetched response into a crawl outcome and (for a 200 HTML or text page) a Document.

    ``old_doc`` is the stored document a conditional request was made for (a 304 keeps it);
    ``max_bytes`` is recorded as ``truncated_at`` when the body was cut. HTML goes through
    :func:`~geoaudit.documents.extract_html` (in a thread: it is CPU work).
    """
    url, current, attempts, status = resp.url, resp.final_url, resp.attempts, resp.status

    def record(outcome: str, reason: str, **kw: Any) -> FetchRecord:
        return FetchRecord(
            url, outcome, reason, kw.pop("status", status), current, attempts=attempts, depth=depth, **kw
        )

    if resp.skipped:
        return PageResult(record("skipped", resp.skipped, status=None))
    if resp.error:
        return PageResult(record("failed", resp.error))
    if status == 304 and old_doc is not None:
        return PageResult(
            record("unchanged", "304 not modified", doc_id=old_doc.id), None, list(old_doc.metadata.get("links") or [])
        )
    if status != 200:
        return PageResult(record("failed", f"HTTP {status}"))

    ctype = resp.headers.get("content-type")
    media = media_type(ctype)
    body = resp.body
    if not media:
        head = body[:512].lstrip().lower()
        media = "text/html" if head.startswith((b"<!doctype html", b"<html")) else ""
    if media not in HTML_TYPES + TEXT_TYPES:
        return PageResult(record("skipped", f"content type not extracted: {media or 'unknown'}"))
    if looks_binary(body):
        return PageResult(record("skipped", f"binary body: served as {media} but is not text"))

    fetched_at = now_iso()
    if media in HTML_TYPES:
        doc = await asyncio.to_thread(extract_html, body, current, content_type=ctype, fetched_at=fetched_at)
    else:
        text, charset = decode_html(body, ctype)
        text = text.strip()
        first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
        doc = Document.create(
            url=current,
            text=text,
            title=first[:200],
            fetched_at=fetched_at,
            metadata={"content_type": ctype, "charset": charset, "word_count": len(text.split()), "format": "text"},
        )
    meta = dict(doc.metadata)
    meta["status"] = status
    if current != url:
        meta["requested_url"] = url
    if resp.truncated:
        meta["truncated_at"] = max_bytes if max_bytes is not None else len(body)
    doc = Document(doc.id, doc.url, doc.title, doc.text, meta, doc.fetched_at, doc.content_hash)
    links = list(meta.get("links") or [])
    if not doc.text.strip():
        return PageResult(
            record("skipped", "no main content: page has no extractable text (JavaScript-rendered?)"), None, links
        )
    reason = f"body cut at {meta['truncated_at']} bytes" if resp.truncated else ""
    return PageResult(
        record("fetched", reason, doc_id=doc.id),
        doc,
        links,
        resp.headers.get("etag"),
        resp.headers.get("last-modified"),
    )


# ------------------------------------------------------------------------------------------------
# The scheduler
# ------------------------------------------------------------------------------------------------


@dataclass
class _HostQueue:
    """A host's share of the frontier and the workers taking from it (at most ``per_host``)."""

    queue: asyncio.Queue[tuple[str, int]] = field(default_factory=asyncio.Queue)
    workers: list[asyncio.Task[None]] = field(default_factory=list)


class _Scheduler:
    """Breadth-first frontier over hosts: per-host workers, stored pages, resumable state.

    Politeness, robots.txt and safety are the :class:`~geoaudit.fetch.Fetcher`'s; this class
    decides what to fetch next, turns responses into documents (:func:`page_from_response`) and
    records each outcome with the links it revealed in one transaction.
    """

    def __init__(
        self,
        options: CrawlOptions,
        fetcher: Fetcher,
        state: CrawlState,
        store: DocumentStore,
        job: str,
        seed_hosts: set[str],
        progress: ProgressFn | None,
    ) -> None:
        self.o = options
        self.fetcher = fetcher
        self.state = state
        self.store = store
        self.job = job
        self.seed_hosts = seed_hosts
        self.progress = progress
        self.hosts: dict[str, _HostQueue] = {}
        self.pending = 0
        self.idle = asyncio.Event()
        self.fatal: Exception | None = None
        self.tasks: set[asyncio.Task[None]] = set()
        self.processing = asyncio.Semaphore(2 * options.concurrency)
        self.done = 0
        self.errors = 0
        self.include = [re.compile(p) for p in options.include]
        self.exclude = [re.compile(p) for p in options.exclude]

    # -- frontier --------------------------------------------------------------------------------

    def wanted(self, url: str) -> bool:
        """Whether a discovered (not seed) URL passes --same-domain and --include/--exclude."""
        if self.o.same_domain:
            host = (urlsplit(url).hostname or "").lower()
            if not any(host == h or host.endswith("." + h) for h in self.seed_hosts):
                return False
        if self.include and not any(p.search(url) for p in self.include):
            return False
        return not any(p.search(url) for p in self.exclude)

    def enqueue(self, url: str, depth: int) -> None:
        h = self.hosts.setdefault(host_key(url), _HostQueue())
        self.pending += 1
        self.idle.clear()
        h.queue.put_nowait((url, depth))
        while len(h.workers) < self.o.per_host:
            h.workers.append(asyncio.create_task(self.worker(h)))

    async def run(self, queued: list[tuple[str, int]]) -> None:
        for url, depth in queued:
            self.enqueue(url, depth)
        if self.pending:
            await self.idle.wait()
        everything = [*self.tasks, *(t for h in self.hosts.values() for t in h.workers)]
        for t in everything:
            t.cancel()
        await asyncio.gather(*everything, return_exceptions=True)
        if self.fatal is not None:
            raise self.fatal

    async def worker(self, h: _HostQueue) -> None:
        """Take this host's URLs in order; move on as soon as a page's HTTP part is over.

        Extraction and storing run in a separate task so a host's next request is not delayed
        by the previous page's processing (the politeness slot is the only pacing).
        """
        while True:
            url, depth = await h.queue.get()
            if self.fatal is not None or not self.state.is_queued(self.job, url):  # e.g. done via a redirect
                self._one_finished()
                continue
            await self.processing.acquire()  # bounds bodies held in memory awaiting extraction
            released = asyncio.Event()
            task = asyncio.create_task(self._visit_guarded(url, depth, released))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            waiter = asyncio.create_task(released.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    async def _visit_guarded(self, url: str, depth: int, released: asyncio.Event) -> None:
        try:
            await self.visit(url, depth, released)
        except Exception as exc:  # the store itself failed: stop the crawl, keep what is saved
            self.fatal = exc
            self.idle.set()
        finally:
            released.set()
            self.processing.release()
            self._one_finished()

    def _one_finished(self) -> None:
        self.pending -= 1
        if self.pending == 0:
            self.idle.set()

    # -- one URL ---------------------------------------------------------------------------------

    async def visit(self, url: str, depth: int, released: asyncio.Event) -> None:
        try:
            page = await self.fetch_page(url, depth, released)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except InputError as exc:  # a URL the fetcher cannot use (e.g. an invalid host name)
            page = PageResult(FetchRecord(url, "failed", exc.message, depth=depth))
        except Exception as exc:  # a bug must not stop the crawl; record it like any failure
            page = PageResult(FetchRecord(url, "failed", f"internal error: {type(exc).__name__}: {exc}", depth=depth))
        rec, doc = page.record, page.document
        if doc is not None:
            self.store.put(doc)  # stored before the frontier row is marked done: a kill here refetches, never loses
        new: list[tuple[str, int]] = []
        if self.o.follow_links and page.links:
            for link in page.links:
                try:
                    norm = normalize_url(link)
                except ValueError:
                    continue
                if self.wanted(norm):
                    new.append((norm, depth + 1))
        with Transaction(self.state.conn) as c:
            self.state.finish(c, self.job, rec)
            if rec.final_url and rec.final_url != url and rec.outcome == "fetched":
                # The redirect target is the same page: do not fetch it again under its own URL.
                c.execute(
                    "UPDATE crawl_urls SET state='done', outcome='skipped', reason=?, updated_at=? "
                    "WHERE job=? AND url=? AND state='queued'",
                    (f"duplicate: reached by redirect from {url}", now_iso(), self.job, rec.final_url),
                )
            if doc is not None and (page.etag or page.last_modified):
                c.execute(
                    "INSERT OR REPLACE INTO crawl_http_cache VALUES (?,?,?,?,?)",
                    (url, page.etag, page.last_modified, doc.id, now_iso()),
                )
            added = self.state.add(c, self.job, new, self.o.max_pages) if new else []
        for link, d in added:
            self.enqueue(link, d)
        self.done += 1
        if rec.outcome == "failed":
            self.errors += 1
        if self.progress:
            self.progress(CrawlProgress(self.done, self.pending - 1, self.errors, rec))

    async def fetch_page(self, url: str, depth: int, released: asyncio.Event) -> PageResult:
        cached = self.state.validators(url)
        conditional: dict[str, str] = {}
        old_doc = None
        if cached and cached["doc_id"]:
            old_doc = self.store.get(cached["doc_id"])
            if old_doc is not None:
                if cached["etag"]:
                    conditional["If-None-Match"] = cached["etag"]
                if cached["last_modified"]:
                    conditional["If-Modified-Since"] = cached["last_modified"]
        resp = await self.fetcher.fetch(url, conditional=conditional, text_only=True)
        released.set()  # no more requests for this page: the host may go on
        return await page_from_response(resp, depth=depth, old_doc=old_doc, max_bytes=self.o.max_bytes)


# ------------------------------------------------------------------------------------------------
# Sitemaps
# ------------------------------------------------------------------------------------------------


def parse_sitemap(data: bytes, source: str, *, max_bytes: int = SITEMAP_MAX_BYTES) -> tuple[list[str], list[str]]:
    """``(page_urls, child_sitemaps)`` from a sitemap or sitemap index (gzip allowed).

    A gzip body is decompressed in chunks and given up past ``max_bytes`` (a 300 KB gzip bomb
    once grew to 671 MB in memory).

    Raises:
        InputError: the data is not an XML sitemap, not valid gzip, or larger than ``max_bytes``.
    """
    from lxml import etree

    if data[:2] == b"\x1f\x8b":
        data = gunzip_capped(data, max_bytes, f"sitemap {source}")
    if len(data) > max_bytes:
        raise InputError(f"sitemap {source} is larger than {max_bytes:,} bytes")
    parser = etree.XMLParser(resolve_entities=False, no_network=True, huge_tree=False, recover=False)
    try:
        root = etree.fromstring(data.strip(), parser=parser)
    except etree.XMLSyntaxError as exc:
        raise InputError(f"sitemap {source} is not XML: {exc}") from None
    tag = etree.QName(root).localname.lower()
    if tag not in ("urlset", "sitemapindex"):
        raise InputError(
            f"sitemap {source} is not a sitemap: root element <{tag}>, expected <urlset> or <sitemapindex>"
        )
    locs = [
        (el.text or "").strip() for el in root.iter() if isinstance(el.tag, str) and etree.QName(el).localname == "loc"
    ]
    locs = [u for u in locs if u]
    return (locs, []) if tag == "urlset" else ([], locs)


def gunzip_capped(data: bytes, max_bytes: int, what: str) -> bytes:
    """Decompress gzip ``data`` (several members allowed) without ever holding more than ``max_bytes``.

    Raises:
        InputError: not valid gzip, truncated, or more than ``max_bytes`` once decompressed.
    """
    out = bytearray()
    rest = data
    while rest:
        inflater = zlib.decompressobj(wbits=16 + zlib.MAX_WBITS)
        pending = rest
        try:
            while not inflater.eof:
                # max_length bounds each step, so a bomb is caught within one chunk of the cap.
                out += inflater.decompress(pending, 1 << 16)
                if len(out) > max_bytes:
                    raise InputError(f"{what} is larger than {max_bytes:,} bytes once decompressed")
                pending = inflater.unconsumed_tail
                if not pending and not inflater.eof:
                    out += inflater.flush()
                    if not inflater.eof:
                        raise InputError(f"{what} is not valid gzip: the stream is truncated")
        except zlib.error as exc:
            raise InputError(f"{what} is not valid gzip: {exc}") from None
        rest = inflater.unused_data
        if rest.strip(b"\x00") == b"":  # trailing padding after the last member
            break
    return bytes(out)


async def _expand_sitemaps(fetcher: Fetcher, sitemaps: Sequence[str], warnings: list[str]) -> list[str]:
    urls: list[str] = []
    seen: set[str] = set()

    async def visit(sm: str, level: int, top: bool) -> None:
        if sm in seen or len(urls) >= SITEMAP_MAX_URLS:
            return
        seen.add(sm)
        # A sitemap the user named is read even where robots.txt disallows it (as before).
        resp = await fetcher.fetch(sm, max_bytes=SITEMAP_MAX_BYTES, robots=False)
        if resp.truncated:
            resp.error = f"larger than {SITEMAP_MAX_BYTES:,} bytes"
        if resp.error or resp.status != 200:
            why = resp.error or f"HTTP {resp.status}"
            if top:
                raise InputError(f"cannot fetch sitemap {sm}: {why}")
            warnings.append(f"sitemap {sm} skipped: {why}")
            return
        try:
            pages, children = parse_sitemap(resp.body, sm)
        except InputError as exc:
            if top:
                raise
            warnings.append(f"sitemap {sm} skipped: {exc.message}")
            return
        for page in pages:
            try:
                urls.append(validate_url(page))
            except InputError:
                warnings.append(f"sitemap {sm}: ignored invalid URL {page!r}")
        for child in children:
            if level + 1 > SITEMAP_MAX_DEPTH:
                warnings.append(f"sitemap {child} skipped: nested deeper than {SITEMAP_MAX_DEPTH}")
                continue
            try:
                await visit(validate_url(child), level + 1, False)
            except InputError as exc:
                warnings.append(f"sitemap {child} skipped: {exc.message}")

    for sm in sitemaps:
        await visit(validate_url(sm), 0, True)
    return urls


# ------------------------------------------------------------------------------------------------
# Entry points
# ------------------------------------------------------------------------------------------------


def _job_key(seeds: Sequence[str], o: CrawlOptions) -> str:
    ident = {
        "seeds": list(seeds),
        "sitemaps": list(o.sitemaps),
        "follow": o.follow_links,
        "max_pages": o.max_pages,
        "same_domain": o.same_domain,
        "include": list(o.include),
        "exclude": list(o.exclude),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


async def acrawl(
    seeds: Sequence[str],
    *,
    settings: Settings,
    options: CrawlOptions | None = None,
    client: httpx.AsyncClient | None = None,
    progress: ProgressFn | None = None,
    resolver: Resolver | None = None,
) -> CrawlResult:
    """Crawl ``seeds`` (and ``options.sitemaps``) into the document store; see the module docstring.

    Args:
        seeds: http(s) URLs; validated and normalised.
        settings: ``store_path`` is where documents (and, by default, crawl state) go;
            ``user_agent`` is the default user agent.
        options: politeness, limits and scope.
        client: an ``httpx.AsyncClient`` to use (tests inject transports); it is not closed, and
            connections then go wherever that client sends them (see :class:`~geoaudit.fetch.Fetcher`).
        progress: called after every finished URL.
        resolver: how host names are resolved for the SSRF check and the pinned connection
            (default: the operating system's).

    Raises:
        InputError: no seeds, an invalid seed URL, or a sitemap that cannot be fetched or is not XML.
    """
    o = options or CrawlOptions()
    seeds = list(dict.fromkeys(validate_url(s) for s in seeds))
    if not seeds and not o.sitemaps:
        raise InputError("nothing to crawl: give URLs, a URL file or a sitemap")
    sitemap_urls = [validate_url(s) for s in o.sitemaps]
    warnings: list[str] = []
    if not o.respect_robots:
        warnings.append("robots.txt is IGNORED (--ignore-robots): only crawl sites you own or may crawl this way")
    if o.allow_private:
        warnings.append("private and loopback addresses are allowed (--allow-private)")

    settings.ensure_data_dir()
    store = DocumentStore(settings.store_path)
    state = CrawlState(o.state_path or settings.store_path)
    job = ""

    def log(event: RequestEvent) -> None:
        state.log_request(job, event.url, event.started, event.status, event.elapsed, event.error)

    fetcher = Fetcher(o.fetch_options(settings), client=client, resolver=resolver, on_request=log)
    try:
        key = _job_key(seeds, o)
        ident = {k: v for k, v in asdict(o).items() if k != "state_path"}
        job, resumed, seeded = state.open_job(key, {**ident, "seeds": seeds}, o.resume)
        seed_hosts = {(urlsplit(u).hostname or "").lower().removeprefix("www.") for u in seeds + sitemap_urls}
        crawler = _Scheduler(o, fetcher, state, store, job, seed_hosts, progress)
        if not seeded:
            from_maps = await _expand_sitemaps(fetcher, sitemap_urls, warnings) if sitemap_urls else []
            from_maps = [u for u in from_maps if crawler.wanted(u)]
            if sitemap_urls and not from_maps and not seeds:
                raise InputError("the sitemap lists no URL to crawl (after --same-domain/--include/--exclude)")
            with Transaction(state.conn) as c:
                state.add(c, job, [(u, 0) for u in seeds + from_maps], o.max_pages)
                c.execute("UPDATE crawl_jobs SET status='running' WHERE id=?", (job,))
        await crawler.run(state.queued(job))
        state.set_job_status(job, "complete")
        records = state.records(job)
        docs = []
        for r in records:
            if r.doc_id and r.outcome in ("fetched", "unchanged"):
                d = store.get(r.doc_id)
                if d is not None:
                    docs.append(d)
        docs = list({d.id: d for d in docs}.values())
        return CrawlResult(job, records, docs, resumed=resumed, warnings=warnings)
    finally:
        await fetcher.aclose()
        state.close()
        store.close()


# ------------------------------------------------------------------------------------------------
# URLs and local files together (what `geoaudit crawl URL_OR_PATH...` does)
# ------------------------------------------------------------------------------------------------

_SCHEME_RE = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]{0,31}://")


def split_inputs(items: Sequence[str]) -> tuple[list[str], list[str]]:
    """``(urls, local_paths)``: ``scheme://...`` or ``http:``/``https:`` is a URL (validated later,
    so a wrong scheme gets a clear message); everything else is a local path."""
    urls: list[str] = []
    paths: list[str] = []
    for item in items:
        (urls if _SCHEME_RE.match(item) or item.lower().startswith(("http:", "https:")) else paths).append(item)
    return urls, paths


@dataclass
class IngestResult:
    """Local drafts loaded and pages crawled, all now in the document store."""

    local: list[Document]
    crawled: CrawlResult | None

    @property
    def documents(self) -> list[Document]:
        return self.local + (self.crawled.documents if self.crawled else [])


def ingest(
    inputs: Sequence[str],
    *,
    settings: Settings,
    options: CrawlOptions | None = None,
    url_file: Path | str | None = None,
    progress: ProgressFn | None = None,
) -> IngestResult:
    """Load local drafts and crawl URLs into the document store, as ``geoaudit crawl`` does.

    ``inputs`` mixes http(s) URLs and local ``.html``/``.md``/``.txt``/``.jsonl`` files,
    directories and globs (see :func:`split_inputs`, :func:`~geoaudit.documents.load_inputs`);
    ``url_file`` adds URLs from a file (:func:`read_url_file`), ``options.sitemaps`` adds sitemaps.
    Every input is validated before any request is sent or anything is stored.

    Raises:
        InputError: nothing to do, an invalid URL or URL file, or an unusable local file.
    """
    from geoaudit.documents import load_inputs

    o = options or CrawlOptions()
    urls, paths = split_inputs(list(inputs))
    seeds = [validate_url(u) for u in urls]
    if url_file is not None:
        seeds += read_url_file(url_file)
    if not seeds and not paths and not o.sitemaps:
        raise InputError("nothing to crawl", hint="give URLs, local files, --file urls.txt or --sitemap URL")
    local = load_inputs(paths) if paths else []
    crawled = crawl(seeds, settings=settings, options=o, progress=progress) if seeds or o.sitemaps else None
    if local:
        settings.ensure_data_dir()
        store = DocumentStore(settings.store_path)
        try:
            store.put_many(local)
        finally:
            store.close()
    return IngestResult(local, crawled)


def crawl(
    seeds: Sequence[str],
    *,
    settings: Settings,
    options: CrawlOptions | None = None,
    client: httpx.AsyncClient | None = None,
    progress: ProgressFn | None = None,
    resolver: Resolver | None = None,
) -> CrawlResult:
    """Synchronous :func:`acrawl` (works inside a running event loop too, e.g. Jupyter)."""
    return run_sync(
        acrawl(seeds, settings=settings, options=options, client=client, progress=progress, resolver=resolver)
    )
