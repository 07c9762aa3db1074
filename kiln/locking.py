"""`invoke lock`: re-resolve versions.lock from its inputs, or check that it is current."""

from __future__ import annotations

from pathlib import Path

from .errors import KilnError
from .lockfile import consistency_problems, load_lock, target_environment
from .lockwrite import lock_text
from .resolve import resolve_packages


def relock(path: Path) -> tuple[bool, int]:
    """Resolve again and rewrite when anything changed; returns (changed, package count)."""
    lock = load_lock(path)
    packages = resolve_packages(lock)
    text = lock_text(lock.raw, packages)
    changed = text != path.read_text(encoding="utf-8")
    if changed:
        tmp = path.with_name(path.name + ".tmp")
        tmp.write_text(text, encoding="utf-8")
        tmp.replace(path)
    return changed, len(packages)


def check_lock(path: Path, resolve: bool = False) -> int:
    """Raise when the lock is stale or inconsistent (or, with resolve, differs from a fresh resolution)."""
    lock = load_lock(path)
    problems = consistency_problems(lock, target_environment(lock))
    if problems:
        raise KilnError(problems[0] + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                        str(path), "run `invoke lock` to regenerate it")
    if resolve and lock_text(lock.raw, resolve_packages(lock)) != path.read_text(encoding="utf-8"):
        raise KilnError("a fresh resolution differs from [packages]", str(path), "run `invoke lock` and review the diff")
    return len(lock.packages)
