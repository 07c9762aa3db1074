"""The cache side of a model file: its place (<cache>/models/<folder>/<file>, with .part, .lock and
.verified beside it), reached only through the model folder held open; folders and files owned by the
image's user when run as root; and the record that lets a re-run trust a file verified earlier without
hashing it again.

The cache is writable by the image's user (uid 10001), so a process in a container may have planted
anything in it, and a fetch often runs as root. So every file is opened relative to the folder's
descriptor with O_NOFOLLOW, owner and mode are set on the open descriptor, renames stay inside the
folder, and a symbolic link (or anything else that is not a regular file, or a file we write into that
has other hard links) is refused, as is a link in place of models/ or the model folder. The --to path
itself is the user's own choice and is followed.

The record holds the sha256 together with the file's size, inode, mtime and ctime, taken from the
verified descriptor. Any write to the file, a touch, chmod or chown, or a copy to another place changes
the ctime or inode, so a changed file no longer matches its record and is hashed again in full. The
record guards against accidents, not against a hostile writer: whoever can write the folder can write
a matching record too (--rehash is the check then)."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO, Callable

from kiln.data.image import ModelFile
from kiln.errors import KilnError
from kiln.identity import MODELS_DIR, UID
from kiln.models.cancel import check

READ_CHUNK = 4 << 20
RECORD_MAX = 4096
# O_NONBLOCK: opening a FIFO planted under a file's name must not hang (it is refused after the open)
NO_LINKS = os.O_NOFOLLOW | os.O_CLOEXEC | os.O_NONBLOCK
DIR_FLAGS = os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW | os.O_CLOEXEC
LINK_FIX = ("models.fetch does not follow links or write to odd files in the cache (a process in a container "
            "may have planted it): remove it and run again")


@dataclass(frozen=True)
class Place:
    final: Path
    part: Path
    lock: Path
    record: Path

    @property
    def shown(self) -> str:
        return f"{self.final.parent.name}/{self.final.name}"


def place(cache: Path, model: ModelFile) -> Place:
    folder = cache / MODELS_DIR / model.folder
    return Place(final=folder / model.file, part=folder / f"{model.file}.part", lock=folder / f"{model.file}.lock",
                 record=folder / f"{model.file}.verified")


class Folder:
    """A model folder held open: the files in it are opened, renamed and removed relative to its
    descriptor, never through a link."""

    def __init__(self, path: Path, fd: int):
        self.path, self.fd = path, fd

    def open(self, name: str, flags: int, mode: int = 0o644) -> int:
        """Open the regular file name; created (O_CREAT|O_EXCL) it is given to the image's user."""
        try:
            fd = os.open(name, flags | NO_LINKS, mode, dir_fd=self.fd)
        except OSError as exc:
            if exc.errno == errno.ELOOP:
                raise _odd(self.path / name, "is a symbolic link") from None
            raise
        try:
            info = os.fstat(fd)
            _plain(info, self.path / name)
            if flags & os.O_ACCMODE != os.O_RDONLY and not flags & os.O_EXCL and info.st_nlink != 1:
                raise _odd(self.path / name, f"has {info.st_nlink - 1} other hard link(s)")
            if flags & os.O_EXCL:
                own(fd, self.path / name)
        except BaseException:
            os.close(fd)
            raise
        return fd

    def stat(self, name: str) -> os.stat_result | None:
        """The regular file name's stat, None when there is none; anything else there is refused."""
        try:
            info = os.stat(name, dir_fd=self.fd, follow_symlinks=False)
        except FileNotFoundError:
            return None
        _plain(info, self.path / name)
        return info

    def unlink(self, name: str) -> None:
        try:
            os.unlink(name, dir_fd=self.fd)
        except FileNotFoundError:
            pass

    def replace(self, source: str, target: str) -> None:
        os.replace(source, target, src_dir_fd=self.fd, dst_dir_fd=self.fd)

    def sync(self) -> None:
        """Make a rename durable."""
        os.fsync(self.fd)

    def close(self) -> None:
        os.close(self.fd)


def _plain(info: os.stat_result, path: Path) -> None:
    if stat.S_ISLNK(info.st_mode):
        raise _odd(path, "is a symbolic link")
    if not stat.S_ISREG(info.st_mode):
        raise _odd(path, "is not a regular file")


def _odd(path: Path, what: str) -> KilnError:
    return KilnError(what, str(path), LINK_FIX)


def open_folder(cache: Path, name: str, created: list[Path]) -> Folder:
    """<cache>/models/<name>, each folder made where missing (mode 0775, owned like the cache) and
    appended to created; a link in place of either is refused."""
    path = cache
    try:
        fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    except OSError as exc:
        raise _folder_error(exc, cache) from None
    for part in (MODELS_DIR, name):
        path = path / part
        fd = _subfolder(fd, part, path, created)
    return Folder(path, fd)


