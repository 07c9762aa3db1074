"""A model file server for tests: real HTTP on 127.0.0.1 serving generated files under Hugging Face
style resolve paths, with Range support, a record of every request, and faults on demand (a cut
connection, corrupted content, a status answered once, redirects, bodies held until released, no
length, a Range answered from the start)."""

from __future__ import annotations

import re
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

RANGE = re.compile(r"^bytes=(\d+)-$")
SEND_CHUNK = 64 * 1024


@dataclass
class Seen:
    path: str
    headers: dict[str, str]


@dataclass
class Faults:
    cut_once: dict[str, int] = field(default_factory=dict)      # path -> close the connection after N body bytes
    corrupt: set[str] = field(default_factory=set)              # path -> one byte flipped
    status_once: dict[str, int] = field(default_factory=dict)   # path -> answer this status once
    redirect: dict[str, str] = field(default_factory=dict)      # path -> Location
    no_length: set[str] = field(default_factory=set)            # path -> no Content-Length: the body ends at close
    range_from_start_once: set[str] = field(default_factory=set)  # path -> one Range answered 206 from byte 0
    hold_after: int | None = None                               # hold every body after N bytes ...
    release: threading.Event = field(default_factory=threading.Event)  # ... until this is set
    pace_bytes_s: float | None = None                           # every body sent no faster than this (a slow link)


class ModelServer:
    def __init__(self, shown_host: str = "127.0.0.1"):
        self.files: dict[str, bytes] = {}
        self.seen: list[Seen] = []
        self.sent: dict[str, int] = {}
        self.faults = Faults()
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.base = f"http://{shown_host}:{self._server.server_address[1]}"
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "ModelServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self.faults.release.set()
        self._server.shutdown()
        self._server.server_close()

    def content(self, path: str) -> bytes:
        data = self.files[path]
        if path in self.faults.corrupt:
            middle = len(data) // 2
            data = data[:middle] + bytes([data[middle] ^ 0xFF]) + data[middle + 1:]
        return data

    def gets(self, path: str) -> list[Seen]:
        with self.lock:
            return [s for s in self.seen if s.path == path]


def _handler(server: ModelServer):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            with server.lock:
                server.seen.append(Seen(self.path, {k.lower(): v for k, v in self.headers.items()}))
                status = server.faults.status_once.pop(self.path, None)
            faults = server.faults
            if status:
                self._empty(status)
            elif self.path in faults.redirect:
                self._empty(302, {"Location": faults.redirect[self.path]})
            elif self.path not in server.files:
                self._empty(404, {"X-Error-Code": "EntryNotFound", "X-Error-Message": "Entry not found"})
            else:
                self._file(server.content(self.path))

        def _empty(self, status: int, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for key, value in (headers or {}).items():
                self.send_header(key, value)
            self.send_header("Content-Length", "0")
            self.end_headers()

        def _file(self, data: bytes) -> None:
            match = RANGE.match(self.headers.get("Range") or "")
            start = int(match[1]) if match else 0
            with server.lock:
                if match and self.path in server.faults.range_from_start_once:
                    server.faults.range_from_start_once.discard(self.path)
                    start = 0
            if start >= len(data):
                self._empty(416, {"Content-Range": f"bytes */{len(data)}"})
                return
            self.send_response(206 if match else 200)
            if match:
                self.send_header("Content-Range", f"bytes {start}-{len(data) - 1}/{len(data)}")
            if self.path in server.faults.no_length:
                self.close_connection = True
            else:
                self.send_header("Content-Length", str(len(data) - start))
            self.end_headers()
            self._body(data, start)

        def _body(self, data: bytes, start: int) -> None:
            faults, offset, held, began = server.faults, start, False, time.monotonic()
            with server.lock:
                cut = faults.cut_once.pop(self.path, None)
            while offset < len(data):
                if faults.hold_after is not None and not held and offset - start >= faults.hold_after:
                    faults.release.wait(60)
                    held = True
                end = min(offset + SEND_CHUNK, len(data))
                if cut is not None and end - start > cut:
                    end = start + cut
                if faults.pace_bytes_s:   # this chunk leaves no sooner than the link would have carried it
                    time.sleep(max(0.0, (end - start) / faults.pace_bytes_s - (time.monotonic() - began)))
                try:
                    self.wfile.write(data[offset:end])
                except OSError:
                    return
                with server.lock:
                    server.sent[self.path] = server.sent.get(self.path, 0) + end - offset
                offset = end
                if cut is not None and offset - start >= cut:
                    self.close_connection = True
                    return

        def log_message(self, *args) -> None:
            """Quiet: tests read server.seen."""

    return Handler
