"""The one place ``geoaudit check`` touches the network.

Every request of every check goes through :meth:`Fetcher.fetch`, so swapping in crawl's public
fetcher (DNS pinning, shared robots cache) later is a change to this file only. It keeps crawl's
rules, built on crawl's public helpers:

* **SSRF guard.** Before every request, including each redirect hop, the host is resolved and
  refused when an address is not globally routable, unless ``allow_private``
  (:func:`geoaudit.crawl.check_public_host`). Redirects to non-http(s) URLs are refused.
* **Politeness.** One request in flight per host (:func:`geoaudit.crawl.host_key`), starts at least
  ``delay`` seconds apart (raised per host by :meth:`Fetcher.slow_down` for a robots.txt Crawl-delay).
* **Bounded.** One deadline per request for headers and body; bodies cut at ``max_bytes``.
* **Failures are data.** A failed request is a :class:`Response` with ``error`` set; nothing raises.

robots.txt is evaluated by the callers (they know which user agent a request stands for).
"""

from __future__ import annotations

import asyncio
import time
from dataclasses import dataclass, field
from urllib.parse import urljoin, urlsplit

import httpx

from geoaudit.crawl import check_public_host, host_key

REDIRECTS = frozenset({301, 302, 303, 307, 308})


@dataclass
class Response:
    """One fetch, after redirects: the final status, headers and (possibly cut) body, or an error."""

    url: str
    final_url: str
    user_agent: str
    status: int | None = None
    headers: httpx.Headers = field(default_factory=httpx.Headers)
    body: bytes = b""
    error: str | None = None
    truncated: bool = False
    redirects: tuple[str, ...] = ()

    @property
    def media_type(self) -> str:
        return (self.headers.get("content-type") or "").split(";", 1)[0].strip().lower()

    @property
    def refused(self) -> bool:
        return (self.error or "").startswith("refused private")


class _Pace:
    def __init__(self, delay: float) -> None:
        self.lock = asyncio.Lock()
        self.delay = delay
        self.next_at = 0.0


class Fetcher:
    """HTTP GETs with SSRF checks, redirects and per-host pacing (see the module docstring)."""

    def __init__(
        self,
        *,
        allow_private: bool,
        delay: float,
        timeout: float,
        max_bytes: int,
        max_redirects: int,
        client: httpx.AsyncClient | None = None,
    ) -> None:
        self.allow_private = allow_private
        self.delay = delay
        self.timeout = timeout
        self.max_bytes = max_bytes
        self.max_redirects = max_redirects
        self._own_client = client is None
        self.client = client or httpx.AsyncClient(
            follow_redirects=False,
            trust_env=False,  # never through an environment proxy by surprise (as crawl)
            timeout=httpx.Timeout(timeout),
        )
        self._paces: dict[str, _Pace] = {}
        #: Every request sent: (url, user agent, status or None); for the record and for tests.
        self.log: list[tuple[str, str, int | None]] = []

    async def aclose(self) -> None:
        if self._own_client:
            await self.client.aclose()

    def slow_down(self, url: str, delay: float) -> None:
        """Space requests to ``url``'s host at least ``delay`` seconds apart (robots.txt Crawl-delay)."""
        pace = self._pace(url)
        pace.delay = max(pace.delay, delay)

    def _pace(self, url: str) -> _Pace:
        key = host_key(url)
        if key not in self._paces:
            self._paces[key] = _Pace(self.delay)
        return self._paces[key]

    async def fetch(self, url: str, user_agent: str, *, max_bytes: int | None = None, accept: str | None = None) -> Response:
        """GET ``url`` as ``user_agent``, following up to ``max_redirects`` redirects (each hop checked)."""
        limit = max_bytes or self.max_bytes
        headers = {
            "User-Agent": user_agent,
            "Accept": accept or "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            "Accept-Language": "en",
        }
        current = url
        hops: list[str] = []
        while True:
            resp = await self._once(url, current, user_agent, headers, limit)
            resp.redirects = tuple(hops)
            if resp.error or resp.status not in REDIRECTS:
                return resp
            location = resp.headers.get("location")
            if not location:
                return resp
            nxt = urljoin(current, location.strip())
            if urlsplit(nxt).scheme not in ("http", "https"):
                resp.error = f"redirect to a non-http URL refused: {nxt}"
                return resp
            if len(hops) >= self.max_redirects:
                resp.error = f"more than {self.max_redirects} redirects"
                return resp
            hops.append(current)
            if nxt in hops:
                resp.error = f"redirect loop: back to {nxt}"
                return resp
            current = nxt

    async def _once(self, url: str, current: str, user_agent: str, headers: dict[str, str], limit: int) -> Response:
        parts = urlsplit(current)
        if not self.allow_private:
            refused = await check_public_host(parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80))
            if refused:
                return Response(url, current, user_agent, error=refused)
        pace = self._pace(current)
        async with pace.lock:
            wait = pace.next_at - time.monotonic()
            if wait > 0:
                await asyncio.sleep(wait)
            try:
                resp = await self._request(url, current, user_agent, headers, limit)
            finally:
                pace.next_at = time.monotonic() + pace.delay
        self.log.append((current, user_agent, resp.status))
        return resp

    async def _request(self, url: str, current: str, user_agent: str, headers: dict[str, str], limit: int) -> Response:
        try:
            async with asyncio.timeout(self.timeout):
                async with self.client.stream("GET", current, headers=headers) as r:
                    resp = Response(url, current, user_agent, status=r.status_code, headers=r.headers)
                    if r.status_code in REDIRECTS:
                        return resp
                    chunks: list[bytes] = []
                    size = 0
                    # Decoded bytes are counted, so a compression bomb is cut like any big body.
                    async for chunk in r.aiter_bytes():
                        chunks.append(chunk)
                        size += len(chunk)
                        if size > limit:
                            resp.truncated = True
                            break
                    resp.body = b"".join(chunks)[:limit]
                    return resp
        except (TimeoutError, httpx.TimeoutException):
            return Response(url, current, user_agent, error=f"timeout: no complete response within {self.timeout:g}s")
        except (httpx.ConnectError, httpx.RemoteProtocolError, httpx.ReadError, httpx.WriteError) as exc:
            return Response(url, current, user_agent, error=f"connection error: {type(exc).__name__}: {exc}")
        except httpx.DecodingError as exc:
            return Response(url, current, user_agent, error=f"bad content encoding: {exc}")
        except httpx.HTTPError as exc:
            return Response(url, current, user_agent, error=f"http error: {type(exc).__name__}: {exc}")
