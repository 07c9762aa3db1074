"""The exporter's HTTP port: /metrics (Prometheus text format) and /ready, which the balancer's health check
and Kubernetes' readiness probe ask: 200 only once the warm-up is done, while ComfyUI answers and no drain
has begun; otherwise 503 with the reason."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from . import comfyui
from .state import Markers


def readiness(url: str, markers: Markers) -> str:
    """'' when ready, else why not."""
    why = markers.not_ready_because()
    if why:
        return why
    try:
        comfyui.queue_length(url, timeout=1.0)
    except (OSError, ValueError, KeyError, TypeError) as exc:
        return f"ComfyUI does not answer ({type(exc).__name__})"
    return ""


def serve(host: str, port: int, registry: CollectorRegistry, ready: Callable[[], str]) -> ThreadingHTTPServer:
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            path = self.path.split("?", 1)[0]
            if path == "/metrics":
                self._send(200, generate_latest(registry), CONTENT_TYPE_LATEST)
            elif path == "/ready":
                why = ready()
                self._send(503 if why else 200, ((why or "ready") + "\n").encode(), "text/plain; charset=utf-8")
            else:
                self._send(404, b"not found: /metrics or /ready\n", "text/plain; charset=utf-8")

        def _send(self, code: int, body: bytes, kind: str) -> None:
            self.send_response(code)
            self.send_header("Content-Type", kind)
            self.send_header("Content-Length", str(len(body)))
            self.end_headers()
            self.wfile.write(body)

        def log_message(self, fmt, *args) -> None:  # probes every second: no access log
            pass

    server = ThreadingHTTPServer((host, port), Handler)
    server.daemon_threads = True
    return server
