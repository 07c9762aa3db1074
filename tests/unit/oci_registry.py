"""A registry stand-in for tests: the Registry HTTP API v2 on 127.0.0.1 with manifests and blobs kept in
memory (what kiln's client and a push need: HEAD/GET manifests and blobs, blob uploads, manifest PUTs),
a record of every request, and two ways to misbehave on demand: keep something else than the manifest
a client PUT (`keep`), or have another client change a tag (`put_manifest`). An optional token service
(Bearer auth) issues one token, and blob uploads can be sent to another host name for the same server
(as registries send them to a storage host)."""

from __future__ import annotations

import hashlib
import json
import re
import threading
import uuid
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Callable
from urllib.parse import parse_qs, urlsplit

MANIFEST = re.compile(r"^/v2/(?P<repo>.+)/manifests/(?P<ref>[^/]+)$")
BLOB = re.compile(r"^/v2/(?P<repo>.+)/blobs/(?P<digest>sha256:[0-9a-f]{64})$")
UPLOADS = re.compile(r"^/v2/(?P<repo>.+)/blobs/uploads/(?P<id>[^/]*)$")
TOKEN = "issued-token-0123"


@dataclass(frozen=True)
class Seen:
    method: str
    host: str           # the Host header: which name the client used
    path: str
    authorization: str


def digest_of(data: bytes) -> str:
    return "sha256:" + hashlib.sha256(data).hexdigest()


class OciRegistry:
    def __init__(self, token_auth: bool = False, upload_name: str = ""):
        self.manifests: dict[tuple[str, str], tuple[str, bytes]] = {}   # (repo, tag or digest) -> (type, body)
        self.blobs: dict[str, bytes] = {}
        self.seen: list[Seen] = []
        self.keep: Callable[[str, str, bytes], bytes] = lambda repo, ref, body: body
        self.token_auth = token_auth
        self.lock = threading.Lock()
        self._server = ThreadingHTTPServer(("127.0.0.1", 0), _handler(self))
        self._server.daemon_threads = True
        self.port = self._server.server_address[1]
        self.host = f"127.0.0.1:{self.port}"
        self.upload_host = f"{upload_name}:{self.port}" if upload_name else self.host  # where uploads are sent
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)

    def __enter__(self) -> "OciRegistry":
        self._thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._server.shutdown()
        self._server.server_close()

    def put_manifest(self, repo: str, ref: str, body: bytes, media_type: str) -> str:
        """Store a manifest under ref and its digest, as a PUT does (through `keep`)."""
        body = self.keep(repo, ref, body)
        digest = digest_of(body)
        with self.lock:
            self.manifests[(repo, ref)] = self.manifests[(repo, digest)] = (media_type, body)
        return digest

    def tags(self, repo: str) -> set[str]:
        return {ref for r, ref in self.manifests if r == repo and not ref.startswith("sha256:")}


def _handler(registry: OciRegistry):
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def _route(self) -> None:
            url = urlsplit(self.path)
            body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
            auth = self.headers.get("Authorization") or ""
            with registry.lock:
                registry.seen.append(Seen(self.command, self.headers.get("Host", ""), url.path, auth))
            if url.path == "/token":
                return self._send(200, json.dumps({"token": TOKEN}).encode(), {"Content-Type": "application/json"})
            upload = UPLOADS.match(url.path)
            if upload and upload["id"] and self.command == "PUT":  # where the upload Location sent the client
                registry.blobs[parse_qs(url.query)["digest"][0]] = body
                return self._send(201, b"")
            if registry.token_auth and auth != f"Bearer {TOKEN}":
                challenge = f'Bearer realm="http://{registry.host}/token",service="stand-in"'
                return self._send(401, b'{"errors": [{"code": "UNAUTHORIZED"}]}', {"WWW-Authenticate": challenge})
            if upload and self.command == "POST":
                location = f"http://{registry.upload_host}/v2/{upload['repo']}/blobs/uploads/{uuid.uuid4().hex}"
                return self._send(202, b"", {"Location": location})
            manifest, blob = MANIFEST.match(url.path), BLOB.match(url.path)
            if manifest and self.command == "PUT":
                digest = registry.put_manifest(manifest["repo"], manifest["ref"], body, self.headers["Content-Type"])
                return self._send(201, b"", {"Docker-Content-Digest": digest})
            if manifest and (manifest["repo"], manifest["ref"]) in registry.manifests:
                media_type, data = registry.manifests[(manifest["repo"], manifest["ref"])]
                return self._send(200, data, {"Content-Type": media_type, "Docker-Content-Digest": digest_of(data)})
            if blob and blob["digest"] in registry.blobs:
                return self._send(200, registry.blobs[blob["digest"]], {"Content-Type": "application/octet-stream"})
            self._send(404, b'{"errors": [{"code": "NOT FOUND"}]}')

        def _send(self, status: int, body: bytes, headers: dict[str, str] | None = None) -> None:
            self.send_response(status)
            for name, value in {"Content-Length": str(len(body)), **(headers or {})}.items():
                self.send_header(name, value)
            self.end_headers()
            if self.command != "HEAD":
                self.wfile.write(body)

        do_GET = do_HEAD = do_PUT = do_POST = _route

        def log_message(self, *args) -> None:
            """Quiet: tests read registry.seen."""

    return Handler
