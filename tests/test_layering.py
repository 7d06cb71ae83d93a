"""Data flows one way: crawl -> documents -> rewrite -> engine -> simulate -> stats -> report.

A module may import geoaudit modules of its own layer or earlier ones, never later ones; this test
reads every module's imports (including those inside functions) with ``ast``.
"""

from __future__ import annotations

import ast
from pathlib import Path

import geoaudit

LAYERS: list[set[str]] = [
    {"errors", "config", "_async", "_http", "resources", "documents", "store", "llm", "embedded", "guards", "testing", "__init__"},
    {"fetch"},
    {"crawl"},
    {"strategies"},
    {"rewrite"},
    {"engine", "metrics", "retrieval", "judge"},
    {"bench"},
    {"simulate"},
    {"stats"},
    {"report"},
    {"demo"},
    {"cli", "__main__"},
]
RANK = {name: i for i, layer in enumerate(LAYERS) for name in layer}
PKG = Path(geoaudit.__file__).parent


def _module_name(path: Path) -> str:
    rel = path.relative_to(PKG)
    return rel.parts[0] if len(rel.parts) > 1 else rel.stem


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("geoaudit."):
            found.add(node.module.split(".")[1])
        elif isinstance(node, ast.Import):
            found |= {a.name.split(".")[1] for a in node.names if a.name.startswith("geoaudit.")}
    return found


def test_every_module_has_a_layer() -> None:
    names = {_module_name(p) for p in PKG.rglob("*.py")}
    assert names <= set(RANK), f"add to LAYERS: {sorted(names - set(RANK))}"


def test_no_module_reaches_back_up_the_chain() -> None:
    violations = []
    for path in sorted(PKG.rglob("*.py")):
        me = _module_name(path)
        for other in _imports(path):
            if other in RANK and RANK[other] > RANK[me]:
                violations.append(f"{path.relative_to(PKG)} imports geoaudit.{other}")
    assert not violations, "\n".join(violations)
