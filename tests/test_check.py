"""`geoaudit check` against a real local web: four sites on loopback hosts 127.0.0.2-5.

Site A (127.0.0.2): robots.txt with per-agent groups and an 'LLMs:' line, a valid llms.txt, a
complete article. Site B (127.0.0.3): allows every crawler in robots.txt, but its "WAF" answers 403
to PerplexityBot and GPTBot and a challenge page to ClaudeBot; a broken llms.txt; pages with broken
JSON-LD, incomplete microdata and OpenGraph, noindex/nosnippet, a PDF. Site C (127.0.0.4): no
robots.txt at the root but one under /blog/, no llms.txt, RDFa, a JavaScript-only page. Site D
(127.0.0.5): robots.txt answers 500 (so: disallow all).
"""

from __future__ import annotations

import json
import socket
import threading
import xml.etree.ElementTree as ET
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from geoaudit.check import CheckOptions, CheckReport, PageCheck, check, render_html, render_junit, to_sarif
from geoaudit.config import Settings

Route = Callable[[str], tuple[int, dict[str, str], bytes]]
HTML = {"Content-Type": "text/html; charset=utf-8"}
TEXT = {"Content-Type": "text/plain; charset=utf-8"}

BODY = " ".join(
    f"Sentence {i} of the fixture article explains how an electric kettle heats water with a coiled element and "
    f"switches off at the boil, which takes about 94 seconds for one litre."
    for i in range(12)
)


def article(
    title: str = "Electric kettles", extra_head: str = "", jsonld: str | None = None, body: str = BODY
) -> bytes:
    ld = (
        jsonld
        if jsonld is not None
        else json.dumps(
            {
                "@context": "https://schema.org",
                "@type": "Article",
                "headline": title,
                "author": {"@type": "Person", "name": "Kim Lee"},
                "datePublished": "2024-05-01",
                "dateModified": "2024-06-01",
                "image": "https://example.org/k.png",
            }
        )
    )
    return f"""<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>
<meta name="description" content="How electric kettles work.">
<link rel="canonical" href="/article">
<meta property="og:title" content="{title}"><meta property="og:type" content="article">
<meta property="og:image" content="https://example.org/k.png"><meta property="og:url" content="https://example.org/article">
<script type="application/ld+json">{ld}</script>{extra_head}
</head><body><nav><a href="/">home</a></nav><article><h1>{title}</h1><p>{body}</p>
<h2>Safety</h2><p>{body}</p></article></body></html>""".encode()


def page_b() -> bytes:
    return (
        b"""<!doctype html><html lang="en"><head><title>Kettle shop</title>
<meta property="og:title" content="Kettle shop">
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "Organization" "name": "Shop"}</script>
<script type="application/ld+json">{"@context": "https://schema.org", "@type": "FAQPage",
 "mainEntity": [{"@type": "Question", "name": "Does it boil fast?", "acceptedAnswer": {"@type": "Answer", "text": "Yes, in 94 seconds."}}]}</script>
</head><body><h1>Kettle shop</h1>
<div itemscope itemtype="https://schema.org/Product"><h2 itemprop="name">Steel kettle</h2>
<p itemprop="description">A steel kettle that boils one litre in 94 seconds and switches itself off.</p></div>
<p>"""
        + BODY.encode()
        + b"""</p></body></html>"""
    )


CHALLENGE = b"<!doctype html><html><head><title>Just a moment...</title></head><body><p>Checking your browser before accessing the site.</p></body></html>"


class Site:
    """One host on its own loopback address; routes by path; records (path, user agent)."""

    def __init__(self, host: str, routes: dict[str, Route], port: int = 0) -> None:
        self.host = host
        self.routes = routes
        self.hits: list[tuple[str, str]] = []
        self.lock = threading.Lock()
        site = self

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True  # headers and body are two writes: no 40 ms delayed-ACK stall each

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                ua = self.headers.get("User-Agent", "")
                with site.lock:
                    site.hits.append((path, ua))
                route = site.routes.get(path)
                status, headers, body = route(ua) if route else (404, HTML, b"<html><body>not found</body></html>")
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, port), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()

    @property
    def port(self) -> int:
        return int(self.server.server_address[1])

    @property
    def base(self) -> str:
        return f"http://{self.host}:{self.port}"

    def agents_seen(self, path: str) -> list[str]:
        with self.lock:
            return [ua for p, ua in self.hits if p == path]

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ok(body: bytes, headers: dict[str, str] | None = None) -> Route:
    return lambda ua: (200, headers or HTML, body)


