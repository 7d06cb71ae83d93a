"""What ``geoaudit check`` produces: findings, per-site and per-page results, the report, options.

Everything here is a frozen dataclass so a caller (the ``audit`` command, a notebook) can keep,
compare and serialise results; :mod:`geoaudit.check.render` turns a :class:`CheckReport` into a
table, JSON, SARIF, JUnit or HTML.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Literal

from geoaudit.errors import InputError

Severity = Literal["error", "warning", "info", "pass"]
#: Most severe first (the order tables and reports use).
SEVERITIES: tuple[Severity, ...] = ("error", "warning", "info", "pass")
_RANK: dict[str, int] = {"pass": 0, "info": 1, "warning": 2, "error": 3}

Role = Literal["training", "search", "user"]
ROLE_LABELS: dict[str, str] = {
    "search": "search/answer crawlers",
    "user": "user-triggered fetchers",
    "training": "training crawlers",
}

#: A real desktop browser's User-Agent: the baseline every AI agent's response is compared with.
BROWSER_USER_AGENT = (
    "Mozilla/5.0 (X11; Linux x86_64) AppleWebKit/537.36 (KHTML, like Gecko) Chrome/131.0.0.0 Safari/537.36"
)


def severity_at_least(severity: str, threshold: str) -> bool:
    """True when ``severity`` is ``threshold`` or worse (error > warning > info > pass)."""
    return _RANK[severity] >= _RANK[threshold]


@dataclass(frozen=True)
class Finding:
    """One observation about a page or site.

    ``id`` is a stable rule id (``<check>.<rule>``, e.g. ``access.search``); ``url`` is the resource
    the finding is about (the page, its robots.txt, its llms.txt); ``evidence`` quotes what was seen
    (a header, a robots.txt line, a status code); ``help`` says what to do about it.
    """

    id: str
    severity: Severity
    title: str
    message: str
    evidence: str = ""
    url: str = ""
    help: str = ""

    @property
    def check(self) -> str:
        """The check that produced it (the id's first part: ``access``, ``llms``, ``schema``, ...)."""
        return self.id.split(".", 1)[0]

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass(frozen=True)
class Skipped:
    """A check that did not run for a target, and why (e.g. offline file, robots.txt disallows)."""

    check: str
    reason: str


@dataclass(frozen=True)
class AgentResult:
    """What one AI agent may and does get for one page.

    ``robots``: ``allowed``/``disallowed`` by the site's robots.txt for this page's path, or
    ``unknown`` (robots.txt could not be read); ``robots_rule`` says which group decided.
    ``fetch``: ``same`` (the page a browser gets), ``blocked`` (an error status or connection failure
    where the browser got the page), ``differs`` (other content or another final URL),
    ``rate-limited`` (429: inconclusive), ``not-fetched`` (see ``note``).
    """

    token: str
    operator: str
    role: str
    robots: str
    robots_rule: str = ""
    fetch: str = "not-fetched"
    status: int | None = None
    note: str = ""


@dataclass(frozen=True)
class PageFacts:
    """What an engine's extractor sees in a page (the extraction ``crawl`` uses)."""

    final_url: str
    status: int | None
    content_type: str
    title: str
    description: str
    canonical: str
    lang: str
    last_modified: str
    last_modified_source: str
    headings: tuple[tuple[int, str], ...]
    words: int
    text_chars: int
    html_chars: int
    #: text_chars / html_chars: how much of the HTML is main text.
    text_share: float
    extractor: str


@dataclass(frozen=True)
class StructuredFacts:
    """Structured data found in a page: items per syntax, schema.org types, OpenGraph properties."""

    items: dict[str, int]
    types: tuple[str, ...]
    opengraph: dict[str, str]
    parse_errors: int = 0


@dataclass(frozen=True)
class PageCheck:
    """Every finding and fact for one target (a URL or a local HTML file).

    ``checked`` is False when the target could not be checked at all (invalid, unreachable, missing
    file, not HTML); its findings then say why.
    """

    target: str
    url: str
    kind: Literal["url", "file"]
    checked: bool
    findings: tuple[Finding, ...] = ()
    site: str = ""
    agents: tuple[AgentResult, ...] = ()
    facts: PageFacts | None = None
    structured: StructuredFacts | None = None
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True)
class SiteCheck:
    """Findings that belong to a site root (``scheme://host[:port]``): robots.txt and llms.txt."""

    origin: str
    robots_url: str
    robots_status: int | None
    #: ``found`` | ``missing`` (4xx: everything allowed) | ``unreachable`` (5xx/error: everything
    #: disallowed, RFC 9309) | ``refused`` (private address, not fetched).
    robots_state: str
    llms_url: str
    llms_status: int | None
    findings: tuple[Finding, ...] = ()
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True)
class CheckReport:
    """The result of :func:`geoaudit.check.check`: sites, pages, and how they were checked."""

    sites: tuple[SiteCheck, ...]
    pages: tuple[PageCheck, ...]
    generated_at: str
    geoaudit_version: str
    #: Where the AI agent list came from (file path, its stated source and date).
    agents_source: str
    #: Where the required-properties table came from.
    schema_source: str
    #: The options that shaped the run (delay, user agents, limits), for the record.
    options: dict[str, Any] = field(default_factory=dict)
    warnings: tuple[str, ...] = ()

    @property
    def findings(self) -> list[Finding]:
        """Every finding: site findings first, then page findings, in target order."""
        return [f for s in self.sites for f in s.findings] + [f for p in self.pages for f in p.findings]

    def counts(self) -> dict[str, int]:
        counts: dict[str, int] = {s: 0 for s in SEVERITIES}
        for f in self.findings:
            counts[f.severity] += 1
        return counts

    def worst(self) -> Severity | None:
        """The most severe severity among the findings (None when there are none)."""
        present = {f.severity for f in self.findings}
        return next((s for s in SEVERITIES if s in present), None)

    def fails(self, fail_on: str) -> bool:
        """True when a finding is at ``fail_on`` (``error`` or ``warning``) or worse."""
        if fail_on not in ("error", "warning"):
            raise InputError(f"fail_on must be 'error' or 'warning', not {fail_on!r}")
        return any(severity_at_least(f.severity, fail_on) for f in self.findings)

    @property
    def nothing_checked(self) -> bool:
        """True when no target could be checked at all (every one invalid, unreachable, missing)."""
        return not any(p.checked for p in self.pages)

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data["format"] = "geoaudit.check/1"
        data["counts"] = self.counts()
        return data


