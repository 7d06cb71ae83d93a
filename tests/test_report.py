"""The HTML report: built from a real simulation run (fake LLM server over HTTP), hostile text kept inert,
and opened in real headless Chromium."""

from __future__ import annotations

import json
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import zlib
from pathlib import Path
from typing import Any

import pytest

from geoaudit.engine import EngineConfig
from geoaudit.runs import Run
from geoaudit.simulate import Simulation, SimulationConfig
from geoaudit.testing import FakeOpenAIServer, fake_settings, last_user_message

HOSTILE = '<script>alert("x")</script></script><img src=x onerror=alert(1)>"><img src=x onerror=alert(1)>'
HOSTILE_TITLE = '"><img src=x onerror=alert(1)><script>document.title="pwned"</script>'
TOPICS = ["tea", "bikes", "soil", "tents", "bread", "lamps"]
# What the scripted rewriter adds: numbers, a quotation, a named source and a URL that the original lacks.
FABRICATED = (
    'According to the World Health Organization, 73% of readers agree. "It is the best," said an expert. '
    "See https://evil.example/x.js <svg onload=alert(2)> "
)
COMMAND = "geoaudit simulate --bench '</script><script>alert(3)</script>' --strategies identity,rank,statistics"


def write_hostile_bench(path: Path, n_items: int = 16, k: int = 5) -> Path:
    rows = []
    for i in range(n_items):
        topic = TOPICS[i % 6]
        docs = []
        for j in range(k):
            text = (
                f"Source {j} explains {topic} for item {i} in some detail. It describes how {topic} works, "
                f"why people care about {topic}, and what to look for when choosing {topic}.\n\n"
                f"A second paragraph compares the common kinds of {topic}, the care they need over the years, "
                f"and the mistakes that beginners tend to make with {topic}. It closes with advice on where "
                f"to learn more about {topic} and how to judge what shops and neighbours recommend. "
            )
            title = f"Page {j} about {topic}"
            if i == 0 and j == 0:  # the target of item 0 is the hostile page
                text += HOSTILE + " onmouseover=alert(4) javascript:alert(5)"
                title = HOSTILE_TITLE
            docs.append(
                {"url": f'https://site{j}.example/{topic}?q="><script>x</script>', "title": title, "text": text}
            )
        rows.append(
            {
                "id": f"q{i}",
                "query": f"what about {topic} {i}? <script>alert('q')</script>"
                if i == 0
                else f"what about {topic} {i}?",
                # Item 0's target is the hostile page (shown first); the others sit lower, where moving up helps.
                "documents": docs,
                "target": 0 if i == 0 else 1 + i % (k - 1),
                "domain": "home" if i % 2 else "food",
                "tags": ["t"],
            }
        )
    path.write_text("\n".join(json.dumps(r) for r in rows) + "\n")
    return path


def noisy_responder(req: dict) -> str:
    """A scripted engine with sampling noise: cites a seeded random subset, favouring the first shown
    source and rewritten sources (so moving up or rewriting helps, and identity is pure noise).

    Rewrite requests get the text back with fabricated claims prepended (so the guards flag them,
    and grounded strategies fail). One answer sentence carries hostile markup.
    """
    prompt = last_user_message(req)
    if "Source [1]:" not in prompt:
        return "REWRITTEN " + FABRICATED + prompt.rsplit("Text:", 1)[-1].strip()
    rng = random.Random(f"{req.get('seed')}|{prompt}")
    blocks = re.split(r"^Source \[(\d+)\]:", prompt, flags=re.M)[1:]
    texts = {int(n): body for n, body in zip(blocks[::2], blocks[1::2])}
    score = {
        n: rng.random() + (0.5 if "REWRITTEN" in body else 0.0) + (1.0 if n == 1 else 0.0) for n, body in texts.items()
    }
    order = sorted(texts, key=lambda n: -score[n])[: rng.randint(1, 3)]
    sentences = [f"Fact {j} is stated here [{n}]." for j, n in enumerate(order)]
    sentences.append(f'Some say <img src=x onerror=alert(6)> is "fine" [{order[0]}].')
    return " ".join(sentences)


