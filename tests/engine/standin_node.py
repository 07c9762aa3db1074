"""A stand-in one-node Kubernetes cluster for the k8s path: Debian's Podman (4.3) runs the rendered
PersistentVolumeClaim (`podman kube play` makes it a named volume) and Deployment (a pod of its containers)
from a container store, state and network configuration of its own, empty at the start, pulling the image by
digest from a registry.

Stand-ins, and only these (no kubelet or API server can run here):
- the node has no GPU and no device plugin: the container gets KILN_CPU_MODE=1 (the image's ComfyUI stand-in
  on the CPU, its GPU preflight skipped) and its `nvidia.com/gpu` limit is dropped;
- the Service: each container port is published on 127.0.0.1 at a free port, what `kubectl port-forward`
  gives a user;
- the kubelet's probes: Podman 4.3 runs none of them (it ignores the startup and readiness probes and leaves
  the liveness probe to systemd timers), so `wait_ready` runs the startup probe's command in the container
  every period until it passes or its failures run out, then asks the readiness probe's path;
- the pull secret: `kube play --creds`;
- the node's limits: Podman asks for more open files and processes than runc may set where the tests run, so
  the node's containers.conf asks for the hard limit of open files and 4096 processes.

What Podman does not apply, so these tests do not show it: scheduling (the node affinity, the toleration),
runAsNonRoot, fsGroup, the seccomp profile field, terminationGracePeriodSeconds, the preStop drain, the
liveness probe, resource requests, and the emptyDirs' medium and size (memory-backed /dev/shm becomes a
plain volume); nor the ScaledObject and the PodDisruptionBudget. What it does apply, from the rendered spec:
the image by digest, env, ports, the user, the read-only root, the dropped capabilities, no privilege
escalation, and the claim and emptyDirs mounted where the spec says.

Left on the host after `remove`, as by any rootful Podman: netavark's iptables chains and its IPAM state
under /run/containers.
"""

from __future__ import annotations

import json
import resource
import shutil
import subprocess
import tempfile
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

import yaml

from tests.engine.registry import free_port

# far more threads than one server starts; runc refused the hard limit of processes where the tests ran
PROCESSES = 4096
PAUSE = "localhost/podman-pause"   # the image Podman builds for its pods' infra containers


@dataclass
class Pod:
    container: str
    ports: dict[str, int]          # container port name: host port on 127.0.0.1
    startup: dict                  # the rendered probes
    readiness: dict


