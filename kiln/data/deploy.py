"""The defaults of deployment manifests (kiln/data/tables/deploy.yaml): start-up budget, probes,
resource requests, disk sizes and VM paths, loaded through the same validation as user data."""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path

from pydantic import Field, PositiveFloat, PositiveInt

from kiln.data.files import read_yaml
from kiln.data.schema import Model, validate

DEPLOY_PATH = Path(__file__).parent / "tables" / "deploy.yaml"


class Startup(Model):
    default_s: PositiveInt
    margin: PositiveFloat
    floor_s: PositiveInt
    period_s: PositiveInt
    cache_read_mib_s: PositiveFloat


class Probe(Model):
    period_s: PositiveInt
    timeout_s: PositiveInt
    failures: PositiveInt


class Resources(Model):
    cpu: PositiveInt
    memory_base_gib: PositiveInt
    memory_per_weight: float = Field(ge=0)
    shm_gib: PositiveInt


class Disk(Model):
    container_slack_gb: PositiveInt
    cache_slack_gb: PositiveInt
    cache_min_gb: PositiveInt


class Host(Model):
    cache_dir: str = Field(pattern=r"^/[A-Za-z0-9._/-]+$")
    env_file: str = Field(pattern=r"^/[A-Za-z0-9._/-]+$")
    user_data_max_bytes: PositiveInt


class Marketplaces(Model):
    runpod_cuda_versions: tuple[str, ...]


class Check(Model):
    inter_ms: PositiveInt
    fall: PositiveInt
    rise: PositiveInt
    timeout_ms: PositiveInt


class Timeouts(Model):
    connect_s: PositiveInt
    client_s: PositiveInt
    server_s: PositiveInt
    tunnel_s: PositiveInt


class Balancer(Model):
    package: str = Field(pattern=r"^[a-z0-9][a-z0-9.+-]*$")
    series: str = Field(pattern=r"^\d+\.\d+$")
    security_suite: str = Field(pattern=r"^[a-z]+-security$")
    security_mirror: str = Field(pattern=r"^https?://[A-Za-z0-9.:/_-]+$")
    stats_port: int = Field(ge=1024, le=65535)
    check: Check
    agent_inter_ms: PositiveInt
    retries: PositiveInt
    timeouts: Timeouts
    history_per_server: PositiveInt
    clients: PositiveInt
    stick_expire_h: PositiveInt
    host_port: int = Field(ge=1024, le=65535)


class Drain(Model):
    settle_s: PositiveInt
    grace_s: PositiveInt
    stop_s: PositiveInt


class Autoscale(Model):
    target_queue: PositiveInt
    min_replicas: PositiveInt
    max_replicas: PositiveInt
    polling_s: PositiveInt
    scale_down_window_s: PositiveInt
    prometheus: str = Field(pattern=r"^https?://[A-Za-z0-9.:-]+(/[A-Za-z0-9._/-]*)?$")


class DeployDefaults(Model):
    startup: Startup
    readiness: Probe
    liveness: Probe
    resources: Resources
    disk: Disk
    host: Host
    marketplaces: Marketplaces
    balancer: Balancer
    drain: Drain
    autoscale: Autoscale


@lru_cache(maxsize=4)
def deploy_defaults(path: Path = DEPLOY_PATH) -> DeployDefaults:
    return validate(DeployDefaults, read_yaml(path), path, "kiln/data/tables/deploy.yaml")
