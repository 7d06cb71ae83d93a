"""Crawler access: robots.txt per AI agent (protego), robots meta tags and ``X-Robots-Tag``.

robots.txt is read the way RFC 9309 says crawlers read it: a 4xx answer means no rules (everything
allowed), a 5xx answer or no answer means everything disallowed, and only ``/robots.txt`` at the
root counts. Rules are matched per agent token by protego, the parser Scrapy uses.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from protego import Protego

from geoaudit.check.agents import Agent
from geoaudit.check.model import ROLE_LABELS, AgentResult, Finding, Severity
from geoaudit.check.rules import finding
from geoaudit.documents import decode_html

if TYPE_CHECKING:
    from geoaudit.fetch import FetchedResponse

_UA_LINE = re.compile(r"^[ \t]*user-agent[ \t]*:[ \t]*([^#\s]+)", re.I | re.M)
_RULE_LINE = re.compile(r"^[ \t]*(allow|disallow)[ \t]*:", re.I | re.M)
_LLMS_LINE = re.compile(r"^[ \t]*(llms(?:[-_. ]?txt)?|llm)[ \t]*:.*$", re.I | re.M)


def _agent_prefix(value: str) -> tuple[str, str] | None:
    """``("googlebot", " noindex")`` for ``"googlebot: noindex"``; None without a ``name:`` prefix.

    String methods, not a regex: header values are untrusted, and a pattern with two unbounded
    blank runs around the colon can be made to backtrack (issue 11)."""
    head, sep, rest = value.partition(":")
    name = head.strip()
    if not sep or not name or not name.isascii() or not all(c.isalnum() or c in "_-" for c in name):
        return None
    return name, rest


@dataclass(frozen=True)
class RobotsTxt:
    """A site's robots.txt as a crawler would take it."""

    url: str
    #: found | missing (4xx, or redirects that never end: no rules) | unreachable (5xx or no
    #: answer: disallow all) | refused (private address, not fetched)
    state: str
    status: int | None
    text: str = ""
    error: str = ""
    parser: Protego | None = None

    @classmethod
    def from_response(cls, url: str, resp: FetchedResponse) -> RobotsTxt:
        """Read robots.txt from the fetch the fetcher obeys (:meth:`geoaudit.fetch.Fetcher.robots_txt`),
        with the same RFC 9309 reading, so what check reports is what its requests follow."""
        if resp.error_kind == "refused":
            return cls(url, "refused", None, error=resp.error or "")
        if resp.error_kind == "redirect":
            # RFC 9309 2.3.1.2: after five redirects a crawler MAY take robots.txt as unavailable.
            return cls(url, "missing", resp.status, error=resp.error or "")
        if resp.error or resp.status is None or resp.status >= 500:
            return cls(url, "unreachable", resp.status, error=resp.error or f"HTTP {resp.status}")
        if resp.status >= 400 or resp.status != 200:
            return cls(url, "missing", resp.status)
        text, _ = decode_html(resp.body, resp.headers.get("content-type"))
        try:
            parser = Protego.parse(text)
        except Exception as exc:
            return cls(
                url, "missing", resp.status, text=text, error=f"robots.txt could not be parsed ({type(exc).__name__})"
            )
        return cls(url, "found", resp.status, text=text, parser=parser)

    @property
    def looks_like_html(self) -> bool:
        head = self.text.lstrip()[:200].lower()
        return head.startswith(("<!doctype html", "<html", "<head", "<body")) or "<html" in head

    def allows(self, url: str, token: str) -> bool | None:
        """May ``token`` fetch ``url``? None when robots.txt was not read (refused)."""
        if self.state == "missing":
            return True
        if self.state == "unreachable":
            return False
        if self.state == "refused" or self.parser is None:
            return None
        return bool(self.parser.can_fetch(url, token))

    def crawl_delay(self, token: str) -> float | None:
        if self.parser is None:
            return None
        delay = self.parser.crawl_delay(token)
        return float(delay) if delay else None

    def group_for(self, token: str) -> str:
        """Which ``User-agent`` group decides for ``token`` (for evidence; protego makes the decision)."""
        if self.state != "found":
            return {"missing": "no robots.txt: no rules", "unreachable": "robots.txt unreachable: disallow all"}.get(
                self.state, ""
            )
        # protego picks the longest group name found in the agent name at a word start.
        name = token.lower()
        best = ""
        for ua in {m.group(1).lower() for m in _UA_LINE.finditer(self.text)}:
            if ua == "*":
                continue
            at = name.find(ua)
            while at != -1:
                if (at == 0 or not (name[at - 1].isalnum() or name[at - 1] in "-_")) and len(ua) > len(best):
                    best = ua
                at = name.find(ua, at + 1)
        if best:
            return f"User-agent: {best}"
        if re.search(r"^[ \t]*user-agent[ \t]*:[ \t]*\*", self.text, re.I | re.M):
            return "User-agent: *"
        return "no group names it: allowed"


