"""Guards on crafted examples: inventions are flagged, paraphrases are not; failure reasons."""

from __future__ import annotations

import pytest

from geoaudit import guards as G

ORIGINAL = (
    "Solar panels convert sunlight into electricity. The efficiency of modern panels is about 20%. "
    "According to the International Energy Agency, solar capacity doubled since 2018. "
    "Installation costs fell sharply. See https://example.org/solar for details."
)
PARAPHRASE = (
    "Solar panels turn sunlight into electrical power. Modern panels have an efficiency of roughly 20%. "
    "The International Energy Agency reports that solar capacity has doubled since 2018. "
    "The cost of installing them dropped sharply. Details are at example.org/solar."
)


def test_paraphrase_has_no_fabrication_flags_and_survives() -> None:
    flags = G.fabrication_flags(ORIGINAL, PARAPHRASE)
    assert flags == {"numbers": [], "quotes": [], "sources": [], "urls": []}
    assert G.sentence_survival(ORIGINAL, PARAPHRASE) >= 0.8
    assert 0.9 < G.length_ratio(ORIGINAL, PARAPHRASE) < 1.3
    assert G.check(ORIGINAL, PARAPHRASE, min_length_ratio=0.6, max_length_ratio=1.6).failure is None


def test_invented_statistic_is_flagged() -> None:
    fake = ORIGINAL.replace("Installation costs fell sharply.", "Installation costs fell by 45% since 2019.")
    assert G.new_numbers(ORIGINAL, fake) == ["45", "2019"]
    # Re-formatted numbers are the same number.
    assert G.new_numbers("It cost 1,000 dollars, 20.0 percent", "It cost 1000 dollars, 20 percent") == []


def test_invented_quote_is_flagged_but_a_verbatim_quote_is_not() -> None:
    fake = ORIGINAL + ' "Solar is the cheapest electricity in history," one analyst said.'
    assert G.new_quotes(ORIGINAL, fake) == ["Solar is the cheapest electricity in history,"]
    verbatim = ORIGINAL + ' As they put it, "solar capacity doubled since 2018".'
    assert G.new_quotes(ORIGINAL, verbatim) == []


def test_invented_organisation_and_attribution_are_flagged() -> None:
    fake = ORIGINAL + " A 2023 study by Harvard University agrees, and the WHO says so too. Dr. Jane Miller concurs."
    sources = G.new_sources(ORIGINAL, fake)
    assert "Harvard University" in sources and "WHO" in sources and "Dr. Jane Miller" in sources
    assert "International Energy Agency" not in sources


def test_invented_url_is_flagged() -> None:
    fake = ORIGINAL + " More at www.solarfacts.org and https://example.org/solar."
    assert G.new_urls(ORIGINAL, fake) == ["solarfacts.org"]


def test_dropped_sentences_lower_survival() -> None:
    first_only = "Solar panels convert sunlight into electricity."
    assert G.sentence_survival(ORIGINAL, first_only) <= 0.4
    assert G.sentence_survival(ORIGINAL, "") == 0.0
    assert G.sentence_survival("", "anything") == 1.0


@pytest.mark.parametrize(
    "output, reason",
    [
        ("   \n ", "empty output"),
        ("I'm sorry, but I can't help with rewriting this text.", "the model refused"),
        ("As an AI language model, I cannot do that.", "the model refused"),
        (
            "Rewrite the text below so it reads smoothly and clearly. Solar panels convert sunlight.",
            "the model echoed the prompt",
        ),
        ("Solar.", "length ratio"),
        (ORIGINAL + " " + ORIGINAL + " " + ORIGINAL, "length ratio"),
    ],
)
def test_failure_reasons(output: str, reason: str) -> None:
    report = G.check(
        ORIGINAL,
        output,
        min_length_ratio=0.6,
        max_length_ratio=1.6,
        instructions=["Rewrite the text below so it reads smoothly and clearly."],
    )
    assert report.failure is not None and report.failure.startswith(reason)


def test_refusal_quoted_in_the_original_is_not_a_refusal() -> None:
    original = "I'm sorry for the delay, said the CEO. The shipment arrives on Monday."
    assert not G.is_refusal(original, original)
    assert G.check(original, original).failure is None


