"""`invoke host.check` on this machine: no GPU (clear skips, exit 0 unless --require-gpu), and the engine
parts read from the real engine: its runtimes, and a one-shot container that asks for the GPUs."""

import json

from tests.conftest import invoke
from tests.engine.tap import EngineTap


def test_on_a_build_host_without_a_gpu(client, base, tmp_path, monkeypatch):
    report = tmp_path / "host.json"
    with EngineTap(tmp_path) as tap:
        monkeypatch.setenv("DOCKER_HOST", tap.docker_host)
        result = invoke("host.check", "--gpu", "4090", "--cache", str(tmp_path), "--json", str(report))
    assert result.returncode == 0, result.stdout + result.stderr
    data = json.loads(report.read_text())
    lines = {line["item"]: line for line in data["lines"]}
    assert lines["driver"]["verdict"] == "skip" and "no NVIDIA driver" in lines["driver"]["measured"]
    runtimes = tuple(sorted(client.info()["Runtimes"]))
    assert data["reading"]["engine"]["runtimes"] == list(runtimes)
    assert lines["engine runtime"]["verdict"] == "skip" and "runc" in lines["engine runtime"]["measured"]
    tried = lines["GPU in a container"]
    assert tried["verdict"] == "skip" and "could not select device driver" in tried["measured"]  # the engine's words
    assert lines["cache space"]["verdict"] == "pass" and data["exit"] == 0
    [made] = [r for r in tap.making() if "/containers/create" in r]  # the one-shot container, and it is gone:
    [removed] = tap.removed_containers()
    assert client.api.containers(all=True, filters={"id": removed}) == []


def test_require_gpu_makes_the_missing_driver_a_failure(client, base):
    result = invoke("host.check", "--gpu", "4090", "--require-gpu")
    assert result.returncode == 1 and "FAIL" in result.stdout and "ubuntu-drivers install" in result.stdout
