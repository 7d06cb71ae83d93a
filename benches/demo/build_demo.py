"""Build geoaudit's demo bench from its authored source texts.

Reads ``demo_source.json`` (the texts written for this project) and writes, next to it:

* ``pages/<domain>-<nn>-<k>.html``: one HTML5 page per source document (title, meta description,
  canonical link, an <h1>, paragraphs and lists, JSON-LD Article markup when the source gives an
  author and date, and site navigation/footer boilerplate that a main-text extractor should drop);
* ``queries.jsonl``: one row per query, ``{"id", "query", "candidates", "target", "domain", "tags"}``,
  candidates in the authored order. Targets are random but position-balanced: a list holding each
  position 0..4 equally often is shuffled with ``random.Random(seed)``, so every rank is the target
  of 6 of the 30 queries (position in the context is the strongest lever on citations, so an
  unbalanced draw would bias a small demo).

The output is deterministic: running the script twice gives byte-identical files.

    python benches/demo/build_demo.py          # rebuild
    python benches/demo/build_demo.py --check  # exit 1 if the committed output is stale
"""

from __future__ import annotations

import argparse
import html
import json
import random
import re
import sys
from pathlib import Path
from typing import Any

HERE = Path(__file__).resolve().parent
MIN_WORDS, MAX_WORDS = 100, 160
DOCS_PER_QUERY = 5


def slugify(text: str) -> str:
    return re.sub(r"[^a-z0-9]+", "-", text.lower()).strip("-")


def body_words(doc: dict[str, Any]) -> int:
    return sum(len((" ".join(b) if isinstance(b, list) else b).split()) for b in doc["body"])


def first_sentence(text: str, limit: int = 155) -> str:
    match = re.match(r"(.+?[.!?])(\s|$)", text)
    sentence = match.group(1) if match else text
    return sentence if len(sentence) <= limit else sentence[: limit - 1].rsplit(" ", 1)[0] + "…"


def render_page(doc: dict[str, Any], page_slug: str) -> str:
    """One self-contained, valid HTML5 page for a source document."""
    e = html.escape
    site = doc["site"]
    host = slugify(site) + ".example"
    url = f"https://{host}/{page_slug}"
    paragraphs = [b for b in doc["body"] if isinstance(b, str)]
    description = first_sentence(paragraphs[0]) if paragraphs else doc["title"]
    head = [
        '<meta charset="utf-8">',
        '<meta name="viewport" content="width=device-width, initial-scale=1">',
        f"<title>{e(doc['title'])} | {e(site)}</title>",
        f'<meta name="description" content="{e(description)}">',
        f'<link rel="canonical" href="{e(url)}">',
    ]
    article = doc.get("article")
    byline = ""
    if article:
        ld = {
            "@context": "https://schema.org",
            "@type": "Article",
            "headline": doc["title"],
            "description": description,
            "author": {"@type": "Person", "name": article["author"]},
            "datePublished": article["date"],
            "publisher": {"@type": "Organization", "name": site},
            "mainEntityOfPage": url,
        }
        head.append(
            '<script type="application/ld+json">'
            + json.dumps(ld, ensure_ascii=False).replace("</", "<\\/")
            + "</script>"
        )
        head.append(f'<meta name="author" content="{e(article["author"])}">')
        byline = (
            f'<p class="byline">By {e(article["author"])}, '
            f'<time datetime="{e(article["date"])}">{e(article["date"])}</time></p>\n'
        )
    blocks = []
    for block in doc["body"]:
        if isinstance(block, list):
            items = "\n".join(f"<li>{e(item)}</li>" for item in block)
            blocks.append(f"<ul>\n{items}\n</ul>")
        else:
            blocks.append(f"<p>{e(block)}</p>")
    nav = (
        '<header class="site-header">\n'
        f'<a class="logo" href="https://{host}/">{e(site)}</a>\n'
        '<nav aria-label="Main"><ul>\n'
        f'<li><a href="https://{host}/">Home</a></li>\n'
        f'<li><a href="https://{host}/topics">Topics</a></li>\n'
        f'<li><a href="https://{host}/about">About us</a></li>\n'
        f'<li><a href="https://{host}/newsletter">Newsletter</a></li>\n'
        "</ul></nav>\n"
        '<form class="search" role="search"><input type="search" name="q" aria-label="Search">'
        "<button>Search</button></form>\n"
        "</header>"
    )
    footer = (
        '<footer class="site-footer">\n'
        f"<p>&copy; 2024 {e(site)}. All rights reserved.</p>\n"
        f'<p><a href="https://{host}/privacy">Privacy policy</a> &middot; '
        f'<a href="https://{host}/cookies">Cookie settings</a> &middot; '
        f'<a href="https://{host}/contact">Contact</a></p>\n'
        "<p>Sign up for our weekly newsletter to get new articles in your inbox.</p>\n"
        "</footer>"
    )
    return (
        "<!DOCTYPE html>\n"
        '<html lang="en">\n<head>\n'
        + "\n".join(head)
        + "\n</head>\n<body>\n"
        + nav
        + "\n<main>\n<article>\n"
        + f"<h1>{e(doc['title'])}</h1>\n"
        + byline
        + "\n".join(blocks)
        + "\n</article>\n</main>\n"
        + footer
        + "\n</body>\n</html>\n"
    )


def build(source: dict[str, Any]) -> dict[str, str]:
    """Every output file of the demo bench, as {relative path: text}."""
    n_queries = sum(len(d["queries"]) for d in source["domains"])
    positions = [i % DOCS_PER_QUERY for i in range(n_queries)]
    random.Random(source["seed"]).shuffle(positions)
    files: dict[str, str] = {}
    rows = []
    for domain in source["domains"]:
        for qn, query in enumerate(domain["queries"], 1):
            docs = query["documents"]
            if len(docs) != DOCS_PER_QUERY:
                raise SystemExit(f"{query['query']!r}: {len(docs)} documents, expected {DOCS_PER_QUERY}")
            candidates = []
            for k, doc in enumerate(docs, 1):
                words = body_words(doc)
                if not MIN_WORDS <= words <= MAX_WORDS:
                    raise SystemExit(f"{doc['title']!r}: {words} words, expected {MIN_WORDS}-{MAX_WORDS}")
                rel = f"pages/{domain['slug']}-{qn:02d}-{k}.html"
                files[rel] = render_page(doc, slugify(doc["title"]))
                candidates.append(rel)
            target = positions[len(rows)]
            rows.append(
                {
                    "id": f"{domain['slug']}-{qn:02d}",
                    "query": query["query"],
                    "candidates": candidates,
                    "target": candidates[target],
                    "domain": domain["slug"],
                    "tags": ["demo", *query.get("tags", [])],
                }
            )
    files["queries.jsonl"] = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
    return files


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--check", action="store_true", help="only verify the committed output is current")
    args = parser.parse_args(argv)
    source = json.loads((HERE / "demo_source.json").read_text(encoding="utf-8"))
    files = build(source)
    stale = [
        rel
        for rel, text in files.items()
        if not (HERE / rel).is_file() or (HERE / rel).read_text(encoding="utf-8") != text
    ]
    if args.check:
        for rel in stale:
            print(f"stale: {rel}", file=sys.stderr)
        return 1 if stale else 0
    pages = HERE / "pages"
    pages.mkdir(exist_ok=True)
    for old in pages.glob("*.html"):
        if f"pages/{old.name}" not in files:
            old.unlink()
    for rel, text in files.items():
        (HERE / rel).write_text(text, encoding="utf-8")
    print(f"wrote {len(files) - 1} pages and queries.jsonl ({len(stale)} changed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