def build_run(home: Path, bench: Path, strategies: tuple[str, ...], rates: tuple[float, ...], samples: int = 2) -> Run:
    with FakeOpenAIServer(noisy_responder) as server:
        settings = fake_settings(server, home)
        cfg = SimulationConfig(
            bench=str(bench),
            strategies=strategies,
            rates=rates,
            seeds=(0,),
            engine=EngineConfig(samples=samples, attribution="citations"),
        )
        sim = Simulation(settings, cfg, command=COMMAND)
        return sim.run_sync().run


@pytest.fixture(scope="module")
def hostile_run(tmp_path_factory: pytest.TempPathFactory) -> Run:
    root = tmp_path_factory.mktemp("report")
    bench = write_hostile_bench(root / "bench.jsonl")
    return build_run(root / "home", bench, ("identity", "rank", "statistics", "statistics-grounded"), (0.0, 0.5, 1.0))


@pytest.fixture(scope="module")
def report_path(hostile_run: Run, tmp_path_factory: pytest.TempPathFactory) -> Path:
    from geoaudit.report import write_report

    out = tmp_path_factory.mktemp("out") / "reports" / "hostile"
    return write_report(hostile_run, out, n_boot=500)


# ----------------------------------------------------------------------------- content


def test_report_is_one_file_with_the_engine_calibration_then_the_verdict_first(report_path: Path) -> None:
    from bs4 import BeautifulSoup

    assert report_path.name == "index.html" and sorted(p.name for p in report_path.parent.iterdir()) == ["index.html"]
    text = report_path.read_text(encoding="utf-8")
    soup = BeautifulSoup(text, "html.parser")
    sections = [s.get("id") for s in soup.find_all("section")]
    # How far to trust the engine comes before any strategy's verdict (issue 12).
    assert sections[:2] == ["engine", "verdict"] and "methodology" in sections and "charts" in sections
    engine = soup.find(id="engine").get_text(" ", strip=True)
    assert "positive" in engine and "negative" in engine and "congestion" in engine
    assert {"strategy-identity", "strategy-rank", "strategy-statistics", "strategy-statistics-grounded"} <= set(
        sections
    )
    verdict = soup.find(id="verdict").get_text(" ", strip=True)
    # Every strategy but the A/A control gets a plain-words sentence with a CI.
    for name in ("rank", "statistics", "statistics-grounded"):
        assert re.search(rf"\b{re.escape(name)}\b", verdict)
    assert "95% CI" in verdict
    # The rank strategy puts the target first: with this engine that is a real, significant gain.
    rank_item = next(
        li for li in soup.find(id="verdict").find_all("li") if li.strong and li.strong.get_text() == "rank"
    )
    assert "significantly raises" in rank_item.get_text() and "v-better" in rank_item.strong["class"]
    # Charts: an inline SVG per metric x comparison, with a line per strategy and the zero line.
    charts = soup.find(id="charts").find_all("svg")
    assert len(charts) == 3 * 2
    assert all(c.find("polyline") is not None for c in charts)


def test_per_strategy_diffs_flags_failures_and_answers(report_path: Path) -> None:
    from bs4 import BeautifulSoup

    soup = BeautifulSoup(report_path.read_text(encoding="utf-8"), "html.parser")
    stat = soup.find(id="strategy-statistics")
    # The rewrite beside the original, as a word diff: the fabricated claims are insertions.
    ins = " ".join(i.get_text() for i in stat.find_all("ins"))
    assert "World Health Organization" in ins and "73%" in ins
    flags = " ".join(f.get_text(" ") for f in stat.select(".flags"))
    assert "numbers" in flags and "URLs" in flags and "quotations" in flags
    # Example answers: the target's citations are highlighted and its source marked.
    assert stat.find("mark") is not None and stat.select("span.cite.t")
    assert "your page" in stat.select_one("ol.sources").get_text()
    # A grounded strategy refuses new numbers: its failures are shown with the reason.
    grounded = soup.find(id="strategy-statistics-grounded").get_text(" ")
    assert "Failed rewrites" in grounded and "new numbers in a grounded rewrite" in grounded
    # rank rewrites nothing and says so.
    assert "rewrites nothing" in soup.find(id="strategy-rank").get_text()


