"""Property-based fuzzing of every parser of untrusted input (issue 11, "beyond the list").

Properties, for any input hypothesis can build:

* **Only the project's errors escape.** A parser either returns or raises a
  :class:`~geoaudit.errors.GeoauditError` (which the CLI turns into one line); any other exception
  is a bug.
* **Bounded work.** Each parser is also fed *amplified* inputs (a drawn fragment repeated
  thousands of times), the shape that exposes a pattern that rescans text. Time is not asserted
  here (a loaded machine would make that flaky): ``tests/test_regex_linearity.py`` proves the
  patterns linear, and the long run below uses a deadline as a detector.
* **Escaping round-trips.** Report HTML never carries a raw ``<`` from its input, and unescaping
  gives the input back.

Profiles: ``ci`` (default: few derandomized examples, well under a minute) and ``long``
(``GEOAUDIT_FUZZ_EXAMPLES=N`` examples per test, random, with a deadline of
``GEOAUDIT_FUZZ_DEADLINE`` seconds, default 10, and failing examples saved under
``GEOAUDIT_FUZZ_DB`` when set)::

    GEOAUDIT_FUZZ_EXAMPLES=2000 PYTHONPATH=$PWD python -m pytest tests/test_fuzz.py -p no:cacheprovider
"""

from __future__ import annotations

import asyncio
import gzip
import html
import json
import math
import os
import re
import tempfile
from datetime import timedelta
from pathlib import Path
from typing import Any

import httpx
import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st
from hypothesis.configuration import set_hypothesis_home_dir
from hypothesis.database import DirectoryBasedExampleDatabase

from geoaudit.errors import GeoauditError

# ------------------------------------------------------------------------------------------ profiles

# Hypothesis keeps its files (failing-example patches) out of the repository.
set_hypothesis_home_dir(Path(tempfile.gettempdir()) / "geoaudit-hypothesis")
_SLOW_OK = [HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.filter_too_much]
settings.register_profile(
    "ci", max_examples=15, deadline=None, derandomize=True, database=None, suppress_health_check=_SLOW_OK
)
settings.register_profile(
    "long",
    max_examples=int(os.environ.get("GEOAUDIT_FUZZ_EXAMPLES") or 0) or 1000,
    deadline=timedelta(seconds=float(os.environ.get("GEOAUDIT_FUZZ_DEADLINE") or 10)),
    database=DirectoryBasedExampleDatabase(os.environ["GEOAUDIT_FUZZ_DB"])
    if os.environ.get("GEOAUDIT_FUZZ_DB")
    else None,
    suppress_health_check=_SLOW_OK,
    print_blob=True,
)
settings.load_profile("long" if os.environ.get("GEOAUDIT_FUZZ_EXAMPLES") else "ci")


# ------------------------------------------------------------------------------------------ inputs

# Fragments that have broken parsers before, or are meant to: markup, entities, control and
# non-BMP characters, citation and sentence punctuation, names, numbers, URLs, TOML and JSON syntax.
SNIPPETS = [
    "<",
    ">",
    "&",
    "&amp;",
    "&#0;",
    "&#x110000;",
    "&lt;script&gt;",
    "<script>alert(1)</script>",
    "<!--",
    "-->",
    "<![CDATA[",
    "]]>",
    "<!DOCTYPE x [<!ENTITY e SYSTEM 'file:///etc/passwd'>]>",
    "&e;",
    "\x00",
    "\r\n",
    "\u2028",
    "\ufeff",
    "\ud7ff",
    "\U0001f600",
    "\u202e",
    " ",
    "\t",
    "\n\n",
    "[1]",
    "[1, 2]",
    "[1-3]",
    "[2–40]",
    "[Source 2]",
    "[0]",
    "[99999999]",
    "[",
    "]",
    ". ",
    "! ",
    "?",
    "…",
    "Dr. ",
    "e.g. ",
    "U.S. ",
    "World Health Organization",
    "according to ",
    " says ",
    "A-",
    "&Co",
    "42",
    "1,000.50",
    "http://",
    "https://x.example/a?b=c",
    "www.",
    "a.b.c.com",
    "example.org/p",
    '"',
    "“",
    "”",
    "'",
    "’",
    "#",
    "## ",
    "- ",
    "* ",
    "1. ",
    "|",
    "```",
    "~~~",
    "\\",
    "{text}",
    "{query}",
    "[/oops]",
    "[bold]",
    "%s",
    "{}",
    "null",
    "NaN",
    "Infinity",
    "-0",
    "1e999",
]
fragment = st.one_of(st.text(max_size=20), st.sampled_from(SNIPPETS))
hostile_text = st.lists(fragment, max_size=40).map("".join)
# The shape that exposes rescanning: one fragment repeated thousands of times.
amplified_text = st.tuples(st.lists(fragment, min_size=1, max_size=4).map("".join), st.integers(500, 5000)).map(
    lambda t: (t[0] * t[1])[:60_000]
)
any_text = st.one_of(hostile_text, amplified_text)


