"""Visibility metrics against hand-computed examples (GEO paper and code variants, C-SEO Δrank)."""

from __future__ import annotations

import math

import pytest

from geoaudit.citations import AnswerSample, Sentence, make_sample
from geoaudit.engine import Answer, EngineConfig
from geoaudit.metrics import (
    METRICS,
    answer_metrics,
    delta_rank,
    impressions,
    mean_source_metrics,
    position_weights,
    relative_improvement,
    rescale_to_reference,
    sentence_word_counts,
    source_metrics,
)


def sample_of(*sentences: tuple[str, list[int]], hallucinated: int = 0) -> AnswerSample:
    sents = [Sentence(text=t, citations=c, how="explicit" if c else "none", explicit=list(c)) for t, c in sentences]
    order: list[int] = []
    for _, cs in sentences:
        order.extend(c for c in cs if c not in order)
    return AnswerSample(
        raw=" ".join(t for t, _ in sentences),
        sentences=sents,
        hallucinated_citations=hallucinated,
        valid_citation_count=sum(len(c) for _, c in sentences),
        citation_order=order,
    )


# Four sentences, N = 4; a two-source sentence; an uncited sentence; source 3 never cited.
#   s0 "Paris is the capital of France."  -> [0]      all words 6, words >2 chars 4
#   s1 "It has two million people."       -> [0, 1]   5 / 4
#   s2 "The Seine flows through it."      -> []       5 / 4
#   s3 "Tourists love it."                -> [2]      3 / 2
FOUR = sample_of(
    ("Paris is the capital of France.", [0]),
    ("It has two million people.", [0, 1]),
    ("The Seine flows through it.", []),
    ("Tourists love it.", [2]),
)


def test_word_counts_per_variant() -> None:
    texts = [s.text for s in FOUR.sentences]
    assert sentence_word_counts(texts, "paper") == [6, 5, 5, 3]
    assert sentence_word_counts(texts, "code") == [4, 4, 4, 2]


def test_position_weights() -> None:
    assert position_weights(4, "paper") == pytest.approx([1.0, 0.778801, 0.606531, 0.472367], abs=1e-6)
    assert position_weights(4, "code") == pytest.approx([1.0, 0.716531, 0.513417, 0.367879], abs=1e-6)
    assert position_weights(1, "code") == [1.0]  # the code special-cases N = 1
    assert position_weights(0, "paper") == []


def test_paper_variant_hand_computed() -> None:
    rows = source_metrics(FOUR, 4, "paper")
    # word: (6 + 5/2)/19, (5/2)/19, 3/19, 0
    assert [r["word"] for r in rows] == pytest.approx([8.5 / 19, 2.5 / 19, 3 / 19, 0.0])
    # pawc: (6·1 + 2.5·e^-0.25)/19, 2.5·e^-0.25/19, 3·e^-0.75/19
    assert [r["pawc"] for r in rows] == pytest.approx([0.418263, 0.102474, 0.074584, 0.0], abs=1e-6)
    # position: (1 + 0.5·e^-0.25)/4, 0.5·e^-0.25/4, e^-0.75/4
    assert [r["position"] for r in rows] == pytest.approx([0.347350, 0.097350, 0.118092, 0.0], abs=1e-6)
    # the uncited sentence dilutes: paper shares do not sum to 1
    assert sum(r["word"] for r in rows) == pytest.approx(14 / 19)


def test_code_variant_hand_computed() -> None:
    rows = source_metrics(FOUR, 4, "code")
    # raw word 4+2, 2, 2 over 10
    assert [r["word"] for r in rows] == pytest.approx([0.6, 0.2, 0.2, 0.0])
    # raw pawc 4 + 2·e^-1/3, 2·e^-1/3, 2·e^-1 (= 5.433063, 1.433063, 0.735759; total 7.601885)
    assert [r["pawc"] for r in rows] == pytest.approx([0.714699, 0.188514, 0.096786, 0.0], abs=1e-6)
    # raw position 1 + 0.5·e^-1/3, 0.5·e^-1/3, e^-1 (total 2.084410)
    assert [r["position"] for r in rows] == pytest.approx([0.651631, 0.171879, 0.176491, 0.0], abs=1e-6)
    for name in ("word", "pawc", "position"):
        assert sum(r[name] for r in rows) == pytest.approx(1.0)


