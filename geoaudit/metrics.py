"""Visibility metrics: how much of an answer each source gets. Pure functions, no I/O, no LLM.

Notation (GEO paper, Aggarwal et al. KDD 2024, §2.2.1): an answer sample has sentences
s_0 … s_{N-1} (N = |S|, every sentence counts for positions, cited or not); C_j is the set of
sources attributed to s_j (:class:`geoaudit.engine.Sentence.citations`, 0-based) and k_j = |C_j|;
w_j is the number of words of s_j. A sentence citing k_j sources gives each 1/k_j of its words.

Two variants of the GEO impression metrics (chosen by ``variant``; engines record their default):

``paper`` — GEO paper eq. 2 and 3:
    word(c)     = Σ_{j: c∈C_j} w_j / k_j                 / Σ_j w_j
    pawc(c)     = Σ_{j: c∈C_j} w_j · exp(-j/N) / k_j     / Σ_j w_j
    position(c) = Σ_{j: c∈C_j} exp(-j/N) / k_j           / N
    w_j counts every word; the denominator is the whole answer, so uncited sentences dilute
    every source and an answer with no attributed sentence gives every source 0. The paper
    gives no formula for the position metric; geoaudit reads it as eq. 3 with |s| = 1.

``code`` — the released GEO code, ``src/utils.py`` (``impression_wordpos_count_simple``,
``impression_word_count_simple``, ``impression_pos_count_simple``):
    d_j = exp(-j/(N-1)) (d_0 = 1 when N = 1); w_j counts only words of more than 2 characters;
    raw_word(c) = Σ w_j/k_j, raw_pawc(c) = Σ w_j·d_j/k_j, raw_position(c) = Σ d_j/k_j over j with c∈C_j;
    each metric is normalised to shares over sources: m(c) = raw(c) / Σ_c' raw(c').
    When nothing is attributed the shares are undefined: geoaudit reports 0 and flags
    ``no_citation``; the code's uniform 1/n fallback is available as ``uniform_fallback=True``.

Citation metrics (both variants):
    cited(c)               = 1 if some C_j ∋ c else 0
    citation_count(c)      = #{j : c ∈ C_j}
    first_citation_rank(c) = 1-based position of c in the answer's citation order (distinct sources
                             by first appearance, C-SEO Bench ``get_citation_order``); None if uncited
    share_of_voice(c)      = #{j : c ∈ C_j} / #{j : C_j ≠ ∅}   (0 when no sentence is attributed)

Averaging over samples (:func:`mean_source_metrics`): every metric is the mean over the n samples,
except ``first_citation_rank``, the mean over the samples that cite the source (None if none do;
``cited`` then gives the share of samples that cite it).
"""

from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Protocol

from geoaudit.citations import AnswerSample, Sentence
from geoaudit.tokens import words

#: The two readings of GEO's impression metrics (see the module docstring).
PAWC_VARIANTS = ("paper", "code")
SOURCE_METRICS = (
    "word",
    "position",
    "pawc",
    "cited",
    "citation_count",
    "first_citation_rank",
    "share_of_voice",
)


class _EngineConfigLike(Protocol):
    @property
    def pawc_variant(self) -> str: ...


class AnswerLike(Protocol):
    """What the metrics need of an answer (:class:`geoaudit.engine.Answer` has it)."""

    @property
    def samples(self) -> Sequence[AnswerSample]: ...

    @property
    def n_sources(self) -> int: ...

    @property
    def config(self) -> _EngineConfigLike: ...


@dataclass(frozen=True)
class MetricInfo:
    """One metric, described once: simulate stores it, stats orients it, the report explains it.

    Attributes:
        name: column name in run rows and stats tables.
        label: the metric in plain words, for sentences a content creator reads.
        description: one line for tables of definitions.
        formula: the formula, in the notation of this module's docstring.
        source: where the formula comes from (paper, equation, code).
        higher_is_better: the direction in which the target gains.
        level: ``source`` (per source and sample), ``answer`` (per sample, all sources), ``pair``
            (already a difference against a baseline answer) or ``row`` (a property of the condition).
        stored: whether simulation rows carry it as a column.
    """

    name: str
    label: str
    description: str
    formula: str
    source: str
    higher_is_better: bool
    level: str = "source"
    stored: bool = True


