"""Data flows one way: crawl -> documents -> rewrite -> engine -> simulate -> stats -> report.

The layering is declared once, as an import-linter "layers" contract in ``pyproject.toml``, and
checked by import-linter (which sees imports inside functions and ``from geoaudit import X``).
These tests make sure the contract covers every module and that it is actually enforced.
"""

from __future__ import annotations

import tomllib
from pathlib import Path

import pytest

import geoaudit

ROOT = Path(__file__).resolve().parents[1]
PKG = Path(geoaudit.__file__).parent


def _layers() -> list[str]:
    cfg = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))
    (contract,) = [c for c in cfg["tool"]["importlinter"]["contracts"] if c["type"] == "layers"]
    out: list[str] = []
    for layer in contract["layers"]:
        out += [name.strip() for name in layer.replace(":", "|").split("|")]
    return out


def test_every_module_is_in_the_contract() -> None:
    modules = {
        "geoaudit." + (p.relative_to(PKG).parts[0] if len(p.relative_to(PKG).parts) > 1 else p.stem)
        for p in PKG.rglob("*.py")
        if p.name != "__init__.py" or p.parent != PKG
    }
    missing = sorted(modules - set(_layers()))
    assert not missing, f"add these modules to the layers contract in pyproject.toml: {missing}"


def test_the_contract_holds() -> None:
    importlinter_cli = pytest.importorskip("importlinter.cli")
    assert importlinter_cli.lint_imports(config_filename=str(ROOT / "pyproject.toml"), no_cache=True) == 0


def test_the_contract_catches_an_upward_import(tmp_path: Path) -> None:
    """A renamed copy of the package where metrics imports the engine (above it) breaks the contract."""
    importlinter_cli = pytest.importorskip("importlinter.cli")
    import re
    import shutil
    import sys

    name = "geoaudit_layering_probe"
    copy = tmp_path / name
    shutil.copytree(PKG, copy, ignore=shutil.ignore_patterns("__pycache__"))
    for path in copy.rglob("*.py"):
        path.write_text(re.sub(r"\bgeoaudit\b", name, path.read_text(encoding="utf-8")), encoding="utf-8")
    metrics = copy / "metrics.py"
    metrics.write_text(
        metrics.read_text(encoding="utf-8") + f"\n\ndef _up() -> None:\n    from {name} import engine  # noqa\n",
        encoding="utf-8",
    )
    config = (ROOT / "pyproject.toml").read_text(encoding="utf-8")
    config = config[config.index("[tool.importlinter]") :]
    config = config[: config.index("\n[tool.pytest")]
    (tmp_path / "probe.toml").write_text(re.sub(r"\bgeoaudit\b", name, config), encoding="utf-8")
    sys.path.insert(0, str(tmp_path))
    try:
        code = importlinter_cli.lint_imports(config_filename=str(tmp_path / "probe.toml"), no_cache=True)
    finally:
        sys.path.remove(str(tmp_path))
    assert code != 0