def _tag(inner: st.SearchStrategy[str]) -> st.SearchStrategy[str]:
    names = st.sampled_from(
        [
            "p",
            "div",
            "a",
            "script",
            "style",
            "h1",
            "h2",
            "li",
            "ul",
            "table",
            "td",
            "meta",
            "title",
            "article",
            "nav",
            "time",
            "link",
            "html",
            "body",
            "head",
            "svg",
            "x-y",
        ]
    )
    attrs = st.lists(
        st.tuples(
            st.sampled_from(
                ["href", "rel", "content", "name", "property", "type", "charset", "datetime", "lang", "class", "onload"]
            ),
            hostile_text,
        ),
        max_size=3,
    )
    return st.tuples(names, attrs, inner, st.booleans()).map(
        lambda t: f"<{t[0]} " + " ".join(f'{k}="{v}"' for k, v in t[1]) + f">{t[2]}" + (f"</{t[0]}>" if t[3] else "")
    )


html_text = st.recursive(hostile_text, lambda inner: st.lists(_tag(inner), max_size=6).map("".join), max_leaves=30)
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True), hostile_text)
json_value = st.recursive(
    json_scalar,
    lambda inner: st.one_of(st.lists(inner, max_size=5), st.dictionaries(hostile_text, inner, max_size=5)),
    max_leaves=20,
)


def only_project_errors(fn: Any, *args: Any, **kwargs: Any) -> Any:
    """Call ``fn``; a GeoauditError is an accepted outcome (returned as None), anything else fails."""
    try:
        return fn(*args, **kwargs)
    except GeoauditError:
        return None


# ------------------------------------------------------------------------------------------ HTML extraction


@given(
    st.one_of(html_text, st.binary(max_size=3000), amplified_text),
    st.sampled_from([None, "text/html", "text/html; charset=koi8-r", "text/html; charset=bogus"]),
)
def test_extract_html_never_raises(page: str | bytes, content_type: str | None) -> None:
    from geoaudit.documents import decode_html, extract_html

    doc = extract_html(page, "https://fuzz.example/p", content_type=content_type)
    assert isinstance(doc.text, str) and isinstance(doc.title, str) and len(doc.id) == 16
    assert all(link.startswith(("http://", "https://")) for link in doc.metadata.get("links", []))
    if isinstance(page, bytes):
        text, charset = decode_html(page, content_type)
        assert isinstance(text, str) and charset


# ------------------------------------------------------------------------------------------ robots.txt

robots_line = st.one_of(
    st.tuples(
        st.sampled_from(["User-agent", "user-agent", "Disallow", "Allow", "Crawl-delay", "Sitemap", "Host", "X"]),
        st.one_of(
            hostile_text, st.sampled_from(["*", "/", "/*", "/*$", "/a*b*c*d*e*f", "$", "nan", "1e9", "-3", "inf"])
        ),
    ).map(lambda t: f"{t[0]}: {t[1]}"),
    hostile_text,
)
robots_body = st.one_of(
    st.lists(robots_line, max_size=30).map("\n".join).map(str.encode),
    st.binary(max_size=2000),
    st.tuples(robots_line, st.integers(100, 3000)).map(lambda t: ((t[0] + "\n") * t[1]).encode()),
)


