"""A listening socket in front of the engine's that forwards every byte and notes each request line, so a
test sees exactly what its own command asked the engine for (through DOCKER_HOST), whatever else runs on
the same engine meanwhile."""

from __future__ import annotations

import os
import re
import socket
import threading
from pathlib import Path

_REQUEST = re.compile(rb"^(GET|HEAD|POST|PUT|DELETE) (\S+) HTTP/1\.[01]\r?$")
# Requests that leave something in the engine: a container, an image or tag, a network, a volume.
_MAKING = re.compile(r"^POST \S*/(containers/create|build|commit|images/create|images/load|images/[^?]+/tag|"
                     r"networks/create|volumes/create)(\?|$)")


class EngineTap:
    def __init__(self, folder: Path):
        self.path = folder / "engine.sock"
        self.engine = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock").removeprefix("unix://")
        self.requests: list[str] = []
        self._server = socket.socket(socket.AF_UNIX)

    @property
    def docker_host(self) -> str:
        return f"unix://{self.path}"

    def making(self) -> list[str]:
        """The requests that made something in the engine."""
        return [r for r in self.requests if _MAKING.match(r)]

    def removed_containers(self) -> list[str]:
        """The ids (or names) of the containers the command asked the engine to remove."""
        return [r.split("/containers/")[1].split("?")[0] for r in self.requests
                if r.startswith("DELETE ") and "/containers/" in r]

    def __enter__(self) -> EngineTap:
        self._server.bind(str(self.path))
        self._server.listen()
        threading.Thread(target=self._accept, daemon=True).start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.close()

    def _accept(self) -> None:
        while True:
            try:
                client, _ = self._server.accept()
            except OSError:
                return  # closed
            engine = socket.socket(socket.AF_UNIX)
            engine.connect(self.engine)
            threading.Thread(target=self._pump, args=(client, engine, True), daemon=True).start()
            threading.Thread(target=self._pump, args=(engine, client, False), daemon=True).start()

    def _pump(self, source: socket.socket, sink: socket.socket, noting: bool) -> None:
        pending = b""
        try:
            while data := source.recv(65536):
                sink.sendall(data)
                if noting:
                    *lines, pending = (pending + data).split(b"\n")
                    pending = pending[-4096:]  # a body's long line is not a request line
                    self.requests += [m[1].decode() + " " + m[2].decode() for m in map(_REQUEST.match, lines) if m]
        except OSError:
            pass
        finally:
            for end in (source, sink):
                try:
                    end.shutdown(socket.SHUT_RDWR)
                except OSError:
                    pass