def waf(body: bytes) -> Route:
    """Robots.txt allows everyone; this "firewall" does not."""

    def route(ua: str) -> tuple[int, dict[str, str], bytes]:
        if "PerplexityBot" in ua or "GPTBot" in ua:
            return 403, HTML, b"<html><body>Forbidden</body></html>"
        if "ClaudeBot" in ua:
            return 200, HTML, CHALLENGE
        return 200, HTML, body

    return route


class Web:
    def __init__(self) -> None:
        a_routes: dict[str, Route] = {}
        self.a = Site("127.0.0.2", a_routes)
        a_routes.update(
            {
                "/robots.txt": ok(
                    b"User-agent: *\nAllow: /\n\nUser-agent: GPTBot\nDisallow: /\n\n"
                    b"User-agent: PerplexityBot\nDisallow: /private/\n\nLLMs: /llms.txt\n",
                    TEXT,
                ),
                "/llms.txt": ok(
                    f"# Kettles A\n\n> Everything about electric kettles.\n\nNotes for models.\n\n## Docs\n"
                    f"- [Article]({self.a.base}/article): how kettles work\n- [Private](/private/page)\n".encode(),
                    TEXT,
                ),
                "/article": ok(article()),
                "/private/page": ok(article("Private kettles")),
            }
        )
        b_routes: dict[str, Route] = {}
        self.b = Site("127.0.0.3", b_routes)
        b_routes.update(
            {
                "/robots.txt": ok(b"User-agent: *\nDisallow:\n", TEXT),
                "/llms.txt": ok(
                    b"Kettle shop\n\n## Links\n* not a link item\n- [Shop](/shop)\n- [Gone](/gone)\n", TEXT
                ),
                "/shop": waf(page_b()),
                "/hidden": lambda ua: (
                    200,
                    {**HTML, "X-Robots-Tag": "noindex"},
                    article(
                        "Hidden <script>alert(1)</script>",
                        extra_head='<meta name="robots" content="nosnippet, noimageai">',
                    ),
                ),
                "/busy": lambda ua: (
                    (429, {**TEXT, "Retry-After": "60"}, b"slow down")
                    if "bingbot" in ua
                    else (200, HTML, article("Busy"))
                ),
                "/doc.pdf": ok(b"%PDF-1.4 " + b"x" * 200, {"Content-Type": "application/pdf"}),
            }
        )
        c_routes: dict[str, Route] = {}
        self.c = Site("127.0.0.4", c_routes)
        c_routes.update(
            {
                "/blog/robots.txt": ok(b"User-agent: *\nDisallow: /\n", TEXT),
                "/blog/post": ok(
                    b"<!doctype html><html><head><title>Post</title></head><body><h1>Post</h1>"
                    b'<div vocab="https://schema.org/" typeof="Organization"><span property="name">Acme Kettles</span></div>'
                    b"<p>" + BODY.encode() + b"</p></body></html>"
                ),
                "/spa": ok(
                    b"<html><head><title>App</title><script>boot()</script></head><body><div id='app'></div></body></html>"
                ),
            }
        )
        self.d = Site("127.0.0.5", {"/robots.txt": lambda ua: (500, TEXT, b"oops"), "/page": ok(article())})

    def close(self) -> None:
        for s in (self.a, self.b, self.c, self.d):
            s.close()


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    w = Web()
    yield w
    w.close()


@pytest.fixture
def settings(tmp_path: Path) -> Settings:
    return Settings(data_dir=tmp_path / "home", user_agent="geoaudit-test/1.0")


FAST = CheckOptions(allow_private=True, delay=0.0, timeout=3.0)


@pytest.fixture(scope="module")
def report(web: Web, tmp_path_factory: pytest.TempPathFactory) -> CheckReport:
    """One run over every target (the way a user runs it): A, B, C, D pages and the bad inputs."""
    local = tmp_path_factory.mktemp("local") / "draft.html"
    local.write_bytes(article("Local draft"))
    settings = Settings(data_dir=tmp_path_factory.mktemp("home"), user_agent="geoaudit-test/1.0")
    targets = [
        f"{web.a.base}/article",
        f"{web.a.base}/private/page",
        f"{web.b.base}/shop",
        f"{web.b.base}/hidden",
        f"{web.b.base}/busy",
        f"{web.c.base}/blog/post",
        f"{web.c.base}/spa",
        f"{web.d.base}/page",
        f"{web.b.base}/doc.pdf",
        f"http://127.0.0.6:{_closed_port()}/",
        str(local),
        str(local.parent / "missing.html"),
        "ftp://example.org/x",
    ]
    return check(targets, settings=settings, options=FAST)


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.6", 0))
        return int(s.getsockname()[1])


