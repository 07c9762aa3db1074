"""Whether this engine can give GPUs to containers: the runtimes it knows, and a one-shot container
that asks for every GPU and lists them with the nvidia-smi the NVIDIA Container Toolkit mounts in."""

from __future__ import annotations

import docker
from docker.types import DeviceRequest
from requests.exceptions import RequestException

from kiln.engine.client import connect, image_exists, remove_container
from kiln.errors import KilnError
from kiln.host.readings import EngineReading
from kiln.identity import ROLE_LABEL, TOOLKIT_LABEL


def engine_reading(images: list[str], try_gpu: bool) -> EngineReading:
    """images: the ones a one-shot container may run, best first (the built image, then its base)."""
    try:
        client = connect()
        info = client.info()
    except (KilnError, docker.errors.DockerException, RequestException):
        return EngineReading(reachable=False)
    runtimes = tuple(sorted(info.get("Runtimes") or {}))
    present = next((ref for ref in images if image_exists(client, ref)), None)
    seen = _gpu_container(client, present) if try_gpu and present else None
    return EngineReading(reachable=True, runtimes=runtimes, default_runtime=info.get("DefaultRuntime", ""),
                         gpu_container=seen, probe_image=present or f"none of {', '.join(images)} is in the engine")


def _gpu_container(client: docker.DockerClient, image: str) -> str:
    """'' when the container listed a GPU, else what went wrong (the engine's or nvidia-smi's words).
    The container is removed whatever happens, a refused start included."""
    try:
        container = client.containers.create(
            image, ["nvidia-smi", "-L"], network_mode="none", entrypoint=[],
            environment={"NVIDIA_DRIVER_CAPABILITIES": "utility"},
            device_requests=[DeviceRequest(count=-1, capabilities=[["gpu"]])],
            labels={TOOLKIT_LABEL: "host-check", ROLE_LABEL: "host-check"})
    except (docker.errors.APIError, RequestException) as exc:
        return _words(exc)
    try:
        container.start()
        code = container.wait(timeout=60)["StatusCode"]
        out = container.logs().decode(errors="replace").strip()
    except (docker.errors.APIError, RequestException) as exc:
        return _words(exc)
    finally:
        remove_container(container)
    if code == 0 and "GPU 0" in out:
        return ""
    return f"the container saw no GPU (exit {code}: {out[:120]})"


def _words(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc).strip()[:200]
