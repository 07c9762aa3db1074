"""versions.lock: the single source of every pin, its loading, digest and self-consistency."""

from __future__ import annotations

import hashlib
import json
import re
from dataclasses import dataclass
from functools import lru_cache
from pathlib import Path
from typing import Any

from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from .errors import KilnError
from .loading import Fields, read_toml

INPUT_SECTIONS = ("stack", "comfyui", "resolve")
STACK_PACKAGES = ("torch", "torchvision", "torchaudio", "xformers")
_SHA256 = re.compile(r"^[0-9a-f]{64}$")


@dataclass(frozen=True)
class Package:
    name: str
    version: str
    wheel: str
    url: str
    sha256: str
    requires: tuple[str, ...]
    marker: str = ""


@dataclass(frozen=True)
class Stack:
    python: str
    torch: str
    torchvision: str
    torchaudio: str
    xformers: str
    cuda: str
    cudnn: str
    cuda_runtime_package: str
    cudnn_package: str
    driver_floor: str
    driver_recommended: str
    nvidia_require_cuda: str
    torch_sass: tuple[str, ...]
    torch_ptx: tuple[str, ...]


@dataclass(frozen=True)
class ComfyUI:
    version: str
    repo: str
    commit: str
    released: str
    requirements: tuple[str, ...]


@dataclass(frozen=True)
class Resolve:
    as_of: str
    index: str
    python_full: str
    uv_platform: str
    wheel_platforms: tuple[str, ...]


@dataclass(frozen=True)
class Base:
    name: str
    kind: str  # "debootstrap" (built locally) or "registry" (pinned by digest)
    python: str
    settings: dict[str, Any]


@dataclass(frozen=True)
class Lock:
    path: Path
    raw: dict[str, Any]
    stack: Stack
    comfyui: ComfyUI
    resolve: Resolve
    bases: dict[str, Base]
    default_base: str
    packages: dict[str, Package]
    inputs_sha256: str
    digest: str  # sha256 of the whole file, carried by every image built from it

    def top_requirements(self) -> list[str]:
        return [f"{name}=={getattr(self.stack, name)}" for name in STACK_PACKAGES] + list(self.comfyui.requirements)

    def package(self, name: str) -> Package | None:
        return self.packages.get(canonicalize_name(name))


def inputs_digest(raw: dict[str, Any]) -> str:
    inputs = {section: raw.get(section, {}) for section in INPUT_SECTIONS}
    return hashlib.sha256(json.dumps(inputs, sort_keys=True).encode()).hexdigest()


def load_lock(path: Path) -> Lock:
    raw = read_toml(path)
    digest = hashlib.sha256(path.read_bytes()).hexdigest()
    where = str(path)
    top = Fields(raw, where)
    meta = top.sub("lock")
    lock = Lock(
        path=path, raw=raw,
        stack=_stack(top.sub("stack")), comfyui=_comfyui(top.sub("comfyui")), resolve=_resolve(top.sub("resolve")),
        bases=_bases(top.sub("bases")), default_base=meta.get("default_base", str),
        packages=_packages(top.sub("packages", {})), inputs_sha256=meta.get("inputs_sha256", str), digest=digest,
    )
    if lock.default_base not in lock.bases:
        raise KilnError(f"lock.default_base '{lock.default_base}' is not one of [bases] ({', '.join(lock.bases)})",
                        where, "name a defined base")
    return lock


def _stack(f: Fields) -> Stack:
    text = {k: f.get(k, str) for k in Stack.__dataclass_fields__ if k not in ("torch_sass", "torch_ptx")}
    return Stack(**text, torch_sass=f.strings("torch_sass"), torch_ptx=f.strings("torch_ptx"))


def _comfyui(f: Fields) -> ComfyUI:
    commit = f.get("commit", str)
    if not re.fullmatch(r"[0-9a-f]{40}", commit):
        raise KilnError(f"comfyui.commit '{commit}' is not a full 40-hex commit id", f.where,
                        "pin the full commit hash")
    return ComfyUI(version=f.get("version", str), repo=f.get("repo", str), commit=commit,
                   released=f.get("released", str), requirements=f.strings("requirements"))


