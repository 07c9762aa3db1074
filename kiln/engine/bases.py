"""Base images: a Debian rootfs made with debootstrap and imported into the engine, or a registry
image pinned by digest. Building is idempotent: a base whose recipe is unchanged is left alone."""

from __future__ import annotations

import hashlib
from collections import deque
import json
import os
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

import docker

from kiln import __version__
from kiln.addresses import endpoint
from kiln.data.lock import Base, Lock
from kiln.data.records.base_image import BaseImageRecord
from kiln.data.records.folder import BuildFolder
from kiln.engine.client import image_exists
from kiln.errors import KilnError
from kiln.events import Event, Listener, ignore
from kiln.identity import RECIPE_LABEL, TOOLKIT_LABEL, base_ref
PRUNE = ("var/lib/apt/lists", "var/cache/apt", "usr/share/doc", "usr/share/man", "usr/share/info", "var/log")


@dataclass(frozen=True)
class BaseResult:
    ref: str
    image_id: str
    built: bool
    packages: tuple[str, ...]


def recipe_digest(base: Base) -> str:
    return hashlib.sha256(json.dumps(base.recipe(), sort_keys=True).encode()).hexdigest()


def ensure_base(client: docker.DockerClient, lock: Lock, name: str, folder: BuildFolder,
                on_event: Listener = ignore) -> BaseResult:
    """The base image current in the engine, and its record in the build folder describing it."""
    if name not in lock.bases:
        raise KilnError(f"unknown base '{name}'", "--name", f"use one of the lock's [bases]: {', '.join(lock.bases)}")
    base, ref = lock.bases[name], base_ref(lock, name)
    if base.kind == "registry":
        return _registry_base(client, ref)
    mirror_from_env()  # a bad KILN_DEBIAN_MIRROR is refused before anything is built
    digest = recipe_digest(base)
    current = _current(client, ref, digest)
    if current and _current(client, base_ref(lock, name, "build"), digest):
        record = _record_to_keep(folder, name)
        if record and record.describes(ref, current.id) and record.recipe_sha256 == digest:
            return BaseResult(ref, current.id, False, record.packages)
        result = BaseResult(ref, current.id, False, tuple(base_packages(client, ref)))
    else:
        result = _debootstrap_base(client, base, ref, base_ref(lock, name, "build"), on_event)
    folder.write_base(name, BaseImageRecord(ref=result.ref, image_id=result.image_id, recipe_sha256=digest,
                                            packages=result.packages))
    return result


def _record_to_keep(folder: BuildFolder, name: str) -> BaseImageRecord | None:
    """`invoke base` writes the record: a damaged one, or one of an older kiln, is written again."""
    try:
        return folder.read_base(name)
    except KilnError:
        return None


def packages_of(client: docker.DockerClient, record: BaseImageRecord | None, ref: str, image_id: str) -> list[str]:
    """The base's Debian packages: from its record when that describes this very image, else listed from the
    image (a registry base, or one made by another checkout)."""
    if record and record.describes(ref, image_id):
        return list(record.packages)
    return base_packages(client, ref)


def base_packages(client: docker.DockerClient, ref: str) -> list[str]:
    """The Debian packages (name=version) of a base image, read from it (registry bases too)."""
    try:
        out = client.containers.run(ref, ["dpkg-query", "-W", "-f", "${Package}=${Version}\\n"], remove=True,
                                    network_mode="none", labels={TOOLKIT_LABEL: "base-packages"})
    except docker.errors.DockerException as exc:
        raise KilnError(f"cannot list the packages of {ref} ({exc})", "invoke base", "rebuild it: invoke clean --images --bases") from None
    return sorted(out.decode().split())


def require_base(client: docker.DockerClient, lock: Lock, name: str) -> str:
    for ref in (base_ref(lock, name, "build"), base_ref(lock, name)):
        if not image_exists(client, ref):
            how = "run `invoke base`" if lock.bases[name].kind == "debootstrap" else "load it with `docker pull`/`docker load`"
            raise KilnError(f"base image {ref} is not in the engine", f"versions.lock [bases.{name}]", how)
    return base_ref(lock, name)


def _registry_base(client: docker.DockerClient, ref: str) -> BaseResult:
    if not image_exists(client, ref):
        raise KilnError(f"registry base {ref} is not in the engine and cannot be built here", "versions.lock [bases]",
                        "`docker pull` it by digest on a host with registry access, or `docker load` it")
    return BaseResult(ref, client.images.get(ref).id, False, ())


def _current(client: docker.DockerClient, ref: str, digest: str):
    if not image_exists(client, ref):
        return None
    image = client.images.get(ref)
    return image if (image.labels or {}).get(RECIPE_LABEL) == digest else None


