"""How the text parsers that read untrusted text scale on hostile inputs: n characters vs 8n.

A linear parser takes about 8x as long on 8x the input; a quadratic one about 64x. Each case is a
shape that once made a backtracking pattern rescan the same text from every start position
(issue 11, item 6). ``tests/test_regex_linearity.py`` checks the patterns' structure; this script
shows the effect in seconds (CPU time of this process, best of three).

    python benches/perf/bench_regex.py [--n 4000]
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable

from geoaudit import citations, guards
from geoaudit.documents import _markdown_title_and_headings


def cases() -> dict[str, tuple[Callable[[str], object], Callable[[int], str]]]:
    """name -> (function under test, input of about n characters)."""
    return {
        "guards: capitalised token": (guards.named_sources, lambda n: "A" * n),
        "guards: capitalised words": (guards.named_sources, lambda n: "Aa " * (n // 3)),
        "guards: hyphenated capitals": (guards.named_sources, lambda n: "A-" * (n // 2)),
        "guards: dotted labels (urls)": (guards.urls, lambda n: "a." * (n // 2)),
        "guards: hyphenated labels (urls)": (guards.urls, lambda n: "a-" * (n // 2)),
        "guards: check() on a capitalised token": (
            lambda t: guards.check("Plain original text.", t),
            lambda n: "A" * n,
        ),
        "guards: sentences after a long space run": (guards.sentences, lambda n: "End." + " " * n + "x"),
        "engine: unclosed citation list": (lambda t: citations.find_citations(t, 5), lambda n: "[" + "1," * (n // 2)),
        "engine: citation prefix then spaces": (
            lambda t: citations.find_citations(t, 5),
            lambda n: "[source" + " " * n,
        ),
        "engine: run of full stops": (citations.split_sentences, lambda n: "." * n),
        "engine: spaces before no punctuation": (citations.strip_citations, lambda n: " " * n + "x"),
        "engine: spaces inside a citation group": (
            lambda t: citations.parse_citation_group(t, 5),
            lambda n: "1" + " " * n + "x",
        ),
        "documents: markdown heading with a long tail": (_markdown_title_and_headings, lambda n: "# a" + " " * n + "x"),
    }


def cpu(fn: Callable[[str], object], text: str) -> float:
    best = float("inf")
    for _ in range(3):
        start = time.process_time()
        fn(text)
        best = min(best, time.process_time() - start)
    return best


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--n", type=int, default=4000, help="size of the small input (the large one is 8n)")
    args = parser.parse_args()
    print(f"{'case':46} {'n':>8} {'t(n) ms':>9} {'t(8n) ms':>9} {'ratio':>6}")
    for name, (fn, make) in cases().items():
        small, large = cpu(fn, make(args.n)), cpu(fn, make(8 * args.n))
        ratio = large / small if small > 0 else float("nan")
        verdict = "" if ratio < 20 else "  <- superlinear"
        print(f"{name:46} {args.n:>8} {small * 1e3:9.2f} {large * 1e3:9.2f} {ratio:6.1f}{verdict}")


if __name__ == "__main__":
    main()
