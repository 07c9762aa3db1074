"""The build context as a tar stream: rendered files plus the ComfyUI source, with normalised metadata."""

from __future__ import annotations

import os
import tarfile
from pathlib import Path


def write_context_tar(tar_path: Path, rendered: Path, comfyui_files: dict[str, Path]) -> int:
    """Write the context; returns the number of files. Owners and times are fixed so the tar is reproducible."""
    entries = {str(p.relative_to(rendered)): p for p in sorted(rendered.rglob("*")) if p.is_file()}
    entries.update({f"comfyui/{name}": path for name, path in sorted(comfyui_files.items())})
    with tarfile.open(tar_path, "w", format=tarfile.PAX_FORMAT) as tar:
        for name, path in sorted(entries.items()):
            _add(tar, name, path)
    return len(entries)


def _add(tar: tarfile.TarFile, name: str, path: Path) -> None:
    info = tarfile.TarInfo(name)
    info.size = path.stat().st_size
    info.mode = 0o755 if os.access(path, os.X_OK) else 0o644
    info.mtime = 0
    info.uid = info.gid = 0
    info.uname = info.gname = ""
    with open(path, "rb") as handle:
        tar.addfile(info, handle)
