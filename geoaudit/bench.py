"""Benches: sets of (query, candidate documents in a given order, target document) items.

A bench is what ``geoaudit simulate`` runs on. Four kinds of input load into the same
:class:`Bench`:

* ``geo-bench``: GEO-bench's published JSONL (Aggarwal et al., KDD 2024), one row per query with
  ``query``, ``tags``, ``sources[{url, raw_text, cleaned_text}]`` and ``sugg_idx`` (the 0-based
  target). Rows with fewer sources than ``k`` are reported in ``Bench.skipped`` (3 of the 1,000
  test rows have fewer than 5).
* ``cseo-bench``: C-SEO Bench's published parquet (Puerto et al., 2025), one row per
  query-document pair with ``query_id, query, document``; a file or a directory of split files
  ``{split}-00000-of-00001.parquet``. The context of a query is its first
  :data:`CSEO_CONTEXT_DOCS` documents in file order; the target comes from a
  ``selected_docs.json`` next to the file when present, else it is drawn per query with the seed.
* ``geoaudit-jsonl``: geoaudit's own JSONL, one row per item with the documents inline.
* ``geoaudit-dir``: a directory with ``queries.jsonl`` (candidates are URLs or paths of pages
  inside the directory) plus the pages, so a site owner can bench their own page against
  competitors' pages.

``"demo"`` names the bench shipped with geoaudit; other bare names are looked up in
``<data dir>/benches/`` (where ``geoaudit bench fetch`` puts downloads).

``k`` is the number of documents an item needs: items with fewer are skipped and reported, and a
bench where every item has fewer is an :class:`~geoaudit.errors.InputError`. Items keep all their
documents (GEO-bench has 5, C-SEO Bench up to 10), in the order the bench gives them.
"""

from __future__ import annotations

import contextlib
import json
import os
import random
import re
from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from geoaudit.documents import Document, atomic_path, document_id, jsonl_records, read_jsonl
from geoaudit.errors import FetchError, InputError

if TYPE_CHECKING:
    from geoaudit.config import Settings

#: C-SEO Bench puts the first 10 documents of a query in the engine's context (``num_docs_in_context``).
CSEO_CONTEXT_DOCS = 10
CSEO_SPLITS = ("books", "debate", "news", "retail", "videogames", "web")
HF_BASE_URL = "https://huggingface.co"
GEO_BENCH_PATH = "/datasets/GEO-Optim/geo-bench/resolve/main/test.jsonl"
CSEO_BENCH_PATH = "/datasets/parameterlab/c-seo-bench/resolve/main/data/{split}-00000-of-00001.parquet"
QUERIES_FILE = "queries.jsonl"
DOCUMENTS_FILE = "documents.jsonl"

#: GEO-bench's 25 genre tags (its leaderboard vocabulary); a row's domain is the first tag among them.
GEO_GENRES = (
    "Arts & Entertainment", "Autos & Vehicles", "Beauty & Fitness", "Books & Literature",
    "Business & Industrial", "Computers & Electronics", "Finance", "Food & Drink", "Games", "Health",
    "Hobbies & Leisure", "Home & Garden", "Internet & Telecom", "Jobs & Education",
    "Law & Government", "News", "Online Communities", "People & Society", "Pets & Animals",
    "Real Estate", "Reference", "Science", "Shopping", "Sports", "Travel",
)  # fmt: skip


def _genre_key(tag: str) -> str:
    return re.sub(r"\s+", " ", tag.lower().replace("&", "and")).strip()


_GENRE_BY_KEY = {_genre_key(g): g for g in GEO_GENRES}


@dataclass(frozen=True)
class BenchItem:
    """One query with its candidate documents (in the bench's order) and the target's index."""

    id: str
    query: str
    documents: tuple[Document, ...]
    target: int
    domain: str = ""
    tags: tuple[str, ...] = ()

    @property
    def target_document(self) -> Document:
        return self.documents[self.target]

    @property
    def k(self) -> int:
        return len(self.documents)


