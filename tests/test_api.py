"""The public API: what ``import geoaudit`` offers a notebook user, and that it stays cheap to import."""

from __future__ import annotations

import os
import re
import subprocess
import sys
import types
from pathlib import Path

import pytest

import geoaudit

ROOT = Path(__file__).resolve().parents[1]
HEAVY = ("pandas", "numpy", "scipy", "litellm", "llama_cpp", "trafilatura", "httpx")

PUBLIC = {
    "__version__",
    "Settings",
    "load_settings",
    "GeoauditError",
    "UserError",
    "ConfigError",
    "InputError",
    "UnknownStrategyError",
    "UnknownModelError",
    "RunError",
    "FetchError",
    "BackendError",
    "StoreError",
    "crawl",
    "acrawl",
    "CrawlOptions",
    "Document",
    "load_inputs",
    "load_strategies",
    "rewrite",
    "arewrite",
    "rewrite_many",
    "Gateway",
    "LLMRequest",
    "EngineConfig",
    "answer",
    "aanswer",
    "ask",
    "aask",
    "load_bench",
    "SimulationConfig",
    "Simulation",
    "simulate",
    "Run",
    "open_run",
    "list_runs",
    "summarize",
    "run_stats",
    "StatsResult",
    "build_report",
    "write_report",
    "run_demo",
    "audit",
    "plan_audit",
    "AuditOptions",
}


def test_the_public_names_are_pinned() -> None:
    assert set(geoaudit.__all__) == PUBLIC
    assert len(geoaudit.__all__) == len(PUBLIC)


def test_every_public_name_is_the_entry_point_not_a_module() -> None:
    import geoaudit.audit
    import geoaudit.crawl
    import geoaudit.simulate

    for name in PUBLIC - {"__version__"}:
        value = getattr(geoaudit, name)
        assert not isinstance(value, types.ModuleType), name
    assert callable(geoaudit.crawl) and geoaudit.crawl.__module__ == "geoaudit.crawl"
    assert geoaudit.simulate.__module__ == "geoaudit.simulate"
    assert callable(geoaudit.audit) and geoaudit.audit.__module__ == "geoaudit.audit.runner"
    assert issubclass(geoaudit.InputError, geoaudit.GeoauditError)
    with pytest.raises(AttributeError):
        geoaudit.no_such_name  # noqa: B018


@pytest.mark.parametrize("code", ["import geoaudit", "import geoaudit.cli"])
def test_importing_loads_nothing_heavy(code: str) -> None:
    probe = f"{code}; import sys; print(','.join(m for m in {HEAVY!r} if m in sys.modules))"
    out = subprocess.run(
        [sys.executable, "-c", probe],
        capture_output=True,
        text=True,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        timeout=60,
    )
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == ""


@pytest.mark.embedded
def test_the_readme_from_python_example_runs(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    readme = (ROOT / "README.md").read_text(encoding="utf-8")
    match = re.search(r"<!-- python-example -->\s*```python\n(.*?)```", readme, re.S)
    assert match, "README.md has no <!-- python-example --> block"
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("GEOAUDIT_HOME", str(tmp_path / "home"))
    exec(compile(match.group(1), "README.md", "exec"), {})
    assert (tmp_path / "reports" / "my-run" / "index.html").is_file()


def _cli_defaults(command: str) -> dict[str, object]:
    import typer.main

    from geoaudit.cli import app

    click_cmd = typer.main.get_command(app).commands[command]  # type: ignore[attr-defined]
    return {p.name: p.default for p in click_cmd.params}


def test_cli_flags_default_to_what_the_library_defaults_to() -> None:
    """One default per fact: `simulate` and `ask` flags equal EngineConfig's and SimulationConfig's."""
    from geoaudit.engine import EngineConfig
    from geoaudit.simulate import SimulationConfig, parse_rates

    engine, sim = EngineConfig(), SimulationConfig(bench="demo")
    for command, budget_flag in (("simulate", "source_budget"), ("ask", "budget")):
        flags = _cli_defaults(command)
        assert flags["k"] == engine.k
        assert flags["max_tokens"] == engine.max_tokens
        assert flags["temperature"] == engine.temperature
        assert flags[budget_flag] == engine.source_budget_chars
        assert flags["order"] == engine.order and flags["attribution"] == engine.attribution
    flags = _cli_defaults("simulate")
    assert tuple(str(flags["strategies"]).split(",")) == sim.strategies
    assert parse_rates(str(flags["adopters"])) == sim.rates
    assert flags["stages"] == "auto" and flags["answers"] == sim.answers and flags["primary"] == sim.primary