class StandinNode:
    def __init__(self, work: Path):
        self.work = work
        work.mkdir(parents=True, exist_ok=True)
        if shutil.which("podman") is None:
            raise RuntimeError("no podman on PATH: the stand-in node needs Debian's podman and catatonit")
        files = resource.getrlimit(resource.RLIMIT_NOFILE)[1]
        (work / "containers.conf").write_text(
            f'[containers]\ndefault_ulimits = ["nofile={files}:{files}", "nproc={PROCESSES}:{PROCESSES}"]\n')
        self.env = {"PATH": "/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin",
                    "CONTAINERS_CONF": str(work / "containers.conf")}
        self.run_root = tempfile.mkdtemp(prefix="kiln-node-")   # Podman takes a run root of 50 characters at most
        # store, state and network configuration of its own (netavark's address database is the host's)
        self.base = ["podman", "--root", str(work / "store"), "--runroot", self.run_root, "--tmpdir",
                     str(work / "state"), "--network-config-dir", str(work / "networks"),
                     "--cgroup-manager", "cgroupfs", "--events-backend", "file"]

    def prepare(self) -> None:
        """The pause image built, as a node has its sandbox image before its first pod."""
        self.podman("pod", "create", "--name", "kiln-node-prepare")
        self.podman("pod", "rm", "--force", "kiln-node-prepare")

    def podman(self, *args: str, check: bool = True) -> subprocess.CompletedProcess:
        done = subprocess.run([*self.base, *args], env=self.env, capture_output=True, text=True, timeout=900)
        if check and done.returncode != 0:
            raise RuntimeError(f"podman {' '.join(args[:2])} failed: {done.stderr.strip()[-600:]}")
        return done

    def claim(self, pvc: Path) -> Path:
        """The PersistentVolumeClaim played: its volume's folder on this host, to fill as a user fills a PVC."""
        name = yaml.safe_load(pvc.read_text())["metadata"]["name"]
        self.podman("kube", "play", str(pvc))
        return Path(json.loads(self.podman("volume", "inspect", name).stdout)[0]["Mountpoint"])

    def pull(self, reference: str, creds: str) -> None:
        """The image onto the node before the pod asks for it (what a pre-pull DaemonSet or `crictl pull` does)."""
        self.podman("pull", "--quiet", "--tls-verify=false", "--creds", creds, reference)

    def play(self, deployment: Path, creds: str) -> Pod:
        """The Deployment's pod, as this node runs it (the stand-ins above), started."""
        spec = yaml.safe_load(deployment.read_text())
        container = spec["spec"]["template"]["spec"]["containers"][0]
        container["env"] = [*container.get("env", []), {"name": "KILN_CPU_MODE", "value": "1"}]
        container["resources"]["limits"].pop("nvidia.com/gpu", None)
        ports = {}
        for port in container["ports"]:
            port.update(hostIP="127.0.0.1", hostPort=free_port())
            ports[port["name"]] = port["hostPort"]
        played = self.work / "played.yaml"
        played.write_text(yaml.safe_dump(spec))
        self.podman("kube", "play", "--tls-verify=false", "--creds", creds, str(played))
        rows = json.loads(self.podman("ps", "--all", "--format", "json").stdout)
        name = next(r["Names"][0] for r in rows if not r.get("IsInfra") and r["Names"][0].endswith(container["name"]))
        return Pod(name, ports, container["startupProbe"], container["readinessProbe"])

    def started(self, pod: Pod) -> tuple[bool, str]:
        """The startup probe's command run once in the container, within its timeout: (passed, what it printed)."""
        argv = [*self.base, "exec", pod.container, *pod.startup["exec"]["command"]]
        try:
            done = subprocess.run(argv, env=self.env, capture_output=True, text=True,
                                  timeout=pod.startup.get("timeoutSeconds", 1))
        except subprocess.TimeoutExpired:
            return False, f"timed out after {pod.startup.get('timeoutSeconds', 1)} s"
        return done.returncode == 0, (done.stdout + done.stderr).strip()

    def ready(self, pod: Pod) -> bool:
        probe = pod.readiness["httpGet"]
        url = f"http://127.0.0.1:{pod.ports[probe['port']]}{probe['path']}"
        try:
            with urllib.request.urlopen(url, timeout=pod.readiness.get("timeoutSeconds", 1)) as answer:
                return 200 <= answer.status < 400
        except (urllib.error.URLError, OSError):
            return False

    def wait_ready(self, pod: Pod) -> float:
        """The kubelet's order: the startup probe once a period until it passes, then readiness once a period;
        the seconds until ready. RuntimeError with the startup probe's last words once its failures ran out,
        or once readiness failed its own threshold of times."""
        began = time.monotonic()
        self._probe(pod.startup, lambda: self.started(pod), "the startup probe")
        self._probe(pod.readiness, lambda: (self.ready(pod), ""), "started, but the readiness probe")
        return time.monotonic() - began

    @staticmethod
    def _probe(spec: dict, once, what: str) -> None:
        period, failures, said = spec["periodSeconds"], max(1, spec.get("failureThreshold", 3)), ""
        next_at = time.monotonic()
        for attempt in range(failures):
            passed, said = once()
            if passed:
                return
            next_at += period
            if attempt + 1 < failures:
                time.sleep(max(0.0, next_at - time.monotonic()))
        raise RuntimeError(f"{what} failed {failures} times: {said or 'no output'}")

    def inspect(self, pod: Pod) -> dict:
        return json.loads(self.podman("inspect", pod.container).stdout)[0]

    def logs(self, pod: Pod) -> str:
        done = self.podman("logs", pod.container, check=False)
        return done.stdout + done.stderr

    def empty(self) -> None:
        """Every pod, volume, image and network of this node gone, but the pause image Podman builds for its
        pods, as a node keeps its sandbox image."""
        self.podman("pod", "rm", "--all", "--force", check=False)
        self.podman("volume", "rm", "--all", "--force", check=False)
        rows = self.podman("images", "--format", "{{.ID}} {{.Repository}}", check=False).stdout.splitlines()
        pulled = [row.split()[0] for row in rows if row.split()[1:] != [PAUSE]]
        if pulled:
            self.podman("rmi", "--force", *pulled, check=False)
        self.podman("network", "prune", "--force", check=False)

    def remove(self) -> None:
        self.empty()
        self.podman("rmi", "--all", "--force", check=False)
        shutil.rmtree(self.work, ignore_errors=True)
        shutil.rmtree(self.run_root, ignore_errors=True)
