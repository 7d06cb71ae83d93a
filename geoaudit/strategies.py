"""Rewrite strategies as data: one TOML file per strategy, loaded and validated here.

Built-in strategies live in the top-level ``strategies/`` directory (shipped as package data and
located with :func:`geoaudit.resources.data_dir`); users add their own by pointing
``--strategies-dir`` / ``settings.strategies_dir`` at a directory of ``*.toml`` files. Both go
through the same loader, so a built-in file is also the reference example for a user's own.

File format (every key is checked by hand; an unknown or mistyped key is a ``ConfigError`` that
names the file and the field)::

    name = "fluency"                  # lower-case letters, digits and '-'; unique; not "all"
    title = "Fluency optimisation"
    description = "One paragraph for users."
    kind = "llm-rewrite"              # "llm-rewrite" | "rank" | "rule"
    transform = "answer-first"        # rule only: a deterministic transform of geoaudit.transforms
    version = "1"                     # bump when the prompt or post-processing changes
    query_aware = false               # true: the template uses {query} and a query is required
    grounded = false                  # true: may only reuse facts already in the document
    position = 1                      # rank only: 1-based target position in the engine's sources
    temperature = 0.0                 # llm-rewrite only
    postprocess = ["fenced-block"]    # steps: "fenced-block", "after-marker:TEXT", "strip-chatter", "none"

    [origin]
    paper = "GEO (Aggarwal et al., KDD 2024)"
    method = "Fluency Optimization"

    [params]                          # rule only: the transform's declared parameters
    sentences = 2

    [prompt]                          # llm-rewrite only; variables {text}, {title}, {query}
    system = "..."
    user = "... {text}"

    [constraints]
    min_length_ratio = 0.6            # rewritten words / original words
    max_length_ratio = 1.6
    keep_structure = true             # headings, code and tables stay verbatim; prose is chunked
    forbid_new = ["numbers", "quotes", "urls"]   # fabrication categories that fail the rewrite

Precedence: built-ins first, then each extra directory in order; a later file with the same name
overrides an earlier one (so a user can replace a built-in), and the registry remembers what was
overridden so ``geoaudit strategies list`` can say so. Two files with the same name in one
directory are an error.

A ``rule`` strategy needs no model: its ``transform`` (default ``identity``) is a pure function in
:mod:`geoaudit.transforms`, its ``[params]`` are checked against the parameters that transform
declares (missing ones take the declared default), and ``query_aware`` must say whether the
transform uses the query.
"""

from __future__ import annotations

import difflib
import hashlib
import json
import math
import re
import tomllib
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from geoaudit.errors import ConfigError, InputError, UnknownStrategyError
from geoaudit.transforms import TRANSFORMS, ParamValue, Transform

KINDS = ("llm-rewrite", "rank", "rule")
#: Template variables a prompt may use.
VARIABLES = ("text", "title", "query")
#: Fabrication categories :mod:`geoaudit.guards` reports (``constraints.forbid_new`` values).
FABRICATION_KINDS = ("numbers", "quotes", "sources", "urls")
_NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,63}$")
_VAR_RE = re.compile(r"\{([A-Za-z_][A-Za-z0-9_]*)\}")
_POSTPROCESS_SIMPLE = ("none", "fenced-block", "strip-chatter")


@dataclass(frozen=True)
class Origin:
    """Where a strategy comes from: the paper and the method's name as the paper or its code spells it."""

    paper: str
    method: str

    def __str__(self) -> str:
        return f"{self.paper}: {self.method}"


@dataclass(frozen=True)
class Constraints:
    """What a rewrite must respect, checked by :mod:`geoaudit.guards` after every rewrite."""

    min_length_ratio: float = 0.0
    max_length_ratio: float = 100.0
    keep_structure: bool = True
    forbid_new: tuple[str, ...] = ()


