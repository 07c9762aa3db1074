"""The Docker Engine, through the Docker SDK: connecting, and finding what the toolkit made."""

from __future__ import annotations

import os
import time

import docker
from docker.errors import DockerException
from requests.exceptions import RequestException

from kiln.errors import KilnError
from kiln.identity import BASE_REPOSITORY, TOOLKIT_LABEL as LABEL
from kiln.removal import Removal, answer, reason

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
        raise KilnError(f"cannot look up image '{ref}' ({reason(exc)})", "--image",
                        "give an image name like kiln/comfyui:<tag>") from None
    return True


def remove_container(container, wait_s: float = 30.0) -> Removal:
    """Remove a container. Gone already is fine; one the engine is already removing (a cancelled build's
    intermediate container) is asked again until it is gone or wait_s passed, and counts as removed."""
    deadline = time.monotonic() + wait_s
    outcome = Removal.REMOVED
    while True:
        try:
            container.remove(force=True)
            return outcome
        except (DockerException, RequestException) as exc:
            got = answer(exc)
            if got is Removal.GONE:
                return outcome if outcome is Removal.BEING_REMOVED else Removal.GONE
            if got is not Removal.BEING_REMOVED:
                raise KilnError(f"cannot remove container {container.name} ({_state(got)}{reason(exc)})", "engine",
                                f"remove it with `docker rm -f {container.name}`") from None
        outcome = Removal.BEING_REMOVED
        if time.monotonic() > deadline:
            return outcome
        time.sleep(0.2)


def remove_image(client: docker.DockerClient, ref: str, force: bool = False, noprune: bool = False) -> Removal:
    """Remove an image or one of its tags; gone already is fine. Still in use is one KilnError saying so."""
    try:
        client.images.remove(ref, force=force, noprune=noprune)
    except (DockerException, RequestException) as exc:
        got = answer(exc)
        if got is not None and got.done:
            return got
        raise KilnError(f"cannot remove image {ref} ({_state(got)}{reason(exc)})", "engine",
                        "stop the containers using it (`invoke stop`, `invoke clean`) and retry"
                        if got is Removal.IN_USE else "check the engine (`docker info`) and retry") from None
    return Removal.REMOVED


def _state(got: Removal | None) -> str:
    return f"{got.value}: " if got else ""


def remove_made_containers(client: docker.DockerClient, extra_filters: dict | None = None) -> int:
    """Remove every container carrying the toolkit label (optionally narrowed); returns how many."""
    filters = {"label": LABEL, **(extra_filters or {})}
    containers = listed(lambda: client.containers.list(all=True, filters=filters, ignore_removed=True))
    for container in containers:
        remove_container(container)
    return len(containers)


def remove_made_images(client: docker.DockerClient, keep_bases: bool = True) -> list[str]:
    """Remove the images the toolkit built (by label); bases stay unless asked. Returns removed tags."""
    removed = []
    # the plain listing: an image removed meanwhile (another cleanup) is not looked up one by one
    for image in listed(lambda: client.api.images(filters={"label": LABEL})):
        tags = [tag for tag in image.get("RepoTags") or [] if tag != "<none>:<none>"]
        if keep_bases and any(tag.startswith(f"{BASE_REPOSITORY}:") for tag in tags):
            continue
        for tag in tags:
            if remove_image(client, tag, force=True) is not Removal.GONE:
                removed.append(tag)
    listed(lambda: client.images.prune(filters={"dangling": True, "label": LABEL}))  # only untagged ones of ours
    return removed


def listed(call):
    """An engine call whose refusal becomes one KilnError."""
    try:
        return call()
    except (DockerException, RequestException) as exc:
        raise KilnError(f"the engine refused the request ({reason(exc)})", "engine",
                        "check that the Docker Engine is healthy (`docker info`)") from None