def test_methodology_states_how_it_was_obtained(report_path: Path) -> None:
    from bs4 import BeautifulSoup

    from geoaudit.metrics import METRICS

    meth = BeautifulSoup(report_path.read_text(encoding="utf-8"), "html.parser").find(id="methodology")
    text = meth.get_text(" ")
    for needle in (
        "openai/fake-model",
        "citations",
        "answer-v1",
        "paired t-test (df = non-zero pairs - 1)",
        "Wilcoxon",
        "Holm",
        "family 'run'",
        "t interval, df = non-zero pairs - 1",
        "95% (1 − alpha)",
        "geoaudit 0.1.0",
        "bench.jsonl",
        "seeds 0",
        "2 sample(s)",
        "A/A control (identity",
        "model calls",
        COMMAND,
    ):
        assert needle in text, needle
    assert METRICS["pawc"].formula in text and METRICS["delta_rank"].source in text


# ----------------------------------------------------------------------------- hostile text


def test_hostile_text_is_inert(report_path: Path) -> None:
    from bs4 import BeautifulSoup

    raw = report_path.read_text(encoding="utf-8")
    soup = BeautifulSoup(raw, "html.parser")
    assert soup.find("script") is None and soup.find("img") is None and soup.find("iframe") is None
    for tag in soup.find_all(True):
        for attr, value in tag.attrs.items():
            assert not attr.lower().startswith("on"), (tag.name, attr)
            if attr in ("src", "href", "action", "xlink:href", "formaction"):
                assert str(value).startswith("#"), (tag.name, attr, value)
    # Only the SVG charts may hold svg elements; the hostile <svg onload> is text.
    assert all(svg.get("class") == ["chart"] for svg in soup.find_all("svg"))
    # The hostile strings are visible as text (escaped), not dropped.
    page_text = soup.get_text(" ")
    assert "<img src=x onerror=alert(1)>" in page_text and "</script>" in page_text
    assert "<svg onload=alert(2)>" in page_text
    csp = soup.find("meta", attrs={"http-equiv": "Content-Security-Policy"})
    assert csp["content"] == "default-src 'none'; style-src 'unsafe-inline'; img-src data:"
    assert "<script" not in raw.lower() and "http-equiv" in raw


# ----------------------------------------------------------------------------- CLI


