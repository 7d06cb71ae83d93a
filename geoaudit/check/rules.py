"""Every rule ``geoaudit check`` can report: a stable id, a title, and what to do about it.

The ids are a contract (SARIF rule ids, JUnit test names, JSON): rename one only with a changelog
entry. :func:`finding` builds a :class:`~geoaudit.check.model.Finding` with the rule's title and help.
"""

from __future__ import annotations

from dataclasses import dataclass

from geoaudit.check.model import Finding, Severity


@dataclass(frozen=True)
class Rule:
    id: str
    title: str
    help: str
    help_uri: str = ""


_RFC9309 = "https://www.rfc-editor.org/rfc/rfc9309"
_LLMS = "https://llmstxt.org/"
_ROBOTS_META = "https://developers.google.com/search/docs/crawling-indexing/robots-meta-tag"

_RULES = [
    # The target itself.
    Rule("target.invalid", "Target cannot be checked", "Give an http(s) URL or the path of a local .html file."),
    Rule(
        "target.missing-file",
        "Local file cannot be read",
        "Check the path; only .html and .htm files are checked offline.",
    ),
    Rule(
        "target.refused",
        "Private address refused",
        "geoaudit does not fetch private, loopback or link-local addresses unless --allow-private (for your own dev server).",
    ),
    Rule(
        "target.unreachable",
        "Page cannot be fetched",
        "Check the URL, DNS and that the server answers; then run check again.",
    ),
    Rule(
        "target.http-error",
        "Page answers with an HTTP error",
        "A page that fails for a browser fails for every AI engine too.",
    ),
    Rule(
        "target.not-html",
        "Not an HTML page",
        "check reads HTML pages; give the URL of the page itself, not a file or an API.",
    ),
    Rule(
        "target.check-failed",
        "geoaudit failed on this target",
        "This is a geoaudit bug: please report it with the page; `geoaudit --debug check ...` shows the traceback.",
    ),
    Rule(
        "target.robots-geoaudit",
        "robots.txt disallows geoaudit",
        "geoaudit honours robots.txt for its own user agent; on your own site, allow it or use --ignore-robots.",
    ),
    # robots.txt at the site root.
    Rule(
        "robots.missing",
        "No robots.txt",
        "Without robots.txt every crawler may fetch everything (RFC 9309); add one to choose per AI agent.",
        _RFC9309,
    ),
    Rule(
        "robots.unreachable",
        "robots.txt unreachable",
        "Crawlers treat a robots.txt that answers 5xx or cannot be fetched as 'disallow everything' (RFC 9309 2.3.1.4); fix the server.",
        _RFC9309,
    ),
    Rule(
        "robots.not-text",
        "robots.txt is not a robots.txt file",
        "The server answers /robots.txt with HTML (a soft 404?); serve a plain-text robots.txt or a real 404.",
        _RFC9309,
    ),
    Rule(
        "robots.llms-line",
        "llms.txt line inside robots.txt",
        "Lines like 'LLMs: /llms.txt' are not robots.txt directives and nothing reads them; publish /llms.txt at the site root instead.",
        _LLMS,
    ),
    Rule("robots.found", "robots.txt found", "", _RFC9309),
    Rule(
        "robots.below-root",
        "robots.txt below the site root",
        "Crawlers read robots.txt only at the root (/robots.txt); a robots.txt in a subdirectory counts for nothing.",
        _RFC9309,
    ),
    # Per-role access from robots.txt.
    Rule(
        "access.search",
        "Search/answer crawlers and robots.txt",
        "Disallowing a search/answer crawler keeps the page out of that engine's answers and citations; allow it unless that is the goal.",
    ),
    Rule(
        "access.user",
        "User-triggered fetchers and robots.txt",
        "Disallowing a user-triggered fetcher stops that assistant from reading the page when someone asks about it.",
    ),
    Rule(
        "access.training",
        "Training crawlers and robots.txt",
        "Blocking training crawlers is a legitimate choice; it does not stop AI search engines from citing the page.",
    ),
    # Meta robots / X-Robots-Tag.
    Rule(
        "directives.noindex",
        "noindex: page excluded from search indexes",
        "noindex (or none) keeps the page out of search indexes, and so out of AI answers built on them.",
        _ROBOTS_META,
    ),
    Rule(
        "directives.nosnippet",
        "nosnippet: no text may be quoted",
        "nosnippet (or max-snippet:0) forbids quoting the page; Google also keeps such pages out of AI Overviews.",
        _ROBOTS_META,
    ),
    Rule(
        "directives.noai",
        "noai: page asks not to be used by AI",
        "noai/noimageai are informal opt-outs a few AI crawlers honour; remove them if you want AI engines to use the page.",
    ),
    Rule("directives.ok", "No restrictive robots directives", "", _ROBOTS_META),
    # Fetching as each agent.
    Rule(
        "fetch.blocked",
        "AI agents get an error where a browser gets the page",
        "A WAF, CDN or bot rule refuses these agents although robots.txt allows them; allow their user agents "
        "(and the operators' published IP ranges) in the firewall or CDN bot settings.",
    ),
    Rule(
        "fetch.rate-limited",
        "AI agents rate limited (inconclusive)",
        "The server answered 429 to these agents; re-run later or with a larger --delay to tell rate limits from blocks.",
    ),
    Rule(
        "fetch.differs",
        "AI agents get a different page than a browser",
        "These agents got other content or were redirected elsewhere (a challenge page, a consent wall, cloaking); "
        "serve crawlers the same content people see.",
    ),
    Rule("fetch.same", "AI agents get the same page as a browser", ""),
    # llms.txt.
    Rule(
        "llms.missing",
        "No llms.txt",
        "llms.txt is a proposal (llmstxt.org) that few engines read today; optional.",
        _LLMS,
    ),
    Rule(
        "llms.unreachable",
        "llms.txt unreachable",
        "The server failed to answer /llms.txt; fix the server or remove the file.",
        _LLMS,
    ),
    Rule(
        "llms.not-markdown",
        "llms.txt is not markdown",
        "/llms.txt answers with HTML (a soft 404?); serve markdown text or a 404.",
        _LLMS,
    ),
    Rule(
        "llms.no-title",
        "llms.txt does not start with an H1 title",
        "The only required part of llms.txt is a first line '# Site or project name'.",
        _LLMS,
    ),
    Rule(
        "llms.format",
        "llms.txt does not follow the format",
        "After the H1: an optional '> summary' blockquote, optional notes, then H2 sections of '- [name](url): notes' link lists.",
        _LLMS,
    ),
    Rule(
        "llms.no-summary",
        "llms.txt has no summary",
        "A '> one-line summary' blockquote after the title tells a model what the site is.",
        _LLMS,
    ),
    Rule(
        "llms.broken-links",
        "llms.txt links that do not resolve",
        "Fix or remove links that answer with an error.",
        _LLMS,
    ),
    Rule("llms.valid", "llms.txt follows the format", "", _LLMS),
    # Structured data.
    Rule(
        "schema.none",
        "No structured data",
        "Add schema.org JSON-LD describing the page (Article, Product, FAQPage, Organization, ...).",
        "https://developers.google.com/search/docs/appearance/structured-data/intro-structured-data",
    ),
    Rule(
        "schema.parse-error",
        "Structured data that does not parse",
        "Fix the JSON-LD syntax; consumers skip a block that does not parse.",
        "https://json-ld.org/",
    ),
    Rule(
        "schema.lenient-json",
        "JSON-LD that is not strict JSON",
        "Comments or trailing commas parse in lenient readers only; make the block strict JSON.",
    ),
    Rule(
        "schema.extract-error",
        "Structured data extraction failed",
        "The markup of this syntax could not be read; validate it.",
    ),
    Rule(
        "schema.required",
        "Required structured-data properties missing",
        "Add the missing properties (see the source in the message).",
    ),
    Rule(
        "schema.recommended",
        "Recommended structured-data properties missing",
        "Add the missing properties (see the source in the message).",
    ),
    Rule("schema.found", "Structured data found", ""),
    Rule(
        "schema.opengraph",
        "OpenGraph properties",
        "og:title, og:type, og:image and og:url are the OpenGraph protocol's required properties.",
        "https://ogp.me/",
    ),
    # Extractability.
    Rule(
        "extract.empty",
        "No main text extracted",
        "The extractor found no main text: the content is probably rendered by JavaScript. Serve it in the HTML.",
    ),
    Rule(
        "extract.thin",
        "Little main text",
        "Engines quote what they can extract; a page with little text gives them little to cite.",
    ),
    Rule("extract.text", "Main text", ""),
    Rule("extract.title", "Title", "Give the page a <title> that names its subject."),
    Rule(
        "extract.description",
        "Meta description",
        'A <meta name="description"> summary is what many engines show and read first.',
    ),
    Rule("extract.canonical", "Canonical URL", "A canonical link tells engines which URL to credit."),
    Rule("extract.lang", "Language", 'Declare the language: <html lang="en">.'),
    Rule(
        "extract.headings",
        "Headings outline",
        "One H1 naming the subject, then H2/H3 sections without skipped levels, makes passages easy to cite.",
    ),
    Rule(
        "extract.date",
        "Last modified",
        "A visible modification date (HTTP Last-Modified, article:modified_time or JSON-LD dateModified) lets engines judge freshness.",
    ),
]

RULES: dict[str, Rule] = {r.id: r for r in _RULES}


def finding(rule_id: str, severity: Severity, message: str, *, evidence: str = "", url: str = "") -> Finding:
    """A :class:`Finding` for a registered rule (title and help come from the rule)."""
    rule = RULES[rule_id]
    help_text = rule.help + (f" ({rule.help_uri})" if rule.help_uri and rule.help else rule.help_uri)
    return Finding(rule_id, severity, rule.title, message, evidence=evidence, url=url, help=help_text.strip())
