"""`geoaudit audit` on a real local web: your page and competitors on loopback hosts 127.0.0.2-5.

127.0.0.2 serves your page (an article on electric kettles) with robots.txt and llms.txt; 127.0.0.3,
.4 and .5 serve one competitor each, and .3 also a page that is only a JavaScript shell (it
extracts to no text). One more competitor points at a closed port on 127.0.0.6 (unreachable), one
is not an http(s) URL at all. The engine is the embedded model (marked ``embedded``) or a scripted
OpenAI-compatible server on 127.0.0.1 (:class:`geoaudit.testing.FakeOpenAIServer`) whose answers
favour rewritten pages, so the report's contents can be asserted.
"""

from __future__ import annotations

import json
import random
import re
import shutil
import socket
import subprocess
import threading
from collections.abc import Callable, Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from geoaudit.audit import AuditOptions, AuditResult, audit, plan_audit
from geoaudit.config import Settings
from geoaudit.testing import FakeOpenAIServer, fake_settings, last_user_message

HTML = {"Content-Type": "text/html; charset=utf-8"}
TEXT = {"Content-Type": "text/plain; charset=utf-8"}
QUERIES = [
    "How long does an electric kettle take to boil water?",
    "Is it safe to leave an electric kettle switched on?",
]
HOSTILE_TITLE = 'Rival <script>alert("t")</script> kettles'


def article(title: str, paragraphs: list[str]) -> bytes:
    body = "".join(f"<p>{p}</p>" for p in paragraphs)
    ld = json.dumps(
        {
            "@context": "https://schema.org",
            "@type": "Article",
            "headline": title,
            "author": {"@type": "Person", "name": "Kim Lee"},
            "datePublished": "2024-05-01",
        }
    )
    return (
        f'<!doctype html><html lang="en"><head><meta charset="utf-8"><title>{title}</title>'
        f'<meta name="description" content="{title}."><script type="application/ld+json">{ld}</script></head>'
        f"<body><article><h1>{title}</h1>{body}</article></body></html>"
    ).encode()


PAGE = article(
    "Electric kettles explained",
    [
        "An electric kettle heats water with a coiled element under the base. A typical 3 kW kettle brings one litre of "
        "water to the boil in about 94 seconds, and half a litre in under a minute.",
        "Kettles switch themselves off at the boil: a bimetallic strip bends when steam reaches it and breaks the circuit. "
        "Boil-dry protection cuts the power if the kettle is switched on empty.",
        "Descale the kettle every month in hard-water areas; limescale slows heating and wastes energy.",
    ],
)
RIVAL_A = article(
    "How fast does a kettle boil?",
    [
        "Boiling time depends on power and volume. A 3 kW kettle boils a full litre in roughly one and a half minutes; "
        "a 2 kW travel kettle needs close to three minutes for the same water.",
        "Fill only what you need: heating less water boils faster and saves electricity.",
    ],
)
RIVAL_B = article(
    HOSTILE_TITLE,
    [
        "Modern kettles are safe to leave switched on because an automatic cut-off stops heating at the boil. "
        "Never leave a kettle running on a wet surface, and unplug it when you go away.",
        "Look for boil-dry protection, a concealed element and a cool-touch handle.",
    ],
)
RIVAL_C = article(
    "Stovetop kettles and tea",
    [
        "A stovetop kettle on a gas hob boils a litre in four to five minutes; it whistles when the water boils.",
        "Green tea tastes best with water just below the boil, around 80 degrees.",
    ],
)
SPA = b"<html><head><title>App</title><script>boot()</script></head><body><div id='app'></div></body></html>"

Route = Callable[[str], tuple[int, dict[str, str], bytes]]


