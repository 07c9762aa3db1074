"""The exporter's HTTP port: /metrics (Prometheus text format) and /ready, which the balancer's health check
and Kubernetes' readiness probe ask: 200 only once the warm-up is done, while ComfyUI answers and no drain
has begun; otherwise 503 with the reason. /ready answers at once, from what the exporter already knows (the
marker files, and when ComfyUI last answered its poll): a server busy with a prompt is slow to answer, and a
probe that waits on it would time out and take a working server out of rotation."""

from __future__ import annotations

from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable, Optional

from prometheus_client import CONTENT_TYPE_LATEST, CollectorRegistry, generate_latest

from .state import Markers


def readiness(markers: Markers, silent_for: Callable[[], Optional[float]], stale_s: float) -> str:
    """'' when ready, else why not."""
    why = markers.not_ready_because()
    if why:
        return why
    silent = silent_for()
    if silent is None:
        return "ComfyUI has not answered yet"
    if silent > stale_s:
        return f"ComfyUI has not answered for {silent:.0f} s"
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
