"""Bench loaders (GEO-bench, C-SEO Bench, geoaudit's own formats), the demo bench, and `geoaudit bench`."""

from __future__ import annotations

import collections
import json
import shutil
import subprocess
import sys
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from geoaudit.bench import Bench, BenchItem, fetch_bench, list_benches, load_bench
from geoaudit.cli import app
from geoaudit.config import Settings
from geoaudit.errors import FetchError, InputError
from geoaudit.resources import data_dir

FIXTURES = Path(__file__).parent / "fixtures" / "bench"
runner = CliRunner()


# ------------------------------------------------------------------------------------------ GEO-bench


def test_geo_bench_loads_and_reports_rows_with_too_few_sources() -> None:
    bench = load_bench(FIXTURES / "geo-bench.jsonl")
    assert isinstance(bench, Bench) and bench.format == "geo-bench" and bench.name == "geo-bench"
    assert [it.id for it in bench] == ["0", "1", "3"]
    assert bench.skipped == [("2", "3 documents, fewer than k=5")]
    first = bench.items[0]
    assert isinstance(first, BenchItem)
    assert first.query == "how long should a kettle take to boil"
    assert first.target == 3 and first.target_document.url == "https://kettles.example/3"
    assert [d.url for d in first.documents] == [f"https://kettles.example/{i}" for i in range(5)]
    assert first.documents[0].text.startswith("Kettle page 0")  # cleaned_text, not raw_text
    assert first.domain == "Home & Garden" and "fact" in first.tags
    # an empty cleaned_text falls back to raw_text
    walking = bench.items[1]
    assert walking.target == 1 and walking.target_document.text.startswith("Raw text only")
    assert walking.domain == "Health"
    assert bench.items[2].domain == ""  # no genre tag
    # a URL repeated within one row still gives distinct document ids
    assert len({d.id for d in bench.items[2].documents}) == 5


def test_geo_bench_k_limit_and_domain() -> None:
    assert len(load_bench(FIXTURES / "geo-bench.jsonl", k=3)) == 4
    assert load_bench(FIXTURES / "geo-bench.jsonl", k=3).skipped == []
    assert [it.id for it in load_bench(FIXTURES / "geo-bench.jsonl", limit=2)] == ["0", "1"]
    assert [it.id for it in load_bench(FIXTURES / "geo-bench.jsonl", domain="health")] == ["1"]
    with pytest.raises(InputError, match=r"no item has at least k=6 .*largest has 5"):
        load_bench(FIXTURES / "geo-bench.jsonl", k=6)
    with pytest.raises(InputError, match="no items in domain 'travel'"):
        load_bench(FIXTURES / "geo-bench.jsonl", domain="travel")


def test_geo_bench_bad_files(tmp_path: Path) -> None:
    empty = tmp_path / "empty.jsonl"
    empty.write_text("\n\n")
    with pytest.raises(InputError, match="is empty"):
        load_bench(empty)
    rows = [json.loads(line) for line in (FIXTURES / "geo-bench.jsonl").read_text().splitlines()]
    del rows[1]["sugg_idx"]
    broken = tmp_path / "broken.jsonl"
    broken.write_text("\n".join(json.dumps(r) for r in rows))
    with pytest.raises(InputError, match=r"broken.jsonl:2: GEO-bench row lacks sugg_idx"):
        load_bench(broken)
    train = tmp_path / "train.jsonl"
    train.write_text(json.dumps({"query": "q", "dset": "ms", "sugg_idx": 2}) + "\n")
    with pytest.raises(InputError, match="query-only"):
        load_bench(train)
    garbage = tmp_path / "garbage.jsonl"
    garbage.write_text('{"query": "q", "sources": [\n')
    with pytest.raises(InputError, match=r"garbage.jsonl:1: not valid JSON"):
        load_bench(garbage)
    with pytest.raises(InputError, match="no bench 'nope-not-here'"):
        load_bench("nope-not-here")


