"""The ComfyUI source that goes into an image: the lock's git commit, verified before use."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import tarfile
import tempfile
import zipfile
from dataclasses import dataclass
from pathlib import Path

from kiln.data.lock import ComfyUI
from kiln.errors import KilnError
from kiln.paths import new_cache_folder

SKIP = {".git", "__pycache__", ".github"}
VERSION_FILE = "comfyui_version.py"
_DECLARED = re.compile(r"""^__version__\s*=\s*["']([^"']+)["']""", re.M)


@dataclass(frozen=True)
class Source:
    files: dict[str, Path]   # path in the image's /opt/comfyui -> file on the host
    verified: bool
    origin: str              # what it came from, for labels and messages


def default_cache() -> Path:
    value = os.environ.get("KILN_SOURCE_CACHE")
    return new_cache_folder(value, "environment KILN_SOURCE_CACHE") if value else \
        Path.home() / ".cache" / "kiln" / "comfyui"


def comfyui_source(pin: ComfyUI, src: Path | None, allow_unverified: bool, cache: Path, stack: str = "") -> Source:
    if src is None:
        return _git_files(_fetched(pin, cache), pin, verified=True)
    if not src.exists():
        raise KilnError("ComfyUI source not found", str(src), "give a checkout directory or an archive")
    if (src / ".git").exists():
        _verify_checkout(src, pin)
        return _git_files(src, pin, verified=True)
    if not allow_unverified:
        raise KilnError(f"cannot verify {src} against commit {pin.commit[:12]} (not a git checkout)", "--comfyui-src",
                        "give a git checkout of that commit, or add --allow-unverified-source (the image is "
                        "labelled unverified)")
    tree = _unpacked(src) if src.is_file() else src
    files = _tree_files(tree)
    _same_version(files, pin, stack)
    return Source(files=files, verified=False, origin=f"unverified:{src.name}")


def _same_version(files: dict[str, Path], pin: ComfyUI, stack: str) -> None:
    """An unverified tree whose version file names another ComfyUI than the stack pins is refused: the
    card's 0.3.18 given to a Z-Image image would build, then fail at the first prompt."""
    path = files.get(VERSION_FILE)
    try:
        found = _DECLARED.search(path.read_text(encoding="utf-8", errors="replace")) if path else None
    except OSError:
        found = None
    if found and found.group(1) != pin.version:
        pins = f"stack '{stack}' pins" if stack else "the stack pins"
        raise KilnError(f"the ComfyUI source is version {found.group(1)}, {pins} ComfyUI {pin.version} "
                        f"(commit {pin.commit[:12]})", "--comfyui-src",
                        f"give a source of ComfyUI {pin.version}, or build an image of a stack that pins "
                        f"{found.group(1)}")


def _fetched(pin: ComfyUI, cache: Path) -> Path:
    checkout = cache / pin.commit
    if (checkout / ".git").exists():
        return checkout
    cache.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=".fetch-", dir=cache))
    try:
        for args in (["init", "-q"], ["fetch", "-q", "--depth", "1", pin.repo, pin.commit], ["checkout", "-q", "FETCH_HEAD"]):
            _git(staging, *args, timeout=300, fail=lambda err: KilnError(
                f"cannot fetch ComfyUI {pin.version} from {pin.repo} ({err})", f"versions.lock (ComfyUI {pin.version})",
                "this host cannot reach the git host: pass --comfyui-src PATH with a checkout of commit "
                f"{pin.commit[:12]}"))
        staging.rename(checkout)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return checkout


def _verify_checkout(path: Path, pin: ComfyUI) -> None:
    fail = lambda err: KilnError(f"cannot read the git checkout ({err})", str(path), "check it is a git checkout")
    head = _git(path, "rev-parse", "HEAD", fail=fail).strip()
    if head != pin.commit:
        raise KilnError(f"checkout is at {head[:12]}, the lock pins ComfyUI {pin.version} = {pin.commit[:12]}",
                        str(path), f"run `git -C {path} checkout {pin.commit}`")
    dirty = _git(path, "status", "--porcelain", "--untracked-files=no", fail=fail).strip()
    if dirty:
        raise KilnError(f"checkout has local changes ({dirty.splitlines()[0].strip()} ...)", str(path),
                        "commit, stash or discard them")


def _git_files(path: Path, pin: ComfyUI, verified: bool) -> Source:
    listing = _git(path, "ls-files", "-z", fail=lambda err: KilnError(f"git ls-files failed ({err})", str(path), ""))
    files = {name: path / name for name in listing.split("\0") if name and not _skipped(name)}
    return Source(files=files, verified=verified, origin=f"git:{pin.commit}")


def _tree_files(tree: Path) -> dict[str, Path]:
    if not (tree / "main.py").is_file():
        raise KilnError("not a ComfyUI tree (no main.py at its top)", str(tree), "point at the ComfyUI folder itself")
    return {str(p.relative_to(tree)): p for p in sorted(tree.rglob("*"))
            if p.is_file() and not _skipped(str(p.relative_to(tree)))}


def _unpacked(archive: Path) -> Path:
    target = Path(tempfile.mkdtemp(prefix="kiln-src-"))
    try:
        if zipfile.is_zipfile(archive):
            with zipfile.ZipFile(archive) as z:
                z.extractall(target)
        else:
            with tarfile.open(archive) as t:
                t.extractall(target, filter="data")
    except (tarfile.TarError, zipfile.BadZipFile, OSError) as exc:
        shutil.rmtree(target, ignore_errors=True)
        raise KilnError(f"cannot unpack ({exc})", str(archive), "give a .tar.gz, .tar or .zip of ComfyUI") from None
    entries = list(target.iterdir())
    return entries[0] if len(entries) == 1 and entries[0].is_dir() else target


def _skipped(name: str) -> bool:
    return any(part in SKIP for part in Path(name).parts)


def _git(path: Path, *args: str, fail, timeout: int = 60) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), *args], capture_output=True, text=True, timeout=timeout)
    except (OSError, subprocess.TimeoutExpired) as exc:
        raise fail(str(exc)) from None
    if out.returncode != 0:
        raise fail((out.stderr.strip().splitlines() or ["git failed"])[-1])
    return out.stdout
