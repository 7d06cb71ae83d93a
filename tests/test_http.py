"""The one Retry-After parser the crawler and the LLM gateway share."""

from __future__ import annotations

from datetime import UTC, datetime
from types import SimpleNamespace

import pytest

from geoaudit._http import RETRY_AFTER_CEILING, retry_after

NOW = datetime(2025, 1, 1, 12, 0, 0, tzinfo=UTC)


@pytest.mark.parametrize(
    ("value", "seconds"),
    [
        ("120", 120.0),
        (" 7 ", 7.0),
        ("1.5", 1.5),
        ("Wed, 01 Jan 2025 12:00:30 GMT", 30.0),
        ("Tue, 31 Dec 2024 12:00:00 GMT", 0.0),  # already past: go now
        ("99999999999", RETRY_AFTER_CEILING),
        ("Fri, 01 Jan 2100 00:00:00 GMT", RETRY_AFTER_CEILING),
    ],
)
def test_delta_seconds_and_http_dates(value: str, seconds: float) -> None:
    assert retry_after(value, now=NOW) == seconds


@pytest.mark.parametrize(
    "value", [None, "", "nan", "NaN", "inf", "-3", "+5", "1e400", "1_0", "soon", "Mon, 99 Foo 2015", "9" * 100]
)
def test_unusable_values_give_none(value: str | None) -> None:
    assert retry_after(value, now=NOW) is None


def test_llm_gateway_reads_http_dates_too() -> None:
    # Before the shared helper the gateway only understood delta-seconds and dropped a date.
    from geoaudit.llm import _retry_after

    exc = SimpleNamespace(response=SimpleNamespace(headers={"retry-after": "Fri, 01 Jan 2100 00:00:00 GMT"}))
    assert _retry_after(exc) == RETRY_AFTER_CEILING
    nan = SimpleNamespace(response=SimpleNamespace(headers={"retry-after": "nan"}))
    assert _retry_after(nan) is None
