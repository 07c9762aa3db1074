"""Synthetic Z-Image-Turbo model files: the real key layout (kiln/data/tables/zimage_layout.yaml) filled
with random weights, so the whole pipeline can be proven without the model hub.

Files are written in the safetensors format directly (8-byte little-endian header length, JSON header
padded with spaces to 8 bytes, raw little-endian data, keys sorted by name as the real files have
them), streamed in chunks: even the full size (about 20.7 GB) never holds a tensor in memory.
"""

from __future__ import annotations

import hashlib
import json
import os
import random
import re
import shutil
from dataclasses import asdict, dataclass
from functools import lru_cache
from math import prod
from pathlib import Path
from typing import Literal

from pydantic import Field

from kiln.data.files import read_yaml
from kiln.data.schema import Model, validate
from kiln.data.tables import TABLES
from kiln.errors import KilnError
from kiln.events import Event, Listener, ignore

LAYOUT_PATH = TABLES / "zimage_layout.yaml"
SIZES = ("small", "full")
MANIFEST = "synthetic-models.json"
CHUNK = 16 << 20
WIDTH = {"BF16": 2, "F32": 4}
ONE = {"BF16": (0x3F80).to_bytes(2, "little"), "F32": (0x3F800000).to_bytes(4, "little")}
# bf16 and f32 share the sign and 8-bit exponent layout in their top byte: keeping the sign and mapping
# the exponent's upper 7 bits to 58..60 gives magnitudes in [2^-11, 2^-5) (RMS about 0.015), small
# enough that a forward pass through random weights stays finite.
_TOP_BYTE = bytes((b & 0x80) | (58, 59, 60, 60)[b & 3] for b in range(256))


class Group(Model):
    prefix: str = ""
    count: int = Field(default=1, ge=1)
    small: int | None = Field(default=None, ge=1, description="how many the small size keeps (default: all)")
    tensors: dict[str, tuple[int, ...]]


class FileLayout(Model):
    role: str
    folder: str
    file: str
    dtype: Literal["BF16", "F32"]
    ones: tuple[str, ...] = Field(default=(), description="regexes of tensors set to 1.0 (norm scales)")
    groups: tuple[Group, ...]

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.file}"


class Layout(Model):
    comfyui: str = Field(pattern=r"^[0-9a-f]{40}$")
    files: tuple[FileLayout, ...]


@dataclass(frozen=True)
class Tensor:
    name: str
    shape: tuple[int, ...]
    dtype: str
    ones: bool

    @property
    def nbytes(self) -> int:
        return prod(self.shape) * WIDTH[self.dtype]


@dataclass(frozen=True)
class SyntheticFile:
    """One written file, in the shape of an image spec's model entry."""

    role: str
    folder: str
    file: str
    size: int
    sha256: str

    @property
    def path(self) -> str:
        return f"{self.folder}/{self.file}"


@lru_cache(maxsize=None)
def load_layout(path: Path = LAYOUT_PATH) -> Layout:
    return validate(Layout, read_yaml(path), path)


def tensors(layout: FileLayout, size: str) -> list[Tensor]:
    """Every tensor of one file at this size, sorted by name."""
    ones = [re.compile(pattern) for pattern in layout.ones]
    found = []
    for group in layout.groups:
        count = group.count if size == "full" else (group.small or group.count)
        for i in range(count):
            prefix = group.prefix.format(i=i)
            for key, shape in group.tensors.items():
                name = prefix + key
                found.append(Tensor(name, shape, layout.dtype, any(p.search(name) for p in ones)))
    return sorted(found, key=lambda t: t.name)


def header(items: list[Tensor]) -> bytes:
    entries, offset = {}, 0
    for t in items:
        entries[t.name] = {"dtype": t.dtype, "shape": list(t.shape), "data_offsets": [offset, offset + t.nbytes]}
        offset += t.nbytes
    text = json.dumps(entries, separators=(",", ":")).encode()
    text += b" " * (-len(text) % 8)
    return len(text).to_bytes(8, "little") + text


