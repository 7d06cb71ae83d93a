"""Deterministic transforms: they keep only page content, give the same text every time, survive
odd pages, and pass the fabrication/length guards on every demo-bench target."""

from __future__ import annotations

import hashlib
import json
import os
import re
import subprocess
import sys
from collections import Counter

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from geoaudit import guards as G
from geoaudit.bench import load_bench
from geoaudit.documents import Document, content_hash
from geoaudit.rewrite import rewrite
from geoaudit.strategies import load_strategies
from geoaudit.transforms import bm25_scores, parse_page, query_keywords

REG = load_strategies()
CONTENT = ("answer-first", "key-facts", "llms-txt-structure", "keyword-stuffing-rule")
QUERY = "How much do solar panels cost to install?"

PAGE = """# Solar Power at Home

Solar panels convert sunlight into electricity. Modern panels reach about 20% efficiency, says the Energy Saving Trust.

## Costs

- Installation costs fell sharply since 2010.
- Maintenance is cheap.

Installer Ann Lee put it plainly: "Most roofs pay back. Some take longer." See https://example.org/solar for a calculator.

```
code stays = "verbatim"
```

| year | price |
|---|---|
| 2020 | 5000 |

Panels last for decades and need little care."""

ODD_PAGES = {
    "empty": "",
    "blank": "  \n\n \t\n",
    "one-sentence": "Tea is best steeped for three minutes.",
    "one-word": "Tea",
    "heading-only": "# Just A Heading",
    "code-only": "```\nx = 1\n```",
    "unclosed-fence": "Intro line.\n\n```\nno end 42",
    "table-only": "| a | b |\n|---|---|\n| 1 | 2 |",
    "list-no-punctuation": "- Cheap Panels\n- Long Life\n- Quiet Running",
    "unbalanced-quote": 'He said "never give up. It pays. And then left.\n\nThe end came in 1999.',
    "curly-and-abbrev": "Dr. Smith says “costs fall. Prices too.” Per the IEA, solar is 30% cheaper.",
    "lines-no-blank": "Line One Here\nLine Two Here\nSolar costs fell 40% in 5 years\nSee example.com",
    "crlf": "# Title\r\n\r\nSolar panels cost less.\r\nThey last long.\r\n",
    "nested-headings": "# A\n\n## B\n\n### C\n\nSolar text here.\n\n#### D",
    "unicode": "# Café Ørsted\n\nLes panneaux coûtent 20 % de moins. 太陽光パネルは安い。 Ça marche.",
    "markers-only": "-\n\n>\n\n#\n\n---\n\n* * *",
}


def apply(name: str, text: str, title: str = "Solar Power at Home | Sunny Site", query: str = QUERY) -> str:
    s = REG.get(name)
    return s.rule_transform.apply(text, title=title, query=query, params=s.parameters)


def collapse(text: str) -> str:
    return " ".join(text.replace("\r", "\n").split())


_MARKER_RE = re.compile(r"^\s*(?:#{1,6}|>|-)\s+")
_INSERT_RE = re.compile(r" \((?:[A-Za-z]+(?:-[A-Za-z]+)*(?:, )?)+\)")  # a keyword may be "carry-on"


def foreign_sentences(name: str, original: str, output: str, title: str = "") -> list[str]:
    """Sentences of ``output`` that are not, whitespace aside, a piece of ``original``.

    Structure markers (#, >, -, ---) and the transform's own label ("Key facts") are not sentences;
    a title taken from the document title is allowed for llms-txt-structure; keyword-stuffing's
    bracketed keywords are removed first (they are checked separately).
    """
    orig = collapse(original)
    allowed = {"Key facts", collapse(re.sub(r"\s+[|·—–-]\s+.*$", "", title))}
    if name == "keyword-stuffing-rule":
        output = _INSERT_RE.sub("", output)
    bad = []
    for line in output.replace("\r", "\n").split("\n"):
        body = _MARKER_RE.sub("", line).strip()
        if not body or set(body) <= set("-*_ ") or body in allowed:
            continue
        for sent in G.sentences(body):
            if collapse(sent) not in orig:
                bad.append(sent)
    return bad


