"""Running the checks over targets: URLs (online, per site and per page) and local HTML files."""

from __future__ import annotations

import asyncio
import re
from collections.abc import Callable, Sequence
from dataclasses import asdict, replace
from pathlib import Path
from urllib.parse import urlsplit, urlunsplit

import httpx

from geoaudit._async import run_sync
from geoaudit.check._fetch import HEADERS, fetch_options, no_answer, refused
from geoaudit.check.agents import AgentList, load_agents
from geoaudit.check.llms_txt import parse_llms_txt
from geoaudit.check.model import (
    ROLE_LABELS,
    AgentResult,
    CheckOptions,
    CheckReport,
    Finding,
    PageCheck,
    PageFacts,
    SiteCheck,
    Skipped,
    StructuredFacts,
)
from geoaudit.check.page import check_extractability
from geoaudit.check.robots import (
    RobotsTxt,
    access_findings,
    directive_findings,
    evaluate_agents,
    robots_directives,
    site_robots_findings,
)
from geoaudit.check.rules import finding
from geoaudit.check.structured import PropertyTable, check_structured, load_property_table
from geoaudit.config import Settings
from geoaudit.crawl import validate_url
from geoaudit.documents import HTML_SUFFIXES, decode_html, extract_html, looks_binary, now_iso
from geoaudit.errors import InputError
from geoaudit.fetch import (
    HTML_TYPES,
    ROBOTS_MAX_BYTES,
    FetchedResponse,
    Fetcher,
    IPAddress,
    RequestEvent,
    Resolver,
    host_key,
    is_public_address,
)
from geoaudit.tokens import words

ProgressFn = Callable[[int, int, str], None]
_SCHEME = re.compile(r"^[A-Za-z][A-Za-z0-9+.-]*:")
#: Two pages whose main texts share fewer words than this (Jaccard) are "different content".
SAME_CONTENT = 0.8

#: Checks that need the network, and so are skipped for a local file.
_OFFLINE_SKIPS = (
    Skipped("access", "a local file has no robots.txt: AI crawler access is checked for URLs only"),
    Skipped("fetch", "a local file cannot be fetched as AI agents"),
    Skipped("llms", "llms.txt lives at a site root: checked for URLs only"),
    Skipped("directives", "X-Robots-Tag is an HTTP header: only robots meta tags were read"),
    Skipped("extract.date", "no HTTP Last-Modified for a file: dates come from the page's metadata only"),
)


def _is_user_agent_line(line: str) -> bool:
    """A robots.txt ``User-agent:`` line (case-insensitive, blanks allowed around the colon)."""
    head, sep, _ = line.partition(":")
    return bool(sep) and head.strip().lower() == "user-agent"


def _is_url(target: str) -> bool:
    return bool(_SCHEME.match(target)) and not re.match(r"^[A-Za-z]:[\\/]", target)  # C:\ is a path


def _origin(url: str) -> str:
    parts = urlsplit(url)
    return urlunsplit((parts.scheme, parts.netloc, "", "", ""))


