"""``geoaudit models``, ``geoaudit ask-llm`` and ``geoaudit cache``: check and manage the LLM gateway."""

from __future__ import annotations

import json
from typing import Any

import typer
from rich.table import Table

from geoaudit.cli._app import (
    ApiBaseOpt,
    NoCacheOpt,
    app,
    console,
    print_usage,
    settings,
)

cache_app = typer.Typer(help="Inspect or clear the LLM response cache.", no_args_is_help=True)
app.add_typer(cache_app, name="cache")


@app.command("models")
def models_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """List the embedded model and explain how to use any other model.

    Examples:
        geoaudit models
        geoaudit ask-llm "Say hello" --model ollama/qwen2.5:7b --api-base http://localhost:11434
    """
    from geoaudit.embedded import EMBEDDED_MODELS, model_path
    from geoaudit.errors import GeoauditError

    rows: list[dict[str, Any]] = []
    for name, info in EMBEDDED_MODELS.items():
        try:
            where = str(model_path(name))
        except GeoauditError as exc:
            where = f"missing: {exc}"
        rows.append({"model": f"local/{name}", "description": info["description"], "file": where, "default": True})
    if json_out:
        console.print_json(json.dumps(rows))
        return
    table = Table(title="Embedded models (offline, in-process)")
    for col in ("model", "description", "file"):
        table.add_column(col)
    for r in rows:
        table.add_row(r["model"] + " (default)", r["description"], r["file"])
    console.print(table)
    console.print(
        "Any model litellm reaches works with [bold]--model[/] (and [bold]--api-base[/] for a local server):\n"
        "  ollama/qwen2.5:7b --api-base http://localhost:11434     (Ollama)\n"
        "  hosted_vllm/meta-llama/Llama-3.1-8B-Instruct --api-base http://localhost:8000/v1   (vLLM)\n"
        "  openai/gpt-4o-mini                                       (needs OPENAI_API_KEY)\n"
        "  openai/<name> --api-base http://host:port/v1            (any OpenAI-compatible server)\n"
        "  local/<path/to/model.gguf>                               (your own GGUF, in-process)\n"
        'Set a default with GEOAUDIT_MODEL or `model = "..."` in the config file.',
        highlight=False,
    )


@app.command("ask-llm")
def ask_llm_cmd(
    prompt: str = typer.Argument(..., help="The user message to send."),
    system: str | None = typer.Option(None, "--system", help="Optional system message."),
    model: str | None = typer.Option(None, "--model", "-m", help="litellm model string (default: local/smollm2)."),
    api_base: str | None = ApiBaseOpt,
    temperature: float = typer.Option(0.0, "--temperature", "-t", help="Sampling temperature."),
    max_tokens: int = typer.Option(256, "--max-tokens", help="Longest reply, in tokens."),
    seed: int | None = typer.Option(0, "--seed", help="Sampling seed (passed to backends that take one)."),
    no_cache: bool = NoCacheOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the reply and its usage as JSON."),
) -> None:
    """Send one raw prompt through the gateway: check that a backend works.

    Examples:
        geoaudit ask-llm "Name three primary colours."
        geoaudit ask-llm "Hello" --model openai/gpt-4o-mini
        geoaudit ask-llm "Hello" --model openai/my-model --api-base http://127.0.0.1:8000/v1
    """
    from geoaudit.errors import InputError
    from geoaudit.llm import LLMRequest, make_gateway

    if not prompt.strip():
        raise InputError("the prompt is empty", hint='e.g. geoaudit ask-llm "Say hello"')
    if max_tokens < 1:
        raise InputError(f"--max-tokens must be at least 1, got {max_tokens}")
    if not 0 <= temperature < float("inf"):  # also refuses NaN, which compares false
        raise InputError(f"--temperature must be a finite number, not negative, got {temperature:g}")
    s = settings(model=model, api_base=api_base, cache=False if no_cache else None)
    req = LLMRequest.chat(prompt, system=system, temperature=temperature, max_tokens=max_tokens, seed=seed)
    with make_gateway(s) as gateway:
        resp = gateway.complete(req)
    if json_out:
        console.print_json(
            json.dumps(
                {
                    "model": resp.model,
                    "text": resp.text,
                    "cached": resp.cached,
                    "prompt_tokens": resp.prompt_tokens,
                    "completion_tokens": resp.completion_tokens,
                    "cost": resp.cost,
                    "seed": seed,
                    "temperature": temperature,
                }
            )
        )
    else:
        console.print(resp.text, highlight=False, markup=False)
        print_usage(gateway)


@cache_app.command("stats")
def cache_stats_cmd(
    json_out: bool = typer.Option(False, "--json", help="Print machine-readable JSON."),
) -> None:
    """Show how many responses the cache holds, per model and purpose.

    Examples:
        geoaudit cache stats
    """
    from geoaudit.llm import LLMCache

    s = settings()
    stats = LLMCache(s.ensure_data_dir() / s.cache_path.name).stats()
    if json_out:
        console.print_json(json.dumps(stats))
        return
    table = Table(title=f"LLM cache: {stats['path']}")
    for col in ("model", "purpose", "entries", "bytes"):
        table.add_column(col, justify="right" if col in {"entries", "bytes"} else "left")
    for r in stats["by_model"]:
        table.add_row(r["model"], r["purpose"] or "", f"{r['entries']:,}", f"{r['bytes']:,}")
    console.print(table)
    console.print(f"{stats['entries']:,} entries, {stats['bytes']:,} bytes on disk", highlight=False)


@cache_app.command("clear")
def cache_clear_cmd(
    model: str | None = typer.Option(None, "--model", "-m", help="Only clear responses of this model."),
    yes: bool = typer.Option(False, "--yes", "-y", help="Do not ask for confirmation."),
) -> None:
    """Delete cached responses (all, or one model's).

    Examples:
        geoaudit cache clear --yes
        geoaudit cache clear --model local/smollm2 -y
    """
    from geoaudit.llm import LLMCache

    s = settings()
    if not yes:
        typer.confirm(f"Delete {model if model else 'all'} cached responses in {s.cache_path}?", abort=True)
    n = LLMCache(s.ensure_data_dir() / s.cache_path.name).clear(model)
    console.print(f"removed {n:,} cached responses", highlight=False)
