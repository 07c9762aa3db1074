"""The real default stack, built once per test session through `invoke build` like a user does."""

import hashlib
import json
from dataclasses import dataclass
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT, invoke
from tests.engine.tap import EngineTap

TAG = "kiln/comfyui:0.3.18-torch2.3.1-cu121-4090"
ZIMAGE_TAG = "kiln/z-image-turbo:0.3.74-torch2.3.1-cu121-4090"


@dataclass(frozen=True)
class CaNeedles:
    """What of the test CA could appear in an image: lines of its PEM body, its DER bytes, its fingerprint."""

    pem_lines: tuple[str, ...]
    der: bytes
    sha256: str

    def patterns(self) -> list[bytes]:
        return [line.encode() for line in self.pem_lines] + [self.der[:64], self.sha256.encode(),
                                                              self.sha256.upper().encode()]


@pytest.fixture(scope="session")
def test_ca(tmp_path_factory):
    """The host's CA bundle plus a CA made for this test, whose body must never reach the image."""
    folder = tmp_path_factory.mktemp("ca")
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj",
                    "/CN=kiln-test-proxy-ca", "-keyout", str(folder / "key.pem"), "-out", str(folder / "ca.pem")],
                   check=True, capture_output=True)
    ca = (folder / "ca.pem").read_text()
    bundle = folder / "bundle.pem"
    bundle.write_text(open("/etc/ssl/certs/ca-certificates.crt").read() + ca)
    der = subprocess.run(["openssl", "x509", "-in", str(folder / "ca.pem"), "-outform", "DER"], check=True,
                         capture_output=True).stdout
    return bundle, CaNeedles(pem_lines=tuple(line for line in ca.splitlines()[1:-1] if len(line) == 64)[:3],
                             der=der, sha256=hashlib.sha256(der).hexdigest())


@pytest.fixture(scope="session")
def built(test_ca):
    bundle, _ = test_ca
    cmd = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "build", "--gpu", "4090", "--plain",
           "--comfyui-src", str(ROOT / "tests" / "standin" / "comfyui"), "--allow-unverified-source",
           "--ca-bundle", str(bundle)]
    result = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), **_env()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"tag {TAG}" in result.stdout
    return json.loads((ROOT / "build" / "comfyui-4090.build.json").read_text())


def _env():
    return {k: v for k, v in os.environ.items() if k != "KILN_CA_BUNDLE"}


@dataclass(frozen=True)
class Smoked:
    """One `invoke smoke --json --html` of the built image (through an engine tap), as a user runs it: what
    it printed, its reports, and what it asked the engine to make and to remove."""

    result: subprocess.CompletedProcess
    folder: Path
    making: tuple[str, ...]
    removed: tuple[str, ...]


@pytest.fixture(scope="session")
def smoked(built, tmp_path_factory) -> Smoked:
    """Run once per test run: the smoke tests read its reports, and its record is what publish requires."""
    folder = tmp_path_factory.mktemp("smoked")
    cmd = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "smoke", "--gpu", "4090",
           "--json", str(folder / "r.json"), "--html", str(folder / "r.html")]
    with EngineTap(folder) as tap:
        result = subprocess.run(cmd, capture_output=True, text=True, timeout=900,
                                env={**os.environ, "PYTHONPATH": str(ROOT), "DOCKER_HOST": tap.docker_host})
    return Smoked(result, folder, tuple(tap.making()), tuple(tap.removed_containers()))




@pytest.fixture(scope="session")
def zimage_standin(tmp_path_factory):
    """The stand-in reporting the zimage stack's ComfyUI version."""
    src = tmp_path_factory.mktemp("standin") / "comfyui"
    shutil.copytree(ROOT / "tests" / "standin" / "comfyui", src, ignore=shutil.ignore_patterns("__pycache__"))
    (src / "comfyui_version.py").write_text('__version__ = "0.3.74"\n')
    return src


@pytest.fixture(scope="session")
def zimage_built(zimage_standin):
    cmd = [sys.executable, "-m", "invoke", "--search-root", str(ROOT), "build", "--gpu", "4090", "--image",
           "z-image-turbo", "--plain", "--comfyui-src", str(zimage_standin), "--allow-unverified-source"]
    result = subprocess.run(cmd, capture_output=True, text=True, env={"PYTHONPATH": str(ROOT), **_env()})
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    assert f"tag {ZIMAGE_TAG}" in result.stdout
    return json.loads((ROOT / "build" / "z-image-turbo-4090.build.json").read_text())


def stop_own(ran, **kwargs) -> None:
    """Stop the container this test's `invoke run` started (named in its output), none other: another test run
    beside this one may have its own running. A failed run removed its container itself."""
    named = re.search(r"^(\S+) is ready at ", ran.stdout, re.M) if ran is not None else None
    if named:
        invoke("stop", "--name", named.group(1), **kwargs)
