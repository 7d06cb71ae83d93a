"""Polite, SSRF-safe HTTP fetching: what ``geoaudit crawl`` uses and any command that fetches pages must use.

Library use (``geoaudit check`` fetches one page as several user agents this way)::

    from geoaudit.fetch import FetchOptions, Fetcher

    async with Fetcher(FetchOptions(user_agent="geoaudit/0.1")) as fetcher:
        page = await fetcher.fetch("https://example.com/pricing")
        as_gptbot = await fetcher.fetch("https://example.com/pricing", user_agent="GPTBot")
        allowed = await fetcher.robots_allows("https://example.com/pricing", "GPTBot")
    page.status, page.final_url, page.headers, page.body, page.redirects, page.error, page.skipped

The public surface is :class:`FetchOptions`, :class:`Fetcher` (``fetch``, ``robots_allows``,
``robots_verdict``, ``robots_txt``, ``aclose``), :class:`FetchedResponse`, :class:`RequestEvent`,
:func:`check_public_host` and :func:`is_public_address`. Every request, each redirect hop and each
robots.txt fetch included, goes through the same rules:

* **No private addresses (SSRF).** The host is resolved once per hop and refused when any address
  it resolves to is not public (:func:`is_public_address`: private, loopback, link-local and cloud
  metadata, CGNAT, reserved, multicast, and IPv6 forms that carry such an IPv4 address). The
  connection then goes to the address that was checked: the URL keeps the hostname, so the Host
  header, TLS SNI and certificate verification are the hostname's, but nothing resolves it again,
  so a DNS answer that changes between check and connect (DNS rebinding) cannot redirect the
  request. ``allow_private`` turns all of this off (a local dev server).
* **robots.txt** (RFC 9309, parsed by protego) for the user agent of each request: fetched once
  per host (``scheme://host:port``) with the fetcher's own user agent, following up to five
  redirects (each hop checked as above) and reading up to :data:`ROBOTS_MAX_BYTES`; 4xx or too
  many redirects = allow all, 5xx or unreachable = disallow all. A Crawl-delay raises the host's
  delay; one above ``max_retry_after`` skips the host's pages instead of stalling.
* **Politeness.** Requests to one host start at least ``delay`` seconds apart; at most
  ``concurrency`` are in flight overall; a 429/503 with Retry-After pauses the whole host.
* **Retries** after 429/5xx and connection errors, ``retries`` times with exponential backoff.
* **Caps.** One deadline (``timeout``) covers headers and body; bodies are cut at ``max_bytes``
  decoded bytes (so a compression bomb is cut too); at most ``max_redirects`` redirects, loops
  detected, http(s) only.
* **Failures are data.** Nothing a server does raises: :class:`FetchedResponse` carries ``error``
  (the request failed: refused address, timeout, HTTP 5xx after retries, redirect trouble) or
  ``skipped`` (robots.txt said no).
"""

from __future__ import annotations

import asyncio
import ipaddress
import math
import socket
import time
from collections.abc import Awaitable, Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal
from urllib.parse import urldefrag, urlsplit, urlunsplit

import httpcore
import httpx

from geoaudit._http import retry_after
from geoaudit.config import DEFAULT_USER_AGENT
from geoaudit.errors import InputError

HTML_TYPES = ("text/html", "application/xhtml+xml")
TEXT_TYPES = ("text/plain",)
RETRY_STATUSES = frozenset({429, 500, 502, 503, 504})
REDIRECT_STATUSES = frozenset({301, 302, 303, 307, 308})
#: robots.txt is read up to this many bytes (RFC 9309 asks for at least 500 KiB = 512,000).
ROBOTS_MAX_BYTES = 512_000
#: Redirects followed for robots.txt (RFC 9309: at least five).
ROBOTS_MAX_REDIRECTS = 5

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
#: ``await resolver(host, port)`` -> the IP addresses (as text) ``host`` resolves to.
Resolver = Callable[[str, int], Awaitable[list[str]]]
ErrorKind = Literal["refused", "network", "http", "redirect"]


# ------------------------------------------------------------------------------------------------
# Which addresses are public
# ------------------------------------------------------------------------------------------------

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