class _Runner:
    def __init__(
        self, settings: Settings, options: CheckOptions, agents: AgentList, table: PropertyTable, fetcher: Fetcher
    ) -> None:
        self.s = settings
        self.o = options
        self.agents = agents
        self.table = table
        self.fetcher = fetcher
        self.ua = settings.user_agent
        self._robots: dict[str, asyncio.Task[RobotsTxt]] = {}
        self.sites: dict[str, asyncio.Task[SiteCheck]] = {}
        self._below_root: dict[str, asyncio.Task[Finding | None]] = {}
        self._in_flight: dict[str, asyncio.Lock] = {}
        self.warnings: list[str] = []

    # -- site level ---------------------------------------------------------------------------

    def robots(self, origin: str) -> asyncio.Task[RobotsTxt]:
        if origin not in self._robots:
            self._robots[origin] = asyncio.ensure_future(self._load_robots(origin))
        return self._robots[origin]

    async def _load_robots(self, origin: str) -> RobotsTxt:
        # The very file the fetcher obeys (fetched once per host), read again for the report.
        resp = await self.fetcher.robots_txt(origin + "/")
        robots = RobotsTxt.from_response(origin + "/robots.txt", resp)
        delay = robots.crawl_delay(self.ua) if self.o.respect_robots else None
        cap = self.fetcher.options.max_retry_after
        if delay and delay > cap:
            self.warnings.append(
                f"{origin}: robots.txt Crawl-delay {delay:g}s exceeds the {cap:g}s cap: its pages are not fetched"
            )
        elif delay and delay > self.o.delay:  # the fetcher spaces the host's requests by it
            self.warnings.append(
                f"{origin}: robots.txt Crawl-delay {delay:g}s honoured (requests to this host are {delay:g}s apart)"
            )
        return robots

    async def get(
        self,
        url: str,
        *,
        user_agent: str | None = None,
        agent: str | None = None,
        max_bytes: int | None = None,
        text_only: bool = False,
    ) -> FetchedResponse:
        """One request through the shared fetcher: sent as ``user_agent`` (default geoaudit's), allowed
        only where robots.txt allows geoaudit and, when given, the AI ``agent`` it poses as.

        The fetcher spaces a host's request starts ``delay`` apart; check also keeps its promise of
        one request in flight per host (the fetch as every agent would otherwise overlap on a slow site)."""
        async with self._in_flight.setdefault(host_key(url), asyncio.Lock()):
            return await self.fetcher.fetch(
                url,
                user_agent=user_agent,
                headers=HEADERS,
                max_bytes=max_bytes,
                text_only=text_only,
                robots_as=(self.ua,) if agent is None else (self.ua, agent),
            )

    def may_fetch(self, robots: RobotsTxt, url: str, token: str | None = None) -> bool:
        """geoaudit's own rule: a request is sent only when robots.txt allows geoaudit (and the agent it poses as)."""
        if not self.o.respect_robots:
            return True
        tokens = [self.ua] + ([token] if token else [])
        return all(robots.allows(url, t) is not False for t in tokens)

    def site(self, origin: str) -> asyncio.Task[SiteCheck]:
        if origin not in self.sites:
            self.sites[origin] = asyncio.ensure_future(self._check_site(origin))
        return self.sites[origin]

    async def _check_site(self, origin: str) -> SiteCheck:
        robots = await self.robots(origin)
        llms_url = origin + "/llms.txt"
        if robots.state == "refused":
            skipped = (Skipped("robots", robots.error), Skipped("llms", robots.error))
            return SiteCheck(origin, robots.url, None, robots.state, llms_url, None, (), skipped)
        findings = site_robots_findings(robots)
        if robots.state == "unreachable" and robots.status is None:
            return SiteCheck(
                origin,
                robots.url,
                None,
                robots.state,
                llms_url,
                None,
                tuple(findings),
                (Skipped("llms", "the host does not answer"),),
            )
        if not self.may_fetch(robots, llms_url):
            return SiteCheck(
                origin,
                robots.url,
                robots.status,
                robots.state,
                llms_url,
                None,
                tuple(findings),
                (Skipped("llms", f"robots.txt disallows {self.ua} from /llms.txt"),),
            )
        resp = await self.get(llms_url, max_bytes=1_000_000)
        if resp.skipped:
            return SiteCheck(
                origin,
                robots.url,
                robots.status,
                robots.state,
                llms_url,
                None,
                tuple(findings),
                (Skipped("llms", f"not fetched: {resp.skipped}"),),
            )
        findings += await self._llms_findings(llms_url, resp)
        return SiteCheck(origin, robots.url, robots.status, robots.state, llms_url, resp.status, tuple(findings))

    async def _llms_findings(self, url: str, resp: FetchedResponse) -> list[Finding]:
        failed = no_answer(resp)
        if failed or (resp.status or 0) >= 500:
            return [
                finding(
                    "llms.unreachable",
                    "warning",
                    f"{url} could not be read: {failed or f'HTTP {resp.status}'}.",
                    url=url,
                )
            ]
        if resp.status != 200:
            return [finding("llms.missing", "info", f"{url} answers HTTP {resp.status}: no llms.txt.", url=url)]
        text, _ = decode_html(resp.body, resp.headers.get("content-type"))
        head = text.lstrip()[:300].lower()
        if resp.media_type in HTML_TYPES or head.startswith(("<!doctype", "<html")):
            return [
                finding(
                    "llms.not-markdown",
                    "warning",
                    f"{url} answers 200 with HTML ({resp.media_type or 'no content type'}), not markdown.",
                    evidence=text.lstrip()[:120],
                    url=url,
                )
            ]
        parsed = parse_llms_txt(text, url)
        out: list[Finding] = []
        if not parsed.has_title:
            out.append(
                finding(
                    "llms.no-title",
                    "error",
                    "llms.txt must start with an H1 title ('# Name').",
                    evidence=next((ln.strip() for ln in text.splitlines() if ln.strip()), "(empty file)")[:120],
                    url=url,
                )
            )
        format_problems = [(n, msg) for n, msg in parsed.problems if not msg.startswith("the first line")]
        if format_problems:
            out.append(
                finding(
                    "llms.format",
                    "warning",
                    f"{len(format_problems)} line(s) do not follow the llms.txt format.",
                    evidence="; ".join((f"line {n}: " if n else "") + msg for n, msg in format_problems[:5]),
                    url=url,
                )
            )
        if parsed.has_title and not parsed.summary:
            out.append(finding("llms.no-summary", "info", "No '> summary' blockquote after the title.", url=url))
        links = list(dict.fromkeys(parsed.links))
        checked, broken, unchecked = await self._check_links(links[: self.o.llms_links])
        if broken:
            out.append(
                finding(
                    "llms.broken-links",
                    "warning",
                    f"{len(broken)} of {checked} checked llms.txt links do not resolve (of {len(links)} links; at most {self.o.llms_links} checked).",
                    evidence="; ".join(broken[:8]),
                    url=url,
                )
            )
        if not any(f.severity in ("error", "warning") for f in out):
            note = f"; {len(unchecked)} not checked ({'; '.join(unchecked[:3])})" if unchecked else ""
            out.append(
                finding(
                    "llms.valid",
                    "pass",
                    f"llms.txt '{parsed.title}': {len(parsed.sections)} section(s), {len(links)} link(s); "
                    f"{checked} checked, all resolve{note}.",
                    url=url,
                )
            )
        return out

    async def _check_links(self, links: list[str]) -> tuple[int, list[str], list[str]]:
        async def one(link: str) -> tuple[str, str]:
            try:
                resp = await self.get(link, max_bytes=65_536, text_only=True)
            except InputError as exc:  # not a URL the fetcher can fetch
                return "broken", f"{link}: {exc}"
            if resp.skipped:
                return "unchecked", f"{link}: {resp.skipped}"
            if refused(resp):
                return "unchecked", f"{link}: {resp.error}"
            failed = no_answer(resp)
            if failed or (resp.status or 0) >= 400:
                return "broken", f"{link}: {failed or f'HTTP {resp.status}'}"
            return "ok", link

        results = await asyncio.gather(*(one(link) for link in links))
        broken = [why for state, why in results if state == "broken"]
        unchecked = [why for state, why in results if state == "unchecked"]
        return len(results) - len(unchecked), broken, unchecked

    def below_root(self, robots_url: str) -> asyncio.Task[Finding | None]:
        if robots_url not in self._below_root:
            self._below_root[robots_url] = asyncio.ensure_future(self._probe_below_root(robots_url))
        return self._below_root[robots_url]

    async def _probe_below_root(self, robots_url: str) -> Finding | None:
        resp = await self.get(robots_url, max_bytes=ROBOTS_MAX_BYTES)
        if resp.status != 200 or resp.media_type in HTML_TYPES:
            return None
        text, _ = decode_html(resp.body, resp.headers.get("content-type"))
        if not any(_is_user_agent_line(line) for line in text.splitlines()):
            return None
        root = _origin(robots_url) + "/robots.txt"
        return finding(
            "robots.below-root",
            "warning",
            f"{robots_url} holds robots.txt rules, but {root} does not exist: crawlers read only the root file, so these rules count for nothing.",
            evidence=next((ln.strip() for ln in text.splitlines() if ln.strip()), "")[:120],
            url=robots_url,
        )

    # -- page level ---------------------------------------------------------------------------

    async def check_target(self, target: str | Path) -> PageCheck:
        if isinstance(target, Path) or not _is_url(str(target)):
            return check_file(target, agents=self.agents, table=self.table)
        raw = str(target)
        try:
            url = validate_url(raw)
        except InputError as exc:
            return PageCheck(raw, raw, "url", False, (finding("target.invalid", "error", str(exc), url=raw),))
        return await self.check_url(raw, url)

    async def check_url(self, target: str, url: str) -> PageCheck:
        origin = _origin(url)
        self.site(origin)  # site checks (robots.txt, llms.txt) run alongside
        robots = await self.robots(origin)
        base = PageCheck(target, url, "url", False, site=origin)
        if robots.state == "refused":
            return replace(base, findings=(finding("target.refused", "error", robots.error, url=url),))
        if robots.state == "unreachable" and robots.status is None:
            # No HTTP answer at all: the host is down or unknown, which is the finding (not robots rules).
            why = f"{origin} does not answer ({robots.error}); nothing on it could be checked"
            return replace(base, findings=(finding("target.unreachable", "error", why, url=url),))
        agents = evaluate_agents(robots, url, self.agents.agents)
        findings = access_findings(agents, robots, url)
        if robots.state == "missing":
            findings += await self._below_root_findings(url)
        if not self.may_fetch(robots, url):
            why = f"robots.txt disallows {self.ua} from this page: it was not fetched"
            findings.append(
                finding("target.robots-geoaudit", "warning", why, evidence=robots.group_for(self.ua), url=url)
            )
            return replace(
                base,
                findings=tuple(findings),
                agents=tuple(agents),
                skipped=(Skipped("page", why), Skipped("fetch", why)),
            )
        resp = await self.get(url, user_agent=self.o.browser_user_agent, text_only=True)
        failed = self._page_failure(resp, url)
        if failed is not None:
            return replace(
                base,
                findings=tuple(findings + [failed]),
                agents=tuple(agents),
                skipped=(Skipped("page", failed.message), Skipped("fetch", "the page did not load for a browser")),
            )
        html, _ = decode_html(resp.body, resp.headers.get("content-type"))
        content, facts, structured = content_checks(
            html,
            url,
            final_url=resp.final_url,
            status=resp.status,
            content_type=resp.media_type,
            x_robots=resp.headers.get_list("x-robots-tag"),
            last_modified=resp.headers.get("last-modified") or "",
            agent_tokens={a.token for a in self.agents.agents},
            table=self.table,
        )
        if resp.truncated:
            self.warnings.append(f"{url}: body cut at {self.o.max_bytes} bytes; checks read the first part only")
        skipped: tuple[Skipped, ...] = ()
        if self.o.fetch_as_agents:
            agents = await self._fetch_as_agents(url, resp, facts, agents, robots)
            content += _fetch_findings(agents, resp, url)
        else:
            skipped = (Skipped("fetch", "turned off (--no-agent-fetch)"),)
        return replace(
            base,
            checked=True,
            findings=tuple(findings + content),
            agents=tuple(agents),
            facts=facts,
            structured=structured,
            skipped=skipped,
        )

    async def _below_root_findings(self, url: str) -> list[Finding]:
        # Only the page's own directories (at most two levels): bounded, and where site owners put them.
        dirs = [d for d in urlsplit(url).path.split("/")[1:-1] if d][:2]
        origin = _origin(url)
        candidates = [origin + "/" + "/".join(dirs[: i + 1]) + "/robots.txt" for i in range(len(dirs))]
        found = [await self.below_root(c) for c in candidates]
        return [f for f in found if f is not None]

    def _page_failure(self, resp: FetchedResponse, url: str) -> Finding | None:
        if refused(resp):
            return finding("target.refused", "error", resp.error or "", url=url)
        if resp.skipped:  # robots.txt, on a redirect hop or by a Crawl-delay over the cap
            return finding("target.robots-geoaudit", "warning", f"{url} was not fetched: {resp.skipped}", url=url)
        failed = no_answer(resp)
        if failed:
            return finding("target.unreachable", "error", f"{url}: {failed}", url=url)
        if (resp.status or 0) >= 300:
            return finding(
                "target.http-error",
                "error",
                f"{url} answers HTTP {resp.status} to a browser.",
                evidence=f"User-Agent: {self.o.browser_user_agent}",
                url=url,
            )
        if (resp.media_type and resp.media_type not in HTML_TYPES) or looks_binary(resp.body):
            return finding(
                "target.not-html", "error", f"{url} is {resp.media_type or 'binary data'}, not an HTML page.", url=url
            )
        return None

    async def _fetch_as_agents(
        self, url: str, baseline: FetchedResponse, facts: PageFacts, agents: list[AgentResult], robots: RobotsTxt
    ) -> list[AgentResult]:
        base_words = _words(
            extract_html(baseline.body, baseline.final_url, content_type=baseline.headers.get("content-type")).text
        )
        by_token = {a.token: a for a in self.agents.agents}

        async def one(result: AgentResult) -> AgentResult:
            agent = by_token[result.token]
            if not agent.user_agent:
                return replace(result, note="robots.txt token only: no crawler of its own to fetch as")
            if result.robots == "disallowed":
                return replace(result, note="robots.txt disallows it: not fetched")
            if not self.may_fetch(robots, url, agent.token):
                return replace(result, note=f"robots.txt disallows {self.ua}: not fetched")
            resp = await self.get(url, user_agent=agent.user_agent, agent=agent.token, text_only=True)
            if resp.skipped:  # a redirect hop robots.txt keeps from geoaudit or the agent
                return replace(result, note=f"not fetched: {resp.skipped}")
            outcome, note = _compare(baseline, base_words, resp)
            return replace(result, fetch=outcome, status=resp.status, note=note)

        return list(await asyncio.gather(*(one(r) for r in agents)))