class Site:
    """One host on its own loopback address; routes by path."""

    def __init__(self, host: str, routes: dict[str, Route]) -> None:
        site = self
        self.routes = routes
        self.hits: list[str] = []

        class Handler(BaseHTTPRequestHandler):
            protocol_version = "HTTP/1.1"
            disable_nagle_algorithm = True

            def log_message(self, *args: Any) -> None:
                pass

            def do_GET(self) -> None:
                path = self.path.split("?", 1)[0]
                site.hits.append(path)
                route = site.routes.get(path)
                status, headers, body = (
                    route(self.headers.get("User-Agent", "")) if route else (404, HTML, b"not found")
                )
                self.send_response(status)
                for k, v in headers.items():
                    self.send_header(k, v)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

        self.server = ThreadingHTTPServer((host, 0), Handler)
        self.server.daemon_threads = True
        threading.Thread(target=self.server.serve_forever, daemon=True).start()
        self.base = f"http://{host}:{self.server.server_address[1]}"

    def close(self) -> None:
        self.server.shutdown()
        self.server.server_close()


def ok(body: bytes, headers: dict[str, str] | None = None) -> Route:
    return lambda ua: (200, headers or HTML, body)


def _closed_port(host: str) -> int:
    with socket.socket() as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Web:
    def __init__(self) -> None:
        self.mine = Site("127.0.0.2", {"/robots.txt": ok(b"User-agent: *\nAllow: /\n", TEXT), "/kettles": ok(PAGE)})
        self.mine.routes["/llms.txt"] = ok(
            f"# Kettles\n\n> All about kettles.\n\n## Pages\n- [Kettles]({self.mine.base}/kettles): how they work\n".encode(),
            TEXT,
        )
        self.a = Site("127.0.0.3", {"/a": ok(RIVAL_A), "/spa": ok(SPA)})
        self.b = Site("127.0.0.4", {"/b": ok(RIVAL_B)})
        self.c = Site("127.0.0.5", {"/c": ok(RIVAL_C)})
        self.page = f"{self.mine.base}/kettles"
        self.unreachable = f"http://127.0.0.6:{_closed_port('127.0.0.6')}/gone"
        self.empty = f"{self.a.base}/spa"
        self.bad = "ftp://example.org/kettles"
        self.rivals = [f"{self.a.base}/a", f"{self.b.base}/b", f"{self.c.base}/c"]
        self.competitors = [*self.rivals, self.unreachable, self.empty, self.bad]

    def close(self) -> None:
        for s in (self.mine, self.a, self.b, self.c):
            s.close()


@pytest.fixture(scope="module")
def web() -> Iterator[Web]:
    w = Web()
    yield w
    w.close()


FAST = dict(allow_private=True, delay=0.0, timeout=3.0)


# ------------------------------------------------------------------------------------ a scripted engine


FABRICATED = " Independent tests found it 42% faster."


def engine(req: dict[str, Any]) -> str:
    """Answers cite a seeded subset of the sources, favouring rewritten ones (the figure the rewriter adds marks them)
    and the first shown; rewrites return the text with a marker and an invented figure (which fails the
    grounded strategies' guards and is flagged on the others)."""
    prompt = last_user_message(req)
    if "Source [1]:" not in prompt:
        return prompt.rsplit("Text:", 1)[-1].strip() + FABRICATED
    rng = random.Random(f"{req.get('seed')}|{prompt}")
    blocks = re.split(r"^Source \[(\d+)\]:", prompt, flags=re.M)[1:]
    texts = {int(n): body for n, body in zip(blocks[::2], blocks[1::2], strict=True)}
    score = {
        n: rng.random() + (2.0 if "Independent tests" in body else 0.0) + (0.3 if n == 1 else 0.0)
        for n, body in texts.items()
    }
    order = sorted(texts, key=lambda n: -score[n])[: rng.randint(1, 3)]
    return " ".join(f"Kettles boil water quickly, point {j} [{n}]." for j, n in enumerate(order))


SIX = [
    *QUERIES,
    "Which kettle boils fastest?",
    "Why does my kettle switch itself off?",
    "How do I descale an electric kettle?",
    "How much electricity does boiling a kettle use?",
]
SCRIPTED = AuditOptions(
    strategies=("identity", "rank", "fluency", "statistics-grounded", "key-facts"), budget="quick", samples=2, **FAST
)  # type: ignore[arg-type]