METRICS: dict[str, MetricInfo] = {
    m.name: m
    for m in [
        MetricInfo(
            "word",
            "share of the answer's words",
            "Share of the answer's words in sentences attributed to the source (GEO Imp_wc)",
            "paper: Σ_{s∈S_c} |s|/k_s / Σ_{s∈S} |s|; code: same sum over words >2 chars, normalised to shares",
            "GEO paper eq. 2; GEO code src/utils.py impression_word_count_simple",
            True,
        ),
        MetricInfo(
            "position",
            "citation position score",
            "How early the source is cited, decaying with sentence position (GEO Position)",
            "paper reading: Σ_{s∈S_c} exp(-pos(s)/|S|)/k_s / |S|; code: Σ exp(-i/(N-1))/k_i, normalised to shares",
            "GEO paper Table 1 (no formula; geoaudit applies eq. 3 with |s|=1); GEO code impression_pos_count_simple",
            True,
        ),
        MetricInfo(
            "pawc",
            "visibility (position-adjusted word count, PAWC)",
            "Position-adjusted word count: attributed words, earlier sentences weigh more",
            "paper: Σ_{s∈S_c} |s|·exp(-pos(s)/|S|)/k_s / Σ_{s∈S} |s|; code: Σ w_i·exp(-i/(N-1))/k_i, normalised to shares",
            "GEO paper eq. 3; GEO code src/utils.py impression_wordpos_count_simple",
            True,
        ),
        MetricInfo(
            "cited",
            "chance of being cited at all",
            "Whether the answer cites the source at all (averaged: share of samples)",
            "1 if ∃ s: c ∈ C_s else 0",
            "geoaudit (cited@k, C-SEO Bench style)",
            True,
        ),
        MetricInfo(
            "citation_count",
            "number of sentences citing it",
            "Number of answer sentences attributed to the source",
            "#{s : c ∈ C_s}",
            "geoaudit",
            True,
        ),
        MetricInfo(
            "first_citation_rank",
            "rank of its first citation",
            "1-based rank of the source's first citation among the distinct cited sources (uncited: None)",
            "1 + index of c in the first-occurrence order of citations",
            "C-SEO Bench src/benchmark/engine.py get_citation_order",
            False,
        ),
        MetricInfo(
            "share_of_voice",
            "share of voice",
            "Fraction of the attributed sentences that cite the source",
            "#{s : c ∈ C_s} / #{s : C_s ≠ ∅}",
            "geoaudit",
            True,
        ),
        MetricInfo(
            "selection",
            "chance of being the source the engine cites first",
            "Share of the engine's next-token probability, where it starts citing, that goes to the "
            "source's number (selection stage; deterministic, no sampling)",
            "p_c / Σ_j p_j, p_j = P(next token = j | answer prompt, assistant turn begun with the citation prefill)",
            "geoaudit selection reading (next-token distribution over source numbers; cf. GEO Citation Lab's "
            "selection vs absorption)",
            True,
        ),
        MetricInfo(
            "relevance",
            "share of query likelihood among the shown sources",
            "How well the source on its own predicts the query, as a share of all shown sources "
            "(relevance stage; deterministic, position-free)",
            "exp(ℓ_c) / Σ_j exp(ℓ_j), ℓ_j = (1/|q|) Σ_t log P(q_t | q_<t, source j)",
            "query likelihood: Sachan et al., EMNLP 2022 (UPR); Ponte & Croft, SIGIR 1998",
            True,
        ),
        MetricInfo(
            "query_loglik",
            "query likelihood of the page",
            "Mean per-token log-probability of the query given the source alone (independent of competitors)",
            "ℓ_c = (1/|q|) Σ_t log P(q_t | q_<t, source c)",
            "query likelihood: Sachan et al., EMNLP 2022 (UPR)",
            True,
        ),
        MetricInfo(
            "selection_mass",
            "probability that the engine cites a shown source next",
            "Σ_j p_j of the selection reading: how sure the model is that a source number comes next",
            "Σ_{j=1..k} P(next token = j)",
            "geoaudit selection reading",
            True,
            "answer",
        ),
        MetricInfo(
            "no_citation_rate",
            "share of answers citing nothing",
            "Share of sampled answers that attribute no sentence to any source (counted, never spread evenly)",
            "#{samples with ∀ s: C_s = ∅} / #samples",
            "geoaudit (the GEO code instead gives every source 1/n)",
            False,
            "answer",
        ),
        MetricInfo(
            "hallucinated_citations",
            "citations of sources that were not shown",
            "Citations naming no shown source ([0], or above the number of sources), per answer",
            "#{(s, n) : n written in s, n ∉ 1..k}",
            "geoaudit",
            False,
            "answer",
        ),
        MetricInfo(
            "valid_citations",
            "valid citations written",
            "Valid explicit citations the engine wrote per answer (all sources)",
            "#{(s, n) : n written in s, n ∈ 1..k}",
            "geoaudit",
            True,
            "answer",
        ),
        MetricInfo(
            "delta_rank",
            "rank in the citation order (Δrank)",
            "How many places the target moved up in the citation order (positive = better)",
            "both cited: r_b − r_m; base only: r_b − |L_m|; method only: |L_b| − r_m; neither: 0 "
            "(0-based ranks in the first 5 distinct citations L)",
            "C-SEO Bench notebooks/4_evaluation.ipynb calculate_significant_improvements",
            True,
            "pair",
        ),
        MetricInfo(
            "delta_rank_adv",
            "rank in the citation order against the rivals answer (Δrank)",
            "Δrank of the treated answer against the rivals answer (same competitors adopting)",
            "as delta_rank, with the rivals answer as the baseline",
            "geoaudit",
            True,
            "pair",
        ),
        MetricInfo(
            "target_rank",
            "position among the engine's sources",
            "The target's 1-based position in the sources shown to the engine (lower = shown earlier)",
            "1 + display index of the target",
            "geoaudit simulation (retrieval / source order)",
            False,
            "row",
            stored=False,
        ),
    ]
}

