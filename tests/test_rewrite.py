"""Rewrites end to end through the real gateway and a real OpenAI-compatible server on 127.0.0.1."""

from __future__ import annotations

import json
import os
import re
import sqlite3
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from geoaudit.config import Settings
from geoaudit.documents import Document, content_hash
from geoaudit.errors import InputError
from geoaudit.llm import Gateway
from geoaudit.rewrite import (
    RewriteStore,
    plan_chunks,
    postprocess,
    reassemble,
    render_results,
    rewrite,
    rewrite_many,
    word_diff,
)
from geoaudit.store import DocumentStore
from geoaudit.strategies import load_strategies
from geoaudit.testing import FakeOpenAIServer, Reply, last_user_message

PAGE = """# Solar power at home

Solar panels convert sunlight into electricity. Modern panels reach about 20% efficiency.

## Costs

- Installation costs fell sharply.
- Maintenance is cheap.

```
code stays = "verbatim"
```

Panels last for decades and need little care."""

REG = load_strategies()


def body_of(request: dict[str, Any]) -> str:
    """The document part of a rewrite prompt (after the final 'Text:' label)."""
    return last_user_message(request).rsplit("Text:\n", 1)[-1]


def chatty_fluency(request: dict[str, Any]) -> str:
    return (
        "Sure! Here is the rewritten text:\n\n"
        + body_of(request).replace("convert", "turn")
        + "\n\nLet me know if you need anything else."
    )


@pytest.fixture
def doc() -> Document:
    return Document.create("https://example.com/solar", PAGE, title="Solar power at home")


@pytest.fixture
def gateway(fake_llm_settings: Settings) -> Gateway:
    gw = Gateway(fake_llm_settings)
    yield gw
    gw.close()


# --------------------------------------------------------------------------- chunking and post-processing


def test_chunking_keeps_structure_and_round_trips() -> None:
    chunks = plan_chunks(PAGE, max_chars=80)
    assert reassemble(chunks, [None] * len(chunks)) == PAGE
    verbatim = [c.text for c in chunks if not c.rewritable]
    assert "# Solar power at home" in verbatim and "## Costs" in verbatim
    assert any(t.startswith("```") and "verbatim" in t for t in verbatim)
    assert all(len(c.text) <= 80 for c in chunks if c.rewritable)
    upper = reassemble(chunks, [c.text.upper() if c.rewritable else None for c in chunks])
    assert upper.splitlines()[0] == "# Solar power at home"
    assert "## Costs\n\n- INSTALLATION COSTS FELL SHARPLY.\n- MAINTENANCE IS CHEAP." in upper
    assert 'code stays = "verbatim"' in upper


def test_long_paragraph_is_split_at_sentences_and_line_mode_is_kept() -> None:
    para = " ".join(f"Sentence number {i} is here." for i in range(60))
    chunks = plan_chunks(para, max_chars=300)
    assert len(chunks) > 3 and all(len(c.text) <= 300 for c in chunks)
    assert reassemble(chunks, [None] * len(chunks)) == para
    lines = "First paragraph.\nSecond paragraph.\n# Heading\nThird."
    chunks = plan_chunks(lines)
    out = reassemble(chunks, ["One.\n\nTwo." if c.rewritable else None for c in chunks])
    assert out == "One.\nTwo.\n# Heading\nOne.\nTwo."


@pytest.mark.parametrize(
    "raw, expected",
    [
        ("Sure! Here is the rewritten text:\n\nBody text.\n\nLet me know if you want changes.", "Body text."),
        ("Here you go:\n```markdown\nFenced body text.\n```\nHope this helps!", "Fenced body text."),
        ("```\nUnclosed fence body", "Unclosed fence body"),
        ("Body without chatter.", "Body without chatter."),
        ("Rewritten text: Body after label.", "Body after label."),
    ],
)
def test_postprocess_tolerates_chatter_and_missing_fences(raw: str, expected: str) -> None:
    assert postprocess(raw, ["fenced-block", "strip-chatter"]) == expected


