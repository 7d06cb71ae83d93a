"""Where the data shipped with geoaudit lives (strategy files, the demo bench), installed or not.

The repository keeps them at the top level (``strategies/``, ``benches/demo/``). A normal
``pip install .`` copies them into the package as ``geoaudit/_strategies`` and ``geoaudit/_demo``
(see ``[tool.setuptools.package-dir]``); an editable install or a source checkout reads them in place.
"""

from __future__ import annotations

from pathlib import Path

_PKG = Path(__file__).resolve().parent
_LAYOUT = {"strategies": ("_strategies", "strategies"), "demo": ("_demo", "benches/demo")}


def data_dir(kind: str) -> Path:
    """Directory of shipped data ``kind`` ("strategies" or "demo")."""
    installed, in_repo = _LAYOUT[kind]
    for candidate in (_PKG / installed, _PKG.parent / in_repo):
        if candidate.is_dir():
            return candidate
    raise FileNotFoundError(f"geoaudit's {kind} data is missing from this installation")


def prompts_dir() -> Path:
    return _PKG / "prompts"


def package_data(name: str) -> Path:
    """A data file shipped inside the package (``geoaudit/data/<name>``), e.g. ``ai_agents.toml``."""
    return _PKG / "data" / name
