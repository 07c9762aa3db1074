"""Counting finished prompts from /history without reading all of it: ask for the newest one; when it is new,
double the window until it reaches a prompt already counted (or the cap), then count the new ones."""

from __future__ import annotations

import http.client
import threading
import time
from collections import OrderedDict
from typing import Any, Callable, Dict, List, Optional, Tuple

from . import comfyui

SEEN_MAX = 20000  # ComfyUI keeps 10000 finished prompts (MAXIMUM_HISTORY_SIZE); remember twice that


class Watch:
    def __init__(self, url: str, count: Callable[[Dict[str, Any]], None], window_max: int):
        self.url, self.count, self.window_max = url, count, window_max
        self.started_ms = time.time() * 1000   # ComfyUI's timestamps are wall-clock milliseconds
        self.seen: "OrderedDict[str, None]" = OrderedDict()
        self.started = False
        self.answered_at: Optional[float] = None   # monotonic time ComfyUI last answered a poll

    def poll(self) -> int:
        """Count what finished since the last poll; returns how many. What had finished before the exporter
        started (the warm-up's prompts, or a restarted exporter's past) is not counted: at the first poll, only
        prompts whose end ComfyUI stamped after the exporter's start are."""
        new = self._new()
        self.answered_at = time.monotonic()
        if not self.started:
            self.started = True
            self._remember(new)
            new = [(pid, entry) for pid, entry in new if self._ended_ms(entry) >= self.started_ms]
        for _, entry in new:
            self.count(entry)
        self._remember(new)
        return len(new)

    @staticmethod
    def _ended_ms(entry: Dict[str, Any]) -> float:
        stamps = [data.get("timestamp") for _, data in (entry.get("status") or {}).get("messages") or []
                  if isinstance(data, dict) and isinstance(data.get("timestamp"), (int, float))]
        return max(stamps) if stamps else -1.0

    def silent_for(self) -> Optional[float]:
        """Seconds since ComfyUI last answered (None: it never has)."""
        return None if self.answered_at is None else time.monotonic() - self.answered_at

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
            except (OSError, http.client.HTTPException, ValueError, KeyError, TypeError):
                pass  # ComfyUI restarting, not up yet or cut off mid-answer: kiln_comfyui_up says so at the next scrape
            stop.wait(poll_s)