def test_non_utf8_jsonl_is_an_input_error_naming_the_line(tmp_path: Path) -> None:
    # Was "internal error: UnicodeDecodeError" from a later line than the format probe reads.
    good = (FIXTURES / "geo-bench.jsonl").read_text(encoding="utf-8").splitlines()
    latin = tmp_path / "latin.jsonl"
    latin.write_bytes(good[0].encode() + b"\n" + good[1].replace("a", "\u00e9").encode("latin-1") + b"\n")
    with pytest.raises(InputError, match=r"latin.jsonl:2: not UTF-8"):
        load_bench(latin)
    binary = tmp_path / "binary.jsonl"
    binary.write_bytes(b"\x89PNG\r\n\x1a\n\xff\xfe")
    with pytest.raises(InputError, match=r"binary.jsonl:1: not UTF-8"):
        load_bench(binary)
    bom = tmp_path / "bom.jsonl"
    bom.write_bytes(b"\xef\xbb\xbf" + "\n".join(good).encode())
    assert len(load_bench(bom, k=1)) == len(load_bench(FIXTURES / "geo-bench.jsonl", k=1))


# ------------------------------------------------------------------------------------------ C-SEO Bench


def _write_cseo(
    path: Path, rows: list[tuple[Any, str, str]], columns: tuple[str, ...] = ("query_id", "query", "document")
) -> Path:
    import pyarrow as pa
    import pyarrow.parquet as pq

    path.parent.mkdir(parents=True, exist_ok=True)
    table = pa.table({c: [r[i] for r in rows] for i, c in enumerate(columns)})
    pq.write_table(table, path)
    return path


def _cseo_rows() -> list[tuple[Any, str, str]]:
    """q0 has 12 documents, q1 5, q2 3; rows of q0 and q1 are interleaved to test grouping."""
    rows = []
    for i in range(12):
        rows.append((100, "best trail shoes", f"q0 doc {i}"))
        if i < 5:
            rows.append((7, "quiet mechanical keyboard", f"q1 doc {i}"))
    rows += [(55, "solar garden lights", f"q2 doc {i}") for i in range(3)]
    return rows


def test_cseo_parquet_with_selected_docs(tmp_path: Path) -> None:
    data = tmp_path / "data"
    _write_cseo(data / "retail-00000-of-00001.parquet", _cseo_rows())
    # C-SEO Bench's GitHub layout: data/{split}/selected_docs.json, keys are query positions
    (data / "retail").mkdir()
    (data / "retail" / "selected_docs.json").write_text(
        json.dumps({"0": {"7": {"doc": "q0 doc 7"}}, "1": {"2": {"doc": "q1 doc 2"}}, "2": {"0": {"doc": "x"}}})
    )
    bench = load_bench(data / "retail-00000-of-00001.parquet")
    assert bench.format == "cseo-bench" and bench.notes == []
    assert [it.id for it in bench] == ["retail/100", "retail/7"]
    assert bench.skipped == [("retail/55", "3 documents, fewer than k=5")]
    q0, q1 = bench.items
    assert q0.query == "best trail shoes" and q0.domain == "retail"
    assert [d.text for d in q0.documents] == [f"q0 doc {i}" for i in range(10)]  # first 10, file order
    assert q0.target == 7 and q0.target_document.text == "q0 doc 7"
    assert q1.target == 2 and q1.k == 5 and "target:random" not in q1.tags
    assert len({d.id for it in bench for d in it.documents}) == 15  # ids from query_id + position
    assert load_bench(data / "retail-00000-of-00001.parquet").items == bench.items  # deterministic
    # the whole directory loads too, and the split name doubles as the domain filter
    assert [it.id for it in load_bench(data, k=3, domain="retail")] == ["retail/100", "retail/7", "retail/55"]


def test_cseo_random_targets_are_seeded_and_announced(tmp_path: Path) -> None:
    rows = [(q, f"query {q}", f"doc {q}-{i}") for q in range(20) for i in range(10)]
    path = _write_cseo(tmp_path / "books-00000-of-00001.parquet", rows)
    a, b, c = load_bench(path, seed=1), load_bench(path, seed=1), load_bench(path, seed=2)
    assert [it.target for it in a] == [it.target for it in b]
    assert [it.target for it in a] != [it.target for it in c]
    assert all("target:random" in it.tags for it in a)
    assert a.notes and "seed 1" in a.notes[0]
    # a target does not depend on --limit
    assert [it.target for it in load_bench(path, seed=1, limit=5)] == [it.target for it in a][:5]


