"""Strategy files: every shipped file validates; malformed files name file and field; templating."""

from __future__ import annotations

from pathlib import Path

import pytest

from geoaudit.errors import ConfigError, InputError, UnknownStrategyError
from geoaudit.resources import data_dir
from geoaudit.strategies import KINDS, load_strategies, load_strategy_file

EXPECTED = {
    "identity",
    "rank",
    "fluency",
    "unique-words",
    "authoritative",
    "quotation",
    "quotation-grounded",
    "cite-sources",
    "cite-sources-grounded",
    "easy-to-understand",
    "technical-terms",
    "statistics",
    "statistics-grounded",
    "keyword-stuffing",
    "content-improvement",
    "llm-guidance",
    "answer-first",
    "key-facts",
    "llms-txt-structure",
    "keyword-stuffing-rule",
}
QUERY_AWARE = {"keyword-stuffing", "answer-first", "keyword-stuffing-rule"}

VALID = """
name = "my-style"
title = "My style"
description = "Test strategy."
kind = "llm-rewrite"
version = "2"
postprocess = ["fenced-block", "strip-chatter"]
[origin]
paper = "mine"
method = "mine"
[prompt]
user = "Rewrite: {text}"
"""


def write(tmp_path: Path, body: str, name: str = "s.toml") -> Path:
    d = tmp_path / "strategies"
    d.mkdir(exist_ok=True)
    (d / name).write_text(body, encoding="utf-8")
    return d


@pytest.mark.parametrize("path", sorted(data_dir("strategies").glob("*.toml")), ids=lambda p: p.stem)
def test_every_shipped_file_loads_and_validates(path: Path) -> None:
    s = load_strategy_file(path, builtin=True)
    assert s.name == path.stem  # file name = strategy name, so users find the file
    assert s.kind in KINDS and s.title and s.description and s.origin.paper and s.origin.method
    assert len(s.prompt_hash) == 16
    if s.kind == "llm-rewrite":
        # Short, direct instructions that ask for the output only.
        assert "{text}" in s.user and "only." in s.user.lower()
        # The text comes last in the prompt (small models follow the nearest instruction).
        assert s.user.rstrip().endswith("{text}")
    if s.grounded:
        assert s.constraints.forbid_new, f"{s.name} is grounded but forbids nothing"


def test_registry_has_the_canonical_names() -> None:
    reg = load_strategies()
    assert set(reg.names()) == EXPECTED
    assert reg.names()[:2] == ["identity", "rank"]
    assert {n for n in EXPECTED if reg.get(n).query_aware} == QUERY_AWARE
    # Controls first, then the deterministic rewrites, then the LLM rewrites.
    assert reg.names()[2:6] == ["answer-first", "key-facts", "keyword-stuffing-rule", "llms-txt-structure"]
    assert reg.get("rank").kind == "rank" and reg.get("rank").position == 1
    assert reg.get("identity").kind == "rule"
    assert reg.get("llm-guidance").constraints.keep_structure is False


def test_get_unknown_gives_did_you_mean() -> None:
    with pytest.raises(UnknownStrategyError) as exc:
        load_strategies().get("fluncy")
    assert "fluency" in str(exc.value)


def test_resolve_all_and_names() -> None:
    reg = load_strategies()
    assert [s.name for s in reg.resolve(["all"])] == reg.names()
    got = reg.resolve(["fluency", "identity", "fluency", "rank,statistics"])
    assert [s.name for s in got] == ["fluency", "identity", "rank", "statistics"]
    with pytest.raises(UnknownStrategyError):
        reg.resolve(["fluency", "nope"])


def test_user_dir_adds_and_overrides(tmp_path: Path) -> None:
    d = write(tmp_path, VALID)
    (d / "fluency.toml").write_text(VALID.replace('"my-style"', '"fluency"'), encoding="utf-8")
    reg = load_strategies([d])
    assert "my-style" in reg and not reg.get("my-style").builtin
    assert reg.get("fluency").user == "Rewrite: {text}"
    assert reg.overridden["fluency"].builtin


