"""Stand-in for a cloud registry's token service (what auth.docker.io is to Docker Hub, or /token to GHCR
and Artifact Registry). Those services cannot be reached from here; the registry in front of it is the
real docker-registry run with `auth: token`, which verifies every token's RS256 signature against the
certificate it is given, so a wrongly signed, expired or out-of-scope token is refused for real.

It hands out tokens for the password of tests.engine.registry (GET with Basic auth, as the engine and
kiln ask, or the OAuth2 password grant), granting of each scope asked for only the actions the account
has, and notes who asked for which scope."""

from __future__ import annotations

import base64
import json
import subprocess
import threading
import time
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from urllib.parse import parse_qs, urlparse

from tests.engine.registry import PASSWORD, USER, free_port

SERVICE, ISSUER = "kiln-test-registry", "kiln-test-token-service"


@dataclass(frozen=True)
class Issued:
    client: str            # the User-Agent that asked
    scopes: tuple[str, ...]
    account: str = ""      # "" for an anonymous token


@dataclass
class TokenService:
    folder: Path
    lifetime_s: int = 300
    actions: tuple[str, ...] = ("pull", "push")   # what the account may do; a request gets the overlap
    anonymous_pull: bool = False                   # as Docker Hub and GHCR for public images
    issued: list[Issued] = field(default_factory=list)
    refused: int = 0

    def __post_init__(self) -> None:
        self.folder.mkdir(parents=True, exist_ok=True)
        self.key, self.cert = self.folder / "signing.key", self.folder / "signing.crt"
        subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
                        "-subj", "/CN=kiln-test-token-service", "-keyout", str(self.key), "-out", str(self.cert)],
                       check=True, capture_output=True)
        der = subprocess.run(["openssl", "x509", "-in", str(self.cert), "-outform", "DER"], check=True,
                             capture_output=True).stdout
        self._x5c = base64.b64encode(der).decode()
        self.port = free_port()
        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), _handler(self))
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def realm(self) -> str:
        return f"http://127.0.0.1:{self.port}/token"

    def registry_auth(self) -> str:
        """The `auth:` section of a docker-registry config that trusts this service."""
        return (f"auth:\n  token: {{realm: '{self.realm}', service: {SERVICE}, issuer: {ISSUER}, "
                f"rootcertbundle: {self.cert}}}\n")

    def stop(self) -> None:
        self._server.shutdown()
        self._server.server_close()

    def token(self, scopes: list[str], allowed: tuple[str, ...]) -> str:
        now = int(time.time())
        claims = {"iss": ISSUER, "sub": USER, "aud": SERVICE, "iat": now, "nbf": now - 1,
                  "exp": now + self.lifetime_s, "jti": f"{now}-{len(self.issued)}",
                  "access": _access(scopes, allowed)}
        header = {"typ": "JWT", "alg": "RS256", "x5c": [self._x5c]}
        signing_input = f"{_b64url(json.dumps(header).encode())}.{_b64url(json.dumps(claims).encode())}"
        signature = subprocess.run(["openssl", "dgst", "-sha256", "-sign", str(self.key)],
                                   input=signing_input.encode(), check=True, capture_output=True).stdout
        return f"{signing_input}.{_b64url(signature)}"


def _access(scopes: list[str], allowed: tuple[str, ...]) -> list[dict]:
    """The repository actions asked for that the account has, as token services grant them."""
    access = []
    for scope in scopes:
        kind, _, rest = scope.partition(":")
        name, _, actions = rest.rpartition(":")
        if kind == "repository" and name:
            access.append({"type": kind, "name": name, "actions": [a for a in actions.split(",") if a in allowed]})
    return access


def _b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _handler(service: TokenService):
    class Handler(BaseHTTPRequestHandler):
        def do_GET(self) -> None:
            query = parse_qs(urlparse(self.path).query)
            self._answer(_basic(self.headers.get("Authorization", "")), query.get("scope", []))

        def do_POST(self) -> None:  # OAuth2 password grant, as the engine may use
            length = int(self.headers.get("Content-Length") or 0)
            form = parse_qs(self.rfile.read(length).decode())
            given = (form.get("username", [""])[0], form.get("password", [""])[0])
            self._answer(given, " ".join(form.get("scope", [])).split())

        def _answer(self, given: tuple[str, str], scopes: list[str]) -> None:
            anonymous = given == ("", "") and service.anonymous_pull
            if given != (USER, PASSWORD) and not anonymous:
                service.refused += 1
                return self._json(401, {"details": "incorrect username or password"})
            service.issued.append(Issued(self.headers.get("User-Agent", ""), tuple(scopes), "" if anonymous else USER))
            token = service.token(scopes, ("pull",) if anonymous else service.actions)
            self._json(200, {"token": token, "access_token": token, "expires_in": service.lifetime_s})

        def _json(self, status: int, body: dict) -> None:
            data = json.dumps(body).encode()
            self.send_response(status)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def log_message(self, *args) -> None:
            pass

    return Handler


def _basic(header: str) -> tuple[str, str]:
    if not header.lower().startswith("basic "):
        return "", ""
    user, _, password = base64.b64decode(header[6:]).decode(errors="replace").partition(":")
    return user, password
