"""Progress events the library emits during long work; the command line decides how to show them."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable


@dataclass(frozen=True)
class Event:
    kind: str          # "phase", "step", "log", "download", "done"
    text: str
    current: int = 0   # bytes or step number
    total: int = 0


Listener = Callable[[Event], None]


def ignore(_: Event) -> None:
    """The listener for callers that want no progress."""
