"""Opt-in: the exporter and the balancer against the real ComfyUI, two servers on this host.

Enable with KILN_REAL_COMFYUI_IMAGE=<tag of a kiln image built from a real ComfyUI checkout> (for example
`invoke build --gpu 4090 --image z-image-turbo --stack cuda13 --comfyui-src <ComfyUI 0.33.0>
--allow-unverified-source`). Two containers of it run in CPU mode, each with the exporter from this working
tree beside it on the host (as a host without containers runs it), behind HAProxy running the file `invoke
balancer.render` writes. The real server's API is what the exporter and the routing lean on: its queue
(GET /prompt), /history with its status messages' timestamps, /system_stats, its websocket events per
client id, and /view of a file every server names alike."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import urllib.request
import uuid

import pytest

from kiln.engine.client import connect
from tests.fleet_load import run_load
from tests.standin.fleet import Fleet, Server, answers, render_balancer, server_port
from tests.waiting import until
from tests.ws_client import WebSocket

IMAGE = os.environ.get("KILN_REAL_COMFYUI_IMAGE")
pytestmark = pytest.mark.skipif(not IMAGE, reason="opt-in: set KILN_REAL_COMFYUI_IMAGE to a kiln image of a real ComfyUI")
# Nodes of ComfyUI itself, no model files: an empty image, saved
PROMPT = {"1": {"class_type": "EmptyImage", "inputs": {"width": 64, "height": 64, "batch_size": 1, "color": 0}},
          "2": {"class_type": "SaveImage", "inputs": {"images": ["1", 0], "filename_prefix": "fleet"}}}


@pytest.fixture
def real_fleet(tmp_path):
    client = connect()
    servers, containers, fleet = [], [], None
    try:
        for i in range(2):
            port = server_port()
            containers.append(client.containers.run(
                IMAGE, detach=True, name=f"kiln-test-fleet-real-{uuid.uuid4().hex[:8]}",
                environment={"KILN_CPU_MODE": "1", "KILN_SERVE_WITHOUT_MODELS": "1"},
                ports={"8188/tcp": ("127.0.0.1", port)}, labels={"io.kiln.toolkit": "test", "io.kiln.role": "test"}))
            folder = tmp_path / f"server-{i}"
            folder.mkdir()
            servers.append(Server(port, folder, {}))
        for server, container in zip(servers, containers):
            until(lambda: _healthy(container), 300, "the real server healthy after its warm-up", every_s=1)
            server.start_exporter()
            until(lambda: answers(server.metrics + "/metrics"), 30, "its exporter")
            server.warm()
        fleet = Fleet(servers, server_port(), server_port(), tmp_path / "balancer" / "haproxy.cfg",
                      log=tmp_path / "haproxy.log")
        render_balancer(tmp_path / "balancer", [s.port for s in servers], fleet.port, fleet.stats_port)
        with open(fleet.log, "w") as log:
            fleet.haproxy = subprocess.Popen([shutil.which("haproxy") or "/usr/sbin/haproxy", "-db", "-f",
                                              str(fleet.config)], stdout=log, stderr=log)
        until(lambda: answers(f"http://127.0.0.1:{fleet.stats_port}/stats") and
              all(v.startswith("UP") for v in fleet.server_state().values()), 60, "both real servers in rotation")
        yield fleet
    finally:
        if fleet and fleet.haproxy:
            fleet.haproxy.terminate()
            fleet.haproxy.wait(timeout=10)
        for server in servers:
            if server.exporter:
                server.exporter.terminate()
                server.exporter.wait(timeout=10)
        for container in containers:
            container.remove(force=True)


def _healthy(container) -> bool:
    container.reload()
    assert container.status in ("created", "running"), container.logs()[-3000:].decode(errors="replace")
    return container.attrs["State"].get("Health", {}).get("Status") == "healthy"


def _metrics(server: Server) -> str:
    return urllib.request.urlopen(server.metrics + "/metrics", timeout=10).read().decode()


def _value(text: str, name: str) -> float:
    return sum(float(line.split()[-1]) for line in text.splitlines() if line.startswith(name + " ") or
               line.startswith(name + "{"))


def test_the_real_server_behind_the_balancer_with_its_exporter(real_fleet):
    fleet = real_fleet
    stats = json.load(urllib.request.urlopen(fleet.servers[0].url + "/system_stats", timeout=10))
    version = stats["system"]["comfyui_version"]
    assert not stats["system"].get("standin")
    load = run_load(fleet.url, lambda i: PROMPT, 24, 4, deadline_s=120)
    assert len(load.state("completed")) == 24, [(o.server, o.reason) for o in load.outcomes if o.state != "completed"]
    assert {o.server for o in load.outcomes} == {"comfyui-0", "comfyui-1"}
    with WebSocket(fleet.url.replace("http://", "ws://") + "/ws?clientId=kiln-real-ws") as ws:
        [server] = ws.headers["x-kiln-server"]
        request = urllib.request.Request(fleet.url + "/prompt", json.dumps({"prompt": PROMPT,
                                         "client_id": "kiln-real-ws"}).encode(), {"Content-Type": "application/json"})
        with urllib.request.urlopen(request, timeout=10) as resp:
            pid, placed = json.load(resp)["prompt_id"], resp.headers["X-Kiln-Server"]
        assert placed == server
        seen = []
        while not seen or seen[-1] != "execution_success":
            message = ws.receive()
            if message.get("data", {}).get("prompt_id") == pid:
                seen.append(message["type"])
        assert "execution_start" in seen
    counted = until(lambda: sum(_value(_metrics(s), "kiln_prompts_completed_total") for s in fleet.servers) >= 25 and
                    [_metrics(s) for s in fleet.servers], 30, "the exporters counting the real server's prompts")
    for text in counted:
        assert _value(text, "kiln_prompt_execution_seconds_count") >= 1      # ComfyUI's own timestamps read
        assert _value(text, "kiln_comfyui_up") == 1 and "kiln_gpu_memory_total_bytes{" in text
    print(f"real ComfyUI {version}: 24 prompts through the balancer in {load.seconds:.1f} s, shares "
          f"{ {s: sum(o.server == s for o in load.outcomes) for s in ('comfyui-0', 'comfyui-1')} }; websocket events "
          f"{seen}; completed counted {[_value(t, 'kiln_prompts_completed_total') for t in counted]}")
