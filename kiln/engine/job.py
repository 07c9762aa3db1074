"""The whole `invoke build` after the gate: render, engine, base, source, wheels, build, record."""

from __future__ import annotations

from dataclasses import asdict, dataclass
from datetime import datetime, timezone
from pathlib import Path

from kiln.data.subject import Subject
from kiln.engine.bases import packages_of, require_base
from kiln.data.records.build import BakedModels, BuildRecord, Layer, Step, WheelsUsed
from kiln.data.records.folder import BuildFolder
from kiln.engine.build import BuildResult, build_image, remove_build_leftovers
from kiln.engine.client import connect, listed
from kiln.errors import Interrupted
from kiln.events import Event, Listener, ignore
from kiln.models.bake import bake_record, close_all, verify_models
from kiln.render.context import write_context
from kiln.sources.comfyui import comfyui_source
from kiln.sources.wheels import WheelServer, ensure_wheels


@dataclass(frozen=True)
class BuildRequest:
    templates: Path
    payload: Path
    folder: BuildFolder          # the context goes to folder.context(...), the record beside it
    wheel_cache: Path
    source_cache: Path
    comfyui_src: Path | None = None
    allow_unverified: bool = False
    bake_from: Path | None = None   # --bake-models: the cache holding the manifest's files
    ca_bundle: Path | None = None   # an extra CA the host needs to reach the package index (never in the image)
    stack: str | None = None        # --stack: built from this stack instead of the spec's


def run_build(s: Subject, req: BuildRequest, on_event: Listener = ignore) -> tuple[BuildResult, Path]:
    """Baking, the model files are verified first: a missing or bad one stops the build before anything is made."""
    baked = verify_models(s.image.models, req.bake_from, on_event) if req.bake_from else []
    try:
        return _build(s, req, baked, on_event)
    finally:
        close_all(baked)


def _build(s: Subject, req: BuildRequest, baked: list, on_event: Listener) -> tuple[BuildResult, Path]:
    client = connect()
    started = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    base = require_base(client, s.lock, s.image.base)
    base_record = req.folder.read_base(s.image.base)  # a damaged record stops the build before anything is made
    source = comfyui_source(s.lock.comfyui, req.comfyui_src, req.allow_unverified, req.source_cache, s.lock.name)
    out = req.folder.context(s.image.name, s.gpu.name, baked=bool(baked), stack=req.stack)
    write_context(s, req.templates, req.payload, out, baked=bool(baked))
    on_event(Event("phase", f"wheel cache {req.wheel_cache}: checking {len(s.lock.packages)} locked wheels"))
    wheels = ensure_wheels(s.lock, req.wheel_cache, on_event, req.ca_bundle)
    on_event(Event("phase", f"wheels: {wheels.downloaded} downloaded ({wheels.downloaded_bytes / 1e9:.2f} GB), "
                            f"{wheels.reused} from the cache"))
    before = {c.id for c in client.containers.list(all=True, sparse=True)}  # ids only: no look-up to race
    try:
        with WheelServer(s.lock, req.wheel_cache) as server:
            result = build_image(client, s, out, source, server.url, on_event, baked)
    except KeyboardInterrupt:
        gone = remove_build_leftovers(client, before)
        raise Interrupted([f"{gone} intermediate build container(s)"]) from None
    except BaseException:
        remove_build_leftovers(client, before)
        raise
    finished = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    base_id = listed(lambda: client.images.get(base).id)
    record = BuildRecord(
        image_id=result.image_id, tags=tuple(result.tags), size=result.size,
        layers=tuple(Layer.model_validate(layer) for layer in result.layers), durations=result.durations,
        steps=tuple(Step.model_validate(step) for step in result.steps), source=result.source,
        verified_source=result.verified_source, gpu=s.gpu.name, image=s.image.name, stack_override=req.stack, base=base,
        base_id=base_id, base_packages=tuple(packages_of(client, base_record, base, base_id)),
        wheels=WheelsUsed(**asdict(wheels)), started=started, finished=finished,
        models=bake_record(baked, req.bake_from) if baked else BakedModels(baked=False))
    return result, req.folder.write_build(record, baked=bool(baked))
