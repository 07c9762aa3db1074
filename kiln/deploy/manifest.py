"""The deployment manifest (kiln.data.records.deploy) made from the project data and the records of
earlier steps. Every target (compose, Kubernetes, cloud-init, marketplaces) is rendered from it, and it
is written beside them as deploy.json."""

from __future__ import annotations

import math
import re

from kiln import __version__
from kiln.data.deploy import DeployDefaults
from kiln.data.records.deploy import (Autoscale, Cache, CachedModel, Deployment, Drain, Fleet, Gpu, Health, ImageRef,
                                      Metrics, ModelOrigin, Resources, Startup)
from kiln.data.records.run import RunRecord
from kiln.data.subject import Subject
from kiln.deploy.records import ImageRecord
from kiln.models.source import DEFAULT_ENDPOINT
from kiln.identity import (ARRIVING_MARKER, DRAIN_MARKER, FAILED_MARKER, READY_MARKER, UID, WRITABLE, agent_port, cache_folders,
                           image_tags, metrics_port)

METRICS_PATH, READY_PATH = "/metrics", "/ready"   # provision/container/fleet/endpoints.py


def deployment(s: Subject, record: ImageRecord, d: DeployDefaults, servers: int = 1,
               balancer_image: str = "") -> Deployment:
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
                    arriving_marker=ARRIVING_MARKER,
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
                                   if _version(v) >= _version(s.lock.stack.cuda)),
        metrics=Metrics(port=metrics_port(s.image.port), path=METRICS_PATH, ready_path=READY_PATH,
                        agent_port=agent_port(s.image.port)),
        drain=Drain(marker=DRAIN_MARKER, settle_s=d.drain.settle_s, limit_s=d.drain.grace_s - d.drain.stop_s,
                    grace_s=d.drain.grace_s),
        autoscale=autoscale(object_name(s), d),
        fleet=Fleet(servers=servers, balancer_image=balancer_image, balancer_series=d.balancer.series,
                    stats_port=d.balancer.stats_port,
                    host_port=d.balancer.host_port))


def autoscale(name: str, d: DeployDefaults) -> Autoscale:
    """KEDA's Prometheus trigger: the queue of this deployment's pods, as a Prometheus that keeps pod labels
    (the common kubernetes-pods scrape job maps app.kubernetes.io/name to app_kubernetes_io_name) stores it."""
    a = d.autoscale
    return Autoscale(target_queue=a.target_queue, min_replicas=a.min_replicas, max_replicas=a.max_replicas,
                     polling_s=a.polling_s, scale_down_window_s=a.scale_down_window_s, prometheus=a.prometheus,
                     query=f'sum(kiln_queue_length{{app_kubernetes_io_name="{name}"}})')


def object_name(s: Subject) -> str:
    name = re.sub(r"[^a-z0-9-]+", "-", f"kiln-{s.image.name}-{s.gpu.name}".lower())
    return name[:63].rstrip("-")


def startup(run: RunRecord | None, d: DeployDefaults, weights: int, needs_workflow: bool) -> Startup:
    """From a GPU run's seconds to healthy (with margin and floor) when that run did everything a start does
    (the warm-up workflow too, when the image has one), else the documented default; plus the time to read
    the model files from the cache volume, which the measuring host may have had in its page cache."""
    period, load = d.startup.period_s, weights_load_s(weights, d)
    why_not = _unusable(run, needs_workflow)
    if why_not:
        base, source = d.startup.default_s, f"default: {why_not}"
    else:
        seconds = run.seconds_to_healthy
        base = max(d.startup.floor_s, seconds * d.startup.margin)
        source = f"measured: {seconds:g} s to healthy by invoke run, x{d.startup.margin:g}"
    if load:
        source += (f"; + {load} s to read {weights / 1e9:.1f} GB of model files at {d.startup.cache_read_mib_s:g} MiB/s "
                   "(assumed cache read rate)")
    return Startup(budget_s=math.ceil((base + load) / period) * period, period_s=period, weights_load_s=load,
                   source=source)


def weights_load_s(weights: int, d: DeployDefaults) -> int:
    return math.ceil(weights / (d.startup.cache_read_mib_s * 2**20))


def _unusable(run: RunRecord | None, needs_workflow: bool) -> str:
    """Why a run record cannot size the budget ('' when it can)."""
    if run is None or run.seconds_to_healthy <= 0:
        return "no warm-up measured by invoke run"
    if run.cpu_mode:
        return "the only measured run was in CPU mode"
    if needs_workflow and not run.ran_workflow():
        return ("the measured run did not run the warm-up workflow (the models were not in its cache: "
                "invoke models.fetch, then invoke run again)")
    return ""


def _version(text: str) -> tuple[int, ...]:
    return tuple(int(p) for p in text.split("."))


def _container_disk(record: ImageRecord, d: DeployDefaults) -> int:
    return math.ceil(record.size_bytes / 1e9) + d.disk.container_slack_gb
