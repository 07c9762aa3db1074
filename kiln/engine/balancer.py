"""The balancer image: HAProxy from Debian on the image's own base, built with the Docker SDK from the
Dockerfile kiln.deploy.balancer renders and tagged after its text, so an unchanged recipe is built once.
No registry: the base is local (or pinned by digest), HAProxy comes from the Debian mirror."""

from __future__ import annotations

import io
import tarfile
from collections import deque
from dataclasses import dataclass
from pathlib import Path

import docker

from kiln.data.deploy import Balancer
from kiln.deploy.balancer import balancer_dockerfile, balancer_tag
from kiln.engine.client import image_exists
from kiln.errors import KilnError
from kiln.events import Event, Listener, ignore
from kiln.identity import ROLE_LABEL, TOOLKIT_LABEL
from kiln import __version__


@dataclass(frozen=True)
class BalancerImage:
    tag: str
    image_id: str
    built: bool      # False: the tag was already there
    version: str     # what `haproxy -v` says inside


def ensure_balancer(client: docker.DockerClient, base: str, b: Balancer, templates: Path,
                    on_event: Listener = ignore) -> BalancerImage:
    dockerfile = balancer_dockerfile(base, b, templates)
    tag = balancer_tag(dockerfile, b)
    built = not image_exists(client, tag)
    if built:
        if not image_exists(client, base):
            raise KilnError(f"the base image {base} is not in the engine", "invoke balancer.build",
                            "run `invoke base` first (or `invoke build`, which makes it)")
        _build(client, dockerfile, tag, on_event)
    image = client.images.get(tag)
    return BalancerImage(tag, image.id, built, _version(client, tag))


def _build(client: docker.DockerClient, dockerfile: str, tag: str, on_event: Listener) -> None:
    data = dockerfile.encode()
    buffer = io.BytesIO()
    with tarfile.open(fileobj=buffer, mode="w") as tar:
        info = tarfile.TarInfo("Dockerfile")
        info.size, info.mtime = len(data), 0
        tar.addfile(info, io.BytesIO(data))
    buffer.seek(0)
    tail: deque[str] = deque(maxlen=8)
    stream = client.api.build(fileobj=buffer, custom_context=True, tag=tag, rm=True, forcerm=True, pull=False,
                              decode=True, network_mode="host")
    try:
        for chunk in stream:
            if "error" in chunk:
                last = " | ".join(tail)[-300:]
                raise KilnError(f"the balancer image did not build: {chunk['error'].strip()[:200]}"
                                + (f" (last output: {last})" if last else ""), "templates/balancer/Dockerfile.j2",
                                "check that the engine's containers reach the Debian mirror, then run again")
            for line in chunk.get("stream", "").splitlines():
                if line.strip():
                    tail.append(line.strip())
                    on_event(Event("log", line.rstrip()))
    finally:
        stream.close()


def _version(client: docker.DockerClient, tag: str) -> str:
    out = client.containers.run(tag, ["-v"], entrypoint=["/usr/sbin/haproxy"], remove=True, network_mode="none",
                                labels={TOOLKIT_LABEL: __version__, ROLE_LABEL: "balancer-check"})
    return out.decode(errors="replace").splitlines()[0].strip()