@pytest.fixture(scope="module")
def scripted(
    web: Web, tmp_path_factory: pytest.TempPathFactory
) -> Iterator[tuple[AuditResult, FakeOpenAIServer, Settings]]:
    home = tmp_path_factory.mktemp("home")
    with FakeOpenAIServer(engine) as server:
        settings = fake_settings(server, home, user_agent="geoaudit-test/1.0")
        result = audit(
            web.page,
            SIX,
            web.competitors,
            settings=settings,
            options=SCRIPTED,
            out_dir=tmp_path_factory.mktemp("out") / "audit",
            command="geoaudit audit (test)",
        )
        yield result, server, settings


def soup_of(path: Path) -> Any:
    from bs4 import BeautifulSoup

    return BeautifulSoup(path.read_text(encoding="utf-8"), "html.parser")


# ------------------------------------------------------------------------------------ inputs and plan


def test_unusable_competitors_are_skipped_with_their_reason_and_the_rest_goes_on(scripted: Any, web: Web) -> None:
    result, _, _ = scripted
    plan = result.plan
    by_spec = {c.spec: c for c in plan.competitors}
    assert [c.spec for c in plan.used_competitors] == web.rivals
    # Unreachable: its robots.txt cannot be read either (RFC 9309: disallow all), so the crawler says so.
    assert "connection" in by_spec[web.unreachable].reason.lower()
    assert "no main content" in by_spec[web.empty].reason or "no main text" in by_spec[web.empty].reason
    assert "invalid URL" in by_spec[web.bad].reason and "ftp" in by_spec[web.bad].reason
    assert result.simulated and result.run_status == "complete" and result.failed_cells == 0
    # The report lists each one with its reason.
    inputs = soup_of(result.report).find(id="inputs").get_text(" ", strip=True)
    for spec in (web.unreachable, web.empty, web.bad):
        assert spec in inputs
    assert inputs.count("skipped") >= 3


def test_the_bench_has_one_item_per_query_with_the_page_retrieved_among_the_competitors(scripted: Any) -> None:
    from geoaudit.bench import load_bench

    result, _, settings = scripted
    plan = result.plan
    bench = load_bench(plan.bench, k=plan.k, settings=settings)
    assert [it.query for it in bench.items] == SIX and plan.k == 4
    assert all(it.target == 0 and len(it.documents) == 4 for it in bench.items)
    assert bench.items[0].documents[0].id == plan.page.doc_id
    from geoaudit.runs import Run

    with Run(result.run_dir) as run:
        rows = run.rows()
        meta = run.meta
    # Retrieved order (BM25), so a rewrite that changes retrieval counts; the page's rank is on every row.
    assert meta["config"]["engine"]["order"] == "retrieved"
    assert rows["target_rank"].notna().all() and set(rows["target_rank"]) <= {1.0, 2.0, 3.0, 4.0}
    assert meta["audit"]["page"]["spec"] == plan.page.spec and meta["audit"]["queries"] == SIX


# ------------------------------------------------------------------------------------ the report


def test_report_recommends_a_rewrite_ready_to_copy_with_diff_flags_and_queries(scripted: Any) -> None:
    result, _, _ = scripted
    rec = result.recommendation
    # The scripted engine favours pages its rewriter marked: fluency wins, with the figure it invented.
    assert rec is not None and rec.strategy == "fluency"
    # Six queries rarely survive the correction over every test of the audit: the report says which it is.
    assert ("not a proven improvement" in rec.why) == (not rec.established)
    soup = soup_of(result.report)
    section = soup.find(id="rewrite")
    text = section.get_text(" ", strip=True)
    assert rec.strategy in text and "Which queries it helped and hurt" in text
    box = section.find("textarea")
    assert box is not None and box.has_attr("readonly")
    assert box.get_text() == rec.rewrites[0].text and "94 seconds" in box.get_text()
    assert section.find("ins") is not None  # the diff against the original
    # Every query appears in the helped/hurt table.
    for q in SIX:
        assert q in text
    fluency = result.rewrites["fluency"][0]
    assert fluency.fabrications.get("numbers") == ["42"]
    # Fabrication flags are shown wherever fluency's text is (recommended or among the others).
    flags = [d.get_text(" ", strip=True) for d in soup.find_all(class_="flags")]
    assert any("numbers: 42" in f and "check before publishing" in f for f in flags)
    # statistics-grounded may not add numbers: its rewrite failed the guards and says so.
    grounded = result.rewrites["statistics-grounded"]
    assert grounded and all(t.status == "failed" for t in grounded)


