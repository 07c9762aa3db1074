"""An image is judged by the facts it carries: `invoke run`, `invoke smoke` and `invoke report` read the
image's kiln.json, so editing the working tree after a build changes nothing they report; a spec's
cache mount is honoured by run, the start script and the warm-up."""

import json
import os
import subprocess
import sys

import pytest

from kiln.engine.facts import read_facts
from kiln.engine.run import RunRequest, start, stop
from kiln.engine.smoke import run_in_image
from kiln.errors import KilnError
from tests.engine.registry import free_port
from tests.conftest import ROOT
from tests.engine.conftest import TEST_IMAGE, build_serve_image, build_small, serve_cache

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them

MOUNT = "/data/kiln-cache"


def _cli(project, *args):
    cmd = [sys.executable, "-m", "invoke", "--search-root", str(project.root), *args]
    return subprocess.run(cmd, capture_output=True, text=True, env={**os.environ, "PYTHONPATH": str(ROOT)},
                          timeout=600)




def test_smoke_and_report_read_the_facts_from_the_image(client, small, tmp_path):
    project, src = small
    result, _ = build_small(project, src)
    gpus = project.root / "gpus.yaml"
    edited = gpus.read_text().replace("bandwidth_gbs: 1008", "bandwidth_gbs: 2016", 1)
    gpus.write_text(edited.replace("display: NVIDIA GeForce RTX 4090", "display: EDITED AFTER THE BUILD", 1))
    assert read_facts(client, result.tags[0]).profile.bandwidth_gbs == 1008
    report = tmp_path / "r.json"
    smoked = _cli(project, "smoke", "--gpu", "4090", "--image", TEST_IMAGE, "--json", str(report))
    assert smoked.returncode in (0, 1), smoked.stderr
    facts = json.loads(report.read_text())["image_facts"]
    assert facts["profile"]["bandwidth_gbs"] == 1008 and facts["lock_sha256"] == project.lock.digest
    html = tmp_path / "r.html"
    made = _cli(project, "report", "--json", str(report), "--html", str(html))
    assert made.returncode == 0, made.stderr
    page = html.read_text()
    assert "1008 GB/s" in page and "2016" not in page
    assert "NVIDIA GeForce RTX 4090 profile" in page and "EDITED" not in page


def test_facts_of_an_image_without_them_are_refused(client, base):
    with pytest.raises(KilnError, match="carries no /opt/kiln/kiln.json"):
        read_facts(client, base.ref)


@pytest.fixture(scope="module")
def mount_image(tmp_path_factory, base):
    return build_serve_image(tmp_path_factory.mktemp("mount"), mount=MOUNT, name=f"{TEST_IMAGE}-mount")


def test_a_non_default_cache_mount_is_used_end_to_end(client, mount_image, tmp_path):
    _, tag = mount_image
    cache = serve_cache(tmp_path)
    request = RunRequest(tag=tag, name="kiln-test-mount", port=free_port(), cache=cache, cpu_mode=True,
                         timeout_s=120, env={"STANDIN_COMPILE_S": "1"})
    try:
        up = start(client, request)
        container = client.containers.get(up.container_id)
        mounts = {m["Destination"]: m["Source"] for m in container.attrs["Mounts"]}
        logs = container.logs().decode()
    finally:
        stop(client, "kiln-test-mount")
    assert mounts == {MOUNT: str(cache.resolve())}
    assert up.warmup.workflow == "warmup.json" and up.warmup.first_s >= 1.0  # found the model under MOUNT
    assert "is not a mount of a disk" not in logs
    assert any((cache / "inductor").iterdir())  # the compile cache landed on the host's cache


def test_smoke_uses_the_image_cache_mount(client, mount_image):
    _, tag = mount_image
    run = run_in_image(client, tag, require_gpu=False)
    assert run.report["env"]["cache_dir"] == MOUNT and run.facts["cache_mount"] == MOUNT
