"""One exception hierarchy for geoaudit.

The CLI turns every ``GeoauditError`` into one readable line on stderr and an exit code
(in exactly one place, ``geoaudit.cli``); library users catch the classes below.

    GeoauditError
    ├── UserError            bad input the caller can fix (exit code 2)
    │   ├── ConfigError      a config file, env var or flag value is invalid
    │   ├── InputError       a file, URL, bench or document given as input is unusable
    │   ├── UnknownStrategyError
    │   └── UnknownModelError
    └── RunError             the work itself failed (exit code 1)
        ├── FetchError       an HTTP fetch failed after its retries
        ├── BackendError     an LLM backend failed after its retries (carries status and attempts)
        ├── StoreError       a SQLite store is unreadable or from a newer geoaudit
        └── RunBusyError     a simulation run is being written by another process
"""

from __future__ import annotations


class GeoauditError(Exception):
    """Root of every error geoaudit raises on purpose."""

    exit_code = 1

    def __init__(self, message: str, *, hint: str | None = None) -> None:
        super().__init__(message)
        self.message = message
        self.hint = hint

    def __str__(self) -> str:
        return f"{self.message} ({self.hint})" if self.hint else self.message


class UserError(GeoauditError):
    """Something the caller gave us is wrong; fixing the input fixes the run."""

    exit_code = 2


class ConfigError(UserError):
    """A configuration value (flag, ``GEOAUDIT_*`` variable or config file) is invalid."""


class InputError(UserError):
    """An input file, URL, bench or document cannot be used."""


class UnknownStrategyError(UserError):
    """A strategy name that no strategy file defines."""


class UnknownModelError(UserError):
    """A model string no backend can serve."""


class RunError(GeoauditError):
    """The work failed for a reason outside the caller's input."""


class FetchError(RunError):
    """An HTTP fetch failed after its retries."""


class BackendError(RunError):
    """An LLM call failed after its retries."""

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        attempts: int = 1,
        hint: str | None = None,
    ) -> None:
        super().__init__(message, hint=hint)
        self.status = status
        self.attempts = attempts


class StoreError(RunError):
    """A SQLite store cannot be opened or is from a newer schema."""


class RunBusyError(RunError):
    """Another process holds the run's lock (the same simulation is already running)."""