@dataclass
class Bench:
    """A loaded bench: its usable items, and the items it skipped with the reason."""

    name: str
    source: str
    format: str
    items: list[BenchItem]
    skipped: list[tuple[str, str]] = field(default_factory=list)
    #: Caveats a reader of the results should know (e.g. "targets drawn at random with seed 0").
    notes: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.items)

    def __iter__(self) -> Iterator[BenchItem]:
        return iter(self.items)

    @property
    def domains(self) -> list[str]:
        return sorted({item.domain for item in self.items if item.domain})

    def item(self, item_id: str) -> BenchItem:
        for it in self.items:
            if it.id == item_id:
                return it
        raise InputError(f"bench {self.name} has no item {item_id!r}")


# --------------------------------------------------------------------------------------------
# entry points


def benches_dir(settings: Settings | None = None) -> Path:
    """``<data dir>/benches``: where user bench files and ``bench fetch`` downloads live."""
    if settings is not None:
        return Path(settings.data_dir) / "benches"
    from geoaudit.config import default_data_dir

    return default_data_dir() / "benches"


def resolve_bench(spec: str | Path, settings: Settings | None = None) -> tuple[str, Path]:
    """Map a bench spec (``demo``, a name in ``<data dir>/benches/``, or a path) to (name, path)."""
    text = str(spec)
    if text == "demo":
        from geoaudit.resources import data_dir

        return "demo", data_dir("demo")
    path = Path(text).expanduser()
    if path.exists():
        return _name_of(path), path
    if os.sep not in text and "/" not in text:
        root = benches_dir(settings)
        for candidate in (root / text, root / f"{text}.jsonl", root / f"{text}.parquet"):
            if candidate.exists():
                return text, candidate
    raise InputError(
        f"no bench {text!r}: give a path to a bench file or directory, 'demo', or a name from 'geoaudit bench list'"
    )


def load_bench(
    spec: str | Path,
    *,
    k: int = 5,
    limit: int | None = None,
    seed: int = 0,
    domain: str | None = None,
    settings: Settings | None = None,
) -> Bench:
    """Load a bench in any supported format (detected from the file).

    Args:
        spec: ``"demo"``, a name in ``<data dir>/benches/``, or a path to a GEO-bench JSONL, a C-SEO
            Bench parquet file or directory, a geoaudit JSONL, or a geoaudit bench directory.
        k: documents an item needs; items with fewer are skipped and listed in ``Bench.skipped``.
        limit: keep at most this many usable items (the first ones, in bench order).
        seed: seeds the per-query random target where the bench has none (C-SEO Bench without
            ``selected_docs.json``).
        domain: keep only items of this domain (see :func:`same_domain`).

    Raises:
        InputError: unreadable or empty files, missing columns, an unknown format, or no item with
            at least ``k`` documents.
    """
    if k < 1:
        raise InputError(f"k must be at least 1, got {k}")
    if limit is not None and limit < 1:
        raise InputError(f"limit must be at least 1, got {limit}")
    name, path = resolve_bench(spec, settings)
    fmt, target_path = detect_format(path)
    loader = _LOADERS[fmt]
    if fmt == "geoaudit-dir" and settings is not None:
        raw_items, skipped, notes = _load_own_dir(
            target_path, seed=seed, domain=domain, cache=settings.data_dir / PAGE_CACHE_FILE
        )
    else:
        raw_items, skipped, notes = loader(target_path, seed=seed, domain=domain)
    _reject_duplicate_ids(name, raw_items + [BenchItem(i, "", (), 0) for i, _ in skipped])
    items: list[BenchItem] = []
    for item in raw_items:
        if domain is not None and not same_domain(item.domain, domain):
            continue
        if len(item.documents) < k:
            skipped.append((item.id, f"{len(item.documents)} documents, fewer than k={k}"))
            continue
        items.append(item)
        if limit is not None and len(items) >= limit:
            break
    if not items:
        if domain is not None and not any(same_domain(it.domain, domain) for it in raw_items):
            known = sorted({it.domain for it in raw_items if it.domain})
            raise InputError(
                f"bench {name} has no items in domain {domain!r}" + (f" (domains: {', '.join(known)})" if known else "")
            )
        if raw_items:
            raise InputError(
                f"bench {name}: no item has at least k={k} documents "
                f"(largest has {max(len(it.documents) for it in raw_items)}); lower k"
            )
        raise InputError(f"bench {name} at {target_path} holds no items")
    return Bench(name=name, source=str(target_path), format=fmt, items=items, skipped=skipped, notes=notes)


