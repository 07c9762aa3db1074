"""One fetch per model file at a time, across processes: an exclusive flock on <file>.lock beside the
partial download. A second fetch of the same file waits (saying who holds it), then finds the file
verified. The holder removes the lock file before releasing it; a waiter that then holds a lock on
the removed file notices (the name no longer names its inode) and locks the new one instead.

The lock file is opened through the model folder like every other file (no link followed). One that
exists and that we may not write (another user's) is opened read-only: flock needs no write access,
so a second user waits too instead of failing."""

from __future__ import annotations

import fcntl
import os
import threading
from contextlib import contextmanager
from typing import Callable, Iterator

from kiln.errors import KilnError
from kiln.models.cancel import Stopped
from kiln.models.store import Folder

POLL_S = 0.2


@contextmanager
def held(folder: Folder, name: str, stop: threading.Event, on_wait: Callable[[str], None]) -> Iterator[None]:
    """Hold the lock file name's lock for the block; on_wait(holder) is called once when another process holds it."""
    fd = _acquire(folder, name, stop, on_wait)
    try:
        if fcntl.fcntl(fd, fcntl.F_GETFL) & os.O_ACCMODE != os.O_RDONLY:
            os.ftruncate(fd, 0)
            os.write(fd, f"{os.getpid()}\n".encode())
        yield
    finally:
        try:
            folder.unlink(name)
        except PermissionError:
            pass        # another user's lock file in a folder we may not write: it stays, holding no lock
        os.close(fd)


def _acquire(folder: Folder, name: str, stop: threading.Event, on_wait: Callable[[str], None]) -> int:
    told = False
    while True:
        fd = _open(folder, name)
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
        if _still_named(folder, name, fd):
            return fd
        os.close(fd)


def _open(folder: Folder, name: str) -> int:
    """The lock file: made by us (owned by the image's user), or the one that exists."""
    while True:
        try:
            try:
                return folder.open(name, os.O_RDWR | os.O_CREAT | os.O_EXCL)
            except FileExistsError:
                pass
            try:
                return folder.open(name, os.O_RDWR)
            except PermissionError:
                return folder.open(name, os.O_RDONLY)
        except FileNotFoundError:
            continue        # removed by its holder between the two opens: make it
        except OSError as exc:
            raise KilnError(f"cannot create the lock file ({exc.strerror})", str(folder.path / name),
                            "give --to a cache you can write") from None


def _try_lock(fd: int) -> bool:
    try:
        fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        return True
    except BlockingIOError:
        return False


def _holder(fd: int) -> str:
    pid = os.pread(fd, 16, 0).decode(errors="replace").strip()
    return f"pid {pid}" if pid.isdigit() else "another process"


def _still_named(folder: Folder, name: str, fd: int) -> bool:
    try:
        return os.stat(name, dir_fd=folder.fd, follow_symlinks=False).st_ino == os.fstat(fd).st_ino
    except FileNotFoundError:
        return False