#: Metrics read from the model's distributions (relevance and selection stages), not from sampled
#: answers: a run whose verdict is about one of them needs answers only to calibrate the engine.
READING_METRICS: frozenset[str] = frozenset({"selection", "relevance", "query_loglik", "selection_mass"})

#: Per-sample metrics of the target stored as columns of every simulation result row.
ROW_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS.values() if m.stored and m.level in ("source", "answer"))
#: Differences against a baseline answer, stored on treated rows only.
PAIRED_METRICS: tuple[str, ...] = tuple(m.name for m in METRICS.values() if m.level == "pair")


def metric_info(name: str) -> MetricInfo:
    """The registry entry of ``name``.

    Raises:
        KeyError: no such metric.
    """
    return METRICS[name]


def directions() -> dict[str, bool]:
    """``{metric: higher_is_better}`` for every registered metric."""
    return {m.name: m.higher_is_better for m in METRICS.values()}


def _check_variant(variant: str) -> None:
    if variant not in PAWC_VARIANTS:
        raise ValueError(f"unknown PAWC variant {variant!r} (use one of {', '.join(PAWC_VARIANTS)})")


def sentence_word_counts(texts: Sequence[str], variant: str = "paper") -> list[int]:
    """w_j per sentence: every word (paper) or only words of more than 2 characters (code,
    ``get_num_words`` in GEO ``src/utils.py``, which drops punctuation and "a", "of", "is")."""
    _check_variant(variant)
    min_chars = 3 if variant == "code" else 1
    return [len(words(t, min_chars)) for t in texts]


def position_weights(n_sentences: int, variant: str = "paper") -> list[float]:
    """Decay per sentence position j = 0…N-1: exp(-j/N) (paper eq. 3) or exp(-j/(N-1)) (code; 1 if N = 1)."""
    _check_variant(variant)
    n = n_sentences
    if variant == "paper":
        return [math.exp(-j / n) for j in range(n)]
    return [1.0] * n if n == 1 else [math.exp(-j / (n - 1)) for j in range(n)]