def is_public_address(ip: IPAddress) -> bool:
    """Whether a fetch may connect to ``ip`` without ``allow_private``.

    ``is_global`` (IANA special-purpose registries) excludes private, loopback, link-local
    (including 169.254.169.254, the cloud metadata address), CGNAT, documentation, reserved and
    unspecified ranges; multicast is excluded too. IPv6 forms that carry an IPv4 address
    (IPv4-mapped ``::ffff:0:0/96``, IPv4-compatible ``::/96``, IPv4-translated
    ``::ffff:0:0:0/96``, NAT64 ``64:ff9b::/96``, 6to4 ``2002::/16``) are judged by that IPv4 address,
    since the packet ends up there; local-use NAT64 ``64:ff9b:1::/48`` and Teredo ``2001::/32``
    (either end can be anything) are refused outright.
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


async def system_resolver(host: str, port: int) -> list[str]:
    """The addresses the operating system resolves ``host`` to (what a plain connection would use)."""
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(host, port, type=socket.SOCK_STREAM)
    return [str(info[4][0]) for info in infos]


async def _checked_address(
    host: str, port: int, resolver: Resolver, allowed: Callable[[IPAddress], bool]
) -> tuple[str | None, str | None]:
    """``(address to connect to, None)`` when every address of ``host`` is allowed, else ``(None, why)``."""
    host = host.strip("[]")
    try:
        literal: IPAddress | None = ipaddress.ip_address(host)
    except ValueError:
        literal = None
    if literal is not None:
        ips = [literal]
    else:
        try:
            raw = await resolver(host, port)
            ips = [ipaddress.ip_address(a.split("%", 1)[0]) for a in raw]
        except (OSError, UnicodeError, ValueError) as exc:  # socket.gaierror is an OSError
            return None, f"dns: cannot resolve {host} ({exc})"
        if not ips:
            return None, f"dns: cannot resolve {host} (no address)"
    for ip in ips:
        if not allowed(ip):
            return None, f"refused private address: {host} resolves to {ip} (use --allow-private to allow)"
    return str(ips[0]), None


async def check_public_host(
    host: str, port: int, *, resolver: Resolver | None = None, allowed: Callable[[IPAddress], bool] = is_public_address
) -> str | None:
    """None when every address ``host`` resolves to is public; otherwise why it is refused."""
    _, why = await _checked_address(host, port, resolver or system_resolver, allowed)
    return why


# ------------------------------------------------------------------------------------------------
# A transport that connects to the checked address
# ------------------------------------------------------------------------------------------------


class _PinnedBackend(httpcore.AsyncNetworkBackend):
    """Opens TCP connections to the address the SSRF check approved for ``(host, port)``, never
    to a fresh DNS answer; a host nobody checked is not connected to at all."""

    def __init__(self, pins: Mapping[tuple[str, int], str]) -> None:
        self._pins = pins
        self._inner = httpcore.AnyIOBackend()

    async def connect_tcp(
        self,
        host: str,
        port: int,
        timeout: float | None = None,
        local_address: str | None = None,
        socket_options: Iterable[Any] | None = None,
    ) -> httpcore.AsyncNetworkStream:
        address = self._pins.get((host.strip("[]").lower(), port))
        if address is None:
            raise httpcore.ConnectError(f"{host}:{port} has no checked address to connect to")
        return await self._inner.connect_tcp(
            address, port, timeout=timeout, local_address=local_address, socket_options=socket_options
        )

    async def connect_unix_socket(
        self, path: str, timeout: float | None = None, socket_options: Iterable[Any] | None = None
    ) -> httpcore.AsyncNetworkStream:
        raise httpcore.ConnectError("unix sockets are not fetched")

    async def sleep(self, seconds: float) -> None:
        await self._inner.sleep(seconds)


class _PinnedTransport(httpx.AsyncHTTPTransport):
    """httpx's transport with its connection pool built on :class:`_PinnedBackend`.

    httpx has no public hook for httpcore's ``network_backend``, so the pool it builds is replaced
    (``_pool`` is what ``handle_async_request`` uses; ``tests/test_crawl.py`` pins that it works).
    """

    def __init__(self, pins: Mapping[tuple[str, int], str], *, limits: httpx.Limits) -> None:
        super().__init__(trust_env=False, limits=limits)
        self._pool = httpcore.AsyncConnectionPool(
            ssl_context=httpx.create_ssl_context(trust_env=False),
            max_connections=limits.max_connections,
            max_keepalive_connections=limits.max_keepalive_connections,
            keepalive_expiry=limits.keepalive_expiry,
            network_backend=_PinnedBackend(pins),
        )


# ------------------------------------------------------------------------------------------------
# Options, responses
# ------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class FetchOptions:
    """How to fetch. Defaults are polite enough for someone else's site."""

    #: Sent with every request and used for robots.txt rules unless a request names another.
    user_agent: str = DEFAULT_USER_AGENT
    #: Seconds between the starts of two requests to the same host.
    delay: float = 1.0
    #: Requests in flight overall.
    concurrency: int = 16
    respect_robots: bool = True
    allow_private: bool = False
    #: Seconds for one request, body included (a slow-drip body is cut off at this deadline).
    timeout: float = 20.0
    #: Bodies are cut at this many (decoded) bytes, and the cut recorded.
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    #: Retries after the first attempt on 429/5xx and connection errors.
    retries: int = 3
    backoff: float = 0.5
    #: A Retry-After (or robots.txt Crawl-delay) longer than this fails instead of stalling.
    max_retry_after: float = 120.0

    def __post_init__(self) -> None:
        for name in ("delay", "timeout", "backoff", "max_retry_after"):
            value = getattr(self, name)
            if not 0 <= value < math.inf:  # NaN compares false with everything
                raise InputError(f"fetch option {name} must be a finite number of seconds, not negative, got {value}")
        for name in ("concurrency", "max_bytes"):
            if getattr(self, name) < 1:
                raise InputError(f"fetch option {name} must be at least 1")
        if self.max_redirects < 0 or self.retries < 0:
            raise InputError("fetch options max_redirects and retries must not be negative")
        if not self.user_agent.strip():
            raise InputError("the user agent must not be empty")


