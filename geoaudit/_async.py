"""Running geoaudit's async cores from synchronous code (scripts, the CLI, Jupyter)."""

from __future__ import annotations

import asyncio
import threading
from collections.abc import Awaitable
from typing import Any


def run_sync(coro: Awaitable[Any]) -> Any:
    """Run a coroutine to completion from sync code, also when a loop is already running (Jupyter).

    Inside a running loop the coroutine runs on a fresh loop in a helper thread; its exception, if
    any, is re-raised in the caller's thread.
    """
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        return asyncio.run(coro)  # type: ignore[arg-type]
    result: dict[str, Any] = {}

    def target() -> None:
        try:
            result["value"] = asyncio.run(coro)  # type: ignore[arg-type]
        except BaseException as exc:  # re-raised in the caller's thread
            result["error"] = exc

    t = threading.Thread(target=target, name="geoaudit-run-sync")
    t.start()
    t.join()
    if "error" in result:
        raise result["error"]
    return result["value"]
