"""The rendered compose file brought up for real with Debian's docker-compose: the small stack's image
in CPU test mode, healthy after its warm-up, /system_stats on 127.0.0.1 only, and `down` leaves no
container, network or volume behind."""

import json
import os
import subprocess
import urllib.request
import uuid

import pytest

from tests.engine.registry import free_port
from tests.conftest import invoke
from tests.engine.conftest import build_serve_image, serve_cache
from tests.engine.scope import made_tags
from tests.waiting import until

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them

SERVE = "kiln-test-deploy"


@pytest.fixture(scope="module")
def serve_image(client, tmp_path_factory, base):
    yield build_serve_image(tmp_path_factory.mktemp("deploy"), name=SERVE)
    for tag in made_tags(client, repository=f"kiln/{SERVE}"):
        client.images.remove(tag, force=True)




def _compose(path, project, *args, env=None):
    return subprocess.run(["docker-compose", "-p", project, "-f", str(path), *args], capture_output=True, text=True,
                          env={**os.environ, **(env or {})}, timeout=300)


def _left(client, project):
    label = f"com.docker.compose.project={project}"
    return (client.containers.list(all=True, filters={"label": label}), client.networks.list(filters={"label": label}),
            client.volumes.list(filters={"label": label}))


def _healthy(container) -> bool:
    container.reload()
    assert container.attrs["State"]["Status"] == "running", container.logs().decode()[-2000:]
    return container.attrs["State"].get("Health", {}).get("Status") == "healthy"


def test_compose_up_healthy_serves_on_loopback_and_down_leaves_nothing(client, serve_image, tmp_path):
    project, tag = serve_image
    out = tmp_path / "deploy"
    rendered = invoke("deploy", "--gpu", "4090", "--image", SERVE, "--target", "compose", "--cpu-mode",
                      "--out", str(out), root=project.root)
    assert rendered.returncode == 0, rendered.stderr
    image_id = client.images.get(tag).id
    assert f'image: "{image_id}"' in (out / "compose.yaml").read_text()
    name, port = f"kiln-test-{uuid.uuid4().hex[:8]}", free_port()
    env = {"KILN_CACHE": str(serve_cache(tmp_path)), "KILN_PORT": str(port)}
    try:
        up = _compose(out / "compose.yaml", name, "up", "-d", env=env)
        assert up.returncode == 0, up.stderr
        [container] = _left(client, name)[0]
        until(lambda: _healthy(container), 180, "the compose service healthy")
        config = container.attrs["HostConfig"]
        assert config["ReadonlyRootfs"] and config["RestartPolicy"]["Name"] == "unless-stopped"
        assert config["PortBindings"] == {"8188/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
        assert container.exec_run("id -u").output.decode().strip() == "10001"
        stats = json.loads(urllib.request.urlopen(f"http://127.0.0.1:{port}/system_stats", timeout=5).read())
        assert "--cpu" in stats["system"]["argv"]
        assert '"kiln_warmup"' in container.logs().decode()
    finally:
        down = _compose(out / "compose.yaml", name, "down", "--volumes", "--remove-orphans", env=env)
    assert down.returncode == 0, down.stderr
    assert _left(client, name) == ([], [], [])
