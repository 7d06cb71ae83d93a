"""The engine end to end over real HTTP (FakeOpenAIServer), the judge, and ``geoaudit ask``."""

from __future__ import annotations

import json
import math
import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from geoaudit.cli import app
from geoaudit.config import Settings
from geoaudit.documents import Document, write_jsonl
from geoaudit.engine import (
    Answer,
    EngineConfig,
    agenerate,
    answer,
    build_prompt,
    load_answer_prompt,
    sample_seed,
)
from geoaudit.errors import ConfigError, InputError
from geoaudit.judge import FACETS, JudgeConfig, expected_score, judge, parse_score, rescale_to_pawc
from geoaudit.llm import Gateway
from geoaudit.metrics import answer_metrics
from geoaudit.retrieval import BM25Retriever, Retriever
from geoaudit.testing import FakeOpenAIServer, Reply, last_user_message

DOCS = [
    Document.create(
        "https://a.example/kambala", "Kambala is a buffalo race held in coastal Karnataka. " * 3, title="Kambala"
    ),
    Document.create(
        "https://b.example/khokho", "Kho kho is a tag game played by two teams of twelve.", title="Kho kho"
    ),
    Document.create("https://c.example/cricket", "Cricket is the most watched sport in India.", title="Cricket"),
    Document.create("https://d.example/chess", "Chess is a board game for two players.", title="Chess"),
]
REPLY = "Kambala is a buffalo race [1]. Cricket is watched a lot [3][2]. It is old [9]."


def prompt_of(request: dict[str, Any]) -> str:
    return last_user_message(request)


def test_prompt_layout_is_prefix_stable_and_numbered(
    fake_server: FakeOpenAIServer, fake_llm_settings: Settings
) -> None:
    fake_server.responder = lambda req: REPLY
    gw = Gateway(fake_llm_settings)
    config = EngineConfig(k=3, source_budget_chars=60)
    ans = answer(gw, "What are folk sports in Karnataka?", DOCS, config, seed=3)
    [req] = fake_server.requests
    prompt = prompt_of(req)
    # query before the sources (prefix-stable), numbered sources in the given order
    q_at = prompt.index("Question: What are folk sports in Karnataka?")
    positions = [prompt.index(f"Source [{i}]: {t}") for i, t in enumerate(["Kambala", "Kho kho", "Cricket"], 1)]
    assert q_at < positions[0] < positions[1] < positions[2]
    assert "Source [4]" not in prompt and "Chess" not in prompt
    # truncation: the long first source is cut to 60 characters and recorded; short ones are not
    assert [v.truncated for v in ans.source_info] == [True, False, False]
    assert ans.source_info[0].shown_chars <= 60 < ans.source_info[0].chars
    assert DOCS[0].text.strip() not in prompt
    assert req["temperature"] == 0.7 and req["max_tokens"] == 200 and req["seed"] == sample_seed(3, 0)
    # the parsed answer
    assert ans.sources == [d.id for d in DOCS[:3]]
    assert ans.attribution == "citations"  # auto -> citations for a remote model
    assert ans.model == "openai/fake-model" and ans.prompt_version == "answer-v1"
    [s] = ans.samples
    assert [x.citations for x in s.sentences] == [[0], [2, 1], []]
    assert s.hallucinated_citations == 1 and s.valid_citation_count == 3
    assert s.citation_order == [0, 2, 1]
    assert s.usage["completion_tokens"] == len(REPLY.split())
    assert ans.notes == []


def test_prefix_shared_between_answers_that_differ_in_a_later_source() -> None:
    config = EngineConfig(k=3)
    p1, _, _ = build_prompt("q?", DOCS[:3], config)
    p2, _, _ = build_prompt("q?", [DOCS[0], DOCS[1], DOCS[3]], config)
    shared = len(p1.split("Source [3]")[0])
    assert p1[:shared] == p2[:shared]