def test_settings_strategies_dir_is_used(tmp_path: Path) -> None:
    from geoaudit.config import Settings

    d = write(tmp_path, VALID)
    reg = load_strategies(settings=Settings(data_dir=tmp_path, strategies_dir=d))
    assert "my-style" in reg


@pytest.mark.parametrize(
    "mutate, field",
    [
        (lambda t: t.replace('title = "My style"\n', ""), "title"),
        (lambda t: t.replace('version = "2"', "version = 2.5"), "version"),
        (lambda t: t.replace('kind = "llm-rewrite"', 'kind = "magic"'), "kind"),
        (lambda t: t.replace('user = "Rewrite: {text}"', 'user = "Rewrite it"'), "prompt.user"),
        (lambda t: t.replace('user = "Rewrite: {text}"', 'user = "Rewrite {txt}: {text}"'), "prompt.user"),
        (lambda t: t.replace('user = "Rewrite: {text}"', 'user = "For {query}: {text}"'), "query_aware"),
        (
            lambda t: t.replace('postprocess = ["fenced-block", "strip-chatter"]', 'postprocess = ["magic"]'),
            "postprocess",
        ),
        (lambda t: t.replace('paper = "mine"\n', ""), "origin.paper"),
        (lambda t: t + '\n[constraints]\nmin_length_ratio = "low"\n', "constraints.min_length_ratio"),
        (lambda t: t + '\n[constraints]\nforbid_new = ["lies"]\n', "constraints.forbid_new"),
        # TOML has nan and inf: a NaN ratio made every length check pass silently.
        (lambda t: t + "\n[constraints]\nmin_length_ratio = nan\n", "constraints.min_length_ratio"),
        (lambda t: t + "\n[constraints]\nmax_length_ratio = nan\n", "constraints.min_length_ratio"),
        (lambda t: t + "\n[constraints]\nmax_length_ratio = inf\n", "constraints.min_length_ratio"),
        (lambda t: t.replace('kind = "llm-rewrite"', 'kind = "llm-rewrite"\ntemperature = nan'), "temperature"),
        (lambda t: t.replace('kind = "llm-rewrite"', 'kind = "llm-rewrite"\ngrounded = "yes"'), "grounded"),
        (lambda t: t.replace('kind = "llm-rewrite"', 'kind = "llm-rewrite"\ncolour = "red"'), "colour"),
        (lambda t: t.replace('name = "my-style"', 'name = "My Style"'), "name"),
    ],
)
def test_malformed_file_names_file_and_field(tmp_path: Path, mutate, field: str) -> None:  # type: ignore[no-untyped-def]
    d = write(tmp_path, mutate(VALID), "broken.toml")
    with pytest.raises(ConfigError) as exc:
        load_strategies([d])
    msg = str(exc.value)
    assert "broken.toml" in msg and f"'{field}'" in msg


def test_bad_toml_names_file(tmp_path: Path) -> None:
    d = write(tmp_path, 'name = "x\ntitle = ', "bad.toml")
    with pytest.raises(ConfigError, match=r"bad\.toml.*not valid TOML"):
        load_strategies([d])


def test_missing_dir_and_duplicate_names(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="does not exist"):
        load_strategies([tmp_path / "nope"])
    d = write(tmp_path, VALID, "a.toml")
    (d / "b.toml").write_text(VALID, encoding="utf-8")
    with pytest.raises(ConfigError, match=r"b\.toml.*'name'.*already defined"):
        load_strategies([d])


def test_query_aware_templating() -> None:
    ks = load_strategies().get("keyword-stuffing")
    _system, user = ks.render("Body text {not a variable}.", title="T", query="best solar panels")
    assert "best solar panels" in user and "Body text {not a variable}." in user
    assert user.index("best solar panels") < user.index("Body text")
    with pytest.raises(InputError, match="query"):
        ks.render("Body", query=None)
    _, fl = load_strategies().get("fluency").render("Body", query="ignored query")
    assert "ignored query" not in fl


