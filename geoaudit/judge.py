"""Subjective impression: the GEO paper's 7 facets, each rated 1-5 by an LLM judge through the gateway.

Facets (GEO paper §2.2.1, G-Eval style): relevance, influence, uniqueness, diversity, follow-up
likelihood, subjective position, subjective count; one prompt file each,
``geoaudit/prompts/judge-<facet>-<version>.toml``. The judge sees the question and the answer sample
rendered with its attributed citations (so overlap-attributed sentences show their source too).

Score of one (sample, facet):

* the first call asks for ``top_logprobs``; when the backend returns them, the score is the
  expectation over the first generated token's alternatives that are digits 1-5,
  E = Σ v·p(v) / Σ p(v) (G-Eval; GEO's code uses the same sum but counts non-numeric tokens as 1,
  geoaudit drops them and renormalises);
* otherwise the score is the mean of ``samples`` sampled judgements (the first reply plus
  ``samples - 1`` more with distinct derived seeds), each the first digit 1-5 in the reply;
  replies without one are skipped (and counted).
* A source the sample does not attribute any sentence to scores 1 without a call (every facet's
  scale says "1: the answer does not cite the source"), unless ``skip_uncited=False``.

The subjective impression is the mean of the facets; over samples, the mean of the per-sample values.
Judging is the expensive part and off by default in ``geoaudit ask`` (``--judge``). The paper's
rescaling to PAWC's mean and variance is :func:`rescale_to_pawc` (population-level, off by default).
"""

from __future__ import annotations

import asyncio
import math
import re
import tomllib
from collections.abc import Sequence
from dataclasses import asdict, dataclass, field
from functools import lru_cache
from typing import Any

from geoaudit.citations import AnswerSample
from geoaudit.engine import Answer, sample_seed
from geoaudit.errors import ConfigError
from geoaudit.llm import Gateway, LLMRequest, LLMResponse, run_sync
from geoaudit.metrics import rescale_to_reference
from geoaudit.resources import prompts_dir

FACETS = (
    "relevance",
    "influence",
    "uniqueness",
    "diversity",
    "follow_up",
    "subjective_position",
    "subjective_count",
)
SCORE_MIN, SCORE_MAX = 1, 5


@dataclass(frozen=True)
class JudgeConfig:
    """How the judge is asked. Every field is recorded with the scores (:meth:`describe`)."""

    facets: tuple[str, ...] = FACETS
    #: sampled judgements per (answer sample, facet) when the backend returns no logprobs
    samples: int = 3
    temperature: float = 0.7
    max_tokens: int = 3
    top_logprobs: int = 5
    version: str = "v1"
    skip_uncited: bool = True

    def __post_init__(self) -> None:
        unknown = [f for f in self.facets if f not in FACETS]
        if unknown:
            raise ConfigError(f"unknown judge facet(s) {', '.join(unknown)}", hint=f"facets: {', '.join(FACETS)}")
        if self.samples < 1:
            raise ConfigError("judge samples must be at least 1")

    def prompt_version(self, facet: str) -> str:
        return f"judge-{facet}-{self.version}"

    def describe(self) -> dict[str, Any]:
        d = asdict(self)
        d["facets"] = list(self.facets)
        return d


@dataclass(frozen=True)
class FacetPrompt:
    version: str
    facet: str
    name: str
    template: str
    description: str = ""


@lru_cache(maxsize=64)
def load_facet_prompt(facet: str, version: str = "v1") -> FacetPrompt:
    """The judge prompt of ``facet``.

    Raises:
        ConfigError: no such prompt file or a malformed one.
    """
    full = f"judge-{facet}-{version}"
    path = prompts_dir() / f"{full}.toml"
    if not path.is_file():
        raise ConfigError(f"no judge prompt {full!r} in {prompts_dir()}")
    data = tomllib.loads(path.read_text(encoding="utf-8"))
    if data.get("version") != full or data.get("facet") != facet:
        raise ConfigError(f"{path}: version/facet fields do not match the file name")
    for placeholder in ("{query}", "{answer}", "{n}"):
        if placeholder not in data.get("template", ""):
            raise ConfigError(f"{path}: template lacks {placeholder}")
    return FacetPrompt(
        version=full,
        facet=facet,
        name=data.get("name", facet),
        template=data["template"],
        description=data.get("description", ""),
    )


def render_facet_prompt(prompt: FacetPrompt, query: str, answer_text: str, n: int) -> str:
    # replace, not format: answers contain braces and brackets.
    return (
        prompt.template.replace("{query}", query.strip())
        .replace("{answer}", answer_text.strip() or "(empty answer)")
        .replace("{n}", str(n))
    )


def parse_score(text: str) -> int | None:
    """The first standalone digit 1-5 in a judge reply ("4", "Score: 4/5"), else None."""
    m = re.search(r"(?<!\d)([1-5])(?!\d)", text)
    return int(m.group(1)) if m else None


def expected_score(alternatives: dict[str, float]) -> float | None:
    """E[score] from one token's top alternatives {token: logprob}: Σ v·p / Σ p over tokens that
    are a digit 1-5 (after stripping spaces); None when none is."""
    num = den = 0.0
    for token, logprob in alternatives.items():
        t = token.strip()
        if t.isdigit() and SCORE_MIN <= int(t) <= SCORE_MAX:
            p = math.exp(logprob)
            num += int(t) * p
            den += p
    return num / den if den > 0 else None