def test_report_shows_readiness_engine_verdicts_and_competitors_per_query(scripted: Any, web: Web) -> None:
    result, _, _ = scripted
    soup = soup_of(result.report)
    ids = [s.get("id") for s in soup.find_all("section") if s.get("id")]
    assert ids[:3] == ["summary", "inputs", "readiness"]
    assert {"engine", "strategies", "rewrite", "competitors", "method"} <= set(ids)
    readiness = soup.find(id="readiness").get_text(" ", strip=True)
    assert "robots.txt" in readiness and "llms.txt" in readiness and "access." in readiness
    engine_text = soup.find(id="engine").get_text(" ", strip=True)
    assert "positive" in engine_text and "negative" in engine_text
    strategies = soup.find(id="strategies")
    assert strategies.find("svg") is not None  # how the effect changes as competitors adopt
    stext = strategies.get_text(" ", strip=True)
    for name in ("rank", "fluency", "key-facts"):
        assert name in stext
    assert "CI" in stext and "0%" in stext and "100%" in stext
    comp = soup.find(id="competitors")
    assert len(comp.find_all("h3")) == len(SIX)
    ctext = comp.get_text(" ", strip=True)
    assert "your page" in ctext and "How fast does a kettle boil?" in ctext
    # Every competition table lists the page and the three usable competitors.
    for table in comp.find_all("table"):
        assert len(table.find("tbody").find_all("tr")) == 4
    assert all(len(q.sources) == 4 for q in result.competition)
    # Summary names the recommendation and the competition.
    summary = soup.find(id="summary").get_text(" ", strip=True)
    assert "Recommended rewrite" in summary and "Competitors" in summary and "simulated" in summary


def test_report_is_inert_self_contained_html(scripted: Any) -> None:
    result, _, _ = scripted
    html = result.report.read_text(encoding="utf-8")
    csp = soup_of(result.report).find("meta", attrs={"http-equiv": "Content-Security-Policy"})["content"]
    assert "default-src 'none'" in csp and "script-src" not in csp
    assert "<script" not in html.lower() and "alert(" in html  # the hostile title is there, as text
    assert "&lt;script&gt;alert(&quot;t&quot;)&lt;/script&gt;" in html
    assert not re.search(r"""(src|href)=["']?https?://""", html)


