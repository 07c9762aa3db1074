"""Builds on the real engine with the small fixture stack and the ComfyUI stand-in."""

import json
import shutil

import re

import pytest

from kiln.data.lock import load_lock
from kiln.data.records.base_image import BaseImageRecord
from kiln.data.records.folder import BuildFolder
from kiln.engine.bases import ensure_base, packages_of
from kiln.errors import KilnError
from tests.conftest import ROOT
from tests.engine.conftest import SMALL_PACKAGES, TEST_IMAGE, build_small, run_in
from tests.engine.scope import fresh_scope, made_containers, made_tags
from tests.waiting import until

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them


def test_build_tags_labels_and_records(client, small):
    project, src = small
    result, record = build_small(project, src)
    assert result.tags == [f"kiln/{TEST_IMAGE}:0.3.18-torch2.3.1-cu121-4090",
                           f"kiln/{TEST_IMAGE}:lock-{project.lock.digest[:12]}-4090"]
    labels = client.images.get(result.tags[0]).labels
    assert labels["org.opencontainers.image.version"] == "0.3.18"
    assert labels["org.opencontainers.image.revision"] == project.lock.comfyui.commit
    assert labels["org.opencontainers.image.created"].endswith("+00:00")
    assert labels["io.kiln.gpu"] == "4090" and labels["io.kiln.torch"] == "2.3.1"
    assert labels["io.kiln.lock-sha256"] == project.lock.digest
    assert labels["io.kiln.comfyui-source"] == "verified"
    saved = json.loads(record.read_text())
    assert saved["image_id"] == result.image_id and saved["size"] == result.size > 0
    assert saved["tags"] == result.tags and len(saved["layers"]) > 5
    assert saved["wheels"]["downloaded"] == len(SMALL_PACKAGES) and saved["durations"]["total_s"] > 0


def test_image_is_lean_and_non_root(client, small):
    project, src = small
    result, _ = build_small(project, src)
    report = run_in(client, result.tags[0], "id -u; id -g; "
                    "for p in gcc cc g++ make pip pip3; do command -v $p || true; done; "
                    "find /root/.cache /tmp/kiln /var/lib/apt/lists -mindepth 1 2>/dev/null | head -3; "
                    "find / -xdev \\( -name '*.whl' -o -name 'kiln-ca*.crt' \\) 2>/dev/null | head -3; "
                    "test -w /opt/comfyui/output && echo output-writable; "
                    "test -w /opt/comfyui && echo source-writable; test -w /cache && echo cache-writable; "
                    "/opt/venv/bin/python -c 'import yaml, packaging; print(\"imports-ok\")'")
    lines = report.split()
    assert lines[:2] == ["10001", "10001"]
    assert "output-writable" in lines and "cache-writable" in lines and "source-writable" not in lines
    assert "imports-ok" in lines
    assert [line for line in lines if line not in ("10001", "output-writable", "cache-writable", "imports-ok")] == []


def test_profiles_share_the_heavy_layers(client, small):
    project, src = small
    a, _ = build_small(project, src, "4090")
    b, _ = build_small(project, src, "h200")
    la = client.images.get(a.image_id).attrs["RootFS"]["Layers"]
    lb = client.images.get(b.image_id).attrs["RootFS"]["Layers"]
    # everything up to the per-profile files (kiln.json and the warm-up workflow, then start.sh) is shared
    assert len(la) == len(lb) and la[:-2] == lb[:-2] and la[-2] != lb[-2]


def test_start_script_change_rebuilds_only_the_last_layer(client, small):
    project, src = small
    first, _ = build_small(project, src)
    template = project.templates_dir / "start.sh.j2"
    template.write_text(template.read_text().replace("set -eu", "set -eu\n# edited"))
    second, _ = build_small(project, src)
    la = client.images.get(first.image_id).attrs["RootFS"]["Layers"]
    lb = client.images.get(second.image_id).attrs["RootFS"]["Layers"]
    assert len(la) == len(lb) and la[:-1] == lb[:-1] and la[-1] != lb[-1]
    reran = [s["instruction"] for s in second.steps if s.get("seconds", 0) > 0.5]
    assert not any("pip install" in step for step in reran)