@dataclass
class FetchedResponse:
    """What one :meth:`Fetcher.fetch` got: the last response of its redirect chain, or why none."""

    url: str
    final_url: str
    status: int | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: bytes = b""
    #: The body was cut at ``max_bytes``.
    truncated: bool = False
    #: Why the fetch failed (None when a final response arrived, whatever its status).
    error: str | None = None
    #: ``refused`` (a private address), ``network`` (DNS, connection, timeout), ``http`` (429/5xx
    #: after retries, Retry-After too long) or ``redirect`` (loop, too many, bad Location).
    error_kind: ErrorKind | None = None
    #: Why it was not attempted: robots.txt disallows it (or could not be read and so disallows all).
    skipped: str | None = None
    #: URLs that answered with a redirect, in order (``url`` first); ``final_url`` is not in it.
    redirects: list[str] = field(default_factory=list)
    #: HTTP requests made for this fetch (retries and redirect hops; robots.txt not counted).
    attempts: int = 0
    user_agent: str = ""

    @property
    def ok(self) -> bool:
        return self.error is None and self.skipped is None and self.status == 200

    @property
    def media_type(self) -> str:
        return media_type(self.headers.get("content-type"))


@dataclass(frozen=True)
class RequestEvent:
    """One HTTP request made (every attempt and hop), for a fetch log."""

    url: str
    started: float  # time.time()
    status: int | None
    elapsed: float
    error: str | None


def media_type(content_type: str | None) -> str:
    return (content_type or "").split(";", 1)[0].strip().lower()


def host_key(url: str) -> str:
    """The politeness unit: ``host[:port]`` (different ports on one machine are different sites)."""
    return urlsplit(url).netloc.rsplit("@", 1)[-1].lower()


# ------------------------------------------------------------------------------------------------
# Per-host state: pacing and robots.txt
# ------------------------------------------------------------------------------------------------


@dataclass
class _Robots:
    #: The fetch of robots.txt the rules come from (callers that report on the file read it).
    response: FetchedResponse
    parser: Any = None  # protego.Protego
    #: Why every URL of the host is disallowed (robots.txt unreachable, or refused), else None.
    note: str | None = None


@dataclass
class _Host:
    key: str
    delay: float
    next_start: float = 0.0
    last_sent: float = -1e9
    lock: asyncio.Lock = field(default_factory=asyncio.Lock)
    robots: _Robots | None = None
    robots_task: asyncio.Future[_Robots] | None = None

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


# ------------------------------------------------------------------------------------------------
# The fetcher
# ------------------------------------------------------------------------------------------------


