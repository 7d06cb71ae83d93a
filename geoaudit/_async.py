"""Running geoaudit's async cores from synchronous code (scripts, the CLI, Jupyter)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Coroutine
from typing import Any, TypeVar

T = TypeVar("T")


def run_sync(coro: Coroutine[Any, Any, T]) -> T:
    """Run a coroutine to completion from sync code, also when a loop is already running (Jupyter).

    Inside a running loop the coroutine runs on a fresh loop in a helper thread; its exception, if
    any, is re-raised in the caller's thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)
    values: list[T] = []
    errors: list[BaseException] = []

    def target() -> None:
        try:
            values.append(asyncio.run(coro))
        except BaseException as exc:  # re-raised in the caller's thread
            errors.append(exc)

    t = threading.Thread(target=target, name="geoaudit-run-sync")
    t.start()
    t.join()
    if errors:
        raise errors[0]
    return values[0]
