"""CLI QA regressions: every mistake a user can make is one ``error:`` line with the right exit code.

Real components throughout: typer's CliRunner on the real app, real files, a real HTTP fake LLM
server on 127.0.0.1 where a command needs one.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from geoaudit.testing import FakeOpenAIServer, Reply, last_user_message

PAGE = "# Solar panels\n\nSolar panels turn sunlight into electricity for your home and cut the monthly bill.\n"


def cli(*args: str) -> Any:
    from geoaudit.cli import app

    return CliRunner().invoke(app, list(args))


def one_error_line(result: Any, code: int) -> str:
    """The single stderr line of a failed command (asserting there is exactly one, and no traceback)."""
    assert result.exit_code == code, (result.exit_code, result.output)
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert "Traceback" not in result.output and "╭" not in result.stderr, result.stderr
    assert len(lines) == 1 and lines[0].startswith("error: "), result.stderr
    return lines[0]


def test_usage_errors_are_one_line_with_where_to_look() -> None:
    line = one_error_line(cli("ask", "q", "--docs", "x.jsonl", "--k", "abc"), 2)
    assert "--k" in line and "ask -h" in line
    assert "No such command 'bogus'" in one_error_line(cli("bogus"), 2)
    assert "Missing argument" in one_error_line(cli("runs", "show"), 2)
    # The global flag after the command: say where it goes instead of just "no such option".
    assert "goes before the command" in one_error_line(cli("crawl", "x.html", "--debug"), 2)
    # A group alone still prints its help rather than an error.
    r = cli("runs")
    assert "list" in r.output and "export" in r.output and "error:" not in r.output


def test_error_text_is_not_read_as_rich_markup() -> None:
    line = one_error_line(cli("strategies", "show", "[red]x[/red]"), 2)
    assert "[red]x[/red]" in line


def test_output_paths_are_checked_before_any_work(tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    a_file = tmp_path / "plain-file"
    a_file.write_text("x")
    assert "is a directory" in one_error_line(cli("crawl", str(page), "--out", str(tmp_path)), 2)
    assert "not a writable directory" in one_error_line(cli("crawl", str(page), "--out", str(a_file / "d.jsonl")), 2)
    # stats/report check their outputs before even opening the run.
    assert "--csv" in one_error_line(cli("stats", "no-such-run", "--csv", str(tmp_path)), 2)
    assert "--parquet" in one_error_line(cli("stats", "no-such-run", "--parquet", str(a_file / "s.parquet")), 2)


def test_rewrite_output_checked_before_llm_calls(fake_server: FakeOpenAIServer, tmp_path: Path) -> None:
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    r = cli(
        "rewrite",
        str(page),
        "-s",
        "fluency",
        "-o",
        str(tmp_path),
        "--model",
        "openai/fake",
        "--api-base",
        fake_server.url,
    )
    assert "--output" in one_error_line(r, 2)
    assert fake_server.requests == []


def test_os_errors_while_writing_are_one_line(tmp_path: Path) -> None:
    # /proc refuses new files even for root (where access checks pass): the write itself fails.
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    line = one_error_line(cli("crawl", str(page), "--out", "/proc/geoaudit-qa.jsonl"), 2)
    assert "/proc/geoaudit-qa.jsonl" in line


def test_unexpected_failures_are_one_line_and_debug_shows_traceback(tmp_path: Path) -> None:
    # A directory that is not a run (whatever the library raises for it, never a bare traceback).
    r = cli("stats", str(tmp_path))
    assert r.exit_code != 0
    lines = [line for line in r.stderr.splitlines() if line.strip()]
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in r.output
    r = cli("--debug", "crawl", str(tmp_path / "missing.html"))
    assert r.exit_code != 0 and r.exception is not None and "missing.html" in str(r.exception)


@pytest.mark.parametrize(
    ("args", "needle"),
    [
        (("bench", "list", "--k", "0"), "--k"),
        (("bench", "show", "demo", "--limit", "-1"), "--limit"),
        (("report", "any-run", "--examples", "-1"), "--examples"),
        (("ask-llm", "  "), "prompt is empty"),
        (("ask-llm", "hi", "--max-tokens", "0"), "--max-tokens"),
        (("ask-llm", "hi", "--temperature", "-0.5"), "--temperature"),
    ],
)
def test_invalid_numbers_are_user_errors(args: tuple[str, ...], needle: str) -> None:
    assert needle in one_error_line(cli(*args), 2)


def test_rewrite_backend_failure_exits_1_and_plain_diff_marks_changes(
    fake_server: FakeOpenAIServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("GEOAUDIT_RETRIES", "0")
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    base = [
        "rewrite",
        str(page),
        "-s",
        "fluency",
        "--model",
        "openai/fake",
        "--api-base",
        fake_server.url,
        "--no-cache",
    ]

    fake_server.responder = lambda req: Reply(status=500, text="down")
    r = cli(*base)
    assert r.exit_code == 1 and "Traceback" not in r.output
    errors = [line for line in r.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1 and r.stderr.rstrip().endswith(errors[0][-40:])  # after the usage line
    assert "1 of 1 rewrites failed" in errors[0] and "backend" in errors[0]
    assert "rewrite summary" in r.stdout  # the summary is still shown

    def reword(req: dict[str, Any]) -> str:
        text = last_user_message(req)
        body = re.search(r"Solar panels turn.*?bill\.", text, re.S)
        assert body is not None
        return body.group(0).replace("cut", "lower")

    fake_server.responder = reword
    r = cli(*base, "--diff")
    assert r.exit_code == 0, r.output
    # CliRunner is not a terminal: no colour, so the word diff carries visible markers.
    assert "[-cut-]" in r.stdout and "{+lower+}" in r.stdout
    assert "rewrites by openai/fake · seed 0" in r.stdout  # which model made the numbers above


def test_crawl_delay_must_be_a_finite_number(tmp_path: Path) -> None:
    # `--delay nan` (or inf) used to be accepted and the crawl then waited forever for a slot.
    for value in ("nan", "inf", "-1"):
        line = one_error_line(cli("crawl", "http://127.0.0.1:9/", "--delay", value), 2)
        assert "delay" in line and "finite" in line, line


def test_float_settings_refuse_nan_and_inf(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    for value in ("nan", "inf", "-inf"):
        monkeypatch.setenv("GEOAUDIT_TIMEOUT", value)
        line = one_error_line(cli("crawl", str(page)), 2)
        assert "GEOAUDIT_TIMEOUT" in line and "finite" in line, line
    monkeypatch.delenv("GEOAUDIT_TIMEOUT")
    monkeypatch.setenv("GEOAUDIT_RETRIES", "0")
    line = one_error_line(
        cli("ask-llm", "hi", "--temperature", "nan", "--model", "openai/x", "--api-base", "http://127.0.0.1:9"), 2
    )
    assert "--temperature" in line


def test_engine_temperature_refuses_nan() -> None:
    from geoaudit.engine import EngineConfig
    from geoaudit.errors import ConfigError

    for bad in (float("nan"), float("inf"), -0.1):
        with pytest.raises(ConfigError, match="temperature"):
            EngineConfig(temperature=bad)


def test_non_utf8_document_file_is_one_line(tmp_path: Path) -> None:
    bad = tmp_path / "docs.jsonl"
    bad.write_bytes(b'{"text": "caf\xe9"}\n')
    assert "docs.jsonl:1: not UTF-8" in one_error_line(cli("crawl", str(bad)), 2)


def test_user_text_is_not_read_as_rich_markup(tmp_path: Path) -> None:
    # A strategy title "[/oops]" made `strategies list` fail with a rich MarkupError.
    d = tmp_path / "strategies"
    d.mkdir()
    (d / "odd.toml").write_text(
        'name = "odd"\ntitle = "Odd [/oops] [bold]title"\ndescription = "Has [/] markup [red]."\n'
        'kind = "rule"\nversion = "1"\n[origin]\npaper = "mine [/x]"\nmethod = "m"\n',
        encoding="utf-8",
    )
    listed = cli("strategies", "list", "--strategies-dir", str(d))
    assert listed.exit_code == 0, listed.output
    assert "[/oops]" in listed.stdout
    shown = cli("strategies", "show", "odd", "--strategies-dir", str(d))
    assert shown.exit_code == 0, shown.output
    assert "Odd [/oops] [bold]title" in shown.stdout and "Has [/] markup [red]." in shown.stdout
    page = tmp_path / "p.md"
    page.write_text(PAGE)
    out = tmp_path / "[/oops].jsonl"
    wrote = cli("crawl", str(page), "--out", str(out))
    assert wrote.exit_code == 0, wrote.output
    assert "[/oops].jsonl" in wrote.stdout