@dataclass(frozen=True)
class Strategy:
    """One strategy, as loaded from its file. Frozen: safe to share across threads and runs."""

    name: str
    title: str
    description: str
    origin: Origin
    kind: str
    version: str
    system: str = ""
    user: str = ""
    query_aware: bool = False
    grounded: bool = False
    position: int = 1
    temperature: float = 0.0
    postprocess: tuple[str, ...] = ()
    constraints: Constraints = field(default_factory=Constraints)
    #: rule only: the :mod:`geoaudit.transforms` transform and its parameters (every declared one).
    transform: str = ""
    params: tuple[tuple[str, ParamValue], ...] = ()
    #: File the strategy was loaded from (None for strategies built in code).
    source: Path | None = None
    builtin: bool = False

    @property
    def prompt_hash(self) -> str:
        """First 16 hex digits of sha256 over everything that shapes the model's output text.

        Covers the prompt templates, post-processing, temperature and version, so a changed prompt is
        a new cache key and new provenance even if someone forgets to bump ``version``. For a rule
        strategy it also covers the transform, its code version and its parameters.
        """
        payload = {
            "system": self.system,
            "user": self.user,
            "postprocess": list(self.postprocess),
            "temperature": self.temperature,
            "version": self.version,
            "kind": self.kind,
            "position": self.position,
        }
        if self.kind == "rule":  # only here, so the other kinds' hashes (and stored rewrites) stay valid
            payload["transform"] = self.rule_transform.label
            payload["params"] = dict(self.params)
        blob = json.dumps(payload, sort_keys=True, ensure_ascii=False)
        return hashlib.sha256(blob.encode("utf-8")).hexdigest()[:16]

    @property
    def changes_text(self) -> bool:
        """True when applying the strategy rewrites the text (an LLM rewrite or a text-changing transform)."""
        return self.kind == "llm-rewrite" or (self.kind == "rule" and self.rule_transform.changes_text)

    @property
    def needs_model(self) -> bool:
        """Only LLM rewrites call a model; rule and rank strategies work without one."""
        return self.kind == "llm-rewrite"

    @property
    def rule_transform(self) -> Transform:
        """The transform of a rule strategy (``identity`` when none is named).

        Raises:
            ConfigError: the named transform is not registered (only for strategies built in code).
        """
        name = self.transform or "identity"
        try:
            return TRANSFORMS[name]
        except KeyError:
            raise ConfigError(f"strategy {self.name!r}: unknown transform {name!r}") from None

    @property
    def parameters(self) -> dict[str, ParamValue]:
        return dict(self.params)

    def render(self, text: str, *, title: str = "", query: str | None = None) -> tuple[str, str]:
        """The (system, user) messages for ``text``; only ``{text}``, ``{title}``, ``{query}`` are replaced.

        Other braces in a template are left alone, so prompts may contain JSON or code examples.

        Raises:
            InputError: the strategy is query-aware and no query was given.
        """
        if self.query_aware and not (query and query.strip()):
            raise InputError(f"strategy {self.name!r} needs the target query", hint='pass --query "..."')
        values = {"text": text, "title": title or "(untitled)", "query": (query or "").strip()}

        def fill(template: str) -> str:
            return _VAR_RE.sub(lambda m: values.get(m.group(1), m.group(0)), template)

        return fill(self.system), fill(self.user)

    def instructions(self) -> list[str]:
        """The fixed instruction sentences of the templates (variables removed), for echo detection."""
        parts: list[str] = []
        for template in (self.system, self.user):
            for piece in _VAR_RE.split(template):
                if piece in VARIABLES:
                    continue
                parts.extend(s.strip() for s in re.split(r"(?<=[.!?:])\s+|\n+", piece) if len(s.strip()) >= 25)
        return parts

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "title": self.title,
            "description": self.description,
            "origin": {"paper": self.origin.paper, "method": self.origin.method},
            "kind": self.kind,
            "version": self.version,
            "query_aware": self.query_aware,
            "grounded": self.grounded,
            "position": self.position,
            "temperature": self.temperature,
            "postprocess": list(self.postprocess),
            "prompt": {"system": self.system, "user": self.user},
            "transform": self.rule_transform.label if self.kind == "rule" else None,
            "params": dict(self.params),
            "constraints": {
                "min_length_ratio": self.constraints.min_length_ratio,
                "max_length_ratio": self.constraints.max_length_ratio,
                "keep_structure": self.constraints.keep_structure,
                "forbid_new": list(self.constraints.forbid_new),
            },
            "prompt_hash": self.prompt_hash,
            "source": str(self.source) if self.source else None,
            "builtin": self.builtin,
        }


# --------------------------------------------------------------------------- parsing


_TOP_KEYS = {
    "name",
    "title",
    "description",
    "kind",
    "version",
    "query_aware",
    "grounded",
    "position",
    "temperature",
    "postprocess",
    "origin",
    "prompt",
    "constraints",
    "transform",
    "params",
}