def test_after_marker() -> None:
    raw = "1. In the sentence about cost, add a figure.\nUpdated text:\nThe body."
    assert postprocess(raw, ["fenced-block", "after-marker:Updated text:", "strip-chatter"]) == "The body."


# --------------------------------------------------------------------------- end to end


def test_identity_and_rank_make_no_call(gateway: Gateway, fake_server: FakeOpenAIServer, doc: Document) -> None:
    for name in ("identity", "rank"):
        r = rewrite(gateway, REG.get(name), doc)
        assert r.status == "ok" and r.text == doc.text and r.rewritten_hash == doc.content_hash
        assert r.guards["length_ratio"] == 1.0
    assert fake_server.requests == []


def test_chatty_reply_is_cleaned_structure_kept_and_stored(
    gateway: Gateway, fake_server: FakeOpenAIServer, fake_llm_settings: Settings, doc: Document
) -> None:
    fake_server.responder = chatty_fluency
    store = RewriteStore(fake_llm_settings.store_path)
    r = rewrite(gateway, REG.get("fluency"), doc, seed=3, store=store)
    assert r.status == "ok", r.reason
    assert "Solar panels turn sunlight" in r.text
    assert "Sure" not in r.text and "Let me know" not in r.text
    assert r.text.startswith("# Solar power at home\n\n") and "## Costs" in r.text
    assert 'code stays = "verbatim"' in r.text
    assert not any("code stays" in body_of(q) for q in fake_server.requests)  # code never sent
    assert all(q["seed"] == 3 for q in fake_server.requests)
    assert r.model == "openai/fake-model" and r.seed == 3 and r.prompt_hash == REG.get("fluency").prompt_hash
    assert r.original_hash == doc.content_hash and r.rewritten_hash != doc.content_hash
    assert r.guards["fabrications"]["numbers"] == [] and r.guards["sentence_survival"] >= 0.9
    # The provenance row is real SQLite, next to the documents table.
    row = (
        sqlite3.connect(fake_llm_settings.store_path)
        .execute(
            "SELECT doc_id, strategy, strategy_version, model, seed, prompt_hash, original_hash, status FROM rewrites"
        )
        .fetchone()
    )
    assert row == (doc.id, "fluency", "1", "openai/fake-model", 3, r.prompt_hash, doc.content_hash, "ok")
    assert (r.implementation, r.transform, r.producer) == ("llm", "", "openai/fake-model")

    n = len(fake_server.requests)
    again = rewrite(gateway, REG.get("fluency"), doc, seed=3, store=store)
    assert again.cached and again.text == r.text and len(fake_server.requests) == n
    # Without the store, the gateway's cache also serves it for free.
    third = rewrite(gateway, REG.get("fluency"), doc, seed=3)
    assert third.cached and third.text == r.text and len(fake_server.requests) == n
    other_seed = rewrite(gateway, REG.get("fluency"), doc, seed=4, store=store)
    assert not other_seed.cached and len(fake_server.requests) > n


def test_keyword_stuffing_gets_document_and_query(
    gateway: Gateway, fake_server: FakeOpenAIServer, doc: Document
) -> None:
    fake_server.responder = lambda req: body_of(req) + " Home solar panels are a smart choice."
    strategy = REG.get("keyword-stuffing")
    with pytest.raises(InputError, match="query"):
        rewrite(gateway, strategy, doc)
    assert fake_server.requests == []  # refused before any call
    r = rewrite(gateway, strategy, doc, query="home solar panels")
    assert r.status == "ok" and r.query == "home solar panels"
    sent = [last_user_message(q) for q in fake_server.requests]
    assert all("home solar panels" in s for s in sent)
    assert any("Solar panels convert sunlight into electricity." in s for s in sent)


def test_refusal_is_failed_and_original_kept(
    gateway: Gateway, fake_server: FakeOpenAIServer, fake_llm_settings: Settings, doc: Document
) -> None:
    fake_server.responder = lambda req: "I'm sorry, but I can't help with that request."
    store = RewriteStore(fake_llm_settings.store_path)
    r = rewrite(gateway, REG.get("authoritative"), doc, store=store)
    assert r.status == "failed" and "refused" in r.reason
    assert r.text == doc.text and r.rewritten_hash == doc.content_hash
    assert store.find(doc_id=doc.id)[0].status == "failed"


