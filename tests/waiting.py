"""Waiting in tests is a deadline, never a fixed sleep: poll until the condition holds or the time is up,
so a test is as fast as the machine allows and only fails when the thing really did not happen."""

from __future__ import annotations

import time
from typing import Callable, TypeVar

T = TypeVar("T")


def until(condition: Callable[[], T], timeout_s: float, what: str, every_s: float = 0.1) -> T:
    """The condition's first true value; AssertionError naming `what` (and the last value) past the deadline."""
    deadline = time.monotonic() + timeout_s
    while True:
        value = condition()
        if value:
            return value
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout_s:g} s (last: {value!r})")
        time.sleep(every_s)
