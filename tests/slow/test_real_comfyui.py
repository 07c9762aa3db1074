"""Opt-in: the same run checks against the real ComfyUI 0.3.18 server (CPU mode) in the real stack.

Enable with KILN_REAL_COMFYUI=/path/to/a/ComfyUI/checkout (of the pinned commit; a checkout that
cannot be verified is used as an unverified source). The real server exits on any flag it does not
know, so reaching healthy also proves the rendered launch line is valid for 0.3.18.
"""

import json
import os
import socket
import subprocess
import sys
import time
import urllib.request

import pytest

from kiln.engine.client import connect
from kiln.engine.run import RunRequest, start, stop
from tests.conftest import ROOT

CHECKOUT = os.environ.get("KILN_REAL_COMFYUI")
pytestmark = pytest.mark.skipif(not CHECKOUT, reason="opt-in: set KILN_REAL_COMFYUI to a ComfyUI 0.3.18 checkout")
NAME = "kiln-test-real-comfyui"


@pytest.fixture(scope="module")
def real_image():
    cmd = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "build", "--gpu", "4090", "--plain",
           "--comfyui-src", CHECKOUT, "--allow-unverified-source"]
    result = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    return json.loads((ROOT / "build" / "comfyui-4090.build.json").read_text())["tags"][0]


def _port():
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def test_real_server_serves_after_warmup_and_stops_cleanly(real_image, tmp_path):
    client = connect()
    cache = tmp_path / "cache"
    subprocess.run(["sh", str(ROOT / "provision/host/cache.sh"), str(cache)], check=True, capture_output=True)
    request = RunRequest(tag=real_image, name=NAME, port=_port(), cache=cache, cpu_mode=True,
                         timeout_s=300)
    try:
        up = start(client, request)
        stats = json.loads(urllib.request.urlopen(f"{up.url}/system_stats", timeout=10).read())
        assert stats["system"]["comfyui_version"] == "0.3.18"
        assert [d["type"] for d in stats["devices"]] == ["cpu"]
        queue = json.loads(urllib.request.urlopen(f"{up.url}/queue", timeout=10).read())
        assert queue == {"queue_running": [], "queue_pending": []}
        container = client.containers.get(up.container_id)
        assert container.exec_run("id -u").output.decode().strip() == "10001"
        started = time.monotonic()
        container.kill(signal="SIGTERM")
        assert container.wait(timeout=15)["StatusCode"] == 0 and time.monotonic() - started < 10
        print(f"real ComfyUI 0.3.18 healthy in {up.seconds_to_healthy:.1f} s; warm-up {up.warmup}")
    finally:
        stop(client, NAME)