class _Checker:
    """Typed field access that raises ConfigError naming the file and the field."""

    def __init__(self, path: Path) -> None:
        self.path = path

    def fail(self, fieldname: str, problem: str) -> ConfigError:
        return ConfigError(f"strategy file {self.path}: field '{fieldname}' {problem}")

    def get(
        self,
        data: Mapping[str, Any],
        key: str,
        typ: type | tuple[type, ...],
        *,
        prefix: str = "",
        required: bool = True,
        default: Any = None,
    ) -> Any:
        name = prefix + key
        if key not in data:
            if required:
                raise self.fail(name, "is missing")
            return default
        value = data[key]
        types = typ if isinstance(typ, tuple) else (typ,)
        # bool is an int in Python; a number field must not accept true/false and vice versa.
        ok = isinstance(value, types) and not (isinstance(value, bool) and bool not in types)
        if not ok:
            want = " or ".join(t.__name__ for t in types)
            raise self.fail(name, f"must be {want}, not {type(value).__name__} ({value!r})")
        return value


def parse_strategy(data: Mapping[str, Any], path: Path, *, builtin: bool = False) -> Strategy:
    """Validate one parsed TOML document and build its :class:`Strategy`.

    Raises:
        ConfigError: a required field is missing, has the wrong type or an invalid value
            (the message names ``path`` and the field).
    """
    c = _Checker(path)
    unknown = sorted(set(data) - _TOP_KEYS)
    if unknown:
        raise c.fail(unknown[0], f"is not a strategy field (known: {', '.join(sorted(_TOP_KEYS))})")
    name = c.get(data, "name", str)
    if not _NAME_RE.match(name) or name == "all":
        raise c.fail("name", f"must be lower-case letters, digits and '-' (and not 'all'), got {name!r}")
    title = c.get(data, "title", str)
    description = c.get(data, "description", str)
    kind = c.get(data, "kind", str)
    if kind not in KINDS:
        raise c.fail("kind", f"must be one of {', '.join(KINDS)}, got {kind!r}")
    version = c.get(data, "version", (str, int))
    version = str(version)
    origin_raw = c.get(data, "origin", dict)
    origin = Origin(
        paper=c.get(origin_raw, "paper", str, prefix="origin."),
        method=c.get(origin_raw, "method", str, prefix="origin."),
    )
    query_aware = c.get(data, "query_aware", bool, required=False, default=False)
    grounded = c.get(data, "grounded", bool, required=False, default=False)
    position = c.get(data, "position", int, required=False, default=1)
    if position < 1:
        raise c.fail("position", f"must be 1 or more (1 = first source), got {position}")
    temperature = float(c.get(data, "temperature", (int, float), required=False, default=0.0))
    if not 0.0 <= temperature <= 2.0:
        raise c.fail("temperature", f"must be between 0 and 2, got {temperature}")

    post_raw = c.get(data, "postprocess", (str, list), required=False, default=[])
    steps = [post_raw] if isinstance(post_raw, str) else list(post_raw)
    for step in steps:
        if not isinstance(step, str) or not (
            step in _POSTPROCESS_SIMPLE or (step.startswith("after-marker:") and len(step) > len("after-marker:"))
        ):
            raise c.fail(
                "postprocess",
                f"has unknown step {step!r} (use none, fenced-block, strip-chatter or after-marker:TEXT)",
            )

    cons_raw = c.get(data, "constraints", dict, required=False, default={})
    known_cons = {"min_length_ratio", "max_length_ratio", "keep_structure", "forbid_new"}
    bad = sorted(set(cons_raw) - known_cons)
    if bad:
        raise c.fail(f"constraints.{bad[0]}", f"is not a constraint (known: {', '.join(sorted(known_cons))})")
    lo = float(c.get(cons_raw, "min_length_ratio", (int, float), prefix="constraints.", required=False, default=0.0))
    hi = float(c.get(cons_raw, "max_length_ratio", (int, float), prefix="constraints.", required=False, default=100.0))
    if not (math.isfinite(lo) and math.isfinite(hi)) or lo < 0 or hi <= 0 or lo > hi:  # TOML allows nan/inf
        raise c.fail(
            "constraints.min_length_ratio",
            f"and max_length_ratio must be finite numbers with 0 <= min <= max, got {lo}, {hi}",
        )
    forbid = c.get(cons_raw, "forbid_new", list, prefix="constraints.", required=False, default=[])
    for item in forbid:
        if item not in FABRICATION_KINDS:
            raise c.fail("constraints.forbid_new", f"has {item!r}; allowed: {', '.join(FABRICATION_KINDS)}")
    constraints = Constraints(
        min_length_ratio=lo,
        max_length_ratio=hi,
        keep_structure=c.get(cons_raw, "keep_structure", bool, prefix="constraints.", required=False, default=True),
        forbid_new=tuple(forbid),
    )

    system = user = ""
    prompt_raw = c.get(data, "prompt", dict, required=kind == "llm-rewrite", default=None)
    if kind == "llm-rewrite":
        bad = sorted(set(prompt_raw) - {"system", "user"})
        if bad:
            raise c.fail(f"prompt.{bad[0]}", "is not a prompt field (use system and user)")
        system = c.get(prompt_raw, "system", str, prefix="prompt.", required=False, default="")
        user = c.get(prompt_raw, "user", str, prefix="prompt.")
        used = set(_VAR_RE.findall(system)) | set(_VAR_RE.findall(user))
        unknown_vars = sorted(used - set(VARIABLES))
        if unknown_vars:
            raise c.fail(
                "prompt.user", f"uses unknown variable {{{unknown_vars[0]}}} (known: {{text}}, {{title}}, {{query}})"
            )
        if "text" not in _VAR_RE.findall(user):
            raise c.fail("prompt.user", "must contain {text} (the document)")
        if query_aware and "query" not in used:
            raise c.fail("prompt.user", "must use {query} because query_aware = true")
        if not query_aware and "query" in used:
            raise c.fail("query_aware", "must be true when the prompt uses {query}")
    elif prompt_raw is not None:
        raise c.fail("prompt", f"is only allowed for kind llm-rewrite (this is {kind!r})")

    transform_name = c.get(data, "transform", str, required=False, default="identity" if kind == "rule" else "")
    params_raw = c.get(data, "params", dict, required=False, default=None)
    params: tuple[tuple[str, ParamValue], ...] = ()
    if kind == "rule":
        transform = TRANSFORMS.get(transform_name)
        if transform is None:
            close = difflib.get_close_matches(transform_name, list(TRANSFORMS), n=1, cutoff=0.5)
            raise c.fail(
                "transform",
                f"is {transform_name!r}, not a known transform"
                + (f" (did you mean {close[0]!r}?)" if close else "")
                + f"; known: {', '.join(TRANSFORMS)}",
            )
        try:
            params = tuple(transform.resolve(params_raw).items())
        except ValueError as exc:
            param, problem = exc.args
            raise c.fail(f"params.{param}", problem) from None
        if transform.uses_query and not query_aware:
            raise c.fail("query_aware", f"must be true because transform {transform_name!r} uses the query")
        if query_aware and not transform.uses_query:
            raise c.fail("query_aware", f"must be false: transform {transform_name!r} does not use the query")
    else:
        if "transform" in data:
            raise c.fail("transform", f"is only allowed for kind rule (this is {kind!r})")
        if params_raw is not None:
            raise c.fail("params", f"is only allowed for kind rule (this is {kind!r})")

    return Strategy(
        name=name,
        title=title,
        description=re.sub(r"(?<!\n)\n(?!\n)", " ", description.strip()),
        origin=origin,
        kind=kind,
        version=version,
        system=system.strip(),
        user=user.strip(),
        query_aware=query_aware,
        grounded=grounded,
        position=position,
        temperature=temperature,
        postprocess=tuple(steps),
        constraints=constraints,
        transform=transform_name,
        params=params,
        source=path,
        builtin=builtin,
    )


