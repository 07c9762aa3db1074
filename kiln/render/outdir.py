"""Output folders kiln writes whole (build contexts, portable renders, deployments): never over a folder
that holds someone else's files; built in a staging folder beside it and swapped in at the end, so a
failure leaves the folder as it was."""

from __future__ import annotations

import json
import shutil
import tempfile
from contextlib import contextmanager
from pathlib import Path
from typing import Callable, Iterator

from kiln.errors import KilnError
from kiln.removal import remove_tree


@contextmanager
def replaced(out: Path, ours: Callable[[Path], bool], what: str, writing: str) -> Iterator[Path]:
    """Yield the staging folder; on success it becomes `out`. `what` names an earlier output of ours (in the
    refusal), `writing` what failed to be written."""
    _refuse_foreign(out, ours, what)
    staging = _staging(out)
    try:
        yield staging
        _swap_in(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KilnError(f"cannot write the {writing} ({exc.strerror})", str(out),
                        "check free space and permissions of --out") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


def marked(manifest: str, key: str, value: object = None) -> Callable[[Path], bool]:
    """An output of ours: its manifest file is JSON holding `key` (equal to `value` when one is given)."""
    def ours(out: Path) -> bool:
        try:
            data = json.loads((out / manifest).read_text(encoding="utf-8"))
        except (OSError, ValueError):
            return False
        return isinstance(data, dict) and key in data and (value is None or data[key] == value)
    return ours


def _refuse_foreign(out: Path, ours: Callable[[Path], bool], what: str) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise KilnError("output path exists and is not a directory", str(out), "choose another --out")
    if any(out.iterdir()) and not ours(out):
        raise KilnError(f"output directory holds files that are not an earlier kiln {what}", str(out),
                        "choose an empty or new --out directory")


def _staging(out: Path) -> Path:
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        return Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise KilnError(f"cannot create the output folder ({exc.strerror})", str(out), "choose a writable --out") from None


def _swap_in(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        remove_tree(old)
        out.rename(old)
    staging.rename(out)
    out.chmod(0o755)
    if old:
        remove_tree(old)