def site_robots_findings(robots: RobotsTxt) -> list[Finding]:
    """Findings about the robots.txt file itself (once per site)."""
    url = robots.url
    if robots.state == "missing":
        why = f"HTTP {robots.status}" if robots.status else robots.error
        return [finding("robots.missing", "info", f"{url} answers {why}: every crawler may fetch every page.", url=url)]
    if robots.state == "unreachable":
        return [
            finding(
                "robots.unreachable",
                "error",
                f"{url} could not be read ({robots.error}); crawlers then treat the whole site as disallowed.",
                evidence=robots.error,
                url=url,
            )
        ]
    if robots.state != "found":
        return []
    out: list[Finding] = []
    if robots.looks_like_html:
        out.append(
            finding(
                "robots.not-text",
                "warning",
                f"{url} answers 200 with an HTML page, not robots.txt rules; crawlers find no rules in it.",
                evidence=robots.text.lstrip()[:120],
                url=url,
            )
        )
    llms = [(robots.text.count("\n", 0, m.start()) + 1, m.group(0).strip()) for m in _LLMS_LINE.finditer(robots.text)]
    if llms:
        out.append(
            finding(
                "robots.llms-line",
                "warning",
                f"{len(llms)} line(s) in robots.txt point to llms.txt; robots.txt has no such directive.",
                evidence="; ".join(f"line {n}: {line[:80]}" for n, line in llms[:5]),
                url=url,
            )
        )
    if not robots.looks_like_html:
        groups = len(_UA_LINE.findall(robots.text))
        rules = len(_RULE_LINE.findall(robots.text))
        out.append(
            finding(
                "robots.found",
                "pass",
                f"robots.txt found: {groups} user-agent line(s), {rules} allow/disallow rule(s).",
                url=url,
            )
        )
    return out


def evaluate_agents(robots: RobotsTxt, page_url: str, agents: tuple[Agent, ...]) -> list[AgentResult]:
    """Each agent's robots.txt verdict for ``page_url`` (fetch results are filled in later)."""
    results = []
    for a in agents:
        allowed = robots.allows(page_url, a.token)
        verdict = "unknown" if allowed is None else ("allowed" if allowed else "disallowed")
        results.append(AgentResult(a.token, a.operator, a.role, verdict, robots.group_for(a.token)))
    return results


_ROLE_SEVERITY = {"search": "error", "user": "warning", "training": "info"}


def access_findings(results: list[AgentResult], robots: RobotsTxt, page_url: str) -> list[Finding]:
    """One finding per role: which agents of that role robots.txt keeps from this page."""
    out: list[Finding] = []
    for role in ("search", "user", "training"):
        group = [r for r in results if r.role == role]
        if not group or robots.state == "refused":
            continue
        label = ROLE_LABELS[role]
        blocked = [r for r in group if r.robots == "disallowed"]
        rule_id = f"access.{role}"
        if not blocked:
            out.append(
                finding(
                    rule_id,
                    "pass",
                    f"robots.txt allows all {len(group)} {label} to fetch this page.",
                    evidence=", ".join(r.token for r in group),
                    url=page_url,
                )
            )
            continue
        why = " (robots.txt unreachable: disallow all)" if robots.state == "unreachable" else ""
        names = ", ".join(r.token for r in blocked)
        out.append(
            finding(
                rule_id,
                _ROLE_SEVERITY[role],  # type: ignore[arg-type]
                f"robots.txt disallows {len(blocked)} of {len(group)} {label} for this page{why}: {names}.",
                evidence=_by_rule(blocked),
                url=page_url,
            )
        )
    return out