def test_samples_have_distinct_seeds_and_rerun_hits_cache(
    fake_server: FakeOpenAIServer, fake_llm_settings: Settings
) -> None:
    def responder(req: dict[str, Any]) -> str:
        return f"Kambala is a race [1]. Seed {req['seed']} [2]."

    fake_server.responder = responder
    config = EngineConfig(k=2, samples=3)
    gw = Gateway(fake_llm_settings)
    first = answer(gw, "kambala?", DOCS, config, seed=11)
    seeds = [r["seed"] for r in fake_server.requests]
    assert sorted(seeds) == sorted(sample_seed(11, i) for i in range(3)) and len(set(seeds)) == 3
    assert [s.seed for s in first.samples] == [sample_seed(11, i) for i in range(3)]
    assert len({s.raw for s in first.samples}) == 3
    assert not any(s.cached for s in first.samples)
    again = answer(Gateway(fake_llm_settings), "kambala?", DOCS, config, seed=11)
    assert len(fake_server.requests) == 3  # nothing new reached the server
    assert all(s.cached for s in again.samples)
    assert [s.raw for s in again.samples] == [s.raw for s in first.samples]
    other = answer(gw, "kambala?", DOCS, config, seed=12)
    assert len(fake_server.requests) == 6 and other.samples[0].raw != first.samples[0].raw


def test_sample_seed_is_distinct_and_stable() -> None:
    seeds = {sample_seed(s, i) for s in range(20) for i in range(20)}
    assert len(seeds) == 400
    assert sample_seed(0, 1) != sample_seed(1, 0)
    assert sample_seed(5, 2) == sample_seed(5, 2)


