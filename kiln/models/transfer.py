"""One GET of a model file (urllib3): redirects followed by hand so the token goes only to the
endpoint's origin, a Range header to resume, and each outcome sorted into what to do next:
a response to read, a transient failure to retry, or a refusal to report."""

from __future__ import annotations

import re
from dataclasses import dataclass
from functools import cached_property
from urllib.parse import urljoin

import urllib3
from urllib3.exceptions import HTTPError
from urllib3.util import Timeout

from kiln.lock.index import ssl_context
from kiln.models.source import Endpoint, origin, shown

MAX_REDIRECTS = 10
REDIRECTS = (301, 302, 303, 307, 308)
TRANSIENT_STATUS = (408, 425, 429, 500, 502, 503, 504)
TIMEOUT = Timeout(connect=15, read=60)
MAX_RETRY_AFTER_S = 60.0


class Transient(Exception):
    """Worth retrying: no connection, a cut connection, a timeout, 408/429/5xx."""

    def __init__(self, reason: str, retry_after: float | None = None):
        super().__init__(reason)
        self.retry_after = retry_after


@dataclass
class Refused(Exception):
    """The server answered with a status that retrying will not change (404, 401, 403, ...)."""

    status: int
    url: str          # the URL asked for (never carries the token)
    answered_by: str  # the host that answered, when a redirect led elsewhere
    detail: str = ""  # the Hub's own reason (X-Error-Code, X-Error-Message), when it gives one


@dataclass
class Opened:
    response: urllib3.BaseHTTPResponse
    url: str


class Http:
    def __init__(self, endpoint: Endpoint, connections: int):
        self.endpoint, self.connections = endpoint, connections

    @cached_property
    def pool(self) -> urllib3.PoolManager:
        return urllib3.PoolManager(ssl_context=ssl_context(), maxsize=self.connections, timeout=TIMEOUT,
                                   retries=False)

    def open(self, url: str, offset: int) -> Opened:
        """GET url from byte offset on; the caller reads the response and closes it."""
        current = url
        for _ in range(MAX_REDIRECTS + 1):
            response = self._get(current, offset)
            location = response.headers.get("Location")
            if response.status in REDIRECTS and location:
                response.drain_conn()
                response.release_conn()
                current = urljoin(current, location)
                continue
            if response.status in (200, 206):
                return Opened(response, current)
            response.close()
            if response.status in TRANSIENT_STATUS:
                raise Transient(f"HTTP {response.status} from {origin(current)[1]}", _retry_after(response))
            answered = origin(current)[1] if origin(current) != origin(url) else ""
            raise Refused(response.status, shown(url), answered, _hub_reason(response))
        raise Transient(f"more than {MAX_REDIRECTS} redirects from {shown(url)}")

    def _get(self, url: str, offset: int) -> urllib3.BaseHTTPResponse:
        headers = {"User-Agent": "kiln", "Accept-Encoding": "identity", **self.endpoint.auth_for(url)}
        if offset:
            headers["Range"] = f"bytes={offset}-"
        try:
            return self.pool.request("GET", url, headers=headers, redirect=False, retries=False,
                                     preload_content=False)
        except (HTTPError, OSError) as exc:
            raise Transient(f"cannot reach {origin(url)[1]} ({_reason(exc)})") from None


def _hub_reason(response: urllib3.BaseHTTPResponse) -> str:
    """The Hugging Face Hub names the refusal (RepoNotFound, GatedRepo, EntryNotFound, ...) in headers."""
    code = re.sub(r"[^A-Za-z0-9_.-]", "", response.headers.get("X-Error-Code") or "")[:40]
    message = " ".join((response.headers.get("X-Error-Message") or "").split())[:160]
    return ": ".join(part for part in (code, message) if part)


def _retry_after(response: urllib3.BaseHTTPResponse) -> float | None:
    value = (response.headers.get("Retry-After") or "").strip()
    return min(float(value), MAX_RETRY_AFTER_S) if value.isdigit() else None


def _reason(exc: BaseException) -> str:
    inner = getattr(exc, "reason", None)
    return str(inner or exc).strip()[:160]
