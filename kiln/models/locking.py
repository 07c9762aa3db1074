"""One fetch per model file at a time, across processes: an exclusive flock on <file>.lock beside the
partial download. A second fetch of the same file waits (saying who holds it), then finds the file
verified. The holder removes the lock file before releasing it; a waiter that then holds a lock on
the removed file notices (the path no longer names its inode) and locks the new one instead."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from kiln.errors import KilnError
from kiln.models.cancel import Stopped
from kiln.models.store import own

POLL_S = 0.2


@contextmanager
def held(path: Path, stop: threading.Event, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold path's lock for the block; on_wait(holder) is called once when another process holds it."""
    fd = _acquire(path, stop, on_wait)
    try:
        os.ftruncate(fd, 0)
        os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        path.unlink(missing_ok=True)
        os.close(fd)


def _acquire(path: Path, stop: threading.Event, on_wait: Callable[[str], None]) -> int:
    told = False
    while True:
        try:
            fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
        except OSError as exc:
            raise KilnError(f"cannot create the lock file ({exc.strerror})", str(path),
                            "give --to a cache you can write") from None
        own(path)
        try:
            while not _try_lock(fd):
                if not told:
                    on_wait(_holder(fd))
                    told = True
                if stop.wait(POLL_S):
                    raise Stopped()
        except BaseException:
            os.close(fd)
            raise
        if _still_named(path, fd):
            return fd
        os.close(fd)


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holder(fd: int) -> str:
    pid = os.pread(fd, 16, 0).decode(errors="replace").strip()
    return f"pid {pid}" if pid.isdigit() else "another process"


def _still_named(path: Path, fd: int) -> bool:
    try:
        return os.stat(path).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