@dataclass(frozen=True)
class CheckOptions:
    """How to check. Defaults are polite enough for someone else's site."""

    #: Allow private, loopback and link-local addresses (a local dev server). Off: refused, like crawl.
    allow_private: bool = False
    #: Honour robots.txt for geoaudit's own requests (settings.user_agent). Each request sent as an AI
    #: agent is also made only when robots.txt allows that agent.
    respect_robots: bool = True
    #: Seconds between the starts of two requests to one host (a larger robots.txt Crawl-delay wins).
    delay: float = 0.5
    #: Seconds for one request, body included.
    timeout: float = 15.0
    #: Bodies are cut at this many bytes.
    max_bytes: int = 5_000_000
    max_redirects: int = 5
    #: Fetch each page once as each AI agent that has a User-Agent string, and compare with a browser.
    fetch_as_agents: bool = True
    #: Only these agent tokens (case-insensitive); empty = every agent in the list.
    agents: tuple[str, ...] = ()
    #: An agent list of your own (TOML, the shipped file's format); None = settings.ai_agents_file,
    #: else the shipped ``geoaudit/data/ai_agents.toml``.
    agents_file: Path | None = None
    #: llms.txt links checked per site (each one request, same politeness rules).
    llms_links: int = 10
    #: Targets checked at once (requests to one host are still one at a time, ``delay`` apart).
    concurrency: int = 4
    browser_user_agent: str = BROWSER_USER_AGENT

    def __post_init__(self) -> None:
        for name in ("delay", "timeout"):
            if not 0 <= getattr(self, name) < math.inf:  # NaN compares false with everything
                raise InputError(f"check option {name} must be a finite number of seconds, not negative")
        for name in ("max_bytes", "concurrency"):
            if getattr(self, name) < 1:
                raise InputError(f"check option {name} must be at least 1")
        if self.llms_links < 0 or self.max_redirects < 0:
            raise InputError("check options llms_links and max_redirects must not be negative")
