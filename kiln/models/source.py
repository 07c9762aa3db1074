"""Where a model file is downloaded from: the Hugging Face style endpoint (HF_ENDPOINT), the file's
resolve URL, and the token (HF_TOKEN), which is only ever sent to the endpoint's own origin, and over
plain http only to a loopback address (a local mirror or test server), never in cleartext across a network."""

from __future__ import annotations

import ipaddress
import os
from dataclasses import dataclass, field
from urllib.parse import quote, urlsplit

from kiln.addresses import endpoint
from kiln.data.image import ModelFile
from kiln.errors import KilnError

DEFAULT_ENDPOINT = "https://huggingface.co"


@dataclass(frozen=True)
class Endpoint:
    base: str                   # scheme://host[:port][/prefix], no trailing slash
    token: str = field(default="", repr=False)  # never printed, logged or written

    def url(self, model: ModelFile) -> str:
        src = model.source
        return f"{self.base}/{src.repo}/resolve/{quote(src.revision, safe='')}/{quote(src.path)}"

    def auth_for(self, url: str) -> dict[str, str]:
        """The Authorization header for url: only on the endpoint's own origin (scheme, host, port), so a
        redirect to a CDN or any other host never sees the token."""
        if self.token and origin(url) == origin(self.base):
            return {"Authorization": f"Bearer {self.token}"}
        return {}


def endpoint_from_env(environ: dict[str, str] | None = None) -> Endpoint:
    env = os.environ if environ is None else environ
    base = endpoint(env.get("HF_ENDPOINT") or DEFAULT_ENDPOINT, "environment HF_ENDPOINT")
    parts = urlsplit(base)
    token = (env.get("HF_TOKEN") or "").strip()
    if any(c in token for c in "\x00\r\n "):
        raise KilnError("the token holds spaces or line breaks", "environment HF_TOKEN", "set it to the token alone")
    if token and parts.scheme == "http" and not _loopback(parts.hostname):
        raise KilnError(f"HF_TOKEN would be sent in cleartext to {parts.hostname} (HF_ENDPOINT is plain http)",
                        "environment HF_ENDPOINT, HF_TOKEN",
                        "use an https:// endpoint (plain http carries a token only to 127.0.0.0/8, ::1 or localhost), "
                        "or unset HF_TOKEN")
    return Endpoint(base, token)


def _loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return host.lower() == "localhost"


def origin(url: str) -> tuple[str, str, int]:
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def shown(url: str) -> str:
    """A URL as messages show it: without query (signed CDN links carry credentials there) or userinfo."""
    parts = urlsplit(url)
    host = parts.hostname or ""
    port = f":{parts.port}" if parts.port else ""
    return f"{parts.scheme}://{host}{port}{parts.path}"
