"""HAProxy's agent check (configuration manual, "agent-check"): the balancer connects, reads one line and
sets the server's weight from it. The weight falls as ComfyUI's queue grows, so new prompts go mostly to the
least busy servers; a draining server answers 0 % (HAProxy's DRAIN: no new prompts, while requests that
persistence sends to it, the follow-ups of its prompts, still reach it)."""

from __future__ import annotations

import socketserver
from typing import Callable

from . import comfyui
from .state import Markers


def weight(remaining: int, exponent: float) -> int:
    return max(1, round(100 / (1 + max(0, remaining)) ** exponent))


def reply(url: str, markers: Markers, exponent: float) -> str:
    """The agent's line: a weight in percent; empty (nothing changed) when ComfyUI does not answer, as the
    health check already takes a server out whose ComfyUI is gone."""
    if markers.draining():
        return "0%\n"
    try:
        return f"{weight(comfyui.queue_length(url, timeout=0.5), exponent)}%\n"
    except (OSError, ValueError, KeyError, TypeError):
        return "\n"


def serve(host: str, port: int, answer: Callable[[], str]) -> socketserver.ThreadingTCPServer:
    class Handler(socketserver.BaseRequestHandler):
        def handle(self) -> None:
            try:
                self.request.sendall(answer().encode("ascii"))
            except OSError:
                pass

    socketserver.ThreadingTCPServer.allow_reuse_address = True
    server = socketserver.ThreadingTCPServer((host, port), Handler)
    server.daemon_threads = True
    return server
