"""The Registry HTTP API v2 (distribution spec) over urllib3: the auth a registry asks for (Basic, or
a Bearer token from its realm), manifest digests read back, and OCI artifacts put and fetched."""

from __future__ import annotations

import base64
import hashlib
import ipaddress
import json
import re
import ssl
from dataclasses import dataclass, field
from pathlib import Path

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util import Retry, Timeout

from kiln.errors import KilnError

MANIFEST_TYPES = ("application/vnd.oci.image.index.v1+json", "application/vnd.oci.image.manifest.v1+json",
                  "application/vnd.docker.distribution.manifest.v2+json",
                  "application/vnd.docker.distribution.manifest.list.v2+json")
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"
OCI_EMPTY = "application/vnd.oci.empty.v1+json"
RETRY = Retry(total=5, backoff_factor=0.5, backoff_jitter=0.5, status_forcelist=(408, 429, 500, 502, 503, 504),
              allowed_methods=("GET", "HEAD", "PUT", "POST"), raise_on_status=False)
CERTS_D = Path("/etc/docker/certs.d")  # where Docker itself looks for a registry's CA
MAX_MANIFEST = 4 << 20   # bytes; the distribution spec lets registries refuse manifests over 4 MiB
MAX_BLOB = 64 << 20      # bytes of an SBOM or provenance read back; kiln's are about 100 kB
MAX_SMALL = 1 << 20      # bytes of a token answer or an error body
API_HOSTS = {"docker.io": "registry-1.docker.io", "index.docker.io": "registry-1.docker.io"}


@dataclass(frozen=True)
class Credentials:
    username: str
    password: str = field(repr=False)