def load_strategy_file(path: Path | str, *, builtin: bool = False) -> Strategy:
    """Read, parse and validate one strategy file.

    Raises:
        ConfigError: unreadable file, invalid TOML, or an invalid field (named in the message).
    """
    path = Path(path)
    try:
        raw = path.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as exc:
        raise ConfigError(f"strategy file {path} cannot be read: {exc}") from None
    try:
        data = tomllib.loads(raw)
    except tomllib.TOMLDecodeError as exc:
        raise ConfigError(f"strategy file {path} is not valid TOML: {exc}") from None
    return parse_strategy(data, path, builtin=builtin)


# --------------------------------------------------------------------------- registry


_KIND_ORDER = {"rule": 0, "rank": 1, "llm-rewrite": 2}


class StrategyRegistry:
    """All strategies known to a run, by name. Built with :func:`load_strategies`."""

    def __init__(self, strategies: Iterable[Strategy] = (), overridden: Mapping[str, Strategy] | None = None) -> None:
        self._by_name: dict[str, Strategy] = {s.name: s for s in strategies}
        #: name -> the strategy that a later file replaced (for ``strategies list``).
        self.overridden: dict[str, Strategy] = dict(overridden or {})

    def names(self) -> list[str]:
        """Names in display order: controls (identity, rank) first, then deterministic rewrites, then
        LLM rewrites, each group alphabetically."""

        def order(s: Strategy) -> tuple[int, int, str]:
            return (0 if not s.changes_text else 1 if s.kind == "rule" else 2, _KIND_ORDER[s.kind], s.name)

        return [s.name for s in sorted(self._by_name.values(), key=order)]

    def all(self) -> list[Strategy]:
        return [self._by_name[n] for n in self.names()]

    def get(self, name: str) -> Strategy:
        """The strategy called ``name``.

        Raises:
            UnknownStrategyError: no such strategy (with a "did you mean" hint when one is close).
        """
        try:
            return self._by_name[name]
        except KeyError:
            close = difflib.get_close_matches(name, list(self._by_name), n=3, cutoff=0.5)
            hint = (
                f"did you mean {' or '.join(repr(c) for c in close)}? `geoaudit strategies list` shows all"
                if close
                else "`geoaudit strategies list` shows all strategies"
            )
            raise UnknownStrategyError(f"unknown strategy {name!r}", hint=hint) from None

    def resolve(self, names: Sequence[str] | str) -> list[Strategy]:
        """Strategies for ``names`` in the given order, duplicates dropped; ``"all"`` means every one.

        Raises:
            UnknownStrategyError: a name is unknown.
        """
        if isinstance(names, str):
            names = [names]
        out: list[Strategy] = []
        seen: set[str] = set()
        for raw in names:
            for name in (n.strip() for n in raw.split(",")):
                if not name:
                    continue
                batch = self.all() if name == "all" else [self.get(name)]
                for s in batch:
                    if s.name not in seen:
                        seen.add(s.name)
                        out.append(s)
        return out

    def __contains__(self, name: object) -> bool:
        return name in self._by_name

    def __iter__(self) -> Iterator[Strategy]:
        return iter(self.all())

    def __len__(self) -> int:
        return len(self._by_name)


