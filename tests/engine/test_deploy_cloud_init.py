"""The rendered cloud-init user data run for real on a stand-in VM (tests/engine/standin_vm.py: only the GPU and
cloud-init's file writing stood in for): the image published to a loopback registry with `invoke publish`,
its model file served by a loopback hub, and the kiln-deploy script taking the node from an empty cache to
serving, saying each phase, with the container as the user data describes it. This host's engine plays the
VM's own."""

import hashlib
import os
import socket
import threading
from pathlib import Path

import pytest

from kiln.data.lock import load_lock
from kiln.identity import base_ref
from tests.conftest import ROOT
from tests.engine.cloud_init_path import first_image, publish_and_render
from tests.engine.conftest import build_with_model
from tests.engine.registry import PASSWORD, USER, LocalRegistry, free_port
from tests.engine.scope import SCOPE_LABEL, SESSION
from tests.engine.standin_vm import StandinVM
from tests.unit.model_server import ModelServer
from tests.waiting import until

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them

NAME = "kiln-test-cloud-init"
SOURCE = ("kiln/cloud", "d" * 40, "standin.safetensors")
DATA = hashlib.sha256(b"kiln cloud-init").digest() * 40000   # 1.28 MB
PROMPT = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SOURCE[2]}},
          "2": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 1, "cfg": 1}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "cloud"}}}


@pytest.fixture
def registry(tmp_path):
    reg = LocalRegistry(tmp_path / "registry", free_port()).start()
    yield reg
    reg.stop()


def _engine_socket() -> Path:
    host = os.environ.get("DOCKER_HOST", "unix:///var/run/docker.sock")
    assert host.startswith("unix://"), f"the stand-in VM mounts the engine's socket; DOCKER_HOST is {host}"
    return Path(host[len("unix://"):])


def test_the_user_data_takes_a_node_from_an_empty_cache_to_serving(client, base, registry, tmp_path):
    """The hub holds the model file's body until the server has started and its warm-up waits for the file:
    the pull and the server's start ran while the fetch was still in flight; released, the fetch ends and the
    node serves."""
    project_root, _ = build_with_model(tmp_path / "image", NAME, DATA, SOURCE)
    user_data, manifest = publish_and_render(project_root, registry.host, NAME, tmp_path / "deploy")
    assert manifest["image"]["published"] and manifest["image"]["reference"].startswith(f"{registry.host}/kiln/")
    port, cache, name = manifest["port"], tmp_path / "node-cache", manifest["name"]
    with socket.socket() as probe:
        assert probe.connect_ex(("127.0.0.1", port)) != 0, f"127.0.0.1:{port} is taken; the deployment serves there"
    lock = load_lock(ROOT / "versions.lock")
    with ModelServer() as hub:
        hub.files["/{}/resolve/{}/{}".format(*SOURCE)] = DATA
        hub.faults.hold_after = 4096
        vm = StandinVM(tmp_path / "vm", user_data, base_ref(lock, lock.default_base), _engine_socket(), cache,
                       {"KILN_REGISTRY_USER": USER, "KILN_REGISTRY_PASSWORD": PASSWORD, "HF_ENDPOINT": hub.base},
                       labels={SCOPE_LABEL: SESSION})
        outcome: dict = {}
        runner = threading.Thread(target=lambda: outcome.update(code=vm.run(limit_s=300)))
        runner.start()
        try:
            until(lambda: "waiting for the deployment's fetch" in _logs(client, name), 120, "the warm-up waiting")
            until(lambda: any("warm-up: waiting for the deployment's fetch" in line for _, line in vm.lines), 30,
                  "the script saying, while the fetch runs, that the warm-up waits")
            held = [line for _, line in vm.lines]
            hub.faults.release.set()
            runner.join(300)
            said = [line for _, line in vm.lines if line.startswith("kiln-deploy: ")]
            assert outcome.get("code") == 0, "\n".join(line for _, line in vm.lines[-15:])
            assert vm.status()["status"] == "ready"
            image = first_image(f"http://127.0.0.1:{port}", PROMPT, "cloud-init-test")
            config = client.containers.get(name).attrs["HostConfig"]
        finally:
            hub.faults.release.set()
            runner.join(60)
            if _exists(client, name):
                client.api.remove_container(name, force=True)
    assert image.startswith(b"\x89PNG")
    # while the file was held: the image pulled, the server started, the fetch not done
    assert any(" pulled: " in line for line in held) and not any(", verified, in " in line for line in held), held
    # what the script said, in the order a user reads it on the console
    order = ["driver 999.99", "fetching 1 model file(s)", " pulled: ", "warm-up: waiting for the deployment's fetch",
             ", verified, in ", "ready: warm ", "ready: serving on 127.0.0.1:"]
    at = [next(i for i, line in enumerate(said) if fragment in line) for fragment in order]
    assert at == sorted(at), said
    # the model file in the cache, verified, the server's; the container as the user data describes it
    fetched = cache / "models" / "checkpoints" / SOURCE[2]
    assert hashlib.sha256(fetched.read_bytes()).digest() == hashlib.sha256(DATA).digest()
    assert fetched.stat().st_uid == 10001 and not (cache / "models" / manifest["cache"]["arriving_marker"]).exists()
    assert config["ReadonlyRootfs"] and config["RestartPolicy"]["Name"] == "unless-stopped"
    assert config["PortBindings"] == {f"{port}/tcp": [{"HostIp": "127.0.0.1", "HostPort": str(port)}]}
    assert config["Binds"] == [f"{cache}:{manifest['cache']['mount']}"]


def _logs(client, name: str) -> str:
    return client.containers.get(name).logs().decode() if _exists(client, name) else ""


def _exists(client, name: str) -> bool:
    return bool(client.api.containers(all=True, filters={"name": f"^/{name}$"}))
