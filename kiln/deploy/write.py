"""Writing a deployment folder atomically: every file or none, and never over a folder that is not
an earlier `invoke deploy` output."""

from __future__ import annotations

import json
import shutil
import tempfile
from pathlib import Path

from kiln.errors import KilnError

MANIFEST = "deploy.json"


def write_deployment(out: Path, texts: dict[str, str], executable: tuple[str, ...] = ()) -> list[Path]:
    _refuse_foreign(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise KilnError(f"cannot create the output folder ({exc.strerror})", str(out), "choose a writable --out") from None
    try:
        for name, text in sorted(texts.items()):
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755 if name in executable else 0o644)
        _swap_in(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KilnError(f"cannot write the deployment ({exc.strerror})", str(out), "check free space and permissions") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return [out / name for name in sorted(texts)]


def _refuse_foreign(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise KilnError("output path exists and is not a directory", str(out), "choose another --out")
    if any(out.iterdir()) and not _is_deployment(out):
        raise KilnError("output directory holds files that are not an earlier kiln deployment", str(out),
                        "choose an empty or new --out directory")


def _is_deployment(out: Path) -> bool:
    try:
        return "toolkit" in json.loads((out / MANIFEST).read_text(encoding="utf-8"))
    except (OSError, ValueError, TypeError):
        return False


def _swap_in(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    staging.rename(out)
    for path in [out, *[p for p in out.rglob("*") if p.is_dir()]]:
        path.chmod(0o755)
    if old:
        shutil.rmtree(old, ignore_errors=True)
