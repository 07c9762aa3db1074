"""The cache side of a model file: its place (<cache>/models/<folder>/<file>, with .part, .lock and
.verified beside it), folders and files owned by the image's user when run as root, and the record
that lets a re-run trust a file verified earlier without hashing it again.

The record holds the sha256 together with the file's size, inode, mtime and ctime as they were right
after verification. Any write to the file, a touch, chmod or chown, or a copy to another place changes
the ctime or inode, so a changed file no longer matches its record and is hashed again in full."""

from __future__ import annotations

import errno
import hashlib
import json
import os
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from kiln.data.image import ModelFile
from kiln.errors import KilnError
from kiln.identity import MODELS_DIR, UID
from kiln.models.cancel import check

READ_CHUNK = 4 << 20


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


def own(path: Path) -> None:
    """Give what we made to the image's user (uid/gid 10001) when running as root, like provision.cache."""
    if os.geteuid() != 0:
        return
    try:
        os.chown(path, UID, UID)
    except OSError as exc:
        what = "cannot hold file owners" if exc.errno in (errno.EPERM, errno.EINVAL) else exc.strerror
        raise KilnError(f"the cache's filesystem {what} (uid {UID})", str(path),
                        "use a local ext4/xfs disk for the cache") from None


def make_folders(cache: Path, folder: Path) -> list[Path]:
    """Create folder (under cache) and any missing parents, owned like the cache; returns those created."""
    created, parts = [], folder.relative_to(cache).parts
    for depth in range(1, len(parts) + 1):
        target = cache.joinpath(*parts[:depth])
        if target.is_dir():
            continue
        try:
            target.mkdir(mode=0o775)
        except FileExistsError:
            if not target.is_dir():
                raise KilnError("exists and is not a folder", str(target), "move it away; the model goes there") from None
            continue
        except OSError as exc:
            raise KilnError(f"cannot create the folder ({exc.strerror})", str(target),
                            "give --to a cache you can write (see `invoke provision.cache`)") from None
        os.chmod(target, 0o775)   # like provision.cache, whatever the umask
        own(target)
        created.append(target)
    return created


def recorded(spot: Place, model: ModelFile) -> bool:
    """The file is the one verified earlier: same sha256 in the record, same size, inode, mtime and ctime."""
    try:
        record = json.loads(spot.record.read_text())
        info = spot.final.stat()
    except (OSError, ValueError):
        return False
    return record == {"sha256": model.sha256, **_identity(info)}


def write_record(spot: Place, model: ModelFile) -> None:
    try:
        spot.record.write_text(json.dumps({"sha256": model.sha256, **_identity(spot.final.stat())}, sort_keys=True))
        own(spot.record)
    except OSError as exc:
        raise KilnError(f"cannot write the verification record ({exc.strerror})", str(spot.record),
                        "check the cache's disk; the model itself is in place and verified") from None


def forget(spot: Place) -> None:
    spot.record.unlink(missing_ok=True)


def _identity(info: os.stat_result) -> dict[str, int]:
    return {"size": info.st_size, "inode": info.st_ino, "mtime_ns": info.st_mtime_ns, "ctime_ns": info.st_ctime_ns}


def hash_into(path: Path, digest, stop: threading.Event, on_bytes: Callable[[int], None] = lambda n: None) -> int:
    """Feed path's bytes into digest; returns how many were read."""
    done = 0
    with open(path, "rb") as handle:
        while chunk := handle.read(READ_CHUNK):
            check(stop)
            digest.update(chunk)
            done += len(chunk)
            on_bytes(done)
    return done


def sha256_of(path: Path, stop: threading.Event) -> str:
    digest = hashlib.sha256()
    hash_into(path, digest, stop)
    return digest.hexdigest()


def sync_folder(folder: Path) -> None:
    """Make a rename durable: fsync the folder that holds it."""
    fd = os.open(folder, os.O_RDONLY)
    try:
        os.fsync(fd)
    finally:
        os.close(fd)