def _subfolder(parent: int, name: str, path: Path, created: list[Path]) -> int:
    """Open (making it if missing) the folder name in parent, and close parent."""
    try:
        try:
            os.mkdir(name, 0o775, dir_fd=parent)
            made = True
        except FileExistsError:
            made = False
        fd = os.open(name, DIR_FLAGS, dir_fd=parent)
    except OSError as exc:
        raise _folder_error(exc, path, _is_link(parent, name)) from None
    finally:
        os.close(parent)
    if made:
        try:
            os.fchmod(fd, 0o775)   # like provision.cache, whatever the umask
            own(fd, path)
        except BaseException:
            os.close(fd)
            raise
        created.append(path)
    return fd


def _is_link(parent: int, name: str) -> bool:
    try:
        return stat.S_ISLNK(os.stat(name, dir_fd=parent, follow_symlinks=False).st_mode)
    except OSError:
        return False


def _folder_error(exc: OSError, path: Path, link: bool = False) -> KilnError:
    if link or exc.errno == errno.ELOOP:
        return KilnError("is a symbolic link", str(path),
                         "models.fetch does not follow links inside the cache: make it a real folder (or give --to "
                         "the folder the link points to)")
    if exc.errno == errno.ENOTDIR:
        return KilnError("exists and is not a folder", str(path), "move it away; the model goes there")
    return KilnError(f"cannot create the folder ({exc.strerror})", str(path),
                     "give --to a cache you can write (see `invoke provision.cache`)")


def own(fd: int, path: Path) -> None:
    """Give what we made to the image's user (uid/gid 10001) when running as root, like provision.cache."""
    if os.geteuid() != 0:
        return
    try:
        os.fchown(fd, UID, UID)
    except OSError as exc:
        what = "cannot hold file owners" if exc.errno in (errno.EPERM, errno.EINVAL) else exc.strerror
        raise KilnError(f"the cache's filesystem {what} (uid {UID})", str(path),
                        "use a local ext4/xfs disk for the cache") from None


def plain_size(path: Path) -> int | None:
    """The size of path when it is a regular file (not through a link), else None."""
    try:
        info = os.lstat(path)
    except OSError:
        return None
    return info.st_size if stat.S_ISREG(info.st_mode) else None


def recorded(folder: Folder, spot: Place, model: ModelFile) -> bool:
    """The file is the one verified earlier: same sha256 in the record, same size, inode, mtime and ctime."""
    try:
        fd = folder.open(spot.record.name, os.O_RDONLY)
    except OSError:
        return False
    with os.fdopen(fd, "rb") as handle:
        text = handle.read(RECORD_MAX)
    info = folder.stat(spot.final.name)
    try:
        record = json.loads(text)
    except ValueError:
        return False
    return info is not None and record == {"sha256": model.sha256, **_identity(info)}


def write_record(folder: Folder, spot: Place, model: ModelFile, info: os.stat_result) -> None:
    """Record that the file verified through a descriptor whose fstat is info is the manifest's."""
    text = json.dumps({"sha256": model.sha256, **_identity(info)}, sort_keys=True).encode()
    try:
        forget(folder, spot)
        fd = folder.open(spot.record.name, os.O_WRONLY | os.O_CREAT | os.O_EXCL)
        try:
            os.write(fd, text)
        finally:
            os.close(fd)
    except OSError as exc:
        raise KilnError(f"cannot write the verification record ({exc.strerror})", str(spot.record),
                        "check the cache's disk; the model itself is in place and verified") from None


def forget(folder: Folder, spot: Place) -> None:
    folder.stat(spot.record.name)     # a link or other odd file there is refused, not silently removed
    folder.unlink(spot.record.name)


def _identity(info: os.stat_result) -> dict[str, int]:
    return {"size": info.st_size, "inode": info.st_ino, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns}


def hash_into(handle: BinaryIO, digest, stop: threading.Event, on_bytes: Callable[[int], None] = lambda n: None) -> int:
    """Feed the bytes from handle's position to its end into digest; returns how many were read."""
    done = 0
    while chunk := handle.read(READ_CHUNK):
        check(stop)
        digest.update(chunk)
        done += len(chunk)
        on_bytes(done)
    return done


def hash_in_place(folder: Folder, name: str, stop: threading.Event) -> tuple[str, os.stat_result]:
    """The sha256 of the file name and its fstat taken before reading: a change while hashing or later
    moves the ctime on, so a record made from it cannot vouch for changed content."""
    with os.fdopen(folder.open(name, os.O_RDONLY), "rb") as handle:
        info = os.fstat(handle.fileno())
        digest = hashlib.sha256()
        hash_into(handle, digest, stop)
    return digest.hexdigest(), info
