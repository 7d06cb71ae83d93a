"""The embedded model as a measuring instrument: the same prompt gives the same reading, whatever ran before.

llama.cpp's numerics depend on how a prompt is split into batches, and it reuses the KV cache of
the previous prompt; without care, a resumed run differs from a fresh one. These tests run the real
SmolLM2 model (marked ``embedded``) with histories that would trip a naive prefix reuse.
"""

from __future__ import annotations

from concurrent.futures import ThreadPoolExecutor

import pytest

from geoaudit import embedded

pytestmark = pytest.mark.embedded

SOURCES = (
    "Sources:\n[1] Tea: Green tea is best steeped for two to three minutes at about 80 C.\n"
    "[2] Coffee: Espresso is brewed in about 30 seconds.\n[3] Kettles: Boiling water can scald green tea leaves.\n\n"
)


def _messages(question: str) -> list[dict[str, str]]:
    return [{"role": "user", "content": SOURCES + f"Question: {question}"}]


def _fresh_pool(size: int) -> embedded._Pool:
    return embedded._Pool(embedded.model_path("smollm2"), 2048, size, 1)


def test_readings_do_not_depend_on_what_ran_before() -> None:
    pool = _fresh_pool(1)
    try:
        ask = _messages("How long should green tea steep?")
        first = pool.choices(ask, "According to source [", ["1", "2", "3"])
        # Prompts sharing a long prefix (same sources, other question), an unrelated likelihood
        # reading, and a sampled answer of the same prompt: each leaves a different KV cache behind.
        pool.choices(_messages("How fast is espresso brewed?"), "According to source [", ["1", "2", "3"])
        pool.likelihood("Passage: bananas are yellow.\nQuestion:", " What colour are bananas?")
        pool.chat(ask, {"max_tokens": 12, "temperature": 0.7, "seed": 3})
        assert pool.choices(ask, "According to source [", ["1", "2", "3"]) == first
        # The same prompt but for its last token: a naive reuse would evaluate that one token alone,
        # through another kernel (logits differ by up to 1.0 on this model).
        pool.choices(ask, "According to source (", ["1", "2", "3"])
        assert pool.choices(ask, "According to source [", ["1", "2", "3"]) == first
        lik = pool.likelihood("Passage: Green tea steeps in three minutes.\nQuestion:", " How long does tea steep?")
        pool.choices(ask, "According to source [", ["1", "2", "3"])
        assert (
            pool.likelihood("Passage: Green tea steeps in three minutes.\nQuestion:", " How long does tea steep?")
            == lik
        )
    finally:
        pool.close()


def test_answers_for_a_seed_do_not_depend_on_history_or_context() -> None:
    pool = _fresh_pool(2)
    try:
        ask = _messages("How should I brew green tea?")
        params = {"max_tokens": 24, "temperature": 0.7, "seed": 11}
        first = pool.chat(ask, params)["choices"][0]["message"]["content"]
        pool.chat(_messages("What is espresso?"), {**params, "seed": 5})
        # Two calls at once use both contexts; each must give what a fresh context gives.
        with ThreadPoolExecutor(2) as ex:
            outs = list(ex.map(lambda _: pool.chat(ask, params)["choices"][0]["message"]["content"], range(2)))
        assert outs == [first, first]
        assert len(pool._all) == 2
    finally:
        pool.close()


def test_relevance_reading_reads_content() -> None:
    """Query likelihood must prefer a page about the question to an off-topic page."""
    pool = _fresh_pool(1)
    try:
        q = " How long should green tea steep?"
        on = pool.likelihood("Passage: Tea basics. Green tea is best steeped for two to three minutes.\nQuestion:", q)
        off = pool.likelihood("Passage: Bike care. Oil the chain every few hundred kilometres.\nQuestion:", q)
        assert on["logprob"] / on["tokens"] > off["logprob"] / off["tokens"]
    finally:
        pool.close()


@pytest.mark.embedded
def test_loading_is_allowed_in_marked_tests() -> None:
    assert embedded.load("smollm2") is embedded.load("smollm2")