# --------------------------------------------------------------------------- each transform keeps only page content


@pytest.mark.parametrize("name", CONTENT)
def test_output_is_made_of_page_sentences(name: str) -> None:
    out = apply(name, PAGE)
    assert out != PAGE
    assert foreign_sentences(name, PAGE, out) == []
    assert G.fabrication_flags(PAGE, out) == {"numbers": [], "quotes": [], "sources": [], "urls": []}


def test_answer_first_leads_with_the_most_relevant_sentences() -> None:
    out = apply("answer-first", PAGE, query="Is maintenance cheap?")
    assert out.startswith("# Solar Power at Home\n\n> Maintenance is cheap.")  # best (and only) match first
    assert out.split("\n\n---\n\n", 1)[1] == PAGE.split("\n\n", 1)[1]  # then the page, unchanged
    two = apply("answer-first", PAGE, query="How much did installation costs fall, and how long do panels last?")
    lead = two.split("\n\n")[1]
    assert "Installation costs fell sharply since 2010." in lead and "Panels last for decades" in lead
    # Nothing in the page shares a word with the query: nothing to put first.
    assert apply("answer-first", PAGE, query="Which wombat breeds purr?") == PAGE


def test_bm25_scores_rank_by_query_terms() -> None:
    docs = ["Cats purr when happy.", "Dogs bark at cats and cats hiss.", "Fish swim."]
    s = bm25_scores("why do cats purr", docs)
    assert s[0] > s[1] > 0 == s[2]
    assert bm25_scores("", docs) == [0.0, 0.0, 0.0] and bm25_scores("cats", []) == []


def test_key_facts_lists_figures_quotes_and_sources() -> None:
    out = apply("key-facts", PAGE)
    facts = out.split("## Key facts\n\n", 1)[1].split("\n\n---\n\n", 1)[0].split("\n")
    assert facts == [
        "- Modern panels reach about 20% efficiency, says the Energy Saving Trust.",
        "- Installation costs fell sharply since 2010.",
        '- Installer Ann Lee put it plainly: "Most roofs pay back. Some take longer."',
        "- See https://example.org/solar for a calculator.",
    ]
    plain = "# Tea\n\nTea is nice. It is warm."
    assert apply("key-facts", plain) == plain


def test_llms_txt_keeps_every_word_in_the_new_layout() -> None:
    out = apply("llms-txt-structure", PAGE)
    lines = out.split("\n")
    assert lines[0] == "# Solar Power at Home" and lines[2].startswith("> ")
    assert "## Costs" in lines and "- Maintenance is cheap." in lines and 'code stays = "verbatim"' in out
    assert Counter(G.words(out)) == Counter(G.words(PAGE))  # moved, never dropped or repeated
    first = apply("llms-txt-structure", PAGE.replace("# Solar Power at Home\n\n", ""), title="Solar Guide | Sunny Site")
    assert first.startswith("# Solar Guide\n\n> ")  # no heading in the page: the title, site name cut


def test_keyword_stuffing_inserts_only_query_keywords_bounded() -> None:
    out = apply("keyword-stuffing-rule", PAGE)
    inserts = _INSERT_RE.findall(out)
    assert 1 <= len(inserts) <= 3
    added = [w for ins in inserts for w in G.words(ins)]
    assert set(added) <= set(query_keywords(QUERY)) and len(added) <= 10
    assert _INSERT_RE.sub("", out) == PAGE  # nothing else changed
    assert query_keywords("How much do 4K solar panels cost in 2024 for Japan's Roth IRA?") == [
        "solar",
        "panels",
        "cost",
        "Japan",
        "Roth",
        "IRA",
    ]
    # Short page: at most one inserted keyword per five words.
    short = "Panels are great value for most homes today."
    assert len(G.words(apply("keyword-stuffing-rule", short))) - len(G.words(short)) == 1