def page(report: CheckReport, suffix: str) -> PageCheck:
    return next(p for p in report.pages if p.target.endswith(suffix))


def ids(findings: Any, severity: str | None = None) -> set[str]:
    return {f.id for f in findings if severity is None or f.severity == severity}


def one(findings: Any, rule: str) -> Any:
    found = [f for f in findings if f.id == rule]
    assert len(found) == 1, (rule, [f.id for f in findings])
    return found[0]


# ------------------------------------------------------------------------------------------------
# robots.txt per agent and role
# ------------------------------------------------------------------------------------------------


def test_robots_rules_per_agent_grouped_by_role(web: Web, report: CheckReport) -> None:
    art = page(report, "/article")
    agents = {a.token: a for a in art.agents}
    assert agents["GPTBot"].robots == "disallowed" and agents["GPTBot"].robots_rule == "User-agent: gptbot"
    assert agents["PerplexityBot"].robots == "allowed"
    assert agents["OAI-SearchBot"].robots == "allowed" and agents["OAI-SearchBot"].robots_rule == "User-agent: *"
    # Blocking a training crawler is a choice (info); nothing blocks search crawlers here.
    assert (
        one(art.findings, "access.training").severity == "info"
        and "GPTBot" in one(art.findings, "access.training").message
    )
    assert one(art.findings, "access.search").severity == "pass"
    # Under /private/ PerplexityBot (a search crawler) is disallowed: that keeps the page out of its answers.
    private = page(report, "/private/page")
    search = one(private.findings, "access.search")
    assert search.severity == "error" and "PerplexityBot" in search.message and "OAI-SearchBot" not in search.message
    # A disallowed agent is never fetched as (politeness), and says so.
    assert not any("GPTBot" in ua for ua in web.a.agents_seen("/article"))
    assert agents["GPTBot"].fetch == "not-fetched" and "disallows" in agents["GPTBot"].note
    # Google-Extended is a robots.txt token only: evaluated, never sent as a User-Agent.
    assert agents["Google-Extended"].robots == "disallowed" or agents["Google-Extended"].robots == "allowed"
    assert "token only" in agents["Google-Extended"].note


def test_robots_file_problems_are_site_findings(web: Web, report: CheckReport) -> None:
    sites = {s.origin: s for s in report.sites}
    a = sites[web.a.base]
    assert "robots.llms-line" in ids(a.findings, "warning")
    assert "line 10" in one(a.findings, "robots.llms-line").evidence
    # 500 on robots.txt: crawlers treat the site as disallowed, so every agent is blocked.
    d = sites[web.d.base]
    assert one(d.findings, "robots.unreachable").severity == "error"
    dpage = page(report, f"{web.d.base}/page")
    assert all(a.robots == "disallowed" for a in dpage.agents)
    assert "unreachable" in one(dpage.findings, "access.search").message
    # ...and geoaudit itself does not fetch the page.
    assert one(dpage.findings, "target.robots-geoaudit").severity == "warning" and not dpage.checked
    assert web.d.agents_seen("/page") == []
    # No robots.txt at the root, one under /blog/: it counts for nothing, and check says so.
    c = sites[web.c.base]
    assert one(c.findings, "robots.missing").severity == "info"
    post = page(report, "/blog/post")
    below = one(post.findings, "robots.below-root")
    assert below.severity == "warning" and below.url == f"{web.c.base}/blog/robots.txt"
    assert all(a.robots == "allowed" for a in post.agents)


# ------------------------------------------------------------------------------------------------
# fetching as each agent
# ------------------------------------------------------------------------------------------------


