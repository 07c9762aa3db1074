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


class Marketplaces(Model):
    runpod_cuda_versions: tuple[str, ...]


class DeployDefaults(Model):
    startup: Startup
    readiness: Probe
    liveness: Probe
    resources: Resources
    disk: Disk
    host: Host
    marketplaces: Marketplaces


@lru_cache(maxsize=4)
def deploy_defaults(path: Path = DEPLOY_PATH) -> DeployDefaults:
    return validate(DeployDefaults, read_yaml(path), path, "kiln/data/tables/deploy.yaml")
