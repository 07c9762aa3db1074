"""`invoke lock`: re-resolve versions.lock from its inputs, or check that it is current."""

from __future__ import annotations

from pathlib import Path

from kiln.data.lock import load_lock
from kiln.errors import KilnError
from kiln.lock.consistency import consistency_problems
from kiln.lock.platform import target_environment
from kiln.lock.resolve import resolve_packages
from kiln.lock.write import lock_text


def relock(path: Path) -> tuple[bool, int]:
    """Resolve again and rewrite when anything changed; returns (changed, package count)."""
    lock = load_lock(path)
    packages = resolve_packages(lock)
    current = path.read_text(encoding="utf-8")
    text = lock_text(current, packages)
    if text != current:
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KilnError(f"cannot write the lock ({exc.strerror})", str(path), "check free space and permissions") from None
    return text != current, len(packages)


def check_lock(path: Path, resolve: bool = False, shown: str = "") -> int:
    """Raise when the lock is stale or inconsistent (or, with resolve, differs from a fresh resolution)."""
    lock = load_lock(path, shown)
    problems = consistency_problems(lock, target_environment(lock))
    if problems:
        first = problems[0].removesuffix("; run `invoke lock`")
        raise KilnError(first + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                        shown or str(path), "run `invoke lock` to regenerate it")
    if resolve and lock_text(path.read_text(encoding="utf-8"), resolve_packages(lock)) != path.read_text(encoding="utf-8"):
        raise KilnError("a fresh resolution differs from [packages]", str(path), "run `invoke lock` and review the diff")
    return len(lock.packages)