def test_cseo_directory_of_splits_and_errors(tmp_path: Path) -> None:
    _write_cseo(tmp_path / "news-00000-of-00001.parquet", [(1, "election turnout", f"n{i}") for i in range(6)])
    _write_cseo(tmp_path / "web-00000-of-00001.parquet", [(1, "boiling point of water", f"w{i}") for i in range(6)])
    bench = load_bench(tmp_path)
    assert bench.format == "cseo-bench" and bench.domains == ["news", "web"]
    assert [it.id for it in load_bench(tmp_path, domain="web")] == ["web/1"]

    bad = _write_cseo(
        tmp_path / "x" / "retail-00000-of-00001.parquet", [(1, "q", "d")], columns=("query_id", "query", "text")
    )
    with pytest.raises(InputError, match=r"lacks column.*document"):
        load_bench(bad)
    fake = tmp_path / "y" / "books.parquet"
    fake.parent.mkdir()
    fake.write_text("not parquet at all")
    with pytest.raises(InputError, match="not a readable parquet file"):
        load_bench(fake)
    with pytest.raises(InputError, match=r"fewer than|no item has at least k=7"):
        load_bench(tmp_path / "news-00000-of-00001.parquet", k=7)


# ------------------------------------------------------------------------------------------ own formats


def test_own_jsonl_target_index_and_url() -> None:
    bench = load_bench(FIXTURES / "own.jsonl", k=3)
    assert bench.format == "geoaudit-jsonl"
    one, two = bench.items
    assert one.id == "bikes-1" and one.target == 1 and one.target_document.title == "My chain guide"
    assert two.target == 0 and two.target_document.url == "https://mine.example/tyres"
    assert one.domain == "sports" and one.tags == ("guide",)
    with pytest.raises(InputError, match="no item has at least k=5"):
        load_bench(FIXTURES / "own.jsonl")


def test_own_jsonl_bad_target(tmp_path: Path) -> None:
    row = json.loads((FIXTURES / "own.jsonl").read_text().splitlines()[1])
    row["target_url"] = "https://elsewhere.example/"
    path = tmp_path / "b.jsonl"
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match="not one of the item's documents"):
        load_bench(path, k=3)
    row["target"] = 3
    path.write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match="target 3 is not a 0-based index"):
        load_bench(path, k=3)


def test_items_sharing_an_id_are_refused_by_name(tmp_path: Path) -> None:
    rows = [json.loads(line) for line in (FIXTURES / "own.jsonl").read_text().splitlines() if line.strip()]
    second = {**rows[1], "id": rows[0]["id"], "query": "a different question"}
    path = tmp_path / "dup.jsonl"
    path.write_text("".join(json.dumps(r) + "\n" for r in (rows[0], second)))
    # Before: one item, the second query silently never asked.
    with pytest.raises(InputError, match=r"'bikes-1' used by more than one item") as info:
        load_bench(path, k=3)
    assert info.value.hint and "own 'id'" in info.value.hint
    # An explicit id equal to another row's position number collides too.
    numbered = [{**rows[0], "id": None}, {**rows[1], "id": "0"}]
    path.write_text("".join(json.dumps(r) + "\n" for r in numbered))
    with pytest.raises(InputError, match="'0' used by more than one item"):
        load_bench(path, k=3)


def test_own_directory_extracts_pages(tmp_path: Path) -> None:
    bench = load_bench(FIXTURES / "site", k=3)
    assert bench.format == "geoaudit-dir" and bench.name == "site"
    roof1, roof2 = bench.items
    assert roof1.target == 1 and roof1.target_document.title.startswith("Slate roofs")
    assert roof2.target == 2 and roof2.target_document.title.startswith("Warning signs")
    assert roof1.documents[0].url == (FIXTURES / "site" / "pages" / "rival-a.html").resolve().as_uri()
    for doc in roof1.documents:  # the extractor keeps the article and drops nav/footer boilerplate
        assert "All rights reserved" not in doc.text and "Contact us today" not in doc.text
        assert doc.word_count > 40
    assert roof1.documents[1].id == roof2.documents[0].id  # the same page in two items is one document