# --------------------------------------------------------------------------- deterministic


_DEMO_DIGEST = """
import hashlib, sys
from geoaudit.bench import load_bench
from geoaudit.strategies import load_strategies
reg = load_strategies()
h = hashlib.sha256()
for item in load_bench("demo").items:
    d = item.target_document
    for name in sys.argv[1:]:
        s = reg.get(name)
        h.update(s.rule_transform.apply(d.text, title=d.title, query=item.query, params=s.parameters).encode())
print(h.hexdigest())
"""


def test_same_output_every_time_and_in_every_process() -> None:
    for name in CONTENT:
        assert apply(name, PAGE) == apply(name, PAGE)
    # Hash randomisation changes set order between processes; the outputs must not depend on it.
    digests = set()
    for seed in ("1", "2", "3"):
        env = {**os.environ, "PYTHONHASHSEED": seed}
        proc = subprocess.run(
            [sys.executable, "-c", _DEMO_DIGEST, *CONTENT],
            capture_output=True,
            text=True,
            check=False,
            env=env,
            timeout=120,
        )
        assert proc.returncode == 0, proc.stderr
        digests.add(proc.stdout.strip())
    assert len(digests) == 1


# --------------------------------------------------------------------------- odd pages


@pytest.mark.parametrize("name", (*CONTENT, "identity"))
@pytest.mark.parametrize("kind", sorted(ODD_PAGES))
def test_odd_pages_do_not_break_a_transform(name: str, kind: str) -> None:
    text = ODD_PAGES[kind]
    out = apply(name, text)
    assert isinstance(out, str)
    assert foreign_sentences(name, text, out, title="Solar Power at Home | Sunny Site") == []
    flags = G.fabrication_flags(text, out)
    assert flags["numbers"] == flags["quotes"] == flags["urls"] == [], flags
    if not G.words(text):
        assert out == text  # nothing to work with: the page as it was
    # Through the rewrite path the guards decide; an odd page never raises.
    doc = Document.create("https://example.com/odd", text, title="Solar Power at Home | Sunny Site")
    res = rewrite(None, REG.get(name), doc, query=QUERY)
    assert res.implementation == "transform" and res.model == ""
    # The record tells the truth about the text it carries: a failure or "unchanged" serves the page
    # as it was, with a reason; "ok" serves the transform's output.
    if res.status == "ok":
        assert res.text == out and res.rewritten_hash == content_hash(out)
    else:
        assert res.status in {"unchanged", "failed"} and res.reason
        assert res.text == doc.text and res.rewritten_hash == doc.content_hash


def test_huge_page() -> None:
    para = (
        "Solar panels cost about 5000 dollars to install. Ann Lee says prices fell 40% since 2015. "
        "Maintenance is cheap and panels last for decades."
    )
    text = "# Big Page\n\n" + "\n\n".join(f"## Part {i}\n\n{para}" for i in range(600))  # ~18k words
    for name in CONTENT:
        out = apply(name, text)
        assert out != text and G.new_numbers(text, out) == [] and G.new_sources(text, out) == []


