"""Empty node to first image on loopback, the compose, cloud-init and Kubernetes paths, every part real but the
GPU: a registry (Debian's docker-registry) holding the image, a model hub (HTTP on 127.0.0.1 serving the files
under Hugging Face resolve paths), an empty Docker engine (a second dockerd with its own empty data root),
the model fetch cloud-init runs (provision/host/fetch_models.py, sha256 verified); then docker-compose on the
rendered compose file, or the rendered cloud-init user data on a stand-in VM (tests/engine/standin_vm.py: the
image published with `invoke publish`, `invoke deploy --target cloud-init`, its kiln-deploy script run as
rendered, only the GPU stood in for), or the rendered k8s manifests on a stand-in node
(tests/engine/standin_node.py: Podman's kube play from an empty store of its own, the claim filled by the
fetch script, the probes run as the kubelet runs them). The first image is a prompt through the published
port and its output read over /view.

Usage: python bench/cold_node.py [--model-mb 512] [--repeat 3] [--path compose --path cloud-init --path k8s] [--hub-mbit N] [--json FILE]

The image is the small stack's (the ComfyUI stand-in in CPU mode) with one model file of --model-mb
megabytes in its manifest. Compose and k8s: runs from nothing (an empty engine or node store, an empty cache
or claim), one phase after another (pull, fetch, up), then overlapped (the pull while the fetch runs, then
up; on the node, one after the other pre-pulls the image, what a DaemonSet or `crictl pull` does, and
overlapped fills the claim with --announce while the Deployment is applied, so the pod pulls and starts
beside the fetch). Cloud-init: the script's own order (the pull in the background of the fetch, then the start), each
phase timed by the line the script prints when it begins and ends. Each phase with its bytes and seconds,
and the overlapped totals against max(pull, fetch) + start to first image, the pull and the fetch each
measured alone (the issue's goal: at most 1.2x). Needs root, the local base image, docker-registry,
htpasswd, docker-compose and podman. Removes what it made.
"""

from __future__ import annotations

import argparse
import datetime
import hashlib
import json
import os
import re
import shutil
import socket
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import yaml  # noqa: E402

from kiln.engine.client import connect  # noqa: E402
from kiln.engine.run import warmup_in  # noqa: E402
from kiln.project import Project  # noqa: E402
from tests.conftest import invoke  # noqa: E402
from tests.engine.conftest import build_with_model  # noqa: E402
from tests.engine.registry import PASSWORD, USER, LocalRegistry, free_port  # noqa: E402
from tests.unit.model_server import ModelServer  # noqa: E402
from kiln.identity import base_ref  # noqa: E402
from kiln.data.lock import load_lock  # noqa: E402
from tests.engine.standin_vm import StandinVM  # noqa: E402
from tests.engine.standin_node import StandinNode  # noqa: E402
from tests.engine.cloud_init_path import first_image, publish_and_render  # noqa: E402

NAME = "kiln-cold-node"
REPO, REVISION, FILE = "kiln/cold", "c" * 40, "standin.safetensors"
PROMPT = {"1": {"class_type": "CheckpointLoaderSimple", "inputs": {"ckpt_name": FILE}},
          "2": {"class_type": "KSampler", "inputs": {"seed": 7, "steps": 1, "cfg": 1}},
          "3": {"class_type": "SaveImage", "inputs": {"images": ["2", 0], "filename_prefix": "cold"}}}