def _reject_duplicate_ids(name: str, items: list[BenchItem]) -> None:
    """Item ids key the run store's cells and rows: two items with one id would be merged silently
    (the second query never asked), so a bench that reuses an id is refused, naming the ids."""
    seen: set[str] = set()
    dups: list[str] = []
    for item in items:
        if item.id in seen and item.id not in dups:
            dups.append(item.id)
        seen.add(item.id)
    if dups:
        shown = ", ".join(repr(d) for d in dups[:5]) + (f" and {len(dups) - 5} more" if len(dups) > 5 else "")
        raise InputError(
            f"bench {name}: item id{'s' if len(dups) > 1 else ''} {shown} used by more than one item",
            hint="give every item its own 'id' (rows without an id are numbered by their position)",
        )


def same_domain(a: str, b: str) -> bool:
    """Domains match ignoring case, spacing and "&" vs "and" ("Food & Drink" = "food-and-drink")."""

    def norm(s: str) -> str:
        return re.sub(r"[^a-z0-9]+", "-", s.lower().replace("&", " and ")).strip("-")

    return norm(a) == norm(b)


def detect_format(path: Path) -> tuple[str, Path]:
    """Return (format, path to load) for a bench file or directory."""
    if path.is_dir():
        if (path / QUERIES_FILE).is_file():
            return "geoaudit-dir", path / QUERIES_FILE
        if sorted(path.glob("*.parquet")):
            return "cseo-bench", path
        jsonls = sorted(p for p in path.glob("*.jsonl") if p.name != DOCUMENTS_FILE)
        if (path / "test.jsonl").is_file():
            jsonls = [path / "test.jsonl"]
        if len(jsonls) == 1:
            return detect_format(jsonls[0])
        if not jsonls:
            raise InputError(f"{path}: no queries.jsonl, *.parquet or *.jsonl bench file in this directory")
        raise InputError(f"{path}: several JSONL files ({', '.join(p.name for p in jsonls)}); name one")
    if not path.is_file():
        raise InputError(f"no such bench file: {path}")
    if path.suffix == ".parquet":
        return "cseo-bench", path
    row = _first_row(path)
    if "candidates" in row:
        return "geoaudit-dir", path
    if "documents" in row:
        return "geoaudit-jsonl", path
    if "sources" in row:
        return "geo-bench", path
    if "sugg_idx" in row:
        raise InputError(
            f"{path}: rows have no 'sources' (GEO-bench's train/val splits are query-only; use test.jsonl)"
        )
    raise InputError(
        f"{path}: unknown bench format: rows need 'sources' (GEO-bench), 'documents' or 'candidates' "
        f"(geoaudit); the first row has keys {sorted(row)}"
    )


def _first_row(path: Path) -> dict[str, Any]:
    for lineno, row in _records(path):  # a binary file fails here as "not UTF-8 text"
        if not isinstance(row, dict):
            raise InputError(f"{path}:{lineno}: a bench row must be a JSON object")
        return row
    raise InputError(f"{path} is empty")


def _records(path: Path) -> Iterator[tuple[int, Any]]:
    """(line number, record) for each non-blank line of a JSONL file (see :func:`jsonl_records`)."""
    return jsonl_records(path)


def _name_of(path: Path) -> str:
    if path.is_file():
        return path.parent.name if path.name in (QUERIES_FILE, "test.jsonl") else path.stem
    return path.parent.name if path.name == "data" else path.name


def _bench_doc(item_id: str, position: int, text: str, *, url: str = "", title: str = "", **meta: Any) -> Document:
    """A bench document with a deterministic id (no fetch time, so reloads compare equal)."""
    key = url or f"bench:{item_id}#{position}"
    return Document(id=document_id(key), url=url, title=title, text=text, metadata={"position": position, **meta})