def test_invented_number_fails_grounded_but_only_flags_ungrounded(
    gateway: Gateway, fake_server: FakeOpenAIServer, doc: Document
) -> None:
    fake_server.responder = lambda req: body_of(req).replace(
        "about 20% efficiency", "about 20% efficiency, up 35% since 2015"
    )
    loose = rewrite(gateway, REG.get("statistics"), doc)
    assert loose.status == "ok" and loose.guards["fabrications"]["numbers"] == ["35", "2015"]
    strict = rewrite(gateway, REG.get("statistics-grounded"), doc)
    assert strict.status == "failed" and strict.reason.startswith("new numbers") and strict.text == doc.text


def test_too_short_output_fails_length_constraint(
    gateway: Gateway, fake_server: FakeOpenAIServer, doc: Document
) -> None:
    fake_server.responder = lambda req: "Solar."
    r = rewrite(gateway, REG.get("fluency"), doc)
    assert r.status == "failed" and r.reason.startswith("length ratio")


def test_unchanged_and_backend_error(
    gateway: Gateway, fake_server: FakeOpenAIServer, fake_llm_settings: Settings, doc: Document
) -> None:
    fake_server.responder = lambda req: body_of(req)
    assert rewrite(gateway, REG.get("unique-words"), doc).status == "unchanged"
    fake_server.responder = lambda req: Reply(status=500)
    store = RewriteStore(fake_llm_settings.store_path)
    r = rewrite(gateway, REG.get("technical-terms"), doc, store=store)
    assert r.status == "failed" and r.reason.startswith("backend error") and r.text == doc.text
    assert store.find(strategy="technical-terms") == []  # transient failures are retried next run