def _by_rule(results: list[AgentResult]) -> str:
    """``rule: agent, agent; rule: agent``: which robots.txt group decided for which agents."""
    groups: dict[str, list[str]] = {}
    for r in results:
        groups.setdefault(r.robots_rule, []).append(r.token)
    return "; ".join(f"{rule}: {', '.join(tokens)}" for rule, tokens in groups.items())


# ------------------------------------------------------------------------------------------------
# robots meta tags and X-Robots-Tag
# ------------------------------------------------------------------------------------------------


def _directives(content: str) -> set[str]:
    found: set[str] = set()
    for part in content.lower().split(","):
        d = part.strip()
        if d == "none":
            found |= {"noindex", "nofollow"}
        elif re.fullmatch(r"max-snippet\s*:\s*0", d):
            found.add("nosnippet")
        elif d:
            found.add(d)
    return found


def robots_directives(html: str | None, headers: list[str], agent_tokens: set[str]) -> list[tuple[str, str, str]]:
    """``(directive, scope, evidence)`` from robots meta tags and ``X-Robots-Tag`` header values.

    ``scope`` is ``all`` (``<meta name="robots">``, an unprefixed header) or an agent token the
    directive names (``<meta name="googlebot">``, ``X-Robots-Tag: gptbot: noindex``).
    """
    names = {t.lower() for t in agent_tokens}
    out: list[tuple[str, str, str]] = []
    for value in headers:
        scope = "all"
        m = _agent_prefix(value)
        # "googlebot: noindex" names an agent; "unavailable_after: ..." is a directive, not an agent.
        if m and m[0].lower() in names:
            scope, value = m
        for d in sorted(_directives(value)):
            out.append((d, scope, f"X-Robots-Tag: {value.strip()[:120]}"))
    if html:
        from bs4 import BeautifulSoup

        metas: list[Any] = []
        try:
            metas = list(BeautifulSoup(html, "lxml").find_all("meta", attrs={"name": True, "content": True}))
        except Exception:  # hostile markup: no meta directives rather than a crash
            pass
        for tag in metas:
            name = str(tag.get("name") or "").strip().lower()
            if name != "robots" and name not in names:
                continue
            content = str(tag.get("content") or "")
            for d in sorted(_directives(content)):
                out.append(
                    (d, "all" if name == "robots" else name, f'<meta name="{name}" content="{content.strip()[:120]}">')
                )
    return out


def directive_findings(found: list[tuple[str, str, str]], page_url: str) -> list[Finding]:
    def pick(*names: str) -> list[tuple[str, str, str]]:
        return [f for f in found if f[0] in names]

    def scopes(items: list[tuple[str, str, str]]) -> str:
        s = sorted({scope for _, scope, _ in items})
        return "every crawler" if "all" in s else ", ".join(s)

    def evidence(items: list[tuple[str, str, str]]) -> str:
        return "; ".join(dict.fromkeys(e for _, _, e in items))

    out: list[Finding] = []
    if noindex := pick("noindex"):
        out.append(
            finding(
                "directives.noindex",
                "error",
                f"noindex for {scopes(noindex)}: the page is kept out of search indexes.",
                evidence=evidence(noindex),
                url=page_url,
            )
        )
    if nosnippet := pick("nosnippet"):
        out.append(
            finding(
                "directives.nosnippet",
                "warning",
                f"nosnippet for {scopes(nosnippet)}: engines may not quote the page.",
                evidence=evidence(nosnippet),
                url=page_url,
            )
        )
    if noai := pick("noai", "noimageai"):
        severity: Severity = "warning" if pick("noai") else "info"
        which = ", ".join(sorted({d for d, _, _ in noai}))
        out.append(
            finding(
                "directives.noai",
                severity,
                f"{which} for {scopes(noai)}: the page asks AI systems not to use it.",
                evidence=evidence(noai),
                url=page_url,
            )
        )
    if not out:
        seen = evidence(found) if found else "no robots meta tag or X-Robots-Tag"
        out.append(
            finding(
                "directives.ok",
                "pass",
                "No noindex, nosnippet, noai or noimageai directive.",
                evidence=seen,
                url=page_url,
            )
        )
    return out
