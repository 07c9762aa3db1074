"""A stand-in GPU VM for the cloud-init path: a container on this host's engine that does what cloud-init
does with kiln's user data (its write_files, then its runcmd, the rendered kiln-deploy script) against an
engine that plays the VM's own (an empty second engine in bench/cold_node.py, this host's in
tests/engine/test_deploy_cloud_init.py).

Stand-ins, and only these (this host has no GPU and no VM): the user data's files are written by this module,
not by cloud-init (`cloud-init schema` checks the user data in the tests); `nvidia-smi` answers the card the
image is built for at a driver far above any floor; `nvidia-container-runtime-hook` is present, so the
toolkit check passes; and `docker run --gpus N` becomes `docker run --env KILN_CPU_MODE=1` (the image's
ComfyUI stand-in on the CPU). The script itself, the registry login, the pull, the model fetch, the cache's
preparation, the container's start and the health wait all run as rendered.

Where this VM differs from a real one besides: one line of its environment file is the stand-in's own,
CACHE, a folder that this VM and the engine both see at one path (on a VM they share one filesystem; the
default /var/lib/kiln/cache is not used); that folder is a bind mount, so the script's NVMe search finds the
cache already mounted and never looks at disks; in CPU mode the image's GPU preflight is skipped; and the
VM's engine is whichever engine's socket it is given.
"""

from __future__ import annotations

import base64
import gzip
import json
import shutil
import subprocess
import threading
import time
import uuid
from pathlib import Path

import yaml

CARD_DRIVER = "999.99"   # above every driver floor
PATH = "/opt/kiln-standin:/usr/local/sbin:/usr/local/bin:/usr/sbin:/usr/bin:/sbin:/bin"

NVIDIA_SMI = """#!/bin/sh
# stand-in: the card the image is built for, one GPU
echo "{driver}, {card}"
"""
TOOLKIT_HOOK = "#!/bin/sh\n# stand-in: the NVIDIA Container Toolkit's hook is installed\nexit 0\n"
DOCKER = """#!/bin/sh
# stand-in for the GPU runtime: `--gpus N` becomes the image's CPU mode; everything else reaches the engine as is
skip=0
for arg do
    shift
    if [ "$skip" = 1 ]; then skip=0; continue; fi
    if [ "$arg" = --gpus ]; then skip=1; set -- "$@" --env KILN_CPU_MODE=1; continue; fi
    set -- "$@" "$arg"
done
exec /usr/bin/docker "$@"
"""


def write_files(user_data: Path, root: Path) -> list[str]:
    """The user data's write_files under `root` (gz+b64 as kiln renders them, with their permissions); the
    runcmd's commands."""
    data = yaml.safe_load(user_data.read_text())
    for entry in data["write_files"]:
        if entry.get("encoding") != "gz+b64":
            raise ValueError(f"{user_data}: {entry['path']}: encoding {entry.get('encoding')!r}, not gz+b64")
        path = root / entry["path"].lstrip("/")
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(gzip.decompress(base64.b64decode(entry["content"])))
        path.chmod(int(entry.get("permissions", "0644"), 8))
    return [" ".join(command) if isinstance(command, list) else command for command in data["runcmd"]]


def standins(folder: Path, manifest: dict) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    scripts = {"nvidia-smi": NVIDIA_SMI.format(driver=CARD_DRIVER, card=manifest["gpu"]["display"]),
               "nvidia-container-runtime-hook": TOOLKIT_HOOK, "docker": DOCKER}
    for name, text in scripts.items():
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return folder


class StandinVM:
    """Runs the user data's runcmd in a container of `image` (a Debian with python3) on this host's engine,
    with the empty engine's socket as its /var/run/docker.sock and the host's network (the registry, the hub
    and the served port are all on 127.0.0.1). Each line it prints is kept with its arrival time."""

    def __init__(self, work: Path, user_data: Path, image: str, engine_socket: Path, cache: Path, env: dict[str, str],
                 labels: dict[str, str] | None = None):
        self.root, self.name = work / "vm-root", f"kiln-vm-{uuid.uuid4().hex[:8]}"
        self.runcmd = write_files(user_data, self.root)
        manifest = json.loads((self.root / "etc/kiln/deploy.json").read_text())
        env_file = self.root / manifest["env_file"].lstrip("/")
        env_file.write_text("".join(f"{key}={value}\n" for key, value in {**env, "CACHE": str(cache)}.items()))
        (self.root / "var/lib/kiln").mkdir(parents=True, exist_ok=True)
        client = shutil.which("docker")
        if client is None:
            raise RuntimeError("no docker client on PATH to lend the stand-in VM")
        self.argv = ["docker", "run", "--rm", "--name", self.name, "--network", "host", "--env", f"PATH={PATH}",
                     *[arg for key, value in (labels or {}).items() for arg in ("--label", f"{key}={value}")],
                     "--volume", f"{engine_socket}:/var/run/docker.sock",
                     "--mount", f"type=bind,source={client},target=/usr/bin/docker,readonly",
                     "--volume", f"{standins(work / 'vm-standin', manifest)}:/opt/kiln-standin:ro",
                     "--volume", f"{cache}:{cache}"]
        for folder in ("etc/kiln", "usr/local/lib/kiln", "usr/local/sbin", "var/lib/kiln"):
            self.argv += ["--volume", f"{self.root / folder}:/{folder}"]
        self.argv += [image, "/bin/sh", "-c", " && ".join(self.runcmd)]
        self.lines: list[tuple[float, str]] = []

    def run(self, limit_s: float = 900) -> int:
        """The runcmd to its end, or past limit_s stopped (the VM removed); its exit code. Lines go to
        self.lines as they arrive."""
        self.started = time.monotonic()
        process = subprocess.Popen(self.argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
        watchdog = threading.Timer(limit_s, self.remove)
        watchdog.start()
        try:
            for line in process.stdout:
                self.lines.append((round(time.monotonic() - self.started, 2), line.rstrip("\n")))
            return process.wait(timeout=30)
        finally:
            watchdog.cancel()
            if process.poll() is None:
                process.kill()
            self.remove()

    def remove(self) -> None:
        subprocess.run(["docker", "rm", "--force", self.name], capture_output=True)

    def status(self) -> dict:
        return json.loads((self.root / "var/lib/kiln/status.json").read_text())

    def at(self, fragment: str) -> float | None:
        """Seconds from the VM's start to the first line holding `fragment`."""
        return next((stamp for stamp, line in self.lines if fragment in line), None)
