"""Places on disk a user gives (a flag or an environment variable): a file read, a file written, a folder
written into, a cache folder used (and one mounted into the image, which its user must be able to write)
or one to be made. One check per kind, shared by every task, so a path one task refuses is refused by all
of them, in the same words, before any work starts.

Outputs are never written through a symbolic link: a link at the named place would send the bytes
somewhere the command line does not show. Inputs and caches may be links (caches often point at NVMe)."""

from __future__ import annotations

import errno
import functools
import os
from pathlib import Path

from kiln.arguments import path
from kiln.errors import KilnError
from kiln.identity import MODELS_DIR, UID


def _looked_at(check):
    """A path the system cannot even look at (a folder on the way unreadable, a name too long) is bad input too."""
    @functools.wraps(check)
    def wrapper(value: str, where: str) -> Path:
        try:
            return check(value, where)
        except OSError as exc:
            raise KilnError(f"cannot look at {value} ({exc.strerror})", where, "check the path and its folders' "
                            "permissions") from None
    return wrapper


@_looked_at
def input_file(value: str, where: str) -> Path:
    """An existing, readable regular file (a link to one is fine)."""
    file = path(value, where)
    fix = "give the path of an existing file"
    if not file.exists():
        what = "is a link to nothing" if file.is_symlink() else "does not exist"
        raise KilnError(f"{file} {what}", where, fix)
    if file.is_dir():
        raise KilnError(f"{file} is a folder, not a file", where, fix)
    if not file.is_file():
        raise KilnError(f"{file} is not a regular file", where, fix)
    if not os.access(file, os.R_OK):
        raise KilnError(f"{file} is not readable", where, "check its permissions")
    return file


@_looked_at
def output_file(value: str, where: str) -> Path:
    """A file to write (replaced when it exists): not a link, a folder or a device; its folder exists and is
    writable."""
    file = path(value, where)
    fix = "choose a writable file path"
    _not_a_link(file, where, fix)
    if file.is_dir():
        raise KilnError(f"{file} is a folder", where, "give a file path inside it")
    if file.exists() and not file.is_file():
        raise KilnError(f"{file} is not a regular file", where, fix)
    folder = file.parent
    if not folder.is_dir():
        raise KilnError(f"{folder} {'is not a folder' if folder.exists() else 'does not exist'}", where,
                        "create the folder first, or " + fix)
    _writable(file if file.exists() else folder, where, fix)
    return file


@_looked_at
def output_folder(value: str, where: str) -> Path:
    """A folder to write into, made when missing: not a link, not a file; the nearest existing folder on
    its way is writable."""
    folder = path(value, where)
    fix = "choose a writable folder"
    _not_a_link(folder, where, fix)
    if folder.exists() and not folder.is_dir():
        raise KilnError(f"{folder} exists and is not a folder", where, fix)
    _writable(_nearest(folder, where, fix), where, fix)
    return folder


@_looked_at
def cache_folder(value: str, where: str) -> Path:
    """An existing cache folder to use (a link to a folder is fine) whose models/, when there, is a folder."""
    folder = path(value, where)
    fix = f"give an existing cache folder (prepare one with `invoke provision.cache --path {folder}`)"
    if not folder.exists():
        what = "is a link to nothing" if folder.is_symlink() else "does not exist"
        raise KilnError(f"cache folder {folder} {what}", where, fix)
    if not folder.is_dir():
        raise KilnError(f"cache {folder} is not a folder", where, fix)
    models = folder / MODELS_DIR
    if models.exists() and not models.is_dir():
        raise KilnError(f"{models} exists and is not a folder", where, f"move it away: model files go in {models}/")
    return folder


@_looked_at
def mounted_cache(value: str, where: str) -> Path:
    """A cache folder mounted into the image: one to use, which the image's user (uid 10001) can write."""
    folder = cache_folder(value, where)
    fix = f"prepare it with `invoke provision.cache --path {folder}`"
    info = folder.stat()
    if info.st_uid != UID and not info.st_mode & 0o002:
        raise KilnError(f"cache {folder} is not writable by the image's user (uid {UID}); it belongs to uid "
                        f"{info.st_uid}", where, fix)
    if os.geteuid() == 0:
        _holds_owners(folder, where, fix)
    return folder


def _holds_owners(folder: Path, where: str, fix: str) -> None:
    """As root, a file given to the image's user: a vfat or FUSE mount cannot keep the owner (EPERM/EINVAL)."""
    probe = folder / f".kiln-uid-probe-{os.getpid()}"
    try:
        probe.write_bytes(b"")
        os.chown(probe, UID, UID)
    except OSError as exc:
        what = "cannot hold file owners (uid)" if exc.errno in (errno.EPERM, errno.EINVAL) else exc.strerror
        raise KilnError(f"the filesystem of cache {folder} {what}", where, "use a local ext4/xfs disk; " + fix) from None
    finally:
        probe.unlink(missing_ok=True)


@_looked_at
def new_cache_folder(value: str, where: str) -> Path:
    """A cache folder that is used when it exists and made when not (a link to a folder is fine)."""
    folder = path(value, where)
    fix = "give a folder path (made when missing) on a writable disk"
    if folder.is_symlink() and not folder.exists():
        raise KilnError(f"cache {folder} is a link to nothing", where, fix)
    if folder.exists() and not folder.is_dir():
        raise KilnError(f"cache {folder} exists and is not a folder", where, fix)
    _writable(_nearest(folder, where, fix), where, fix)
    return folder


def _not_a_link(place: Path, where: str, fix: str) -> None:
    if place.is_symlink():
        raise KilnError(f"{place} is a symbolic link (to {os.readlink(place)})", where,
                        "give the real path: kiln does not write through links; " + fix)


def _nearest(place: Path, where: str, fix: str) -> Path:
    """The place itself or its nearest existing ancestor, which must be a folder for the rest to be made."""
    probe = place.absolute()
    while not probe.exists() and probe != probe.parent:
        probe = probe.parent
    if not probe.is_dir():
        raise KilnError(f"{probe} is not a folder, so {place} cannot be made", where, fix)
    return probe


def _writable(place: Path, where: str, fix: str) -> None:
    if not os.access(place, os.W_OK):
        raise KilnError(f"{place} is not writable", where, fix)
