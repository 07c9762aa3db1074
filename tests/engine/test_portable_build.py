"""A portable context of the small stack, built with the plain `docker build` command (no kiln in the
loop): the builder installs the locked wheels from the index by hash, the CA bundle given for the
index stays out of the final image, and the installed set equals the lock."""

import re
import subprocess
import uuid
from pathlib import Path

import pytest
from kiln.render.context import PORTABLE_CA, write_context
from kiln.sources.comfyui import comfyui_source
from tests.engine.conftest import TEST_IMAGE, git_checkout, run_in, small_project

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them

HOST_CA = Path("/etc/ssl/certs/ca-certificates.crt")  # the host's bundle: it trusts the index's proxy here


def test_plain_docker_build_of_a_portable_context_installs_exactly_the_lock(client, base, tmp_path):
    project = small_project(tmp_path / "proj", git_checkout(tmp_path / "comfyui"))
    out = tmp_path / "portable"
    # the small stack does not pass the gate (it pins three wheels), so its context is written as
    # `invoke render --portable` writes it, through the same library call without the gate
    source = comfyui_source(project.lock.comfyui, tmp_path / "comfyui", False, tmp_path / "sources")
    extra = {**{f"comfyui/{n}": p for n, p in source.files.items()}, PORTABLE_CA: HOST_CA}
    write_context(project.subject("4090", TEST_IMAGE), project.templates_dir, project.payload_dir, out, True, extra)
    dockerfile = (out / "Dockerfile").read_text()
    assert all(flag in dockerfile for flag in ("--require-hashes", "--no-deps", "--only-binary=:all:", "--index-url"))
    assert "--find-links" not in dockerfile and "KILN_WHEELS" not in dockerfile
    assert (out / "comfyui" / "main.py").is_file() and (out / "ca" / "extra-ca.pem").read_bytes() == HOST_CA.read_bytes()
    tag = f"kiln-test-portable:{uuid.uuid4().hex[:8]}"
    try:
        build = subprocess.run(["docker", "build", "--label", "io.kiln.toolkit=test", "-t", tag, str(out)],
                               capture_output=True, text=True, timeout=900)
        assert build.returncode == 0, build.stdout[-3000:] + build.stderr[-2000:]
        freeze = run_in(client, tag, "/opt/venv/bin/python -c \"import importlib.metadata as m\n"
                                     "for d in m.distributions(): print(d.metadata['Name'], d.version)\"")
        installed = {f"{re.sub(r'[-_.]+', '-', name).lower()}=={version}"
                     for name, version in (line.split() for line in freeze.splitlines())}
        lock = project.lock
        assert installed == {f"{name}=={p.version}" for name, p in lock.packages.items()}
        leaked = run_in(client, tag, "ls /tmp/kiln 2>/dev/null; grep -rl 'BEGIN CERTIFICATE' /opt /home /tmp 2>/dev/null"
                                     " || true", user="0")
        assert leaked.strip() == "", leaked
    finally:
        subprocess.run(["docker", "rmi", "-f", tag], capture_output=True)