def test_waf_that_blocks_ai_agents_robots_allows_is_caught(web: Web, report: CheckReport) -> None:
    shop = page(report, "/shop")
    agents = {a.token: a for a in shop.agents}
    assert all(a.robots == "allowed" for a in shop.agents)
    assert agents["PerplexityBot"].fetch == "blocked" and agents["PerplexityBot"].status == 403
    assert agents["GPTBot"].fetch == "blocked"
    assert agents["ClaudeBot"].fetch == "differs" and agents["ClaudeBot"].status == 200
    assert agents["OAI-SearchBot"].fetch == "same" and agents["Bingbot"].fetch == "same"
    blocked = one(shop.findings, "fetch.blocked")
    assert blocked.severity == "error"  # PerplexityBot is a search crawler
    assert "PerplexityBot" in blocked.message and "GPTBot" in blocked.message and "OAI-SearchBot" not in blocked.message
    assert "ClaudeBot" in one(shop.findings, "fetch.differs").message
    # One request per agent with a User-Agent string, plus one as a browser.
    seen = [ua for ua in web.b.agents_seen("/shop") if "geoaudit" not in ua]  # llms.txt links it too
    with_ua = [a for a in shop.agents if "token only" not in a.note]
    assert len(seen) == len(with_ua) + 1
    assert sum("PerplexityBot" in ua for ua in seen) == 1
    art = page(report, "/article")
    assert one(art.findings, "fetch.same").severity == "pass"


def test_a_redirect_does_not_take_an_agent_where_robots_txt_keeps_it_out(settings: Settings) -> None:
    # robots.txt lets GPTBot fetch /go but not /members/; the site redirects GPTBot (only) from /go
    # into /members/. Posing as GPTBot, check must stop at that hop, as GPTBot itself would.
    def go(ua: str) -> tuple[int, dict[str, str], bytes]:
        return (302, {"Location": "/members/x"}, b"") if "GPTBot" in ua else (200, HTML, article())

    site = Site(
        "127.0.0.2",
        {
            "/robots.txt": ok(b"User-agent: GPTBot\nDisallow: /members/\n", TEXT),
            "/go": go,
            "/members/x": ok(article("Members only")),
        },
    )
    try:
        r = check(
            [f"{site.base}/go"],
            settings=settings,
            options=CheckOptions(allow_private=True, delay=0.0, agents=("GPTBot",)),
        )
    finally:
        site.close()
    (gpt,) = r.pages[0].agents
    assert gpt.robots == "allowed" and gpt.fetch == "not-fetched" and "robots.txt disallows (as GPTBot)" in gpt.note
    assert site.agents_seen("/members/x") == [] and sum("GPTBot" in ua for ua in site.agents_seen("/go")) == 1


def test_one_request_at_a_time_per_host_even_with_no_delay(settings: Settings) -> None:
    # The fetch as each agent runs concurrently; on a slow site they must still queue per host.
    import time

    state = {"now": 0, "most": 0}
    lock = threading.Lock()

    def slow(ua: str) -> tuple[int, dict[str, str], bytes]:
        with lock:
            state["now"] += 1
            state["most"] = max(state["most"], state["now"])
        time.sleep(0.05)
        with lock:
            state["now"] -= 1
        return 200, HTML, article()

    site = Site("127.0.0.2", {"/page": slow})
    try:
        r = check([f"{site.base}/page"], settings=settings, options=CheckOptions(allow_private=True, delay=0.0))
    finally:
        site.close()
    fetched = [a for a in r.pages[0].agents if a.fetch != "not-fetched"]
    assert len(fetched) >= 5 and len(site.agents_seen("/page")) == len(fetched) + 1
    assert state["most"] == 1


def test_rate_limited_agent_is_inconclusive_not_blocked(report: CheckReport) -> None:
    busy = page(report, "/busy")
    agents = {a.token: a for a in busy.agents}
    assert agents["Bingbot"].fetch == "rate-limited" and agents["Bingbot"].status == 429
    assert one(busy.findings, "fetch.rate-limited").severity == "warning"
    assert "fetch.blocked" not in ids(busy.findings)


def test_directives_per_agent_from_header_and_meta() -> None:
    from geoaudit.check.robots import directive_findings, robots_directives

    html = '<html><head><meta name="googlebot" content="noindex"><meta name="other" content="noindex"></head></html>'
    found = robots_directives(
        html, ["gptbot: noai, noimageai", "unavailable_after: 2030-01-01"], {"GPTBot", "Googlebot"}
    )
    assert ("noai", "gptbot", "X-Robots-Tag: noai, noimageai") in found
    assert ("noindex", "googlebot", '<meta name="googlebot" content="noindex">') in found
    assert not any(scope == "other" for _, scope, _ in found)  # a meta name that is no robots name
    fs = {f.id: f for f in directive_findings(found, "https://x.example/")}
    assert fs["directives.noindex"].severity == "error" and "googlebot" in fs["directives.noindex"].message
    assert fs["directives.noai"].severity == "warning" and "gptbot" in fs["directives.noai"].message
    assert "directives.nosnippet" not in fs