@dataclass
class Registry:
    host: str                         # host[:port]
    credentials: Credentials | None
    scheme: str = ""
    actions: str = "pull,push"        # the scope asked of a token service; "pull" to only read
    _token: str = field(default="", repr=False)

    def __post_init__(self) -> None:
        self.api_host = API_HOSTS.get(self.host, self.host)
        self.scheme = self.scheme or _scheme(self.api_host)
        self.pool = urllib3.PoolManager(ssl_context=_ssl_context(self.host), retries=RETRY,
                                        timeout=Timeout(connect=10, read=120))

    def manifest_digest(self, repo: str, reference: str) -> str | None:
        """The digest the registry serves for repo:reference, or None when it has no such manifest (judged
        by the status; a registry that sends no digest header has the bytes hashed instead)."""
        response = self.request("HEAD", f"/v2/{repo}/manifests/{reference}", repo,
                                headers={"Accept": ", ".join(MANIFEST_TYPES)}, missing_ok=True)
        if response.status != 200:
            return None
        return response.headers.get("Docker-Content-Digest") or self.descriptor(repo, reference)["digest"]

    def descriptor(self, repo: str, reference: str) -> dict:
        """The manifest's OCI descriptor (mediaType, digest, size), as an artifact's subject names it; the
        digest hashed from the bytes served, not taken from a header."""
        content_type, data = self._manifest_bytes(repo, reference)
        return {"mediaType": content_type, "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}

    def manifest(self, repo: str, reference: str) -> dict:
        data = self._manifest_bytes(repo, reference)[1]
        try:
            manifest = json.loads(data)
        except (ValueError, RecursionError):
            manifest = None
        if not isinstance(manifest, dict):
            raise KilnError(f"the manifest {repo}:{reference[:80]} is not a JSON object", self.host,
                            "the registry serves something that is not an image or artifact manifest")
        return manifest

    def _manifest_bytes(self, repo: str, reference: str) -> tuple[str, bytes]:
        response = self.request("GET", f"/v2/{repo}/manifests/{reference}", repo, stream=True,
                                headers={"Accept": ", ".join(MANIFEST_TYPES)})
        return response.headers.get("Content-Type", "").split(";")[0], self._read(response, MAX_MANIFEST, reference)

    def blob(self, repo: str, digest: str, limit: int = MAX_BLOB) -> bytes:
        response = self.request("GET", f"/v2/{repo}/blobs/{digest}", repo, stream=True)
        data = self._read(response, limit, digest)
        if "sha256:" + hashlib.sha256(data).hexdigest() != digest:
            raise KilnError(f"blob {digest[:19]} of {repo} does not match its digest", self.host,
                            "the registry serves corrupt data; check its storage")
        return data

    def put_blob(self, repo: str, data: bytes) -> str:
        digest = "sha256:" + hashlib.sha256(data).hexdigest()
        if self.request("HEAD", f"/v2/{repo}/blobs/{digest}", repo, missing_ok=True).status == 200:
            return digest
        start = self.request("POST", f"/v2/{repo}/blobs/uploads/", repo)
        location = start.headers["Location"]
        joiner = "&" if "?" in location else "?"
        self.request("PUT", f"{location}{joiner}digest={digest}", repo, body=data,
                     headers={"Content-Type": "application/octet-stream"})
        return digest

    def put_artifact(self, repo: str, tag: str, payload: bytes, media_type: str, subject: dict,
                     annotations: dict[str, str], title: str) -> str:
        """An OCI artifact (empty config, one layer) tagged `tag`, naming the image it describes."""
        config = self.put_blob(repo, b"{}")
        layer = self.put_blob(repo, payload)
        manifest = {"schemaVersion": 2, "mediaType": OCI_MANIFEST, "artifactType": media_type,
                    "config": {"mediaType": OCI_EMPTY, "digest": config, "size": 2},
                    "layers": [{"mediaType": media_type, "digest": layer, "size": len(payload),
                                "annotations": {"org.opencontainers.image.title": title}}],
                    "subject": subject, "annotations": annotations}
        body = json.dumps(manifest, sort_keys=True, separators=(",", ":")).encode()
        self.request("PUT", f"/v2/{repo}/manifests/{tag}", repo, body=body, headers={"Content-Type": OCI_MANIFEST})
        return "sha256:" + hashlib.sha256(body).hexdigest()

    def _read(self, response: urllib3.BaseHTTPResponse, limit: int, what: str) -> bytes:
        data = self._body(response, limit)
        if data is None:
            raise KilnError(f"{what[:80]} is larger than {limit >> 20} MiB", self.host,
                            "kiln reads no manifest or attachment that large; check what the registry serves")
        return data

    def _body(self, response: urllib3.BaseHTTPResponse, limit: int, prefix: bool = False) -> bytes | None:
        """At most limit bytes of the body (None when there is more, or its first limit bytes with prefix);
        the connection goes back to the pool only when the body was read to its end."""
        try:
            data = response.read(limit + 1)
        except (HTTPError, OSError) as exc:
            response.close()
            raise KilnError(f"the registry broke off an answer ({exc})", self.host, "try again") from None
        if len(data) > limit:
            response.close()
            return data[:limit] if prefix else None
        response.release_conn()
        return data

    def request(self, method: str, path: str, repo: str, body: bytes | None = None,
                headers: dict[str, str] | None = None, missing_ok: bool = False,
                stream: bool = False) -> urllib3.BaseHTTPResponse:
        """The answer; its body left unread for stream=True (the caller reads it with a limit), else read
        to at most MAX_SMALL bytes and dropped. Every body is read with a limit."""
        url = path if path.startswith("http") else f"{self.scheme}://{self.api_host}{path}"
        response = self._send(method, url, body, headers or {})
        if response.status == 401:
            response.close()
            self._authenticate(response.headers.get("WWW-Authenticate", ""), repo)
            response = self._send(method, url, body, headers or {})
        if response.status == 401 and self.credentials is None:
            response.close()  # an anonymous token that does not reach this repository
            raise _no_credentials(self.host)
        if response.status >= 400 and not (response.status == 404 and missing_ok):
            raise _refused(self.host, method, path, response.status, self._body(response, MAX_SMALL, prefix=True))
        if not stream or response.status >= 400:
            self._body(response, MAX_SMALL)
        return response

    def _send(self, method: str, url: str, body: bytes | None, headers: dict[str, str]) -> urllib3.BaseHTTPResponse:
        # credentials go to the registry itself only, never to a host an upload Location points at
        own = urllib3.util.parse_url(url).netloc == self.api_host
        auth = {"Authorization": self._token} if self._token and own else {}
        try:
            return self.pool.request(method, url, body=body, headers={**headers, **auth}, redirect=True,
                                     preload_content=False)
        except (HTTPError, OSError) as exc:
            raise KilnError(f"cannot reach the registry ({getattr(exc, 'reason', None) or exc})", self.host,
                            "check that it runs and that this host can reach it") from None

    def _authenticate(self, challenge: str, repo: str) -> None:
        bearer = not challenge.lower().startswith("basic")
        if self.credentials is None and not bearer:
            raise _no_credentials(self.host)
        if not bearer:
            self._token = f"Basic {self._basic()}"
            return
        params = dict(re.findall(r'(\w+)="([^"]*)"', challenge))
        if "realm" not in params:
            raise KilnError(f"unknown auth challenge '{challenge[:60]}'", self.host, "use a Docker Registry v2")
        realm = urllib3.util.parse_url(params["realm"])
        if self.credentials and realm.scheme != "https" and not _loopback(realm.netloc or ""):
            raise KilnError(f"the registry asks for the password over plain HTTP at {params['realm'][:80]}",
                            self.host, "refused: use a registry whose token service speaks HTTPS")
        query = {"service": params.get("service", ""), "scope": f"repository:{repo}:{self.actions}"}
        # without credentials, an anonymous token: public images on Docker Hub and GHCR are read so
        auth = {"Authorization": f"Basic {self._basic()}"} if self.credentials else {}
        try:
            response = self.pool.request("GET", params["realm"], fields=query, headers=auth, preload_content=False)
        except (HTTPError, OSError) as exc:
            raise KilnError(f"cannot reach the registry's token service ({getattr(exc, 'reason', None) or exc})",
                            self.host, "check that this host can reach it") from None
        answer = self._body(response, MAX_SMALL)
        if response.status != 200 and self.credentials is None:
            raise _no_credentials(self.host)
        if response.status != 200:
            raise KilnError(f"the registry's token service refused the credentials (HTTP {response.status})",
                            self.host, "check the user name and password (or token)")
        token = _token_of(answer)
        if token is None:
            raise KilnError("the registry's token service answered without a token", self.host,
                            "check the registry's auth settings")
        self._token = f"Bearer {token}"

    def _basic(self) -> str:
        return base64.b64encode(f"{self.credentials.username}:{self.credentials.password}".encode()).decode()


def _no_credentials(host: str) -> KilnError:
    return KilnError("the registry asks for credentials and none were found", host,
                     "`docker login` to it, or set KILN_REGISTRY_USER and KILN_REGISTRY_PASSWORD")


def _token_of(answer: bytes | None) -> str | None:
    try:
        data = json.loads(answer or b"")
    except (ValueError, RecursionError):
        return None
    token = (data.get("token") or data.get("access_token")) if isinstance(data, dict) else None
    return token if isinstance(token, str) and token else None


def _refused(host: str, method: str, path: str, status: int, body: bytes | None) -> KilnError:
    if status == 401:
        return KilnError("the registry refused the credentials", host, "check the user name and password (or token)")
    try:
        errors = json.loads(body or b"").get("errors") or [{}]
        detail = str(errors[0].get("message") or errors[0].get("code") or "")[:120]
    except (ValueError, AttributeError, TypeError, IndexError, RecursionError):
        detail = (body or b"")[:120].decode(errors="replace")
    return KilnError(f"{method} {path.split('?')[0]} answered HTTP {status} ({detail})", host,
                     "check the registry's log and storage")


def _loopback(host: str) -> bool:
    name = host.rsplit(":", 1)[0].strip("[]")
    if name == "localhost":
        return True
    try:
        return ipaddress.ip_address(name).is_loopback
    except ValueError:
        return False


def _scheme(host: str) -> str:
    """HTTPS, as Docker uses; plain HTTP only on loopback without a CA for it in certs.d (Docker allows it)."""
    return "https" if not _loopback(host) or (CERTS_D / host / "ca.crt").is_file() else "http"


def _ssl_context(host: str) -> ssl.SSLContext:
    context = ssl.create_default_context()
    ca = CERTS_D / host / "ca.crt"
    if ca.is_file():
        context.load_verify_locations(cafile=str(ca))
    return context
