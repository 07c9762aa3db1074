"""What the answer to a removal means, read in one place for every cleanup path (containers, images, tags,
temp folders). On a busy host a removal often meets one already under way: the engine removing the
intermediate container of a build it is cancelling, another cleanup, a folder emptied meanwhile. Those
answers are outcomes, not failures. Read from the status code and the engine's words, so this module needs
no engine client (the pure stages may use it too)."""

from __future__ import annotations

import errno
import shutil
from enum import Enum
from pathlib import Path

from kiln.errors import KilnError


class Removal(Enum):
    REMOVED = "removed"
    GONE = "already gone"                     # 404, "no such container/image", a missing file
    BEING_REMOVED = "already being removed"   # 409 "removal of container ... is already in progress"
    IN_USE = "still in use"                   # any other 409 conflict, a busy mount

    @property
    def done(self) -> bool:
        """Nothing is left to remove: removed, gone, or being removed by someone else."""
        return self is not Removal.IN_USE


def answer(exc: BaseException) -> Removal | None:
    """What a refused removal means; None when it is none of the known answers (a real failure)."""
    if isinstance(exc, FileNotFoundError):
        return Removal.GONE
    if isinstance(exc, OSError) and exc.errno in (errno.EBUSY, errno.ENOTEMPTY):
        return Removal.IN_USE
    text = reason(exc).lower()
    status = getattr(exc, "status_code", None)
    if "already in progress" in text:
        return Removal.BEING_REMOVED
    if status == 404 or "no such container" in text or "no such image" in text:
        return Removal.GONE
    if status == 409:
        return Removal.IN_USE
    return None


def reason(exc: BaseException) -> str:
    """The engine's own words when it gave some, else the exception's text."""
    return str(getattr(exc, "explanation", None) or exc).strip()[:200]


def remove_tree(path: Path) -> Removal:
    """Remove a folder the toolkit made (gone already is fine); anything else is one KilnError naming it."""
    failures: list[BaseException] = []

    def keep(_func, _path, exc_info) -> None:
        if answer(exc_info[1]) is not Removal.GONE:   # a file that vanished meanwhile is not a failure
            failures.append(exc_info[1])

    if not path.exists():
        return Removal.GONE
    shutil.rmtree(path, onerror=keep)
    if failures:
        state = "still in use" if answer(failures[0]) is Removal.IN_USE else "could not be removed"
        raise KilnError(f"temporary folder {state} ({reason(failures[0])})", str(path),
                        f"remove it with `rm -rf {path}`")
    return Removal.REMOVED