def _words(text: str) -> set[str]:
    """Distinct lower-cased words (:func:`geoaudit.tokens.words`, the tokenizer the metrics use)."""
    return {w.lower() for w in words(text)}


def _compare(baseline: FetchedResponse, base_words: set[str], resp: FetchedResponse) -> tuple[str, str]:
    """How an agent's response differs from the browser's: (outcome, note)."""
    failed = no_answer(resp)
    if failed:
        return "blocked", failed
    if resp.status == 429:
        return "rate-limited", "HTTP 429"
    if resp.status != baseline.status:
        if (resp.status or 0) >= 400:
            return "blocked", f"HTTP {resp.status} (browser: {baseline.status})"
        return "differs", f"HTTP {resp.status} (browser: {baseline.status})"
    if resp.final_url != baseline.final_url:
        return "differs", f"redirected to {resp.final_url} (browser: {baseline.final_url})"
    if resp.body == baseline.body:
        return "same", "identical body"
    words = _words(extract_html(resp.body, resp.final_url, content_type=resp.headers.get("content-type")).text)
    union = base_words | words
    share = len(base_words & words) / len(union) if union else 1.0
    if share >= SAME_CONTENT:
        return "same", f"{share:.0%} of main-text words shared"
    return (
        "differs",
        f"{share:.0%} of main-text words shared with the browser's page ({len(words)} vs {len(base_words)} distinct words)",
    )


