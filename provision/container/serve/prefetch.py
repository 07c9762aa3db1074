"""Model files read into the page cache while ComfyUI starts:
python3 -m serve.prefetch --facts /opt/kiln/kiln.json [--models DIR] [--arriving FILE] [--streams N]

With the page cache cold (a node restarted with its models on disk, a volume just attached), the warm-up's
first run reads each model file only once ComfyUI has imported its modules and the workflow reaches that
file's loader, one stream at a time. Read beside the start, in several streams, the same bytes arrive while
Python imports. The files go in the order the image lists them, cut in chunks the streams take in turn (a
chunk the page cache holds whole is not read again, so a warm node copies nothing), and only as many as memory
can hold (MemAvailable, and the container's memory limit less what it uses): a file that does not fit is left
to the loader, as it would be without this. One line when it starts, one when it ends. It never fails the
start: a file it cannot read is named and skipped, and the warm-up's own check still says what is missing.
Stdlib only; never imports the toolkit.
"""

from __future__ import annotations

import argparse
import ctypes
import functools
import json
import mmap
import os
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any, Dict, Iterator, List, Optional, Tuple

from .model_files import arriving, model_roots
from .warmup import say

CHUNK = 8 << 20   # one buffer of this size per stream
# Streams at once: a local NVMe disk or a network volume reaches its throughput only with several requests
# in flight. On the H200 host one stream read as fast as 8 (1.43 against 1.37 GB/s, one round each); 8 did no
# worse and is kept; faster disks are not measured (docs/cold-start.md, "Models read beside the start").
STREAMS = 8
GB = 1e9


def planned(facts: Dict[str, Any], models_root: Path) -> List[Path]:
    """The warm-up's model files that are there, in the image's order, each where ComfyUI reads it: its own
    models folder (where baked files are) comes before the cache's, as extra_model_paths adds the cache after."""
    roots, found = list(reversed(model_roots(facts, models_root))), []
    for model in facts.get("warmup", {}).get("models", []):
        hit = next((root / model["folder"] / model["file"] for root in roots
                    if (root / model["folder"] / model["file"]).is_file()), None)
        if hit is not None:
            found.append(hit)
    return found


def _meminfo_available(meminfo: Path) -> Optional[int]:
    for line in meminfo.read_text().splitlines():
        if line.startswith("MemAvailable:"):
            return int(line.split()[1]) * 1024
    return None


def _cgroup_room(cgroup: Path) -> Optional[int]:
    """The container's memory limit less what it uses (cgroup v2, else v1), or None where there is no limit."""
    for limit_file, used_file in (("memory.max", "memory.current"),
                                  ("memory/memory.limit_in_bytes", "memory/memory.usage_in_bytes")):
        try:
            limit = (cgroup / limit_file).read_text().strip()
            used = int((cgroup / used_file).read_text().strip())
        except (OSError, ValueError):
            continue
        # v1 says "no limit" with a huge number (a page-rounded LONG_MAX), v2 with "max"
        if limit == "max" or int(limit) >= 1 << 62:
            return None
        return max(int(limit) - used, 0)
    return None


def room(meminfo: Path = Path("/proc/meminfo"), cgroup: Path = Path("/sys/fs/cgroup")) -> int:
    """Bytes the page cache can take now: the smaller of free memory (MemAvailable) and the container's room.
    What ComfyUI allocates later may still take some of it back; then the loader reads those pages again."""
    bounds = [b for b in (_meminfo_available(meminfo), _cgroup_room(cgroup)) if b is not None]
    return min(bounds) if bounds else 0


def fitting(files: List[Path], space: int) -> Tuple[List[Path], List[Path]]:
    """The files, in order, that fit in `space` together (one too large is passed over, not the ones after it),
    and those that do not."""
    taken, left, total = [], [], 0
    for path in files:
        size = path.stat().st_size
        if total + size > space:
            left.append(path)
            continue
        taken.append(path)
        total += size
    return taken, left


@functools.lru_cache(maxsize=1)
def _libc() -> ctypes.CDLL:
    libc = ctypes.CDLL(None, use_errno=True)
    libc.mmap.restype, libc.mmap.argtypes = ctypes.c_void_p, [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int,
                                                              ctypes.c_int, ctypes.c_int, ctypes.c_long]
    return libc