def test_rewrite_many_is_concurrent_and_ordered(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: Reply(text=body_of(req) + " Indeed.", delay=0.2)
    docs = [
        Document.create(f"https://example.com/{i}", f"Paragraph {i} says a thing.\n\nAnother line {i}.")
        for i in range(4)
    ]
    gw = Gateway(fake_llm_settings)
    seen: list[str] = []
    results = rewrite_many(gw, REG.resolve(["identity", "fluency"]), docs, progress=lambda r: seen.append(r.strategy))
    assert [(r.doc_id, r.strategy) for r in results] == [(d.id, s) for d in docs for s in ("identity", "fluency")]
    assert len(seen) == 8 and fake_server.max_in_flight > 1
    with pytest.raises(InputError):
        rewrite_many(gw, REG.resolve(["keyword-stuffing"]), docs)
    gw.close()


def test_render_formats_escape_and_diff(doc: Document) -> None:
    from geoaudit.rewrite import RewriteResult

    res = RewriteResult(
        doc_id=doc.id,
        strategy="fluency",
        strategy_version="1",
        status="ok",
        reason="",
        text="<b>bold</b> & new",
        original_hash=doc.content_hash,
        rewritten_hash="x",
        model="m",
        seed=0,
        prompt_hash="p",
        created_at="t",
    )
    html = render_results([(doc, res)], "html")
    assert "<b>bold</b>" not in html and "&lt;b&gt;bold&lt;/b&gt; &amp; new" in html
    rec = json.loads(render_results([(doc, res)], "jsonl"))
    assert (
        rec["id"] == doc.id
        and rec["text"] == "<b>bold</b> & new"
        and rec["metadata"]["rewrite"]["strategy"] == "fluency"
    )
    assert "## Solar power at home — fluency (ok)" in render_results([(doc, res)], "md")
    ops = word_diff("the cat sat", "the dog sat")
    assert ops == [("equal", "the "), ("delete", "cat "), ("insert", "dog "), ("equal", "sat")]


# --------------------------------------------------------------------------- deterministic (rule) strategies

LEAD_RULE = """
name = "lead-test"
title = "Lead"
description = "Answer first."
kind = "rule"
transform = "answer-first"
version = "1"
query_aware = true
grounded = true
[origin]
paper = "test"
method = "test"
[params]
sentences = 1
[constraints]
min_length_ratio = 1.0
max_length_ratio = %s
forbid_new = ["numbers", "quotes", "sources", "urls"]
"""


def lead_strategy(tmp_path: Path, max_ratio: float = 2.0) -> Any:
    d = tmp_path / f"rules-{max_ratio}"
    d.mkdir()
    (d / "lead-test.toml").write_text(LEAD_RULE % max_ratio, encoding="utf-8")
    return load_strategies([d]).get("lead-test")


def test_rule_strategy_needs_no_model_and_records_its_transform(tmp_path: Path, doc: Document) -> None:
    strategy = lead_strategy(tmp_path)
    store = RewriteStore(tmp_path / "store.db")
    # No gateway at all: nothing to load, nothing to contact.
    r = rewrite(None, strategy, doc, query="How much do installation costs fall?", store=store)
    assert r.status == "ok", r.reason
    assert r.text.startswith("# Solar power at home\n\n> Installation costs fell sharply.\n\n---\n\n")
    assert r.text.endswith(doc.text.split("\n", 1)[1].strip("\n"))  # the page follows, unchanged
    assert (r.implementation, r.transform, r.model, r.producer) == (
        "transform",
        "answer-first@2",
        "",
        "transform answer-first@2",
    )
    assert r.guards["failure"] is None and r.guards["flag_count"] == 0 and r.guards["length_ratio"] > 1.0
    row = (
        sqlite3.connect(tmp_path / "store.db")
        .execute("SELECT implementation, transform, model, status FROM rewrites WHERE key=?", (r.key,))
        .fetchone()
    )
    assert row == ("transform", "answer-first@2", "", "ok")
    again = rewrite(None, strategy, doc, query="How much do installation costs fall?", store=store)
    assert again.cached and again.text == r.text and again.implementation == "transform"
    # The query is part of the key (query-aware); the model and seed are not (they change nothing).
    assert rewrite(None, strategy, doc, query="How long do panels last?", store=store).key != r.key
    assert rewrite(None, strategy, doc, query="How much do installation costs fall?", seed=9).key == r.key
    meta = r.as_document(doc).metadata["rewrite"]
    assert meta["implementation"] == "transform" and meta["transform"] == "answer-first@2"
    assert "deterministic transform answer-first@2 (no model)" in render_results([(doc, r)], "md")
    assert "deterministic transform answer-first@2 (no model)" in render_results([(doc, r)], "html")


def test_rule_strategy_goes_through_the_same_guards(tmp_path: Path, doc: Document) -> None:
    r = rewrite(None, lead_strategy(tmp_path, max_ratio=1.05), doc, query="How much do installation costs fall?")
    assert r.status == "failed" and "length ratio" in r.reason and r.text == doc.text
    assert r.implementation == "transform"


def test_identity_and_rank_run_without_a_gateway(doc: Document) -> None:
    ident = rewrite(None, REG.get("identity"), doc)
    assert (ident.status, ident.text, ident.implementation, ident.transform) == (
        "ok",
        doc.text,
        "transform",
        "identity@1",
    )
    rank = rewrite(None, REG.get("rank"), doc)
    assert (rank.status, rank.text, rank.implementation) == ("ok", doc.text, "none")
    with pytest.raises(InputError, match="model"):
        rewrite(None, REG.get("fluency"), doc)


def test_old_rewrite_store_is_migrated_with_what_produced_each_row(tmp_path: Path) -> None:
    from geoaudit.rewrite import REWRITE_MIGRATIONS
    from geoaudit.store import connect

    path = tmp_path / "old.db"
    old = connect(path, REWRITE_MIGRATIONS[:1])  # the schema as geoaudit wrote it before
    cols = "key, doc_id, strategy, strategy_version, prompt_hash, model, seed, original_hash, rewritten_hash, status, text, guards, created_at"
    rows = [
        (
            "k-llm",
            "d",
            "fluency",
            "1",
            "p",
            "local/smollm2",
            0,
            "h",
            "h2",
            "ok",
            "t",
            '{"chunks": 1, "length_ratio": 1.1}',
            "t",
        ),
        ("k-id", "d", "identity", "1", "p", "local/smollm2", 0, "h", "h", "ok", "t", '{"length_ratio": 1.0}', "t"),
        ("k-bad", "d", "fluency", "1", "p", "local/smollm2", 0, "h", "h", "failed", "t", "{}", "t"),
    ]
    old.executemany(f"INSERT INTO rewrites ({cols}) VALUES ({','.join('?' * 13)})", rows)
    old.close()
    store = RewriteStore(path)
    got = {k: (store.get(k).implementation, store.get(k).transform) for k in ("k-llm", "k-id", "k-bad")}
    assert got == {"k-llm": ("llm", ""), "k-id": ("none", ""), "k-bad": ("llm", "")}
    store.close()


# --------------------------------------------------------------------------- CLI


def run_cli(args: list[str]) -> Any:
    from geoaudit.cli import app

    return CliRunner().invoke(app, args)


def test_cli_strategies_list_and_show() -> None:
    r = run_cli(["strategies", "list"])
    assert r.exit_code == 0
    for name in ("identity", "rank", "keyword-stuffing", "llm-guidance", "statistics-grounded"):
        assert name in r.output
    r = run_cli(["strategies", "show", "keyword-stuffing"])
    assert r.exit_code == 0 and "{query}" in r.output and "Keyword Stuffing" in r.output
    r = run_cli(["strategies", "show", "fluncy"])
    assert r.exit_code == 2


def test_cli_shows_deterministic_strategies() -> None:
    r = run_cli(["strategies", "list"])
    assert r.exit_code == 0
    for name in ("answer-first", "key-facts", "llms-txt-structure", "keyword-stuffing-rule"):
        assert name in r.output
    listed = {d["name"]: d for d in json.loads(run_cli(["strategies", "list", "--json"]).output)}
    assert {n for n, d in listed.items() if d["transform"] not in (None, "identity@1")} == {
        "answer-first",
        "key-facts",
        "llms-txt-structure",
        "keyword-stuffing-rule",
    }
    r = run_cli(["strategies", "show", "answer-first"])
    assert r.exit_code == 0, r.output
    assert "answer-first@2" in r.output and "sentences = 2" in r.output and "BLUF" in r.output
    data = json.loads(run_cli(["strategies", "show", "keyword-stuffing-rule", "--json"]).output)
    assert data["transform"] == "keyword-stuffing@2" and data["params"]["max_insertions"] == 10 and data["query_aware"]


def test_cli_rewrite_deterministic_with_no_model_reachable(tmp_path: Path) -> None:
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    out = tmp_path / "out.jsonl"
    env = {**os.environ, "GEOAUDIT_HOME": str(tmp_path / "home"), "COLUMNS": "200"}
    # The model string points at a closed port: any attempt to reach a model would fail the command.
    cmd = [
        sys.executable,
        "-m",
        "geoaudit",
        "rewrite",
        str(page),
        "--strategy",
        "answer-first",
        "-s",
        "llms-txt-structure",
        "--query",
        "How much do installation costs fall?",
        "-o",
        str(out),
        "--model",
        "openai/nothing-here",
        "--api-base",
        "http://127.0.0.1:9",
    ]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert "transform answer-first@2" in proc.stdout and "no model" in proc.stdout
    recs = [json.loads(line) for line in out.read_text().splitlines()]
    assert [x["metadata"]["rewrite"]["implementation"] for x in recs] == ["transform", "transform"]
    assert recs[0]["metadata"]["rewrite"]["status"] == "ok"
    assert "> Installation costs fell sharply." in recs[0]["text"]
    assert recs[1]["text"].startswith("# Solar power at home\n\n> ")
    # Nor is a model loaded: a local model file that does not exist is never looked for.
    missing = ["--model", f"local/{tmp_path / 'missing.gguf'}"]
    proc = subprocess.run(cmd[:11] + missing, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    proc = subprocess.run(cmd[:7] + ["-o", str(out)], capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "query" in proc.stderr


def test_cli_list_marks_user_override(tmp_path: Path) -> None:
    d = tmp_path / "mine"
    d.mkdir()
    src = (Path(__file__).parent.parent / "strategies" / "fluency.toml").read_text()
    (d / "fluency.toml").write_text(src.replace('title = "Fluency optimisation"', 'title = "My fluency"'))
    r = run_cli(["strategies", "list", "--strategies-dir", str(d), "--json"])
    data = {s["name"]: s for s in json.loads(r.output)}
    assert data["fluency"]["title"] == "My fluency" and data["fluency"]["builtin"] is False


def test_cli_bad_strategy_is_one_line_exit_2(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    proc = subprocess.run(
        [sys.executable, "-m", "geoaudit", "rewrite", str(page), "--strategy", "fluncy"],
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 2
    lines = [ln for ln in proc.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1 and "fluncy" in lines[0] and "fluency" in lines[0]


def test_cli_rewrite_files_and_store_docs(
    fake_server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    fake_server.responder = chatty_fluency
    home = tmp_path / "geoaudit-home"
    monkeypatch.setenv("GEOAUDIT_API_KEY", "test")
    monkeypatch.setenv("GEOAUDIT_RETRIES", "0")
    page = tmp_path / "page.md"
    page.write_text(PAGE)
    out = tmp_path / "out.jsonl"
    base = ["--data-dir", str(home), "rewrite", "--model", "openai/fake-model", "--api-base", fake_server.url]
    r = run_cli([*base, str(page), "-s", "identity", "-s", "fluency", "-o", str(out), "--diff"])
    assert r.exit_code == 0, r.output
    assert "rewrite summary" in r.output and "turn" in r.output
    recs = [json.loads(ln) for ln in out.read_text().splitlines()]
    assert [x["metadata"]["rewrite"]["strategy"] for x in recs] == ["identity", "fluency"]
    assert "Solar panels turn sunlight" in recs[1]["text"]
    n = len(fake_server.requests)
    r = run_cli([*base, str(page), "-s", "fluency", "-o", str(tmp_path / "o.html")])
    assert r.exit_code == 0 and len(fake_server.requests) == n  # stored: no new call
    assert "<h3>Solar power at home</h3>" in (tmp_path / "o.html").read_text()

    DocumentStore(home / "geoaudit.db").put(
        Document.create("https://shop.example/item", "Stored page text. It is fine.")
    )
    r = run_cli([*base, "--doc", "shop.example", "-s", "identity"])
    assert r.exit_code == 0 and re.search(r"identity\s*│\s*1", r.output)
    r = run_cli([*base, "--doc", "nothing-matches", "-s", "identity"])
    assert r.exit_code == 2


# --------------------------------------------------------------------------- embedded model


@pytest.mark.embedded
def test_rewrite_with_embedded_model(embedded_settings: Settings) -> None:
    doc = Document.create(
        "https://example.com/tea",
        "Green tea comes from the leaves of the tea plant. It is popular in Japan and China.",
        title="Green tea",
    )
    gw = Gateway(embedded_settings)
    store = RewriteStore(embedded_settings.store_path)
    r = rewrite(gw, REG.get("fluency"), doc, store=store)
    assert r.model == "local/smollm2" and r.implementation == "llm"
    # Whatever the small model writes, the record is consistent: a failure says why and serves the
    # original page; a success serves a text whose hash is recorded.
    if r.status == "failed":
        assert r.reason and r.text == doc.text
    else:
        assert r.rewritten_hash == content_hash(r.text)
    assert r.original_hash == doc.content_hash and r.prompt_hash == REG.get("fluency").prompt_hash
    if r.status != "failed" or r.guards:
        assert {"length_ratio", "sentence_survival", "fabrications"} <= set(r.guards)
    assert store.find(doc_id=doc.id)[0].key == r.key
    again = rewrite(gw, REG.get("fluency"), doc, store=store)
    assert again.cached and again.text == r.text
    gw.close()


def test_reply_cut_at_max_tokens_fails(fake_llm_settings: Settings, doc: Document) -> None:
    from geoaudit.llm import LLMResponse

    class LoopingBackend:
        """A model that rambles until the token limit (as tiny local models do)."""

        def __init__(self) -> None:
            self.max_tokens: list[int] = []

        async def acomplete(self, request: Any, model: str, *, timeout: float) -> LLMResponse:
            self.max_tokens.append(request.max_tokens)
            return LLMResponse(text="The plant is a plant. " * 50, model=model, finish_reason="length")

    backend = LoopingBackend()
    gw = Gateway(fake_llm_settings, backend=backend)
    r = rewrite(gw, REG.get("fluency"), doc)
    assert r.status == "failed" and "cut at max_tokens" in r.reason and r.text == doc.text
    # The budget follows the chunk size and the strategy's maximum growth, not a fixed large number.
    assert all(96 <= m < 400 for m in backend.max_tokens)
    gw.close()


def test_same_model_name_on_another_endpoint_is_not_a_store_hit(tmp_path) -> None:
    from geoaudit.documents import Document
    from geoaudit.llm import Gateway
    from geoaudit.rewrite import RewriteStore, rewrite
    from geoaudit.strategies import load_strategies
    from geoaudit.testing import FakeOpenAIServer, fake_settings

    doc = Document.create(
        "https://a.example/x", "Tea is best steeped for three minutes. It should not boil.", title="Tea"
    )
    strategy = load_strategies().get("fluency")
    store = RewriteStore(tmp_path / "store.db")
    with (
        FakeOpenAIServer(lambda req: "Tea tastes best after three minutes of steeping. Do not boil it.") as one,
        FakeOpenAIServer(lambda req: "Steep tea for three minutes. Never let it boil.") as two,
    ):
        first = rewrite(Gateway(fake_settings(one, tmp_path / "h1")), strategy, doc, store=store)
        second = rewrite(Gateway(fake_settings(two, tmp_path / "h2")), strategy, doc, store=store)
        assert len(two.requests) == 1 and first.text != second.text
        again = rewrite(Gateway(fake_settings(two, tmp_path / "h2")), strategy, doc, store=store)
        assert again.text == second.text and len(two.requests) == 1


def test_rewrite_documents_is_the_notebook_path_behind_the_command(tmp_path: Path) -> None:
    """What `geoaudit rewrite` does, from Python: files in, guarded results out, no model for rule strategies."""
    from geoaudit.config import Settings
    from geoaudit.errors import InputError
    from geoaudit.rewrite import output_format, rewrite_documents

    page = tmp_path / "page.md"
    page.write_text(
        "# Solar panels\n\nA typical home system costs 12,000 dollars. Panels last 25 years.\n"
        "Installers recommend a south-facing roof.\n",
        encoding="utf-8",
    )
    settings = Settings(data_dir=tmp_path / "home", model="nope/unreachable")  # never contacted
    batch = rewrite_documents(settings, ["answer-first", "identity"], inputs=[page], query="solar panel cost")
    assert batch.model is None and batch.usage is None
    assert {r.strategy for r in batch.results} == {"answer-first", "identity"}
    assert all(r.status in ("ok", "unchanged") and r.implementation == "transform" for r in batch.results)
    assert "deterministic transforms" in batch.provenance() and "solar panel cost" in batch.provenance()
    ((doc, res),) = [p for p in batch.pairs() if p[1].strategy == "answer-first"]
    assert doc.text != res.text and "12,000" in res.text
    with pytest.raises(InputError, match="needs the target query"):
        rewrite_documents(settings, ["answer-first"], inputs=[page])
    with pytest.raises(InputError, match="no documents"):
        rewrite_documents(settings, ["identity"])
    assert output_format("out.htm") == "html" and output_format(None) == "jsonl" and output_format("x.md") == "md"
    with pytest.raises(InputError):
        output_format("x.md", "pdf")