def impressions(
    sentences: Sequence[Sequence[int]],
    word_counts: Sequence[int],
    n_sources: int,
    variant: str = "paper",
    *,
    uniform_fallback: bool = False,
) -> dict[str, list[float]]:
    """GEO word / position / pawc per source from sentence attributions (see module docstring).

    Args:
        sentences: C_j per sentence, 0-based source indices (out-of-range indices are ignored).
        word_counts: w_j per sentence (:func:`sentence_word_counts` of the same variant).
        n_sources: number of sources shown.
        uniform_fallback: code variant only: give every source 1/n when a metric's total is 0.
    """
    _check_variant(variant)
    n = len(sentences)
    decay = position_weights(n, variant)
    raw = {"word": [0.0] * n_sources, "position": [0.0] * n_sources, "pawc": [0.0] * n_sources}
    for j, cites in enumerate(sentences):
        cs = sorted({c for c in cites if 0 <= c < n_sources})
        if not cs:
            continue
        k = len(cs)
        for c in cs:
            raw["word"][c] += word_counts[j] / k
            raw["position"][c] += decay[j] / k
            raw["pawc"][c] += word_counts[j] * decay[j] / k
    if variant == "paper":
        total_words = sum(word_counts)
        return {
            "word": [v / total_words if total_words else 0.0 for v in raw["word"]],
            "position": [v / n if n else 0.0 for v in raw["position"]],
            "pawc": [v / total_words if total_words else 0.0 for v in raw["pawc"]],
        }
    out: dict[str, list[float]] = {}
    for name, values in raw.items():
        total = sum(values)
        if total > 0:
            out[name] = [v / total for v in values]
        elif uniform_fallback and n_sources:
            out[name] = [1.0 / n_sources] * n_sources
        else:
            out[name] = [0.0] * n_sources
    return out


def first_occurrence_order(sentences: Sequence[Sequence[int]]) -> list[int]:
    """Distinct sources in order of first citation (C-SEO Bench ``Citation Order``)."""
    order: list[int] = []
    for cites in sentences:
        for c in cites:
            if c not in order:
                order.append(c)
    return order


def source_metrics(
    sample: AnswerSample, n_sources: int, variant: str = "paper", *, uniform_fallback: bool = False
) -> list[dict[str, float | None]]:
    """Every source's metrics for one answer sample (list index = display index).

    Keys: word, position, pawc (of ``variant``), cited, citation_count, first_citation_rank
    (None when uncited), share_of_voice. Formulas: module docstring.
    """
    sents: list[Sentence] = list(sample.sentences)
    cites = [[c for c in s.citations if 0 <= c < n_sources] for s in sents]
    imp = impressions(
        cites,
        sentence_word_counts([s.text for s in sents], variant),
        n_sources,
        variant,
        uniform_fallback=uniform_fallback,
    )
    order = first_occurrence_order(cites)
    attributed = sum(1 for c in cites if c)
    rows: list[dict[str, float | None]] = []
    for c in range(n_sources):
        count = sum(1 for cs in cites if c in cs)
        rows.append(
            {
                "word": imp["word"][c],
                "position": imp["position"][c],
                "pawc": imp["pawc"][c],
                "cited": 1.0 if count else 0.0,
                "citation_count": float(count),
                "first_citation_rank": float(order.index(c) + 1) if c in order else None,
                "share_of_voice": count / attributed if attributed else 0.0,
            }
        )
    return rows


def sample_summary(sample: AnswerSample) -> dict[str, float]:
    """Answer-level numbers of one sample: no_citation (0/1), hallucinated and valid explicit
    citations, sentences and words."""
    return {
        "no_citation": 1.0 if not any(s.citations for s in sample.sentences) else 0.0,
        "hallucinated_citations": float(sample.hallucinated_citations),
        "valid_citations": float(sample.valid_citation_count),
        "sentences": float(len(sample.sentences)),
        "words": float(sum(len(words(s.text)) for s in sample.sentences)),
    }


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values) if values else 0.0


