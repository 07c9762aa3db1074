"""The image's Python platform: PEP 508 marker environment and the wheel tags it installs, in order."""

from __future__ import annotations

from packaging.tags import Tag, compatible_tags, cpython_tags

from kiln.data.lock import Lock


def target_tags(lock: Lock) -> list[Tag]:
    major, minor = (int(x) for x in lock.stack.python.split(".")[:2])
    platforms = list(lock.resolve.wheel_platforms)
    return list(cpython_tags((major, minor), platforms=platforms)) + list(
        compatible_tags((major, minor), platforms=platforms))


def target_environment(lock: Lock) -> dict[str, str]:
    """PEP 508 marker environment of the image's Python on linux x86_64."""
    full = lock.resolve.python_full
    return {"python_version": ".".join(full.split(".")[:2]), "python_full_version": full,
            "implementation_name": "cpython", "implementation_version": full, "os_name": "posix",
            "platform_machine": "x86_64", "platform_system": "Linux", "sys_platform": "linux",
            "platform_python_implementation": "CPython", "platform_release": "", "platform_version": ""}
