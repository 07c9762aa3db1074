"""The extra CA a build host needs for the package index reaches the wheel download in the request,
not through the process environment: a local HTTPS server whose certificate only that CA signs."""

import datetime
import hashlib
import ipaddress
import ssl
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from types import SimpleNamespace

import pytest
from cryptography import x509
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec
from cryptography.x509.oid import NameOID

from kiln.data.lock import Package
from kiln.errors import KilnError
from kiln.sources.wheels import ensure_wheels, wheel_path

WHEEL = b"not really a wheel, but bytes with a known sha256\n"


def _cert(subject: str, issuer_key, issuer_name, key, ca: bool) -> x509.Certificate:
    now = datetime.datetime.now(datetime.timezone.utc)
    builder = (x509.CertificateBuilder().subject_name(x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, subject)]))
               .issuer_name(issuer_name).public_key(key.public_key()).serial_number(x509.random_serial_number())
               .not_valid_before(now - datetime.timedelta(minutes=5)).not_valid_after(now + datetime.timedelta(hours=1))
               .add_extension(x509.BasicConstraints(ca=ca, path_length=None), critical=True))
    if not ca:
        builder = builder.add_extension(x509.SubjectAlternativeName([x509.IPAddress(ipaddress.ip_address("127.0.0.1"))]),
                                        critical=False)
    return builder.sign(issuer_key, hashes.SHA256())


@pytest.fixture
def https_index(tmp_path):
    """(url of the wheel, the CA's PEM file); the server's certificate is signed by that CA only."""
    ca_key, key = ec.generate_private_key(ec.SECP256R1()), ec.generate_private_key(ec.SECP256R1())
    ca_name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "kiln test CA")])
    ca = _cert("kiln test CA", ca_key, ca_name, ca_key, ca=True)
    leaf = _cert("127.0.0.1", ca_key, ca_name, key, ca=False)
    (tmp_path / "ca.pem").write_bytes(ca.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.pem").write_bytes(leaf.public_bytes(serialization.Encoding.PEM))
    (tmp_path / "leaf.key").write_bytes(key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8,
                                                          serialization.NoEncryption()))

    class Handler(BaseHTTPRequestHandler):
        def do_GET(self):  # noqa: N802 - the http.server name
            self.send_response(200)
            self.send_header("Content-Length", str(len(WHEEL)))
            self.end_headers()
            self.wfile.write(WHEEL)

        def log_message(self, *args):
            pass

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    context = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
    context.load_cert_chain(tmp_path / "leaf.pem", tmp_path / "leaf.key")
    server.socket = context.wrap_socket(server.socket, server_side=True)
    threading.Thread(target=server.serve_forever, daemon=True).start()
    yield f"https://127.0.0.1:{server.server_address[1]}/tiny-1.0-py3-none-any.whl", tmp_path / "ca.pem"
    server.shutdown()
    server.server_close()


def _lock(url: str) -> SimpleNamespace:
    pkg = Package(name="tiny", version="1.0", wheel="tiny-1.0-py3-none-any.whl", url=url,
                  sha256=hashlib.sha256(WHEEL).hexdigest())
    return SimpleNamespace(packages={"tiny": pkg}, table=lambda key: f"[{key}]")


def test_the_ca_in_the_request_is_trusted_for_the_download(https_index, tmp_path, monkeypatch):
    monkeypatch.delenv("KILN_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url, ca = https_index
    lock = _lock(url)
    report = ensure_wheels(lock, tmp_path / "cache", ca_bundle=ca)
    assert report.downloaded == 1 and wheel_path(tmp_path / "cache", lock.packages["tiny"]).read_bytes() == WHEEL
    assert "KILN_CA_BUNDLE" not in __import__("os").environ  # nothing was put in the environment


def test_without_the_ca_the_download_is_refused_in_one_line(https_index, tmp_path, monkeypatch):
    monkeypatch.delenv("KILN_CA_BUNDLE", raising=False)
    monkeypatch.delenv("SSL_CERT_FILE", raising=False)
    url, _ = https_index
    with pytest.raises(KilnError) as caught:
        ensure_wheels(_lock(url), tmp_path / "cache")
    assert "CERTIFICATE_VERIFY_FAILED" in caught.value.line() or "certificate verify failed" in caught.value.line()
    assert not list((tmp_path / "cache").rglob("*.whl*"))  # no partial download left


def test_the_extra_ca_is_added_to_the_systems_not_put_in_their_place(https_index):
    from kiln.lock.index import ssl_context

    _, ca = https_index
    system = len(ssl_context().get_ca_certs()) if ssl_context().get_ca_certs() else 0
    assert len(ssl_context(ca).get_ca_certs()) == system + 1