# ------------------------------------------------------------------------------------------------
# llms.txt
# ------------------------------------------------------------------------------------------------


def test_llms_txt_parser_follows_the_format() -> None:
    from geoaudit.check import parse_llms_txt

    good = parse_llms_txt(
        "# Site\n\n> Summary.\n\nSome notes.\n\n## Docs\n- [A](/a): notes\n- [B](https://b.example/b)\n\n## Optional\n- [C](/c)\n",
        "https://s.example/llms.txt",
    )
    assert good.has_title and good.title == "Site" and good.summary == "Summary." and not good.problems
    assert good.links == ["https://s.example/a", "https://b.example/b", "https://s.example/c"]
    bad = parse_llms_txt("\n\n## Docs\n### Sub\n- not a link\n- [x](mailto:a@b.c)\n# Second\n## Empty\n")
    assert not bad.has_title
    problems = " | ".join(msg for _, msg in bad.problems)
    for needle in (
        "H1 title",
        "H3 heading",
        "not a link item",
        "not an http(s) URL",
        "second H1",
        "'Empty' lists no links",
    ):
        assert needle in problems, needle


def test_llms_txt_valid_broken_and_missing(web: Web, report: CheckReport) -> None:
    sites = {s.origin: s for s in report.sites}
    valid = one(sites[web.a.base].findings, "llms.valid")
    assert valid.severity == "pass" and "2 checked, all resolve" in valid.message
    b = sites[web.b.base].findings
    assert one(b, "llms.no-title").severity == "error"
    fmt = one(b, "llms.format")
    assert fmt.severity == "warning" and "not a link item" in fmt.evidence and "line 4" in fmt.evidence
    broken = one(b, "llms.broken-links")
    assert "/gone: HTTP 404" in broken.evidence and "/shop" not in broken.evidence
    assert one(sites[web.c.base].findings, "llms.missing").severity == "info"


# ------------------------------------------------------------------------------------------------
# structured data, directives, extractability
# ------------------------------------------------------------------------------------------------


def test_structured_data_types_missing_properties_and_parse_errors(web: Web, report: CheckReport) -> None:
    art = page(report, "/article")
    assert art.structured is not None and "Article" in art.structured.types
    assert one(art.findings, "schema.found").severity == "pass"
    assert not ids(art.findings) & {"schema.required", "schema.recommended", "schema.parse-error"}
    assert one(art.findings, "schema.opengraph").severity == "pass"

    shop = page(report, "/shop")
    assert shop.structured is not None and shop.structured.parse_errors == 1
    parse = one(shop.findings, "schema.parse-error")
    assert parse.severity == "error" and "block 1" in parse.message and '"Organization" "name"' in parse.evidence
    # The broken block does not hide the good one, nor the microdata.
    assert {"FAQPage", "Question", "Answer", "Product"} <= set(shop.structured.types)
    required = one(shop.findings, "schema.required")
    assert "Product (microdata): offers or review or aggregateRating" in required.message
    assert "FAQPage" not in required.message and "Question" not in required.message
    og = one(shop.findings, "schema.opengraph")
    assert og.severity == "warning" and "og:type" in og.message and "og:title" not in og.message

    post = page(report, "/blog/post")
    assert (
        post.structured is not None and "Organization" in post.structured.types and post.structured.items["rdfa"] == 1
    )
    assert one(post.findings, "schema.opengraph").severity == "info"


def test_noindex_header_and_meta_directives(report: CheckReport) -> None:
    hidden = page(report, "/hidden")
    noindex = one(hidden.findings, "directives.noindex")
    assert noindex.severity == "error" and "X-Robots-Tag: noindex" in noindex.evidence
    assert one(hidden.findings, "directives.nosnippet").severity == "warning"
    assert one(hidden.findings, "directives.noai").severity == "info"  # noimageai only
    assert one(page(report, "/article").findings, "directives.ok").severity == "pass"


