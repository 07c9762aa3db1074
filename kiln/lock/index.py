"""Small HTTPS client for package indexes, honouring an extra CA bundle (TLS-intercepting proxies)."""

from __future__ import annotations

import json
import os
import ssl
import time
import urllib.error
import urllib.request
from functools import lru_cache
from typing import Any

from kiln.errors import KilnError

SIMPLE_JSON = "application/vnd.pypi.simple.v1+json"


@lru_cache(maxsize=1)
def ssl_context() -> ssl.SSLContext:
    bundle = os.environ.get("KILN_CA_BUNDLE") or os.environ.get("SSL_CERT_FILE")
    return ssl.create_default_context(cafile=bundle) if bundle else ssl.create_default_context()


RETRIES = 4


def fetch_bytes(url: str, byte_range: tuple[int, int] | None = None, accept: str | None = None) -> bytes:
    """GET url, retrying transient failures (DNS hiccups, resets) with a short backoff."""
    for attempt in range(RETRIES):
        try:
            return _fetch_once(url, byte_range, accept)
        except KilnError:
            if attempt == RETRIES - 1:
                raise
            time.sleep(0.5 * 2 ** attempt)
    raise AssertionError("unreachable")


def _fetch_once(url: str, byte_range: tuple[int, int] | None, accept: str | None) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "kiln"})
    if byte_range:
        request.add_header("Range", f"bytes={byte_range[0]}-{byte_range[1]}")
    if accept:
        request.add_header("Accept", accept)
    try:
        with urllib.request.urlopen(request, context=ssl_context(), timeout=60) as response:
            return response.read()
    except (urllib.error.URLError, TimeoutError, ssl.SSLError) as exc:
        raise KilnError(f"cannot fetch {url} ({exc})", "network",
                        "check the connection to the package index; behind a TLS proxy set KILN_CA_BUNDLE") from None


def fetch_json(url: str, accept: str | None = None) -> Any:
    return json.loads(fetch_bytes(url, accept=accept))
