"""How ``geoaudit check`` uses the shared fetcher (:class:`geoaudit.fetch.Fetcher`, the one ``crawl`` uses).

Every request of every check goes through that fetcher, so check has crawl's rules: the SSRF check
on every hop with the connection pinned to the checked address (no DNS rebinding), per-host
pacing, robots.txt read once per host (its Crawl-delay honoured), size and redirect caps. This
module only holds what is particular to check:

* **Options.** :func:`fetch_options` maps :class:`~geoaudit.check.model.CheckOptions` onto
  :class:`~geoaudit.fetch.FetchOptions`. No retries: a check reports what one request gets, and
  an AI agent is fetched as exactly once per page (a 429 is a finding, not a reason to insist).
* **Whose robots rules.** geoaudit's own requests obey robots.txt for geoaudit's user agent,
  whatever User-Agent header they send (the browser baseline sends a browser's); a request sent
  as an AI agent must be allowed for geoaudit *and* that agent (the fetcher's ``robots_as``, checked
  on every hop); check's own per-agent evaluation of robots.txt is for the report.
* **What counts as an answer.** Without retries the fetcher still labels a 429 or 5xx an error
  (``error_kind == "http"``); for check that is the server's answer, a status to report
  (:func:`no_answer`).
"""

from __future__ import annotations

from geoaudit.check.model import CheckOptions
from geoaudit.config import Settings
from geoaudit.fetch import FetchedResponse, FetchOptions

#: Sent with every check request, so a browser and each AI agent differ only by User-Agent.
HEADERS = {"Accept-Language": "en"}


def fetch_options(settings: Settings, o: CheckOptions) -> FetchOptions:
    """The fetcher options a check runs with (``settings.user_agent`` is geoaudit's own identity)."""
    return FetchOptions(
        user_agent=settings.user_agent,
        delay=o.delay,
        respect_robots=o.respect_robots,
        allow_private=o.allow_private,
        timeout=o.timeout,
        max_bytes=o.max_bytes,
        max_redirects=o.max_redirects,
        retries=0,
    )


def no_answer(resp: FetchedResponse) -> str | None:
    """Why no HTTP answer came back (refused address, DNS, connection, timeout, redirect trouble,
    robots.txt); None when the server answered, whatever the status."""
    if resp.skipped:
        return resp.skipped
    if resp.error and (resp.error_kind != "http" or resp.status is None):
        return resp.error
    return None


def refused(resp: FetchedResponse) -> bool:
    """The address was refused by the SSRF rule (a private address without ``allow_private``)."""
    return resp.error_kind == "refused"
