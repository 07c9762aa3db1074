"""Pushing an image's tags through the engine, with per-layer progress and retries (backoff with
jitter on connection errors, 408, 429 and 5xx), then reading each digest back from the registry."""

from __future__ import annotations

import os
import random
import re
import time
from dataclasses import dataclass

import docker
from requests.exceptions import RequestException

from kiln.addresses import registry_target
from kiln.errors import Interrupted, KilnError
from kiln.events import Event, Listener, ignore
from kiln.publish.registry import Credentials, Registry

TRANSIENT = re.compile(r"(connection refused|connection reset|broken pipe|EOF|timeout|i/o timeout|"
                       r"\b(408|429|50[0234])\b|too ?many ?requests|service unavailable|bad gateway|"
                       r"temporary failure in name resolution|blob upload unknown)", re.I)
ATTEMPTS = 5
BACKOFF_S = 1.0


@dataclass(frozen=True)
class Target:
    host: str
    namespace: str

    def repo(self, local_repo: str) -> str:
        """kiln/comfyui -> <namespace>/comfyui on the registry."""
        return f"{self.namespace}/{local_repo.rsplit('/', 1)[-1]}"


def parse_target(text: str) -> Target:
    return Target(*registry_target(text, "--registry"))


def push_tag(client: docker.DockerClient, repository: str, tag: str, credentials: Credentials | None,
             on_event: Listener = ignore, attempts: int | None = None, sleep=time.sleep) -> str:
    """Push repository:tag; returns the manifest digest the engine reports. Transient failures retry
    (KILN_PUSH_ATTEMPTS times in all, default 5)."""
    attempts = attempts or int(os.environ.get("KILN_PUSH_ATTEMPTS") or ATTEMPTS)
    for attempt in range(1, attempts + 1):
        try:
            return _push_once(client, repository, tag, credentials, on_event)
        except _Transient as exc:
            if attempt == attempts:
                raise KilnError(f"pushing {repository}:{tag} failed after {attempts} attempt(s), last: {exc}", repository,
                                "check the registry (it may be down or full) and publish again") from None
            delay = BACKOFF_S * 2 ** (attempt - 1) * (1 + random.random())
            on_event(Event("phase", f"push failed ({exc}); retry {attempt}/{attempts - 1} in {delay:.1f} s"))
            sleep(delay)
    raise AssertionError("unreachable")


class _Transient(Exception):
    pass


def _push_once(client, repository: str, tag: str, credentials: Credentials | None, on_event: Listener) -> str:
    auth = {"username": credentials.username, "password": credentials.password} if credentials else None
    digest = ""
    try:
        for chunk in client.api.push(repository, tag, stream=True, decode=True, auth_config=auth):
            digest = _progress(chunk, repository, on_event) or digest
    except KeyboardInterrupt:
        raise Interrupted(["nothing: the push stopped, no tag is claimed published"]) from None
    except (RequestException, docker.errors.APIError) as exc:
        raise _Transient(str(getattr(exc, "explanation", None) or exc)[:200]) from None
    if not digest:
        raise _Transient("the engine reported no digest")
    return digest


def _progress(chunk: dict, repository: str, on_event: Listener) -> str:
    if "error" in chunk:
        message = chunk["error"].strip()
        if TRANSIENT.search(message):
            raise _Transient(message[:200])
        fix = "check the credentials" if "auth" in message.lower() or "denied" in message.lower() \
            else "check free space on the registry" if "space" in message.lower() else "see the registry's log"
        raise KilnError(f"the registry refused the push ({message[:200]})", repository, fix)
    if "aux" in chunk and "Digest" in chunk["aux"]:
        return chunk["aux"]["Digest"]
    detail = chunk.get("progressDetail") or {}
    if chunk.get("status") == "Pushing" and detail.get("total"):
        on_event(Event("download", f"layer {chunk.get('id', '')}", detail.get("current", 0), detail["total"]))
    elif chunk.get("status") in ("Pushed", "Layer already exists", "Mounted from"):
        on_event(Event("log", f"{chunk.get('id', '')}: {chunk['status']}"))
    return ""


def verify_digest(registry: Registry, repo: str, tag: str, pushed: str) -> None:
    served = registry.descriptor(repo, tag)["digest"]  # the body's own hash, not a header
    if served != pushed:
        raise KilnError(f"{repo}:{tag} is served as {served or 'nothing'}, the engine pushed {pushed}", registry.host,
                        "the tag was changed meanwhile or the registry lost the push; publish again")
