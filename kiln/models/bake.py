"""`invoke build --bake-models`: the image's manifest files, taken from a cache `invoke models.fetch` filled,
verified again (size and sha256, read in full) and held open, so that the bytes streamed into the build
context are the bytes verified.

The `.verified` records beside the files are not used: they guard a fetch against accidents, not against a
writer in the cache (any process in a container runs as the cache's owner and could write a matching record,
kiln/models/store.py), and a baked image is what a marketplace ships. Each file is opened without following
links, hashed through that descriptor, and streamed later from the same descriptor, hashed again while it is
sent (and its fstat compared), so a change in between aborts the build instead of baking unverified bytes."""

from __future__ import annotations

import errno
import hashlib
import os
import stat
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from kiln.data.records.build import BakedModelFile, BakedModels
from kiln.data.image import ModelFile
from kiln.errors import KilnError
from kiln.events import Event, Listener, ignore
from kiln.identity import BAKED_MODELS_DIR, MODELS_DIR, MODELS_LABEL, MODELS_SHA_LABEL
from kiln.models.store import DIR_FLAGS, NO_LINKS, READ_CHUNK, hash_into

CONTEXT_DIR = "baked-models"     # where the files sit in the build context


@dataclass(frozen=True)
class BakedFile:
    model: ModelFile
    fd: int
    identity: tuple[int, int, int, int]   # size, inode, mtime_ns, ctime_ns when it was verified

    @property
    def context_name(self) -> str:
        return f"{CONTEXT_DIR}/{self.model.folder}/{self.model.file}"

    @property
    def image_path(self) -> str:
        return f"{BAKED_MODELS_DIR}/{self.model.folder}/{self.model.file}"

    def chunks(self) -> Iterator[bytes]:
        """The file's bytes from its verified descriptor, hashed again on the way (no second read). The last
        chunk is held back until size, digest and fstat match what was verified, so the engine never
        receives a whole changed file: a change aborts the stream before its end."""
        offset, size, digest, held = 0, self.model.size, hashlib.sha256(), b""
        while offset < size:
            chunk = os.pread(self.fd, min(READ_CHUNK, size - offset), offset)
            if not chunk:
                break
            offset += len(chunk)
            digest.update(chunk)
            if held:
                yield held
            held = chunk
        if offset != size or digest.hexdigest() != self.model.sha256 or _identity(os.fstat(self.fd)) != self.identity:
            raise KilnError(f"{self.model.folder}/{self.model.file} changed in the cache while it was baked",
                            "--models-from", "leave the cache alone while `invoke build --bake-models` runs, and build again")
        if held:
            yield held


def verify_models(models: tuple[ModelFile, ...], cache: Path, on_event: Listener = ignore) -> list[BakedFile]:
    """Every manifest file, present, of its size and sha256, held open; one error naming every problem."""
    if not models:
        raise KilnError("the image's spec has no `models:` manifest to bake", "--bake-models",
                        "bake an image whose spec lists `models:` (for example --image z-image-turbo)")
    if not cache.is_dir():
        raise KilnError("the model cache is not a folder", f"--models-from {cache}",
                        "give the folder `invoke models.fetch --to` filled")
    held: list[BakedFile] = []
    problems: list[str] = []
    stop = threading.Event()
    try:
        for model in models:
            on_event(Event("phase", f"verifying {model.folder}/{model.file} ({model.size / 1e9:.2f} GB)"))
            baked, problem = _verify(cache, model, stop)
            if baked:
                held.append(baked)
            else:
                problems.append(problem)
    except BaseException:
        close_all(held)
        raise
    if problems:
        close_all(held)
        raise KilnError("cannot bake: " + "; ".join(problems), f"--models-from {cache}",
                        "fetch the models again with `invoke models.fetch --gpu=... --image ... --to "
                        f"{cache} --rehash`, then build again")
    return held


def _verify(cache: Path, model: ModelFile, stop: threading.Event) -> tuple[BakedFile | None, str]:
    shown = f"{MODELS_DIR}/{model.folder}/{model.file}"
    try:
        fd = _open(cache, model)
    except FileNotFoundError:
        return None, f"{shown} is missing"
    except OSError as exc:
        if exc.errno == errno.ELOOP:
            return None, f"{shown} is a symbolic link (not followed: bake the real file)"
        return None, f"{shown} cannot be read ({exc.strerror or exc})"
    try:
        info = os.fstat(fd)
        if not stat.S_ISREG(info.st_mode):
            raise _Bad("is not a regular file")
        if info.st_size != model.size:
            raise _Bad(f"has {info.st_size} bytes, the manifest says {model.size}")
        digest = hashlib.sha256()
        with os.fdopen(os.dup(fd), "rb") as handle:
            hash_into(handle, digest, stop)
        if digest.hexdigest() != model.sha256:
            raise _Bad(f"has sha256 {digest.hexdigest()[:16]}..., the manifest says {model.sha256[:16]}...")
        if _identity(os.fstat(fd)) != _identity(info):
            raise _Bad("changed while it was hashed")
    except _Bad as bad:
        os.close(fd)
        return None, f"{shown} {bad}"
    except BaseException:
        os.close(fd)
        raise
    return BakedFile(model, fd, _identity(info)), ""


class _Bad(Exception):
    pass


def _open(cache: Path, model: ModelFile) -> int:
    """The model file, reached from the cache folder without following a link below it."""
    fd = os.open(cache, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
    try:
        for part in (MODELS_DIR, model.folder):
            child = os.open(part, DIR_FLAGS, dir_fd=fd)
            os.close(fd)
            fd = child
        return os.open(model.file, os.O_RDONLY | NO_LINKS, dir_fd=fd)
    finally:
        os.close(fd)


def _identity(info: os.stat_result) -> tuple[int, int, int, int]:
    return info.st_size, info.st_ino, info.st_mtime_ns, info.st_ctime_ns


def close_all(files: list[BakedFile]) -> None:
    for baked in files:
        try:
            os.close(baked.fd)
        except OSError:
            pass


def bake_labels(files: list[BakedFile]) -> dict[str, str]:
    return {MODELS_LABEL: "baked",
            MODELS_SHA_LABEL: ",".join(f"{b.model.folder}/{b.model.file}={b.model.sha256}" for b in files)}


def bake_record(files: list[BakedFile], cache: Path) -> BakedModels:
    return BakedModels(baked=True, source=str(cache), path=BAKED_MODELS_DIR,
                       files=tuple(BakedModelFile(folder=b.model.folder, file=b.model.file, size=b.model.size,
                                                  sha256=b.model.sha256) for b in files))