@given(robots_body, st.one_of(hostile_text, amplified_text), hostile_text, st.sampled_from([200, 301, 404, 500]))
def test_robots_txt_handling_never_raises(body: bytes, path: str, agent: str, status: int) -> None:
    from geoaudit.fetch import Fetcher, FetchOptions

    def handler(request: httpx.Request) -> httpx.Response:
        if request.url.path == "/robots.txt":
            headers = {"Location": "/robots.txt"} if status == 301 else {"Content-Type": "text/plain"}
            return httpx.Response(status, headers=headers, content=body)
        return httpx.Response(200, content=b"ok")

    async def public(host: str, port: int) -> list[str]:
        return ["93.184.216.34"]  # nothing connects: the mock transport answers

    async def run() -> str | None:
        async with httpx.AsyncClient(transport=httpx.MockTransport(handler)) as client:
            fetcher = Fetcher(FetchOptions(delay=0, retries=0, backoff=0), client=client, resolver=public)
            url = "http://robots.fuzz/" + path.lstrip("/")
            try:
                httpx.URL(url)
            except (httpx.InvalidURL, ValueError):
                return None
            return await fetcher.robots_verdict(url, agent or "geoaudit")

    verdict = asyncio.run(run())
    assert verdict is None or isinstance(verdict, str)


# ------------------------------------------------------------------------------------------ sitemaps

sitemap_xml = st.recursive(
    hostile_text,
    lambda inner: st.lists(
        st.tuples(st.sampled_from(["urlset", "sitemapindex", "url", "sitemap", "loc", "lastmod", "x:loc"]), inner).map(
            lambda t: f"<{t[0]}>{t[1]}</{t[0]}>"
        ),
        max_size=5,
    ).map("".join),
    max_leaves=20,
).map(lambda body: '<?xml version="1.0"?>' + body)


@given(st.one_of(sitemap_xml, hostile_text).map(str.encode) | st.binary(max_size=2000), st.booleans())
def test_parse_sitemap_raises_only_input_errors(data: bytes, gzipped: bool) -> None:
    from geoaudit.crawl import parse_sitemap

    if gzipped:
        data = gzip.compress(data)
    result = only_project_errors(parse_sitemap, data, "fuzz", max_bytes=100_000)
    if result is not None:
        pages, children = result
        assert all(isinstance(u, str) and u for u in pages + children)


# ------------------------------------------------------------------------------------------ bench loaders

_OWN_KEYS = [
    "id",
    "query",
    "documents",
    "target",
    "target_url",
    "tags",
    "domain",
    "text",
    "url",
    "title",
    "candidates",
    "sources",
    "sugg_idx",
    "cleaned_text",
    "raw_text",
]
row = st.dictionaries(st.sampled_from(_OWN_KEYS), json_value, max_size=8)
plausible_doc = st.fixed_dictionaries({"text": hostile_text}, optional={"url": hostile_text, "title": json_value})
plausible_own = st.fixed_dictionaries(
    {"query": hostile_text, "documents": st.lists(st.one_of(plausible_doc, json_value), max_size=4)},
    optional={
        "id": json_value,
        "target": json_value,
        "target_url": json_value,
        "tags": json_value,
        "domain": json_value,
    },
)
plausible_geo = st.fixed_dictionaries(
    {
        "query": json_value,
        "sources": st.lists(
            st.one_of(
                st.fixed_dictionaries(
                    {}, optional={"url": json_value, "raw_text": json_value, "cleaned_text": json_value}
                ),
                json_value,
            ),
            max_size=6,
        ),
        "sugg_idx": json_value,
    },
    optional={"tags": json_value},
)


def _jsonl(rows: list[Any], junk: bytes) -> bytes:
    lines = [json.dumps(r, allow_nan=True).encode() for r in rows]
    return b"\n".join(lines) + (b"\n" + junk if junk else b"")


