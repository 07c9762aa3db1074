"""kiln's Registry API v2 client against answers the real docker-registry never gives (no digest header,
manifests that are not objects, bodies far over any limit, token services that give nothing): a stand-in
HTTP server on 127.0.0.1 serving exactly those. The well-behaved paths run against the real registry in
tests/engine/test_publish.py."""

import hashlib
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import pytest

from kiln.errors import KilnError
from kiln.publish.registry import Credentials, Registry

MANIFEST = b'{"schemaVersion": 2, "layers": []}'
ENDLESS = object()  # a body that never ends: only a client that stops at its limit returns


class Routes(dict):
    """path (without query) -> (status, headers, body)"""


def _server(routes: Routes):
    class Handler(BaseHTTPRequestHandler):
        def _answer(self, send_body: bool) -> None:
            status, headers, body = routes.get(self.path.split("?")[0], (404, {}, b"{}"))
            endless = body is ENDLESS
            self.send_response(status)
            for name, value in {"Content-Length": str(1 << 40 if endless else len(body)), **headers}.items():
                self.send_header(name, value)
            self.end_headers()
            try:
                while send_body:
                    self.wfile.write(b"x" * (64 << 10) if endless else body)
                    send_body = endless
            except (BrokenPipeError, ConnectionResetError):
                pass  # the client stopped reading, as it should past its limit

        def do_GET(self):
            self._answer(True)

        def do_HEAD(self):
            self._answer(False)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server


@pytest.fixture
def stub():
    routes = Routes()
    server = _server(routes)
    yield routes, f"127.0.0.1:{server.server_address[1]}"
    server.shutdown()
    server.server_close()


def test_a_manifest_without_a_digest_header_is_hashed(stub):
    routes, host = stub
    routes["/v2/team/x/manifests/v1"] = (200, {"Content-Type": "application/vnd.oci.image.manifest.v1+json"}, MANIFEST)
    assert Registry(host, None).manifest_digest("team/x", "v1") == "sha256:" + hashlib.sha256(MANIFEST).hexdigest()


@pytest.mark.parametrize("body", [b"[1, 2]", b"<html>", b"[" * 100_000])
def test_a_manifest_that_is_not_an_object_is_one_line(stub, body):
    routes, host = stub
    routes["/v2/team/x/manifests/v1"] = (200, {}, body)
    with pytest.raises(KilnError, match="is not a JSON object"):
        Registry(host, None).manifest("team/x", "v1")


def test_bodies_over_the_limit_are_not_read(stub):
    routes, host = stub
    big = b"x" * (2 << 20)
    digest = "sha256:" + hashlib.sha256(big).hexdigest()
    routes[f"/v2/team/x/blobs/{digest}"] = (200, {}, big)
    with pytest.raises(KilnError, match="larger than 1 MiB"):
        Registry(host, None).blob("team/x", digest, limit=1 << 20)
    assert Registry(host, None).blob("team/x", digest) == big  # under the default limit it is read and checked
    routes["/v2/team/x/manifests/v1"] = (403, {}, b"E" * (8 << 20))  # an error body: its start is enough
    with pytest.raises(KilnError, match=r"answered HTTP 403 \(E{120}\)"):
        Registry(host, None).manifest("team/x", "v1")


def test_an_endless_body_is_cut_at_the_limit(stub):
    routes, host = stub
    digest = "sha256:" + "0" * 64
    routes[f"/v2/team/x/blobs/{digest}"] = (200, {}, ENDLESS)
    routes["/v2/team/x/manifests/v1"] = (403, {}, ENDLESS)
    outcome = []

    def read():
        for call in (lambda: Registry(host, None).blob("team/x", digest), lambda: Registry(host, None).manifest("team/x", "v1")):
            try:
                call()
            except KilnError as exc:
                outcome.append(exc.what)

    worker = threading.Thread(target=read, daemon=True)
    worker.start()
    worker.join(timeout=60)
    assert not worker.is_alive(), "a body without end was read without a limit"
    assert "larger than 64 MiB" in outcome[0] and "answered HTTP 403" in outcome[1], outcome


def test_a_blob_that_does_not_hash_to_its_digest_is_refused(stub):
    routes, host = stub
    digest = "sha256:" + "0" * 64
    routes[f"/v2/team/x/blobs/{digest}"] = (200, {}, b"not it")
    with pytest.raises(KilnError, match="does not match its digest"):
        Registry(host, None).blob("team/x", digest)


def test_no_credentials_for_basic_or_after_an_anonymous_token(stub):
    routes, host = stub
    routes["/v2/team/basic/manifests/v1"] = (401, {"WWW-Authenticate": 'Basic realm="r"'}, b"")
    with pytest.raises(KilnError, match="asks for credentials and none were found"):
        Registry(host, None).manifest_digest("team/basic", "v1")
    # Docker Hub's way with a private repository: an anonymous token is given, and the registry still says 401
    challenge = f'Bearer realm="http://{host}/token",service="stub"'
    routes["/v2/team/private/manifests/v1"] = (401, {"WWW-Authenticate": challenge}, b"")
    routes["/token"] = (200, {}, b'{"token": "anonymous"}')
    with pytest.raises(KilnError, match="asks for credentials and none were found"):
        Registry(host, None).manifest_digest("team/private", "v1")


def test_a_token_service_that_answers_without_a_token(stub):
    routes, host = stub
    routes["/v2/team/x/manifests/v1"] = (401, {"WWW-Authenticate": f'Bearer realm="http://{host}/token"'}, b"")
    for answer in (b"{}", b'{"token": 5}', b"[" * 100_000, b"x" * (2 << 20)):
        routes["/token"] = (200, {}, answer)
        with pytest.raises(KilnError, match="answered without a token"):
            Registry(host, Credentials("u", "p")).manifest_digest("team/x", "v1")