def test_retrieved_order_uses_bm25(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: "Chess is a board game [1]."
    config = EngineConfig(k=2, order="retrieved")
    ans = answer(Gateway(fake_llm_settings), "board game chess players", DOCS, config)
    assert ans.sources[0] == DOCS[3].id  # the chess page ranks first
    assert ans.source_info[0].score > ans.source_info[1].score
    assert len(ans.sources) == 2
    prompt = prompt_of(fake_server.requests[0])
    assert prompt.index("Source [1]: Chess") < prompt.index("Source [2]:")


def test_bm25_retriever_ranks_and_breaks_ties_by_given_order() -> None:
    r = BM25Retriever()
    assert isinstance(r, Retriever)
    ranked = r.rank("cricket India", DOCS)
    assert ranked[0].index == 2 and sorted(x.index for x in ranked) == [0, 1, 2, 3]
    assert [x.index for x in r.rank("zzz unknownword", DOCS)] == [0, 1, 2, 3]
    assert r.rank("anything", []) == []


def test_shuffled_order_is_seeded(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: "ok."
    gw = Gateway(fake_llm_settings)
    config = EngineConfig(k=3, order="shuffled")
    orders = {s: tuple(answer(gw, "q?", DOCS, config, seed=s).sources) for s in range(8)}
    assert all(set(o) == {d.id for d in DOCS[:3]} for o in orders.values())  # a permutation of the first k
    assert len(set(orders.values())) > 1
    assert tuple(answer(gw, "q?", DOCS, config, seed=5).sources) == orders[5]


def test_agenerate_keeps_the_callers_order(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    import asyncio

    fake_server.responder = lambda req: "Chess [1]."
    sources = [DOCS[3], DOCS[2], DOCS[1], DOCS[0]]
    ans = asyncio.run(agenerate(Gateway(fake_llm_settings), "q?", sources, EngineConfig(k=2)))
    assert ans.sources == [d.id for d in sources]  # no top-k cut, no reordering
    assert prompt_of(fake_server.requests[0]).index("Source [1]: Chess") > 0


def test_fewer_docs_than_k_and_no_docs(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: "Kambala [1]."
    gw = Gateway(fake_llm_settings)
    ans = answer(gw, "q?", DOCS[:2], EngineConfig(k=5))
    assert len(ans.sources) == 2 and "only 2 documents given" in ans.notes[0]
    with pytest.raises(InputError):
        answer(gw, "q?", [], EngineConfig())
    with pytest.raises(InputError):
        answer(gw, "   ", DOCS, EngineConfig())


def test_answer_json_round_trip(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = lambda req: REPLY
    ans = answer(Gateway(fake_llm_settings), "q?", DOCS, EngineConfig(k=3, samples=2, attribution="hybrid"))
    blob = json.dumps(ans.to_dict())
    back = Answer.from_dict(json.loads(blob))
    assert back == ans
    assert back.config.attribution == "hybrid" and back.attribution == "hybrid"
    m = answer_metrics(back, 0)
    assert m["cited"] == 1.0 and m["first_citation_rank"] == 1.0


def test_attribution_auto_resolution_and_config_validation() -> None:
    assert EngineConfig().resolve_attribution("local/smollm2") == "hybrid"
    assert EngineConfig().resolve_attribution("openai/gpt-4o-mini") == "citations"
    assert EngineConfig(attribution="overlap").resolve_attribution("local/smollm2") == "overlap"
    d = EngineConfig().describe()
    assert d["pawc_variant"] == "paper" and d["temperature"] == 0.7 and d["k"] == 5
    for bad in (
        dict(k=0),
        dict(order="random"),
        dict(attribution="x"),
        dict(samples=0),
        dict(pawc_variant="x"),
        dict(overlap_threshold=2.0),
        dict(prompt_version="answer-v0"),
    ):
        with pytest.raises(ConfigError):
            cfg = EngineConfig(**bad)  # type: ignore[arg-type]
            load_answer_prompt(cfg.prompt_version)
    assert "{query}" in load_answer_prompt().template


def test_backend_failure_surfaces_as_backend_error(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    from geoaudit.errors import BackendError
    from geoaudit.testing import fake_settings

    fake_server.responder = lambda req: Reply(status=500)
    gw = Gateway(fake_settings(fake_server, tmp_path / "h", retries=1))
    with pytest.raises(BackendError):
        answer(gw, "q?", DOCS, EngineConfig(k=2))


# --------------------------------------------------------------------------- judge


def test_expected_score_and_parse_score() -> None:
    assert expected_score({"4": math.log(0.5), "5": math.log(0.25), " 3": math.log(0.25), "x": 0.0}) == pytest.approx(
        4.0
    )
    assert expected_score({"hello": 0.0}) is None
    assert parse_score("Score: 4/5") == 4 and parse_score("10") is None and parse_score("none") is None


def _judge_responder(logprobs: bool):
    def responder(req: dict[str, Any]) -> Reply:
        prompt = prompt_of(req)
        if "rate one source" not in prompt:
            return Reply(text=REPLY)
        if logprobs:
            return Reply(text="4", logprobs=[{"4": math.log(0.6), "5": math.log(0.4)}])
        return Reply(text=str(3 + req["seed"] % 2))  # 3 or 4 depending on the sample's seed

    return responder


def test_judge_uses_logprobs_when_returned(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = _judge_responder(True)
    gw = Gateway(fake_llm_settings)
    ans = answer(gw, "Folk sports?", DOCS, EngineConfig(k=4))
    j = judge(gw, ans, 0)
    assert set(j.facets) == set(FACETS)
    assert all(v == pytest.approx(4.4) for v in j.facets.values())  # 4·0.6 + 5·0.4
    assert j.subjective_impression == pytest.approx(4.4)
    assert all(fs.method == "logprobs" for fs in j.per_sample[0])
    judge_reqs = [r for r in fake_server.requests if "rate one source" in prompt_of(r)]
    assert len(judge_reqs) == 7 and all(r.get("top_logprobs") == 5 for r in judge_reqs)
    assert "Source [1]" in prompt_of(judge_reqs[0]) and "Folk sports?" in prompt_of(judge_reqs[0])
    # a source the answer does not cite scores 1 without any call
    before = len(fake_server.requests)
    uncited = judge(gw, ans, 3)
    assert uncited.subjective_impression == 1.0 and len(fake_server.requests) == before


def test_judge_falls_back_to_sampled_judgements(fake_server: FakeOpenAIServer, fake_llm_settings: Settings) -> None:
    fake_server.responder = _judge_responder(False)
    gw = Gateway(fake_llm_settings)
    ans = answer(gw, "Folk sports?", DOCS, EngineConfig(k=3))
    j = judge(gw, ans, 2, JudgeConfig(facets=("relevance", "influence"), samples=4))
    fs = j.per_sample[0][0]
    assert fs.method == "samples" and len(fs.judgements) == 4 and set(fs.judgements) <= {3.0, 4.0}
    assert j.facets["relevance"] == pytest.approx(sum(fs.judgements) / 4)
    assert len({r["seed"] for r in fake_server.requests if "Relevance" in prompt_of(r)}) == 4


def test_judge_config_and_rescale() -> None:
    with pytest.raises(ConfigError):
        JudgeConfig(facets=("charm",))
    assert rescale_to_pawc([1.0, None, 3.0], [0.1, 0.3]) == pytest.approx([0.1, None, 0.3])


def test_every_facet_prompt_loads() -> None:
    from geoaudit.judge import load_facet_prompt

    for f in FACETS:
        p = load_facet_prompt(f)
        assert p.version == f"judge-{f}-v1" and "{answer}" in p.template


# --------------------------------------------------------------------------- CLI


@pytest.fixture
def docs_file(tmp_path: Path) -> Path:
    path = tmp_path / "docs.jsonl"
    write_jsonl(path, DOCS[:3])
    return path


def test_ask_cli_json(fake_server: FakeOpenAIServer, docs_file: Path) -> None:
    fake_server.responder = lambda req: REPLY
    result = CliRunner().invoke(
        app,
        [
            "ask",
            "Folk sports?",
            "--docs",
            str(docs_file),
            "--model",
            "openai/fake",
            "--api-base",
            fake_server.url,
            "--samples",
            "2",
            "--seed",
            "4",
            "--k",
            "5",
            "--json",
        ],
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["answer"]["model"] == "openai/fake" and data["answer"]["attribution"] == "citations"
    assert data["pawc_variant"] == "paper" and len(data["answer"]["samples"]) == 2
    assert [s["title"] for s in data["sources"]] == ["Kambala", "Kho kho", "Cricket"]
    assert data["sources"][0]["metrics"]["cited"] == 1.0
    assert data["summary"]["hallucinated_citations"] == 2
    assert "only 3 documents given" in data["answer"]["notes"][0]


def test_ask_cli_table(fake_server: FakeOpenAIServer, docs_file: Path) -> None:
    fake_server.responder = lambda req: REPLY
    result = CliRunner().invoke(
        app,
        [
            "ask",
            "Folk sports?",
            "--docs",
            str(docs_file),
            "--model",
            "openai/fake",
            "--api-base",
            fake_server.url,
            "--attribution",
            "hybrid",
            "--pawc",
            "code",
        ],
    )
    assert result.exit_code == 0, result.output
    out = result.stdout
    assert "Kambala is a buffalo race" in out and "[1]" in out and "[9?]" in out
    for title in ("Kambala", "Kho kho", "Cricket"):
        assert title in out
    assert re.search(r"attribution hybrid .* PAWC variant code", out.replace("\n", " "))
    assert "prompt answer-v1" in out and "seed 0" in out


def test_ask_cli_errors(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    r = CliRunner().invoke(
        app, ["ask", "q", "--docs", str(empty), "--model", "openai/fake", "--api-base", fake_server.url]
    )
    assert r.exit_code == 2 and "no documents" in r.output
    r = CliRunner().invoke(app, ["ask", "q", "--docs", str(tmp_path / "missing.jsonl")])
    assert r.exit_code == 2
    r = CliRunner().invoke(app, ["ask", "q", "--docs", str(empty), "--order", "random"])
    assert r.exit_code == 2 and "order" in r.output
    assert fake_server.requests == []


def test_ask_cli_reads_markdown_files(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    (tmp_path / "pages").mkdir()
    (tmp_path / "pages" / "a.md").write_text("# Kambala\n\nKambala is a buffalo race.\n")
    (tmp_path / "pages" / "b.md").write_text("# Cricket\n\nCricket is popular.\n")
    fake_server.responder = lambda req: "Kambala is a buffalo race [1]."
    r = CliRunner().invoke(
        app,
        [
            "ask",
            "q?",
            "--docs",
            str(tmp_path / "pages"),
            "--model",
            "openai/fake",
            "--api-base",
            fake_server.url,
            "--json",
        ],
    )
    assert r.exit_code == 0, r.output
    assert [s["title"] for s in json.loads(r.stdout)["sources"]] == ["Kambala", "Cricket"]


# --------------------------------------------------------------------------- the real embedded model


@pytest.mark.embedded
def test_embedded_model_answer_structure(embedded_settings: Settings) -> None:
    gw = Gateway(embedded_settings)
    config = EngineConfig(k=3, samples=2, max_tokens=60, source_budget_chars=300)
    ans = answer(gw, "What are folk sports in Karnataka?", DOCS, config, seed=1)
    assert ans.model == "local/smollm2" and ans.attribution == "hybrid"
    assert len(ans.samples) == 2 and len(ans.sources) == 3
    for s in ans.samples:
        assert isinstance(s.raw, str)
        assert s.usage["completion_tokens"] > 0
        for sent in s.sentences:
            assert sent.how in ("explicit", "overlap", "none")
            assert all(0 <= c < 3 for c in sent.citations)
            assert (sent.how == "none") == (not sent.citations)
    m = answer_metrics(ans, 0)
    assert 0.0 <= m["pawc"] <= 1.0 and 0.0 <= m["no_citation_rate"] <= 1.0
    again = answer(gw, "What are folk sports in Karnataka?", DOCS, config, seed=1)
    assert all(s.cached for s in again.samples)


def test_ask_cli_judge(fake_server: FakeOpenAIServer, docs_file: Path) -> None:
    fake_server.responder = _judge_responder(True)
    args = [
        "ask",
        "Folk [sports]?",
        "--docs",
        str(docs_file),
        "--model",
        "openai/fake",
        "--api-base",
        fake_server.url,
        "--judge",
    ]
    r = CliRunner().invoke(app, [*args, "--json"])
    assert r.exit_code == 0, r.output
    data = json.loads(r.stdout)
    si = [s["metrics"]["subjective_impression"] for s in data["sources"]]
    assert si == pytest.approx([4.4, 4.4, 4.4])  # REPLY cites all three sources
    assert data["judgements"][0]["facets"]["relevance"] == pytest.approx(4.4)
    table = CliRunner().invoke(app, args)
    assert table.exit_code == 0 and "SI" in table.stdout and "4.40" in table.stdout
    assert "Folk [sports]?" in table.stdout  # user text is never read as markup


def test_auto_prompt_gives_small_local_models_a_worked_example() -> None:
    from geoaudit.engine import answer_requests

    docs = [
        Document.create(f"https://s{i}.example", f"Line one of {i}.\n\nLine two of {i}.", title=f"T{i}")
        for i in range(3)
    ]
    local = EngineConfig().resolved("local/smollm2")
    remote = EngineConfig().resolved("openai/gpt-4o-mini")
    assert (local.prompt_version, local.attribution) == ("answer-local-v1", "hybrid")
    assert (remote.prompt_version, remote.attribution) == ("answer-v1", "citations")
    reqs, _, shown = answer_requests("q?", docs, local)
    roles = [role for role, _ in reqs[0].messages]
    assert roles == ["system", "user", "assistant", "user"]
    assert reqs[0].prompt_version == "answer-local-v1"
    # compact one-line sources, question last
    user = reqs[0].messages[-1][1]
    assert "[2] T1: Line one of 1. Line two of 1." in user and user.rstrip().endswith("Question: q?")
    assert shown[0] == "Line one of 0. Line two of 0."
    reqs, _, _ = answer_requests("q?", docs, remote)
    assert [role for role, _ in reqs[0].messages] == ["user"]


# --------------------------------------------------------------------------- readings on a remote endpoint


def test_selection_reading_from_an_endpoints_top_logprobs(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    """Remote models give the selection reading from the first token's top log-probabilities,
    with the instruction appended to the question (they cannot continue an assistant turn)."""
    import math

    from geoaudit.engine import generate
    from geoaudit.testing import Reply, fake_settings

    fake_server.responder = lambda req: Reply(
        text="2", logprobs=[{"2": math.log(0.6), " 1": math.log(0.3), "x": math.log(0.1)}]
    )
    gw = Gateway(fake_settings(fake_server, tmp_path / "home"))
    ans = generate(gw, "Which sport is a buffalo race?", DOCS[:3], EngineConfig(stages=("selection",)))
    assert ans.samples == [] and ans.readings is not None
    assert ans.readings.selection == pytest.approx([1 / 3, 2 / 3, 0.0])
    assert ans.readings.selection_mass == pytest.approx(0.9)
    (req,) = fake_server.requests
    assert req["max_tokens"] == 1 and req["logprobs"] is True and req["top_logprobs"] == 20
    assert "number of the source" in last_user_message(req)


def test_an_endpoint_without_logprobs_fails_the_selection_reading_clearly(
    fake_server: FakeOpenAIServer, tmp_path: Path
) -> None:
    from geoaudit.engine import generate
    from geoaudit.errors import BackendError
    from geoaudit.testing import fake_settings

    fake_server.responder = lambda req: "2"
    gw = Gateway(fake_settings(fake_server, tmp_path / "home"))
    with pytest.raises(BackendError, match="log-probabilities"):
        generate(gw, "Which sport is a buffalo race?", DOCS[:3], EngineConfig(stages=("selection",)))
    assert len(fake_server.requests) == 1  # not retried: the endpoint cannot do it at all