@given(
    st.lists(st.one_of(plausible_own, plausible_geo, row, json_value), max_size=5),
    st.binary(max_size=50),
    st.integers(1, 3),
)
def test_bench_jsonl_loaders_raise_only_project_errors(rows: list[Any], junk: bytes, k: int) -> None:
    from geoaudit.bench import load_bench

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bench.jsonl"
        path.write_bytes(_jsonl(rows, junk))
        bench = only_project_errors(load_bench, path, k=k)
        if bench is not None:
            assert all(0 <= item.target < len(item.documents) and len(item.documents) >= k for item in bench)


candidate = st.one_of(
    hostile_text,
    st.sampled_from(
        [
            "pages/a.html",
            "pages/b.md",
            "../outside.txt",
            "/etc/hostname",
            "file:///etc/hostname",
            "pages/link.html",
            "https://x.example/a",
            "pages",
            "~/x",
            "pages/../../outside.txt",
            "PAGES/A.HTML",
            "",
            "a" * 300,
            "pages/" + "b/" * 2000 + "x",
            "pages/a.html\x00.txt",
        ]
    ),
)


@given(
    st.lists(
        st.fixed_dictionaries(
            {"query": hostile_text, "candidates": st.one_of(st.lists(candidate, max_size=4), json_value)},
            optional={"target": st.one_of(candidate, json_value), "id": json_value},
        ),
        max_size=3,
    ),
    st.lists(st.one_of(plausible_doc, json_value), max_size=3),
    html_text,
)
def test_bench_folder_raises_only_project_errors_and_stays_inside(rows: list[Any], docs: list[Any], page: str) -> None:
    from geoaudit.bench import load_bench

    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp) / "bench"
        (root / "pages").mkdir(parents=True)
        outside = Path(tmp) / "outside.txt"
        outside.write_text("OUTSIDE-SECRET words enough to be a document", encoding="utf-8")
        (root / "pages" / "a.html").write_text(page or "<p>a</p>", encoding="utf-8", errors="surrogatepass")
        (root / "pages" / "b.md").write_text("# B\n\nsome text", encoding="utf-8")
        (root / "pages" / "link.html").symlink_to(outside)
        (root / "queries.jsonl").write_bytes(_jsonl(rows, b""))
        if docs:
            (root / "documents.jsonl").write_bytes(_jsonl(docs, b""))
        bench = only_project_errors(load_bench, root, k=1)
        if bench is not None:
            assert not any("OUTSIDE-SECRET" in d.text for item in bench for d in item.documents)


@given(
    st.lists(
        st.tuples(
            st.one_of(st.integers(), hostile_text, st.none()),
            st.one_of(hostile_text, st.none()),
            st.one_of(hostile_text, st.none()),
        ),
        max_size=12,
    ),
    st.sampled_from(["ok", "missing-column", "extra-column", "garbage", "empty"]),
    st.one_of(st.none(), json_value),
    st.integers(1, 3),
)
def test_cseo_parquet_loader_raises_only_project_errors(
    rows: list[tuple[Any, Any, Any]], shape: str, selected: Any, k: int
) -> None:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from geoaudit.bench import load_bench

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "retail-00000-of-00001.parquet"
        if shape == "garbage":
            path.write_bytes(b"PAR1" + json.dumps(rows, default=str).encode() + b"PAR1")
        else:
            qids = [r[0] if not isinstance(r[0], int) else r[0] % 10**9 for r in rows]
            cols = {
                "query_id": pa.array([str(q) if q is not None else None for q in qids]),
                "query": pa.array([r[1] for r in rows], pa.string()),
                "document": pa.array([r[2] for r in rows], pa.string()),
            }
            if shape == "missing-column":
                cols.pop("document")
            if shape == "extra-column":
                cols["score"] = pa.array([1.5] * len(rows))
            if shape == "empty":
                cols = {name: arr.slice(0, 0) for name, arr in cols.items()}
            pq.write_table(pa.table(cols), path)
        if selected is not None:
            (Path(tmp) / "selected_docs.json").write_text(json.dumps(selected, allow_nan=True), encoding="utf-8")
        bench = only_project_errors(load_bench, path, k=k)
        if bench is not None:
            assert all(0 <= item.target < len(item.documents) for item in bench)


