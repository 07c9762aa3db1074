"""Counting finished prompts from /history without reading all of it: ask for the newest one; when it is new,
double the window until it reaches a prompt already counted (or the cap), then count the new ones."""

from __future__ import annotations

import threading
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Tuple

from . import comfyui

SEEN_MAX = 20000  # ComfyUI keeps 10000 finished prompts (MAXIMUM_HISTORY_SIZE); remember twice that


class Watch:
    def __init__(self, url: str, count: Callable[[Dict[str, Any]], None], window_max: int):
        self.url, self.count, self.window_max = url, count, window_max
        self.seen: "OrderedDict[str, None]" = OrderedDict()
        self.started = False

    def poll(self) -> int:
        """Count what finished since the last poll; returns how many. The first successful poll only takes note
        of what is there (prompts finished before the exporter started, such as the warm-up's)."""
        new = self._new()
        if not self.started:
            self.started = True
            self._remember(new)
            return 0
        for _, entry in new:
            self.count(entry)
        self._remember(new)
        return len(new)

    def _new(self) -> List[Tuple[str, Dict[str, Any]]]:
        window = 1
        while True:
            entries = comfyui.newest(self.url, window)
            fresh = [(pid, entry) for pid, entry in entries if pid not in self.seen]
            if len(fresh) < len(entries) or len(entries) < window or window >= self.window_max:
                return fresh
            window = min(window * 2, self.window_max)

    def _remember(self, entries) -> None:
        for pid, _ in entries:
            self.seen[pid] = None
        while len(self.seen) > SEEN_MAX:
            self.seen.popitem(last=False)

    def run(self, poll_s: float, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                self.poll()
            except (OSError, ValueError, KeyError, TypeError):
                pass  # ComfyUI restarting or not up yet: kiln_comfyui_up says so at the next scrape
            stop.wait(poll_s)