def test_second_cold_build_downloads_nothing(client, small, tmp_path):
    project, src = small
    cache = tmp_path / "fresh-cache"
    first, record = build_small(project, src, cache=cache)
    assert json.loads(record.read_text())["wheels"]["downloaded"] == len(SMALL_PACKAGES)
    for tag in first.tags:
        client.images.remove(tag, force=True)
    client.images.prune(filters={"dangling": True})
    second, record = build_small(project, src, cache=cache)
    wheels = json.loads(record.read_text())["wheels"]
    assert (wheels["downloaded"], wheels["reused"]) == (0, len(SMALL_PACKAGES))


def test_unverifiable_source_is_refused_then_labelled(client, small, tmp_path):
    project, src = small
    plain = tmp_path / "plain-copy"
    shutil.copytree(src, plain, ignore=shutil.ignore_patterns(".git"))
    with pytest.raises(KilnError) as err:
        build_small(project, plain)
    assert "cannot verify" in err.value.line() and "--allow-unverified-source" in err.value.line()
    result, _ = build_small(project, plain, allow_unverified=True)
    assert client.images.get(result.image_id).labels["io.kiln.comfyui-source"] == "unverified"


def test_checkout_at_another_commit_is_refused(small):
    project, src = small
    (src / "main.py").write_text((src / "main.py").read_text() + "\n# local change\n")
    with pytest.raises(KilnError) as err:
        build_small(project, src)
    assert "local changes" in err.value.line()


def test_hash_mismatch_names_the_package_and_leaves_nothing(client, small, tmp_path):
    project, src = small
    lock = project.lock_path
    digest = project.lock.packages["pyyaml"].sha256
    lock.write_text(lock.read_text().replace(digest, "0" * 64))
    cache = tmp_path / "cache"
    with pytest.raises(KilnError) as err:
        build_small(type(project)(project.root), src, cache=cache)
    assert "hash mismatch for pyyaml 6.0.2" in err.value.line()
    assert not list(cache.rglob("*PyYAML*"))
    assert not list(cache.rglob("*.part"))


def test_failing_step_is_named_with_its_last_output(client, small):
    project, src = small
    template = project.templates_dir / "Dockerfile.j2"
    text = template.read_text().replace("RUN groupadd", "RUN echo \"failing $((40 + 2))\" && exit 3\nRUN groupadd", 1)
    template.write_text(text)
    scope = fresh_scope(project.templates_dir)
    with pytest.raises(KilnError) as err:
        build_small(project, src, gpu="l4")
    line = err.value.line()
    rendered = (project.root / "build" / f"{TEST_IMAGE}-l4" / "Dockerfile").read_text()
    steps = [text for text in rendered.splitlines() if re.match(r"[A-Z]+ ", text)]
    failing = next(n for n, text in enumerate(steps, 1) if text.startswith("RUN echo"))
    assert re.match(rf"build step {failing}/\d+ \(RUN echo", line), line  # the engine adds the build's labels as steps
    assert "returned a non-zero code: 3" in line and "[last output: failing 42]" in line
    until(lambda: not made_containers(client, scope), 30, "the failed step's container gone")
    assert made_tags(client, scope) == []


def test_a_base_built_elsewhere_still_gets_its_package_record(client, base, tmp_path):
    """The SBOM lists the base's Debian packages; a checkout that did not build the base reads them from it,
    and `invoke base` writes again a record that is damaged or describes another image."""
    lock = load_lock(ROOT / "versions.lock")
    folder, name = BuildFolder(tmp_path), lock.default_base
    result = ensure_base(client, lock, name, folder)
    record = folder.read_base(name)
    assert not result.built and record.image_id == result.image_id and record.packages == result.packages
    assert any(p.startswith("python3.11=") for p in record.packages) and len(record.packages) > 50
    for bad in ("{", record.model_copy(update={"image_id": "sha256:" + "0" * 64}).text()):
        folder.base_record(name).write_text(bad)
        assert ensure_base(client, lock, name, folder).packages == record.packages
        assert folder.read_base(name) == record


def test_a_build_takes_the_base_packages_from_the_record_of_that_very_image(client, base, tmp_path):
    """The record saves a container run per build, but only a record of the image the build uses counts."""
    folder, name = BuildFolder(tmp_path), load_lock(ROOT / "versions.lock").default_base
    planted = BaseImageRecord(ref=base.ref, image_id=base.image_id, recipe_sha256="0" * 64, packages=("planted=1",))
    folder.write_base(name, planted)
    assert packages_of(client, folder.read_base(name), base.ref, base.image_id) == ["planted=1"]
    folder.write_base(name, planted.model_copy(update={"image_id": "sha256:" + "0" * 64}))
    assert packages_of(client, folder.read_base(name), base.ref, base.image_id) == list(base.packages)