@pytest.mark.parametrize("escape", ["/abs", "../outside.txt", "file:///abs", "pages/link.html", "FILE:///abs"])
def test_own_directory_candidates_must_stay_inside_the_folder(tmp_path: Path, escape: str) -> None:
    # A bench folder is data from someone else: its candidates went to the LLM and into the report,
    # whatever local file they named.
    secret = tmp_path / "outside.txt"
    secret.write_text("SECRET token=hunter2, the contents of a file outside the bench folder\n")
    site = tmp_path / "bench"
    shutil.copytree(FIXTURES / "site" / "pages", site / "pages")
    (site / "pages" / "link.html").symlink_to(secret)
    candidate = escape.replace("/abs", str(secret))
    row = {"id": "x", "query": "q", "candidates": ["pages/mine.html", "pages/rival-a.html", candidate], "target": 0}
    (site / "queries.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match="outside the bench folder"):
        load_bench(site, k=3)


def test_own_directory_with_documents_jsonl(tmp_path: Path) -> None:
    site = tmp_path / "mybench"
    site.mkdir()
    docs = [
        {"url": f"https://shop{i}.example/kettles", "title": f"Shop {i}", "text": f"Kettles from shop {i}."}
        for i in range(3)
    ]
    (site / "documents.jsonl").write_text("".join(json.dumps(d) + "\n" for d in docs))
    row = {
        "id": "k1",
        "query": "quiet kettle",
        "candidates": [d["url"] for d in docs],
        "target": "https://shop2.example/kettles",
    }
    (site / "queries.jsonl").write_text(json.dumps(row) + "\n")
    bench = load_bench(site, k=3)
    assert bench.items[0].target == 2 and bench.items[0].target_document.text == "Kettles from shop 2."
    row["candidates"].append("https://not-crawled.example/")
    (site / "queries.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"not-crawled.example.*not found.*crawl it"):
        load_bench(site, k=3)
    row["candidates"][-1] = "pages/missing.html"
    (site / "queries.jsonl").write_text(json.dumps(row) + "\n")
    with pytest.raises(InputError, match=r"missing.html does not exist"):
        load_bench(site, k=3)


# ------------------------------------------------------------------------------------------ demo bench


def test_demo_bench_shape() -> None:
    bench = load_bench("demo")
    assert bench.name == "demo" and bench.format == "geoaudit-dir" and bench.skipped == []
    assert len(bench) == 30 and all(it.k == 5 for it in bench)
    assert collections.Counter(it.domain for it in bench) == {
        d: 5 for d in ("health", "home-garden", "finance", "travel", "technology", "food")
    }
    # targets are random but each position is the target equally often
    assert collections.Counter(it.target for it in bench) == {p: 6 for p in range(5)}
    words = [d.word_count for it in bench for d in it.documents]
    assert min(words) >= 100 and max(words) <= 200, (min(words), max(words))
    texts = [d.text for it in bench for d in it.documents]
    assert len(set(texts)) == 150
    assert not any("All rights reserved" in t or "Sign up for our weekly newsletter" in t for t in texts)
    assert len({it.query for it in bench}) == 30
    # ids come from the pages' canonical URLs, so they do not depend on where geoaudit is installed
    assert all(d.metadata.get("canonical", "").startswith("https://") for it in bench for d in it.documents)


def test_demo_bench_output_is_current(tmp_path: Path) -> None:
    """The committed pages and queries.jsonl are exactly what build_demo.py makes from the source."""
    copy = tmp_path / "demo"
    shutil.copytree(data_dir("demo"), copy)
    check = subprocess.run([sys.executable, str(copy / "build_demo.py"), "--check"], capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    (copy / "pages" / "food-01-1.html").write_text("<html></html>")
    stale = subprocess.run([sys.executable, str(copy / "build_demo.py"), "--check"], capture_output=True, text=True)
    assert stale.returncode == 1 and "food-01-1.html" in stale.stderr


# ------------------------------------------------------------------------------------------ list / CLI


def test_list_benches_and_cli(tmp_path: Path, _isolated_home: Path) -> None:
    benches = _isolated_home / "benches"
    benches.mkdir(parents=True)
    shutil.copy(FIXTURES / "geo-bench.jsonl", benches / "mygeo.jsonl")
    (benches / "broken.jsonl").write_text('{"hello": 1}\n')
    rows = {r["name"]: r for r in list_benches(Settings(data_dir=_isolated_home))}
    assert rows["demo"]["items"] == 30 and rows["demo"]["format"] == "geoaudit-dir"
    assert len(rows["demo"]["domains"]) == 6
    assert rows["mygeo"]["items"] == 3 and rows["mygeo"]["skipped"] == 1 and rows["mygeo"]["error"] is None
    assert rows["broken"]["items"] == 0 and "unknown bench format" in rows["broken"]["error"]

    result = runner.invoke(app, ["bench", "list"], terminal_width=200)
    assert result.exit_code == 0, result.output
    demo_line = next(line for line in result.output.splitlines() if "│ demo" in line)
    assert "30" in demo_line and "geoaudit-dir" in demo_line
    assert "mygeo" in result.output and "unusable" in result.output

    shown = runner.invoke(app, ["bench", "show", "demo", "--limit", "3", "--domain", "travel"], terminal_width=200)
    assert shown.exit_code == 0, shown.output
    assert "travel-01" in shown.output and "travel-04" not in shown.output and "showing 3" in shown.output
    as_json = runner.invoke(app, ["bench", "show", "mygeo", "--json"])
    assert as_json.exit_code == 0 and [r["target"] for r in json.loads(as_json.stdout)] == [3, 1, 4]
    missing = runner.invoke(app, ["bench", "show", "no-such-bench"])
    assert missing.exit_code == 2 and "no bench 'no-such-bench'" in missing.output


# ------------------------------------------------------------------------------------------ fetch


@pytest.fixture
def hub(tmp_path: Path) -> Iterator[tuple[str, dict[str, bytes], list[str]]]:
    """A local stand-in for the Hugging Face hub: serves ``files`` by path, 404 otherwise."""
    files: dict[str, bytes] = {}
    seen: list[str] = []

    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_GET(self) -> None:
            seen.append(self.path)
            body = files.get(self.path)
            self.send_response(200 if body is not None else 404)
            payload = body if body is not None else b"not found"
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"http://127.0.0.1:{server.server_address[1]}", files, seen
    finally:
        server.shutdown()
        server.server_close()


def test_fetch_geo_bench_from_local_hub(hub: tuple[str, dict[str, bytes], list[str]], tmp_path: Path) -> None:
    base, files, _seen = hub
    files["/datasets/GEO-Optim/geo-bench/resolve/main/test.jsonl"] = (FIXTURES / "geo-bench.jsonl").read_bytes()
    settings = Settings(data_dir=tmp_path / "home")
    paths = fetch_bench("geo-bench", settings, base_url=base)
    assert paths == [tmp_path / "home" / "benches" / "geo-bench" / "test.jsonl"]
    assert paths[0].read_bytes() == (FIXTURES / "geo-bench.jsonl").read_bytes()
    assert len(load_bench("geo-bench", settings=settings)) == 3  # the fetched bench is found by name
    assert any(r["name"] == "geo-bench" and r["items"] == 3 for r in list_benches(settings))


def test_fetch_cseo_split_via_cli(
    hub: tuple[str, dict[str, bytes], list[str]], tmp_path: Path, _isolated_home: Path
) -> None:
    base, files, _seen = hub
    parquet = _write_cseo(tmp_path / "src.parquet", [(1, "quiet keyboard", f"k{i}") for i in range(10)])
    files["/datasets/parameterlab/c-seo-bench/resolve/main/data/retail-00000-of-00001.parquet"] = parquet.read_bytes()
    result = runner.invoke(app, ["bench", "fetch", "cseo-bench", "retail", "--base-url", base])
    assert result.exit_code == 0, result.output
    saved = _isolated_home / "benches" / "cseo-bench" / "retail-00000-of-00001.parquet"
    assert saved.read_bytes() == parquet.read_bytes()
    bench = load_bench("cseo-bench", settings=Settings(data_dir=_isolated_home))
    assert bench.domains == ["retail"] and len(bench) == 1


def test_fetch_errors(hub: tuple[str, dict[str, bytes], list[str]], tmp_path: Path) -> None:
    base, _files, _seen = hub
    settings = Settings(data_dir=tmp_path / "home")
    with pytest.raises(FetchError, match="HTTP 404"):
        fetch_bench("cseo-bench", settings, splits=["news"], base_url=base)
    assert not list((tmp_path / "home" / "benches").rglob("*.parquet*"))  # no partial file left behind
    with pytest.raises(InputError, match="unknown C-SEO Bench split 'shoes'"):
        fetch_bench("cseo-bench", settings, splits=["shoes"], base_url=base)
    with pytest.raises(InputError, match="choose geo-bench or cseo-bench"):
        fetch_bench("ms-marco", settings, base_url=base)
    # nothing listens on this port: an offline-style failure is one clear line, exit code 1
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        dead = f"http://127.0.0.1:{sock.getsockname()[1]}"
    result = runner.invoke(app, ["bench", "fetch", "geo-bench", "--base-url", dead])
    assert result.exit_code == 1 and "cannot download geo-bench" in result.output
    assert "Traceback" not in result.output
