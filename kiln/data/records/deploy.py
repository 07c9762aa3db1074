"""The deployment record (deploy.json beside the rendered targets): one typed description per image and
GPU profile. Every target (compose, Kubernetes, cloud-init, marketplaces) is rendered from it."""

from __future__ import annotations

from pydantic import Field

from kiln.data.records.base import Record
from kiln.data.schema import Model


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
    arriving_marker: str = Field(description="in models/ while a fetch runs beside the server: its warm-up waits")


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


class Metrics(Model):
    port: int = Field(description="the exporter beside ComfyUI: Prometheus text format at path, readiness at ready_path")
    path: str
    ready_path: str = Field(description="200 once warm, while ComfyUI answers and no drain began; else 503")
    agent_port: int = Field(description="HAProxy's agent check: the server's weight from its queue")


class Drain(Model):
    marker: str
    settle_s: int
    limit_s: int = Field(description="the longest the drain waits for the queue before the shutdown goes on")
    grace_s: int = Field(description="Kubernetes' terminationGracePeriodSeconds")


class Autoscale(Model):
    target_queue: int = Field(description="prompts queued or running per pod that KEDA scales to")
    min_replicas: int
    max_replicas: int
    polling_s: int
    scale_down_window_s: int
    prometheus: str
    query: str = Field(description="the PromQL KEDA asks: the queue summed over this deployment's pods")


class Fleet(Model):
    servers: int = Field(description="ComfyUI servers on one host, one per GPU (compose, cloud-init)")
    balancer_image: str = Field(description="the balancer image `invoke balancer.build` makes (HAProxy from Debian)")
    balancer_series: str = Field(description="the HAProxy release series the balancer's configuration is written for")
    stats_port: int = Field(description="HAProxy's own metrics (/metrics) and stats page (/stats)")
    host_port: int = Field(description="cloud-init: server i listens on 127.0.0.1:host_port+i")


class Deployment(Record):
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
    metrics: Metrics
    drain: Drain
    autoscale: Autoscale
    fleet: Fleet

    def to_json(self) -> dict:
        return self.model_dump(mode="json", by_alias=True)