_ROLE_SEVERITY = {"search": "error", "user": "error", "training": "warning"}


def _fetch_findings(agents: list[AgentResult], baseline: FetchedResponse, url: str) -> list[Finding]:
    def describe(rs: list[AgentResult]) -> str:
        return "; ".join(f"{r.token} ({ROLE_LABELS[r.role].split()[0]}): {r.note}" for r in rs)

    fetched = [r for r in agents if r.fetch != "not-fetched"]
    blocked = [r for r in fetched if r.fetch == "blocked"]
    limited = [r for r in fetched if r.fetch == "rate-limited"]
    differs = [r for r in fetched if r.fetch == "differs"]
    out: list[Finding] = []
    if blocked:
        severity = "error" if any(_ROLE_SEVERITY[r.role] == "error" for r in blocked) else "warning"
        out.append(
            finding(
                "fetch.blocked",
                severity,  # type: ignore[arg-type]
                f"{len(blocked)} AI agent(s) allowed by robots.txt are refused where a browser gets HTTP {baseline.status}: "
                f"{', '.join(r.token for r in blocked)}.",
                evidence=describe(blocked),
                url=url,
            )
        )
    if limited:
        out.append(
            finding(
                "fetch.rate-limited",
                "warning",
                f"{len(limited)} AI agent(s) got HTTP 429: {', '.join(r.token for r in limited)}.",
                evidence=describe(limited),
                url=url,
            )
        )
    if differs:
        out.append(
            finding(
                "fetch.differs",
                "warning",
                f"{len(differs)} AI agent(s) got a different page: {', '.join(r.token for r in differs)}.",
                evidence=describe(differs),
                url=url,
            )
        )
    same = [r for r in fetched if r.fetch == "same"]
    if same and not out:
        out.append(
            finding(
                "fetch.same",
                "pass",
                f"All {len(same)} AI agents fetched got the same page as a browser (HTTP {baseline.status}).",
                evidence=", ".join(r.token for r in same),
                url=url,
            )
        )
    return out


