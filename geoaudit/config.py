"""Settings and where geoaudit keeps its data.

Precedence, highest first (the same for every command and for library users):

1. explicit arguments (CLI flags, or keyword arguments to :func:`load_settings`);
2. environment variables ``GEOAUDIT_<FIELD>`` (for example ``GEOAUDIT_MODEL``, ``GEOAUDIT_CONCURRENCY``);
3. the optional TOML config file: ``$GEOAUDIT_CONFIG``, else ``<data dir>/config.toml``;
4. the built-in defaults below.

The data directory defaults to the user's data dir (platformdirs) and is overridden by
``GEOAUDIT_HOME`` or the ``data_dir`` setting; it holds the LLM cache, the document store and runs.
"""

from __future__ import annotations

import dataclasses
import math
import os
import tomllib
from dataclasses import dataclass, field, fields
from pathlib import Path
from typing import Any, get_type_hints

from geoaudit.errors import ConfigError

EMBEDDED_MODEL = "local/smollm2"
DEFAULT_USER_AGENT = "geoaudit/0.1 (+https://github.com/geoaudit/geoaudit)"
ENV_PREFIX = "GEOAUDIT_"


def default_data_dir() -> Path:
    env = os.environ.get("GEOAUDIT_HOME")
    if env:
        return Path(env).expanduser()
    import platformdirs

    return Path(platformdirs.user_data_dir("geoaudit", appauthor=False))