def _unique_ids(item_id: str, docs: list[Document]) -> tuple[Document, ...]:
    """Documents of one item must have distinct ids (a URL can appear twice in search results)."""
    seen: set[str] = set()
    out = []
    for pos, doc in enumerate(docs):
        if doc.id in seen:
            from dataclasses import replace

            doc = replace(doc, id=document_id(f"bench:{item_id}#{pos}:{doc.url}"))
        seen.add(doc.id)
        out.append(doc)
    return tuple(out)


_Loaded = tuple[list[BenchItem], list[tuple[str, str]], list[str]]


# --------------------------------------------------------------------------------------------
# GEO-bench


def geo_domain(tags: Iterable[str]) -> str:
    """The GEO-bench genre among a row's tags (case-insensitive, "&" = "and"), else ""."""
    for tag in tags:
        genre = _GENRE_BY_KEY.get(_genre_key(str(tag)))
        if genre:
            return genre
    return ""


def _load_geo_bench(path: Path, *, seed: int, domain: str | None) -> _Loaded:
    items: list[BenchItem] = []
    skipped: list[tuple[str, str]] = []
    for index, (lineno, row) in enumerate(_records(path)):
        where = f"{path}:{lineno}"
        if not isinstance(row, dict):
            raise InputError(f"{where}: a GEO-bench row must be a JSON object")
        missing = [c for c in ("query", "sources", "sugg_idx") if c not in row]
        if missing:
            raise InputError(f"{where}: GEO-bench row lacks {', '.join(missing)}")
        item_id = str(index)
        sources = row["sources"]
        if not isinstance(sources, list):
            raise InputError(f"{where}: 'sources' must be a list")
        docs = []
        for pos, src in enumerate(sources):
            if not isinstance(src, dict):
                raise InputError(f"{where}: source {pos} is not an object")
            text = src.get("cleaned_text") or src.get("raw_text") or ""
            docs.append(_bench_doc(item_id, pos, str(text), url=str(src.get("url") or "")))
        try:
            target = int(row["sugg_idx"])
        except (TypeError, ValueError):
            raise InputError(f"{where}: 'sugg_idx' must be an integer") from None
        if not 0 <= target < len(docs):
            skipped.append((item_id, f"sugg_idx {target} outside its {len(docs)} sources"))
            continue
        empty = [pos for pos, d in enumerate(docs) if not d.text.strip()]
        if empty:
            skipped.append((item_id, f"source(s) {', '.join(map(str, empty))} have no text"))
            continue
        tags = tuple(str(t) for t in (row.get("tags") or []))
        items.append(
            BenchItem(
                id=item_id,
                query=str(row["query"]),
                documents=_unique_ids(item_id, docs),
                target=target,
                domain=geo_domain(tags),
                tags=tags,
            )
        )
    return items, skipped, []


# --------------------------------------------------------------------------------------------
# C-SEO Bench


def _split_of(path: Path) -> str:
    """``retail-00000-of-00001.parquet`` -> ``retail``."""
    return re.sub(r"-\d{5}-of-\d{5}$", "", path.stem)


def _selected_docs_path(parquet: Path, split: str, single: bool) -> Path | None:
    folder = parquet.parent
    candidates = [folder / split / "selected_docs.json", folder / f"{split}_selected_docs.json",
                  folder / f"{split}.selected_docs.json"]  # fmt: skip
    if single:
        candidates.append(folder / "selected_docs.json")
    return next((c for c in candidates if c.is_file()), None)


def _read_selected(path: Path) -> dict[int, int]:
    """query index -> first listed target doc index, from C-SEO Bench's ``selected_docs.json``."""
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        raise InputError(f"{path}: not a readable selected_docs.json ({exc})") from None
    if not isinstance(data, dict):
        raise InputError(f"{path}: expected {{query_idx: {{doc_idx: ...}}}}")
    out = {}
    for q, docs in data.items():
        try:
            first = next(iter(docs)) if isinstance(docs, dict) else docs[0]
            out[int(q)] = int(first)
        except (StopIteration, IndexError, TypeError, ValueError, KeyError):
            raise InputError(f"{path}: entry {q!r} does not list a document index") from None
    return out


