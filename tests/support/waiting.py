"""Waiting on conditions with a deadline and a poll — never a fixed sleep."""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TypeVar

T = TypeVar("T")


class WaitTimeoutError(AssertionError):
    pass


class StopWaitingError(AssertionError):
    """Raised by a probe when waiting longer cannot help (say, the process exited)."""


def wait_until(
    probe: Callable[[], T | None],
    *,
    timeout: float = 60.0,
    interval: float = 0.25,
    what: str = "condition",
) -> T:
    """Call ``probe`` until it returns something truthy and return that.

    Exceptions from the probe count as "not yet" (an object may not exist yet), except
    StopWaitingError; the last one, or the last falsy value, is in the failure message.
    """
    deadline = time.monotonic() + timeout
    last: object = None
    while True:
        try:
            result = probe()
            if result:
                return result
            last = result
        except StopWaitingError:
            raise
        except Exception as error:
            last = error
        if time.monotonic() >= deadline:
            raise WaitTimeoutError(f"timed out after {timeout:.0f}s waiting for {what}; last: {last!r}")
        time.sleep(interval)


def holds_for(check: Callable[[], bool], *, seconds: float, what: str, interval: float = 0.5) -> None:
    """Assert ``check()`` stays true for a bounded window, polling it.

    How a test sees that nothing else happens (no retrain loop, no extra version): the
    window is the claim's scope, not a wait for something to become true.
    """
    deadline = time.monotonic() + seconds
    while True:
        assert check(), f"{what} stopped holding"
        if time.monotonic() >= deadline:
            return
        time.sleep(interval)