@dataclass(frozen=True)
class Settings:
    """Every tunable of geoaudit in one frozen value (see the module docstring for precedence)."""

    data_dir: Path = field(default_factory=default_data_dir)
    #: litellm model string; ``local/smollm2`` is the embedded, offline default.
    model: str = EMBEDDED_MODEL
    #: Model used to rewrite documents (defaults to ``model``).
    rewrite_model: str | None = None
    api_base: str | None = None
    api_key: str | None = None
    #: More endpoints serving the same model as ``api_base`` (replicas, e.g. vLLM on several GPUs):
    #: calls are spread over all of them by litellm's Router. ``api_base`` stays the model's identity
    #: (cache keys, run ids): a replica is the same model, so which one answered is not part of it.
    replicas: tuple[str, ...] = ()
    #: A litellm Router file (YAML or TOML ``model_list``: a model's endpoints with their slots).
    router_file: Path | None = None
    #: LLM calls in flight at once, per endpoint (a run over n replicas keeps n x this in flight).
    concurrency: int = 8
    #: Processes that make remote LLM calls. litellm spends ~5 ms of CPU per call, so one process
    #: tops out near 200 calls/s; more workers let short calls on many slots use more cores.
    workers: int = 1
    #: Seconds before one remote LLM call is abandoned (and retried); in-process models have none (see llm).
    timeout: float = 120.0
    #: Retries after the first attempt on 429/5xx/timeouts.
    retries: int = 4
    #: Base of the exponential backoff, in seconds.
    backoff: float = 0.5
    cache: bool = True
    #: Extra directory of user strategy files.
    strategies_dir: Path | None = None
    user_agent: str = DEFAULT_USER_AGENT
    #: Your own list of AI crawlers for ``geoaudit check`` (replaces the shipped ``geoaudit/data/ai_agents.toml``).
    ai_agents_file: Path | None = None
    debug: bool = False

    def __post_init__(self) -> None:
        object.__setattr__(self, "data_dir", Path(self.data_dir).expanduser())
        if isinstance(self.replicas, str):
            object.__setattr__(self, "replicas", tuple(x.strip() for x in self.replicas.split(",") if x.strip()))
        else:
            object.__setattr__(self, "replicas", tuple(self.replicas))
        for name in ("strategies_dir", "ai_agents_file", "router_file"):
            value = getattr(self, name)
            if value is not None:
                object.__setattr__(self, name, Path(value).expanduser())
        # Checked here, not only in load_settings: library users build Settings directly, and a bad
        # value fails late and badly (Semaphore(0) waits forever, a NaN timeout times out at random).
        for name, low in (("concurrency", 1), ("retries", 0), ("workers", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ConfigError(f"{name} must be a whole number of at least {low}, got {value!r}")
        for name, positive in (("timeout", True), ("backoff", False)):
            value = getattr(self, name)
            ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
            if not ok or value < 0 or (positive and value == 0):
                raise ConfigError(
                    f"{name} must be a finite number of seconds{' above 0' if positive else ', 0 or more'}, got {value!r}"
                )

    @property
    def cache_path(self) -> Path:
        return self.data_dir / "cache.db"

    @property
    def store_path(self) -> Path:
        return self.data_dir / "geoaudit.db"

    @property
    def runs_dir(self) -> Path:
        return self.data_dir / "runs"

    def ensure_data_dir(self) -> Path:
        self.data_dir.mkdir(parents=True, exist_ok=True)
        return self.data_dir

    def replace(self, **changes: Any) -> Settings:
        return dataclasses.replace(self, **{k: v for k, v in changes.items() if v is not None})


def _coerce(name: str, raw: Any, typ: Any, source: str) -> Any:
    text = str(typ)
    try:
        if raw is None:
            return None
        if "Path" in text:
            return Path(str(raw)).expanduser()
        if typ is bool or text == "bool":
            if isinstance(raw, bool):
                return raw
            value = str(raw).strip().lower()
            if value in {"1", "true", "yes", "on"}:
                return True
            if value in {"0", "false", "no", "off"}:
                return False
            raise ValueError(f"expected true/false, got {raw!r}")
        if "tuple" in text:  # a list: TOML array, or comma-separated in the environment
            items = raw if isinstance(raw, (list, tuple)) else str(raw).split(",")
            return tuple(str(x).strip() for x in items if str(x).strip())
        if typ is int or text == "int":
            number = int(raw)
            if number < 0:
                raise ValueError("must not be negative")
            return number
        if typ is float or text == "float":
            real = float(raw)
            if not math.isfinite(real):  # "nan"/"inf" parse as floats but break timeouts and backoff
                raise ValueError(f"must be a finite number, got {raw!r}")
            if real < 0:
                raise ValueError("must not be negative")
            return real
        return str(raw)
    except ValueError as exc:
        raise ConfigError(f"{source}: invalid value for {name!r}: {exc}") from None


def config_file_path(data_dir: Path | None = None) -> Path:
    env = os.environ.get("GEOAUDIT_CONFIG")
    if env:
        return Path(env).expanduser()
    return (data_dir or default_data_dir()) / "config.toml"


def load_settings(**overrides: Any) -> Settings:
    """Build :class:`Settings` from defaults, config file, environment and ``overrides`` (in that order).

    ``None`` in ``overrides`` means "not given" so CLI flags can be passed straight through.

    Raises:
        ConfigError: a value cannot be parsed, or the config file is not valid TOML / has unknown keys.
    """
    hints = get_type_hints(Settings)
    names = {f.name for f in fields(Settings)}
    values: dict[str, Any] = {}

    data_dir = overrides.get("data_dir")
    path = config_file_path(Path(data_dir) if data_dir else None)
    if path.is_file():
        try:
            doc = tomllib.loads(path.read_text(encoding="utf-8"))
        except (tomllib.TOMLDecodeError, UnicodeDecodeError) as exc:
            raise ConfigError(f"config file {path} is not valid TOML: {exc}") from None
        section = doc.get("geoaudit", doc)
        for key, raw in section.items():
            key = key.replace("-", "_")
            if key not in names:
                raise ConfigError(f"config file {path}: unknown setting {key!r}")
            values[key] = _coerce(key, raw, hints[key], f"config file {path}")

    for name in names:
        env = os.environ.get(ENV_PREFIX + name.upper())
        if env is not None and name != "data_dir":
            values[name] = _coerce(name, env, hints[name], f"environment {ENV_PREFIX + name.upper()}")

    for key, raw in overrides.items():
        if raw is None:
            continue
        if key not in names:
            raise ConfigError(f"unknown setting {key!r}")
        values[key] = _coerce(key, raw, hints[key], f"option --{key.replace('_', '-')}")

    return Settings(**values)
