"""`invoke render --portable`: build contexts a stock engine builds with no kiln present (locked wheels
from the index by hash, ComfyUI inside, an optional CA for the builder stage only), for one GPU profile
or for every profile the image passes the gate on, then with a docker-bake.json sharing the heavy stage.

Each context packs the ComfyUI of its own stack, checked against that stack's pin. With every profile,
the contexts, the build matrix and portable.json (what was rendered and what the gate refused) are written
into a staging folder beside --out and swapped in at the end: a failure leaves --out as it was."""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Protocol

from kiln import __version__
from kiln.data.lock import ComfyUI
from kiln.data.subject import Subject
from kiln.errors import KilnError
from kiln.gate.findings import Finding, errors
from kiln.identity import image_tags
from kiln.project import Project
from kiln.render.build_matrix import matrix_text
from kiln.render.context import PORTABLE_CA, Rendered, write_context
from kiln.render.outdir import marked, replaced

MATRIX = "docker-bake.json"   # Docker's name for a build matrix file
SUMMARY = "portable.json"


class Source(Protocol):
    """A ComfyUI tree (kiln.sources.comfyui.Source): its files by path, and whether it was verified."""
    files: dict[str, Path]
    verified: bool


@dataclass(frozen=True)
class PortableRequest:
    out: Path
    templates: Path
    payload: Path
    source: Callable[[ComfyUI, str], Source]   # the ComfyUI tree for a stack's pin and name (fetched, or --comfyui-src)
    ca_bundle: Path | None = None


@dataclass(frozen=True)
class Skipped:
    profile: str
    errors: tuple[Finding, ...]


@dataclass(frozen=True)
class Selection:
    """Every profile of an image: those the gate passes (with their notes and warnings) and those it refuses."""
    passed: tuple[tuple[Subject, tuple[Finding, ...]], ...]
    skipped: tuple[Skipped, ...] = ()


@dataclass(frozen=True)
class PortableResult:
    root: Path
    contexts: dict[str, Rendered]
    verified: bool
    matrix: Path | None = None
    skipped: tuple[Skipped, ...] = field(default=())


def every_profile(project: Project, image: str, strict: bool) -> Selection:
    """The gate on every profile: an image that cannot run on a card (too little VRAM, say) is skipped
    with the gate's errors, and the others are rendered; no profile passing is an error."""
    passed, skipped = [], []
    for name in project.gpus:
        subject, findings = project.check(name, image, strict)
        bad = errors(findings)
        if bad:
            skipped.append(Skipped(subject.gpu.name, tuple(bad)))
        else:
            passed.append((subject, tuple(findings)))
    if not passed:
        raise KilnError(f"the gate refuses image '{image}' on every GPU profile", "gpus.yaml",
                        f"run `invoke check --gpu X --image {image}` to see why on one profile")
    return Selection(tuple(passed), tuple(skipped))


def render_portable(subjects: list[Subject], req: PortableRequest, every: bool,
                    skipped: tuple[Skipped, ...] = ()) -> PortableResult:
    """One context at req.out, or (every) one per profile under req.out with the build matrix."""
    extra_ca = _ca(req.ca_bundle)
    sources = _sources(subjects, req)
    extras = {s.gpu.name: _extra_files(sources[s.lock.comfyui.commit], extra_ca) for s in subjects}
    verified = all(src.verified for src in sources.values())
    if not every:
        [s] = subjects
        rendered = write_context(s, req.templates, req.payload, req.out, True, extras[s.gpu.name])
        return PortableResult(root=req.out, contexts={s.gpu.name: rendered}, verified=verified)
    with replaced(req.out, marked(SUMMARY, "generator", "kiln"), "portable render", "portable contexts") as staging:
        contexts = {s.gpu.name: write_context(s, req.templates, req.payload, staging / s.gpu.name, True,
                                              extras[s.gpu.name]) for s in subjects}
        image = subjects[0].image.name
        (staging / MATRIX).write_text(matrix_text(image, {s.gpu.name: (s.gpu.name, image_tags(s)) for s in subjects}),
                                    encoding="utf-8")
        (staging / SUMMARY).write_text(_summary(image, subjects, sources, skipped), encoding="utf-8")
    contexts = {name: Rendered(out=req.out / name, files=r.files) for name, r in contexts.items()}
    return PortableResult(root=req.out, contexts=contexts, verified=verified, matrix=req.out / MATRIX, skipped=skipped)


def _sources(subjects: list[Subject], req: PortableRequest) -> dict[str, Source]:
    """The ComfyUI source of each subject's own stack (by pinned commit), each checked against its pin."""
    sources: dict[str, Source] = {}
    for s in subjects:
        pin = s.lock.comfyui
        if pin.commit not in sources:
            sources[pin.commit] = req.source(pin, s.lock.name)
    return sources


def _ca(bundle: Path | None) -> Path | None:
    if bundle is not None and not bundle.is_file():
        raise KilnError("CA bundle not found", f"--ca-bundle {bundle}", "give a PEM file of CA certificates")
    return bundle


def _extra_files(source: Source, ca: Path | None) -> dict[str, Path]:
    extra = {f"comfyui/{name}": path for name, path in source.files.items()}
    if ca is not None:
        extra[PORTABLE_CA] = ca
    return extra


def _summary(image: str, subjects: list[Subject], sources: dict[str, Source], skipped: tuple[Skipped, ...]) -> str:
    doc = {"generator": "kiln", "toolkit": __version__, "image": image, "build_matrix": MATRIX,
           "profiles": sorted(s.gpu.name for s in subjects),
           "comfyui": {s.lock.name: {"version": s.lock.comfyui.version, "commit": s.lock.comfyui.commit,
                                     "verified": sources[s.lock.comfyui.commit].verified} for s in subjects},
           "skipped": {k.profile: [f.line() for f in k.errors] for k in skipped}}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