def test_extractability_facts(web: Web, report: CheckReport) -> None:
    art = page(report, "/article")
    f = art.facts
    assert f is not None and f.title == "Electric kettles" and f.lang == "en" and f.description
    assert f.canonical == f"{web.a.base}/article" and one(art.findings, "extract.canonical").severity == "pass"
    assert f.words > 300 and 0 < f.text_share < 1 and f.text_chars < f.html_chars
    assert [lvl for lvl, _ in f.headings] == [1, 2]
    assert f.last_modified == "2024-06-01" and "metadata" in f.last_modified_source
    spa = page(report, "/spa")
    assert one(spa.findings, "extract.empty").severity == "error"
    post = page(report, "/blog/post")
    assert one(post.findings, "extract.description").severity == "warning"


# ------------------------------------------------------------------------------------------------
# bad input, offline files, SSRF
# ------------------------------------------------------------------------------------------------


def test_bad_targets_are_findings_and_the_rest_is_checked(web: Web, report: CheckReport) -> None:
    assert len(report.pages) == 13
    pdf = page(report, "/doc.pdf")
    assert not pdf.checked and one(pdf.findings, "target.not-html").severity == "error"
    down = next(p for p in report.pages if p.target.startswith("http://127.0.0.6"))
    assert not down.checked and "connection error" in one(down.findings, "target.unreachable").message
    missing = page(report, "missing.html")
    assert not missing.checked and one(missing.findings, "target.missing-file").severity == "error"
    bad = page(report, "ftp://example.org/x")
    assert not bad.checked and "unsupported URL scheme" in one(bad.findings, "target.invalid").message
    assert page(report, "/article").checked and not report.nothing_checked


def test_local_file_gets_offline_checks_and_says_what_was_skipped(report: CheckReport) -> None:
    draft = page(report, "draft.html")
    assert draft.checked and draft.kind == "file" and not draft.agents
    assert {"schema.found", "extract.text", "directives.ok"} <= ids(draft.findings)
    assert {s.check for s in draft.skipped} >= {"access", "fetch", "llms"}
    assert one(draft.findings, "extract.canonical").severity != "warning"  # a draft's address is not its URL


def test_private_addresses_refused_without_allow_private(web: Web, settings: Settings) -> None:
    before = len(web.a.hits)
    r = check([f"{web.a.base}/article"], settings=settings, options=CheckOptions(delay=0.0))
    p = r.pages[0]
    assert not p.checked and "refused private address" in one(p.findings, "target.refused").message
    assert len(web.a.hits) == before and r.nothing_checked


def test_dns_rebinding_cannot_reach_a_loopback_page(settings: Settings) -> None:
    # A name that resolves to a public address when checked and to loopback afterwards (DNS
    # rebinding). check used to resolve, check, then let the HTTP client resolve again: the
    # loopback page was fetched without --allow-private. Now each hop is resolved once and the
    # connection goes to the address that was checked, as in crawl.
    public = Site("127.0.0.2", {"/robots.txt": ok(b"User-agent: *\nAllow: /\n", TEXT), "/article": ok(article())})
    for _ in range(20):  # the same port on 127.0.0.1, so only the DNS answer tells them apart
        try:
            internal = Site(
                "127.0.0.1",
                {"/article": ok(article("SECRET internal page")), "/robots.txt": ok(b"", TEXT)},
                port=public.port,
            )
            break
        except OSError:
            public.close()
            public = Site("127.0.0.2", public.routes)
    else:
        pytest.skip("no port free on both 127.0.0.1 and 127.0.0.2")
    lookups: list[str] = []

    async def rebinding(host: str, port: int) -> list[str]:
        lookups.append(host)
        return ["127.0.0.2"] if len(lookups) == 1 else ["127.0.0.1"]  # public once, loopback from then on

    def only_127_0_0_2(ip: Any) -> bool:  # 127.0.0.2 plays a public address; anything else is private
        return str(ip) == "127.0.0.2"

    try:
        r = check(
            [f"http://rebind.test:{public.port}/article"],
            settings=settings,
            options=CheckOptions(delay=0.0, timeout=3.0),
            resolver=rebinding,
            address_allowed=only_127_0_0_2,
        )
    finally:
        public.close()
        internal.close()
    p = r.pages[0]
    assert internal.hits == []  # nothing reached the loopback server
    assert public.hits == [("/robots.txt", "geoaudit-test/1.0")]  # the one lookup that said "public"
    assert not p.checked and "resolves to 127.0.0.1" in one(p.findings, "target.refused").message
    assert set(lookups) == {"rebind.test"} and len(lookups) >= 2  # every hop resolved by the fetcher


