"""Before any download: the cache given is a usable folder, no two manifest entries share a place, what
each file still needs (in place with the right size, partial, missing), and enough free space. Only
sizes are read here, never through a link; the fetch opens and checks every file itself."""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass
from pathlib import Path

from kiln.data.image import ModelFile
from kiln.errors import KilnError
from kiln.identity import MODELS_DIR
from kiln.paths import cache_folder
from kiln.models.store import Place, place, plain_size

COMMIT = re.compile(r"^[0-9a-f]{40}$")


@dataclass(frozen=True)
class Item:
    model: ModelFile
    spot: Place
    state: str      # present (right size: verified or hashed first), wrong-size, partial, missing
    partial: int    # bytes already in the .part file

    @property
    def needed(self) -> int:
        """Bytes still to download. A present file of the right size counts 0: it is hashed first and
        most often is the file (if not, the download that follows may still run out of space)."""
        if self.state == "present":
            return 0
        return self.model.size - (self.partial if self.partial <= self.model.size else 0)


def plan(models: tuple[ModelFile, ...], cache: Path, where: str) -> list[Item]:
    cache_folder(str(cache), "--to")
    _one_place_each(models, where)
    return [_item(m, place(cache, m)) for m in models]


def _one_place_each(models: tuple[ModelFile, ...], where: str) -> None:
    seen: dict[tuple[str, str], ModelFile] = {}
    for model in models:
        key = (model.folder, model.file)
        if key in seen:
            raise KilnError(f"two models go to {model.folder}/{model.file}", f"{where} models",
                            "give each entry its own folder/file")
        seen[key] = model


def _item(model: ModelFile, spot: Place) -> Item:
    partial, size = plain_size(spot.part) or 0, plain_size(spot.final)
    if size is not None:
        return Item(model, spot, "present" if size == model.size else "wrong-size", partial)
    return Item(model, spot, "partial" if partial else "missing", partial)


def check_space(items: list[Item], cache: Path) -> None:
    needed = sum(item.needed for item in items)
    folder = cache / MODELS_DIR if (cache / MODELS_DIR).is_dir() else cache
    free = shutil.disk_usage(folder).free
    if needed > free:
        raise KilnError(f"not enough free space: {size_text(needed)} ({needed} bytes) still to download, "
                        f"{size_text(free)} ({free} bytes) free", f"--to {cache}",
                        "free space there or give --to a cache on a larger disk")


def branch_warnings(models: tuple[ModelFile, ...], where: str) -> list[str]:
    branches = sorted({(m.source.repo, m.source.revision) for m in models if not COMMIT.match(m.source.revision)})
    return [f"{where}: {repo} is fetched at '{rev}', a branch whose files can change; the sha256 check refuses "
            "any content but the manifest's, pin the repository commit to keep fetches reproducible"
            for repo, rev in branches]


def size_text(count: int) -> str:
    for unit, scale in (("GB", 1e9), ("MB", 1e6), ("kB", 1e3)):
        if count >= scale:
            return f"{count / scale:.2f} {unit}"
    return f"{count} B"