def resident_pages(fd: int, size: int) -> Optional[bytes]:
    """One byte per page of the file, bit 0 set where the page cache holds it (mincore over a read-only map), or
    None where the host cannot say (then every page is read). Linux answers truly only to the file's owner (or
    one who could write it, or holds CAP_FOWNER); to anyone else it says every page is there. So a file this
    process does not own (a baked model, root's, read by the image's user) is read whole."""
    if size == 0:
        return b""
    if os.fstat(fd).st_uid != os.geteuid():
        return None
    libc = _libc()
    address = libc.mmap(None, size, mmap.PROT_READ, mmap.MAP_SHARED, fd, 0)
    if address in (None, ctypes.c_void_p(-1).value):
        return None
    try:
        pages = (ctypes.c_ubyte * ((size + mmap.PAGESIZE - 1) // mmap.PAGESIZE))()
        if libc.mincore(ctypes.c_void_p(address), ctypes.c_size_t(size), pages) != 0:
            return None
        return bytes(pages)
    finally:
        libc.munmap(ctypes.c_void_p(address), ctypes.c_size_t(size))


def chunks(files: List[Tuple[int, int, Path]], chunk: int = CHUNK) -> Iterator[Tuple[int, int, int, Path]]:
    """(fd, offset, length, path) over each (fd, size, path) in turn, leaving out the chunks the page cache
    holds whole: on a node whose cache is warm nothing is copied."""
    for fd, size, path in files:
        held = resident_pages(fd, size)
        for offset in range(0, size, chunk):
            length = min(chunk, size - offset)
            pages = held[offset // mmap.PAGESIZE:-(-(offset + length) // mmap.PAGESIZE)] if held is not None else b""
            if pages and all(page & 1 for page in pages):
                continue
            yield fd, offset, length, path


def read_ahead(files: List[Path], streams: int, chunk: int = CHUNK) -> Tuple[int, List[str]]:
    """Read every file once where the page cache lacks it, `streams` chunks in flight; bytes read, and the files
    not read whole (and why)."""
    local, opened, failed = threading.local(), [], {}
    for path in files:
        try:
            opened.append((os.open(path, os.O_RDONLY), path.stat().st_size, path))
        except OSError as exc:
            failed[f"{path.parent.name}/{path.name}"] = exc.strerror

    def read(piece: Tuple[int, int, int, Path]) -> int:
        fd, offset, length, path = piece
        if not hasattr(local, "buffer"):
            local.buffer = bytearray(chunk)
        try:
            return os.preadv(fd, [memoryview(local.buffer)[:length]], offset)
        except OSError as exc:
            failed.setdefault(f"{path.parent.name}/{path.name}", exc.strerror)
            return 0

    try:
        with ThreadPoolExecutor(max_workers=max(1, streams)) as pool:
            done = sum(pool.map(read, chunks(opened, chunk)))
    finally:
        for fd, _, _ in opened:
            os.close(fd)
    return done, [f"{name} ({why})" for name, why in failed.items()]


def prefetch(args: argparse.Namespace) -> None:
    facts = json.loads(Path(args.facts).read_text())
    if args.arriving and arriving(Path(args.arriving)):
        say("prefetch", "none: the deployment's fetch is writing the model files")
        return
    files = planned(facts, Path(args.models or f"{facts['cache_mount']}/models"))
    if not files:
        say("prefetch", "none: no model file of the warm-up is there yet")
        return
    taken, left = fitting(files, room())
    if not taken:
        say("prefetch", f"none: memory would not hold the model files ({', '.join(p.name for p in left)})")
        return
    size = sum(p.stat().st_size for p in taken)
    streams = f"{args.streams} stream" + ("" if args.streams == 1 else "s")
    passed = f"; left to the loader, memory would not hold them: {', '.join(p.name for p in left)}" if left else ""
    say("prefetch", f"reading {len(taken)} model file(s), {size / GB:.2f} GB, into the page cache beside the start "
                    f"({streams}){passed}")
    started = time.monotonic()
    done, failed = read_ahead(taken, args.streams)
    seconds = time.monotonic() - started
    held = f", {(size - done) / GB:.2f} GB already in the page cache" if size > done and not failed else ""
    say("prefetch", f"{done / GB:.2f} GB read in {seconds:.1f} s ({done / GB / max(seconds, 1e-3):.2f} GB/s)" + held
        + (f"; not read: {', '.join(failed)}" if failed else ""))


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="serve.prefetch")
    parser.add_argument("--facts", required=True)
    parser.add_argument("--models", help="model folder (default: models/ under the image's cache mount)")
    parser.add_argument("--arriving", help="the marker a deployment's fetch beside the server writes")
    parser.add_argument("--streams", type=int, default=STREAMS)
    args = parser.parse_args(argv)
    try:
        prefetch(args)
    except (OSError, ValueError, KeyError) as exc:   # the start goes on; the loader reads what this did not
        say("prefetch", f"stopped: {type(exc).__name__}: {exc}"[:300])
    return 0


if __name__ == "__main__":
    sys.exit(main())
