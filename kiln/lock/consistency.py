"""Ways versions.lock can disagree with itself: stale inputs, wheels that do not match their versions,
requirements the locked set does not satisfy. Pure: reads the loaded lock only."""

from __future__ import annotations

from functools import lru_cache

from packaging.markers import InvalidMarker, Marker
from packaging.requirements import InvalidRequirement, Requirement
from packaging.utils import InvalidWheelFilename, canonicalize_name, parse_wheel_filename

from kiln.data.lock import Lock, Package, inputs_digest, packages_digest


def consistency_problems(lock: Lock, environment: dict[str, str]) -> list[str]:
    """Ways the lock disagrees with itself: stale inputs, bad hashes, unsatisfied or mismatched pins."""
    problems = []
    if inputs_digest(lock.raw) != lock.inputs_sha256:
        problems.append(f"{lock.table('stack')}, {lock.table('comfyui')} or {lock.table('resolve')} changed since "
                        f"{lock.table('packages')} was resolved; run `invoke lock`")
    if lock.resolve.as_of < lock.comfyui.released:
        problems.append(f"{lock.table('resolve')}.as_of {lock.resolve.as_of} is before ComfyUI {lock.comfyui.version} was released "
                        f"({lock.comfyui.released}); resolve as of its release date or later")
    for pkg in lock.packages.values():
        problems += _package_problems(pkg, lock, environment)
    edited = any(pkg.entry_sha256 != pkg.entry_digest() for pkg in lock.packages.values())
    if not edited and packages_digest(lock.packages) != lock.packages_sha256:
        problems.append(f"{lock.table('packages')} entries were added or removed by hand since `invoke lock` wrote them")
    for text in lock.top_requirements():
        req = _requirement(text)
        if req is not None and lock.package(req.name) is None:
            problems.append(f"{req.name} is required by {lock.table('stack')}/{lock.table('comfyui')} but {lock.table('packages')} "
                            "does not pin it")
    if not lock.stack.has_xformers and lock.package("xformers") is not None:
        problems.append(f"{lock.table('stack')} xformers is none but {lock.table('packages.xformers')} pins "
                        f"{lock.package('xformers').version}; run `invoke lock`")
    for name in lock.stack.pinned_packages():
        pkg = lock.package(name)
        want = getattr(lock.stack, name)
        if pkg is None or _public(pkg.version) != want:
            got = pkg.version if pkg else "missing"
            problems.append(f"{lock.table('stack')} {name} is {want} but {lock.table('packages.' + name)} is {got}; run `invoke lock`")
    return problems


def _package_problems(pkg: Package, lock: Lock, environment: dict[str, str]) -> list[str]:
    problems = []
    if pkg.entry_sha256 != pkg.entry_digest():
        problems.append(f"{lock.table('packages.' + pkg.name)} was edited by hand: its version, wheel, url, sha256, requires or "
                        "marker no longer match its entry_sha256")
    if _wheel_version(pkg.wheel) != pkg.version:
        problems.append(f"{lock.table('packages.' + pkg.name)} version {pkg.version} disagrees with its wheel {pkg.wheel}")
    if pkg.marker and not _applies(pkg.marker, environment):
        problems.append(f"{lock.table('packages.' + pkg.name)} is only for '{pkg.marker}', which the image's platform is not")
    for text in pkg.requires:
        problems += _requirement_problem(pkg, text, lock, environment)
    return problems


def _applies(marker: str, environment: dict[str, str]) -> bool:
    try:
        return Marker(marker).evaluate({**environment, "extra": ""})
    except InvalidMarker:
        return False


@lru_cache(maxsize=None)
def _requirement(text: str) -> Requirement | None:
    try:
        return Requirement(text)
    except InvalidRequirement:
        return None


def _requirement_problem(pkg: Package, text: str, lock: Lock, environment: dict[str, str]) -> list[str]:
    req = _requirement(text)
    if req is None:
        return [f"{lock.table('packages.' + pkg.name)} has an unreadable requirement '{text}'"]
    if req.marker and not req.marker.evaluate({**environment, "extra": ""}):
        return []
    dep = lock.package(req.name)
    if dep is None:
        return [f"{lock.table('packages.' + pkg.name)} requires {req.name} which the lock does not pin; run `invoke lock`"]
    if req.specifier and not req.specifier.contains(dep.version, prereleases=True):
        return [f"{lock.table('packages.' + pkg.name)} requires {req.name}{req.specifier} but the lock pins {dep.version}"]
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


