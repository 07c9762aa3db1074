"""A rebuild from the same lock, spec and profile gives the same layers after the builder stage's cache is
gone (as after `docker image prune`) and the wheel server had to take another port: nothing new to push."""

import re
import socket

import docker
import pytest

from kiln.sources import wheels
from tests.engine.registry import free_port
from tests.engine.conftest import TEST_IMAGE, build_small

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them

IMAGE = f"{TEST_IMAGE}-repro"   # its own name: no other test retags or removes it mid-test
_ID = re.compile(r"^\s*---> ([0-9a-f]{12})\s*$")


@pytest.fixture
def project(small):
    project, src = small
    spec = (project.images_dir / f"{TEST_IMAGE}.yaml").read_text().replace(f"name: {TEST_IMAGE}", f"name: {IMAGE}")
    (project.images_dir / f"{IMAGE}.yaml").write_text(spec)
    return project, src


@pytest.fixture
def made(client):
    """Images this test made; removed at the end (builder-stage images alone, their parents may be shared)."""
    made = {"builders": [], "tags": []}
    yield made
    for image_id in made["builders"]:
        _remove(client, image_id)
    for tag in made["tags"]:
        _remove(client, tag, force=True, noprune=False)


def _remove(client, ref: str, force: bool = False, noprune: bool = True) -> None:
    try:
        client.images.remove(ref, force=force, noprune=noprune)
    except docker.errors.NotFound:
        pass




def _build(project, src, made):
    """Build, returning (result, builder-stage image id, whether the venv step ran rather than came from cache)."""
    events = []
    result, _ = build_small(project, src, image=IMAGE, on_event=events.append)
    made["tags"].extend(result.tags)
    steps = [i for i, e in enumerate(events) if e.kind == "step"]
    runtime_from = next(i for i in steps if events[i].text.startswith("FROM ") and "AS builder" not in events[i].text)
    builder = [_ID.match(e.text)[1] for e in events[:runtime_from] if e.kind == "log" and _ID.match(e.text)][-1]
    made["builders"].append(builder)
    pip_step = next(i for i in steps if "pip install" in events[i].text)
    after = next(i for i in steps if i > pip_step)
    ran = not any("Using cache" in e.text for e in events[pip_step:after])
    return result, builder, ran


def _wheel_url(client, builder: str) -> str:
    """The wheel server's address the builder stage's install step saw (the engine records its build args)."""
    created_by = client.api.history(builder)[0]["CreatedBy"]
    return re.search(r"KILN_WHEELS=(\S+)", created_by)[1]


def test_rebuild_without_builder_cache_on_another_port_gives_the_same_layers(client, project, made, monkeypatch):
    project, src = project
    port = free_port()
    monkeypatch.setattr(wheels, "DEFAULT_PORT", port)
    first, first_builder, _ = _build(project, src, made)
    assert _wheel_url(client, first_builder) == f"http://127.0.0.1:{port}/"
    client.images.remove(first_builder, noprune=True)
    with socket.socket() as taken:               # the wheel server's port is busy: it falls back to another one
        taken.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)   # past the first server's TIME_WAIT
        taken.bind(("127.0.0.1", port))
        taken.listen()
        second, second_builder, ran = _build(project, src, made)
    assert _wheel_url(client, second_builder) != f"http://127.0.0.1:{port}/"
    assert ran, "the second build took the venv from the cache, so it proves nothing"
    first_layers = client.images.get(first.image_id).attrs["RootFS"]["Layers"]
    second_layers = client.images.get(second.image_id).attrs["RootFS"]["Layers"]
    changed = [i for i, (a, b) in enumerate(zip(first_layers, second_layers)) if a != b]
    assert len(first_layers) == len(second_layers) and changed == [], \
        f"layers {changed} of {len(first_layers)} changed on a rebuild from the same inputs"
