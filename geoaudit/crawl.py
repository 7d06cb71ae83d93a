"""Polite, resumable crawling of web pages into :class:`~geoaudit.documents.Document` records.

Library use (a notebook can call this directly)::

    from geoaudit.config import load_settings
    from geoaudit.crawl import CrawlOptions, crawl

    result = crawl(["https://example.com/"], settings=load_settings(),
                   options=CrawlOptions(max_pages=50, same_domain=True, follow_links=True))
    result.counts, result.documents

How it behaves:

* **Politeness.** Requests to one host (``host:port``) start at least ``delay`` seconds apart (or the
  robots.txt ``Crawl-delay`` when larger), at most ``per_host`` in flight; at most ``concurrency``
  requests in flight overall. Waiting for a host's turn never holds a global slot, so slow or
  polite hosts do not starve the others.
* **robots.txt** is honoured for the configured user agent (RFC 9309: a 4xx robots.txt allows all,
  an unreachable or 5xx one disallows all). ``respect_robots=False`` adds a warning to the result.
* **Safety.** Before every request, including each redirect hop, the host is resolved and refused
  when any address is not globally routable (private, loopback, link-local, cloud metadata, ...)
  unless ``allow_private``. (The check happens before connecting, so a DNS answer that changes in
  between is not caught; run behind an egress firewall for hostile targets.)
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
import ipaddress
import json
import re
import socket
import sqlite3
import time
import zlib
import urllib.robotparser
from collections import Counter
from collections.abc import Callable, Iterable, Sequence
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path
from typing import Any
from urllib.parse import urldefrag, urlsplit, urlunsplit

import httpx

from geoaudit._async import run_sync
from geoaudit._http import retry_after
from geoaudit.config import Settings
from geoaudit.documents import Document, decode_html, extract_html, looks_binary, now_iso
from geoaudit.errors import InputError
from geoaudit.store import DocumentStore, Migration, Transaction, connect

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain",)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
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
    #: A Retry-After longer than this fails the page instead of stalling the crawl.
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


def normalize_url(url: str) -> str:
    """Lower-case scheme and host, drop the default port and the fragment, ``/`` for an empty path."""
    url = urldefrag(url.strip())[0]
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    host = (parts.hostname or "").lower()
    if ":" in host:  # IPv6 literal
        host = f"[{host}]"
    port = parts.port
    netloc = host if port is None or (scheme, port) in (("http", 80), ("https", 443)) else f"{host}:{port}"
    if parts.username:
        netloc = f"{parts.username}{':' + parts.password if parts.password else ''}@{netloc}"
    return urlunsplit((scheme, netloc, parts.path or "/", parts.query, ""))


def host_key(url: str) -> str:
    """The politeness unit: ``host[:port]`` (different ports on one machine are different sites)."""
    parts = urlsplit(url)
    return parts.netloc.rsplit("@", 1)[-1].lower()


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


_NAT64 = ipaddress.IPv6Network("64:ff9b::/96")  # RFC 6052 well-known prefix: last 32 bits are IPv4
_NAT64_LOCAL = ipaddress.IPv6Network("64:ff9b:1::/48")  # RFC 8215 local-use NAT64: never public
_IPV4_COMPAT = ipaddress.IPv6Network("::/96")  # deprecated IPv4-compatible form (RFC 4291 2.5.5.1)
_IPV4_TRANSLATED = ipaddress.IPv6Network("::ffff:0:0:0/96")  # SIIT IPv4-translated (RFC 2765)


def _embedded_ipv4(ip: ipaddress.IPv6Address) -> ipaddress.IPv4Address | None:
    """The IPv4 address an IPv6 address stands for, for the forms a host reaches via IPv4."""
    if ip.ipv4_mapped is not None:  # ::ffff:a.b.c.d
        return ip.ipv4_mapped
    if ip.sixtofour is not None:  # 2002:AABB:CCDD::/48
        return ip.sixtofour
    if ip in _NAT64 or ip in _IPV4_COMPAT or ip in _IPV4_TRANSLATED:
        return ipaddress.IPv4Address(int(ip) & 0xFFFFFFFF)
    return None


def is_public_address(ip: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    """Whether a crawl may connect to ``ip`` without ``allow_private``.

    ``is_global`` (IANA special-purpose registries) excludes private, loopback, link-local
    (including 169.254.169.254, the cloud metadata address), CGNAT, documentation, reserved and
    unspecified ranges; multicast is excluded too. IPv6 forms that carry an IPv4 address
    (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible ``::/96``, IPv4-translated
    ``::ffff:0:0:0/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by that IPv4 address, since the packet ends up there; local-use NAT64
    ``64:ff9b:1::/48`` and Teredo ``2001::/32`` (either end can be anything) are refused outright.
    """
    if isinstance(ip, ipaddress.IPv6Address):
        if ip in _NAT64_LOCAL or ip.teredo is not None:
            return False
        v4 = _embedded_ipv4(ip)
        if v4 is not None:
            if int(ip) <= 1:  # "::" and "::1" are themselves, not IPv4-compatible addresses
                return False
            ip = v4
    return ip.is_global and not ip.is_multicast


async def check_public_host(host: str, port: int) -> str | None:
    """None when every address ``host`` resolves to is public; otherwise why it is refused."""
    host = host.strip("[]")
    try:
        infos = [ipaddress.ip_address(host)]
    except ValueError:
        try:
            loop = asyncio.get_running_loop()
            resolved = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
        except (socket.gaierror, UnicodeError, OSError) as exc:
            return f"dns: cannot resolve {host} ({exc})"
        infos = [ipaddress.ip_address(info[4][0].split("%", 1)[0]) for info in resolved]
    for ip in infos:
        if not is_public_address(ip):
            return f"refused private address: {host} resolves to {ip} (use --allow-private to allow)"
    return None


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

    def add(self, c: sqlite3.Connection, job: str, urls: Iterable[tuple[str, int]], budget: int | None) -> list[tuple[str, int]]:
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
                url=r["url"], outcome=r["outcome"], reason=r["reason"] or "", status=r["status"],
                final_url=r["final_url"], doc_id=r["doc_id"], attempts=r["attempts"], depth=r["depth"],
            )
            for r in rows
        ]

    def validators(self, url: str) -> sqlite3.Row | None:
        return self.conn.execute("SELECT * FROM crawl_http_cache WHERE url=?", (url,)).fetchone()

    def log_request(self, job: str, url: str, started: float, status: int | None, elapsed: float, error: str | None) -> None:
        stamp = datetime.fromtimestamp(started, timezone.utc).isoformat(timespec="milliseconds")
        with Transaction(self.conn) as c:
            c.execute("INSERT INTO crawl_requests VALUES (?,?,?,?,?,?)", (job, url, stamp, status, elapsed, error))

    def close(self) -> None:
        self.conn.close()


# ------------------------------------------------------------------------------------------------
# Fetching
# ------------------------------------------------------------------------------------------------


@dataclass
class _Host:
    key: str
    delay: float
    next_start: float = 0.0
    last_sent: float = -1e9
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    queue: asyncio.Queue[tuple[str, int]] = field(default_factory=asyncio.Queue)
    robots: urllib.robotparser.RobotFileParser | None = None
    robots_note: str | None = None
    robots_loaded: bool = False
    workers: list[asyncio.Task[None]] = field(default_factory=list)

    async def wait_turn(self) -> None:
        """Reserve the next start slot of this host and sleep until it (slots are ``delay`` apart)."""
        async with self.lock:
            now = time.monotonic()
            start = max(now, self.next_start)
            self.next_start = start + self.delay
        if start > now:
            await asyncio.sleep(start - now)

    async def mark_sent(self) -> None:
        """Right before a request goes out: keep actual sends ``delay`` apart, not just their slots.

        A slot can be taken late (busy event loop, a full global pool) and the next one on time;
        this closes that gap so the server never sees two requests closer than ``delay``.
        """
        while True:
            gap = self.last_sent + self.delay - time.monotonic()
            if gap <= 0:
                break
            await asyncio.sleep(gap)
        self.last_sent = time.monotonic()
        self.next_start = max(self.next_start, self.last_sent + self.delay)

    def pause(self, seconds: float) -> None:
        self.next_start = max(self.next_start, time.monotonic() + seconds)


@dataclass
class _Response:
    status: int | None
    headers: httpx.Headers
    body: bytes = b""
    truncated: bool = False
    error: str | None = None
    url: str = ""


def _media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


class _Crawler:
    def __init__(
        self,
        settings: Settings,
        options: CrawlOptions,
        client: httpx.AsyncClient,
        state: CrawlState,
        store: DocumentStore,
        job: str,
        seed_hosts: set[str],
        progress: ProgressFn | None,
    ) -> None:
        self.settings = settings
        self.o = options
        self.ua = options.user_agent or settings.user_agent
        self.client = client
        self.state = state
        self.store = store
        self.job = job
        self.seed_hosts = seed_hosts
        self.progress = progress
        self.hosts: dict[str, _Host] = {}
        self.global_sem = asyncio.Semaphore(options.concurrency)
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

    def host(self, url: str) -> _Host:
        key = host_key(url)
        h = self.hosts.get(key)
        if h is None:
            h = self.hosts[key] = _Host(key=key, delay=self.o.delay)
        return h

    def enqueue(self, url: str, depth: int) -> None:
        h = self.host(url)
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

    async def worker(self, h: _Host) -> None:
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
            task = asyncio.create_task(self._visit_guarded(h, url, depth, released))
            self.tasks.add(task)
            task.add_done_callback(self.tasks.discard)
            waiter = asyncio.create_task(released.wait())
            try:
                await asyncio.wait({task, waiter}, return_when=asyncio.FIRST_COMPLETED)
            finally:
                waiter.cancel()

    async def _visit_guarded(self, h: _Host, url: str, depth: int, released: asyncio.Event) -> None:
        try:
            await self.visit(h, url, depth, released)
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

    async def visit(self, h: _Host, url: str, depth: int, released: asyncio.Event) -> None:
        links: list[str] = []
        doc: Document | None = None
        validators: tuple[str | None, str | None] = (None, None)
        try:
            rec, doc, links, validators = await self.fetch_page(h, url, depth, released)
        except (asyncio.CancelledError, KeyboardInterrupt):
            raise
        except Exception as exc:  # a bug must not stop the crawl; record it like any failure
            rec = FetchRecord(url, "failed", f"internal error: {type(exc).__name__}: {exc}", depth=depth)
        if doc is not None:
            self.store.put(doc)  # stored before the frontier row is marked done: a kill here refetches, never loses
        new: list[tuple[str, int]] = []
        if self.o.follow_links and links:
            cand = []
            for link in links:
                try:
                    norm = normalize_url(link)
                except ValueError:
                    continue
                if self.wanted(norm):
                    cand.append((norm, depth + 1))
            new = cand
        with Transaction(self.state.conn) as c:
            self.state.finish(c, self.job, rec)
            if rec.final_url and rec.final_url != url and rec.outcome == "fetched":
                # The redirect target is the same page: do not fetch it again under its own URL.
                c.execute(
                    "UPDATE crawl_urls SET state='done', outcome='skipped', reason=?, updated_at=? "
                    "WHERE job=? AND url=? AND state='queued'",
                    (f"duplicate: reached by redirect from {url}", now_iso(), self.job, rec.final_url),
                )
            if doc is not None and (validators[0] or validators[1]):
                c.execute(
                    "INSERT OR REPLACE INTO crawl_http_cache VALUES (?,?,?,?,?)",
                    (url, validators[0], validators[1], doc.id, now_iso()),
                )
            added = self.state.add(c, self.job, new, self.o.max_pages) if new else []
        for link, d in added:
            self.enqueue(link, d)
        self.done += 1
        if rec.outcome == "failed":
            self.errors += 1
        if self.progress:
            self.progress(CrawlProgress(self.done, self.pending - 1, self.errors, rec))

    async def fetch_page(
        self, h: _Host, url: str, depth: int, released: asyncio.Event
    ) -> tuple[FetchRecord, Document | None, list[str], tuple[str | None, str | None]]:
        cached = self.state.validators(url)
        cond: dict[str, str] = {}
        old_doc = None
        if cached and cached["doc_id"]:
            old_doc = self.store.get(cached["doc_id"])
            if old_doc is not None:
                if cached["etag"]:
                    cond["If-None-Match"] = cached["etag"]
                if cached["last_modified"]:
                    cond["If-Modified-Since"] = cached["last_modified"]

        current, hops, seen = url, 0, {url}
        attempts = 0
        while True:
            hop_host = h if host_key(current) == h.key else self.host(current)
            if not self.o.allow_private:
                parts = urlsplit(current)
                refused = await check_public_host(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
                if refused:
                    return FetchRecord(url, "failed", refused, None, current, attempts=attempts, depth=depth), None, [], (None, None)
            if self.o.respect_robots:
                blocked = await self.robots_block(hop_host, current)
                if blocked:
                    return FetchRecord(url, "skipped", blocked, final_url=current, attempts=attempts, depth=depth), None, [], (None, None)
            resp, used = await self.request_with_retries(hop_host, current, cond if current == url else {})
            attempts += used
            if resp.error:
                return FetchRecord(url, "failed", resp.error, resp.status, current, attempts=attempts, depth=depth), None, [], (None, None)
            status = resp.status or 0
            if status in REDIRECT_STATUSES and resp.headers.get("location"):
                hops += 1
                try:
                    nxt = normalize_url(httpx.URL(current).join(resp.headers["location"]).__str__())
                except (httpx.InvalidURL, ValueError):
                    return FetchRecord(url, "failed", "redirect: invalid Location header", status, current, attempts=attempts, depth=depth), None, [], (None, None)
                if urlsplit(nxt).scheme not in ("http", "https"):
                    return FetchRecord(url, "failed", f"redirect: unsupported scheme in {nxt}", status, current, attempts=attempts, depth=depth), None, [], (None, None)
                if nxt in seen:
                    return FetchRecord(url, "failed", f"redirect loop: back to {nxt}", status, current, attempts=attempts, depth=depth), None, [], (None, None)
                if hops > self.o.max_redirects:
                    return FetchRecord(url, "failed", f"too many redirects: more than {self.o.max_redirects}", status, current, attempts=attempts, depth=depth), None, [], (None, None)
                seen.add(nxt)
                current = nxt
                continue
            break
        released.set()  # no more requests for this page: the host may go on

        if status == 304 and old_doc is not None:
            return (
                FetchRecord(url, "unchanged", "304 not modified", 304, current, old_doc.id, attempts, depth),
                None,
                list(old_doc.metadata.get("links") or []),
                (None, None),
            )
        if status != 200:
            return FetchRecord(url, "failed", f"HTTP {status}", status, current, attempts=attempts, depth=depth), None, [], (None, None)

        ctype = resp.headers.get("content-type")
        media = _media_type(ctype)
        body = resp.body
        if not media:
            head = body[:512].lstrip().lower()
            media = "text/html" if head.startswith((b"<!doctype html", b"<html")) else ""
        if media not in HTML_TYPES + TEXT_TYPES:
            return FetchRecord(url, "skipped", f"content type not extracted: {media or 'unknown'}", status, current, attempts=attempts, depth=depth), None, [], (None, None)
        if looks_binary(body):
            return FetchRecord(url, "skipped", f"binary body: served as {media} but is not text", status, current, attempts=attempts, depth=depth), None, [], (None, None)

        fetched_at = now_iso()
        if media in HTML_TYPES:
            doc = await asyncio.to_thread(extract_html, body, current, content_type=ctype, fetched_at=fetched_at)
        else:
            text, charset = decode_html(body, ctype)
            text = text.strip()
            first = next((ln.strip() for ln in text.splitlines() if ln.strip()), "")
            doc = Document.create(
                url=current, text=text, title=first[:200], fetched_at=fetched_at,
                metadata={"content_type": ctype, "charset": charset, "word_count": len(text.split()), "format": "text"},
            )
        meta = dict(doc.metadata)
        meta["status"] = status
        if current != url:
            meta["requested_url"] = url
        if resp.truncated:
            meta["truncated_at"] = self.o.max_bytes
        doc = Document(doc.id, doc.url, doc.title, doc.text, meta, doc.fetched_at, doc.content_hash)
        links = list(meta.get("links") or [])
        if not doc.text.strip():
            return FetchRecord(url, "skipped", "no main content: page has no extractable text (JavaScript-rendered?)", status, current, attempts=attempts, depth=depth), None, links, (None, None)
        reason = f"body cut at {self.o.max_bytes} bytes" if resp.truncated else ""
        validators = (resp.headers.get("etag"), resp.headers.get("last-modified"))
        return FetchRecord(url, "fetched", reason, status, current, doc.id, attempts, depth), doc, links, validators

    async def robots_block(self, h: _Host, url: str) -> str | None:
        """Why robots.txt forbids ``url`` (None when allowed); loads the host's robots.txt once."""
        if not h.robots_loaded:
            await self._load_robots(h, url)
        if h.robots_note:
            return h.robots_note
        if h.robots is not None and not h.robots.can_fetch(self.ua, url):
            return "robots.txt disallows"
        return None

    async def _load_robots(self, h: _Host, url: str) -> None:
        # One load per host even when several workers ask at once.
        loader = getattr(h, "_robots_task", None)
        if loader is None:
            loader = asyncio.ensure_future(self._fetch_robots(h, url))
            h._robots_task = loader  # type: ignore[attr-defined]
        await asyncio.shield(loader)

    async def _fetch_robots(self, h: _Host, url: str) -> None:
        parts = urlsplit(url)
        robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
        resp, _ = await self.request_with_retries(h, robots_url, {}, retries=1, max_bytes=500_000, any_type=True)
        parser = urllib.robotparser.RobotFileParser(robots_url)
        status = resp.status or 0
        if resp.error and resp.error.startswith("refused private"):
            h.robots_note = resp.error
        elif resp.error or status >= 500:
            h.robots_note = f"robots.txt unreachable: {resp.error or 'HTTP ' + str(status)} (RFC 9309: treated as disallow all)"
        elif status in REDIRECT_STATUSES or status >= 400:
            parser.allow_all = True  # RFC 9309: a missing robots.txt allows everything
        else:
            text, _ = decode_html(resp.body, resp.headers.get("content-type"))
            parser.parse(text.splitlines())
            delay = parser.crawl_delay(self.ua)
            if delay:
                h.delay = max(h.delay, float(delay))
        h.robots = parser
        h.robots_loaded = True

    async def request_with_retries(
        self,
        h: _Host,
        url: str,
        headers: dict[str, str],
        *,
        retries: int | None = None,
        max_bytes: int | None = None,
        any_type: bool = False,
    ) -> tuple[_Response, int]:
        """One GET with retries on 429/5xx/connection errors; returns the response and attempts made."""
        retries = self.o.retries if retries is None else retries
        attempt = 0
        while True:
            attempt += 1
            if not self.o.allow_private:
                parts = urlsplit(url)
                refused = await check_public_host(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
                if refused:
                    return _Response(None, httpx.Headers(), error=refused, url=url), attempt
            await h.wait_turn()
            async with self.global_sem:
                await h.mark_sent()
                started = time.time()
                t0 = time.monotonic()
                resp = await self.request_once(url, headers, max_bytes or self.o.max_bytes, any_type)
                self.state.log_request(self.job, url, started, resp.status, time.monotonic() - t0, resp.error)
            retryable = resp.status in RETRY_STATUSES or (resp.error or "").startswith("connection")
            if not retryable or attempt > retries:
                if retryable and resp.status is not None:
                    resp.error = f"HTTP {resp.status} after {attempt} attempts"
                return resp, attempt
            wait = self.o.backoff * (2 ** (attempt - 1))
            after = retry_after(resp.headers.get("retry-after")) if resp.status in (429, 503) else None
            if after is not None:
                if after > self.o.max_retry_after:
                    resp.error = f"HTTP {resp.status}: Retry-After {after:.0f}s exceeds the {self.o.max_retry_after:.0f}s cap"
                    return resp, attempt
                wait = max(wait, after)
            h.pause(wait)  # the whole host backs off, not just this URL

    async def request_once(self, url: str, headers: dict[str, str], max_bytes: int, any_type: bool) -> _Response:
        hdrs = {"User-Agent": self.ua, "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5", **headers}
        try:
            # One deadline for headers and body: a server dripping bytes cannot hold a slot forever.
            async with asyncio.timeout(self.o.timeout):
                async with self.client.stream("GET", url, headers=hdrs, follow_redirects=False) as r:
                    resp = _Response(r.status_code, r.headers, url=url)
                    if r.status_code != 200:
                        return resp
                    media = _media_type(r.headers.get("content-type"))
                    if not any_type and media and media not in HTML_TYPES + TEXT_TYPES:
                        return resp  # will be skipped by type: do not download the body
                    chunks: list[bytes] = []
                    size = 0
                    # Decoded bytes are counted, so a compression bomb is cut like any big body.
                    async for chunk in r.aiter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > max_bytes:
                            resp.truncated = True
                            break
                    resp.body = b"".join(chunks)[:max_bytes]
                    return resp
        except (TimeoutError, httpx.TimeoutException):
            return _Response(None, httpx.Headers(), error=f"timeout: no complete response within {self.o.timeout:g}s", url=url)
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            return _Response(None, httpx.Headers(), error=f"connection error: {type(exc).__name__}: {exc}", url=url)
        except httpx.DecodingError as exc:
            return _Response(None, httpx.Headers(), error=f"bad content encoding: {exc}", url=url)
        except httpx.HTTPError as exc:
            return _Response(None, httpx.Headers(), error=f"http error: {type(exc).__name__}: {exc}", url=url)


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
        raise InputError(f"sitemap {source} is not a sitemap: root element <{tag}>, expected <urlset> or <sitemapindex>")
    locs = [(el.text or "").strip() for el in root.iter() if isinstance(el.tag, str) and etree.QName(el).localname == "loc"]
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


async def _expand_sitemaps(crawler: _Crawler, sitemaps: Sequence[str], warnings: list[str]) -> list[str]:
    urls: list[str] = []
    seen: set[str] = set()

    async def visit(sm: str, level: int, top: bool) -> None:
        if sm in seen or len(urls) >= SITEMAP_MAX_URLS:
            return
        seen.add(sm)
        h = crawler.host(sm)
        resp, _ = await crawler.request_with_retries(h, sm, {}, max_bytes=50_000_000, any_type=True)
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
        "seeds": list(seeds), "sitemaps": list(o.sitemaps), "follow": o.follow_links, "max_pages": o.max_pages,
        "same_domain": o.same_domain, "include": list(o.include), "exclude": list(o.exclude),
    }
    return hashlib.sha256(json.dumps(ident, sort_keys=True).encode()).hexdigest()


async def acrawl(
    seeds: Sequence[str],
    *,
    settings: Settings,
    options: CrawlOptions | None = None,
    client: httpx.AsyncClient | None = None,
    progress: ProgressFn | None = None,
) -> CrawlResult:
    """Crawl ``seeds`` (and ``options.sitemaps``) into the document store; see the module docstring.

    Args:
        seeds: http(s) URLs; validated and normalised.
        settings: ``store_path`` is where documents (and, by default, crawl state) go;
            ``user_agent`` is the default user agent.
        options: politeness, limits and scope.
        client: an ``httpx.AsyncClient`` to use (tests inject transports); it is not closed.
        progress: called after every finished URL.

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
    own_client = client is None
    if client is None:
        client = httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # never route a crawl through an environment proxy by surprise
            limits=httpx.Limits(max_connections=o.concurrency, max_keepalive_connections=o.concurrency),
            timeout=httpx.Timeout(o.timeout),
        )
    try:
        key = _job_key(seeds, o)
        ident = {k: v for k, v in asdict(o).items() if k != "state_path"}
        job, resumed, seeded = state.open_job(key, {**ident, "seeds": seeds}, o.resume)
        seed_hosts = {(urlsplit(u).hostname or "").lower().removeprefix("www.") for u in seeds + sitemap_urls}
        crawler = _Crawler(settings, o, client, state, store, job, seed_hosts, progress)
        if not seeded:
            from_maps = await _expand_sitemaps(crawler, sitemap_urls, warnings) if sitemap_urls else []
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
        if own_client:
            await client.aclose()
        state.close()
        store.close()


def crawl(
    seeds: Sequence[str],
    *,
    settings: Settings,
    options: CrawlOptions | None = None,
    client: httpx.AsyncClient | None = None,
    progress: ProgressFn | None = None,
) -> CrawlResult:
    """Synchronous :func:`acrawl` (works inside a running event loop too, e.g. Jupyter)."""
    return run_sync(acrawl(seeds, settings=settings, options=options, client=client, progress=progress))
