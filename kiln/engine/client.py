"""The Docker Engine, through the Docker SDK: connecting, and finding what the toolkit made."""

from __future__ import annotations

import os

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException

from kiln.errors import KilnError
from kiln.identity import BASE_REPOSITORY, TOOLKIT_LABEL as LABEL
# What an engine without the NVIDIA Container Toolkit answers when a container asks for GPUs.
NO_GPU_RUNTIME = ("could not select device driver", "nvidia-container-cli", "unknown or invalid runtime")


def connect() -> docker.DockerClient:
    where = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    try:
        client = docker.from_env(timeout=900)
        client.ping()
    except DockerException as exc:
        reason = str(exc).split("(")[0].strip() or type(exc).__name__
        raise KilnError(f"no Docker Engine answers at {where} ({reason})", "engine",
                        "start one with `sudo provision/host/engine.sh` (or `sudo systemctl start docker`)") from None
    return client


def image_exists(client: docker.DockerClient, ref: str) -> bool:
    try:
        client.images.get(ref)
    except docker.errors.ImageNotFound:
        return False
    except (DockerException, RequestException) as exc:
        raise KilnError(f"cannot look up image '{ref}' ({_reason(exc)})", "--image",
                        "give an image name like kiln/comfyui:<tag>") from None
    return True


def remove_container(container) -> None:
    """Remove a container (gone already is fine); an engine refusal names the manual fix."""
    try:
        container.remove(force=True)
    except docker.errors.NotFound:
        pass
    except (DockerException, RequestException) as exc:
        raise KilnError(f"cannot remove container {container.name} ({_reason(exc)})", "engine",
                        f"remove it with `docker rm -f {container.name}`") from None


def remove_made_containers(client: docker.DockerClient, extra_filters: dict | None = None) -> int:
    """Remove every container carrying the toolkit label (optionally narrowed); returns how many."""
    filters = {"label": LABEL, **(extra_filters or {})}
    containers = listed(lambda: client.containers.list(all=True, filters=filters))
    for container in containers:
        remove_container(container)
    return len(containers)


def remove_made_images(client: docker.DockerClient, keep_bases: bool = True) -> list[str]:
    """Remove the images the toolkit built (by label); bases stay unless asked. Returns removed tags."""
    removed = []
    for image in listed(lambda: client.images.list(filters={"label": LABEL})):
        if keep_bases and any(tag.startswith(f"{BASE_REPOSITORY}:") for tag in image.tags):
            continue
        for tag in image.tags:
            try:
                client.images.remove(tag, force=True)
            except docker.errors.NotFound:
                continue
            except DockerException as exc:
                raise KilnError(f"cannot remove image {tag} ({_reason(exc)})", "engine",
                                "stop the containers using it (`invoke stop`, `invoke clean`) and retry") from None
            removed.append(tag)
    listed(lambda: client.images.prune(filters={"dangling": True}))
    return removed


def listed(call):
    """An engine call whose refusal becomes one KilnError."""
    try:
        return call()
    except (DockerException, RequestException) as exc:
        raise KilnError(f"the engine refused the request ({_reason(exc)})", "engine",
                        "check that the Docker Engine is healthy (`docker info`)") from None


def _reason(exc: Exception) -> str:
    return str(getattr(exc, "explanation", None) or exc).strip()[:200]
