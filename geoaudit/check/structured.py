"""Structured data: JSON-LD, microdata, RDFa and OpenGraph read with extruct, checked against a table.

Each JSON-LD ``<script>`` is read on its own, so one broken block is reported (with its line) and
the others still count. The properties expected per schema.org type live in
``geoaudit/data/schema_properties.toml`` with their sources.
"""

from __future__ import annotations

import json
import logging
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoaudit.check.model import Finding, StructuredFacts
from geoaudit.check.rules import finding
from geoaudit.errors import ConfigError
from geoaudit.resources import package_data

_SCHEMA_PREFIXES = ("http://schema.org/", "https://schema.org/")


@dataclass(frozen=True)
class TypeRule:
    name: str
    applies_to: tuple[str, ...]
    required: tuple[str, ...]
    required_any: tuple[tuple[str, ...], ...]
    recommended: tuple[str, ...]
    source: str


@dataclass(frozen=True)
class PropertyTable:
    types: tuple[TypeRule, ...]
    og_required: tuple[str, ...]
    og_recommended: tuple[str, ...]
    og_source: str
    source: str
    updated: str
    path: Path

    def rule_for(self, type_name: str) -> TypeRule | None:
        return next((t for t in self.types if type_name in t.applies_to), None)

    @property
    def description(self) -> str:
        return f"{self.path} ({self.source}; updated {self.updated})"


def load_property_table(path: Path | None = None) -> PropertyTable:
    """The required/recommended property table (default: the shipped one)."""
    path = path or package_data("schema_properties.toml")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"structured-data property table {path} cannot be read: {exc}") from None

    def strs(value: Any) -> tuple[str, ...]:
        return tuple(str(v) for v in (value or []))

    types = tuple(
        TypeRule(
            str(t["name"]),
            strs(t.get("applies_to") or [t["name"]]),
            strs(t.get("required")),
            tuple(strs(g) for g in t.get("required_any", [])),
            strs(t.get("recommended")),
            str(t.get("source", "")),
        )
        for t in doc.get("type", [])
    )
    og = doc.get("opengraph", {})
    meta = doc.get("meta", {})
    return PropertyTable(
        types,
        strs(og.get("required")),
        strs(og.get("recommended")),
        str(og.get("source", "")),
        str(meta.get("source", "")),
        str(meta.get("updated", "")),
        path,
    )


def _short_type(value: str) -> str:
    for prefix in _SCHEMA_PREFIXES:
        if value.startswith(prefix):
            return value[len(prefix) :]
    return value


def _types_of(node: dict[str, Any]) -> list[str]:
    value = node.get("@type")
    values = value if isinstance(value, list) else [value]
    return [_short_type(v) for v in values if isinstance(v, str) and v]


def _typed_nodes(data: Any, depth: int = 0) -> list[dict[str, Any]]:
    """Every dict with an ``@type`` anywhere inside ``data`` (through @graph, nesting and lists)."""
    found: list[dict[str, Any]] = []
    if depth > 30:
        return found
    if isinstance(data, list):
        for item in data:
            found += _typed_nodes(item, depth + 1)
    elif isinstance(data, dict):
        if "@type" in data:
            found.append(data)
        for key, value in data.items():
            if key != "@context":
                found += _typed_nodes(value, depth + 1)
    return found


def _rdfa_nodes(items: list[dict[str, Any]]) -> list[dict[str, Any]]:
    """RDFa comes out expanded (full IRIs); keep schema.org-typed nodes with short property names."""
    nodes = []
    for item in items:
        types = [_short_type(t) for t in item.get("@type", []) if isinstance(t, str) and t.startswith(_SCHEMA_PREFIXES)]
        if not types:
            continue
        props = {_short_type(k): v for k, v in item.items() if k.startswith(_SCHEMA_PREFIXES)}
        nodes.append({"@type": types, **props})
    return nodes


def _present(node: dict[str, Any], prop: str) -> bool:
    value = node.get(prop)
    return value not in (None, "", [], {})