def _resolve(f: Fields) -> Resolve:
    return Resolve(as_of=f.get("as_of", str), index=f.get("index", str), python_full=f.get("python_full", str),
                   uv_platform=f.get("uv_platform", str), wheel_platforms=f.strings("wheel_platforms"))


def _bases(f: Fields) -> dict[str, Base]:
    bases = {}
    for name in f.keys():
        b = f.sub(name)
        kind = b.get("kind", str)
        if kind not in ("debootstrap", "registry"):
            raise KilnError(f"bases.{name}.kind '{kind}' is unknown", f.where, "use 'debootstrap' or 'registry'")
        bases[name] = Base(name=name, kind=kind, python=b.get("python", str), settings=dict(b.data))
    return bases


def _packages(f: Fields) -> dict[str, Package]:
    packages = {}
    for name in f.keys():
        p = f.sub(name)
        packages[canonicalize_name(name)] = Package(
            name=name, version=p.get("version", str), wheel=p.get("wheel", str), url=p.get("url", str),
            sha256=p.get("sha256", str), requires=p.strings("requires", ()), marker=p.get("marker", str, ""))
    return packages


def consistency_problems(lock: Lock, environment: dict[str, str]) -> list[str]:
    """Ways the lock disagrees with itself: stale inputs, bad hashes, unsatisfied or mismatched pins."""
    problems = []
    if inputs_digest(lock.raw) != lock.inputs_sha256:
        problems.append("[stack]/[comfyui]/[resolve] changed since [packages] was resolved; run `invoke lock`")
    for pkg in lock.packages.values():
        problems += _package_problems(pkg, lock, environment)
    for name in STACK_PACKAGES:
        pkg = lock.package(name)
        want = getattr(lock.stack, name)
        if pkg is None or _public(pkg.version) != want:
            got = pkg.version if pkg else "missing"
            problems.append(f"stack.{name} is {want} but [packages.{name}] is {got}; run `invoke lock`")
    return problems


def _package_problems(pkg: Package, lock: Lock, environment: dict[str, str]) -> list[str]:
    problems = []
    if not _SHA256.match(pkg.sha256):
        problems.append(f"[packages.{pkg.name}] sha256 is not 64 lowercase hex digits")
    if _wheel_version(pkg.wheel) != pkg.version:
        problems.append(f"[packages.{pkg.name}] version {pkg.version} disagrees with its wheel {pkg.wheel}")
    for text in pkg.requires:
        problems += _requirement_problem(pkg, text, lock, environment)
    return problems


@lru_cache(maxsize=None)
def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _requirement_problem(pkg: Package, text: str, lock: Lock, environment: dict[str, str]) -> list[str]:
    req = _requirement(text)
    if req is None:
        return [f"[packages.{pkg.name}] has an unreadable requirement '{text}'"]
    if req.marker and not req.marker.evaluate({**environment, "extra": ""}):
        return []
    dep = lock.package(req.name)
    if dep is None:
        return [f"[packages.{pkg.name}] requires {req.name} which the lock does not pin; run `invoke lock`"]
    if req.specifier and not req.specifier.contains(dep.version, prereleases=True):
        return [f"[packages.{pkg.name}] requires {req.name}{req.specifier} but the lock pins {dep.version}"]
    return []


def _wheel_version(filename: str) -> str:
    try:
        return str(parse_wheel_filename(filename)[1])
    except InvalidWheelFilename:
        return "?"


def _public(version: str) -> str:
    return version.split("+", 1)[0]


def requirement_pins(lock: Lock, package: str, dependency: str) -> str:
    """The specifier that a locked wheel puts on one dependency (e.g. xformers on torch), '' if none."""
    pkg = lock.package(package)
    for text in pkg.requires if pkg else ():
        req = _requirement(text)
        if req and canonicalize_name(req.name) == canonicalize_name(dependency):
            return str(req.specifier)
    return ""


def target_environment(lock: Lock) -> dict[str, str]:
    """PEP 508 marker environment of the image's Python on linux x86_64."""
    full = lock.resolve.python_full
    return {"python_version": ".".join(full.split(".")[:2]), "python_full_version": full,
            "implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
            "platform_machine": "x86_64", "platform_system": "Linux", "sys_platform": "linux",
            "platform_python_implementation": "CPython", "platform_release": "", "platform_version": ""}