def test_user_agent_list_and_selection(web: Web, settings: Settings, tmp_path: Path) -> None:
    mine = tmp_path / "agents.toml"
    mine.write_text(
        '[meta]\nsource = "mine"\nupdated = "2026-12-01"\n\n[[agent]]\ntoken = "PerplexityBot"\noperator = "P"\n'
        'role = "search"\nuser_agent = "PerplexityBot/9.9"\n'
    )
    r = check([f"{web.b.base}/shop"], settings=settings.replace(ai_agents_file=mine), options=FAST)
    assert [a.token for a in r.pages[0].agents] == ["PerplexityBot"] and "mine" in r.agents_source
    assert r.pages[0].agents[0].fetch == "blocked"
    r = check(
        [f"{web.a.base}/article"],
        settings=settings,
        options=CheckOptions(allow_private=True, delay=0.0, agents=("gptbot", "Claude-User")),
    )
    assert {a.token for a in r.pages[0].agents} == {"GPTBot", "Claude-User"}


# ------------------------------------------------------------------------------------------------
# output formats
# ------------------------------------------------------------------------------------------------


def test_sarif_validates_against_the_official_schema(report: CheckReport) -> None:
    import jsonschema

    schema = json.loads((Path(__file__).parent / "fixtures" / "sarif-schema-2.1.0.json").read_text())
    log = to_sarif(report)
    validator = jsonschema.Draft4Validator(schema, format_checker=jsonschema.Draft4Validator.FORMAT_CHECKER)
    errors = sorted(validator.iter_errors(log), key=str)
    assert not errors, errors[:3]
    run = log["runs"][0]
    results = run["results"]
    assert len(results) == len(report.findings)
    rules = [r["id"] for r in run["tool"]["driver"]["rules"]]
    assert all(rules[r["ruleIndex"]] == r["ruleId"] for r in results)
    blocked = next(r for r in results if r["ruleId"] == "fetch.blocked")
    assert (
        blocked["level"] == "error"
        and blocked["kind"] == "fail"
        and "/shop" in blocked["locations"][0]["physicalLocation"]["artifactLocation"]["uri"]
    )
    passed = next(r for r in results if r["ruleId"] == "fetch.same")
    assert passed["kind"] == "pass" and passed["level"] == "none"
    # A schema that cannot fail is no test: a broken log must be rejected.
    broken = json.loads(json.dumps(log))
    broken["runs"][0]["results"][0]["level"] = "fatal"
    assert list(validator.iter_errors(broken))


def test_junit_xml_has_suites_cases_and_failures(report: CheckReport) -> None:
    root = ET.fromstring(render_junit(report, fail_on="error"))
    assert root.tag == "testsuites"
    suites = root.findall("testsuite")
    assert len(suites) == len(report.sites) + len(report.pages)
    failures = root.findall(".//testcase/failure")
    assert len(failures) == report.counts()["error"] == int(root.get("failures", "-1"))
    assert all(f.get("type") == "error" for f in failures)
    assert int(root.get("tests", "0")) == len(root.findall(".//testcase"))
    skipped = root.findall(".//testcase/skipped")
    assert len(skipped) == sum(len(p.skipped) for p in report.pages) + sum(len(s.skipped) for s in report.sites) > 0
    shop = next(s for s in suites if s.get("name", "").endswith("/shop"))
    names = [c.get("name") for c in shop.findall("testcase") if c.find("failure") is not None]
    assert any(n.startswith("fetch.blocked") for n in names)
    warn_root = ET.fromstring(render_junit(report, fail_on="warning"))
    assert int(warn_root.get("failures", "0")) == report.counts()["error"] + report.counts()["warning"]


def test_html_report_escapes_page_text(report: CheckReport) -> None:
    out = render_html(report)
    assert "<script>alert(1)</script>" not in out and "&lt;script&gt;alert(1)&lt;/script&gt;" in out
    assert "Content-Security-Policy" in out and "fetch.blocked" in out and "PerplexityBot" in out
    assert "AI agents" in out and "Skipped checks" in out


# ------------------------------------------------------------------------------------------------
# CLI
# ------------------------------------------------------------------------------------------------


def cli(*args: str) -> Any:
    from geoaudit.cli import app

    return CliRunner().invoke(app, list(args))