# ------------------------------------------------------------------------------------------ strategy files

toml_value = st.recursive(
    st.one_of(st.booleans(), st.integers(-(2**63), 2**63 - 1), st.floats(allow_nan=True), hostile_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4), st.dictionaries(hostile_text, inner, max_size=4)),
    max_leaves=15,
)
strategy_doc = st.fixed_dictionaries(
    {
        "name": st.one_of(st.sampled_from(["fz", "fluency", "all", "Bad Name"]), toml_value),
        "title": toml_value,
        "description": toml_value,
        "kind": st.one_of(st.sampled_from(["llm-rewrite", "rank", "rule"]), toml_value),
        "version": toml_value,
        "origin": st.one_of(st.fixed_dictionaries({"paper": hostile_text, "method": hostile_text}), toml_value),
    },
    optional={
        "prompt": st.one_of(
            st.fixed_dictionaries(
                {"user": st.one_of(hostile_text, st.just("Rewrite {text} for {query}"))},
                optional={"system": hostile_text},
            ),
            toml_value,
        ),
        "constraints": st.one_of(
            st.fixed_dictionaries(
                {},
                optional={
                    "min_length_ratio": toml_value,
                    "max_length_ratio": toml_value,
                    "keep_structure": toml_value,
                    "forbid_new": st.one_of(
                        st.lists(st.sampled_from(["numbers", "quotes", "sources", "urls", "lies"])), toml_value
                    ),
                },
            ),
            toml_value,
        ),
        "postprocess": st.one_of(
            st.lists(st.sampled_from(["none", "fenced-block", "strip-chatter", "after-marker:X", "x"])), toml_value
        ),
        "query_aware": toml_value,
        "grounded": toml_value,
        "position": toml_value,
        "temperature": toml_value,
        "extra": toml_value,
    },
)


@given(strategy_doc, hostile_text, hostile_text)
def test_parse_strategy_raises_only_config_errors(data: dict[str, Any], text: str, query: str) -> None:
    from geoaudit.strategies import parse_strategy

    strategy = only_project_errors(parse_strategy, data, Path("fuzz.toml"))
    if strategy is None:
        return
    assert math.isfinite(strategy.constraints.min_length_ratio) and math.isfinite(strategy.constraints.max_length_ratio)
    assert 0.0 <= strategy.temperature <= 2.0
    rendered = only_project_errors(strategy.render, text, title=text, query=query)
    assert rendered is None or all(isinstance(m, str) for m in rendered)
    json.dumps(strategy.to_dict(), allow_nan=False)
    strategy.instructions()


@given(st.one_of(hostile_text, st.binary(max_size=500).map(lambda b: b.decode("latin-1"))), st.booleans())
def test_load_strategy_file_raises_only_config_errors(text: str, as_bytes: bool) -> None:
    from geoaudit.strategies import load_strategy_file

    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "fuzz.toml"
        if as_bytes:
            path.write_bytes(text.encode("latin-1", errors="replace"))
        else:
            path.write_text(text, encoding="utf-8", errors="surrogatepass")
        only_project_errors(load_strategy_file, path)


# ------------------------------------------------------------------------------------------ citations


@given(any_text, st.integers(0, 12))
def test_citation_parser_never_raises_and_stays_in_range(text: str, n_sources: int) -> None:
    from geoaudit.citations import find_citations, parse_answer, split_sentences, strip_citations

    valid, bad = find_citations(text, n_sources)
    assert all(0 <= i < n_sources for i in valid) and len(set(valid)) == len(valid)
    assert all(isinstance(b, str) for b in bad)
    sentences = split_sentences(text)
    assert all(s.strip() == s and s for s in sentences)
    for s in parse_answer(text, n_sources):
        assert all(0 <= i < n_sources for i in s.explicit)
    assert isinstance(strip_citations(text), str)


