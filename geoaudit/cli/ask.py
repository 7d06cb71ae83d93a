"""``geoaudit ask``: one query through the simulated engine, with every source's visibility."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from geoaudit.cli._app import ApiBaseOpt, ModelOpt, NoCacheOpt, app, console, err_console, print_usage, settings
from geoaudit.options import ENGINE_K, ENGINE_MAX_TOKENS, ENGINE_SOURCE_BUDGET, ENGINE_TEMPERATURE

# One colour per source number (cycled beyond 8 sources).
SOURCE_COLOURS = ("cyan", "magenta", "green", "yellow", "blue", "bright_red", "bright_cyan", "bright_magenta")


def _colour(i: int) -> str:
    return SOURCE_COLOURS[i % len(SOURCE_COLOURS)]


def load_docs(paths: list[Path]) -> list[Any]:
    """Documents from JSONL, HTML/MD/TXT files or directories (``geoaudit.documents.load_inputs``)."""
    from geoaudit import documents

    loader = getattr(documents, "load_inputs", None)
    if loader is not None:
        return list(loader(paths))
    out: list[Any] = []
    for p in paths:
        out.extend(documents.read_jsonl(p))
    return out


def _render_answer(result: Any) -> Any:
    from rich.text import Text

    sample = result.answer.samples[0]
    text = Text()
    for i, s in enumerate(sample.sentences):
        if i:
            text.append(" ")
        text.append(s.text)
        for c in s.citations:
            style = _colour(c) + (" bold" if s.how == "explicit" else " italic")
            text.append(f"[{c + 1}]" if s.how == "explicit" else f"[~{c + 1}]", style=style)
        for h in s.hallucinated:
            text.append(f"[{h}?]", style="bold red")
    if not sample.sentences:
        text.append("(empty answer)", style="dim")
    return text


def _fmt(value: Any, digits: int = 3, scale: float = 1.0) -> str:
    if value is None:
        return "-"
    return f"{value * scale:.{digits}f}"


def _pct(value: Any) -> str:
    return _fmt(value, 1, 100.0)


def _table(result: Any) -> Any:
    from rich.markup import escape
    from rich.table import Table

    ans = result.answer
    n = len(ans.samples)
    table = Table(
        title=f"Visibility per source (means over {n} sample{'s' if n != 1 else ''}; PAWC variant {result.variant})",
        caption="cited: samples citing it · cites: attributed sentences · rank: first-citation rank · "
        "SoV: share of voice · word/pos/PAWC: GEO impression metrics · SoV/word/pos/PAWC ×100 · "
        "shown: characters of the source shown",
    )
    table.add_column("#", justify="right")
    table.add_column("source", overflow="fold", min_width=12, max_width=40)
    table.add_column("cited", justify="right")
    table.add_column("cites", justify="right")
    table.add_column("rank", justify="right")
    table.add_column("SoV", justify="right")
    table.add_column("word", justify="right")
    table.add_column("pos", justify="right")
    table.add_column("PAWC", justify="right")
    judged = result.judgements is not None
    if judged:
        table.add_column("SI (1-5)", justify="right")
    table.add_column("shown", justify="right")
    for i, (view, m) in enumerate(zip(ans.source_info, result.metrics)):
        title = escape(view.title or "(untitled)")
        label = f"[{_colour(i)}]{title}[/]" + (f"\n[dim]{escape(view.url)}[/]" if view.url else "")
        shown = f"{view.shown_chars:,}" + ("[yellow] cut[/]" if view.truncated else "")
        row = [
            f"[{_colour(i)}]{i + 1}[/]",
            label,
            f"{round(m['cited'] * n)}/{n}",
            _fmt(m["citation_count"], 1),
            _fmt(m["first_citation_rank"], 1),
            _pct(m["share_of_voice"]),
            _pct(m["word"]),
            _pct(m["position"]),
            _pct(m["pawc"]),
        ]
        if judged:
            row.append(_fmt(m.get("subjective_impression"), 2))
        row.append(shown)
        table.add_row(*row)
    return table


@app.command("ask")
def ask_cmd(
    query: str = typer.Argument(..., help="The question to answer."),
    docs: list[Path] = typer.Option(
        ..., "--docs", "-d", help="Candidate documents: .jsonl, .html, .md, .txt files or a directory (repeatable)."
    ),
    model: str | None = ModelOpt,
    api_base: str | None = ApiBaseOpt,
    order: str = typer.Option("given", "--order", help="Source order: given | retrieved (BM25) | shuffled (seeded)."),
    k: int = typer.Option(ENGINE_K, "--k", "-k", help="Sources shown to the engine (GEO uses 5)."),
    samples: int = typer.Option(1, "--samples", "-n", help="Answers sampled; metrics are averaged over them."),
    seed: int = typer.Option(0, "--seed", help="Seed of the call (each sample derives its own)."),
    temperature: float = typer.Option(
        ENGINE_TEMPERATURE, "--temperature", "-t", help="Sampling temperature (GEO paper: 0.7)."
    ),
    max_tokens: int = typer.Option(ENGINE_MAX_TOKENS, "--max-tokens", help="Longest answer, in tokens."),
    budget: int = typer.Option(
        ENGINE_SOURCE_BUDGET, "--source-chars", help="Characters of each source shown to the model."
    ),
    attribution: str = typer.Option(
        "auto", "--attribution", help="citations | overlap | hybrid | auto (hybrid for local/ models, else citations)."
    ),
    pawc: str = typer.Option("paper", "--pawc", help="PAWC formula: paper (GEO eq. 3) | code (GEO src/utils.py)."),
    judge: bool = typer.Option(
        False, "--judge", help="Also rate the 7 subjective-impression facets (many more LLM calls)."
    ),
    no_cache: bool = NoCacheOpt,
    json_out: bool = typer.Option(False, "--json", help="Print the answer, metrics and provenance as JSON."),
) -> None:
    """Answer a question from your documents and show how visible each source is in the answer.

    The simulated engine shows the top-k documents as numbered sources, asks the model for an
    answer with an \\[n] citation after every sentence, attributes every sentence to sources and
    computes the GEO visibility metrics (word, position, PAWC) and the citation metrics (cited,
    citation count, first-citation rank, share of voice) per source. Citations coloured per
    source; \\[~n] marks a sentence attributed by word overlap, \\[n?] a citation of no shown source.

    Examples:
        geoaudit ask "best running shoes for flat feet" --docs pages.jsonl
        geoaudit ask "what is kambala" --docs drafts/ --order retrieved --k 3 --samples 5
        geoaudit ask "what is kambala" --docs a.html --docs b.md --model openai/gpt-4o-mini --json
    """
    from geoaudit.ask import ask
    from geoaudit.engine import EngineConfig
    from geoaudit.llm import make_gateway

    config = EngineConfig(
        k=k,
        order=order,
        attribution=attribution,
        samples=samples,
        temperature=temperature,
        max_tokens=max_tokens,
        source_budget_chars=budget,
        pawc_variant=pawc,
    )
    documents = load_docs(docs)
    s = settings(model=model, api_base=api_base, cache=False if no_cache else None)
    with (
        make_gateway(s) as gateway,
        err_console.status(f"answering with {gateway.model} ({samples} sample{'s' if samples != 1 else ''})"),
    ):
        result = ask(gateway, query, documents, config, seed=seed, judge=judge)
    ans = result.answer
    if json_out:
        console.print_json(json.dumps(result.to_dict(), ensure_ascii=False))
        return
    from rich.markup import escape

    for note in ans.notes:
        err_console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    n = len(ans.samples)
    console.print(f"[bold]Q:[/] {escape(ans.query)}", highlight=False)
    console.print(f"[bold]A[/] (sample 1 of {n}):", highlight=False)
    console.print(_render_answer(result), highlight=False)
    console.print()
    console.print(_table(result))
    no_cite = ans.no_citation_samples
    halluc = sum(x.hallucinated_citations for x in ans.samples)
    explicit = sum(x.valid_citation_count for x in ans.samples)
    console.print(
        f"{explicit} valid written citation{'s' if explicit != 1 else ''}, "
        f"{halluc} hallucinated; no attributed sentence in {no_cite} of {n} sample{'s' if n != 1 else ''}",
        highlight=False,
    )
    if result.judgements is not None:
        ratings = [fs for j in result.judgements for row in j.per_sample for fs in row]
        unusable = sum(1 for fs in ratings if fs.score is None)
        uncited = sum(1 for fs in ratings if fs.method == "uncited")
        console.print(
            f"judge: {len(ratings)} facet ratings, {uncited} of uncited sources (scored 1 without a call), "
            f"{unusable} without a usable score" + (" (the model did not reply with a digit 1-5)" if unusable else ""),
            highlight=False,
        )
    console.print(
        f"[dim]model {ans.model} · attribution {ans.attribution} · PAWC variant {result.variant} · "
        f"samples {n} · seed {ans.seed} · temperature {config.temperature:g} · order {config.order} · "
        f"k {config.k} · prompt {ans.prompt_version}[/]",
        highlight=False,
    )
    print_usage(gateway)
