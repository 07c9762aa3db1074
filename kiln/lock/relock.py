"""`invoke lock`: re-resolve versions.lock from its inputs, or check that it is current."""

from __future__ import annotations

from pathlib import Path

from kiln.data.lock import read_lock
from kiln.errors import KilnError
from kiln.lock.consistency import consistency_problems
from kiln.lock.platform import target_environment
from kiln.lock.resolve import resolve_packages
from kiln.lock.write import lock_text


def relock(path: Path) -> dict[str, tuple[bool, int]]:
    """Resolve every stack again and rewrite when anything changed; returns (changed, package count) per stack."""
    current = path.read_text(encoding="utf-8")
    text, result, stacks = current, {}, read_lock(path)
    for name in stacks.names:
        packages = resolve_packages(stacks.stack(name))
        before, text = text, lock_text(text, name, packages)
        result[name] = (text != before, len(packages))
    if text != current:
        tmp = path.with_name(path.name + ".tmp")
        try:
            tmp.write_text(text, encoding="utf-8")
            tmp.replace(path)
        except OSError as exc:
            tmp.unlink(missing_ok=True)
            raise KilnError(f"cannot write the lock ({exc.strerror})", str(path), "check free space and permissions") from None
    return result


def check_lock(path: Path, resolve: bool = False, shown: str = "") -> dict[str, int]:
    """Raise when a stack is stale or inconsistent (or, with resolve, differs from a fresh resolution);
    returns the package count per stack."""
    counts, stacks = {}, read_lock(path, shown)
    text = path.read_text(encoding="utf-8")
    for name in stacks.names:
        lock = stacks.stack(name)
        problems = consistency_problems(lock, target_environment(lock))
        if problems:
            first = problems[0].removesuffix("; run `invoke lock`")
            raise KilnError(first + (f" (and {len(problems) - 1} more)" if len(problems) > 1 else ""),
                            shown or str(path), "run `invoke lock` to regenerate it")
        if resolve and lock_text(text, name, resolve_packages(lock)) != text:
            raise KilnError(f"stack '{name}': a fresh resolution differs from its [packages]", shown or str(path),
                            "run `invoke lock` and review the diff")
        counts[name] = len(lock.packages)
    return counts
