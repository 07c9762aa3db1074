"""The balancer in front of many ComfyUI servers: HAProxy's configuration for a list of backends (compose
services found through Docker's DNS, servers on one host by address and port) and the Dockerfile of the
balancer image, whose tag follows from its text. Pure: no engine, no network."""

from __future__ import annotations

import hashlib
import re
from dataclasses import dataclass
from pathlib import Path

from kiln import __version__
from kiln.data.deploy import Balancer
from kiln.errors import KilnError
from kiln.identity import ROLE_LABEL, TOOLKIT_LABEL, agent_port, metrics_port
from kiln.render.templates import environment, render_template

BALANCER_REPOSITORY = "kiln/balancer"
CONFIG_IN_IMAGE = "/etc/kiln/haproxy.cfg"
SERVICE = "comfyui"           # compose: server i is the service comfyui-<i>
HOST = r"[A-Za-z0-9]([A-Za-z0-9.-]*[A-Za-z0-9])?|\[[0-9A-Fa-f:.]+\]"


@dataclass(frozen=True)
class Backend:
    name: str
    host: str
    port: int
    metrics_port: int
    agent_port: int


def backend(name: str, host: str, port: int) -> Backend:
    """A server on `port`, its exporter beside it by kiln's port rule (kiln.identity)."""
    return Backend(name, host, port, metrics_port(port), agent_port(port))


def compose_backends(count: int, port: int) -> tuple[Backend, ...]:
    return tuple(backend(f"{SERVICE}-{i}", f"{SERVICE}-{i}", port) for i in range(count))


def host_backends(count: int, first_port: int) -> tuple[Backend, ...]:
    return tuple(backend(f"{SERVICE}-{i}", "127.0.0.1", first_port + i) for i in range(count))


def parse_backends(text: str, where: str = "--backends") -> tuple[Backend, ...]:
    """HOST:PORT[,HOST:PORT...]: ComfyUI servers, each with its exporter on PORT + 1000 and agent on PORT + 1100."""
    entries = [e.strip() for e in text.split(",")]
    if not text.strip() or not all(entries):
        raise KilnError("no backend given (or an empty entry)", where, "give HOST:PORT[,HOST:PORT...], e.g. "
                        "127.0.0.1:8188,127.0.0.1:8189")
    found: list[Backend] = []
    for i, entry in enumerate(entries):
        match = re.fullmatch(rf"({HOST}):(\d{{1,5}})", entry)
        port = int(match.group(3)) if match else 0
        if not match or not 1 <= port <= 65535 - max(metrics_port(0), agent_port(0)):
            raise KilnError(f"'{entry[:60]}' is not HOST:PORT with a port its exporter's ports fit above", where,
                            f"give HOST:PORT with PORT from 1 to {65535 - agent_port(0)}, e.g. 127.0.0.1:8188")
        found.append(backend(f"{SERVICE}-{i}", match.group(1), port))
    taken = [(b.host, p) for b in found for p in (b.port, b.metrics_port, b.agent_port)]
    if len(set(taken)) != len(taken):
        raise KilnError("two backends share a port (each server uses PORT, PORT + 1000 and PORT + 1100)", where,
                        "give each server on one host its own PORT, at least 1 apart and not 1000 or 1100 apart")
    return tuple(found)


def balancer_config(servers: tuple[Backend, ...], b: Balancer, templates: Path, bind: str, stats_bind: str,
                    resolvers: bool) -> str:
    """bind / stats_bind: HAProxy bind arguments (an address and port, or a quoted "${VAR-default}" form)."""
    env = environment(templates / "balancer")
    return render_template(env, "haproxy.cfg.j2", {"toolkit": __version__, "servers": servers, "b": b, "bind": bind,
                                                   "stats_bind": stats_bind, "resolvers": resolvers},
                           "templates/balancer")


def balancer_dockerfile(base_ref: str, b: Balancer, templates: Path) -> str:
    env = environment(templates / "balancer")
    labels = {TOOLKIT_LABEL: __version__, ROLE_LABEL: "balancer", "io.kiln.balancer": f"{b.package} {b.series}"}
    return render_template(env, "Dockerfile.j2", {"toolkit": __version__, "base_ref": base_ref, "b": b, "labels": labels}, "templates/balancer")


def balancer_tag(dockerfile: str, b: Balancer) -> str:
    """Its Dockerfile's text names the image: a changed recipe is a new tag, an unchanged one is built once."""
    return f"{BALANCER_REPOSITORY}:{b.package}{b.series}-{hashlib.sha256(dockerfile.encode()).hexdigest()[:12]}"


def balancer_image(base: str, b: Balancer, templates: Path) -> str:
    """The tag `invoke balancer.build` gives the image built on `base` (a local or registry base reference)."""
    return balancer_tag(balancer_dockerfile(base, b, templates), b)