def test_citation_metrics_hand_computed() -> None:
    rows = source_metrics(FOUR, 4, "paper")
    assert [r["cited"] for r in rows] == [1.0, 1.0, 1.0, 0.0]
    assert [r["citation_count"] for r in rows] == [2.0, 1.0, 1.0, 0.0]
    assert [r["first_citation_rank"] for r in rows] == [1.0, 2.0, 3.0, None]
    # 3 attributed sentences
    assert [r["share_of_voice"] for r in rows] == pytest.approx([2 / 3, 1 / 3, 1 / 3, 0.0])


def test_one_sentence_answer() -> None:
    s = sample_of(("Paris is the capital.", [1]))
    for variant in ("paper", "code"):
        rows = source_metrics(s, 3, variant)
        assert rows[1]["word"] == pytest.approx(1.0)
        assert rows[1]["pawc"] == pytest.approx(1.0)  # decay exp(0) = 1 for the only sentence
        assert rows[1]["position"] == pytest.approx(1.0)
        assert rows[0]["pawc"] == rows[2]["pawc"] == 0.0
        assert rows[1]["first_citation_rank"] == 1.0


def test_empty_answer_counts_as_no_citation() -> None:
    s = make_sample("", ["Paris is the capital.", "Berlin."], "citations", 0.6)
    assert s.sentences == [] and s.no_citation
    for variant in ("paper", "code"):
        rows = source_metrics(s, 2, variant)
        assert all(r["pawc"] == 0.0 and r["word"] == 0.0 and r["cited"] == 0.0 for r in rows)
        assert all(r["first_citation_rank"] is None and r["share_of_voice"] == 0.0 for r in rows)


def test_hallucinated_citations_are_never_credited() -> None:
    # [0] would be credited to the last source by GEO's code (scores[-1]); [9] is out of range.
    s = make_sample("Paris is the capital [0]. Berlin is big [9].", ["Paris capital", "Berlin big"], "citations", 0.6)
    assert s.hallucinated_citations == 2 and s.valid_citation_count == 0 and s.no_citation
    rows = source_metrics(s, 2, "code")
    assert [r["pawc"] for r in rows] == [0.0, 0.0]  # not spread evenly by default
    assert [r["pawc"] for r in source_metrics(s, 2, "code", uniform_fallback=True)] == [0.5, 0.5]
    assert [r["pawc"] for r in source_metrics(s, 2, "paper", uniform_fallback=True)] == [0.0, 0.0]


def test_mixed_valid_and_hallucinated_in_one_sentence() -> None:
    s = make_sample("Paris is the capital [1][7]. It is old [2].", ["a", "b"], "citations", 0.6)
    assert s.hallucinated_citations == 1 and s.valid_citation_count == 2
    rows = source_metrics(s, 2, "paper")
    # the [7] does not split the first sentence's words: k = 1 valid source
    words = [4, 3]
    assert rows[0]["word"] == pytest.approx(words[0] / 7)
    assert rows[1]["pawc"] == pytest.approx(words[1] * math.exp(-1 / 2) / 7)


def test_impressions_ignore_out_of_range_indices() -> None:
    imp = impressions([[0, 5], [-1]], [4, 2], 2, "paper")
    assert imp["word"] == pytest.approx([4 / 6, 0.0])


def _answer(samples: list[AnswerSample], n: int = 3, variant: str = "paper") -> Answer:
    return Answer(
        query="q",
        sources=[f"d{i}" for i in range(n)],
        samples=samples,
        attribution="citations",
        prompt_version="answer-v1",
        config=EngineConfig(pawc_variant=variant),
    )


def test_mean_over_samples_and_rank_over_citing_samples() -> None:
    a = sample_of(("Paris is the capital.", [0]), ("Berlin.", [1]))  # pawc paper src0 = 4/5
    b = sample_of(("Berlin is big.", [1]), ("Rome too.", [2]))  # src0 uncited
    ans = _answer([a, b])
    rows = mean_source_metrics(ans)
    assert rows[0]["cited"] == 0.5
    assert rows[0]["first_citation_rank"] == 1.0  # mean over the one citing sample, not penalised
    assert rows[1]["first_citation_rank"] == pytest.approx((2 + 1) / 2)
    assert rows[0]["pawc"] == pytest.approx((4 / 5 + 0.0) / 2)
    m = answer_metrics(ans, 0)
    assert m["pawc"] == rows[0]["pawc"] and m["samples"] == 2.0
    assert m["no_citation_rate"] == 0.0
    with pytest.raises(IndexError):
        answer_metrics(ans, 3)


