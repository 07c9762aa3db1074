"""`invoke run` / `invoke stop`: start a built image with GPUs, its cache and a loopback port, wait
until the warm-up made it healthy; stop and remove what was started."""

from __future__ import annotations

import json
import socket
import time
from dataclasses import dataclass, field
from pathlib import Path

import docker
from docker.types import DeviceRequest

from kiln import __version__
from kiln.data.records.run import Warmup
from kiln.data.facts import ImageFacts
from kiln.engine.client import NO_GPU_RUNTIME, listed, remove_container
from kiln.engine.facts import read_facts
from kiln.errors import Interrupted, KilnError
from kiln.events import Event, Listener, ignore
from kiln.identity import ROLE_LABEL as ROLE, TOOLKIT_LABEL as LABEL, UID, WRITABLE
from kiln.paths import mounted_cache
from kiln.removal import Removal, answer, reason


@dataclass(frozen=True)
class RunRequest:
    tag: str
    name: str
    port: int
    cache: Path | None = None
    gpus: str = "all"
    public: bool = False
    cpu_mode: bool = False
    timeout_s: float = 900.0
    env: dict[str, str] = field(default_factory=dict)


@dataclass(frozen=True)
class Running:
    container_id: str
    name: str
    url: str
    warmup: Warmup
    seconds_to_healthy: float


def check_port(port: int, public: bool) -> None:
    with socket.socket() as sock:
        try:
            sock.bind(("0.0.0.0" if public else "127.0.0.1", port))
        except OSError:
            raise KilnError(f"port {port} is in use", "--port", "choose a free port or stop what uses it") from None


def start(client: docker.DockerClient, req: RunRequest, on_event: Listener = ignore) -> Running:
    """Start the image as its facts say (container port, cache mount), wait until healthy."""
    if req.cache:
        mounted_cache(str(req.cache), "--cache")
    check_port(req.port, req.public)
    if listed(lambda: client.containers.list(all=True, filters={"name": f"^{req.name}$"})):
        raise KilnError(f"a container named {req.name} already exists", "invoke run", "run `invoke stop` first")
    facts = read_facts(client, req.tag)
    container = _create(client, req, facts)
    try:
        started = time.monotonic()
        _start(container, req)
        _wait_healthy(container, req, on_event)
        return Running(container.id, req.name, f"http://{'0.0.0.0' if req.public else '127.0.0.1'}:{req.port}",
                       Warmup.from_log(warmup_in(_log_lines(container))), round(time.monotonic() - started, 2))
    except KeyboardInterrupt:
        remove_container(container)
        raise Interrupted([f"container {req.name}"]) from None
    except BaseException:
        remove_container(container)
        raise


def _create(client: docker.DockerClient, req: RunRequest, facts: ImageFacts):
    # Without a cache the start script still runs, on a tmpfs it reports as not persistent.
    mount = facts.cache_mount
    writable = WRITABLE if req.cache else (*WRITABLE, mount)
    tmpfs = {"/tmp": "rw,exec,mode=1777,size=1g", **{p: f"rw,uid={UID},gid={UID},mode=0755" for p in writable}}
    env = {**req.env, **({"KILN_CPU_MODE": "1"} if req.cpu_mode else {})}
    try:
        return client.containers.create(
            req.tag, name=req.name, detach=True, environment=env, labels={LABEL: __version__, ROLE: "run"},
            device_requests=[] if req.cpu_mode else [_gpus(req.gpus)], read_only=True, tmpfs=tmpfs,
            shm_size="2g", ipc_mode="private", init=False,
            ports={f"{facts.launch.port}/tcp": ("0.0.0.0" if req.public else "127.0.0.1", req.port)},
            volumes=cache_volume(req.cache, mount))
    except docker.errors.APIError as exc:
        raise KilnError(f"the engine refused to create the container ({exc.explanation or exc})", req.tag,
                        "check the arguments and the engine") from None


def cache_volume(cache: Path | None, mount: str) -> dict | None:
    """The host cache bound read-write at the image's cache mount (its facts' cache_mount)."""
    return {str(cache.resolve()): {"bind": mount, "mode": "rw"}} if cache else None


def _gpus(spec: str) -> DeviceRequest:
    if spec == "all":
        return DeviceRequest(count=-1, capabilities=[["gpu"]])
    return DeviceRequest(device_ids=[d.strip() for d in spec.split(",")], capabilities=[["gpu"]])


def _start(container, req: RunRequest) -> None:
    try:
        container.start()
    except docker.errors.APIError as exc:
        text = str(exc.explanation or exc)
        if any(s in text for s in NO_GPU_RUNTIME):
            raise KilnError("this engine cannot give GPUs to containers (no NVIDIA Container Toolkit)", "--gpus",
                            "install the NVIDIA Container Toolkit on the host, or pass --cpu-mode for a test run") from None
        raise KilnError(f"the container did not start ({text[:200]})", req.tag, "check the image and the engine") from None


