"""What a word is, for every part of geoaudit that counts or compares words.

One tokenizer, used by the metrics (word counts), attribution (content-word overlap), the rewrite
guards (length, change, survival, invented quotes and names), the deterministic transforms
(keywords, BM25) and ``geoaudit check`` (does an AI agent get the same text as a browser):

* :func:`words`: runs of letters and digits in any script, joined by inner apostrophes and
  hyphens (``don't``, ``Japan's``, ``state-of-the-art``, ``Größe`` and ``日本語`` are one word each).
* :data:`STOPWORDS`: common English function words that say nothing about a topic.
* :func:`content_words`: the lower-cased words of 3+ characters that are not stopwords
  (attribution compares answer sentences and sources with these).
* :func:`content_tokens`: content words made comparable across inflections, for matching a
  rewrite against its original: hyphenated compounds split, possessives and a plural ``s``
  dropped, cut to 6 characters (truncation stemming: "installation"/"installing" match).

Everything here is a pure function over untrusted text, and the one pattern runs in linear time.
"""

from __future__ import annotations

import re

#: A word: letters/digits (``[^\W_]``: ``\w`` without the underscore), inner ``'``, ``’`` or ``-``
#: each followed by more letters/digits (so a trailing or doubled one ends the word).
WORD_RE = re.compile(r"[^\W_]+(?:['\u2019\-][^\W_]+)*")

STOPWORDS = frozenset(
    [
        "the",
        "and",
        "for",
        "are",
        "but",
        "not",
        "you",
        "all",
        "any",
        "can",
        "had",
        "her",
        "was",
        "one",
        "our",
        "out",
        "has",
        "his",
        "how",
        "its",
        "may",
        "new",
        "now",
        "who",
        "did",
        "get",
        "him",
        "let",
        "she",
        "too",
        "use",
        "that",
        "with",
        "have",
        "this",
        "will",
        "your",
        "from",
        "they",
        "know",
        "want",
        "been",
        "good",
        "much",
        "some",
        "time",
        "very",
        "when",
        "come",
        "here",
        "just",
        "like",
        "long",
        "make",
        "many",
        "more",
        "only",
        "over",
        "such",
        "take",
        "than",
        "them",
        "well",
        "were",
        "what",
        "also",
        "into",
        "most",
        "other",
        "their",
        "there",
        "these",
        "those",
        "which",
        "would",
        "about",
        "after",
        "could",
        "every",
        "first",
        "where",
        "while",
        "being",
        "both",
        "does",
        "each",
        "should",
        "through",
        "under",
        "until",
        "because",
        "between",
        "however",
    ]
)

#: Content tokens are cut to this many characters (truncation stemming).
STEM_CHARS = 6


def words(text: str, min_chars: int = 1) -> list[str]:
    """Words of ``text`` as written (see :data:`WORD_RE`), those of at least ``min_chars`` characters."""
    return [w for w in WORD_RE.findall(text) if len(w) >= min_chars]


def content_words(text: str) -> set[str]:
    """Lower-cased words of 3+ characters that are not :data:`STOPWORDS`."""
    return {w for w in (t.lower() for t in words(text, 3)) if w not in STOPWORDS}


def stem(word: str) -> str:
    """A lower-case word reduced for matching: a plural ``s`` dropped (not ``ss``, not from 3-letter
    words), then cut to :data:`STEM_CHARS` characters."""
    if len(word) > 3 and word.endswith("s") and not word.endswith("ss"):
        word = word[:-1]
    return word[:STEM_CHARS]


def content_tokens(text: str) -> set[str]:
    """:func:`content_words` made comparable: each hyphen part on its own, an apostrophe suffix
    dropped (``japan's`` -> ``japan``), kept when still 3+ characters and not a stopword, then
    reduced by :func:`stem`."""
    out: set[str] = set()
    for word in content_words(text):
        for part in word.split("-"):
            base = part.replace("\u2019", "'").split("'", 1)[0]
            if len(base) >= 3 and base not in STOPWORDS:
                out.add(stem(base))
    return out


__all__ = ["STEM_CHARS", "STOPWORDS", "WORD_RE", "content_tokens", "content_words", "stem", "words"]