def _load_dir(directory: Path, *, builtin: bool) -> list[Strategy]:
    if not directory.is_dir():
        raise ConfigError(f"strategies directory {directory} does not exist or is not a directory")
    found: dict[str, Strategy] = {}
    for path in sorted(directory.glob("*.toml")):
        strategy = load_strategy_file(path, builtin=builtin)
        if strategy.name in found:
            raise ConfigError(
                f"strategy file {path}: field 'name' {strategy.name!r} is already defined by {found[strategy.name].source}"
            )
        found[strategy.name] = strategy
    return list(found.values())


def load_strategies(extra_dirs: Sequence[Path | str] = (), *, settings: Any = None) -> StrategyRegistry:
    """Load the built-in strategies, then ``settings.strategies_dir``, then each of ``extra_dirs``.

    A later definition of a name overrides an earlier one (recorded in ``registry.overridden``).

    Raises:
        ConfigError: a directory is missing, or a file in it is malformed (file and field named).
    """
    from geoaudit.resources import data_dir

    dirs: list[tuple[Path, bool]] = [(data_dir("strategies"), True)]
    if settings is not None and getattr(settings, "strategies_dir", None):
        dirs.append((Path(settings.strategies_dir), False))
    dirs.extend((Path(d).expanduser(), False) for d in extra_dirs)
    by_name: dict[str, Strategy] = {}
    overridden: dict[str, Strategy] = {}
    seen_dirs: set[Path] = set()
    for directory, builtin in dirs:
        resolved = directory.resolve()
        if resolved in seen_dirs:
            continue
        seen_dirs.add(resolved)
        for s in _load_dir(directory, builtin=builtin):
            if s.name in by_name:
                overridden[s.name] = by_name[s.name]
            by_name[s.name] = s
    return StrategyRegistry(by_name.values(), overridden)


__all__ = [
    "KINDS",
    "Constraints",
    "Origin",
    "Strategy",
    "StrategyRegistry",
    "load_strategies",
    "load_strategy_file",
    "parse_strategy",
]
