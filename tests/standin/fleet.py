"""Many stand-in servers behind the rendered balancer on this host, as a host without containers runs them:
each server is the ComfyUI stand-in with the image's exporter (provision/container/fleet) beside it on kiln's
ports (PORT + 1000 metrics and /ready, PORT + 1100 agent check), and HAProxy from Debian runs the file
`invoke balancer.render` writes. The warm-up is the test's to finish: a server is warm when its ready marker
is written, as the image's warm-up does."""

from __future__ import annotations

import contextlib
import json
import random
import shutil
import socket
import subprocess
import sys
import urllib.request
from dataclasses import dataclass, field
from pathlib import Path
from typing import Iterator

from tests.conftest import ROOT, invoke
from tests.waiting import until

STANDIN = ROOT / "tests" / "standin" / "comfyui"
PAYLOAD = ROOT / "provision" / "container"
PROMPT = {"3": {"class_type": "KSampler", "inputs": {"seed": 1, "steps": 1, "cfg": 1}},
          "9": {"class_type": "SaveImage", "inputs": {"filename_prefix": "fleet"}}}


def _bindable(port: int) -> bool:
    with socket.socket() as sock:
        try:
            sock.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def server_port() -> int:
    """A port P with P, P + 1000 and P + 1100 free (a server and its exporter's two ports)."""
    while True:
        port = random.randrange(20000, 28000)
        if all(_bindable(p) for p in (port, port + 1000, port + 1100)):
            return port


def answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except OSError:
        return False
    return True


@dataclass
class Server:
    port: int
    folder: Path
    env: dict
    comfyui: subprocess.Popen | None = None
    exporter: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    @property
    def metrics(self) -> str:
        return f"http://127.0.0.1:{self.port + 1000}"

    @property
    def ready_marker(self) -> Path:
        return self.folder / "ready"

    def start(self) -> None:
        out = self.folder / "out"
        self.comfyui = subprocess.Popen([sys.executable, str(STANDIN / "main.py"), "--port", str(self.port),
                                         "--output-directory", str(out)], cwd=STANDIN, env=self.env,
                                        stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        self.start_exporter()

    def start_exporter(self) -> None:
        self.exporter = subprocess.Popen(
            [sys.executable, "-m", "fleet", "--url", self.url, "--listen", "127.0.0.1", "--port", str(self.port + 1000),
             "--agent-port", str(self.port + 1100), "--ready", str(self.ready_marker),
             "--failed", str(self.folder / "failed"), "--drain", str(self.folder / "draining")],
            cwd=PAYLOAD, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
        until(lambda: answers(self.url + "/system_stats") and answers(self.metrics + "/metrics"), 30,
              f"the stand-in on {self.port} and its exporter answering")

    def warm(self) -> None:
        self.ready_marker.write_text(json.dumps({"server_s": 0.1, "device_s": 0.1, "total_s": 0.2}) + "\n")

    def kill(self) -> None:
        """The server dies (its exporter with it, as in a container)."""
        for proc in (self.comfyui, self.exporter):
            if proc and proc.poll() is None:
                proc.kill()
                proc.wait()
        self.ready_marker.unlink(missing_ok=True)

    def stop(self) -> None:
        for proc in (self.comfyui, self.exporter):
            if proc and proc.poll() is None:
                proc.terminate()
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()


@dataclass
class Fleet:
    servers: list[Server]
    port: int
    stats_port: int
    config: Path
    haproxy: subprocess.Popen | None = None
    log: Path | None = None
    names: dict = field(default_factory=dict)

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def server_state(self) -> dict[str, str]:
        """HAProxy's view of each server (its stats CSV): status such as UP, DOWN, MAINT, and the weight."""
        text = urllib.request.urlopen(f"http://127.0.0.1:{self.stats_port}/stats;csv", timeout=5).read().decode()
        header, *rows = [line.split(",") for line in text.splitlines() if line]
        names = [h.lstrip("# ") for h in header]
        found = {}
        for row in rows:
            entry = dict(zip(names, row))
            if entry["pxname"] == "comfyui" and entry["svname"] not in ("FRONTEND", "BACKEND"):
                found[entry["svname"]] = f"{entry['status']} {entry['weight']}"
        return found


def render_balancer(out: Path, ports: list[int], balancer_port: int, stats_port: int) -> Path:
    backends = ",".join(f"127.0.0.1:{p}" for p in ports)
    result = invoke("balancer.render", "--backends", backends, "--port", str(balancer_port), "--stats-port",
                    str(stats_port), "--out", str(out))
    assert result.returncode == 0, result.stderr
    return out / "haproxy.cfg"


@contextlib.contextmanager
def host_fleet(tmp: Path, count: int, prompt_s: float = 0.0, warm: bool = True) -> Iterator[Fleet]:
    env = {"PATH": "/usr/bin:/bin", "STANDIN_PROMPT_S": str(prompt_s), "STANDIN_COMPILE_S": "0",
           "TORCHINDUCTOR_CACHE_DIR": str(tmp)}
    servers = []
    for i in range(count):
        folder = tmp / f"server-{i}"
        folder.mkdir(parents=True)
        servers.append(Server(server_port(), folder, env))
    fleet = Fleet(servers, server_port(), server_port(), tmp / "balancer" / "haproxy.cfg", log=tmp / "haproxy.log")
    try:
        for server in servers:
            server.start()
            if warm:
                server.warm()
        render_balancer(tmp / "balancer", [s.port for s in servers], fleet.port, fleet.stats_port)
        haproxy = shutil.which("haproxy") or "/usr/sbin/haproxy"
        with open(fleet.log, "w") as log:
            fleet.haproxy = subprocess.Popen([haproxy, "-db", "-f", str(fleet.config)], stdout=log, stderr=log)
        until(lambda: answers(f"http://127.0.0.1:{fleet.stats_port}/stats"), 30, "HAProxy's stats page")
        if warm:
            until(lambda: all(v.startswith("UP") for v in fleet.server_state().values()), 30, "every server UP")
        yield fleet
    finally:
        if fleet.haproxy:
            fleet.haproxy.terminate()
            fleet.haproxy.wait(timeout=10)
        for server in servers:
            server.stop()