def mean_source_metrics(
    answer: AnswerLike, variant: str | None = None, *, uniform_fallback: bool = False
) -> list[dict[str, float | None]]:
    """Every source's metrics averaged over the answer's samples (list index = display index).

    Means over samples; ``first_citation_rank`` is the mean over the samples citing the source
    (None if none does). ``variant`` defaults to the engine config's ``pawc_variant``.
    """
    variant = variant or answer.config.pawc_variant
    n = answer.n_sources
    per_sample = [source_metrics(s, n, variant, uniform_fallback=uniform_fallback) for s in answer.samples]
    out: list[dict[str, float | None]] = []
    for c in range(n):
        row: dict[str, float | None] = {}
        for name in SOURCE_METRICS:
            vals = [m[c][name] for m in per_sample]
            if name == "first_citation_rank":
                ranks = [v for v in vals if v is not None]
                row[name] = _mean(ranks) if ranks else None
            else:
                row[name] = _mean([float(v or 0.0) for v in vals])
        out.append(row)
    return out


def answer_metrics(
    answer: AnswerLike, target_index: int, variant: str | None = None, *, uniform_fallback: bool = False
) -> dict[str, float | None]:
    """The target source's metrics averaged over samples, plus answer-level numbers.

    Keys: the source metrics of :func:`mean_source_metrics` for ``target_index`` (0-based display
    index), and ``no_citation_rate`` (share of samples attributing nothing), ``no_citation_samples``,
    ``hallucinated_citations`` and ``valid_citations`` (means per sample), ``samples``.

    Raises:
        IndexError: ``target_index`` is not a shown source.
    """
    if not 0 <= target_index < answer.n_sources:
        raise IndexError(f"target index {target_index} outside the {answer.n_sources} shown sources")
    row = dict(mean_source_metrics(answer, variant, uniform_fallback=uniform_fallback)[target_index])
    summaries = [sample_summary(s) for s in answer.samples]
    row["no_citation_rate"] = _mean([s["no_citation"] for s in summaries])
    row["no_citation_samples"] = float(sum(s["no_citation"] for s in summaries))
    row["hallucinated_citations"] = _mean([s["hallucinated_citations"] for s in summaries])
    row["valid_citations"] = _mean([s["valid_citations"] for s in summaries])
    row["samples"] = float(len(summaries))
    return row


def delta_rank(
    base_order: Sequence[int],
    method_order: Sequence[int],
    base_target: int,
    method_target: int,
    max_citations: int = 5,
) -> int:
    """Rank improvement of a target between a baseline and a method answer (C-SEO Bench).

    Both citation orders (distinct sources by first appearance) are cut to their first
    ``max_citations`` entries, L_b and L_m; r is the 0-based index of the target in them
    (the target may sit at different display indices, ``base_target`` and ``method_target``,
    e.g. after a position move). Positive = moved up:

        cited in both:      r_b − r_m
        only in baseline:   r_b − |L_m|      (uncited rank = length of THAT answer's list)
        only in method:     |L_b| − r_m
        in neither:         0

    Source: C-SEO Bench ``notebooks/4_evaluation.ipynb``, ``calculate_significant_improvements``.
    """
    b = list(dict.fromkeys(base_order))[:max_citations]
    m = list(dict.fromkeys(method_order))[:max_citations]
    in_b, in_m = base_target in b, method_target in m
    if in_b and in_m:
        return b.index(base_target) - m.index(method_target)
    if in_b:
        return b.index(base_target) - len(m)
    if in_m:
        return len(b) - m.index(method_target)
    return 0


def relative_improvement(before: float, after: float) -> float | None:
    """GEO paper eq. 4: (after − before) / before × 100; None when ``before`` is 0."""
    if before == 0:
        return None
    return (after - before) / before * 100.0


def rescale_to_reference(values: Sequence[float], reference: Sequence[float]) -> list[float]:
    """Affinely map ``values`` to the mean and (population) variance of ``reference``.

    The GEO paper (§3.4) rescales its G-Eval subjective scores to PAWC's mean and variance:
    v' = mean(ref) + (v − mean(v)) · sd(ref) / sd(v). With constant ``values`` every v' = mean(ref).
    """
    if not values:
        return []
    if not reference:
        raise ValueError("rescaling needs a non-empty reference")
    mv, mr = _mean(values), _mean(reference)
    sv = math.sqrt(_mean([(v - mv) ** 2 for v in values]))
    sr = math.sqrt(_mean([(r - mr) ** 2 for r in reference]))
    if sv == 0:
        return [mr] * len(values)
    return [mr + (v - mv) * sr / sv for v in values]