def test_answer_metrics_counts_no_citation_samples() -> None:
    cited = sample_of(("Paris is the capital.", [0]))
    silent = sample_of(("Nothing cited here.", []), hallucinated=1)
    m = answer_metrics(_answer([cited, silent, silent], variant="code"), 0)
    assert m["no_citation_samples"] == 2.0
    assert m["no_citation_rate"] == pytest.approx(2 / 3)
    assert m["hallucinated_citations"] == pytest.approx(2 / 3)
    assert m["pawc"] == pytest.approx(1 / 3)  # code variant: share 1 in one of three samples
    assert answer_metrics(_answer([cited, silent, silent], variant="code"), 0, "paper")["pawc"] == pytest.approx(1 / 3)


@pytest.mark.parametrize(
    "base, method, bt, mt, expected",
    [
        ([2, 0, 1], [0, 2], 2, 2, 0 - 1),  # cited in both: r_b − r_m
        ([1, 2], [0, 1, 3], 2, 2, 1 - 3),  # only in baseline: r_b − len(method list)
        ([0, 1, 3, 4], [2, 0], 2, 2, 4 - 0),  # only in method: len(base list) − r_m
        ([0, 1], [3], 2, 2, 0),  # in neither
        ([0, 1, 2, 3, 4, 5], [5], 5, 5, 5 - 0),  # beyond the first 5 distinct = uncited
        ([0, 1, 2], [0, 1], 2, 0, 2 - 0),  # target moved (rank strategy): looked up at its new index
        ([1, 1, 0, 0, 2], [2], 2, 2, 2 - 0),  # duplicates collapse to distinct first occurrences
    ],
)
def test_delta_rank_cases(base: list[int], method: list[int], bt: int, mt: int, expected: int) -> None:
    assert delta_rank(base, method, bt, mt) == expected


def test_delta_rank_max_citations() -> None:
    assert delta_rank([0, 1, 2], [2], 2, 2, max_citations=2) == 2 - 0


def test_relative_improvement_and_rescale() -> None:
    assert relative_improvement(19.3, 27.2) == pytest.approx(40.93, abs=0.01)  # GEO Table 1, quotation
    assert relative_improvement(0.0, 1.0) is None
    assert rescale_to_reference([1, 2, 3], [10, 20, 30]) == pytest.approx([10, 20, 30])
    assert rescale_to_reference([5, 5], [0.1, 0.3]) == pytest.approx([0.2, 0.2])
    assert rescale_to_reference([], [1.0]) == []


def test_registry_documents_every_metric() -> None:
    for name in (
        "word",
        "position",
        "pawc",
        "cited",
        "citation_count",
        "first_citation_rank",
        "share_of_voice",
        "delta_rank",
        "no_citation_rate",
        "target_rank",
        "delta_rank_adv",
    ):
        info = METRICS[name]
        assert info.formula and info.source and info.description
        assert isinstance(info.higher_is_better, bool)
    assert METRICS["first_citation_rank"].higher_is_better is False
    assert set(source_metrics(FOUR, 4)[0]) <= set(METRICS)


def test_unknown_variant_is_rejected() -> None:
    with pytest.raises(ValueError):
        source_metrics(FOUR, 4, "other")


def test_one_direction_table_for_every_stage() -> None:
    """simulate, stats and the report read metric directions from the one registry."""
    import pandas as pd

    from geoaudit import stats
    from geoaudit.metrics import ROW_METRICS, directions

    assert set(ROW_METRICS) <= set(directions())
    # first_citation_rank is produced by every simulation: stats must know that lower is better.
    rows = pd.DataFrame(
        [
            {"item": f"q{i}", "strategy": "s", "rate": 0.0, "condition": c, "first_citation_rank": v}
            for i in range(8)
            for c, v in (("rivals", 3.0), ("treated", 2.0 if i % 4 else 3.0))
        ]
    )
    out = stats.summarize(rows, ["first_citation_rank"], comparisons=["advantage"])
    assert bool(out["higher_is_better"].iloc[0]) is False
    assert out["mean_delta"].iloc[0] < 0