def test_report_cli_writes_the_file_and_rejects_a_bad_run(hostile_run: Run, tmp_path: Path) -> None:
    env = {**os.environ, "GEOAUDIT_HOME": str(hostile_run.dir.parent.parent)}
    out = tmp_path / "reports" / "cli"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "geoaudit",
            "report",
            hostile_run.id[:8],
            "-o",
            str(out),
            "--n-boot",
            "200",
            "--metrics",
            "pawc,cited",
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert (out / "index.html").is_file() and str(out / "index.html") in done.stdout
    assert "<svg" in (out / "index.html").read_text()
    bad = subprocess.run(
        [sys.executable, "-m", "geoaudit", "report", "run-nope", "-o", str(tmp_path / "x")],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert bad.returncode == 2 and "Traceback" not in bad.stderr
    assert len(bad.stderr.strip().splitlines()) == 1 and "no run 'run-nope'" in bad.stderr
    assert not (tmp_path / "x").exists()


# ----------------------------------------------------------------------------- real browser


def decode_png(path: Path, max_rows: int | None = None) -> tuple[int, int, list[bytes]]:
    """(width, height, unfiltered RGB(A) rows) of an 8-bit PNG, with the stdlib only (PNG spec §9)."""
    data = path.read_bytes()
    assert data[:8] == b"\x89PNG\r\n\x1a\n", "not a PNG"
    pos, idat = 8, []
    while pos < len(data):
        (length,) = struct.unpack(">I", data[pos : pos + 4])
        kind, body = data[pos + 4 : pos + 8], data[pos + 8 : pos + 8 + length]
        pos += 12 + length
        if kind == b"IHDR":
            width, height, depth, colour = struct.unpack(">IIBB", body[:10])
        elif kind == b"IDAT":
            idat.append(body)
    assert depth == 8 and colour in (2, 6)
    bpp = 3 if colour == 2 else 4
    raw = zlib.decompress(b"".join(idat))
    stride = width * bpp
    rows: list[bytes] = []
    prev = bytearray(stride)
    for y in range(min(height, max_rows or height)):
        f = raw[y * (stride + 1)]
        line = raw[y * (stride + 1) + 1 : (y + 1) * (stride + 1)]
        cur = bytearray(stride)
        for i in range(stride):
            a = cur[i - bpp] if i >= bpp else 0
            b = prev[i]
            c = prev[i - bpp] if i >= bpp else 0
            if f == 0:
                pred = 0
            elif f == 1:
                pred = a
            elif f == 2:
                pred = b
            elif f == 3:
                pred = (a + b) >> 1
            else:
                pa, pb, pc = abs(b - c), abs(a - c), abs(a + b - 2 * c)
                pred = a if pa <= pb and pa <= pc else (b if pb <= pc else c)
            cur[i] = (line[i] + pred) & 0xFF
        rows.append(bytes(cur))
        prev = cur
    return width, height, rows


def _chromium() -> str:
    path = shutil.which("chromium") or ("/usr/bin/chromium" if Path("/usr/bin/chromium").exists() else None)
    if not path:
        pytest.skip("headless Chromium is not installed (`apt-get install chromium`; .ci/run installs it)")
    return path


def _chromium_args(tmp: Path) -> list[str]:
    return [
        _chromium(),
        "--headless",
        "--no-sandbox",
        "--disable-gpu",
        "--disable-quic",
        "--no-first-run",
        "--disable-background-networking",
        "--disable-component-update",
        "--disable-sync",
        f"--user-data-dir={tmp / 'profile'}",
        "--enable-logging=stderr",
        "--v=0",
    ]


@pytest.mark.browser
def test_report_renders_in_headless_chromium(report_path: Path, tmp_path: Path) -> None:
    url = report_path.resolve().as_uri()
    shot = tmp_path / "report.png"
    done = subprocess.run(
        _chromium_args(tmp_path) + [f"--screenshot={shot}", "--window-size=1200,2000", url],
        capture_output=True,
        text=True,
        timeout=90,
    )
    assert shot.is_file(), done.stderr[-2000:]
    for bad in ("Uncaught", "Refused to", "ERR_BLOCKED", "Failed to load"):
        assert bad not in done.stderr, done.stderr[-2000:]
    width, height, rows = decode_png(shot, max_rows=500)
    assert (width, height) == (1200, 2000)
    bpp = len(rows[0]) // width
    colours = {row[i : i + 3] for row in rows[::2] for i in range(0, len(row), bpp * 2)}
    assert len(colours) > 50, f"screenshot looks blank ({len(colours)} colours)"

    dom = subprocess.run(_chromium_args(tmp_path) + ["--dump-dom", url], capture_output=True, text=True, timeout=90)
    assert dom.returncode == 0, dom.stderr[-2000:]
    assert 'id="verdict"' in dom.stdout and "<svg" in dom.stdout
    assert "<script" not in dom.stdout.lower()
    for bad in ("Uncaught", "Refused to"):
        assert bad not in dom.stderr, dom.stderr[-2000:]


# ----------------------------------------------------------------------------- verdict wording (issue 13)


def _summary(deltas_by_strategy: dict[str, list[float]], **kw: object) -> Any:
    """summarize() of strategies whose treated value is 3 + delta per query (advantage, pawc)."""
    import math

    import pandas as pd

    from geoaudit.stats import summarize

    recs = []
    for s, deltas in deltas_by_strategy.items():
        for i, d in enumerate(deltas):
            recs.append({"item": f"q{i}", "strategy": s, "rate": 0.5, "condition": "rivals", "pawc": 3.0})
            recs.append({"item": f"q{i}", "strategy": s, "rate": 0.5, "condition": "treated", "pawc": 3.0 + d})
    recs += [
        {"item": f"q{i}", "strategy": "", "rate": math.nan, "condition": "base", "pawc": 3.0}
        for i in range(len(next(iter(deltas_by_strategy.values()))))
    ]
    return summarize(pd.DataFrame(recs), ["pawc"], comparisons=["advantage"], **kw)


def test_verdict_sentence_never_says_raises_beside_a_negative_mean() -> None:
    from geoaudit.report import _strategy_verdict

    rows = _summary({"S": [0.1] * 42 + [-2.0] * 8})
    cls, sentence = _strategy_verdict(rows, "pawc")
    assert cls == "v-mixed" and "raises" not in sentence
    assert "mixed evidence" in sentence and "the mean falls" in sentence and "Δ −0.236" in sentence


def test_no_evidence_sentence_names_the_rows_own_family_size() -> None:
    import numpy as np

    from geoaudit.report import _strategy_verdict

    d = list(np.round(np.random.default_rng(2).normal(0.25, 0.5, 30), 2))  # raw p 0.03
    rows = _summary({s: d for s in ("A", "B", "C", "D")})
    cls, sentence = _strategy_verdict(rows[rows["strategy"] == "A"], "pawc")
    assert cls == "v-none" and "after correcting for the 4 tests of its family" in sentence
    assert "has p 0.030 on its own" in sentence


def test_all_zero_deltas_read_no_change_detected() -> None:
    from geoaudit.report import _stats_table, _strategy_verdict

    rows = _summary({"S": [0.0] * 60})
    _, sentence = _strategy_verdict(rows, "pawc")
    assert "no change detected" in sentence and "insufficient" not in sentence and "60 queries" in sentence
    assert "no query changed" in _stats_table(rows, "holm")


def test_cseo_losses_read_as_losses_with_a_90_percent_interval() -> None:
    import numpy as np

    from geoaudit.report import _strategy_verdict

    rows = _summary({"S": list(np.random.default_rng(1).normal(-0.53, 0.4, 40))}, mode="cseo")
    cls, sentence = _strategy_verdict(rows, "pawc")
    assert cls == "v-worse" and "significantly lowers" in sentence
    assert "pseudo-median Δ −0.5" in sentence and "90% CI" in sentence and "1 test in its family" in sentence
    assert "(none)" not in sentence  # C-SEO mode's domain split names no group when the bench has no domains


def test_report_states_the_level_power_and_flags_small_samples(hostile_run: Run) -> None:
    from bs4 import BeautifulSoup

    from geoaudit.report import build_report

    html_text = build_report(hostile_run, alpha=0.1, power=0.9, breakdowns=False, examples=0)
    soup = BeautifulSoup(html_text, "html.parser")
    verdict = soup.find(id="verdict").get_text(" ", strip=True)
    assert "90% power" in verdict and "80%" not in verdict
    assert "90% CI" in verdict and "95% CI" not in verdict
    # 16 queries is below the size where the t interval's coverage was verified (20): marked.
    assert "Intervals marked *" in verdict and "coverage was verified" in verdict
    headers = [th.get_text() for th in soup.find(id="results").find_all("th")]
    assert "90% CI" in headers and "Δ mean" in headers and "p (t-test)" in headers
    assert any(td.get_text().endswith(" *") for td in soup.find(id="results").find_all("td"))
    assert "band: 90% CI" in soup.find(id="charts").get_text(" ")