def _wait_healthy(container, req: RunRequest, on_event: Listener) -> None:
    started, phases = time.monotonic(), 0
    while time.monotonic() - started < req.timeout_s:
        listed(container.reload)
        lines = _log_lines(container)   # after the reload: once it says exited, the log is whole
        phases = _new_phases(lines, phases, on_event)
        state = container.attrs["State"]
        health = state.get("Health", {}).get("Status", "none")
        if state["Status"] == "exited":
            failed = _failure(lines, container)
            if failed:
                raise KilnError(f"the warm-up failed, so the container stopped (exit {state['ExitCode']}): {failed[:300]}",
                                req.name, "check the warm-up workflow's models in the cache and the GPU, then run again")
            raise KilnError(f"the container exited with code {state['ExitCode']} before it was ready "
                            f"({_last_line(lines)})", req.name, "see `docker logs` of a manual run, fix, run again")
        if health == "healthy":
            return
        waited = int(time.monotonic() - started)
        on_event(Event("wait", f"{health}: waiting for the warm-up ({waited} s)", current=waited))
        time.sleep(0.5)
    raise KilnError(f"not healthy after {req.timeout_s:.0f} s ({_last_line(_log_lines(container))})", req.name,
                    "raise --timeout, or check the warm-up's models and the GPU")


PHASE = "kiln: phase "


def _new_phases(logs: list[str], seen: int, on_event: Listener) -> int:
    """Each phase line the container logged since the last look, as a phase event; how many there are now."""
    lines = [line[len(PHASE):] for line in logs if line.startswith(PHASE)]
    for line in lines[seen:]:
        on_event(Event("phase", f"  container: {line[:200]}"))
    return max(len(lines), seen)   # an unreadable log (no lines) relays nothing and forgets nothing


def _last_line(lines: list[str]) -> str:
    said = [line for line in lines if line.strip()]
    return said[-1][:200] if said else "no output"


SCRIPT_FAILED = "kiln: warm-up failed: "   # the start script's line as it stops ComfyUI
HEALTH_FAILED = "warm-up failed: "   # what serve.warmup writes where the healthcheck reads it


def _failure(lines: list[str], container) -> str | None:
    """Why the warm-up failed: its JSON line, else the start script's line, else the health log. In CI the
    JSON line of a failed warm-up was once unreadable while the script's later line was there (likely a line
    another process wrote between the JSON and its newline; the payload now writes lines whole). Each source
    says the same reason, so a log that loses one still names it."""
    reason = warmup_in(lines).get("error") or _script_reason(lines) or _health_reason(container)
    return " ".join(reason.split()) if reason else None


def _log_lines(container) -> list[str]:
    try:
        return container.logs().decode("utf-8", "replace").splitlines()
    except docker.errors.DockerException:   # a log driver the engine cannot read back: the wait goes on unrelayed
        return []


def _script_reason(lines: list[str]) -> str | None:
    for line in reversed(lines):
        at = line.find(SCRIPT_FAILED)
        if at >= 0:
            return line[at + len(SCRIPT_FAILED):].removesuffix("; stopping ComfyUI")
    return None


def _health_reason(container) -> str | None:
    for entry in reversed(container.attrs["State"].get("Health", {}).get("Log") or []):
        output = (entry.get("Output") or "").strip()
        if output.startswith(HEALTH_FAILED):
            return output[len(HEALTH_FAILED):]
    return None


WARMUP = '{"kiln_warmup"'


def warmup_in(lines: list[str]) -> dict:
    """The last warm-up record in these log lines that parses, wherever in its line it starts: another
    process's unfinished line (ComfyUI logs in chunks) can precede it on the shared stream."""
    decoder = json.JSONDecoder()
    for line in reversed(lines):
        at = line.find(WARMUP)
        if at < 0:
            continue
        try:
            record = decoder.raw_decode(line, at)[0]["kiln_warmup"]
        except (ValueError, KeyError):
            continue
        if isinstance(record, dict):
            return record
    return {}


def stop(client: docker.DockerClient, name: str | None = None, timeout_s: int = 10) -> list[str]:
    """Stop (SIGTERM, then kill after timeout_s) and remove the containers `invoke run` started."""
    filters = {"label": [LABEL, f"{ROLE}=run"], **({"name": f"^{name}$"} if name else {})}
    stopped = []
    for container in listed(lambda: client.containers.list(all=True, filters=filters, ignore_removed=True)):
        try:
            container.stop(timeout=timeout_s)
        except docker.errors.APIError as exc:
            got = answer(exc)
            if got is Removal.GONE:
                continue
            if got is not Removal.BEING_REMOVED:
                raise KilnError(f"cannot stop {container.name} ({reason(exc)})", "engine",
                                f"stop it with `docker rm -f {container.name}`") from None
        remove_container(container)
        stopped.append(container.name)
    return stopped