def test_forbidden_fabrication_fails_grounded_rewrite() -> None:
    fake = ORIGINAL.replace("about 20%", "about 20%, and 87% of owners are happy")
    report = G.check(ORIGINAL, fake, forbid_new=["numbers"])
    assert report.failure == "new numbers in a grounded rewrite: 87"
    assert G.check(ORIGINAL, fake).failure is None  # without the constraint it is only a flag
    assert G.check(ORIGINAL, fake).flag_count == 1


def test_report_to_dict_is_json_safe() -> None:
    import json

    data = G.check("", "new words").to_dict()
    assert data["length_ratio"] is None  # inf is not JSON
    json.dumps(data)


# ---- hostile inputs (issue 11): bounded work, and the report says when a shortcut was taken ----
# Speed itself is not asserted here (tests/test_regex_linearity.py checks every pattern's shape;
# benches/perf/bench_regex.py prints the scaling); these check what the user gets back.


def test_huge_capitalised_token_is_no_name_and_check_cuts_at_the_cap() -> None:
    token = "A" * 200_000
    assert G.named_sources(token) == set() and G.named_sources(token[:20_000]) == set()
    assert G.named_sources("Aa-" * 20_000) == set() and G.urls("a." * 100_000) == set()
    report = G.check("A plain original sentence about kettles.", token)
    assert report.fabrications["sources"] == []
    assert any(f"{G.GUARD_MAX_CHARS:,} characters" in n for n in report.notes)
    assert G.check(ORIGINAL, PARAPHRASE).notes == []


def test_names_still_found_next_to_long_tokens() -> None:
    text = "X" * 5_000 + " and then the World Health Organization says that " + "y" * 5_000
    assert "World Health Organization" in G.named_sources(text)


def test_word_change_is_exact_until_its_budget_then_windowed() -> None:
    assert G.check(ORIGINAL, PARAPHRASE).notes == []
    same = "the " * 30_000  # one repeated word: the exact diff is quadratic
    report = G.check(same, same)
    assert report.word_change == 0.0 and any("aligned windows" in n for n in report.notes)
    half = "the " * 15_000 + "a " * 15_000
    assert 0.4 < G.word_change(same, half) < 0.6
    # Found by the fuzzer: one word against a pattern of short matches made difflib cubic (98 s).
    cubic = G.check("I " * 2_000, "I ffff 0 0 0 96 " * 1_000)
    assert 0.0 < cubic.word_change < 1.0 and any("aligned windows" in n for n in cubic.notes)


def test_sentence_survival_on_a_long_document_is_estimated_on_a_sample() -> None:
    sents = [f"Zeta {i} {i + 10**5} {i + 2 * 10**5} {i + 3 * 10**5}." for i in range(3_000)]
    doc = " ".join(sents)
    report = G.check(doc, doc)
    assert report.sentence_survival == 1.0 and any("evenly spaced" in n for n in report.notes)
    assert 0.45 <= G.sentence_survival(doc, " ".join(sents[:1_500])) <= 0.55


def test_guards_read_words_as_the_metrics_and_attribution_do() -> None:
    # One tokenizer (geoaudit.tokens). The guards' own used to know only ASCII letters: a rewrite
    # in Japanese was "empty output" (a failure), "Größe" was two words, and a guard's word count
    # disagreed with the metrics' on the same text.
    from geoaudit.metrics import sentence_word_counts

    assert not G.is_empty("これは日本語の文章です。")
    assert G.check("Der Wasserkocher ist schnell.", "これは日本語の文章です。").failure != "empty output"
    assert G.length_ratio("Die Größe zählt.", "Die Größe zählt sehr.") == pytest.approx(4 / 3)
    text = "State-of-the-art kettles don't boil faster; ça dépend, says Zoë."
    assert len(G.words(text)) == sentence_word_counts([text], "paper")[0] == 9
    # Hyphenated compounds are one word, but a quote that drops the hyphens is still no invention,
    # and a compound's parts still match the same words written apart.
    assert G.new_quotes("a state-of-the-art kettle", 'It is "state of the art kettle" now.') == []
    assert G.sentence_survival("Long-term savings are large.", "Savings over the long term are large.") == 1.0