def _load_cseo(path: Path, *, seed: int, domain: str | None) -> _Loaded:
    files = sorted(path.glob("*.parquet")) if path.is_dir() else [path]
    if domain is not None and path.is_dir():
        files = [f for f in files if same_domain(_split_of(f), domain)] or files
    items: list[BenchItem] = []
    skipped: list[tuple[str, str]] = []
    notes: list[str] = []
    for file in files:
        split = _split_of(file)
        rows = _read_parquet(file)
        selected_path = _selected_docs_path(file, split, single=len(files) == 1)
        selected = _read_selected(selected_path) if selected_path else None
        if selected is None:
            notes.append(
                f"{split}: no selected_docs.json next to {file.name}; targets drawn at random with seed {seed}"
            )
        # group by query_id in file order (dict keeps first-appearance order)
        groups: dict[Any, tuple[str, list[str]]] = {}
        for qid, query, doc in rows:
            groups.setdefault(qid, (query, []))[1].append(doc)
        for q_index, (qid, (query, all_docs)) in enumerate(groups.items()):
            item_id = f"{split}/{qid}"
            context = all_docs[:CSEO_CONTEXT_DOCS]
            docs = [_bench_doc(item_id, pos, text) for pos, text in enumerate(context)]
            tags: tuple[str, ...] = ("cseo-bench", split)
            if selected is not None:
                if q_index not in selected:
                    skipped.append((item_id, "no target in selected_docs.json"))
                    continue
                target = selected[q_index]
                if not 0 <= target < len(docs):
                    skipped.append((item_id, f"selected doc {target} outside its {len(docs)} documents"))
                    continue
            else:
                # per query, so a target does not depend on --limit or on which splits are loaded
                target = random.Random(f"{seed}:{item_id}").randrange(len(docs))
                tags += ("target:random",)
            items.append(
                BenchItem(
                    id=item_id,
                    query=query,
                    documents=_unique_ids(item_id, docs),
                    target=target,
                    domain=split,
                    tags=tags,
                )
            )
    return items, skipped, notes


