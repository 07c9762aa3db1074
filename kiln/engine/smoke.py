"""`invoke smoke`: run the GPU smoke payload inside a built image (or on this host) and read its report."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import tempfile
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import docker
from docker.types import DeviceRequest
from pydantic import ValidationError
from requests.exceptions import RequestException

from kiln.data.records.smoke import SmokeRecord, SmokeSummary
from kiln.data.subject import Subject
from kiln.engine.client import NO_GPU_RUNTIME, image_exists, listed, remove_container
from kiln.engine.facts import read_facts
from kiln.engine.run import cache_volume
from kiln.errors import Interrupted, KilnError
from kiln.identity import GPU_LABEL, IMAGE_LABEL, ROLE_LABEL, SMOKE_RUNNER, TOOLKIT_LABEL as LABEL
from kiln.render.facts import image_facts

MARKER = "@@KILN-SMOKE-JSON@@"  # run-smoke.sh prints the JSON report after it


@dataclass(frozen=True)
class SmokeRun:
    exit_code: int
    table: str
    report: dict[str, Any]
    gpu_note: str             # how GPUs were given to the run
    facts: dict[str, Any]     # what the image (or, on a host, the profile) says it should be
    image_id: str = ""        # the image smoked ("" in host mode)


def resolve_tag(client: docker.DockerClient, tag: str, gpu: str | None = None) -> str:
    """The tag, once it is known to be a kiln image (with the payload) baked for the profile asked for."""
    if not image_exists(client, tag):
        raise KilnError(f"image {tag} is not in the engine", "--image", "build it first with `invoke build --gpu=...`")
    labels = listed(lambda: client.images.get(tag).labels) or {}
    if IMAGE_LABEL not in labels:
        raise KilnError(f"image {tag} was not built by kiln and carries no smoke payload", "--image",
                        "smoke an image made by `invoke build`")
    if gpu and labels.get(GPU_LABEL) != gpu:
        raise KilnError(f"image {tag} was built for the {labels.get(GPU_LABEL)} profile, not {gpu}", "--gpu",
                        f"pass --gpu={labels.get(GPU_LABEL)}, or build the image for {gpu}")
    return tag


def payload_args(gpus_given: bool, require_gpu: bool, allow_no_gpu: bool, require_models: bool = False) -> list[str]:
    """Given GPUs, a GPU image that finds none has failed, unless the user allowed it; without a GPU
    runtime the GPU checks can only skip, unless the user required a GPU."""
    required = require_gpu or (gpus_given and not allow_no_gpu)
    return (["--require-gpu"] if required else []) + (["--require-models"] if require_models else [])


def run_in_image(client: docker.DockerClient, tag: str, require_gpu: bool, allow_no_gpu: bool = False,
                 timeout_s: int = 900, cache: Path | None = None, require_models: bool = False) -> SmokeRun:
    """The payload in the image, against the facts the image itself carries; a cache (as `invoke run` mounts
    it) gives the workflow checks their models."""
    image_id = listed(lambda: client.images.get(tag).id)  # before the run: a rebuild meanwhile gets no credit
    facts = read_facts(client, tag).to_json()
    volumes = cache_volume(cache, facts["cache_mount"])
    try:
        code, logs = _run(client, tag, payload_args(True, require_gpu, allow_no_gpu, require_models), gpus=True,
                          timeout_s=timeout_s, volumes=volumes)
        note = "GPUs: all requested (--gpus all)" + ("; a missing GPU is allowed (--allow-no-gpu)" if allow_no_gpu
                                                      else "; a missing GPU fails the run")
    except _NoGpuRuntime as exc:
        code, logs = _run(client, tag, payload_args(False, require_gpu, allow_no_gpu, require_models), gpus=False,
                          timeout_s=timeout_s, volumes=volumes)
        note = (f"GPUs: this engine cannot give GPUs to containers ({exc}): every GPU check is skipped, "
                "ComfyUI runs on the CPU; install the NVIDIA Container Toolkit for a real check")
    run = _parse(logs, code, note, tag, facts)
    return SmokeRun(**{**run.__dict__, "image_id": image_id})


class _NoGpuRuntime(Exception):
    pass


def _run(client, tag: str, args: list[str], gpus: bool, timeout_s: int, volumes: dict | None = None) -> tuple[int, str]:
    requests = [DeviceRequest(count=-1, capabilities=[["gpu"]])] if gpus else []
    try:
        container = client.containers.create(
            tag, entrypoint=["/usr/bin/tini", "--", "/bin/sh", SMOKE_RUNNER], command=args, device_requests=requests,
            labels={LABEL: "smoke", ROLE_LABEL: "smoke"}, network_mode="none", ipc_mode="private", shm_size="1g",
            environment={} if gpus else {"KILN_CPU_MODE": "1"}, volumes=volumes)
    except docker.errors.APIError as exc:
        raise KilnError(f"cannot create the smoke container ({exc.explanation or exc})", tag,
                        "check the engine and the image") from None
    try:
        try:
            container.start()
        except docker.errors.APIError as exc:
            if gpus and any(s in str(exc) for s in NO_GPU_RUNTIME):
                raise _NoGpuRuntime(str(exc.explanation or exc).split(":")[0]) from None
            raise KilnError(f"cannot start the smoke container ({exc.explanation or exc})", tag,
                            "check the engine and the image") from None
        code = container.wait(timeout=timeout_s)["StatusCode"]
        return code, container.logs(stdout=True, stderr=True).decode("utf-8", "replace")
    except KeyboardInterrupt:
        remove_container(container)
        raise Interrupted([f"smoke container {container.short_id}"]) from None
    except RequestException as exc:
        raise KilnError(f"the smoke run took longer than {timeout_s} s ({exc})", tag, "check the GPU and the image") from None
    finally:
        remove_container(container)


def _parse(logs: str, code: int, note: str, tag: str, facts: dict[str, Any]) -> SmokeRun:
    if MARKER not in logs:
        last = (logs.strip().splitlines() or ["no output"])[-1]
        raise KilnError(f"the smoke payload did not run in {tag} ({last[:200]})", tag,
                        "rebuild the image with this toolkit's `invoke build`")
    table, _, report = logs.partition(MARKER)
    try:
        data = json.loads(report)
    except ValueError:
        raise KilnError("the smoke payload wrote an unreadable report", tag, "run with --plain to see its output") from None
    data["run"] = {"gpus": note}
    return SmokeRun(exit_code=code, table=table.strip(), report=data, gpu_note=note, facts=facts)


def run_on_host(s: Subject, payload: Path, require_gpu: bool, cache_dir: Path | None = None,
                require_models: bool = False) -> SmokeRun:
    """The same payload on this host's Python: versions are reported against the lock, not required."""
    facts = image_facts(s).to_json()
    with tempfile.TemporaryDirectory(prefix="kiln-smoke-") as tmp:
        expect, out = Path(tmp) / "expect.json", Path(tmp) / "report.json"
        expect.write_text(json.dumps(facts))
        cmd = [sys.executable, "-m", "smoke", "--host", "--expect", str(expect), "--json", str(out)]
        cmd += ["--require-gpu"] if require_gpu else []
        cmd += ["--require-models"] if require_models else []
        cmd += ["--cache-dir", str(cache_dir or Path(tmp) / "cache")]
        proc = subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(payload)})
        if proc.returncode == 2 or not out.exists():
            raise KilnError(f"the smoke payload failed to run on this host ({proc.stderr.strip()[-200:]})",
                            "invoke smoke --host", "check this host's Python")
        try:
            report = json.loads(out.read_text())
        except ValueError:
            raise KilnError("the smoke payload wrote an unreadable report", "invoke smoke --host",
                            "run the payload by hand: python -m smoke --host") from None
        return SmokeRun(exit_code=proc.returncode, table=proc.stdout.strip(), report=report,
                        gpu_note="host mode: this host's Python and GPUs", facts=facts)


def smoke_record(run: SmokeRun, tag: str) -> SmokeRecord:
    """What `invoke publish` asks for: this image id was smoked, with this result."""
    try:
        counts = run.report.get("summary")
        summary = SmokeSummary.model_validate({k: counts.get(k) for k in ("pass", "warn", "fail", "skip")}
                                              if isinstance(counts, dict) else counts)
    except ValidationError:
        raise KilnError("the smoke payload's report has no complete summary (pass/warn/fail/skip counts)", tag,
                        "run the smoke suite again; if it repeats, the image's payload is damaged: rebuild it") from None
    return SmokeRecord(image_id=run.image_id, tag=tag, exit_code=run.exit_code, gpus=run.gpu_note, summary=summary,
                       profile=run.facts.get("profile", {}).get("name"))
