"""Shared fixtures: every test runs with its own data directory and never touches a user's files."""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from geoaudit.config import Settings
from geoaudit.testing import FakeOpenAIServer, fake_settings


@pytest.fixture(scope="session")
def _models_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("models")


@pytest.fixture(autouse=True)
def _shared_models_dir(_models_dir: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """Re-encoded embedded models are made once per test session, not in every test's data dir."""
    monkeypatch.setenv("GEOAUDIT_MODELS_DIR", str(_models_dir))


@pytest.fixture(autouse=True)
def _embedded_only_when_marked(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> None:
    """A test that loads the real embedded model must say so (``@pytest.mark.embedded``): otherwise
    loading it fails, here and in any subprocess the test starts (the variable is inherited)."""
    if request.node.get_closest_marker("embedded") is None:
        monkeypatch.setenv("GEOAUDIT_FORBID_EMBEDDED", "1")
    else:
        monkeypatch.delenv("GEOAUDIT_FORBID_EMBEDDED", raising=False)


@pytest.fixture(autouse=True)
def _isolated_home(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    home = tmp_path / "geoaudit-home"
    monkeypatch.setenv("GEOAUDIT_HOME", str(home))
    monkeypatch.delenv("GEOAUDIT_CONFIG", raising=False)
    for var in ("GEOAUDIT_MODEL", "GEOAUDIT_API_BASE", "GEOAUDIT_CONCURRENCY", "GEOAUDIT_CACHE"):
        monkeypatch.delenv(var, raising=False)
    return home


@pytest.fixture
def fake_server() -> Iterator[FakeOpenAIServer]:
    """A real OpenAI-compatible server on 127.0.0.1; set ``fake_server.responder`` per test."""
    with FakeOpenAIServer() as server:
        yield server


@pytest.fixture
def fake_llm_settings(fake_server: FakeOpenAIServer, tmp_path: Path) -> Settings:
    """Settings whose model is served by ``fake_server`` (fast retries, isolated cache)."""
    return fake_settings(fake_server, tmp_path / "geoaudit-home")


@pytest.fixture
def embedded_settings(tmp_path: Path) -> Settings:
    """Settings for the real embedded model (local/smollm2), with an isolated cache."""
    return Settings(data_dir=tmp_path / "geoaudit-home")