def _debootstrap_base(client: docker.DockerClient, base: Base, ref: str, build_ref: str,
                      on_event: Listener) -> BaseResult:
    if shutil.which("debootstrap") is None:
        raise KilnError("debootstrap is not installed", "invoke base", "apt-get install debootstrap")
    if os.geteuid() != 0:
        raise KilnError("debootstrap needs root", "invoke base", "run it as root (sudo)")
    work = Path(tempfile.mkdtemp(prefix="kiln-base-"))
    try:
        rootfs = work / "rootfs"
        _debootstrap(base, rootfs, on_event)
        _prune(rootfs)
        on_event(Event("phase", f"importing {build_ref} into the engine"))
        _import(client, base, rootfs, work / "rootfs.tar", build_ref)
        _purge(rootfs, list(base.build_only))
        packages = _packages(rootfs)
        _prune(rootfs)
        on_event(Event("phase", f"importing {ref} into the engine"))
        image_id = _import(client, base, rootfs, work / "rootfs.tar", ref)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    return BaseResult(ref, image_id, True, tuple(packages))


def mirror_from_env() -> str | None:
    """KILN_DEBIAN_MIRROR, checked like any endpoint a user gives; None when unset (the lock's mirror is used)."""
    mirror = os.environ.get("KILN_DEBIAN_MIRROR")
    return endpoint(mirror, "environment KILN_DEBIAN_MIRROR") if mirror else None


def _debootstrap(base: Base, rootfs: Path, on_event: Listener) -> None:
    mirror = mirror_from_env() or base.mirror
    cmd = ["debootstrap", f"--variant={base.variant}", "--include=" + ",".join(base.packages), base.suite,
           str(rootfs), mirror]
    on_event(Event("phase", f"debootstrap {base.suite} ({base.variant}) from {mirror}"))
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    tail: deque[str] = deque(maxlen=3)
    for line in proc.stdout:
        tail.append(line.rstrip())
        on_event(Event("log", line.rstrip()))
    if proc.wait() != 0:
        raise KilnError(f"debootstrap failed: {' | '.join(tail)}", "invoke base",
                        "check the Debian mirror (KILN_DEBIAN_MIRROR) and free disk space")


def _packages(rootfs: Path) -> list[str]:
    out = _run(["dpkg-query", f"--admindir={rootfs}/var/lib/dpkg", "-W", "-f", "${Package}=${Version}\n"],
               "listing the base's packages")
    return sorted(out.split())


def _purge(rootfs: Path, packages: list[str]) -> None:
    """Remove what only the builder stage needs (venv support, pip/setuptools wheels) from the runtime base."""
    if packages:
        _run(["chroot", str(rootfs), "dpkg", "--purge", *packages], "removing build-only packages")


def _prune(rootfs: Path) -> None:
    for rel in PRUNE:
        _empty(rootfs / rel)


def _empty(path: Path) -> None:
    if path.is_dir():
        for child in path.iterdir():
            shutil.rmtree(child) if child.is_dir() and not child.is_symlink() else child.unlink()


def _import(client: docker.DockerClient, base: Base, rootfs: Path, tar: Path, ref: str) -> str:
    tar.unlink(missing_ok=True)
    _run(["tar", "--numeric-owner", "-C", str(rootfs), "-cf", str(tar), "."], "packing the root filesystem")
    repository, tag = ref.split(":", 1)
    changes = [f"LABEL {TOOLKIT_LABEL}={__version__} {RECIPE_LABEL}={recipe_digest(base)}", "ENV LANG=C.UTF-8",
               'CMD ["/bin/bash"]']
    try:
        client.api.import_image_from_file(str(tar), repository=repository, tag=tag, changes=changes)
        return client.images.get(ref).id
    except docker.errors.APIError as exc:
        raise KilnError(f"the engine refused to import {ref} ({exc.explanation or exc})", "invoke base",
                        "check the engine's free space (`docker system df`) and run again") from None


def _run(cmd: list[str], what: str) -> str:
    """A step of making the base; its failure names the step and the tool's last line."""
    try:
        out = subprocess.run(cmd, capture_output=True, text=True)
    except OSError as exc:
        raise KilnError(f"{what} failed: cannot run {cmd[0]} ({exc.strerror})", "invoke base",
                        f"install {cmd[0]}") from None
    if out.returncode != 0:
        last = (out.stderr.strip().splitlines() or ["no output"])[-1]
        raise KilnError(f"{what} failed ({cmd[0]} exited {out.returncode}: {last[:200]})", "invoke base",
                        "check free disk space and the Debian mirror, then run again") from None
    return out.stdout