class Fetcher:
    """Fetches URLs under the rules of the module docstring; share one per job (it holds per-host state).

    Args:
        options: politeness, limits and safety (see :class:`FetchOptions`).
        client: an ``httpx.AsyncClient`` to send requests with (tests inject mock transports); it
            is not closed, and connection pinning is then the caller's business. By default the
            fetcher builds a client whose connections go to the checked addresses.
        resolver: how host names are resolved (default :func:`system_resolver`); the one lookup
            per hop the SSRF check and the connection share.
        address_allowed: the SSRF rule (default :func:`is_public_address`); tests use it to play a
            "public" site on 127.0.0.2.
        on_request: called after every HTTP request with a :class:`RequestEvent` (a fetch log).
    """

    def __init__(
        self,
        options: FetchOptions | None = None,
        *,
        client: httpx.AsyncClient | None = None,
        resolver: Resolver | None = None,
        address_allowed: Callable[[IPAddress], bool] = is_public_address,
        on_request: Callable[[RequestEvent], None] | None = None,
    ) -> None:
        self.options = options or FetchOptions()
        self._resolver = resolver or system_resolver
        self._allowed = address_allowed
        self._on_request = on_request
        self._hosts: dict[str, _Host] = {}
        self._slots = asyncio.Semaphore(self.options.concurrency)
        self._pins: dict[tuple[str, int], str] = {}
        self._own_client = client is None
        if client is None:
            limits = httpx.Limits(
                max_connections=self.options.concurrency, max_keepalive_connections=self.options.concurrency
            )
            client = httpx.AsyncClient(
                transport=None if self.options.allow_private else _PinnedTransport(self._pins, limits=limits),
                limits=limits,
                follow_redirects=False,
                trust_env=False,  # never route a fetch through an environment proxy by surprise
                timeout=httpx.Timeout(self.options.timeout),
            )
        self._client = client

    async def __aenter__(self) -> Fetcher:
        return self

    async def __aexit__(self, *_: object) -> None:
        await self.aclose()

    async def aclose(self) -> None:
        """Close the HTTP client the fetcher built (an injected one is left open)."""
        if self._own_client:
            await self._client.aclose()

    # -- public API --------------------------------------------------------------------------------

    async def fetch(
        self,
        url: str,
        *,
        user_agent: str | None = None,
        headers: Mapping[str, str] | None = None,
        conditional: Mapping[str, str] | None = None,
        text_only: bool = False,
        max_bytes: int | None = None,
        robots: bool = True,
        robots_as: Sequence[str] | None = None,
        retries: int | None = None,
        max_redirects: int | None = None,
    ) -> FetchedResponse:
        """GET ``url``, following redirects, under every rule of the module docstring.

        Args:
            user_agent: sent as User-Agent and used for robots.txt (default: ``options.user_agent``).
            headers: extra request headers for every hop.
            conditional: headers for the first request only (``If-None-Match``,
                ``If-Modified-Since``: a redirect target is another resource).
            text_only: download bodies only when served as HTML or plain text (else status and
                headers only).
            max_bytes: body cap for this fetch (default ``options.max_bytes``).
            robots: False fetches even what robots.txt disallows (robots.txt itself; a sitemap
                the user named).
            robots_as: the user agents robots.txt must allow, every one of them, on every hop
                (default: ``user_agent`` alone). ``geoaudit check`` sends a browser's User-Agent
                under geoaudit's own rules, and an AI agent's under both geoaudit's and that agent's.
            retries, max_redirects: per-fetch overrides of the options.

        Raises:
            InputError: ``url`` is not an absolute http(s) URL.
        """
        ua = user_agent or self.options.user_agent
        _check_url(url)
        limit = self.options.max_redirects if max_redirects is None else max_redirects
        out = FetchedResponse(url=url, final_url=url, user_agent=ua)
        current, seen = url, {url}
        while True:
            out.final_url = current
            refused = await self._check(current)
            if refused:  # a private address, or a name that does not resolve
                out.error, out.error_kind = refused, "refused" if refused.startswith("refused") else "network"
                return out
            if robots and self.options.respect_robots:
                for agent in robots_as or (ua,):
                    verdict = await self.robots_verdict(current, agent)
                    if verdict:
                        out.skipped = verdict if robots_as is None else f"{verdict} (as {agent})"
                        return out
            hop_headers = {**(headers or {}), **((conditional or {}) if current == url else {})}
            resp, attempts = await self._request_with_retries(
                current,
                hop_headers,
                ua=ua,
                max_bytes=max_bytes or self.options.max_bytes,
                text_only=text_only,
                retries=self.options.retries if retries is None else retries,
            )
            out.attempts += attempts
            out.status, out.headers, out.body, out.truncated = resp.status, resp.headers, resp.body, resp.truncated
            if resp.error:
                out.error, out.error_kind = resp.error, resp.error_kind
                return out
            status = resp.status or 0
            location = resp.headers.get("location")
            if status not in REDIRECT_STATUSES or not location:
                return out
            try:
                nxt = normalize_url(str(httpx.URL(current).join(location)))
            except (httpx.InvalidURL, ValueError):
                out.error, out.error_kind = "redirect: invalid Location header", "redirect"
                return out
            out.redirects.append(current)
            if urlsplit(nxt).scheme not in ("http", "https"):
                out.error, out.error_kind = f"redirect: unsupported scheme in {nxt}", "redirect"
                return out
            if nxt in seen:
                out.error, out.error_kind = f"redirect loop: back to {nxt}", "redirect"
                return out
            if len(out.redirects) > limit:
                out.error, out.error_kind = f"too many redirects: more than {limit}", "redirect"
                return out
            seen.add(nxt)
            current = nxt

    async def robots_allows(self, url: str, user_agent: str | None = None) -> bool:
        """Whether robots.txt lets ``user_agent`` (default: the fetcher's) fetch ``url``."""
        return await self.robots_verdict(url, user_agent) is None

    async def robots_txt(self, url: str) -> FetchedResponse:
        """The fetch of ``url``'s host's robots.txt that every fetch of the host obeys (one per
        host, made on first need), for callers that report on the file itself (``geoaudit check``)."""
        return (await self._robots(self._host(url), url)).response

    async def robots_verdict(self, url: str, user_agent: str | None = None) -> str | None:
        """Why robots.txt forbids ``url`` to ``user_agent`` (None when allowed); reads robots.txt once per host."""
        ua = user_agent or self.options.user_agent
        h = self._host(url)
        rules = await self._robots(h, url)
        if rules.note:
            return rules.note
        if rules.parser is None:
            return None
        if not rules.parser.can_fetch(url, ua):
            return "robots.txt disallows"
        delay = rules.parser.crawl_delay(ua)
        if delay is not None:
            delay = float(delay)
            if math.isfinite(delay) and delay > self.options.max_retry_after:
                return f"robots.txt Crawl-delay {delay:g}s exceeds the {self.options.max_retry_after:g}s cap"
            if math.isfinite(delay) and delay > h.delay:
                h.delay = delay
        return None

    # -- internals ---------------------------------------------------------------------------------

    def _host(self, url: str) -> _Host:
        key = host_key(url)
        h = self._hosts.get(key)
        if h is None:
            h = self._hosts[key] = _Host(key=key, delay=self.options.delay)
        return h

    async def _check(self, url: str) -> str | None:
        """The one DNS lookup of a hop: None when the address is allowed (and pinned for the
        connection), else why it is refused."""
        if self.options.allow_private:
            return None
        parsed = httpx.URL(url)
        host = parsed.raw_host.decode("ascii").lower()
        port = parsed.port or (443 if parsed.scheme == "https" else 80)
        address, why = await _checked_address(host, port, self._resolver, self._allowed)
        if address is not None:
            self._pins[(host, port)] = address
        return why

    async def _robots(self, h: _Host, url: str) -> _Robots:
        if h.robots is not None:
            return h.robots
        if h.robots_task is None:  # one load per host even when several fetches ask at once
            h.robots_task = asyncio.ensure_future(self._load_robots(url))
        h.robots = await asyncio.shield(h.robots_task)
        return h.robots

    async def _load_robots(self, url: str) -> _Robots:
        from protego import Protego

        from geoaudit.documents import decode_html

        parts = urlsplit(url)
        robots_url = urlunsplit((parts.scheme, parts.netloc, "/robots.txt", "", ""))
        resp = await self.fetch(
            robots_url, robots=False, max_bytes=ROBOTS_MAX_BYTES, retries=1, max_redirects=ROBOTS_MAX_REDIRECTS
        )
        status = resp.status or 0
        if resp.error_kind == "refused":
            return _Robots(resp, note=resp.error)
        if resp.error_kind == "redirect":  # RFC 9309 2.3.1.2: too many redirects = unavailable = allow all
            return _Robots(resp)
        if resp.error or status >= 500:
            return _Robots(
                resp,
                note=f"robots.txt unreachable: {resp.error or 'HTTP ' + str(status)} (RFC 9309: treated as disallow all)",
            )
        if status != 200:  # 4xx: no robots.txt, everything is allowed
            return _Robots(resp)
        text, _ = decode_html(resp.body, resp.headers.get("content-type"))
        try:
            return _Robots(resp, parser=Protego.parse(text))
        except Exception:  # a parser bug on hostile input must not stop the crawl; treat as no rules
            return _Robots(resp)

    async def _request_with_retries(
        self, url: str, headers: dict[str, str], *, ua: str, max_bytes: int, text_only: bool, retries: int
    ) -> tuple[_Response, int]:
        """One GET with retries on 429/5xx/connection errors; returns the response and attempts made."""
        h = self._host(url)
        attempt = 0
        while True:
            attempt += 1
            await h.wait_turn()
            async with self._slots:
                await h.mark_sent()
                started, t0 = time.time(), time.monotonic()
                resp = await self._request_once(url, headers, ua, max_bytes, text_only)
                if self._on_request is not None:
                    self._on_request(RequestEvent(url, started, resp.status, time.monotonic() - t0, resp.error))
            retryable = resp.status in RETRY_STATUSES or (
                resp.error_kind == "network" and (resp.error or "").startswith("connection")
            )
            if not retryable or attempt > retries:
                if retryable and resp.status is not None:
                    resp.error, resp.error_kind = f"HTTP {resp.status} after {attempt} attempts", "http"
                return resp, attempt
            wait = self.options.backoff * (2 ** (attempt - 1))
            after = retry_after(resp.headers.get("retry-after")) if resp.status in (429, 503) else None
            if after is not None:
                if after > self.options.max_retry_after:
                    resp.error = f"HTTP {resp.status}: Retry-After {after:.0f}s exceeds the {self.options.max_retry_after:.0f}s cap"
                    resp.error_kind = "http"
                    return resp, attempt
                wait = max(wait, after)
            h.pause(wait)  # the whole host backs off, not just this URL

    async def _request_once(
        self, url: str, headers: dict[str, str], ua: str, max_bytes: int, text_only: bool
    ) -> _Response:
        hdrs = {"User-Agent": ua, "Accept": "text/html,application/xhtml+xml,text/plain;q=0.9,*/*;q=0.5", **headers}
        try:
            # One deadline for headers and body: a server dripping bytes cannot hold a slot forever.
            async with asyncio.timeout(self.options.timeout):
                async with self._client.stream("GET", url, headers=hdrs, follow_redirects=False) as r:
                    resp = _Response(r.status_code, r.headers)
                    if r.status_code != 200:
                        return resp
                    media = media_type(r.headers.get("content-type"))
                    if text_only and media and media not in HTML_TYPES + TEXT_TYPES:
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
            return _Response(
                None,
                httpx.Headers(),
                error=f"timeout: no complete response within {self.options.timeout:g}s",
                error_kind="network",
            )
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            return _Response(
                None, httpx.Headers(), error=f"connection error: {type(exc).__name__}: {exc}", error_kind="network"
            )
        except httpx.DecodingError as exc:
            return _Response(None, httpx.Headers(), error=f"bad content encoding: {exc}", error_kind="network")
        except httpx.HTTPError as exc:
            return _Response(
                None, httpx.Headers(), error=f"http error: {type(exc).__name__}: {exc}", error_kind="network"
            )


@dataclass
class _Response:
    status: int | None
    headers: httpx.Headers
    body: bytes = b""
    truncated: bool = False
    error: str | None = None
    error_kind: ErrorKind | None = None


def _check_url(url: str) -> None:
    try:
        parts = urlsplit(url)
        httpx.URL(url).raw_host.decode("ascii")
    except (httpx.InvalidURL, ValueError, UnicodeError) as exc:
        raise InputError(f"cannot fetch {url!r}: {exc}") from None
    if parts.scheme not in ("http", "https") or not parts.hostname:
        raise InputError(f"cannot fetch {url!r}: only absolute http(s) URLs are fetched")


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


__all__ = [
    "HTML_TYPES",
    "ROBOTS_MAX_BYTES",
    "FetchOptions",
    "FetchedResponse",
    "Fetcher",
    "IPAddress",
    "RequestEvent",
    "Resolver",
    "check_public_host",
    "host_key",
    "is_public_address",
    "media_type",
    "normalize_url",
    "system_resolver",
]