@pytest.mark.browser
def test_report_opens_in_headless_chromium(scripted: Any, tmp_path: Path) -> None:
    chromium = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not chromium:
        pytest.skip("headless Chromium is not installed")
    result, _, _ = scripted
    args = [
        chromium,
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp_path / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]
    url = result.report.resolve().as_uri()
    dom = subprocess.run(args + ["--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="rewrite"' in dom.stdout and 'id="competitors"' in dom.stdout and "<svg" in dom.stdout
    assert "<script" not in dom.stdout.lower()
    for bad in ("Uncaught", "Refused to"):
        assert bad not in dom.stderr, dom.stderr[-2000:]
    shot = tmp_path / "audit.png"
    subprocess.run(
        args + [f"--screenshot={shot}", "--window-size=1200,1600", url], check=False, capture_output=True, timeout=90
    )
    assert shot.is_file() and shot.stat().st_size > 10_000


# ------------------------------------------------------------------------------------ resume, dry run, costs


def test_the_same_audit_resumes_its_run_without_a_model_call(scripted: Any, web: Web, tmp_path: Path) -> None:
    result, server, settings = scripted
    before = len(server.requests)
    # No cache: a resumed cell costs nothing, a recomputed one would call the server.
    again = audit(
        web.page,
        SIX,
        web.competitors,
        settings=settings.replace(cache=False),
        options=SCRIPTED,
        out_dir=tmp_path / "again",
    )
    assert again.run_id == result.run_id
    assert again.computed_cells == 0 and again.resumed_cells == again.planned_cells == result.planned_cells
    assert len(server.requests) == before
    assert again.recommendation is not None and again.recommendation.strategy == result.recommendation.strategy


def test_failed_cells_are_reported_and_the_same_audit_retries_only_those(web: Web, tmp_path: Path) -> None:
    from geoaudit.testing import Reply

    down = {"on": True}

    def flaky(req: dict[str, Any]) -> Any:
        if down["on"] and QUERIES[1] in last_user_message(req):
            return Reply(status=500)
        return engine(req)

    options = AuditOptions(strategies=("identity", "rank"), rates=(0.0, 1.0), budget="quick", check=False, **FAST)  # type: ignore[arg-type]
    with FakeOpenAIServer(flaky) as server:
        settings = fake_settings(server, tmp_path / "home")
        first = audit(web.page, QUERIES, web.rivals, settings=settings, options=options, out_dir=tmp_path / "out")
        assert first.failed_cells > 0 and first.run_status == "failed" and first.report is not None
        assert "Incomplete" in soup_of(first.report).find(id="summary").get_text(" ", strip=True)
        down["on"] = False
        seen = len(server.requests)
        again = audit(web.page, QUERIES, web.rivals, settings=settings, options=options, out_dir=tmp_path / "out")
        new = server.requests[seen:]
    assert again.run_id == first.run_id and again.failed_cells == 0 and again.run_status == "complete"
    assert (
        again.computed_cells == first.failed_cells and again.resumed_cells == first.planned_cells - first.failed_cells
    )
    # Only the failed query's cells were asked again.
    assert new and all(QUERIES[1] in last_user_message(r) for r in new)


def test_dry_run_fetches_and_plans_without_a_model_call(web: Web, tmp_path: Path) -> None:
    with FakeOpenAIServer(engine) as server:
        settings = fake_settings(server, tmp_path / "home")
        plan = plan_audit(web.page, QUERIES, web.competitors, settings=settings, options=SCRIPTED)
        assert server.requests == []
    assert not settings.runs_dir.exists()  # no run was opened
    assert plan.runnable and len(plan.used_competitors) == 3 and plan.seeds == 1 and plan.samples == 2
    # fluency rewrites each of the 4 pages (one chunk each); statistics-grounded too; rules need no model.
    assert plan.calls["rewrite"] == 8 and plan.calls["selection"] == 0
    assert plan.calls["answer"] == 2 * 1 * 2 * (1 + 5 * (2 * 3 - 1))
    assert plan.cost is None and "no price" in plan.cost_note
    assert plan.prompt_tokens > 0 and plan.completion_tokens > 0
    text = "\n".join(plan.lines())
    assert "at most" in text and "cost: unknown" in text


def test_cli_dry_run_prints_the_plan_and_prices_a_priced_model(web: Web, tmp_path: Path) -> None:
    from geoaudit.cli import app

    with FakeOpenAIServer(engine) as server:
        args = [
            "--data-dir",
            str(tmp_path / "home"),
            "audit",
            web.page,
            "-q",
            QUERIES[0],
            "-q",
            QUERIES[1],
            "-c",
            web.rivals[0],
            "-c",
            web.rivals[1],
            "--allow-private",
            "--delay",
            "0",
            "--budget",
            "quick",
            "--model",
            "openai/gpt-4o-mini",
            "--api-base",
            server.url,
            "--dry-run",
        ]
        r = CliRunner().invoke(app, args)
        assert r.exit_code == 0, r.output
        assert server.requests == []
        assert "nothing was sent to a model" in r.stdout and "model calls, at most" in r.stdout
        cost = re.search(r"cost: at most \$(\d+\.\d+)", r.stdout)
        assert cost and float(cost.group(1)) > 0 and "price map" in r.stdout
        # A cap below the estimate refuses before any call, with exit code 2.
        capped = CliRunner().invoke(app, [a for a in args if a != "--dry-run"] + ["--max-cost", "0.000001"])
        assert capped.exit_code == 2 and "above --max-cost" in capped.stderr
        assert server.requests == [] and not (tmp_path / "home" / "runs").exists()


def test_a_numeric_budget_picks_the_largest_rung_that_fits(web: Web, tmp_path: Path) -> None:
    from geoaudit.errors import ConfigError

    with FakeOpenAIServer(engine) as server:
        settings = fake_settings(server, tmp_path / "home")
        opts = dict(strategies=("identity", "fluency"), **FAST)
        small = plan_audit(web.page, QUERIES, web.rivals, settings=settings, options=AuditOptions(budget="40", **opts))  # type: ignore[arg-type]
        large = plan_audit(
            web.page, QUERIES, web.rivals, settings=settings, options=AuditOptions(budget="5000", **opts)
        )  # type: ignore[arg-type]
        assert small.total_calls <= 40 < large.total_calls <= 5000
        assert (small.seeds, small.samples) < (large.seeds, large.samples)
        with pytest.raises(ConfigError, match="below the smallest audit"):
            plan_audit(web.page, QUERIES, web.rivals, settings=settings, options=AuditOptions(budget="3", **opts))  # type: ignore[arg-type]
        assert server.requests == []


def test_local_files_audit_offline_and_a_markdown_draft_skips_the_web_checks(tmp_path: Path) -> None:
    page = tmp_path / "draft.md"
    page.write_text(
        "# Electric kettles\n\nA 3 kW kettle boils one litre of water in about 94 seconds. It switches "
        "itself off at the boil.\n",
        encoding="utf-8",
    )
    (tmp_path / "rivals").mkdir()
    (tmp_path / "rivals" / "a.html").write_bytes(RIVAL_A)
    (tmp_path / "rivals" / "c.html").write_bytes(RIVAL_C)
    (tmp_path / "empty.html").write_bytes(SPA)
    listing = tmp_path / "competitors.txt"
    listing.write_text("# my rivals\nrivals/a.html\nrivals/c.html\nempty.html\nmissing.html\n", encoding="utf-8")
    from geoaudit.audit import read_competitors_file

    with FakeOpenAIServer(engine) as server:
        settings = fake_settings(server, tmp_path / "home")
        result = audit(
            str(page),
            QUERIES,
            read_competitors_file(listing),
            settings=settings,
            out_dir=tmp_path / "out",
            options=AuditOptions(strategies=("identity", "key-facts"), rates=(0.0, 1.0), budget="quick"),
        )
    reasons = {Path(c.spec).name: c.reason for c in result.plan.competitors if not c.used}
    assert set(reasons) == {"empty.html", "missing.html"}
    assert (
        "no main text" in reasons["empty.html"]
        and "neither an http(s) URL nor an existing file" in reasons["missing.html"]
    )
    assert result.simulated and len(result.plan.used_competitors) == 2
    assert result.check is None and "markdown draft" in result.check_note
    assert "markdown draft" in soup_of(result.report).find(id="readiness").get_text(" ", strip=True)


def test_cli_dry_run_json_is_the_plan(web: Web, tmp_path: Path) -> None:
    from geoaudit.cli import app

    r = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "home"),
            "audit",
            web.page,
            "-q",
            QUERIES[0],
            "-c",
            web.rivals[0],
            "-c",
            web.unreachable,
            "--allow-private",
            "--delay",
            "0",
            "--timeout",
            "2",
            "--dry-run",
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    plan = json.loads(r.stdout)
    assert plan["problem"] == "" and plan["bench"]
    assert plan["model"] == "local/smollm2" and plan["cost"] == 0.0 and plan["total_calls"] > 0
    assert [c["used"] for c in plan["competitors"]] == [True, False]


# ------------------------------------------------------------------------------------ when the page itself fails


def test_a_page_that_extracts_to_nothing_still_gets_a_report_and_exit_code_1(web: Web, tmp_path: Path) -> None:
    from geoaudit.cli import app

    out = tmp_path / "report"
    r = CliRunner().invoke(
        app,
        [
            "--data-dir",
            str(tmp_path / "home"),
            "audit",
            web.empty,
            "-q",
            QUERIES[0],
            "-c",
            web.rivals[0],
            "--allow-private",
            "--delay",
            "0",
            "--no-agent-fetch",
            "-o",
            str(out),
        ],
    )
    assert r.exit_code == 1, r.output
    assert "audit incomplete" in r.stderr and "your page could not be used" in r.stderr
    soup = soup_of(out / "index.html")
    assert "not run" in soup.find(id="summary").get_text(" ", strip=True)
    readiness = soup.find(id="readiness").get_text(" ", strip=True)
    assert "extract." in readiness  # the check explains what an extractor got from the page
    assert not (tmp_path / "home" / "runs").exists()


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("audit", "https://example.org/p", "-c", "https://example.org/r"), "no query given"),
        (("audit", "https://example.org/p", "-q", "q"), "no competitor given"),
        (("audit", "https://example.org/p", "-q", "q", "-c", "x", "--budget", "lots"), "budget must be"),
        (
            ("audit", "not-a-page", "-q", "q", "-c", "https://example.org/r"),
            "neither an http(s) URL nor an existing file",
        ),
        (
            ("audit", "https://example.org/p", "-q", "q", "-c", "https://example.org/r", "--strategies", "nope"),
            "unknown strategy",
        ),
        (("audit", "https://example.org/p", "-q", "q", "--competitors", "missing.txt"), "no such competitors file"),
        # Checked before anything is fetched (example.org is never contacted).
        (
            ("audit", "https://example.org/p", "-q", "q", "-c", "https://example.org/r", "--model", "gpt"),
            "not a litellm model string",
        ),
        (
            ("audit", "https://example.org/p", "-q", "q", "-c", "https://example.org/r", "--k", "1"),
            "k must be at least 2",
        ),
    ],
)
def test_bad_input_is_one_error_line_with_exit_code_2(args: tuple[str, ...], needle: str) -> None:
    from geoaudit.cli import app

    r = CliRunner().invoke(app, list(args))
    assert r.exit_code == 2, r.output
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and needle in lines[0], r.stderr