# ------------------------------------------------------------------------------------------ guards


@given(
    any_text,
    any_text,
    st.floats(0, 5),
    st.floats(0, 5),
    st.lists(st.sampled_from(["numbers", "quotes", "sources", "urls"]), unique=True),
)
def test_guards_never_raise_and_report_is_json(
    original: str, rewritten: str, lo: float, hi: float, forbid: list[str]
) -> None:
    from geoaudit import guards

    lo, hi = min(lo, hi), max(lo, hi)
    report = guards.check(original, rewritten, min_length_ratio=lo, max_length_ratio=hi, forbid_new=forbid)
    data = report.to_dict()
    json.dumps(data, allow_nan=False)
    assert 0.0 <= report.sentence_survival <= 1.0 and -1e-9 <= report.word_change <= 1.0 + 1e-9
    if len(original) + len(rewritten) < 2_000:  # within the budget the figure is difflib's own
        import difflib

        a, b = [w.lower() for w in guards.words(original)], [w.lower() for w in guards.words(rewritten)]
        exact = 0.0 if not a and not b else 1.0 - difflib.SequenceMatcher(a=a, b=b, autojunk=False).ratio()
        assert guards.word_change(original, rewritten) == pytest.approx(exact)
    flags = guards.fabrication_flags(original, rewritten)
    assert set(flags) == {"numbers", "quotes", "sources", "urls"}
    assert all(isinstance(x, str) for v in flags.values() for x in v)


# ------------------------------------------------------------------------------------------ report escaping

_OWN_TAGS = re.compile(r'</?(?:del|ins)>|<span class="note">|</span>')


@given(st.one_of(any_text, json_value))
def test_report_escape_round_trips(value: Any) -> None:
    from geoaudit.report import _e

    out = _e(value)
    assert not set("<>\"'") & set(out)
    assert html.unescape(out) == ("" if value is None else str(value))


@given(hostile_text, hostile_text)
def test_report_diff_of_hostile_documents_is_inert(original: str, rewritten: str) -> None:
    from geoaudit.report import _diff_html

    assume(len(original) < 6000 and len(rewritten) < 6000)
    left, right = _diff_html(original, rewritten)
    for side, source in ((left, original), (right, rewritten)):
        text = _OWN_TAGS.sub("", side)
        assert "<" not in text and ">" not in text  # only the report's own tags are markup
        # Each side is its own text again (the diff drops only leading blanks).
        assert html.unescape(text) == source.lstrip()


def test_report_diff_only_diffs_what_it_shows(monkeypatch: pytest.MonkeyPatch) -> None:
    # A word diff is quadratic on one repeated word; a 100,000-character hostile page took a minute.
    import geoaudit.report
    from geoaudit.report import _diff_html

    seen: list[int] = []
    real = geoaudit.report._word_tokens
    monkeypatch.setattr(geoaudit.report, "_word_tokens", lambda text: seen.append(len(text)) or real(text))
    left, right = _diff_html("the " * 25_000, "the " * 24_000 + "cat " * 1_000)
    assert max(seen) <= 6_200 and "more characters" in left and "more characters" in right


# ------------------------------------------------------------------------------------------ small parsers


@given(
    st.one_of(st.none(), hostile_text, st.sampled_from(["120", "1.5", "Wed, 21 Oct 2015 07:28:00 GMT", "nan", "-1"]))
)
def test_retry_after_is_none_or_a_sane_delay(value: str | None) -> None:
    from geoaudit._http import RETRY_AFTER_CEILING, retry_after

    seconds = retry_after(value)
    assert seconds is None or 0.0 <= seconds <= RETRY_AFTER_CEILING


@given(hostile_text)
def test_url_validation_raises_only_input_errors(url: str) -> None:
    from geoaudit.crawl import validate_url

    out = only_project_errors(validate_url, url)
    assert out is None or out.startswith(("http://", "https://"))


if __name__ == "__main__":  # pragma: no cover
    pytest.main([__file__, "-q", "-p", "no:cacheprovider"])
