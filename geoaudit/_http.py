"""Small HTTP helpers shared by the crawler and the LLM gateway (no geoaudit imports: a leaf module)."""

from __future__ import annotations

import email.utils
import re
from datetime import UTC, datetime

#: A Retry-After beyond this (a day) is treated as this: callers compare it with their own cap,
#: and an absurd value must not overflow a sleep or a timestamp.
RETRY_AFTER_CEILING = 86_400.0
# Digits only (float() would also take "nan", "inf", "-3", "1_0"); at most 20 digits before the point.
_DELTA_RE = re.compile(r"[0-9]{1,20}(?:\.[0-9]{1,9})?")


def retry_after(value: object, *, now: datetime | None = None) -> float | None:
    """Seconds to wait from a ``Retry-After`` header value (RFC 9110 §10.2.3), or None when unusable.

    Both forms are read: delta-seconds (``"120"``; a decimal such as ``"1.5"`` is accepted too, as
    some servers send one) and an HTTP-date (``"Wed, 21 Oct 2015 07:28:00 GMT"``, seconds from
    ``now``, 0 when already past). Anything else (negative, NaN, ``inf``, garbage) gives None (the caller falls
    back to its own backoff); values above :data:`RETRY_AFTER_CEILING` are clamped to it.
    """
    if value is None:
        return None
    text = str(value).strip()
    if not text or len(text) > 64:
        return None
    if _DELTA_RE.fullmatch(text):
        return min(float(text), RETRY_AFTER_CEILING)
    try:
        when = email.utils.parsedate_to_datetime(text)
    except (TypeError, ValueError, IndexError, OverflowError):
        return None
    if when.tzinfo is None:
        when = when.replace(tzinfo=UTC)
    delta = (when - (now or datetime.now(UTC))).total_seconds()
    return min(max(0.0, delta), RETRY_AFTER_CEILING)


__all__ = ["RETRY_AFTER_CEILING", "retry_after"]
