"""Stopping the download threads: Ctrl-C in the main thread sets one event, each worker checks it
between chunks and leaves by raising Stopped (its partial download stays for a later resume)."""

from __future__ import annotations

import threading


class Stopped(Exception):
    """A worker left because the fetch was interrupted."""


def check(stop: threading.Event) -> None:
    if stop.is_set():
        raise Stopped()
