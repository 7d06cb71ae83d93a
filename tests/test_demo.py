"""`geoaudit demo` end to end: the README's main command, here on a scripted local model."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from geoaudit.testing import FakeOpenAIServer, last_user_message


def scripted(req: dict) -> str:
    prompt = last_user_message(req)
    if "Question:" in prompt and "[1]" in prompt:
        return "Drink water through the day [1]. Thirst is a useful guide for most adults [2]."
    return prompt.rsplit("Page:", 1)[-1].strip()[:400]  # a rewrite: a shortened copy of the page


def test_demo_runs_the_whole_pipeline_and_prints_the_report_path(tmp_path: Path) -> None:
    env = {**os.environ, "GEOAUDIT_HOME": str(tmp_path / "home")}
    with FakeOpenAIServer(scripted) as server:
        cmd = [
            sys.executable,
            "-m",
            "geoaudit",
            "demo",
            "--limit",
            "5",
            "--model",
            "openai/fake",
            "--api-base",
            server.url,
            "-o",
            str(tmp_path / "report"),
        ]
        first = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert first.returncode == 0, first.stderr
        calls = len(server.requests)
        again = subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=300)
        assert again.returncode == 0, again.stderr
        assert len(server.requests) == calls  # everything came from the cache and the run store
    report = tmp_path / "report" / "index.html"
    assert f"report: {report}" in first.stdout.replace("\n", "")
    assert "crawl: fetched" in first.stdout
    html = report.read_text()
    assert "Verdict" in html and "<svg" in html and "openai/fake" in html
    assert "Engine calibration" in html
    from geoaudit.options import DEMO

    for strategy in DEMO.strategies:
        assert strategy in html
