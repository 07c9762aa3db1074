"""`invoke build`: the rendered context, the locked wheels and the verified ComfyUI source become an
image through the Docker SDK; the result is tagged, labelled and recorded."""

from __future__ import annotations

import json
from collections import deque
import re
import time
from dataclasses import asdict, dataclass, field
from datetime import datetime, timezone
from pathlib import Path

import docker
from requests.exceptions import RequestException

from kiln.data.subject import Subject
from kiln.engine.client import remove_container
from kiln.engine.context_tar import Entry, context_entries, context_size, stream_tar
from kiln.errors import KilnError
from kiln.events import Event, Listener, ignore
from kiln.identity import ORIGIN_LABEL, SOURCE_LABEL, image_tags
from kiln.models.bake import BakedFile, bake_labels
from kiln.removal import Removal
from kiln.sources.comfyui import Source

_STEP = re.compile(r"^Step (\d+)/(\d+) : (.*)$")
_CHATTER = re.compile(r"^\s*(---> |Removing intermediate container|Successfully (built|tagged)|Running in )")


@dataclass(frozen=True)
class BuildResult:
    image_id: str
    tags: list[str]
    size: int
    layers: list[dict]
    durations: dict[str, float]
    steps: list[dict] = field(default_factory=list)
    source: str = ""
    verified_source: bool = True


def build_labels(s: Subject, source: Source) -> dict[str, str]:
    created = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    return {"org.opencontainers.image.created": created,
            SOURCE_LABEL: "verified" if source.verified else "unverified", ORIGIN_LABEL: source.origin}


def build_image(client: docker.DockerClient, s: Subject, rendered: Path, source: Source, wheels_url: str,
                on_event: Listener = ignore, baked: list[BakedFile] | None = None) -> BuildResult:
    """Build from the rendered context streamed to the engine; baked model files (verified and held open)
    travel in the same stream and the image is tagged with the baked suffix."""
    started = time.monotonic()
    try:
        entries = context_entries(rendered, source.files) + [_baked_entry(b) for b in baked or []]
        on_event(Event("phase", f"context: {len(entries)} files, {context_size(entries) / 1e6:.1f} MB"))
        context_s = time.monotonic() - started
        labels = {**build_labels(s, source), **(bake_labels(baked) if baked else {})}
        image_id, steps = _stream_build(client, stream_tar(entries), labels, wheels_url, on_event)
    except OSError as exc:
        raise KilnError(f"cannot send the build context ({exc.strerror or exc})", str(rendered),
                        "check the files named and build again") from None
    except (docker.errors.APIError, RequestException) as exc:
        raise KilnError(f"the engine failed the build ({str(getattr(exc, 'explanation', None) or exc)[:200]})",
                        "docker build", "check the engine (`docker info`) and build again") from None
    tags = image_tags(s, baked=bool(baked))
    try:
        for tag in tags:
            repo, _, name = tag.rpartition(":")
            client.api.tag(image_id, repo, name)
        image = client.images.get(image_id)
    except docker.errors.APIError as exc:
        raise KilnError(f"cannot tag the built image ({exc.explanation or exc})", image_id[:19],
                        "check the engine and build again") from None
    return BuildResult(image_id=image_id, tags=tags, size=image.attrs["Size"], layers=_layers(client, image_id),
                       durations={"context_s": round(context_s, 2), "total_s": round(time.monotonic() - started, 2)},
                       steps=steps, source=source.origin, verified_source=source.verified)


def _baked_entry(baked: BakedFile) -> Entry:
    return Entry(baked.context_name, baked.model.size, 0o644, baked.chunks)


def _stream_build(client, context, labels: dict[str, str], wheels_url: str, on_event: Listener):
    steps: list[dict] = []
    tail: deque[str] = deque(maxlen=20)
    image_id = ""
    stream = client.api.build(fileobj=context, custom_context=True, rm=True, forcerm=True, pull=False,
                              decode=True, network_mode="host", buildargs={"KILN_WHEELS": wheels_url},
                              labels=labels)
    try:
        for chunk in stream:
            image_id = _handle(chunk, steps, tail, on_event) or image_id
    finally:
        stream.close()
    _finish_steps(steps)
    if not image_id:
        raise KilnError("the engine finished the build without an image id", "docker build", "run again with --plain")
    return image_id, steps


def _handle(chunk: dict, steps: list[dict], tail: deque[str], on_event: Listener) -> str:
    if "error" in chunk:
        _finish_steps(steps)
        raise _build_error(chunk["error"].strip(), steps, tail)
    if "aux" in chunk and "ID" in chunk["aux"]:
        return chunk["aux"]["ID"]
    for line in chunk.get("stream", "").splitlines():
        match = _STEP.match(line.strip())
        if match:
            _finish_steps(steps)
            steps.append({"step": int(match[1]), "of": int(match[2]), "instruction": match[3],
                          "started": time.monotonic()})
            on_event(Event("step", match[3], int(match[1]), int(match[2])))
        elif line.strip():
            if not _CHATTER.match(line):
                tail.append(line.rstrip())
            on_event(Event("log", line.rstrip()))
    return ""


def _finish_steps(steps: list[dict]) -> None:
    for step in steps:
        if "started" in step:
            step["seconds"] = round(time.monotonic() - step.pop("started"), 2)


def _build_error(message: str, steps: list[dict], tail: deque[str]) -> KilnError:
    where = f"build step {steps[-1]['step']}/{steps[-1]['of']} ({steps[-1]['instruction'][:60]})" if steps else "build"
    last = next((line for line in reversed(tail) if line.strip()), "")
    fix = "free disk space (`docker system df`, `invoke clean`) and build again" if "no space left" in message \
        else "see the step's output above; fix the input it names and build again"
    detail = f"{message}" + (f" [last output: {last.strip()[:200]}]" if last and last.strip() not in message else "")
    return KilnError(detail, where, fix)


def _layers(client, image_id: str) -> list[dict]:
    return [{"created_by": h.get("CreatedBy", "")[-120:], "size": h.get("Size", 0)}
            for h in client.api.history(image_id)]


def remove_build_leftovers(client: docker.DockerClient, before: set[str]) -> int:
    """Remove the intermediate build containers an interrupted build left: new since it began, made from
    an untagged layer, running a Dockerfile step. One the engine is already removing (it cancels the build
    too) counts as removed; one gone meanwhile is skipped. Anyone else's containers are left alone."""
    gone = 0
    for container in client.containers.list(all=True, ignore_removed=True):
        if container.id in before or _tagged(container):
            continue
        if "/bin/sh -c" in " ".join(container.attrs["Config"].get("Cmd") or []):
            gone += remove_container(container) is not Removal.GONE
    return gone


def _tagged(container) -> bool:
    try:
        return bool(container.image.tags)
    except docker.errors.NotFound:
        return False  # its layer went with the cancelled build: not a tagged image
