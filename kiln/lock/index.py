"""HTTPS to the package index (urllib3): retries with backoff on connection errors, 408, 429 and 5xx;
an extra CA bundle for TLS-intercepting proxies; every failure one KilnError with the fix."""

from __future__ import annotations

import json
import os
import ssl
from functools import lru_cache
from pathlib import Path
from typing import Any

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util import Retry, Timeout

from kiln.errors import KilnError

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"
RETRY = Retry(total=4, backoff_factor=0.5, backoff_jitter=0.25, status_forcelist=(408, 429, 500, 502, 503, 504),
              allowed_methods=("GET",), raise_on_status=False)
TIMEOUT = Timeout(connect=15, read=120)
FIX = "check the connection to the package index; behind a TLS proxy set KILN_CA_BUNDLE"


def ssl_context(ca_bundle: Path | None = None) -> ssl.SSLContext:
    """Trusting ca_bundle when given, else $KILN_CA_BUNDLE or $SSL_CERT_FILE, else the system's CAs."""
    return _context(str(ca_bundle) if ca_bundle else os.environ.get("KILN_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE"))


@lru_cache(maxsize=4)
def _context(bundle: str | None) -> ssl.SSLContext:
    """The system's CAs, and the bundle's added to them (an extra CA, not a replacement)."""
    context = ssl.create_default_context()
    if bundle:
        context.load_verify_locations(cafile=bundle)
    return context


@lru_cache(maxsize=4)
def _pool(context: ssl.SSLContext) -> urllib3.PoolManager:
    return urllib3.PoolManager(ssl_context=context, retries=RETRY, timeout=TIMEOUT, maxsize=8,
                               headers={"User-Agent": "kiln"})


def open_url(url: str, byte_range: tuple[int, int] | None = None, accept: str | None = None,
             stream: bool = False, ca_bundle: Path | None = None) -> urllib3.BaseHTTPResponse:
    """GET url (retried), trusting ca_bundle too; a streamed response must be read and released by the caller."""
    headers = {}
    if byte_range:
        headers["Range"] = f"bytes={byte_range[0]}-{byte_range[1]}"
    if accept:
        headers["Accept"] = accept
    try:
        response = _pool(ssl_context(ca_bundle)).request("GET", url, headers=headers, preload_content=not stream)
    except (HTTPError, OSError) as exc:
        raise KilnError(f"cannot fetch {url} ({_reason(exc)})", "network", FIX) from None
    if response.status >= 400:
        response.release_conn()
        raise KilnError(f"{url} answered HTTP {response.status}", "network", FIX)
    return response


def fetch_bytes(url: str, byte_range: tuple[int, int] | None = None, accept: str | None = None) -> bytes:
    return open_url(url, byte_range, accept).data


def fetch_json(url: str, accept: str | None = None) -> Any:
    try:
        return json.loads(fetch_bytes(url, accept=accept))
    except ValueError as exc:
        raise KilnError(f"{url} did not answer JSON ({exc})", "network",
                        "check that the stack's [resolve].index in versions.lock is a PEP 691 simple index") from None


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner or exc).strip()[:200]