def test_prompt_hash_tracks_prompt(tmp_path: Path) -> None:
    a = load_strategies([write(tmp_path, VALID)]).get("my-style")
    d2 = tmp_path / "other"
    d2.mkdir()
    (d2 / "s.toml").write_text(VALID.replace("Rewrite:", "Rephrase:"), encoding="utf-8")
    b = load_strategies([d2]).get("my-style")
    assert a.prompt_hash != b.prompt_hash and a.version == b.version


# --------------------------------------------------------------------------- rule strategies (deterministic transforms)

RULE = """
name = "my-lead"
title = "My lead"
description = "Answer first."
kind = "rule"
transform = "answer-first"
version = "1"
query_aware = true
[origin]
paper = "mine"
method = "mine"
[params]
sentences = 3
"""


def test_rule_strategy_names_a_transform_with_checked_params(tmp_path: Path) -> None:
    s = load_strategies([write(tmp_path, RULE)]).get("my-lead")
    assert s.kind == "rule" and s.transform == "answer-first" and s.parameters == {"sentences": 3}
    assert s.changes_text and not s.needs_model and s.rule_transform.label == "answer-first@2"
    # Parameters a file leaves out take the transform's default, so the hash covers the effective values.
    d = tmp_path / "stuff"
    d.mkdir()
    (d / "s.toml").write_text(
        RULE.replace('"answer-first"', '"keyword-stuffing"').replace("sentences = 3", "sentences = 1")
    )
    stuffing = load_strategies([d]).get("my-lead")
    assert stuffing.parameters == {"sentences": 1, "max_insertions": 10, "max_added_share": 0.2}
    # identity is the trivial transform of the same mechanism.
    ident = load_strategies().get("identity")
    assert ident.transform == "identity" and not ident.changes_text and not ident.needs_model


@pytest.mark.parametrize(
    "mutate, field, words",
    [
        (lambda t: t.replace('transform = "answer-first"', 'transform = "answer-frist"'), "transform", "answer-first"),
        (lambda t: t.replace("sentences = 3", "sentences = 0"), "params.sentences", "between"),
        (lambda t: t.replace("sentences = 3", 'sentences = "two"'), "params.sentences", "int"),
        (lambda t: t.replace("sentences = 3", "sentences = true"), "params.sentences", "int"),
        (lambda t: t.replace("sentences = 3", "sentense = 3"), "params.sentense", "not a parameter"),
        (lambda t: t.replace("query_aware = true\n", ""), "query_aware", "uses the query"),
        (
            lambda t: t.replace('transform = "answer-first"', 'transform = "key-facts"').replace("sentences = 3", ""),
            "query_aware",
            "does not use the query",
        ),
        (lambda t: t.replace('kind = "rule"', 'kind = "rank"'), "transform", "only allowed for kind rule"),
    ],
)
def test_malformed_rule_strategy_names_file_and_field(tmp_path: Path, mutate, field: str, words: str) -> None:  # type: ignore[no-untyped-def]
    d = write(tmp_path, mutate(RULE), "broken.toml")
    with pytest.raises(ConfigError) as exc:
        load_strategies([d])
    msg = str(exc.value)
    assert "broken.toml" in msg and f"'{field}'" in msg and words in msg


def test_rule_hash_tracks_params(tmp_path: Path) -> None:
    a = load_strategies([write(tmp_path, RULE)]).get("my-lead")
    d2 = tmp_path / "other"
    d2.mkdir()
    (d2 / "s.toml").write_text(RULE.replace("sentences = 3", "sentences = 1"), encoding="utf-8")
    b = load_strategies([d2]).get("my-lead")
    assert a.prompt_hash != b.prompt_hash and a.version == b.version
    fluency = load_strategies().get("fluency").to_dict()
    assert fluency["transform"] is None and fluency["params"] == {}