@dataclass
class FacetScore:
    """One facet of one answer sample for one source.

    ``method``: logprobs | samples | uncited | unparsed (no usable judgement: score None).
    """

    facet: str
    score: float | None
    method: str
    judgements: list[float] = field(default_factory=list)
    unparsed: int = 0
    prompt_version: str = ""


@dataclass
class SourceJudgement:
    """The 7 facets (means over answer samples) and the subjective impression of one source."""

    source_index: int
    facets: dict[str, float | None]
    subjective_impression: float | None
    per_sample: list[list[FacetScore]] = field(default_factory=list)
    config: dict[str, Any] = field(default_factory=dict)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


def _request(prompt: str, cfg: JudgeConfig, version: str, seed: int, logprobs: bool) -> LLMRequest:
    return LLMRequest.chat(
        prompt,
        temperature=cfg.temperature,
        max_tokens=cfg.max_tokens,
        seed=seed,
        prompt_version=version,
        purpose="judge",
        top_logprobs=cfg.top_logprobs if logprobs else None,
    )


async def ajudge_facet(
    gateway: Gateway,
    query: str,
    sample: AnswerSample,
    source_index: int,
    facet: str,
    config: JudgeConfig | None = None,
    *,
    seed: int = 0,
) -> FacetScore:
    """Score one facet of ``sample`` for the source at 0-based ``source_index``."""
    cfg = config or JudgeConfig()
    prompt = load_facet_prompt(facet, cfg.version)
    if cfg.skip_uncited and not any(source_index in s.citations for s in sample.sentences):
        return FacetScore(facet, float(SCORE_MIN), "uncited", prompt_version=prompt.version)
    text = render_facet_prompt(prompt, query, sample.render(), source_index + 1)
    first: LLMResponse = await gateway.acomplete(_request(text, cfg, prompt.version, sample_seed(seed, 0), True))
    if first.top_logprobs:
        e = expected_score(first.top_logprobs[0])
        if e is not None:
            return FacetScore(facet, e, "logprobs", [e], prompt_version=prompt.version)
    rest = await gateway.amap(
        [_request(text, cfg, prompt.version, sample_seed(seed, i), True) for i in range(1, cfg.samples)]
    )
    parsed = [parse_score(r.text) for r in [first, *rest]]
    values = [float(v) for v in parsed if v is not None]
    unparsed = sum(1 for v in parsed if v is None)
    if not values:
        return FacetScore(facet, None, "unparsed", [], unparsed, prompt.version)
    return FacetScore(facet, sum(values) / len(values), "samples", values, unparsed, prompt.version)


def _mean(values: Sequence[float]) -> float | None:
    return sum(values) / len(values) if values else None


async def ajudge(
    gateway: Gateway,
    answer: Answer,
    source_index: int,
    config: JudgeConfig | None = None,
    *,
    seed: int = 0,
) -> SourceJudgement:
    """Judge every configured facet of every answer sample for one source; average over samples.

    A facet's value is the mean over samples with a usable score; the subjective impression is the
    mean of the facet values (None if none is usable).
    """
    cfg = config or JudgeConfig()
    if not 0 <= source_index < answer.n_sources:
        raise IndexError(f"source index {source_index} outside the {answer.n_sources} shown sources")
    per_sample: list[list[FacetScore]] = []
    for si, sample in enumerate(answer.samples):
        scores = await asyncio.gather(
            *(
                ajudge_facet(gateway, answer.query, sample, source_index, f, cfg, seed=sample_seed(seed, si))
                for f in cfg.facets
            )
        )
        per_sample.append(list(scores))
    facets: dict[str, float | None] = {}
    for fi, facet in enumerate(cfg.facets):
        facets[facet] = _mean([score for row in per_sample if (score := row[fi].score) is not None])
    si_value = _mean([v for v in facets.values() if v is not None])
    return SourceJudgement(source_index, facets, si_value, per_sample, cfg.describe())


async def ajudge_all(
    gateway: Gateway, answer: Answer, config: JudgeConfig | None = None, *, seed: int = 0
) -> list[SourceJudgement]:
    """:func:`ajudge` for every shown source (list index = display index)."""
    return list(await asyncio.gather(*(ajudge(gateway, answer, i, config, seed=seed) for i in range(answer.n_sources))))


def judge(
    gateway: Gateway, answer: Answer, source_index: int, config: JudgeConfig | None = None, *, seed: int = 0
) -> SourceJudgement:
    """Synchronous :func:`ajudge`."""
    return run_sync(ajudge(gateway, answer, source_index, config, seed=seed))


def judge_all(
    gateway: Gateway, answer: Answer, config: JudgeConfig | None = None, *, seed: int = 0
) -> list[SourceJudgement]:
    """Synchronous :func:`ajudge_all`."""
    return run_sync(ajudge_all(gateway, answer, config, seed=seed))


def rescale_to_pawc(subjective: Sequence[float | None], pawc: Sequence[float]) -> list[float | None]:
    """Rescale subjective impressions to the mean and variance of PAWC values (GEO paper §3.4).

    Use it over a population (all query-source pairs of a run), not one answer. None stays None.
    """
    present = [v for v in subjective if v is not None]
    scaled = iter(rescale_to_reference(present, pawc))
    return [None if v is None else next(scaled) for v in subjective]
