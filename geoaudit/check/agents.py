"""The list of AI agents ``check`` evaluates: shipped data, replaceable by the user's own file.

The shipped list is ``geoaudit/data/ai_agents.toml`` (its header says where each entry comes from
and how to write your own); :func:`load_agents` reads it or a file given by option or setting.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from geoaudit.check.model import ROLE_LABELS
from geoaudit.errors import ConfigError
from geoaudit.resources import package_data


@dataclass(frozen=True)
class Agent:
    """One AI crawler or fetcher: its robots.txt token, role and the User-Agent to fetch as."""

    token: str
    operator: str
    role: str
    user_agent: str = ""
    docs: str = ""
    note: str = ""


@dataclass(frozen=True)
class AgentList:
    agents: tuple[Agent, ...]
    path: Path
    source: str
    updated: str

    @property
    def description(self) -> str:
        """Where the list came from, for reports: ``path (source, updated DATE)``."""
        return f"{self.path} ({self.source}; updated {self.updated})"

    def select(self, tokens: tuple[str, ...]) -> AgentList:
        """Only the agents named in ``tokens`` (case-insensitive); unknown names are a ConfigError."""
        if not tokens:
            return self
        by_token = {a.token.lower(): a for a in self.agents}
        unknown = [t for t in tokens if t.lower() not in by_token]
        if unknown:
            raise ConfigError(
                f"unknown AI agent {', '.join(unknown)}",
                hint=f"known: {', '.join(a.token for a in self.agents)}",
            )
        wanted = {t.lower() for t in tokens}
        return AgentList(
            tuple(a for a in self.agents if a.token.lower() in wanted), self.path, self.source, self.updated
        )


def shipped_agents_path() -> Path:
    return package_data("ai_agents.toml")


def load_agents(path: Path | str | None = None) -> AgentList:
    """The agent list in ``path`` (default: the shipped one).

    Raises:
        ConfigError: the file is missing, not TOML, or an entry lacks a token, has an unknown role,
            or repeats a token.
    """
    path = Path(path).expanduser() if path is not None else shipped_agents_path()
    if not path.is_file():
        raise ConfigError(f"AI agent list {path} does not exist")
    try:
        doc = tomllib.loads(path.read_text(encoding="utf-8"))
    except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
        raise ConfigError(f"AI agent list {path} is not valid TOML: {exc}") from None
    entries = doc.get("agent")
    if not isinstance(entries, list) or not entries:
        raise ConfigError(f"AI agent list {path} has no [[agent]] entries")
    agents: list[Agent] = []
    seen: set[str] = set()
    for i, raw in enumerate(entries, 1):
        agents.append(_agent(raw, f"{path}: agent #{i}"))
        key = agents[-1].token.lower()
        if key in seen:
            raise ConfigError(f"{path}: agent {agents[-1].token!r} is listed twice")
        seen.add(key)
    meta = doc.get("meta")
    if not isinstance(meta, dict):
        meta = {}
    return AgentList(
        tuple(agents), path, str(meta.get("source") or "no source given"), str(meta.get("updated") or "unknown")
    )


def _agent(raw: Any, where: str) -> Agent:
    if not isinstance(raw, dict):
        raise ConfigError(f"{where} is not a table")
    token = raw.get("token")
    if not isinstance(token, str) or not token.strip() or any(c.isspace() for c in token.strip()):
        raise ConfigError(f"{where}: 'token' must be a robots.txt product token (one word)")
    role = raw.get("role")
    if role not in ROLE_LABELS:
        raise ConfigError(f"{where} ({token}): role must be one of {', '.join(ROLE_LABELS)}, not {role!r}")
    fields = {k: raw.get(k, "") for k in ("operator", "user_agent", "docs", "note")}
    for key, value in fields.items():
        if not isinstance(value, str):
            raise ConfigError(f"{where} ({token}): {key!r} must be a string")
    return Agent(
        token.strip(),
        fields["operator"] or "unknown",
        role,
        fields["user_agent"].strip(),
        fields["docs"],
        fields["note"],
    )