_LINE = st.one_of(
    st.text(alphabet=st.sampled_from(list("abcXYZ 19.,!?\"“”'()-#>*|`:/")), max_size=60),
    st.sampled_from(
        [
            "# Title Case Heading",
            "## Costs And Prices",
            "- List Item Here",
            "```",
            "| a | b |",
            "",
            'Dr. Ann Lee said "costs fell. Prices too."',
            "See www.example.com today.",
            "Sales rose 12.5% in 2020, says the World Bank.",
            "The End",
        ]
    ),
)


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(lines=st.lists(_LINE, max_size=12), query=st.text(alphabet=st.sampled_from(list("abc XYZ19?")), max_size=30))
def test_any_page_keeps_to_page_content(lines: list[str], query: str) -> None:
    text = "\n".join(lines)
    q = query if query.strip() else "costs"
    for name in CONTENT:
        out = apply(name, text, title="", query=q)
        assert foreign_sentences(name, text, out) == [], (name, out)
        flags = G.fabrication_flags(text, out)
        assert flags["numbers"] == flags["quotes"] == flags["urls"] == [], (name, flags, out)
        # Sources: nothing beyond what the guard already flags on the unchanged page (it can flag a
        # name against its own text, e.g. "1X\nDr. Ann Lee" gives "X Dr. Ann Lee").
        assert set(flags["sources"]) <= set(G.new_sources(text, text)), (name, flags, out)


# --------------------------------------------------------------------------- guards on the demo bench


@pytest.mark.parametrize("name", CONTENT)
def test_every_demo_target_passes_the_guards(name: str) -> None:
    strategy = REG.get(name)
    statuses = Counter()
    for item in load_bench("demo").items:
        res = rewrite(None, strategy, item.target_document, query=item.query)
        assert res.status != "failed", (item.id, res.reason)
        assert res.guards["flag_count"] == 0 and res.implementation == "transform"
        statuses[res.status] += 1
        if res.status == "ok":
            assert foreign_sentences(name, item.target_document.text, res.text, item.target_document.title) == []
    # Most pages are actually changed (key-facts leaves pages without any figure or source alone).
    assert statuses["ok"] >= 0.8 * sum(statuses.values()), statuses


def test_parse_page_units_are_page_spans() -> None:
    page = parse_page(PAGE)
    assert [b.kind for b in page.blocks][:4] == ["heading", "para", "heading", "list"]
    quote = next(u for u in page.units if "Most roofs" in u.text)
    assert quote.balanced and quote.text.endswith('longer."')  # a two-sentence quotation stays whole
    for u in page.units:
        assert collapse(PAGE[u.start : u.end]) == u.text
    assert json.dumps([u.text for u in page.units])  # plain strings
    assert hashlib.sha256(PAGE.encode()).hexdigest()  # the page itself is untouched


# --------------------------------------------------------------------------- in a simulation


def test_simulation_uses_deterministic_strategies_without_rewrite_calls(
    tmp_path, fake_llm_settings, fake_server
) -> None:  # type: ignore[no-untyped-def]
    from geoaudit.engine import EngineConfig
    from geoaudit.simulate import Simulation, SimulationConfig
    from geoaudit.testing import last_user_message

    rows = []
    for i, topic in enumerate(("tea", "bikes")):
        docs = [
            {
                "url": f"https://site{j}.example/{topic}",
                "title": f"Page {j}",
                "text": f"# Page {j}\n\nSource {j} explains {topic}. It has detail number {j} about {topic}.",
            }
            for j in range(5)
        ]
        rows.append({"id": f"q{i}", "query": f"what about {topic}?", "documents": docs, "target": i})
    bench = tmp_path / "bench.jsonl"
    bench.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    fake_server.responder = lambda req: "Fact one is stated here [1]."
    cfg = SimulationConfig(
        bench=str(bench),
        strategies=("answer-first", "key-facts"),
        rates=(0.0, 1.0),
        seeds=(0,),
        engine=EngineConfig(samples=1, attribution="citations"),
    )
    result = Simulation(fake_llm_settings, cfg).run_sync()
    # The model only answered; no request was a rewrite.
    assert fake_server.requests and all("Source [1]:" in last_user_message(q) for q in fake_server.requests)
    recs = result.run.rewrites()
    assert {r["strategy"] for r in recs} == {"answer-first", "key-facts"}
    assert all(r["status"] == "ok" and r["rewritten"] != r["original"] for r in recs)
    assert {r["model"] for r in recs} == {"transform answer-first@2", "transform key-facts@1"}