def test_cli_fail_on_exit_codes_and_formats(web: Web, tmp_path: Path) -> None:
    base = ["check", "--allow-private", "--delay", "0", "--timeout", "3"]
    art = f"{web.a.base}/article"
    r = cli(*base, art, "--fail-on", "error")
    assert r.exit_code == 0, r.output
    assert "access.training" in r.stdout and "GPTBot" in r.stdout and "robots.llms-line" in r.stdout
    r = cli(*base, art, "--fail-on", "warning")  # the 'LLMs:' line in robots.txt is a warning
    assert r.exit_code == 1 and "at or above --fail-on warning" in r.stderr
    r = cli(*base, f"{web.b.base}/shop", "--fail-on", "error", "--format", "sarif")
    assert r.exit_code == 1
    assert json.loads(r.stdout)["version"] == "2.1.0"
    r = cli(*base, f"{web.b.base}/shop")  # no --fail-on: findings do not fail the command
    assert r.exit_code == 0 and "fetch.blocked" in r.stdout

    out = tmp_path / "check.html"
    r = cli(*base, art, str(tmp_path / "nope.html"), "-o", str(out))
    assert r.exit_code == 0, r.output
    assert out.read_text().startswith("<!DOCTYPE html>") and f"wrote html to {out}" in r.stdout
    junit = tmp_path / "check.xml"
    r = cli(*base, art, "--format", "junit", "-o", str(junit), "--fail-on", "error")
    assert r.exit_code == 0 and ET.parse(junit).getroot().tag == "testsuites"


def test_cli_bad_input_is_one_clean_line(web: Web, tmp_path: Path) -> None:
    def error_line(r: Any, code: int) -> str:
        assert r.exit_code == code, (r.exit_code, r.output)
        lines = [ln for ln in r.stderr.splitlines() if ln.strip()]
        assert "Traceback" not in r.output and len(lines) == 1 and lines[0].startswith("error: "), r.stderr
        return lines[0]

    assert "nothing to check" in error_line(cli("check"), 2)
    assert "--format" in error_line(cli("check", "x.html", "--format", "pdf"), 2)
    assert "--fail-on" in error_line(cli("check", "x.html", "--fail-on", "info"), 2)
    assert "delay must be a finite number" in error_line(cli("check", "x.html", "--delay", "nan"), 2)
    assert "suffix" in error_line(cli("check", "x.html", "-o", str(tmp_path / "out.txt")), 2)
    assert "is a directory" in error_line(cli("check", "x.html", "--format", "json", "-o", str(tmp_path)), 2)
    bad = tmp_path / "agents.toml"
    bad.write_text('[[agent]]\ntoken = "X"\nrole = "scraper"\n')
    assert "role must be one of" in error_line(cli("check", "x.html", "--agents-file", str(bad)), 2)
    assert "unknown AI agent" in error_line(cli("check", "x.html", "--agent", "NoSuchBot"), 2)
    # Targets that cannot be checked are findings; when none at all could be, exit 1 with a reason.
    r = cli("check", str(tmp_path / "missing.html"), f"http://127.0.0.6:{_closed_port()}/", "--allow-private")
    assert r.exit_code == 1 and "target.missing-file" in r.stdout and "target.unreachable" in r.stdout
    assert "no target could be checked" in r.stderr


def test_cli_lists_agents_with_source() -> None:
    r = cli("check", "--list-agents")
    assert r.exit_code == 0
    assert "OAI-SearchBot" in r.stdout and "user-triggered" in r.stdout and "ai.robots.txt" in r.stdout


def test_a_crash_on_one_target_leaves_the_others_checked(
    tmp_path: Path, settings: Settings, monkeypatch: pytest.MonkeyPatch
) -> None:
    import geoaudit.check.runner as runner

    real = runner.check_structured

    def fragile(html: str, url: str, table: Any) -> Any:
        if "boom" in html:
            raise RuntimeError("extractor exploded")
        return real(html, url, table)

    monkeypatch.setattr(runner, "check_structured", fragile)
    (tmp_path / "boom.html").write_text("<html><body><p>boom</p></body></html>")
    (tmp_path / "fine.html").write_bytes(article())
    r = check([tmp_path / "boom.html", tmp_path / "fine.html"], settings=settings, options=FAST)
    boom, fine = r.pages
    assert not boom.checked and "extractor exploded" in one(boom.findings, "target.check-failed").message
    assert fine.checked and "schema.found" in ids(fine.findings)
    with pytest.raises(RuntimeError):  # --debug: the traceback, not a finding
        check([tmp_path / "boom.html"], settings=settings.replace(debug=True), options=FAST)