# ------------------------------------------------------------------------------------ the embedded model


def test_on_the_embedded_model_the_defaults_are_the_strategies_that_work_there(web: Web, tmp_path: Path) -> None:
    """Planning loads no model: the default strategies, stages and costs of an embedded audit."""
    settings = Settings(data_dir=tmp_path / "home", user_agent="geoaudit-test/1.0")
    plan = plan_audit(web.page, QUERIES, web.rivals, settings=settings, options=AuditOptions(**FAST))  # type: ignore[arg-type]
    # The controls and every deterministic rewrite; no LLM rewrite (SmolLM2's rewrites fail the guards).
    assert plan.strategies == (
        "identity",
        "rank",
        "answer-first",
        "key-facts",
        "keyword-stuffing-rule",
        "llms-txt-structure",
    )
    assert plan.calls["rewrite"] == 0 and plan.cost == 0.0 and "no charge" in plan.cost_note
    assert (
        plan.answers == "base" and plan.primary == "selection" and plan.stages == ("relevance", "selection", "answer")
    )
    assert plan.source_budget == 600 and (plan.seeds, plan.samples) == (2, 2)
    assert not settings.runs_dir.exists()


@pytest.mark.embedded
def test_audit_end_to_end_on_the_embedded_model(web: Web, tmp_path: Path) -> None:
    settings = Settings(data_dir=tmp_path / "home", user_agent="geoaudit-test/1.0")
    # Small: 2 queries, 3 usable competitors, the two controls and one deterministic rewrite, short sources.
    options = AuditOptions(
        strategies=("identity", "rank", "answer-first"),
        rates=(0.0, 1.0),
        budget="quick",
        source_budget=250,
        max_tokens=32,
        **FAST,
    )  # type: ignore[arg-type]
    result = audit(web.page, QUERIES, web.competitors, settings=settings, options=options, out_dir=tmp_path / "out")
    plan = result.plan
    assert result.simulated and result.run_status == "complete" and len(plan.used_competitors) == 3
    assert result.stats is not None and result.stats.engine is not None
    assert result.stats.options["metrics"][0] == "selection"
    # Selection readings for every shown page, per query; the page's retrieval rank is known.
    assert len(result.competition) == 2
    for q in result.competition:
        shown = [s for s in q.sources if s.shown]
        assert len(shown) == 4 and abs(sum(s.selection or 0 for s in shown) - 1) < 1e-6
        assert q.answer is not None and q.answer.samples  # the base condition is answered (engine calibration)
    assert all(e.rank_before is not None for e in result.effects["rank"])
    # answer-first is built from the page's own sentences: nothing invented, one text per query.
    texts = result.rewrites["answer-first"]
    assert len(texts) == 2 and {t.query for t in texts} == set(QUERIES) and not any(t.fabrications for t in texts)
    soup = soup_of(result.report)
    assert soup.find(id="competitors") is not None and soup.find(id="engine") is not None
    assert "selection" in soup.find(id="competitors").get_text(" ", strip=True)


