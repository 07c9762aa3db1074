"""Registry credentials, as Docker finds them: KILN_REGISTRY_USER/KILN_REGISTRY_PASSWORD first, then the
Docker config (a credential helper for the host, the credential store, or an `auths` entry). Never
printed, logged or written by kiln."""

from __future__ import annotations

import base64
import json
import os
import subprocess
from pathlib import Path

from kiln.errors import KilnError
from kiln.publish.registry import Credentials


def find_credentials(host: str, config: Path | None = None) -> Credentials | None:
    user, password = os.environ.get("KILN_REGISTRY_USER"), os.environ.get("KILN_REGISTRY_PASSWORD")
    if user and password:
        return Credentials(user, password)
    path = config or Path(os.environ.get("DOCKER_CONFIG") or Path.home() / ".docker") / "config.json"
    data = _read(path)
    helper = (data.get("credHelpers") or {}).get(host) or data.get("credsStore")
    if helper:
        found = _from_helper(helper, "https://index.docker.io/v1/" if host == "docker.io" else host)
        if found:
            return found
    auths = data.get("auths") or {}
    names = (host, f"https://{host}") + (("https://index.docker.io/v1/",) if host in ("docker.io", "index.docker.io") else ())
    entry = next((auths[n] for n in names if n in auths), {})
    if entry.get("auth"):
        user, _, password = base64.b64decode(entry["auth"]).decode().partition(":")
        return Credentials(user, password)
    return None


def _read(path: Path) -> dict:
    try:
        return json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError:
        return {}
    except (OSError, ValueError) as exc:
        raise KilnError(f"cannot read the Docker config ({type(exc).__name__})", str(path), "fix or remove it") from None


def _from_helper(helper: str, host: str) -> Credentials | None:
    try:
        out = subprocess.run([f"docker-credential-{helper}", "get"], input=host, capture_output=True, text=True,
                             timeout=30)
    except (OSError, subprocess.TimeoutExpired):
        return None
    if out.returncode != 0:
        return None
    try:
        data = json.loads(out.stdout)
    except ValueError:
        return None
    return Credentials(data.get("Username", ""), data.get("Secret", "")) if data.get("Secret") else None