def _read_parquet(file: Path) -> list[tuple[Any, str, str]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(file)
    except Exception as exc:  # pyarrow raises several types for corrupt/non-parquet files
        raise InputError(f"{file}: not a readable parquet file ({str(exc).splitlines()[0]})") from None
    missing = [c for c in ("query_id", "query", "document") if c not in table.column_names]
    if missing:
        raise InputError(
            f"{file}: C-SEO Bench parquet lacks column(s) {', '.join(missing)} (has {', '.join(table.column_names)})"
        )
    if table.num_rows == 0:
        raise InputError(f"{file} holds no rows")
    cols = [table.column(c).to_pylist() for c in ("query_id", "query", "document")]
    return [(qid, str(q), str(d or "")) for qid, q, d in zip(*cols)]


# --------------------------------------------------------------------------------------------
# geoaudit's own formats


def _target_index(where: str, row: dict[str, Any], docs: list[Document], keys: list[str]) -> int:
    """The target as a 0-based index (``target``) or the URL/path of one of the documents."""
    if "target" in row and isinstance(row["target"], int) and not isinstance(row["target"], bool):
        target = row["target"]
        if not 0 <= target < len(docs):
            raise InputError(f"{where}: target {target} is not a 0-based index into its {len(docs)} documents")
        return target
    wanted = row.get("target_url", row.get("target"))
    if not isinstance(wanted, str) or not wanted:
        raise InputError(f"{where}: give 'target' (0-based index or URL/path) or 'target_url'")
    for pos, key in enumerate(keys):
        if key == wanted:
            return pos
    raise InputError(f"{where}: target {wanted!r} is not one of the item's documents")


def _item_common(where: str, row: Any, index: int) -> tuple[str, str, str, tuple[str, ...]]:
    if not isinstance(row, dict):
        raise InputError(f"{where}: a bench row must be a JSON object")
    query = row.get("query")
    if not isinstance(query, str) or not query.strip():
        raise InputError(f"{where}: row has no 'query' string")
    tags = row.get("tags") or []
    if not isinstance(tags, list):
        raise InputError(f"{where}: 'tags' must be a list")
    return str(row.get("id") or index), query, str(row.get("domain") or ""), tuple(map(str, tags))


def _load_own_jsonl(path: Path, *, seed: int, domain: str | None) -> _Loaded:
    items: list[BenchItem] = []
    for index, (lineno, row) in enumerate(_records(path)):
        where = f"{path}:{lineno}"
        item_id, query, dom, tags = _item_common(where, row, index)
        raw_docs = row.get("documents")
        if not isinstance(raw_docs, list):
            raise InputError(f"{where}: 'documents' must be a list of {{url, title, text}}")
        docs = []
        for pos, d in enumerate(raw_docs):
            if not isinstance(d, dict) or not isinstance(d.get("text"), str):
                raise InputError(f"{where}: document {pos} needs a 'text' string")
            docs.append(
                _bench_doc(item_id, pos, d["text"], url=str(d.get("url") or ""), title=str(d.get("title") or ""))
            )
        target = _target_index(where, row, docs, [d.url for d in docs])
        items.append(BenchItem(item_id, query, _unique_ids(item_id, docs), target, dom, tags))
    return items, [], []


def _load_own_dir(queries: Path, *, seed: int, domain: str | None, cache: Path | None = None) -> _Loaded:
    root = queries.parent
    rows = list(_records(queries))
    if not rows:
        raise InputError(f"{queries} is empty")
    by_key: dict[str, Document] = {}
    docs_file = root / DOCUMENTS_FILE
    if docs_file.is_file():
        for doc in read_jsonl(docs_file):
            by_key[doc.url] = doc
            by_key.setdefault(doc.id, doc)
    needed: list[Path] = []
    parsed = []
    for index, (lineno, row) in enumerate(rows):
        where = f"{queries}:{lineno}"
        common = _item_common(where, row, index)
        cands = row.get("candidates")
        if not isinstance(cands, list) or not all(isinstance(c, str) and c for c in cands):
            raise InputError(f"{where}: 'candidates' must be a list of URLs or page paths")
        for c in cands:
            if c not in by_key and _is_local(c):
                needed.append(_local_path(root, c))
        parsed.append((where, row, common, cands))
    if needed:
        by_key.update(_load_pages(root, needed, cache))
    items: list[BenchItem] = []
    for where, row, (item_id, query, dom, tags), cands in parsed:
        docs = []
        for c in cands:
            found = by_key.get(c) or by_key.get(_file_url(root, c))
            if found is None:
                hint = f"crawl it into {docs_file}" if not _is_local(c) else "the file is missing"
                raise InputError(f"{where}: candidate {c!r} not found ({hint})")
            docs.append(found)
        target = _target_index(where, row, docs, list(cands))
        items.append(BenchItem(item_id, query, _unique_ids(item_id, docs), target, dom, tags))
    return items, [], []


def _is_local(candidate: str) -> bool:
    return not re.match(r"^[a-z][a-z0-9+.-]*://", candidate, re.I) or candidate.lower().startswith("file://")


def _local_path(root: Path, candidate: str) -> Path:
    """The page file a local candidate names, which must lie inside the bench folder.

    A bench folder is data someone may hand you: its candidates go to the LLM and into the report,
    so ``/etc/passwd``, ``../secret.txt``, ``file:///...`` or a symlink out of the folder are refused.

    Raises:
        InputError: the candidate resolves (symlinks followed) outside ``root``.
    """
    if candidate.lower().startswith("file://"):
        from urllib.parse import unquote, urlparse

        path = Path(unquote(urlparse(candidate).path))
    else:
        path = Path(candidate)  # no expanduser: "~" would reach outside the folder too
        path = path if path.is_absolute() else root / path
    inside = root.resolve()
    try:
        resolved = path.resolve()
    except (OSError, ValueError) as exc:  # a NUL byte, a name too long, a symlink loop
        raise InputError(f"{root}: candidate {candidate!r} is not a usable path ({exc})") from None
    if not resolved.is_relative_to(inside):
        raise InputError(
            f"{root}: candidate {candidate!r} is outside the bench folder",
            hint="candidate pages must be files inside the folder (e.g. pages/mine.html)",
        )
    return path


def _file_url(root: Path, candidate: str) -> str:
    """The ``file://`` URL :func:`geoaudit.documents.load_inputs` gives a local candidate."""
    if not _is_local(candidate):
        return candidate
    return _local_path(root, candidate).resolve().as_uri()


def _is_file(path: Path) -> bool:
    try:
        return path.is_file()
    except OSError:  # a name too long for the file system is no file either
        return False


def _load_pages(root: Path, paths: list[Path], cache: Path | None = None) -> dict[str, Document]:
    """Extract the candidate pages with the crawler's file loader; keyed by their file:// URL.

    With ``cache`` (a SQLite file), a page extracted before is read back instead: the key covers the
    file's bytes, path and modification time and the extractor (:func:`_extractor_fingerprint`), so
    a cached page is exactly what extracting it again would give. Extracting the demo bench's 150
    pages takes about a second, most of re-running a finished run.
    """
    from geoaudit.documents import load_inputs

    missing = [p for p in paths if not _is_file(p)]
    if missing:
        raise InputError(f"{root}: candidate page {missing[0]} does not exist")
    unique = list(dict.fromkeys(p.resolve() for p in paths))
    if cache is None:
        docs = load_inputs([str(p) for p in unique])
    else:
        docs = _cached_pages(unique, cache, load_inputs)
    out = {}
    for doc in docs:
        out[doc.url] = doc
    return out


PAGE_CACHE_FILE = "pages-cache.db"


def _page_cache_v1(conn: Any) -> None:
    conn.execute("CREATE TABLE pages (key TEXT PRIMARY KEY, documents TEXT NOT NULL)")


def _extractor_fingerprint() -> str:
    """The page extractor's code (geoaudit.documents) and the versions of what it calls."""
    import hashlib
    from importlib.metadata import PackageNotFoundError, version

    from geoaudit import documents

    h = hashlib.sha256(Path(documents.__file__).read_bytes())
    for pkg in ("trafilatura", "beautifulsoup4", "lxml"):
        try:
            h.update(f"{pkg}={version(pkg)}".encode())
        except PackageNotFoundError:
            h.update(f"{pkg}=none".encode())
    return h.hexdigest()


def _cached_pages(paths: list[Path], cache: Path, load: Any) -> list[Document]:
    import hashlib

    from geoaudit.store import Transaction, connect

    try:
        conn = connect(cache, [("pages_v1", _page_cache_v1)])
    except Exception:  # an unusable cache is no reason to fail: extract as before
        return list(load([str(p) for p in paths]))
    try:
        fingerprint = _extractor_fingerprint()
        out: list[Document] = []
        fresh: list[tuple[str, list[Document]]] = []
        for path in paths:
            stat = path.stat()
            h = hashlib.sha256(f"{fingerprint}\0{path}\0{stat.st_mtime_ns}\0".encode())
            h.update(path.read_bytes())
            key = h.hexdigest()
            row = conn.execute("SELECT documents FROM pages WHERE key=?", (key,)).fetchone()
            if row is not None:
                out.extend(Document.from_dict(d) for d in json.loads(row[0]))
                continue
            docs = list(load([str(path)]))
            fresh.append((key, docs))
            out.extend(docs)
        if fresh:
            with Transaction(conn) as c:
                c.executemany(
                    "INSERT OR REPLACE INTO pages VALUES (?, ?)",
                    [(k, json.dumps([d.to_dict() for d in docs])) for k, docs in fresh],
                )
        return out
    finally:
        conn.close()


_LOADERS: dict[str, Callable[..., _Loaded]] = {
    "geo-bench": _load_geo_bench,
    "cseo-bench": _load_cseo,
    "geoaudit-jsonl": _load_own_jsonl,
    "geoaudit-dir": _load_own_dir,
}


# --------------------------------------------------------------------------------------------
# listing and fetching


def list_benches(settings: Settings | None = None, *, k: int = 5) -> list[dict[str, Any]]:
    """The shipped demo and every bench in ``<data dir>/benches/``.

    Each entry: ``name, path, format, items, domains, skipped, error`` (``error`` is the one-line
    reason a bench could not be loaded, else None; such a bench has ``items == 0``).
    """
    specs: list[tuple[str, Path]] = [resolve_bench("demo")]
    root = benches_dir(settings)
    if root.is_dir():
        for entry in sorted(root.iterdir()):
            if entry.name.startswith(".") or entry.suffix == ".tmp":
                continue
            if entry.is_dir() or entry.suffix in (".jsonl", ".parquet"):
                specs.append((entry.stem if entry.is_file() else entry.name, entry))
    out = []
    for name, path in specs:
        row: dict[str, Any] = {"name": name, "path": str(path), "format": "", "items": 0,
                               "domains": [], "skipped": 0, "error": None}  # fmt: skip
        try:
            bench = load_bench(path, k=k)
        except InputError as exc:
            row["error"] = str(exc)
            with contextlib.suppress(InputError):
                row["format"] = detect_format(path)[0]
        else:
            row.update(format=bench.format, items=len(bench), domains=bench.domains, skipped=len(bench.skipped))
        out.append(row)
    return out


def fetch_bench(
    name: str,
    settings: Settings | None = None,
    *,
    splits: Iterable[str] | None = None,
    base_url: str = HF_BASE_URL,
    timeout: float = 60.0,
    progress: Any = None,
) -> list[Path]:
    """Download a public bench from the Hugging Face hub into ``<data dir>/benches/``.

    ``geo-bench`` -> ``benches/geo-bench/test.jsonl`` (GEO-bench's test split, the one with
    sources; its licence is unclear, CC BY-NC-SA per the card: treat it as non-commercial).
    ``cseo-bench`` -> ``benches/cseo-bench/{split}-00000-of-00001.parquet`` for the given splits
    (default: all six). ``progress(path, done_bytes, total_bytes)`` is called while downloading.

    Raises:
        InputError: unknown bench name or split.
        FetchError: the hub cannot be reached or answers with an error.
    """
    import httpx

    name = name.lower()
    root = benches_dir(settings)
    jobs: list[tuple[str, Path]] = []
    if name == "geo-bench":
        if splits:
            raise InputError("geo-bench has no splits to choose: only its test split has sources")
        jobs.append((GEO_BENCH_PATH, root / "geo-bench" / "test.jsonl"))
    elif name == "cseo-bench":
        chosen = list(splits or CSEO_SPLITS)
        unknown = [s for s in chosen if s not in CSEO_SPLITS]
        if unknown:
            raise InputError(f"unknown C-SEO Bench split {unknown[0]!r} (splits: {', '.join(CSEO_SPLITS)})")
        for split in chosen:
            rel = CSEO_BENCH_PATH.format(split=split)
            jobs.append((rel, root / "cseo-bench" / Path(rel).name))
    else:
        raise InputError(f"unknown bench {name!r} to fetch (choose geo-bench or cseo-bench)")
    user_agent = getattr(settings, "user_agent", "geoaudit")
    done: list[Path] = []
    with httpx.Client(follow_redirects=True, timeout=timeout, headers={"User-Agent": user_agent}) as client:
        for rel, dest in jobs:
            url = base_url.rstrip("/") + rel
            with atomic_path(dest) as tmp:  # a failed or interrupted download leaves nothing behind
                try:
                    with client.stream("GET", url) as resp:
                        if resp.status_code >= 400:
                            raise FetchError(f"{url} answered HTTP {resp.status_code}; cannot fetch {name}")
                        total = int(resp.headers.get("content-length") or 0)
                        got = 0
                        with tmp.open("wb") as fh:
                            for chunk in resp.iter_bytes(1 << 16):
                                fh.write(chunk)
                                got += len(chunk)
                                if progress is not None:
                                    progress(dest, got, total)
                except httpx.HTTPError as exc:
                    host = httpx.URL(url).host
                    raise FetchError(
                        f"cannot download {name} from {host} ({type(exc).__name__}); check your network "
                        f"connection, or put the files in {root} by hand"
                    ) from None
            done.append(dest)
    return done
