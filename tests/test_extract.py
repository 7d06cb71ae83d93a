"""Main-content extraction (extract_html) and loading local drafts (load_inputs)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from geoaudit.documents import Document, document_id, extract_html, load_inputs, write_jsonl
from geoaudit.errors import InputError

ARTICLE = """<!doctype html>
<html lang="en-GB"><head>
<meta charset="utf-8">
<title>  Best Burr Grinders (2024) </title>
<meta name="description" content="We tested twelve grinders for espresso.">
<meta name="author" content="Ada Brewer">
<meta property="article:published_time" content="2024-03-01T09:00:00Z">
<link rel="canonical" href="/grinders/">
<script type="application/ld+json">
{"@context": "https://schema.org", "@graph": [
  {"@type": "Article", "headline": "Best burr grinders", "dateModified": "2024-04-02"},
  {"@type": ["FAQPage", "WebPage"]}]}
</script>
<script type="application/ld+json">{not json</script>
</head><body>
<nav><a href="/">Home</a> <a href="/shop#top">Shop</a></nav>
<article>
<h1>Best burr grinders</h1>
<p>Burr grinders give a uniform grind, which matters for espresso. We tested twelve models
over three months in our lab and measured particle spread with a laser diffraction analyser.</p>
<h2>Top picks</h2>
<ul><li>Baratza Encore: a reliable entry model.</li><li>Niche Zero: made for single dosing.</li></ul>
<p>Blade grinders are cheaper but leave uneven particles that extract unevenly. See
<a href="https://other.example/study?id=3#fig">the study</a> and <a href="mailto:x@y.z">mail</a>.</p>
<h3>Method</h3>
<p>Each grinder ground 500 g of the same medium roast at its espresso setting.</p>
</article>
<footer>Copyright 2024 Grind Lab</footer>
</body></html>"""


def test_extract_keeps_structure_and_audit_metadata() -> None:
    doc = extract_html(ARTICLE, "https://grind.example/grinders/?utm=x", content_type="text/html; charset=utf-8")
    assert isinstance(doc, Document)
    assert "# Best burr grinders" in doc.text
    assert "## Top picks" in doc.text
    assert "- Baratza Encore: a reliable entry model." in doc.text
    assert "Copyright 2024" not in doc.text  # boilerplate dropped
    m = doc.metadata
    assert doc.title == m["title"] == "Best Burr Grinders (2024)"
    assert m["description"] == "We tested twelve grinders for espresso."
    assert m["canonical"] == "https://grind.example/grinders/"
    assert doc.id == document_id("https://grind.example/grinders/")
    assert doc.url == "https://grind.example/grinders/?utm=x"
    assert m["lang"] == "en-GB"
    assert [h["level"] for h in m["headings"]] == [1, 2, 3]
    assert m["headings"][1] == {"level": 2, "text": "Top picks"}
    assert m["jsonld_types"] == ["Article", "FAQPage", "WebPage"]
    assert m["author"] == "Ada Brewer"
    assert m["published"] == "2024-03-01T09:00:00Z"
    assert m["modified"] == "2024-04-02"
    assert "https://other.example/study?id=3" in m["links"]
    assert "https://grind.example/shop" in m["links"]
    assert not any(link.startswith("mailto") for link in m["links"])
    assert m["word_count"] == len(doc.text.split()) > 40
    assert "no_main_content" not in m
    assert doc.content_hash and len(doc.id) == 16


def test_same_canonical_gives_same_id_and_no_canonical_uses_url() -> None:
    a = extract_html(ARTICLE, "https://grind.example/grinders/?a=1")
    b = extract_html(ARTICLE, "https://grind.example/grinders/?b=2")
    assert a.id == b.id
    plain = extract_html("<html><body><p>Hello there, this is text.</p></body></html>", "https://x.example/p")
    assert plain.id == document_id("https://x.example/p")
    assert plain.metadata["canonical"] is None


def test_fallback_when_trafilatura_finds_nothing() -> None:
    html = "<html><head><title>Tiny</title></head><body><div><h2>Short</h2><li>one item</li></div></body></html>"
    doc = extract_html(html, "https://x.example/tiny")
    assert doc.text.strip()
    assert "one item" in doc.text
    assert "no_main_content" not in doc.metadata


def test_no_main_content_is_flagged() -> None:
    html = "<html><head><title>App</title><script>render()</script></head><body><div id=root></div></body></html>"
    doc = extract_html(html, "https://x.example/app")
    assert doc.text == ""
    assert doc.metadata["no_main_content"] is True
    assert doc.title == "App"


def test_bytes_with_wrong_declared_charset_are_decoded() -> None:
    body = "<html><head><meta charset='iso-8859-1'><title>Café crème</title></head><body><p>Un café crème à Paris coûte trois euros, dit-on souvent.</p></body></html>"
    doc = extract_html(body.encode("utf-8"), "https://x.example/c", content_type="text/html; charset=iso-8859-1")
    assert doc.title == "Café crème"
    assert "café crème à Paris" in doc.text
    latin = body.replace("iso-8859-1", "utf-8").encode("latin-1")  # says utf-8, is latin-1
    doc2 = extract_html(latin, "https://x.example/c2", content_type="text/html; charset=utf-8")
    assert "café crème à Paris" in doc2.text
    assert doc2.metadata["charset"] == "cp1252"  # declared utf-8 failed; Windows-1252 fallback


def test_malformed_and_deep_html_do_not_raise() -> None:
    malformed = "<html><p>unclosed <b>bold <i>italic</p><div><table><tr><td>cell<p>para</table></div></html"
    doc = extract_html(malformed, "https://x.example/m")
    assert "cell" in doc.text
    deep = (
        "<html><body>"
        + "<div>" * 20000
        + "<p>Deep words at the bottom of the tree.</p>"
        + "</div>" * 20000
        + "</body></html>"
    )
    doc = extract_html(deep, "https://x.example/deep")
    assert isinstance(doc, Document)


def test_load_inputs_files_dirs_globs(tmp_path: Path) -> None:
    site = tmp_path / "site"
    (site / "blog").mkdir(parents=True)
    (site / "index.html").write_text(ARTICLE, encoding="utf-8")
    (site / "blog" / "draft.md").write_text("Intro line\n\n# Draft title\n\nSome **draft** text.\n", encoding="utf-8")
    (site / "notes.txt").write_text("Plain notes first line\nsecond line\n", encoding="utf-8")
    (site / "image.png").write_bytes(b"\x89PNG")  # ignored inside a directory
    (site / ".hidden.md").write_text("# hidden", encoding="utf-8")

    docs = load_inputs([site])
    names = [Path(d.metadata["source_path"]).name for d in docs]
    assert names == ["draft.md", "index.html", "notes.txt"]  # recursive, sorted by path
    md = docs[0]
    assert md.title == "Draft title"
    assert md.text.startswith("Intro line")
    assert md.url == (site / "blog" / "draft.md").resolve().as_uri()
    assert md.metadata["headings"] == [{"level": 1, "text": "Draft title"}]
    assert docs[1].metadata["jsonld_types"] == ["Article", "FAQPage", "WebPage"]
    assert docs[2].title == "Plain notes first line"

    globbed = load_inputs([str(site / "*.html"), str(site / "index.html")])
    assert len(globbed) == 1  # same file twice -> once

    jsonl = tmp_path / "docs.jsonl"
    write_jsonl(jsonl, docs)
    again = load_inputs([jsonl])
    assert [d.id for d in again] == [d.id for d in docs]


def test_load_inputs_errors(tmp_path: Path) -> None:
    with pytest.raises(InputError, match="no input"):
        load_inputs([])
    with pytest.raises(InputError, match="no such file"):
        load_inputs([tmp_path / "missing.html"])
    (tmp_path / "x.pdf").write_bytes(b"%PDF")
    with pytest.raises(InputError, match=r"unsupported file type .pdf"):
        load_inputs([tmp_path / "x.pdf"])
    (tmp_path / "empty.md").write_text("  \n", encoding="utf-8")
    with pytest.raises(InputError, match="is empty"):
        load_inputs([tmp_path / "empty.md"])
    (tmp_path / "emptydir").mkdir()
    with pytest.raises(InputError, match="holds no"):
        load_inputs([tmp_path / "emptydir"])
    with pytest.raises(InputError, match="no supported files match"):
        load_inputs([str(tmp_path / "*.htm")])
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"title": "no text"}) + "\n", encoding="utf-8")
    with pytest.raises(InputError, match="text"):
        load_inputs([bad])
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(json.dumps({"text": "ok"}).encode() + b"\n" + '{"text": "cr\u00e8me"}'.encode("latin-1") + b"\n")
    with pytest.raises(InputError, match=r"latin.jsonl:2: not UTF-8"):
        load_inputs([latin])