# ------------------------------------------------------------------------------------ the recommendation rules


class _Stats:
    """What recommend() reads of a StatsResult: the advantage rows of one metric per strategy."""

    def __init__(self, rows: dict[str, list[tuple[float, str]]]) -> None:
        import pandas as pd

        self.frames = {
            s: pd.DataFrame([{"rate": r, "estimate": e, "verdict": v} for r, (e, v) in enumerate(x)])
            for s, x in rows.items()
        }

    def rows_for(self, strategy: str, metric: str, comparison: str) -> Any:
        return self.frames[strategy]


def _rewrite(strategy: str, status: str = "ok") -> Any:
    from geoaudit.audit import RewriteText

    return RewriteText(strategy, "", ("q1",), "new text", "old text", status, "", "test")


def test_recommend_prefers_an_established_gain_and_never_a_significant_loss() -> None:
    from geoaudit.audit.findings import recommend
    from geoaudit.strategies import load_strategies

    reg = load_strategies()
    strategies = reg.resolve(["identity", "rank", "key-facts", "answer-first", "llms-txt-structure"])
    rewrites = {s.name: [_rewrite(s.name)] for s in strategies}
    # answer-first has the largest estimate but a significant loss at one rate; llms-txt-structure a
    # larger estimate than key-facts but nothing established: key-facts' significant gain wins.
    stats = _Stats(
        {
            "key-facts": [(0.05, "better"), (0.02, "no evidence")],
            "answer-first": [(0.9, "better"), (-0.1, "worse")],
            "llms-txt-structure": [(0.2, "no evidence"), (0.1, "no evidence")],
            "rank": [(0.5, "better")],
            "identity": [(0.0, "no evidence")],
        }
    )
    rec, why = recommend(stats, {}, rewrites, strategies, "selection")  # type: ignore[arg-type]
    assert rec is not None and rec.strategy == "key-facts" and rec.established and "significantly raised" in why
    # Without it, a positive estimate alone is not enough: the candidate must help on more queries than it hurts.
    del rewrites["key-facts"]
    from geoaudit.audit import QueryEffect

    def effects(*directions: str) -> list[QueryEffect]:
        return [QueryEffect(f"q{i}", f"query {i}", {0.0: 0.1}, d) for i, d in enumerate(directions)]

    rec, why = recommend(stats, {"llms-txt-structure": effects("higher", "lower")}, rewrites, strategies, "selection")  # type: ignore[arg-type]
    assert rec is None and "helping on no more queries than it hurt" in why
    rec, why = recommend(
        stats,
        {"llms-txt-structure": effects("higher", "lower", "higher")},
        rewrites,
        strategies,  # type: ignore[arg-type]
        "selection",
    )
    assert rec is not None and rec.strategy == "llms-txt-structure" and not rec.established and "not a proven" in why
    # A rewrite that failed the guards for every query is not a candidate; nothing positive: nothing recommended.
    rewrites["llms-txt-structure"] = [_rewrite("llms-txt-structure", "failed")]
    rec, why = recommend(stats, {}, rewrites, strategies, "selection")  # type: ignore[arg-type]
    assert rec is None and "No rewrite is recommended" in why and "answer-first significantly lowered it" in why


def test_an_unpriced_model_stays_unpriced_after_a_router_registered_it() -> None:
    # litellm's Router adds an empty price-map entry for each unpriced deployment; cost_per_token
    # then answers 0. An audit planned in the same process must still say "unknown", not "$0".
    from geoaudit.audit.plan import price
    from geoaudit.llm import import_litellm

    litellm = import_litellm()
    model = "openai/geoaudit-unpriced-probe"
    assert price(model, 1000, 100) is None
    litellm.Router(
        model_list=[
            {
                "model_name": model,
                "litellm_params": {"model": model, "api_base": "http://127.0.0.1:9/v1", "api_key": "x"},
            }
        ]
    )
    assert price(model, 1000, 100) is None
    assert price("openai/gpt-4o-mini", 1000, 100) > 0  # a priced model keeps its price
