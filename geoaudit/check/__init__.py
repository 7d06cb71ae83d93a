"""``geoaudit check``: static AI-readiness checks of pages (no LLM, seconds).

Library use (a notebook, or the ``audit`` command, calls this directly)::

    from geoaudit.config import load_settings
    from geoaudit.check import CheckOptions, check, render_sarif

    report = check(["https://example.com/pricing", "drafts/pricing.html"],
                   settings=load_settings(), options=CheckOptions(delay=1.0))
    report.worst(), report.counts(), report.fails("error")
    for page in report.pages:
        page.findings, page.agents, page.facts, page.structured, page.skipped
    render_sarif(report)

What is checked, per site (once per ``scheme://host[:port]``) and per page:

* **AI crawler access** (``access.*``, ``robots.*``): robots.txt evaluated with protego for every
  agent of the shipped list (``geoaudit/data/ai_agents.toml``, replaceable) grouped by role:
  search/answer crawlers (blocked = error), user-triggered fetchers (warning), training crawlers
  (info: a legitimate choice). RFC 9309 semantics: 4xx = no rules, 5xx/unreachable = disallow all;
  a robots.txt below the root counts for nothing.
* **Directives** (``directives.*``): robots meta tags and ``X-Robots-Tag`` (noindex, none,
  nosnippet, max-snippet:0, noai, noimageai), for all crawlers or per agent.
* **What each agent gets** (``fetch.*``): the page fetched once as a browser and once as each agent
  robots.txt allows; differing status codes, final URLs or main text are reported.
* **llms.txt** (``llms.*``): presence at the root, the llmstxt.org format, links that resolve.
* **Structured data** (``schema.*``): JSON-LD (each block on its own), microdata, RDFa, OpenGraph
  via extruct; types found; required/recommended properties from ``geoaudit/data/schema_properties.toml``.
* **Extractability** (``extract.*``): main text by :func:`geoaudit.documents.extract_html` (crawl's
  extraction), its share of the HTML, title, description, canonical, language, headings, dates.

Local ``.html`` files get the offline checks; ``PageCheck.skipped`` says which were skipped and why.
Every request goes through crawl's fetcher (:class:`geoaudit.fetch.Fetcher`): the SSRF check on
every hop with the connection pinned to the checked address, per-host pacing and Crawl-delay, size
and redirect caps, ``allow_private`` for a local dev server. robots.txt is honoured for geoaudit's
own user agent, and a request sent as an AI agent also needs robots.txt to allow that agent; each
agent is fetched as once per page, without retries.
"""

from __future__ import annotations

from geoaudit.check.agents import Agent, AgentList, load_agents, shipped_agents_path
from geoaudit.check.llms_txt import LlmsTxt, parse_llms_txt
from geoaudit.check.model import (
    BROWSER_USER_AGENT,
    SEVERITIES,
    AgentResult,
    CheckOptions,
    CheckReport,
    Finding,
    PageCheck,
    PageFacts,
    Severity,
    SiteCheck,
    Skipped,
    StructuredFacts,
    severity_at_least,
)
from geoaudit.check.render import (
    SEVERITY_CSS,
    html_sections,
    render_html,
    render_json,
    render_junit,
    render_sarif,
    summary_rows,
    to_sarif,
)
from geoaudit.check.rules import RULES, Rule
from geoaudit.check.runner import acheck, check, check_file, check_html

__all__ = [
    "BROWSER_USER_AGENT",
    "RULES",
    "SEVERITIES",
    "SEVERITY_CSS",
    "Agent",
    "AgentList",
    "AgentResult",
    "CheckOptions",
    "CheckReport",
    "Finding",
    "LlmsTxt",
    "PageCheck",
    "PageFacts",
    "Rule",
    "Severity",
    "SiteCheck",
    "Skipped",
    "StructuredFacts",
    "acheck",
    "check",
    "check_file",
    "check_html",
    "html_sections",
    "load_agents",
    "parse_llms_txt",
    "render_html",
    "render_json",
    "render_junit",
    "render_sarif",
    "severity_at_least",
    "shipped_agents_path",
    "summary_rows",
    "to_sarif",
]
