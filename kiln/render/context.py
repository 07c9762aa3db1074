"""Render a build context: Dockerfile, start script, model paths, the image's facts, a manifest."""

from __future__ import annotations

import hashlib
import json
import shlex
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from kiln import __version__
from kiln.data.launch import managed_flags, profile_flags
from kiln.data.lock import Lock
from kiln.data.subject import Subject
from kiln.errors import KilnError
from kiln.identity import FAILED_MARKER, READY_MARKER, UID, base_ref, cache_env, cache_folders, labels
from kiln.render.facts import image_facts

MANIFEST = "manifest.json"
TEMPLATES = {"Dockerfile": "Dockerfile.j2", "start.sh": "start.sh.j2",
             "extra_model_paths.yaml": "extra_model_paths.yaml.j2"}
EXECUTABLE = ("start.sh",)
PORTABLE_CA_README = "ca/README.txt"
PORTABLE_CA = "ca/extra-ca.pem"


@dataclass(frozen=True)
class Rendered:
    out: Path
    files: dict[str, str]  # relative path -> sha256


def requirements_text(lock: Lock) -> str:
    lines = [f"{p.name}=={p.version} --hash=sha256:{p.sha256}" for _, p in sorted(lock.packages.items())]
    return "# Locked by versions.lock; installed with --require-hashes --no-deps.\n" + "\n".join(lines) + "\n"


def render_texts(s: Subject, templates_dir: Path, portable: bool = False) -> dict[str, str]:
    env = _environment(templates_dir)
    cache = s.image.cache_mount
    values = {
        "toolkit_version": __version__, "lock": s.lock, "gpu": s.gpu, "image": s.image, "uid": UID,
        "base": s.lock.bases[s.image.base],
        "base_ref": base_ref(s.lock, s.image.base), "build_base_ref": base_ref(s.lock, s.image.base, "build"),
        "labels": labels(s), "cache_mount": cache,
        "env": {**cache_env(cache), **s.image.env},
        "managed_flags": managed_flags(s.image), "profile_flags": profile_flags(s.gpu, s.image, s.flags),
        "ready_marker": READY_MARKER, "failed_marker": FAILED_MARKER, "cache_dirs": cache_folders(),
        "portable": portable,
    }
    texts = {name: _render(env, template, values) for name, template in TEMPLATES.items()}
    texts["kiln.json"] = json.dumps(image_facts(s).to_json(), indent=2, sort_keys=True) + "\n"
    texts["warmup.json"] = json.dumps(sized_workflow(s), indent=2, sort_keys=True) + "\n"
    texts["requirements.lock.txt"] = requirements_text(s.lock)
    if portable:
        texts[PORTABLE_CA_README] = ("An optional extra-ca.pem here is the CA bundle pip trusts in the builder stage only\n"
                                     "(replacing its own); it never reaches the final image.\n")
    return texts


LATENT_NODES = ("EmptySD3LatentImage", "EmptyLatentImage")


def sized_workflow(s: Subject) -> dict[str, Any]:
    """The warm-up workflow at the profile's serving resolution."""
    workflow = json.loads(json.dumps(s.image.workflow or {}))
    side = s.gpu.serving.resolution
    for node in workflow.values():
        if node.get("class_type") in LATENT_NODES:
            node.setdefault("inputs", {}).update(width=side, height=side)
    return workflow


def _environment(templates_dir: Path) -> jinja2.Environment:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates_dir)), undefined=jinja2.StrictUndefined,
                             keep_trailing_newline=True, trim_blocks=True, lstrip_blocks=True, autoescape=False)
    env.filters["shq"] = lambda v: shlex.quote(str(v))
    env.filters["dq"] = lambda v: json.dumps(str(v)).replace("$", "\\$")
    return env


def _render(env: jinja2.Environment, template: str, values: dict[str, Any]) -> str:
    try:
        return env.get_template(template).render(values)
    except jinja2.TemplateNotFound:
        raise KilnError("template not found", f"templates/{template}", "restore it from the repository") from None
    except jinja2.UndefinedError as exc:
        line = _template_line(exc, template)
        raise KilnError(f"uses an undefined value ({exc.message})", f"templates/{template}:{line}",
                        "fix the name or add the value to the renderer") from None
    except jinja2.TemplateSyntaxError as exc:
        raise KilnError(f"template syntax error ({exc.message})", f"templates/{template}:{exc.lineno}",
                        "fix the template") from None


def _template_line(exc: BaseException, template: str) -> int | str:
    tb, line = exc.__traceback__, "?"
    while tb is not None:
        if tb.tb_frame.f_code.co_filename.endswith(template):
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def write_context(s: Subject, templates_dir: Path, payload_dir: Path, out: Path, portable: bool = False,
                  extra_files: dict[str, Path] | None = None) -> Rendered:
    """Write the whole context atomically: a failure leaves out/ as it was. A portable context also holds
    what a stock engine needs without kiln (extra_files: ComfyUI's source, an optional CA bundle)."""
    texts = render_texts(s, templates_dir, portable)
    _refuse_foreign(out)
    try:
        out.parent.mkdir(parents=True, exist_ok=True)
        staging = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    except OSError as exc:
        raise KilnError(f"cannot create the output folder ({exc.strerror})", str(out), "choose a writable --out") from None
    try:
        for name, source in sorted((extra_files or {}).items()):
            (staging / name).parent.mkdir(parents=True, exist_ok=True)
            shutil.copyfile(source, staging / name)
        files = _write_files(staging, texts, payload_dir)
        manifest = {"generator": "kiln", "toolkit": __version__, "gpu": s.gpu.name, "image": s.image.name,
                    "lock_sha256": s.lock.digest, "files": files}
        (staging / MANIFEST).write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        _swap_in(staging, out)
    except OSError as exc:
        shutil.rmtree(staging, ignore_errors=True)
        raise KilnError(f"cannot write the build context ({exc.strerror})", str(out),
                        "check free space and permissions of --out") from None
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise
    return Rendered(out=out, files=files)


def _write_files(staging: Path, texts: dict[str, str], payload_dir: Path) -> dict[str, str]:
    for name, text in texts.items():
        path = staging / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(text, encoding="utf-8")
        path.chmod(0o755 if name in EXECUTABLE else 0o644)
    _copy_payload(payload_dir, staging / "payload")
    return {str(p.relative_to(staging)): _sha256(p) for p in sorted(staging.rglob("*")) if p.is_file()}


def _copy_payload(src: Path, dest: Path) -> None:
    shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__", "*.pyc"))
    for path in [dest, *dest.rglob("*")]:
        path.chmod(0o755 if path.is_dir() else 0o644)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _refuse_foreign(out: Path) -> None:
    if not out.exists():
        return
    if not out.is_dir():
        raise KilnError("output path exists and is not a directory", str(out), "choose another --out")
    if any(out.iterdir()) and not _is_render(out):
        raise KilnError("output directory holds files that are not an earlier kiln render", str(out),
                        "choose an empty or new --out directory")


def _is_render(out: Path) -> bool:
    try:
        return json.loads((out / MANIFEST).read_text(encoding="utf-8")).get("generator") == "kiln"
    except (OSError, ValueError):
        return False


def _swap_in(staging: Path, out: Path) -> None:
    old = None
    if out.exists():
        old = out.with_name(f".{out.name}.old")
        shutil.rmtree(old, ignore_errors=True)
        out.rename(old)
    staging.rename(out)
    out.chmod(0o755)
    if old:
        shutil.rmtree(old, ignore_errors=True)