def content_checks(
    html: str,
    url: str,
    *,
    final_url: str,
    status: int | None,
    content_type: str,
    x_robots: list[str],
    last_modified: str,
    agent_tokens: set[str],
    table: PropertyTable,
    local: bool = False,
) -> tuple[list[Finding], PageFacts, StructuredFacts]:
    """The checks that need only the page's HTML (and headers): directives, structured data, extractability."""
    findings = directive_findings(robots_directives(html, x_robots, agent_tokens), url)
    structured, sd = check_structured(html, final_url or url, table)
    facts, ex = check_extractability(
        html,
        url,
        status=status,
        final_url=final_url,
        content_type=content_type,
        last_modified_header=last_modified,
        local=local,
    )
    return findings + sd + ex, facts, structured


def check_html(
    html: str,
    url: str = "",
    *,
    agents: AgentList | None = None,
    table: PropertyTable | None = None,
    target: str = "",
) -> PageCheck:
    """The offline checks on one HTML string (no network): robots meta tags, structured data,
    extractability. The checks that need the network are listed in ``skipped``."""
    agents = agents or load_agents()
    table = table or load_property_table()
    findings, facts, structured = content_checks(
        html,
        url,
        final_url=url,
        status=None,
        content_type="text/html",
        x_robots=[],
        last_modified="",
        agent_tokens={a.token for a in agents.agents},
        table=table,
        local=True,
    )
    return PageCheck(
        target or url, url, "file", True, tuple(findings), facts=facts, structured=structured, skipped=_OFFLINE_SKIPS
    )


