"""The real default-stack image, smoked and published like a user does: `invoke smoke` writes the record
the gate asks for, `invoke publish` pushes to a real registry (htpasswd auth) and attaches the SBOM;
the image is pulled back by digest and the SBOM fetched and checked against the lock."""

import json
import os
import subprocess
import sys

import pytest

from kiln.data.lock import load_lock
from kiln.engine.client import connect
from kiln.publish.registry import Credentials, Registry
from kiln.publish.sbom import validate_sbom
from tests.conftest import ROOT
from tests.engine.registry import PASSWORD, USER, LocalRegistry, free_port

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them


def _task(*args, env=None):
    return subprocess.run([sys.executable, str(ROOT / "tasks.py"), *args], capture_output=True, text=True,
                          timeout=1200, env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})})


def test_smoke_then_publish_then_pull_by_digest(smoked, tmp_path):
    """The one smoke run of the image (tests/slow/conftest.py) wrote the record publish asks for."""
    assert smoked.result.returncode == 0 and "record: " in smoked.result.stdout, smoked.result.stdout[-1500:]
    registry = LocalRegistry(tmp_path / "registry", free_port()).start()
    try:
        out = _task("publish", "--registry", f"{registry.host}/team", "--gpu", "4090", "--plain",
                    env={"KILN_REGISTRY_USER": USER, "KILN_REGISTRY_PASSWORD": PASSWORD})
        assert out.returncode == 0, out.stdout[-2000:] + out.stderr[-2000:]
        assert "smoke passed:" in out.stdout and PASSWORD not in out.stdout + out.stderr
        reference = next(line.split()[-1] for line in out.stdout.splitlines() if line.strip().startswith("published"))
        client = connect()
        pulled = client.images.pull(reference, auth_config={"username": USER, "password": PASSWORD})
        assert pulled.id == client.images.get("kiln/comfyui:0.3.18-torch2.3.1-cu121-4090").id
        client.images.remove(reference)
        digest = reference.split("@")[1]
        reg = Registry(registry.host, Credentials(USER, PASSWORD))
        manifest = reg.manifest("team/comfyui", f"sha256-{digest.removeprefix('sha256:')}.sbom")
        sbom = reg.blob("team/comfyui", manifest["layers"][0]["digest"]).decode()
        validate_sbom(sbom)
        torch = next(c for c in json.loads(sbom)["components"] if c["name"] == "torch")
        lock = load_lock(ROOT / "versions.lock")
        assert torch["version"] == "2.3.1" and torch["hashes"][0]["content"] == lock.package("torch").sha256
        record = json.loads((ROOT / "build" / "comfyui-4090.build.json").read_text())
        assert record["published"]["references"] == [reference]
    finally:
        registry.stop()
