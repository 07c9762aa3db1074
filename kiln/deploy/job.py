"""`invoke deploy`: the manifest for one image and GPU profile, each requested target rendered from
it and checked for what it needs, then everything written at once (or nothing)."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

from kiln import __version__
from kiln.data.deploy import DeployDefaults, deploy_defaults
from kiln.data.subject import Subject
from kiln.data.records.deploy import Deployment
from kiln.data.records.folder import BuildFolder
from kiln.deploy.balancer import (Backend, balancer_config, balancer_image, compose_backends, host_backends,
                                  parse_backends)
from kiln.deploy.manifest import deployment
from kiln.deploy.records import image_record
from kiln.deploy.targets import (EXECUTABLE, FLEET_TARGETS, NEEDS_DIGEST, USER_DATA, check_target, manifest_text,
                                 render)
from kiln.identity import base_ref
from kiln.deploy.write import MANIFEST, write_deployment
from kiln.render.outdir import marked, replaced
from kiln.errors import KilnError


@dataclass(frozen=True)
class DeployRequest:
    targets: tuple[str, ...]
    out: Path
    folder: BuildFolder      # where the build and run records are
    templates: Path
    fetch_script: Path | None = None  # provision/host/fetch_models.py: cloud-init fetches the models with it
    gpus_file: str = "gpus.yaml"
    cpu_mode: bool = False   # compose only: no GPU request, ComfyUI on the CPU (tests)
    stack: str | None = None  # --stack: deploy the build of that stack, not the spec's
    gpus: int = 1            # compose, cloud-init: one server per GPU, a balancer in front (kiln.deploy.balancer)


def plan(s: Subject, req: DeployRequest) -> tuple[Deployment, dict[str, str]]:
    if req.cpu_mode and req.targets != ("compose",):
        raise KilnError("--cpu-mode is for the compose target only (a test run on a host without a GPU)",
                        "--cpu-mode", "use --target compose, or leave --cpu-mode out")
    _check_gpus(req)
    d = deploy_defaults()
    record = image_record(req.folder, s, need_digest=any(t in NEEDS_DIGEST for t in req.targets), stack=req.stack)
    image = balancer_image(base_ref(s.lock, s.image.base), d.balancer, req.templates) if req.gpus > 1 else ""
    manifest = deployment(s, record, d, req.gpus, image)
    for target in req.targets:
        check_target(manifest, target, req.gpus_file)
    texts = {MANIFEST: manifest_text(manifest)}
    script = _fetch_script(req) if "cloud-init" in req.targets and manifest.cache.models else ""
    for target in req.targets:
        config = _balancer(manifest, target, d, req.templates) if req.gpus > 1 else ""
        texts.update(render(manifest, target, req.templates, s.image.workflow, req.cpu_mode, script, config))
    _check_user_data(texts, d.host.user_data_max_bytes, req.gpus)
    return manifest, texts


def _check_user_data(texts: dict[str, str], limit: int, gpus: int) -> None:
    size = len(texts.get(USER_DATA, "").encode())
    if size > limit:
        raise KilnError(f"the cloud-init user data is {size} bytes, over the {limit} bytes a cloud takes "
                        "(kiln/data/tables/deploy.yaml host.user_data_max_bytes)", "--target cloud-init",
                        "deploy with fewer servers per VM (--gpus)" if gpus > 1 else
                        "report it: the user data of one server should fit")


def _check_gpus(req: DeployRequest) -> None:
    others = [t for t in req.targets if t not in FLEET_TARGETS]
    if req.gpus > 1 and others:
        raise KilnError(f"--gpus {req.gpus} is for compose and cloud-init (one server per GPU on one host, a balancer "
                        f"in front); {', '.join(others)} run one GPU per pod or instance", "--gpus",
                        "use --target compose or --target cloud-init with --gpus, or leave --gpus out "
                        "(Kubernetes scales pods on the queue: the k8s target's scaledobject.yaml)")


def _balancer(d: Deployment, target: str, defaults: DeployDefaults, templates: Path) -> str:
    """Compose: the services by name through Docker's DNS, listening on every interface of the balancer's
    container (compose publishes it on KILN_BIND). cloud-init: the containers' ports on the VM's loopback and
    the balancer on KILN_BIND (from the VM's environment file), as a host without containers runs it."""
    b = defaults.balancer
    if target == "compose":
        return balancer_config(compose_backends(d.fleet.servers, d.port), b, templates, f":{d.port}",
                               f":{b.stats_port}", resolvers=True)
    return balancer_config(host_backends(d.fleet.servers, b.host_port), b, templates,
                           f'"${{KILN_BIND-127.0.0.1}}:{d.port}"', f'"${{KILN_BIND-127.0.0.1}}:{b.stats_port}"',
                           resolvers=False)


def _fetch_script(req: DeployRequest) -> str:
    if req.fetch_script is None:
        raise KilnError("the image lists model files, but no fetch script was given", "DeployRequest.fetch_script",
                        "pass provision/host/fetch_models.py")
    try:
        return req.fetch_script.read_text(encoding="utf-8")
    except OSError as exc:
        raise KilnError(f"cannot read the model fetch script ({exc.strerror})", str(req.fetch_script),
                        "restore provision/host/fetch_models.py from the repository") from None


def deploy(s: Subject, req: DeployRequest) -> tuple[Deployment, list[Path]]:
    manifest, texts = plan(s, req)
    return manifest, write_deployment(req.out, texts, EXECUTABLE)


@dataclass(frozen=True)
class BalancerRequest:
    backends: str          # HOST:PORT[,HOST:PORT...] as the user wrote it
    port: int
    stats_port: int
    out: Path
    templates: Path


BALANCER_CONFIG, BALANCER_RECORD = "haproxy.cfg", "balancer.json"
LOOPBACK = ("127.0.0.1", "localhost", "0.0.0.0", "[::1]", "[::]")


def render_balancer(req: BalancerRequest) -> tuple[Path, tuple[Backend, ...]]:
    """`invoke balancer.render`: HAProxy's configuration for servers given by address, written with a record
    of what it was made from (the folder's marker); returns the configuration's path and the servers."""
    servers = parse_backends(req.backends)
    _check_ports(req, servers)
    b = deploy_defaults().balancer
    env_bind = '"${KILN_BIND-127.0.0.1}:${%s-%d}"'
    text = balancer_config(servers, b, req.templates, env_bind % ("KILN_PORT", req.port),
                           env_bind % ("KILN_STATS_PORT", req.stats_port), resolvers=False)
    record = {"toolkit": __version__, "port": req.port, "stats_port": req.stats_port,
              "backends": [{"name": s.name, "host": s.host, "port": s.port, "metrics_port": s.metrics_port,
                            "agent_port": s.agent_port} for s in servers]}
    with replaced(req.out, marked(BALANCER_RECORD, "backends"), "balancer configuration", "balancer configuration") as staging:
        (staging / BALANCER_CONFIG).write_text(text, encoding="utf-8")
        (staging / BALANCER_RECORD).write_text(json.dumps(record, indent=2, sort_keys=True) + "\n", encoding="utf-8")
    return req.out / BALANCER_CONFIG, servers


def _check_ports(req: BalancerRequest, servers: tuple[Backend, ...]) -> None:
    if req.port == req.stats_port:
        raise KilnError(f"--port and --stats-port are both {req.port}", "--stats-port", "give HAProxy's stats another port")
    for s in servers:
        if s.host in LOOPBACK and {req.port, req.stats_port} & {s.port, s.metrics_port, s.agent_port}:
            raise KilnError(f"the balancer's port would be one of {s.host}:{s.port}'s (it uses {s.port}, "
                            f"{s.metrics_port} and {s.agent_port})", "--port",
                            "give the balancer a port no server on this host uses")