def check_file(path: str | Path, *, agents: AgentList | None = None, table: PropertyTable | None = None) -> PageCheck:
    """:func:`check_html` on a local .html file; a missing or unusable file is a finding, not an exception."""
    target = str(path)
    p = Path(path).expanduser()

    def fail(rule: str, message: str) -> PageCheck:
        return PageCheck(target, target, "file", False, (finding(rule, "error", message, url=target),))

    if p.is_dir():
        return fail("target.invalid", f"{target} is a directory; give .html files")
    if not p.is_file():
        return fail("target.missing-file", f"no such file: {target}")
    if p.suffix.lower() not in HTML_SUFFIXES:
        return fail(
            "target.invalid",
            f"{target}: unsupported file type {p.suffix or '(none)'}; check reads .html and .htm files",
        )
    try:
        raw = p.read_bytes()
    except OSError as exc:
        return fail("target.missing-file", f"cannot read {target}: {exc.strerror or exc}")
    if not raw.strip():
        return fail("target.invalid", f"{target} is empty")
    if looks_binary(raw):
        return fail("target.not-html", f"{target} is binary data, not HTML")
    html, _ = decode_html(raw, "text/html")
    return check_html(html, p.resolve().as_uri(), agents=agents, table=table, target=target)


async def acheck(
    targets: Sequence[str | Path],
    *,
    settings: Settings,
    options: CheckOptions | None = None,
    client: httpx.AsyncClient | None = None,
    progress: ProgressFn | None = None,
    resolver: Resolver | None = None,
    address_allowed: Callable[[IPAddress], bool] = is_public_address,
) -> CheckReport:
    """Check ``targets`` (http(s) URLs and local .html files) for AI readiness; see :mod:`geoaudit.check`.

    A target that cannot be checked (invalid, unreachable, not HTML, missing file) becomes a page
    with ``checked=False`` and an error finding; the other targets are still checked.

    Args:
        targets: URLs (``http(s)://...``) and paths; a :class:`~pathlib.Path` is always a file.
        settings: ``user_agent`` is geoaudit's own (robots.txt is honoured for it);
            ``ai_agents_file`` an agent list of your own.
        options: politeness, limits, which agents (see :class:`CheckOptions`).
        client: an ``httpx.AsyncClient`` to use (not closed); tests may inject one. Connections then
            go wherever that client sends them (see :class:`~geoaudit.fetch.Fetcher`).
        progress: called as ``progress(done, total, target)`` after each target.
        resolver: how host names are resolved for the SSRF check and the pinned connection
            (default: the operating system's).
        address_allowed: the SSRF rule when ``options.allow_private`` is off (default
            :func:`~geoaudit.fetch.is_public_address`); tests use it to play a public site on loopback.

    Raises:
        InputError: no targets. ConfigError: an unreadable agent list or an unknown agent name.
    """
    o = options or CheckOptions()
    if not targets:
        raise InputError("nothing to check", hint="give URLs or .html files")
    agents = load_agents(o.agents_file or settings.ai_agents_file).select(o.agents)
    table = load_property_table()
    requests = 0

    def count(_: RequestEvent) -> None:
        nonlocal requests
        requests += 1

    fetcher = Fetcher(
        fetch_options(settings, o), client=client, resolver=resolver, address_allowed=address_allowed, on_request=count
    )
    runner = _Runner(settings, o, agents, table, fetcher)
    sem = asyncio.Semaphore(o.concurrency)
    done = 0

    async def one(target: str | Path) -> PageCheck:
        nonlocal done
        async with sem:
            try:
                page = await runner.check_target(target)
            except Exception as exc:  # one hostile page must not cost the other targets their results
                if settings.debug:
                    raise
                why = f"{type(exc).__name__}: {exc}"
                page = PageCheck(
                    str(target),
                    str(target),
                    "url" if _is_url(str(target)) else "file",
                    False,
                    (finding("target.check-failed", "error", why, url=str(target)),),
                )
        done += 1
        if progress is not None:
            progress(done, len(targets), str(target))
        return page

    try:
        pages = await asyncio.gather(*(one(t) for t in targets))
        sites = [await task for task in runner.sites.values()]
    finally:
        await fetcher.aclose()
    warnings = []
    if o.allow_private:
        warnings.append("private and loopback addresses are allowed (--allow-private)")
    if not o.respect_robots:
        warnings.append(
            "robots.txt is IGNORED for geoaudit's own requests (--ignore-robots): only do this on sites you own"
        )
    from geoaudit import __version__

    recorded = {k: (str(v) if isinstance(v, Path) else v) for k, v in asdict(o).items()}
    recorded.update(user_agent=settings.user_agent, requests=requests, agents_checked=[a.token for a in agents.agents])
    return CheckReport(
        sites=tuple(sites),
        pages=tuple(pages),
        generated_at=now_iso(),
        geoaudit_version=__version__,
        agents_source=agents.description,
        schema_source=table.description,
        options=recorded,
        warnings=tuple(warnings + runner.warnings),
    )


def check(
    targets: Sequence[str | Path],
    *,
    settings: Settings,
    options: CheckOptions | None = None,
    client: httpx.AsyncClient | None = None,
    progress: ProgressFn | None = None,
    resolver: Resolver | None = None,
    address_allowed: Callable[[IPAddress], bool] = is_public_address,
) -> CheckReport:
    """Synchronous :func:`acheck` (works inside a running event loop too, e.g. Jupyter)."""
    result: CheckReport = run_sync(
        acheck(
            targets,
            settings=settings,
            options=options,
            client=client,
            progress=progress,
            resolver=resolver,
            address_allowed=address_allowed,
        )
    )
    return result
