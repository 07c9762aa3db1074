"""The build context as a tar stream: rendered files plus the ComfyUI source (and, baked, the model files),
with normalised metadata. The tar is produced block by block while the engine reads it: nothing is written
to a temporary file and no file is ever held whole in memory (baked models are tens of GB)."""

from __future__ import annotations

import os
import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterable, Iterator

from kiln.errors import KilnError

CHUNK = 1 << 20


@dataclass(frozen=True)
class Entry:
    name: str
    size: int
    mode: int
    chunks: Callable[[], Iterator[bytes]]   # exactly size bytes


def context_entries(rendered: Path, comfyui_files: dict[str, Path]) -> list[Entry]:
    paths = {str(p.relative_to(rendered)): p for p in sorted(rendered.rglob("*")) if p.is_file()}
    paths.update({f"comfyui/{name}": path for name, path in sorted(comfyui_files.items())})
    return [_file_entry(name, path) for name, path in sorted(paths.items())]


def _file_entry(name: str, path: Path) -> Entry:
    return Entry(name, path.stat().st_size, 0o755 if os.access(path, os.X_OK) else 0o644,
                 lambda: _read(path))


def _read(path: Path) -> Iterator[bytes]:
    with open(path, "rb") as handle:
        while chunk := handle.read(CHUNK):
            yield chunk


def stream_tar(entries: Iterable[Entry]) -> Iterator[bytes]:
    """A POSIX (pax) tar of the entries, owners and times fixed so the stream is reproducible."""
    for entry in entries:
        info = tarfile.TarInfo(entry.name)
        info.size, info.mode, info.mtime = entry.size, entry.mode, 0
        info.uid = info.gid = 0
        info.uname = info.gname = ""
        yield info.tobuf(tarfile.PAX_FORMAT, tarfile.ENCODING, "surrogateescape")
        sent = 0
        for chunk in entry.chunks():
            sent += len(chunk)
            if sent > entry.size:
                break
            yield chunk
        if sent != entry.size:
            # a KilnError: raised inside the request body, any other error would reach the user wrapped as an
            # engine connection failure
            raise KilnError(f"{entry.name} changed size while the build context was sent ({entry.size} bytes "
                            f"expected, {sent} read)", "build context", "leave the sources alone during a build, and build again")
        if entry.size % tarfile.BLOCKSIZE:
            yield tarfile.NUL * (tarfile.BLOCKSIZE - entry.size % tarfile.BLOCKSIZE)
    yield tarfile.NUL * (2 * tarfile.BLOCKSIZE)


def context_size(entries: Iterable[Entry]) -> int:
    return sum(entry.size for entry in entries)
