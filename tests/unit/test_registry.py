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
from tests.unit.oci_registry import TOKEN, OciRegistry, digest_of

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


def test_a_manifest_is_read_up_to_the_spec_limit_and_no_further(stub):
    """The distribution spec lets registries refuse manifests over 4 MiB; kiln reads none larger."""
    routes, host = stub
    head = b'{"schemaVersion": 2}'
    routes["/v2/team/x/manifests/at-limit"] = (200, {}, head + b" " * ((4 << 20) - len(head)))
    routes["/v2/team/x/manifests/over"] = (200, {}, head + b" " * ((4 << 20) - len(head) + 1))
    assert Registry(host, None).manifest("team/x", "at-limit") == {"schemaVersion": 2}
    with pytest.raises(KilnError, match="over is larger than 4 MiB"):
        Registry(host, None).manifest("team/x", "over")
    with pytest.raises(KilnError, match="over is larger than 4 MiB"):
        Registry(host, None).descriptor("team/x", "over")


def test_the_bearer_token_never_goes_to_the_host_an_upload_is_sent_to():
    with OciRegistry(token_auth=True, upload_name="localhost") as registry:
        Registry(registry.host, Credentials("u", "p")).put_blob("team/x", b"layer")
    assert registry.blobs == {digest_of(b"layer"): b"layer"}
    uploads = [s for s in registry.seen if s.method == "PUT"]
    assert [s.host for s in uploads] == [registry.upload_host] and uploads[0].authorization == ""
    own = [s for s in registry.seen if s.host == registry.host and s.path.startswith("/v2/")]
    assert own[-1].authorization == f"Bearer {TOKEN}"  # the registry itself does get it


def test_the_password_never_goes_to_a_token_service_over_plain_http(stub):
    routes, host = stub
    realm = "http://auth.registry.invalid/token"  # not loopback: the password would cross a network in cleartext
    routes["/v2/team/x/manifests/v1"] = (401, {"WWW-Authenticate": f'Bearer realm="{realm}",service="r"'}, b"")
    with pytest.raises(KilnError) as caught:
        Registry(host, Credentials("u", "s3cret")).manifest_digest("team/x", "v1")
    assert caught.value.what == f"the registry asks for the password over plain HTTP at {realm}"
    assert "HTTPS" in caught.value.fix
