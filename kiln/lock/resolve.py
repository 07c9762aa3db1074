"""Resolve the lock's inputs into exact wheels: versions (uv), files and hashes (index), requirements."""

from __future__ import annotations

import os
import shutil
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from packaging.tags import Tag
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from kiln.data.lock import Lock, Package
from kiln.errors import KilnError
from kiln.lock.index import SIMPLE_JSON, fetch_bytes, fetch_json
from kiln.lock.platform import target_tags
from kiln.lock.wheelmeta import remote_metadata, requires_dist

DEBIAN_CA = Path("/etc/ssl/certs/ca-certificates.crt")


def resolve_packages(lock: Lock) -> dict[str, Package]:
    pins = compile_pins(lock)
    tags = target_tags(lock)
    with ThreadPoolExecutor(max_workers=8) as pool:
        found = list(pool.map(lambda pin: _package(lock, tags, *pin), pins))
    return {canonicalize_name(p.name): p for p in sorted(found, key=lambda p: canonicalize_name(p.name))}


def compile_pins(lock: Lock) -> list[tuple[str, str, str]]:
    """(name, version, marker) for the whole set, as uv resolves it 'as of' the lock's date."""
    uv = shutil.which("uv") or str(Path(os.sys.executable).parent / "uv")
    r = lock.resolve
    cmd = [uv, "pip", "compile", "-", "--quiet", "--no-header", "--no-annotate", "--no-strip-markers",
           "--python-version", lock.stack.python, "--python-platform", r.uv_platform,
           "--exclude-newer", str(r.as_of), "--index-url", r.index]
    env = dict(os.environ)
    env.setdefault("SSL_CERT_FILE", os.environ.get("KILN_CA_BUNDLE") or (str(DEBIAN_CA) if DEBIAN_CA.exists() else ""))
    try:
        out = subprocess.run(cmd, input="\n".join(lock.top_requirements()) + "\n", capture_output=True, text=True,
                             env={k: v for k, v in env.items() if v}, timeout=600)
    except FileNotFoundError:
        raise KilnError("uv is not installed", "invoke lock", "install the toolkit's requirements (pip install uv)") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise KilnError(f"resolution failed: {last}", f"versions.lock {lock.table('comfyui')}", "loosen or fix the pins named")
    return [_pin(line) for line in out.stdout.splitlines() if line.strip() and not line.startswith("#")]


def _pin(line: str) -> tuple[str, str, str]:
    spec, _, marker = line.partition(";")
    name, _, version = spec.strip().partition("==")
    return name.strip(), version.strip(), marker.strip()


def _package(lock: Lock, tags: list[Tag], name: str, version: str, marker: str) -> Package:
    url = f"{lock.resolve.index.rstrip('/')}/{canonicalize_name(name)}/"
    page = fetch_json(url, accept=SIMPLE_JSON)
    files = page.get("files") if isinstance(page, dict) else None
    if not isinstance(files, list):
        raise KilnError(f"{url} lists no files", f"versions.lock {lock.table('resolve')}.index", "use a PEP 691 JSON simple index")
    wheel = best_wheel(files, name, version, tags)
    if wheel is None:
        raise KilnError(f"{name}=={version} has no wheel for cp{lock.stack.python.replace('.', '')} on "
                        f"{lock.resolve.uv_platform}", f"versions.lock {lock.table('comfyui')}",
                        "pin a version that ships such a wheel")
    sha256 = (wheel.get("hashes") or {}).get("sha256")
    if not sha256:
        raise KilnError(f"the index gives no sha256 for {wheel['filename']}", f"versions.lock {lock.table('resolve')}.index",
                        "use an index that publishes sha256 hashes (PEP 691)")
    meta = _metadata(wheel)
    return Package(name=name, version=version, wheel=wheel["filename"], url=wheel["url"],
                   sha256=sha256, requires=requires_dist(meta), marker=marker)


def best_wheel(files: list[dict], name: str, version: str, tags: list[Tag]) -> dict | None:
    """The file pip would pick on the target: the wheel whose best tag ranks highest."""
    rank = {tag: i for i, tag in enumerate(tags)}
    best, best_rank = None, len(rank)
    for f in files:
        filename = f.get("filename", "") if isinstance(f, dict) else ""
        if not filename.endswith(".whl") or f.get("yanked") or "url" not in f:
            continue
        try:
            wname, wversion, _, wtags = parse_wheel_filename(filename)
        except InvalidWheelFilename:  # old uploads with names pip cannot install either
            continue
        if canonicalize_name(wname) != canonicalize_name(name) or str(wversion) != version:
            continue
        score = min((rank[t] for t in wtags if t in rank), default=len(rank))
        if score < best_rank:
            best, best_rank = f, score
    return best


def _metadata(wheel: dict) -> str:
    if wheel.get("core-metadata") or wheel.get("data-dist-info-metadata"):
        try:
            return fetch_bytes(wheel["url"] + ".metadata").decode("utf-8")
        except UnicodeDecodeError:
            raise KilnError(f"{wheel['filename']}: its METADATA is not UTF-8", wheel["url"],
                            "pin another version") from None
    if not isinstance(wheel.get("size"), int):
        raise KilnError(f"the index gives no size for {wheel['filename']}", wheel["url"], "use a PEP 691 JSON index")
    return remote_metadata(wheel["url"], wheel["size"])
