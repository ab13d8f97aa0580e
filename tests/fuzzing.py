"""One way to run a hypothesis property: a short round in the suite, or fresh rounds for
about FRAMEBUS_FUZZ_SECONDS seconds when that is set (the test's timeout lifted to match)."""

from __future__ import annotations

import os
import time
from collections.abc import Callable

import pytest
from hypothesis import HealthCheck, settings

__all__ = ["FUZZ_SECONDS", "fuzz"]

FUZZ_SECONDS = float(os.environ.get("FRAMEBUS_FUZZ_SECONDS") or 0)


def fuzz(max_examples: int) -> Callable[[Callable[..., None]], Callable[[], None]]:
    """Put under ``@given``: ``max_examples`` per round, no example database in the tree."""

    def decorate(test: Callable[..., None]) -> Callable[[], None]:
        quick: Callable[[], None] = settings(
            max_examples=max_examples,
            deadline=None,
            database=None,  # writes nothing into the work tree
            suppress_health_check=[
                HealthCheck.too_slow,
                HealthCheck.data_too_large,
                HealthCheck.function_scoped_fixture,
            ],
        )(test)
        if not FUZZ_SECONDS:
            return quick

        def run() -> None:
            end = time.monotonic() + FUZZ_SECONDS
            quick()
            while time.monotonic() < end:
                quick()

        run.__doc__ = test.__doc__
        timed: Callable[[], None] = pytest.mark.timeout(FUZZ_SECONDS * 2 + 120)(run)
        return timed

    return decorate
