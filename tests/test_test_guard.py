"""The test-suite guard: a test without the ``embedded`` marker cannot load the real model."""

from __future__ import annotations

import pytest

from geoaudit import embedded


def test_an_unmarked_test_that_loads_the_embedded_model_fails() -> None:
    with pytest.raises(RuntimeError, match="embedded"):
        embedded.load("smollm2")
