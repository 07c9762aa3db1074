"""The deployment manifest: one typed description per image and GPU profile, made from the project
data and the records of earlier steps. Every target (compose, Kubernetes, cloud-init, marketplaces)
is rendered from it, and it is written beside them as deploy.json."""

from __future__ import annotations

import math
import re
from typing import Literal

from pydantic import Field

from kiln import __version__
from kiln.data.deploy import DeployDefaults
from kiln.data.schema import Model
from kiln.data.subject import Subject
from kiln.deploy.records import ImageRecord
from kiln.engine.run_record import ran_workflow
from kiln.models.source import DEFAULT_ENDPOINT
from kiln.identity import FAILED_MARKER, READY_MARKER, UID, WRITABLE, cache_folders, image_tags


class ImageRef(Model):
    reference: str = Field(description="what the target runs: name@sha256:... when published, else the local id")
    published: bool
    tag: str = Field(description="the local tag kiln gave the image")
    container_disk_gb: int


class Gpu(Model):
    profile: str
    display: str
    count: int
    vram_gb: float
    compute_capability: str
    product_label: str | None
    runpod_gpu_id: str | None
    runpod_pool: str | None
    vast_gpu_name: str | None
    driver_floor: str
    cuda: str


class ModelOrigin(Model):
    repo: str
    revision: str
    path: str


class CachedModel(Model):
    folder: str
    file: str
    size: int
    sha256: str
    source: ModelOrigin = Field(description="where the file is fetched from: <endpoint>/<repo>/resolve/<revision>/<path>")


class Cache(Model):
    mount: str
    expected_bytes: int = Field(description="the image spec's models (models[].size); compile caches come on top")
    volume_gb: int
    host_dir: str
    folders: tuple[str, ...]
    models: tuple[CachedModel, ...]
    endpoint: str = Field(description="where the models are fetched from unless HF_ENDPOINT says otherwise")


class Health(Model):
    ready_marker: str
    failed_marker: str
    path: str
    readiness: dict[str, int]
    liveness: dict[str, int]


class Startup(Model):
    budget_s: int
    period_s: int
    weights_load_s: int = Field(description="part of the budget for reading the model files from the cache volume "
                                            "(their bytes at startup.cache_read_mib_s of deploy.yaml, an assumption)")
    source: str


class Resources(Model):
    cpu: int
    memory_gib: int
    shm_gib: int


class Deployment(Model):
    format: Literal[1] = Field(1, alias="schema")
    toolkit: str
    name: str = Field(description="DNS-1123 label used for every object the targets create")
    title: str
    image: ImageRef
    port: int
    env: dict[str, str]
    gpu: Gpu
    cache: Cache
    health: Health
    startup: Startup
    resources: Resources
    uid: int
    writable: tuple[str, ...]
    env_file: str = Field(description="cloud-init: the VM file with registry credentials and KILN_BIND")
    runpod_cuda_versions: tuple[str, ...]

    def to_json(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)


def deployment(s: Subject, record: ImageRecord, d: DeployDefaults) -> Deployment:
    weights = sum(m.size for m in s.image.models)
    return Deployment(
        toolkit=__version__, name=object_name(s), title=s.image.title,
        image=ImageRef(reference=record.reference, published=record.published, tag=image_tags(s)[0],
                       container_disk_gb=_container_disk(record, d)),
        port=s.image.port,
        # A profile's image serves on its own card: the preflight refuses any other.
        env={"STRICT_GPU": "1"},
        gpu=Gpu(profile=s.gpu.name, display=s.gpu.display, count=1, vram_gb=s.gpu.vram_gb,
                compute_capability=s.gpu.compute_capability, product_label=s.gpu.product_label,
                runpod_gpu_id=s.gpu.marketplaces.runpod_gpu_id, runpod_pool=s.gpu.marketplaces.runpod_pool,
                vast_gpu_name=s.gpu.marketplaces.vast_gpu_name, driver_floor=s.lock.stack.driver_floor,
                cuda=s.lock.stack.cuda),
        cache=Cache(mount=s.image.cache_mount, expected_bytes=weights,
                    volume_gb=max(d.disk.cache_min_gb, math.ceil(weights / 1e9) + d.disk.cache_slack_gb),
                    host_dir=d.host.cache_dir, folders=tuple(cache_folders()), endpoint=DEFAULT_ENDPOINT,
                    models=tuple(CachedModel(folder=m.folder, file=m.file, size=m.size, sha256=m.sha256,
                                             source=ModelOrigin(**m.source.model_dump()))
                                 for m in s.image.models)),
        health=Health(ready_marker=READY_MARKER, failed_marker=FAILED_MARKER, path="/system_stats",
                      readiness=d.readiness.model_dump(), liveness=d.liveness.model_dump()),
        startup=startup(record.run, d, weights, needs_workflow=bool(s.image.workflow)),
        resources=Resources(cpu=d.resources.cpu, shm_gib=d.resources.shm_gib,
                            memory_gib=d.resources.memory_base_gib + math.ceil(weights / 1e9 * d.resources.memory_per_weight)),
        uid=UID, writable=WRITABLE, env_file=d.host.env_file,
        runpod_cuda_versions=tuple(v for v in d.marketplaces.runpod_cuda_versions
                                   if _version(v) >= _version(s.lock.stack.cuda)))


def object_name(s: Subject) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", f"kiln-{s.image.name}-{s.gpu.name}".lower())
    return name[:63].rstrip("-")


def startup(run: dict | None, d: DeployDefaults, weights: int, needs_workflow: bool) -> Startup:
    """From a GPU run's seconds to healthy (with margin and floor) when that run did everything a start does
    (the warm-up workflow too, when the image has one), else the documented default; plus the time to read
    the model files from the cache volume, which the measuring host may have had in its page cache."""
    period, load = d.startup.period_s, weights_load_s(weights, d)
    why_not = _unusable(run, needs_workflow)
    if why_not:
        base, source = d.startup.default_s, f"default: {why_not}"
    else:
        seconds = run["seconds_to_healthy"]
        base = max(d.startup.floor_s, seconds * d.startup.margin)
        source = f"measured: {seconds:g} s to healthy by invoke run, x{d.startup.margin:g}"
    if load:
        source += (f"; + {load} s to read {weights / 1e9:.1f} GB of model files at {d.startup.cache_read_mib_s:g} MiB/s "
                   "(assumed cache read rate)")
    return Startup(budget_s=math.ceil((base + load) / period) * period, period_s=period, weights_load_s=load,
                   source=source)


def weights_load_s(weights: int, d: DeployDefaults) -> int:
    return math.ceil(weights / (d.startup.cache_read_mib_s * 2**20))


def _unusable(run: dict | None, needs_workflow: bool) -> str:
    """Why a run record cannot size the budget ('' when it can)."""
    seconds = (run or {}).get("seconds_to_healthy")
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        return "no warm-up measured by invoke run"
    if run.get("cpu_mode", True):
        return "the only measured run was in CPU mode"
    if needs_workflow and not ran_workflow(run):
        return ("the measured run did not run the warm-up workflow (the models were not in its cache: "
                "invoke models.fetch, then invoke run again)")
    return ""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _container_disk(record: ImageRecord, d: DeployDefaults) -> int:
    if record.size_bytes is None:
        return d.disk.container_default_gb
    return math.ceil(record.size_bytes / 1e9) + d.disk.container_slack_gb
