"""Writing a deployment folder atomically: every file or none, and never over a folder that is not
an earlier `invoke deploy` output."""

from __future__ import annotations

from pathlib import Path

from kiln.render.outdir import marked, replaced

MANIFEST = "deploy.json"


def write_deployment(out: Path, texts: dict[str, str], executable: tuple[str, ...] = ()) -> list[Path]:
    with replaced(out, marked(MANIFEST, "toolkit"), "deployment", "deployment") as staging:
        for name, text in sorted(texts.items()):
            path = staging / name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text, encoding="utf-8")
            path.chmod(0o755 if name in executable else 0o644)
        for folder in (p for p in staging.rglob("*") if p.is_dir()):
            folder.chmod(0o755)
    return [out / name for name in sorted(texts)]
