"""The host-side wheel cache, keyed by sha256, and a loopback server the image build installs from.

Wheels are downloaded once on the host (through any CA bundle the host needs) and verified; the
builder stage installs them with --no-index from this server, so it never talks to the index and
no CA bundle ever enters an image.
"""

from __future__ import annotations

import hashlib
import html
import os
import threading
from dataclasses import dataclass
from functools import partial
from http.server import SimpleHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

from urllib3.exceptions import HTTPError

from kiln.arguments import port
from kiln.data.lock import Lock, Package
from kiln.errors import KilnError
from kiln.events import Event, Listener, ignore
from kiln.lock.index import open_url
from kiln.paths import new_cache_folder

CHUNK = 1 << 20
# The builder's RUN sees the server's URL as a build argument, and a changed argument misses the
# layer cache: a fixed port keeps the heavy layer cached across builds (a random one if it is taken).
DEFAULT_PORT = 47123


def server_port() -> int:
    """KILN_WHEEL_PORT when set (checked as any port a user gives), else DEFAULT_PORT."""
    value = os.environ.get("KILN_WHEEL_PORT")
    return port(value, "environment KILN_WHEEL_PORT") if value else DEFAULT_PORT


@dataclass(frozen=True)
class CacheReport:
    downloaded: int
    downloaded_bytes: int
    reused: int


def default_cache() -> Path:
    value = os.environ.get("KILN_WHEEL_CACHE")
    return new_cache_folder(value, "environment KILN_WHEEL_CACHE") if value else \
        Path.home() / ".cache" / "kiln" / "wheels"


def wheel_path(cache: Path, pkg: Package) -> Path:
    return cache / pkg.sha256 / pkg.wheel


def ensure_wheels(lock: Lock, cache: Path, on_event: Listener = ignore, ca_bundle: Path | None = None) -> CacheReport:
    """Every locked wheel in the cache, downloaded (trusting ca_bundle too) and verified where missing."""
    downloaded = size = reused = 0
    for pkg in lock.packages.values():
        if wheel_path(cache, pkg).is_file():
            reused += 1
            continue
        size += _download(pkg, wheel_path(cache, pkg), on_event, f"versions.lock {lock.table('packages.' + pkg.name)}",
                          ca_bundle)
        downloaded += 1
    return CacheReport(downloaded, size, reused)


def _download(pkg: Package, dest: Path, on_event: Listener, where: str, ca_bundle: Path | None) -> int:
    dest.parent.mkdir(parents=True, exist_ok=True)
    part = dest.with_name(dest.name + ".part")
    digest, done = hashlib.sha256(), 0
    try:
        response = open_url(pkg.url, stream=True, ca_bundle=ca_bundle)
        try:
            total = int(response.headers.get("Content-Length") or 0)
            with open(part, "wb") as out:
                for chunk in response.stream(CHUNK):
                    out.write(chunk)
                    digest.update(chunk)
                    done += len(chunk)
                    on_event(Event("download", pkg.wheel, done, total))
        finally:
            response.release_conn()
        _verify(pkg, digest.hexdigest(), where)
        part.rename(dest)
    except (OSError, HTTPError) as exc:
        raise KilnError(f"downloading {pkg.wheel} failed ({exc})", f"wheel cache {dest.parent.parent}",
                        "check free space and the connection, then run again") from None
    finally:
        part.unlink(missing_ok=True)
        _drop_empty(dest.parent)
    return done


def _verify(pkg: Package, got: str, where: str) -> None:
    if got != pkg.sha256:
        raise KilnError(f"hash mismatch for {pkg.name} {pkg.version}: the index served sha256 {got[:16]}..., "
                        f"the lock pins {pkg.sha256[:16]}...", where,
                        "do not build; re-check the package index (or re-lock if the lock is wrong)")


def _drop_empty(folder: Path) -> None:
    try:
        folder.rmdir()
    except OSError:
        pass


class WheelServer:
    """Serves the locked wheels as a flat find-links page on 127.0.0.1 while a build runs."""

    def __init__(self, lock: Lock, cache: Path):
        links = "".join(f'<a href="{p.sha256}/{html.escape(p.wheel)}#sha256={p.sha256}">{html.escape(p.wheel)}</a>\n'
                        for p in lock.packages.values())
        page = f"<!DOCTYPE html><html><body>\n{links}</body></html>\n".encode()
        handler = partial(_Handler, page, directory=str(cache))
        try:
            self._server = ThreadingHTTPServer(("127.0.0.1", server_port()), handler)
        except OSError:
            self._server = ThreadingHTTPServer(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self._server.server_address[1]}/"

    def __enter__(self) -> "WheelServer":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()


class _Handler(SimpleHTTPRequestHandler):
    def __init__(self, page: bytes, *args, **kwargs):
        self._page = page
        super().__init__(*args, **kwargs)

    def do_GET(self) -> None:
        if self.path in ("/", "/index.html"):
            self.send_response(200)
            self.send_header("Content-Type", "text/html")
            self.send_header("Content-Length", str(len(self._page)))
            self.end_headers()
            self.wfile.write(self._page)
            return
        super().do_GET()

    def log_message(self, *args) -> None:
        """Quiet: the build's own progress is what the user follows."""
