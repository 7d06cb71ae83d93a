"""Citation parsing, sentence splitting and the three attribution modes."""

from __future__ import annotations

import pytest

from geoaudit.citations import (
    attribute,
    citation_order,
    find_citations,
    make_sample,
    overlap_scores,
    overlap_sources,
    parse_answer,
    parse_citation_group,
    split_sentences,
    strip_citations,
)


@pytest.mark.parametrize(
    "text, valid, bad",
    [
        ("Paris [1].", [0], []),
        ("Paris [1][2].", [0, 1], []),
        ("Paris [1, 2].", [0, 1], []),
        ("Paris [1,2;3].", [0, 1, 2], []),
        ("Paris [1-3].", [0, 1, 2], []),
        ("Paris [1\u20133].", [0, 1, 2], []),  # en dash
        ("Paris [3-1].", [0, 1, 2], []),  # reversed range
        ("Paris [2][1].", [1, 0], []),  # written order kept
        ("Paris [1][1].", [0], []),  # duplicates within a sentence count once
        ("Paris [Source 2].", [1], []),
        ("Paris [ 4 ].", [3], []),
        ("Paris [0].", [], ["0"]),  # never credited to the last source
        ("Paris [6].", [], ["6"]),
        ("Paris [4-7].", [3, 4], ["6", "7"]),
        ("Paris [1-400].", [], ["1-400"]),  # not a plausible range: one hallucination
        ("Paris [2020].", [], ["2020"]),
        ("Paris (1) and [a] and [1a].", [], []),  # not citations
    ],
)
def test_find_citations(text: str, valid: list[int], bad: list[str]) -> None:
    assert find_citations(text, 5) == (valid, bad)


def test_parse_citation_group_counts_each_hallucination() -> None:
    assert parse_citation_group("0, 1, 9", 3) == ([0], ["0", "9"])


def test_strip_citations() -> None:
    assert strip_citations("Paris is big [1][2] .") == "Paris is big."
    assert strip_citations("Paris [1, 2] is big.") == "Paris is big."


@pytest.mark.parametrize(
    "text, expected",
    [
        ("One. Two.", ["One.", "Two."]),
        ("A cat [1]. A dog [2].", ["A cat [1].", "A dog [2]."]),
        ("A cat. [1] A dog.[2][3] Done", ["A cat. [1]", "A dog.[2][3]", "Done"]),  # trailing citations stay
        ("Dr. Who lives in London. He is old.", ["Dr. Who lives in London.", "He is old."]),
        ("Use e.g. salt. Then stir.", ["Use e.g. salt.", "Then stir."]),
        ("J. Smith wrote it. It sold well.", ["J. Smith wrote it.", "It sold well."]),
        ("It costs 3.5 dollars. Cheap!", ["It costs 3.5 dollars.", "Cheap!"]),
        ("Is it? Yes. 2024 was good.", ["Is it?", "Yes.", "2024 was good."]),
        ("lower. case continues here.", ["lower. case continues here."]),
        ("- first item [1]\n- second item [2]", ["first item [1]", "second item [2]"]),
        ("## Title\n\nBody text.", ["Title", "Body text."]),
        ("**Bold** claim [1].", ["Bold claim [1]."]),
        ("Claim one.\n[2]", ["Claim one. [2]"]),  # a citation-only line joins the sentence before
        ("A line that wraps\nand continues.", ["A line that wraps and continues."]),
        ("", []),
        ("   \n  ", []),
    ],
)
def test_split_sentences(text: str, expected: list[str]) -> None:
    assert split_sentences(text) == expected


def test_parse_answer_separates_text_and_citations() -> None:
    sents = parse_answer("Paris is the capital [1][9]. It is old.", 3)
    assert [s.text for s in sents] == ["Paris is the capital.", "It is old."]
    assert sents[0].explicit == [0] and sents[0].hallucinated == ["9"]
    assert sents[0].raw == "Paris is the capital [1][9]."
    assert sents[1].explicit == [] and sents[1].citations == [] and sents[1].how == "none"


SOURCES = [
    "Kambala is a buffalo race held in the paddy fields of coastal Karnataka.",
    "Kho kho is a traditional tag game played across India by teams of twelve.",
    "Cricket is the most watched sport in India.",
]
RAW = (
    "Kambala is a buffalo race in coastal Karnataka paddy fields [2]. "  # wrong explicit citation
    "Kho kho is a traditional tag game played across India. "  # uncited, copies source 2
    "Cricket is watched a lot [7]. "  # hallucinated only, overlaps source 3
    "Weather today is sunny."  # overlaps nothing
)


def test_overlap_scores_and_ties() -> None:
    scores = overlap_scores("Kho kho is a traditional tag game.", [{"kho", "traditional", "tag", "game"}, {"game"}])
    assert scores == [1.0, 0.25]  # content words: {kho, traditional, tag, game}
    assert overlap_sources([0.8, 0.8, 0.1], 0.5) == [0, 1]  # ties -> all tied
    assert overlap_sources([0.4, 0.3], 0.5) == []
    assert overlap_sources([0.0, 0.0], 0.0) == []  # no overlap is never an attribution
    assert overlap_scores("It is.", [set()]) == [0.0]  # no content words


def test_attribution_citations_mode() -> None:
    s = make_sample(RAW, SOURCES, "citations", 0.6)
    assert [x.citations for x in s.sentences] == [[1], [], [], []]
    assert [x.how for x in s.sentences] == ["explicit", "none", "none", "none"]
    assert s.hallucinated_citations == 1 and s.valid_citation_count == 1
    assert s.citation_order == [1]


def test_attribution_overlap_mode_ignores_written_citations() -> None:
    s = make_sample(RAW, SOURCES, "overlap", 0.6)
    assert [x.citations for x in s.sentences] == [[0], [1], [2], []]
    assert [x.how for x in s.sentences] == ["overlap", "overlap", "overlap", "none"]
    assert s.sentences[0].explicit == [1]  # what the model wrote is still recorded


def test_attribution_hybrid_mode() -> None:
    s = make_sample(RAW, SOURCES, "hybrid", 0.6)
    # explicit where valid, overlap elsewhere (including the sentence with only a hallucinated citation)
    assert [x.citations for x in s.sentences] == [[1], [1], [2], []]
    assert [x.how for x in s.sentences] == ["explicit", "overlap", "overlap", "none"]
    assert s.citation_order == [1, 2]
    assert not s.no_citation


def test_overlap_threshold_matters() -> None:
    strict = make_sample("Cricket is watched a lot in India.", SOURCES, "overlap", 1.0)
    loose = make_sample("Cricket is watched a lot in India.", SOURCES, "overlap", 0.3)
    assert strict.sentences[0].citations == []
    assert loose.sentences[0].citations == [2]


def test_attribute_rejects_unresolved_mode() -> None:
    from geoaudit.errors import ConfigError

    with pytest.raises(ConfigError):
        attribute(parse_answer("x", 1), ["x"], "auto", 0.5)


def test_citation_order_first_occurrence() -> None:
    s = make_sample("A [3][1]. B [1][2]. C [3].", ["a", "b", "c"], "citations", 0.5)
    assert citation_order(s.sentences) == [2, 0, 1] == s.citation_order


def test_render_shows_attributed_citations() -> None:
    s = make_sample(RAW, SOURCES, "hybrid", 0.6)
    assert s.render().startswith("Kambala is a buffalo race in coastal Karnataka paddy fields. [2] Kho kho")