def model_bytes(megabytes: int) -> bytes:
    """Incompressible content (a stream of sha256 blocks), so no transport squeezes it."""
    block, out, seed = 1 << 20, bytearray(), b"kiln"
    while len(out) < megabytes * block:
        seed = hashlib.sha256(seed).digest()
        out += hashlib.sha256(seed).digest() * (block // 32)
    return bytes(out[:megabytes * block])


def build_image(tmp: Path, data: bytes) -> tuple[Path, str]:
    """The small stack's serving image with one model file of these bytes in its manifest."""
    return build_with_model(tmp, NAME, data, (REPO, REVISION, FILE))


PATHS = ("compose", "cloud-init", "k8s")
BRIDGE, BRIDGE_CIDR, POOL = "kilncold0", "10.212.0.1/24", "base=10.213.0.0/16,size=24"


class EmptyEngine:
    """A second dockerd with its own empty data root, on its own socket, with a bridge and address pool of
    its own: a second daemon on the default bridge settings would take docker0 from the host's engine
    (one started with --bridge none deletes it)."""

    def __init__(self, root: Path):
        self.root, self.sock = root, root / "docker.sock"
        root.mkdir(parents=True, exist_ok=True)
        self.env = {**os.environ, "DOCKER_HOST": f"unix://{self.sock}", "DOCKER_CONFIG": str(root / "config")}
        for args in (["link", "add", BRIDGE, "type", "bridge"], ["addr", "add", BRIDGE_CIDR, "dev", BRIDGE],
                     ["link", "set", BRIDGE, "up"]):
            subprocess.run(["ip", *args], check=True, capture_output=True)
        self.process = subprocess.Popen(
            ["dockerd", "--data-root", str(root / "data"), "--exec-root", str(root / "exec"), "--pidfile",
             str(root / "pid"), "-H", f"unix://{self.sock}", "--bridge", BRIDGE, "--default-address-pool", POOL,
             "--iptables=false", "--ip6tables=false"], stdout=open(root / "dockerd.log", "ab"),
            stderr=subprocess.STDOUT)
        deadline = time.monotonic() + 60
        while self.docker("info", check=False).returncode != 0:
            if time.monotonic() > deadline:
                raise RuntimeError(f"the second engine did not start: see {root / 'dockerd.log'}")
            time.sleep(0.5)

    def docker(self, *args: str, check: bool = True, stdin: str | None = None) -> subprocess.CompletedProcess:
        return subprocess.run(["docker", *args], env=self.env, capture_output=True, text=True, check=check,
                              input=stdin, timeout=900)

    def compose(self, folder: Path, project: str, cache: Path, port: int, *args: str) -> subprocess.CompletedProcess:
        env = {**self.env, "KILN_CACHE": str(cache), "KILN_PORT": str(port)}
        return subprocess.run(["docker-compose", "-p", project, "-f", str(folder / "compose.yaml"), "-f",
                               str(folder / "image.yaml"), *args], env=env, capture_output=True, text=True,
                              timeout=900)

    def empty(self) -> None:
        self.docker("system", "prune", "--all", "--force", "--volumes")

    def clear(self) -> None:
        """No container (running ones included) and no image left."""
        running = self.docker("ps", "--all", "--quiet").stdout.split()
        if running:
            self.docker("rm", "--force", *running)
        self.empty()

    def stop(self) -> None:
        self.process.terminate()
        self.process.wait(timeout=60)
        subprocess.run(["ip", "link", "delete", BRIDGE], capture_output=True)


def timed(fn) -> tuple[float, object]:
    started = time.monotonic()
    value = fn()
    return time.monotonic() - started, value


def pull(engine: EmptyEngine, reference: str) -> dict:
    seconds, _ = timed(lambda: engine.docker("pull", "--quiet", reference))
    size = int(engine.docker("image", "inspect", "--format", "{{.Size}}", reference).stdout.strip())
    return {"seconds": round(seconds, 2), "bytes_on_disk": size}


def fetch(deploy: Path, cache: Path, hub: str, *extra: str) -> dict:
    env = {"PATH": os.environ["PATH"], "HF_ENDPOINT": hub}
    seconds, done = timed(lambda: subprocess.run(["/usr/bin/python3", str(ROOT / "provision/host/fetch_models.py"),
                                                  str(deploy / "deploy.json"), str(cache), *extra], capture_output=True,
                                                 text=True, env=env, timeout=900))
    if done.returncode != 0:
        raise RuntimeError(f"the model fetch failed: {done.stderr.strip()[-300:]}")
    return {"seconds": round(seconds, 2), "bytes": sum(p.stat().st_size for p in (cache / "models").rglob("*") if p.is_file())}


def _stamp(moment: str) -> float:
    """An RFC 3339 time as Docker (nanoseconds, Z) or Podman (nanoseconds, the local offset) writes it, as
    seconds since the epoch."""
    match = re.fullmatch(r"(.+T\d\d:\d\d:\d\d)(\.\d+)?(Z|[+-]\d\d:\d\d)", moment.strip())
    if match is None:
        raise ValueError(f"not an RFC 3339 time: {moment!r}")
    whole, fraction, zone = match.groups()
    return datetime.datetime.fromisoformat(whole + (fraction or "")[:7] + ("+00:00" if zone == "Z" else zone)).timestamp()


def up_to_first_image(engine: EmptyEngine, deploy: Path, cache: Path, project: str) -> dict:
    """compose up, until the server is healthy, then one prompt and its image over /view."""
    port = free_port()
    started, wall = time.monotonic(), time.time()
    done = engine.compose(deploy, project, cache, port, "up", "-d")
    if done.returncode != 0:
        raise RuntimeError(f"compose up failed: {done.stderr.strip()[-300:]}")
    created = time.monotonic() - started
    container = engine.docker("ps", "-q", "--filter", f"label=com.docker.compose.project={project}").stdout.split()[0]
    while engine.docker("inspect", "--format", "{{.State.Health.Status}}", container).stdout.strip() != "healthy":
        if time.monotonic() - started > 600:
            raise RuntimeError("not healthy within 600 s")
        time.sleep(0.2)
    healthy = time.monotonic() - started
    base = f"http://127.0.0.1:{port}"
    image = first_image(base, PROMPT, "cold-node")
    served = time.monotonic() - started
    made, began = engine.docker("inspect", "--format", "{{.Created}} {{.State.StartedAt}}", container).stdout.split()
    logs = engine.docker("logs", container).stdout
    return {"compose_up_s": round(created, 2), **_up(wall, made, began, logs, healthy, served, image)}


def _up(wall: float, made: str, began: str, logs: str, healthy: float, served: float, image: bytes) -> dict:
    """A server's way from its launch (at `wall`) to its first image: the container's creation and start (the
    engine's times), warm (the warm-up's record in its log), healthy and served (seconds from the launch)."""
    warm = warmup_in(logs.splitlines())
    made_s, container_s = _stamp(made) - wall, _stamp(began) - wall
    warm_at = container_s + warm["start_to_warm_s"]
    return {"seconds": round(served, 2), "container_created_s": round(made_s, 2),
            "container_started_s": round(container_s, 2), "start_to_warm_s": warm["start_to_warm_s"],
            "warm_at_s": round(warm_at, 2), "healthy_s": round(healthy, 2), "health_lag_s": round(healthy - warm_at, 2),
            "image_s": round(served - healthy, 2), "image_bytes": len(image)}


def one_run(engine: EmptyEngine, deploy: Path, reference: str, hub: str, work: Path, overlapped: bool) -> dict:
    engine.empty()
    cache = work / ("cache-overlapped" if overlapped else "cache-sequential")
    subprocess.run(["sh", str(ROOT / "provision/host/cache.sh"), str(cache)], check=True, capture_output=True)
    started = time.monotonic()
    if overlapped:
        pulled: dict = {}
        thread = threading.Thread(target=lambda: pulled.update(pull(engine, reference)))
        thread.start()
        fetched = fetch(deploy, cache, hub)
        thread.join()
        both = time.monotonic() - started
    else:
        pulled = pull(engine, reference)
        fetched = fetch(deploy, cache, hub)
        both = time.monotonic() - started
    up = up_to_first_image(engine, deploy, cache, f"cold{'o' if overlapped else 's'}")
    total = time.monotonic() - started
    engine.compose(deploy, f"cold{'o' if overlapped else 's'}", cache, 0, "down", "--volumes")
    shutil.rmtree(cache, ignore_errors=True)
    return {"pull": pulled, "fetch": fetched, "pull_and_fetch_s": round(both, 2), "up": up,
            "total_s": round(total, 2)}


def port_free(port: int) -> bool:
    with socket.socket() as probe:
        return probe.connect_ex(("127.0.0.1", port)) != 0


def cloud_init_run(engine: EmptyEngine, user_data: Path, hub: str, work: Path, vm_image: str) -> dict:
    """The user data's runcmd on a stand-in VM, from an empty engine and an empty cache, then one prompt;
    each phase from the lines the script prints when it begins and ends."""
    engine.clear()
    cache = work / "cache-cloud-init"
    shutil.rmtree(work / "vm-root", ignore_errors=True)
    vm = StandinVM(work, user_data, vm_image, engine.sock, cache,
                   {"KILN_REGISTRY_USER": USER, "KILN_REGISTRY_PASSWORD": PASSWORD, "HF_ENDPOINT": hub})
    port = json.loads((vm.root / "etc/kiln/deploy.json").read_text())["port"]
    if not port_free(port):
        raise RuntimeError(f"127.0.0.1:{port} is taken: the cloud-init deployment publishes its port there")
    try:
        code = vm.run()
        if code != 0:
            raise RuntimeError(f"kiln-deploy exited {code}: " + " | ".join(line for _, line in vm.lines[-4:]))
        image = first_image(f"http://127.0.0.1:{port}", PROMPT, "cold-node")
        total = time.monotonic() - vm.started
        fetched = sum(p.stat().st_size for p in (cache / "models").rglob("*") if p.is_file())
        pulled_mb = int(next(line for _, line in vm.lines if " pulled: " in line).split(" pulled: ")[1].split()[0])
    finally:
        engine.clear()
        shutil.rmtree(cache, ignore_errors=True)
    pull = _span(vm, "kiln-deploy: pulling ", " pulled: ")
    fetch = _span(vm, "kiln-deploy: fetching ", ", verified, in ")
    ready = vm.at("kiln-deploy: ready: ")
    both = max(pull[1], fetch[1])
    warm = next((line for _, line in vm.lines if ": ready: warm " in line and "after the container started" in line), "")
    # the server starts once the pull is done, beside the rest of the fetch: "up" counts from the pull's end
    return {"pull": {"seconds": round(pull[1] - pull[0], 2), "mb_on_disk": pulled_mb},
            "fetch": {"seconds": round(fetch[1] - fetch[0], 2), "bytes": fetched},
            "pull_and_fetch_s": round(both - min(pull[0], fetch[0]), 2),
            "checks_s": round(min(pull[0], fetch[0]), 2),
            "up": {"seconds": round(total - pull[1], 2), "after_fetch_s": round(total - both, 2),
                   "ready_s": round(ready - pull[1], 2),
                   "start_to_warm_s": float(warm.split(": ready: warm ")[1].split()[0]) if warm else None,
                   "image_s": round(total - ready, 2), "image_bytes": len(image)},
            "total_s": round(total, 2), "status": vm.status()["status"],
            "log": [f"{stamp:7.2f} {line}" for stamp, line in vm.lines]}


def k8s_run(node: StandinNode, k8s: Path, reference: str, hub: str, overlapped: bool) -> dict:
    """The k8s path on the stand-in node, from an empty store and an empty claim. One after the other: the
    image pulled onto the node (a pre-pull), the claim filled by the fetch script, then the Deployment applied,
    its probes run as the kubelet runs them, and one prompt. Overlapped: the fill with --announce and the apply
    at once, so the pod pulls and starts beside the fetch and its warm-up waits for it."""
    node.empty()
    volume = node.claim(k8s / "pvc.yaml")
    started = time.monotonic()
    if overlapped:
        fetched: dict = {}

        def fill() -> None:
            try:
                fetched.update(fetch(k8s.parent, volume, hub, "--announce"))
            except (RuntimeError, subprocess.TimeoutExpired) as failed:
                fetched["failed"] = str(failed)

        filling = threading.Thread(target=fill)
        filling.start()
        marker = volume / "models" / json.loads((k8s.parent / "deploy.json").read_text())["cache"]["arriving_marker"]
        while not marker.exists() and filling.is_alive():
            time.sleep(0.01)
        try:
            up = up_on_node(node, k8s)
        finally:   # a failed fill is the cause to name, whatever the pod did without its files
            filling.join()
            if "failed" in fetched:
                raise RuntimeError(fetched["failed"])
        pull = {"seconds": up["apply_s"], "bytes_on_disk": _stored(node, reference),
                "measured_as": "the apply: kube play's pull, create and start"}
        both = max(up["apply_s"], fetched["seconds"])
    else:
        seconds, _ = timed(lambda: node.pull(reference, f"{USER}:{PASSWORD}"))
        pull = {"seconds": round(seconds, 2), "bytes_on_disk": _stored(node, reference)}
        fetched = fetch(k8s.parent, volume, hub)
        both = time.monotonic() - started
        up = up_on_node(node, k8s)
    total = time.monotonic() - started
    node.empty()
    return {"pull": pull, "fetch": fetched, "pull_and_fetch_s": round(both, 2), "up": up, "total_s": round(total, 2)}


def _stored(node: StandinNode, reference: str) -> int:
    return int(node.podman("image", "inspect", "--format", "{{.Size}}", reference).stdout.strip())


def up_on_node(node: StandinNode, k8s: Path) -> dict:
    """The Deployment played, ready by its probes, one prompt and its image: seconds from the apply."""
    started, wall = time.monotonic(), time.time()
    pod = node.play(k8s / "deployment.yaml", f"{USER}:{PASSWORD}")
    applied = time.monotonic() - started
    node.wait_ready(pod)
    ready = time.monotonic() - started
    image = first_image(f"http://127.0.0.1:{pod.ports['http']}", PROMPT, "cold-node")
    served = time.monotonic() - started
    facts = node.inspect(pod)
    return {"apply_s": round(applied, 2),
            **_up(wall, facts["Created"], facts["State"]["StartedAt"], node.logs(pod), ready, served, image)}


def _span(vm: StandinVM, begins: str, ends: str) -> tuple[float, float]:
    start, end = vm.at(begins), vm.at(ends)
    if start is None or end is None:
        raise RuntimeError(f"the script never printed '{begins.strip()}' and '{ends.strip()}'")
    return start, end


# The goal for an empty node: the total at most 1.2x max(pull, fetch) + start to the first image
GOAL_RATIO = 1.2


def median(runs: list[dict], mode: str, *keys: str) -> float:
    values = []
    for r in runs:
        if r["mode"] == mode:
            value = r
            for key in keys:
                value = value[key]
            values.append(value)
    return statistics.median(values)


def against_goal(runs: list[dict]) -> dict:
    """Medians per mode; the goal (the issue's): the overlapped total at most 1.2x max(pull, fetch) + up,
    each measured alone (the sequential runs)."""
    pull, fetch, up = (median(runs, "sequential", "pull", "seconds"), median(runs, "sequential", "fetch", "seconds"),
                       median(runs, "sequential", "up", "seconds"))
    goal_s = GOAL_RATIO * max(pull, fetch) + up
    overlapped = median(runs, "overlapped", "total_s")
    # from the container's creation: docker-compose's own project set-up left out, the creation that the
    # script's docker run pays too kept in (records before it was stamped: from the container's start)
    container = statistics.median(r["up"]["seconds"] - r["up"].get("container_created_s", r["up"]["container_started_s"])
                                  for r in runs if r["mode"] == "sequential")
    return {"alone": {"pull_s": pull, "fetch_s": fetch, "up_s": up, "container_to_image_s": round(container, 2)},
            "goal_s": round(goal_s, 2),
            "sequential_total_s": median(runs, "sequential", "total_s"), "overlapped_total_s": overlapped,
            "overlapped_vs_max_plus_up": round(overlapped / (max(pull, fetch) + up), 3),
            "met": overlapped <= goal_s}


def cloud_init_against_goal(runs: list[dict], alone: dict) -> dict:
    """The script's total (its checks included) against the goal with the pull, the fetch and the start to the
    first image each measured alone: the compose path's sequential runs of the same image, hub and engine
    (the script never runs them alone), so no slowness of the script's own raises its goal. The start counts
    from the container's creation, so docker-compose's own project set-up does not raise it either."""
    total, checks = median(runs, "script", "total_s"), median(runs, "script", "checks_s")
    pull, fetch, up = alone["pull_s"], alone["fetch_s"], alone["container_to_image_s"]
    goal_s = checks + GOAL_RATIO * max(pull, fetch) + up
    return {"alone_from": "compose, sequential", "pull_s": pull, "fetch_s": fetch, "container_to_image_s": up,
            "checks_s": checks, "total_s": total, "goal_s": round(goal_s, 2),
            "up_after_fetch_s": median(runs, "script", "up", "after_fetch_s"),
            "total_vs_max_plus_up": round(total / (checks + max(pull, fetch) + up), 3), "met": total <= goal_s}


def summaries(runs: list[dict]) -> dict:
    compose = [r for r in runs if r.get("path", "compose") == "compose"]   # records before cloud-init: compose only
    scripts = [r for r in runs if r.get("path") == "cloud-init"]
    pods = [r for r in runs if r.get("path") == "k8s"]
    out = {"compose": against_goal(compose)} if compose else {}
    if pods:
        out["k8s"] = against_goal(pods)
    if scripts and compose:
        out["cloud-init"] = cloud_init_against_goal(scripts, out["compose"]["alone"])
    return out


# On paper, for the Z-Image image on an H200 node, from the records: the bytes a pull receives (the cuda13
# image's layers gzipped as a push sends them, bench/image_size.py), the model files (the image's manifest)
# and start to warm on the H200 with the models in the page cache (the median of the image's own plan in
# the alternating rounds of bench/coldstart.py).
SIZE_RECORD = ROOT / "docs" / "bench-results" / "image-size-cuda13.json"
WARM_RECORD = ROOT / "docs" / "gpu-validation" / "cuda13" / "h200-coldstart-after.json"


def paper_inputs() -> dict:
    sizes = json.loads(SIZE_RECORD.read_text())
    image = sizes["images"][sizes["after"]]
    models = Project(ROOT).subject("h200", "z-image-turbo", "cuda13").image.models
    rounds = [r for name, r in json.loads(WARM_RECORD.read_text())["levers"].items()
              if name.split("#")[0] == "baseline" and "warm_s" in r]
    if not rounds:
        raise SystemExit(f"cold_node: {WARM_RECORD.name} has no completed baseline round to take start to warm from")
    return {"image_gb": image["gzip_bytes"] / 1e9, "models_gb": sum(m.size for m in models) / 1e9,
            "start_to_warm_s": statistics.median(r["warm_s"] for r in rounds),
            # what the server does before its warm-up needs a model file: start, answer, the device prompt
            "before_models_s": statistics.median(r["ready_s"] + r["warmup"]["device_s"] for r in rounds)}


def paper(rates_gbit=(1, 10, 25)) -> str:
    """What a user waits for at each link rate. One link carries both downloads, so overlapping them saves
    time only where a source delivers less than the link (a registry's decompression, a hub's per-file
    stream); the link-bound total is the lower bound, and one after another the upper. With the server
    started beside the fetch (cloud-init), what it does before it needs a model file runs while the rest of
    the models arrive: the pull first (it takes the link alone in this sketch), then the fetch on the link
    while the server starts."""
    given = paper_inputs()
    start, early = given["start_to_warm_s"], given["before_models_s"]
    rows = [f"pull {given['image_gb']:.2f} GB, fetch {given['models_gb']:.2f} GB, start to warm {start:.2f} s, "
            f"of which {early:.2f} s before the warm-up needs a model file\n",
            "| link | pull s | fetch s | both, one link s | + start to warm s | server started beside the fetch s "
            "| goal: 1.2x max(pull, fetch) + start s |", "|---" * 7 + "|"]
    for rate in rates_gbit:
        pull_s, fetch_s = given["image_gb"] * 8 / rate, given["models_gb"] * 8 / rate
        beside = max(pull_s + early, pull_s + fetch_s) + start - early
        rows.append(f"| {rate} Gbit/s | {pull_s:.0f} | {fetch_s:.0f} | {pull_s + fetch_s:.0f} | "
                    f"{pull_s + fetch_s + start:.0f} | {beside:.0f} | {GOAL_RATIO * max(pull_s, fetch_s) + start:.0f} |")
    return "\n".join(rows)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model-mb", type=int, default=512)
    parser.add_argument("--repeat", type=int, default=3, help="rounds of both modes (default: %(default)s)")
    parser.add_argument("--json", type=Path)
    parser.add_argument("--paper", action="store_true", help="only the table at 1, 10 and 25 Gbit/s, computed")
    parser.add_argument("--path", action="append", choices=PATHS, help="deploy paths to run (default: all three)")
    parser.add_argument("--report", type=Path, metavar="FILE",
                        help="only the table of a recorded run, its summary computed again and written back")
    parser.add_argument("--hub-mbit", type=float,
                        help="the hub sends each file no faster than this (a slower link to the hub; default: as fast as loopback)")
    args = parser.parse_args()
    if args.paper:
        print(paper())
        return 0
    if args.report:
        recorded = json.loads(args.report.read_text())
        recorded["summary"] = summaries(recorded["runs"])
        args.report.write_text(json.dumps(recorded, indent=1) + "\n")
        print(table(recorded))
        return 0
    paths = args.path or list(PATHS)
    client = connect()
    with tempfile.TemporaryDirectory(prefix="kiln-cold-") as tmp_name, ModelServer() as hub:
        work = Path(tmp_name)
        data = model_bytes(args.model_mb)
        hub.files[f"/{REPO}/resolve/{REVISION}/{FILE}"] = data
        hub.faults.pace_bytes_s = args.hub_mbit * 1e6 / 8 if args.hub_mbit else None
        print(f"building the image with a {len(data) / 1e6:.0f} MB model in its manifest ...", flush=True)
        project_root, tag = build_image(work, data)
        registry = LocalRegistry(work / "registry", free_port()).start()
        engine = None
        try:
            engine = EmptyEngine(work / "engine")
            runs = []
            if "compose" in paths:
                reference = push(client, tag, registry)
                deploy = render(project_root, work / "deploy", reference)
                engine.docker("login", "--username", USER, "--password-stdin", registry.host, stdin=PASSWORD)
                for i in range(args.repeat):   # alternating which goes first, so neither always meets a fresh host
                    for overlapped in ((False, True) if i % 2 == 0 else (True, False)):
                        mode = "overlapped" if overlapped else "sequential"
                        print(f"compose {i + 1}/{args.repeat} {mode}: from an empty engine and an empty cache ...",
                              flush=True)
                        runs.append({"path": "compose", "mode": mode, "round": i + 1,
                                     **one_run(engine, deploy, reference, hub.base, work, overlapped)})
                engine.docker("logout", registry.host)
            if "cloud-init" in paths:
                user_data, manifest = publish_and_render(project_root, registry.host, NAME, work / "cloud-init")
                reference = manifest["image"]["reference"]
                lock = load_lock(ROOT / "versions.lock")
                vm_image = base_ref(lock, lock.default_base)
                for i in range(args.repeat):
                    print(f"cloud-init {i + 1}/{args.repeat}: the user data on a stand-in VM, from an empty engine "
                          "and an empty cache ...", flush=True)
                    runs.append({"path": "cloud-init", "mode": "script", "round": i + 1,
                                 **cloud_init_run(engine, user_data, hub.base, work, vm_image)})
            if "k8s" in paths:
                k8s, manifest = publish_and_render(project_root, registry.host, NAME, work / "k8s", target="k8s")
                node = StandinNode(work / "node")
                try:
                    node.prepare()
                    for i in range(args.repeat):
                        for overlapped in ((False, True) if i % 2 == 0 else (True, False)):
                            mode = "overlapped" if overlapped else "sequential"
                            print(f"k8s {i + 1}/{args.repeat} {mode}: the manifests on a stand-in node, from an empty "
                                  "store and an empty claim ...", flush=True)
                            runs.append({"path": "k8s", "mode": mode, "round": i + 1,
                                         **k8s_run(node, k8s, manifest["image"]["reference"], hub.base, overlapped)})
                finally:
                    node.remove()
            result = {"model_bytes": len(data), "hub_mbit": args.hub_mbit, "image": tag, "registry_bytes": sum(registry.blobs().values()),
                      "runs": runs, "summary": summaries(runs)}
        finally:
            if engine:
                engine.empty()
                engine.stop()
            registry.stop()
            client.images.remove(tag, force=True)
    if args.json:
        args.json.write_text(json.dumps(result, indent=1) + "\n")
    print(table(result))
    return 0


def push(client, tag: str, registry: LocalRegistry) -> str:
    """The image in the registry; its reference by digest, as a publish record names it."""
    target = f"{registry.host}/kiln/{NAME}:cold"
    client.images.get(tag).tag(target)
    client.login(USER, PASSWORD, registry=registry.host)
    client.images.push(target)
    digest = client.images.get_registry_data(target, auth_config={"username": USER, "password": PASSWORD}).id
    client.images.remove(target)
    return f"{registry.host}/kiln/{NAME}@{digest}"


def render(project_root: Path, out: Path, reference: str) -> Path:
    """`invoke deploy --target compose`, with the image by digest from the registry (an override file,
    as publish would name it)."""
    done = invoke("deploy", "--gpu", "4090", "--image", NAME, "--target", "compose", "--cpu-mode", "--out", str(out),
                  root=project_root)
    if done.returncode != 0:
        raise RuntimeError(done.stderr)
    (out / "image.yaml").write_text(yaml.safe_dump({"services": {"comfyui": {"image": reference}}}))
    return out


def table(result: dict) -> str:
    rows = ["| path | round | run | checks s | pull s | image MB on disk | fetch s | model MB | pull+fetch s | "
            "up to first image s | of which start to warm s | health check lag s | total s |", "|---" * 13 + "|"]
    for r in result["runs"]:
        up = r["up"]
        mb = r["pull"].get("mb_on_disk") or r["pull"]["bytes_on_disk"] / 1e6
        rows.append(f"| {r['path']} | {r['round']} | {r['mode']} | {r.get('checks_s', '-')} | {r['pull']['seconds']} | "
                    f"{mb:.0f} | {r['fetch']['seconds']} | {r['fetch']['bytes'] / 1e6:.0f} | "
                    f"{r['pull_and_fetch_s']} | {up['seconds']} | {up.get('start_to_warm_s', '-')} | "
                    f"{up.get('health_lag_s', '-')} | {r['total_s']} |")
    lines = ["\n".join(rows), ""]
    s = result["summary"]
    if "compose" in s:
        c = s["compose"]
        lines.append(
            f"compose medians: alone pull {c['alone']['pull_s']} s, fetch {c['alone']['fetch_s']} s, up {c['alone']['up_s']} s; "
            f"sequential total {c['sequential_total_s']} s, overlapped {c['overlapped_total_s']} s = "
            f"{c['overlapped_vs_max_plus_up']}x max(pull, fetch) + up; goal 1.2x max(pull, fetch) + up = {c['goal_s']} s: "
            f"{'met' if c['met'] else 'missed'}")
    if "k8s" in s:
        c = s["k8s"]
        lines.append(
            f"k8s medians (stand-in node): alone pull {c['alone']['pull_s']} s, fetch {c['alone']['fetch_s']} s, up "
            f"{c['alone']['up_s']} s; sequential total {c['sequential_total_s']} s, overlapped {c['overlapped_total_s']} s = "
            f"{c['overlapped_vs_max_plus_up']}x max(pull, fetch) + up; goal 1.2x max(pull, fetch) + up = {c['goal_s']} s: "
            f"{'met' if c['met'] else 'missed'}")
    if "cloud-init" in s:
        c = s["cloud-init"]
        lines.append(
            f"cloud-init medians: checks {c['checks_s']} s, total {c['total_s']} s; alone ({c['alone_from']}) pull "
            f"{c['pull_s']} s, fetch {c['fetch_s']} s, container to first image {c['container_to_image_s']} s: "
            f"{c['total_vs_max_plus_up']}x checks + max(pull, fetch) + that; goal checks + 1.2x max(pull, fetch) + that "
            f"= {c['goal_s']} s: {'met' if c['met'] else 'missed'}")
        lines.append(
            f"cloud-init, the start beside the fetch: the first image {c['up_after_fetch_s']} s after the later of "
            f"the pull and the fetch ended, against {c['container_to_image_s']} s from the container's creation (compose, "
            "started after both); both wait on 2 s health checks")
    return "\n".join(lines)


if __name__ == "__main__":
    sys.exit(main())
