"""Waiting in tests: poll a condition until it holds, never sleep a fixed time.

The machine running the tests is shared and often busy, so a wait is bounded by a generous
timeout rather than tuned to how fast things usually are; a wait that holds early costs
nothing. A condition may raise to stop waiting at once (a process it waits on has exited).
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")

TIMEOUT = 30.0
INTERVAL = 0.05


def wait_until(
    condition: Callable[[], T | None],
    *,
    timeout: float = TIMEOUT,
    interval: float = INTERVAL,
    what: str = "the condition",
    details: Callable[[], str] | None = None,
) -> T:
    """Call `condition` until it returns something truthy, and return that value.

    After `timeout` seconds fail with an AssertionError naming `what` was awaited and the
    last value seen, followed by `details()` (a log tail, say) when given."""
    deadline = time.monotonic() + timeout
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() >= deadline:
            message = f"timed out after {timeout:g}s waiting for {what}; last value: {value!r}"
            if details is not None:
                message += "\n" + details()
            raise AssertionError(message)
        time.sleep(interval)