def check_structured(html: str, url: str, table: PropertyTable) -> tuple[StructuredFacts, list[Finding]]:
    """Extract structured data from ``html`` and report types, parse errors and missing properties."""
    import extruct
    from extruct.jsonld import JsonLdExtractor
    from extruct.utils import parse_html

    logging.getLogger("extruct").setLevel(logging.CRITICAL)  # we report failures as findings
    findings: list[Finding] = []
    nodes: list[tuple[str, dict[str, Any]]] = []  # (syntax, node)
    items: dict[str, int] = {}
    errors = 0

    # JSON-LD, one script at a time.
    try:
        tree = parse_html(html.encode("utf-8"), encoding="UTF-8")
        scripts = tree.xpath('//script[@type="application/ld+json"]')
    except Exception as exc:  # lxml gave up on the markup: say so, keep going
        scripts = []
        findings.append(
            finding("schema.extract-error", "warning", f"the HTML could not be parsed for JSON-LD: {exc}", url=url)
        )
    count = 0
    for i, script in enumerate(scripts, 1):
        raw = script.xpath("string()")
        where = f"JSON-LD block {i} (line {script.sourceline})"
        try:
            data = JsonLdExtractor().extract_items(script)
        except Exception as exc:
            errors += 1
            findings.append(
                finding(
                    "schema.parse-error",
                    "error",
                    f"{where} does not parse: {exc}.",
                    evidence=" ".join(raw.split())[:160],
                    url=url,
                )
            )
            continue
        try:
            json.loads(raw, strict=False)
        except ValueError as exc:
            findings.append(
                finding(
                    "schema.lenient-json",
                    "warning",
                    f"{where} parses only leniently ({exc}).",
                    evidence=" ".join(raw.split())[:160],
                    url=url,
                )
            )
        count += len(data)
        nodes += [("json-ld", n) for n in _typed_nodes(data)]
    items["json-ld"] = count

    for syntax in ("microdata", "rdfa"):
        try:
            out = extruct.extract(
                html, base_url=url or None, syntaxes=[syntax], uniform=(syntax == "microdata"), errors="strict"
            )
        except Exception as exc:
            errors += 1
            findings.append(
                finding(
                    "schema.extract-error",
                    "warning",
                    f"{syntax} could not be extracted: {type(exc).__name__}: {exc}",
                    url=url,
                )
            )
            items[syntax] = 0
            continue
        got = out.get(syntax, [])
        typed = _typed_nodes(got) if syntax == "microdata" else _rdfa_nodes(got)
        items[syntax] = len(got) if syntax == "microdata" else len(typed)
        nodes += [(syntax, n) for n in typed]

    og: dict[str, str] = {}
    try:
        out = extruct.extract(html, base_url=url or None, syntaxes=["opengraph"], errors="strict")
        for block in out.get("opengraph", []):
            for key, value in block.get("properties", []):
                og.setdefault(str(key), str(value))
    except Exception as exc:
        findings.append(finding("schema.extract-error", "warning", f"OpenGraph could not be extracted: {exc}", url=url))
    items["opengraph"] = 1 if og else 0

    types = sorted({t for _, n in nodes for t in _types_of(n)})
    findings += _property_findings(nodes, table, url)
    schema_items = sum(v for k, v in items.items() if k != "opengraph")
    if schema_items == 0 and not errors:
        findings.append(
            finding(
                "schema.none",
                "warning",
                "No schema.org structured data (JSON-LD, microdata or RDFa) on the page.",
                url=url,
            )
        )
    elif types:
        per_syntax = ", ".join(f"{k} {v}" for k, v in items.items() if v and k != "opengraph")
        findings.append(
            finding("schema.found", "pass", f"schema.org types: {', '.join(types)} ({per_syntax}).", url=url)
        )
    findings += _opengraph_findings(og, table, url)
    return StructuredFacts(items, tuple(types), og, errors), findings


def _property_findings(nodes: list[tuple[str, dict[str, Any]]], table: PropertyTable, url: str) -> list[Finding]:
    missing_req: list[str] = []
    missing_rec: list[str] = []
    sources_req: set[str] = set()
    sources_rec: set[str] = set()
    seen: set[tuple[str, str, str]] = set()
    for syntax, node in nodes:
        for type_name in _types_of(node):
            rule = table.rule_for(type_name)
            if rule is None:
                continue
            req = [p for p in rule.required if not _present(node, p)]
            req += [" or ".join(group) for group in rule.required_any if not any(_present(node, p) for p in group)]
            rec = [p for p in rule.recommended if not _present(node, p)]
            label = f"{type_name} ({syntax})"
            if req and (label, "req", ",".join(req)) not in seen:
                seen.add((label, "req", ",".join(req)))
                missing_req.append(f"{label}: {', '.join(req)}")
                sources_req.add(rule.source)
            if rec and (label, "rec", ",".join(rec)) not in seen:
                seen.add((label, "rec", ",".join(rec)))
                missing_rec.append(f"{label}: {', '.join(rec)}")
                sources_rec.add(rule.source)
    out = []
    if missing_req:
        out.append(
            finding(
                "schema.required",
                "error",
                "Required properties missing — " + "; ".join(missing_req) + ".",
                evidence="per " + ", ".join(sorted(sources_req)),
                url=url,
            )
        )
    if missing_rec:
        out.append(
            finding(
                "schema.recommended",
                "warning",
                "Recommended properties missing — " + "; ".join(missing_rec) + ".",
                evidence="per " + ", ".join(sorted(sources_rec)),
                url=url,
            )
        )
    return out


def _opengraph_findings(og: dict[str, str], table: PropertyTable, url: str) -> list[Finding]:
    if not og:
        return [
            finding(
                "schema.opengraph",
                "info",
                "No OpenGraph tags (og:title, og:description, ...); link previews and some engines read them.",
                url=url,
            )
        ]
    missing = [p for p in table.og_required if p not in og]
    present = ", ".join(sorted(og))
    if missing:
        return [
            finding(
                "schema.opengraph",
                "warning",
                f"OpenGraph is missing {', '.join(missing)}.",
                evidence=f"present: {present}",
                url=url,
            )
        ]
    return [
        finding(
            "schema.opengraph",
            "pass",
            "OpenGraph has og:title, og:type, og:image and og:url.",
            evidence=f"present: {present}",
            url=url,
        )
    ]
