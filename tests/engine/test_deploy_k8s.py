"""The rendered Kubernetes manifests run for real on a stand-in node (tests/engine/standin_node.py: Podman's
`kube play` from an empty store; only the GPU, the Service and the kubelet's probe runner stood in for): the
image published to a loopback registry with `invoke publish`, the PersistentVolumeClaim filled by the fetch
script from a loopback hub with --announce while the Deployment is applied (docs/deploy.md), its pod from a
pull by digest to the first image, with its security context as rendered; and an empty claim's startup probe
saying why."""

import hashlib
import os
import subprocess

import pytest

from tests.conftest import ROOT
from tests.engine.cloud_init_path import first_image, publish_and_render
from tests.engine.conftest import build_with_model
from tests.engine.registry import PASSWORD, USER, LocalRegistry, free_port
from tests.engine.scope import made_tags
from tests.engine.standin_node import PAUSE, StandinNode
from tests.unit.model_server import ModelServer
from tests.waiting import until

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them

NAME = "kiln-test-k8s"
SOURCE = ("kiln/k8s", "e" * 40, "standin.safetensors")
DATA = hashlib.sha256(b"kiln k8s").digest() * 40000   # 1.28 MB
PROMPT = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": SOURCE[2]}},
          "2": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 1, "cfg": 1}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "k8s"}}}
CREDS = f"{USER}:{PASSWORD}"


@pytest.fixture(scope="module")
def published(client, base, tmp_path_factory):
    """The small stack's image with one model file, published; the rendered k8s folder and deployment record."""
    work = tmp_path_factory.mktemp("k8s")
    registry = LocalRegistry(work / "registry", free_port()).start()
    try:
        project_root, _ = build_with_model(work / "image", NAME, DATA, SOURCE)
        k8s, manifest = publish_and_render(project_root, registry.host, NAME, work / "deploy", target="k8s")
        yield k8s, manifest
    finally:
        registry.stop()
        for tag in made_tags(client, repository=f"kiln/{NAME}"):
            client.images.remove(tag, force=True)


@pytest.fixture
def node(tmp_path):
    standin = StandinNode(tmp_path / "node")
    yield standin
    standin.remove()
    assert not standin.work.exists() and not os.path.exists(standin.run_root)


def _fill(volume, k8s, hub: ModelServer, *extra: str) -> subprocess.Popen:
    """What docs/deploy.md tells a user: the fetch script on the mounted volume."""
    return subprocess.Popen(["/usr/bin/python3", str(ROOT / "provision/host/fetch_models.py"),
                             str(k8s.parent / "deploy.json"), str(volume), *extra], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, env={"PATH": os.environ["PATH"], "HF_ENDPOINT": hub.base})


def test_the_manifests_take_an_empty_node_to_serving_started_beside_the_fill(published, node):
    """The claim filled with --announce while the Deployment is applied: the hub holds the model file's body until
    the pod has pulled, started and its warm-up says it waits for the fetch; released, the fill ends and the pod
    serves its first image."""
    k8s, manifest = published
    reference = manifest["image"]["reference"]
    assert reference.startswith("127.0.0.1:") and "@sha256:" in reference
    volume = node.claim(k8s / "pvc.yaml")
    marker = volume / "models" / manifest["cache"]["arriving_marker"]
    with ModelServer() as hub:
        hub.files["/{}/resolve/{}/{}".format(*SOURCE)] = DATA
        hub.faults.hold_after = 4096
        filling = _fill(volume, k8s, hub, "--announce")
        try:
            until(marker.exists, 30, "the fill's marker")
            pod = node.play(k8s / "deployment.yaml", CREDS)
            until(lambda: "waiting for the deployment's fetch" in node.logs(pod), 120, "the warm-up waiting", every_s=0.5)
            assert filling.poll() is None and not node.started(pod)[0]
            hub.faults.release.set()
            assert filling.wait(120) == 0, filling.stderr.read()
        finally:
            hub.faults.release.set()
            filling.kill()
    assert not marker.exists()
    node.wait_ready(pod)
    image = first_image(f"http://127.0.0.1:{pod.ports['http']}", PROMPT, "k8s-test")
    assert image.startswith(b"\x89PNG")
    logs = node.logs(pod)
    assert "workflow run 1 of" in logs and "kiln: phase ready: warm " in logs, logs[-1500:]
    # the pod as rendered: pulled by digest into the node's empty store, the uid both the manifest and the image
    # name, a read-only root, no capabilities left to gain, the claim mounted at the cache's path
    stored = node.podman("images", "--digests", "--format", "{{.Repository}} {{.Digest}}").stdout.splitlines()
    pulled = [line for line in stored if not line.startswith(f"{PAUSE} ")]   # built by Podman itself
    assert pulled == [f"{reference.split('@')[0]} {reference.split('@')[1]}"], stored
    status = node.podman("exec", pod.container, "/bin/sh", "-c", "id -u; grep -E '^(CapBnd|NoNewPrivs)' /proc/1/status").stdout
    assert status.split() == [str(manifest["uid"]), "CapBnd:", "0000000000000000", "NoNewPrivs:", "1"], status
    config = node.inspect(pod)
    assert config["HostConfig"]["ReadonlyRootfs"] is True
    mounts = {m["Destination"]: m for m in config["Mounts"]}
    assert mounts[manifest["cache"]["mount"]]["Source"] == str(volume)
    written = node.podman("exec", pod.container, "/bin/sh", "-c", "touch /kiln-probe", check=False)
    assert written.returncode != 0 and "Read-only file system" in written.stderr


def test_an_empty_claim_fails_the_startup_probe_with_the_warm_ups_reason(published, node):
    """A user who applies the Deployment before filling the claim sees why in the probe's output (what `kubectl
    describe pod` shows), not a bare failure."""
    k8s, _ = published
    node.claim(k8s / "pvc.yaml")
    pod = node.play(k8s / "deployment.yaml", CREDS)
    said = until(lambda: _failed_because(node, pod), 120, "the startup probe saying why the warm-up failed", every_s=1)
    assert SOURCE[2] in said, said


def _failed_because(node, pod) -> str:
    passed, said = node.started(pod)
    assert not passed, "the startup probe passed with an empty claim"
    return said if "models not in the cache: " in said else ""