def planned_sizes(size: str = "small", layout: Layout | None = None) -> dict[str, int]:
    """Bytes of each file at this size, computed without writing anything."""
    _check_size(size)
    files = (layout or load_layout()).files
    return {f.path: len(header(items)) + sum(t.nbytes for t in items) for f in files
            for items in [tensors(f, size)]}


def write_synthetic(out_dir: Path, size: str = "small", seed: int = 0, listener: Listener = ignore,
                    only: tuple[str, ...] = (), layout: Layout | None = None) -> list[SyntheticFile]:
    """Write the files (all three, or the roles in `only`) under out_dir/<folder>/<file> and a manifest
    of them (MANIFEST); return what was written."""
    _check_size(size)
    layout = layout or load_layout()
    files = _chosen(layout, only)
    out_dir = Path(out_dir)
    planned = planned_sizes(size, layout)
    _check_room(out_dir, sum(planned[f.path] for f in files))
    written = []
    for number, file in enumerate(files, 1):
        listener(Event("step", f"{file.path} ({planned[file.path] / 1e9:.2f} GB)", number, len(files)))
        target = out_dir / file.folder / file.file
        digest = _write_file(target, tensors(file, size), random.Random(f"{seed}:{file.path}"), listener)
        written.append(SyntheticFile(file.role, file.folder, file.file, target.stat().st_size, digest))
    manifest = {"size": size, "seed": seed, "comfyui": layout.comfyui, "models": [asdict(f) for f in written]}
    (out_dir / MANIFEST).write_text(json.dumps(manifest, indent=2) + "\n")
    return written


def _chosen(layout: Layout, only: tuple[str, ...]) -> list[FileLayout]:
    roles = [f.role for f in layout.files]
    unknown = [role for role in only if role not in roles]
    if unknown:
        raise KilnError(f"unknown model role '{unknown[0]}'", "--only", f"use one of: {', '.join(roles)}")
    return [f for f in layout.files if not only or f.role in only]


def _check_size(size: str) -> None:
    if size not in SIZES:
        raise KilnError(f"unknown size '{size}'", "size", f"use one of: {', '.join(SIZES)}")


def _check_room(out_dir: Path, needed: int) -> None:
    try:
        out_dir.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise KilnError(f"cannot create the output folder ({exc.strerror})", str(out_dir),
                        "give a folder you can write to") from None
    if not os.access(out_dir, os.W_OK):
        raise KilnError("the output folder is not writable", str(out_dir), "give a folder you can write to")
    free = shutil.disk_usage(out_dir).free
    if free < needed:
        raise KilnError(f"not enough free disk: {needed / 1e9:.1f} GB needed, {free / 1e9:.1f} GB free",
                        str(out_dir), "free space or choose a folder on a larger disk")


def _write_file(target: Path, items: list[Tensor], rng: random.Random, listener: Listener) -> str:
    """Write beside the target and rename at the end: an interrupted run leaves no partial file."""
    target.parent.mkdir(parents=True, exist_ok=True)
    part = target.with_name(target.name + ".part")
    digest = hashlib.sha256()
    try:
        with open(part, "wb") as out:
            for block in _blocks(items, rng):
                out.write(block)
                digest.update(block)
                if out.tell() // (1 << 30) != (out.tell() - len(block)) // (1 << 30):
                    listener(Event("log", f"{target.name}: {out.tell() / 1e9:.1f} GB"))
        os.replace(part, target)
    except BaseException:
        part.unlink(missing_ok=True)
        raise
    return digest.hexdigest()


def _blocks(items: list[Tensor], rng: random.Random):
    yield header(items)
    for t in items:
        width = WIDTH[t.dtype]
        left = t.nbytes
        while left:
            n = min(left, CHUNK)
            if t.ones:
                yield ONE[t.dtype] * (n // width)
            else:
                block = bytearray(rng.randbytes(n))
                block[width - 1::width] = block[width - 1::width].translate(_TOP_BYTE)
                yield block
            left -= n
