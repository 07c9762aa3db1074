"""`invoke publish` against a real registry (Debian's docker-registry with htpasswd auth on 127.0.0.1):
the smoke gate, the push with the digest read back, SBOM and provenance attached and pulled back,
immutable tags, wrong credentials, a registry that is down (and comes back) mid-publish, and one that
hands out bearer tokens as cloud registries do."""

import base64
import io
import json
import os
import shutil
import signal
import socket
import subprocess
import sys
import tarfile
import threading
from pathlib import Path

import pytest

from kiln.errors import KilnError
from kiln.publish.push import push_tag
from kiln.publish.registry import Credentials, Registry
from kiln.publish.sbom import validate_sbom
from kiln.publish.signing import ENVELOPE_TYPE, envelope, load_signing_key
from tests.conftest import ROOT, invoke
from tests.engine.conftest import TEST_IMAGE, build_small
from tests.engine.registry import PASSWORD, USER, LocalRegistry, free_port, make_tls
from tests.engine.scope import tags_starting
from tests.engine.token_service import TokenService
from tests.waiting import until

pytestmark = pytest.mark.network  # builds from the locked wheels: the package index, unless the wheel cache has them


SET_IMAGE = "kiln-set"
WRONG = "wrong-password-7f3a"  # distinct, so a leak of the password actually used would be found


@pytest.fixture
def registry(tmp_path):
    reg = LocalRegistry(tmp_path / "registry", free_port()).start()
    yield reg
    reg.stop()


@pytest.fixture
def built(small, monkeypatch):
    project, src = small
    result, record = build_small(project, src)
    monkeypatch.setenv("KILN_REGISTRY_USER", USER)
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", PASSWORD)
    return project, result, record


def _publish(project, registry, *args, gpu="4090", all_gpus=False, image=TEST_IMAGE):
    chosen = ("--all-gpus",) if all_gpus else ("--gpu", gpu)
    return invoke("publish", "--registry", f"{registry.host}/team", *chosen, "--image", image, "--plain", *args,
                  root=project.root)


def _one_error(result, fragment, secret=PASSWORD):
    assert result.returncode == 2 and "Traceback" not in result.stderr, result.stdout[-800:] + result.stderr[-800:]
    [line] = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert fragment in line, line
    assert secret not in result.stdout + result.stderr


def _answers(registry) -> bool:
    try:
        socket.create_connection(("127.0.0.1", registry.port), timeout=1).close()
    except OSError:
        return False
    return True


def _client_registry(registry) -> Registry:
    return Registry(registry.host, Credentials(USER, PASSWORD))


def test_no_smoke_record_is_refused_and_nothing_pushed(built, registry):
    project, result, record = built
    _one_error(_publish(project, registry), "has no smoke record")
    assert _client_registry(registry).manifest_digest(f"team/{TEST_IMAGE}", result.tags[0].split(":")[1]) is None
    assert "published" not in json.loads(record.read_text())


def test_forced_publish_pushes_verifies_and_attaches(built, registry, client):
    project, result, record = built
    out = _publish(project, registry, "--force")
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert PASSWORD not in out.stdout + out.stderr + record.read_text()
    published = json.loads(record.read_text())["published"]
    [reference] = published["references"]
    digest = reference.split("@")[1]
    reg, repo = _client_registry(registry), f"team/{TEST_IMAGE}"
    for tag in (t.split(":")[1] for t in result.tags):
        assert reg.manifest_digest(repo, tag) == digest
    hexd = digest.removeprefix("sha256:")
    sbom_manifest = reg.manifest(repo, f"sha256-{hexd}.sbom")
    assert sbom_manifest["subject"]["digest"] == digest
    assert sbom_manifest["annotations"]["io.kiln.smoke"].startswith("forced")
    sbom = reg.blob(repo, sbom_manifest["layers"][0]["digest"]).decode()
    validate_sbom(sbom)
    names = {c["name"] for c in json.loads(sbom)["components"]}
    assert {"packaging", "pyyaml"} <= {n.lower() for n in names}
    att_manifest = reg.manifest(repo, f"sha256-{hexd}.att")
    assert att_manifest["layers"][0]["mediaType"] == "application/vnd.dsse.envelope.v1+json"
    assert att_manifest["annotations"]["io.kiln.signed-by"] == "unsigned" and "(unsigned: pass --sign-key" in out.stdout
    att = json.loads(reg.blob(repo, att_manifest["layers"][0]["digest"]))
    assert att["signatures"] == []
    assert json.loads(base64.b64decode(att["payload"]))["subject"][0]["digest"]["sha256"] == hexd
    assert tags_starting(client, registry.host) == []
    for tag in result.tags:  # the image leaves this engine, so the pull must download it
        client.images.remove(tag, force=True)
    assert not [i for i in client.api.images() if i["Id"] == result.image_id]
    pulled = client.images.pull(f"{registry.host}/{repo}@{digest}", auth_config={"username": USER, "password": PASSWORD})
    try:
        assert pulled.id == result.image_id
    finally:
        client.images.remove(f"{registry.host}/{repo}@{digest}", force=True)


def test_a_failed_smoke_record_is_refused(built, registry):
    project, result, _ = built
    smoked = invoke("smoke", "--gpu", "4090", "--image", TEST_IMAGE, root=project.root)
    assert smoked.returncode == 1 and "record: " in smoked.stdout  # the small stack has no torch: checks fail
    _one_error(_publish(project, registry), "its smoke run failed")


def test_an_image_built_from_another_lock_is_refused(built, registry):
    project, _, _ = built
    lock = project.root / "versions.lock"
    text = lock.read_text()
    assert 'title = "the design card:' in text
    lock.write_text(text.replace('title = "the design card:', 'title = "the design card (edited after the build):', 1))
    _one_error(_publish(project, registry, "--force"), "built from another versions.lock")


def test_a_version_tag_is_immutable_unless_overwrite(built, registry, small):
    project, result, _ = built
    assert _publish(project, registry, "--force").returncode == 0
    template = project.templates_dir / "start.sh.j2"
    template.write_text(template.read_text().replace("set -eu", "set -eu\n# another build", 1))
    rebuilt, _ = build_small(project, small[1])
    assert rebuilt.image_id != result.image_id and rebuilt.tags == result.tags
    _one_error(_publish(project, registry, "--force"), "already names another image")
    assert _publish(project, registry, "--force", "--overwrite").returncode == 0


def test_republish_after_a_start_script_edit_uploads_only_that_layer(small, registry, client, monkeypatch):
    """The engine pushes the one new layer and finds every other already there; what the registry gains is
    that layer (holding the start script alone), the new image config and manifest, and the SBOM and
    provenance of the new digest: nothing else."""
    # Both builds serve the wheels on one port: the wheels URL is part of the venv step's cache key, and a
    # build that finds the default port taken (another build on this host) would serve on a random one.
    monkeypatch.setattr("kiln.sources.wheels.DEFAULT_PORT", free_port())
    monkeypatch.setenv("KILN_REGISTRY_USER", USER)
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", PASSWORD)
    project, src = small
    first, _ = build_small(project, src)
    assert _publish(project, registry, "--force").returncode == 0
    reg, repo, tag = _client_registry(registry), f"team/{TEST_IMAGE}", first.tags[0].split(":")[1]
    template = project.templates_dir / "start.sh.j2"
    template.write_text(template.read_text().replace("set -eu", "set -eu\n# edited start script", 1))
    rebuilt, _ = build_small(project, src)
    held = set(registry.blobs())
    out = _publish(project, registry, "--force", "--overwrite")
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    added = set(registry.blobs()) - held

    manifest, digest = reg.manifest(repo, tag), reg.manifest_digest(repo, tag)
    new_layers = [layer["digest"] for layer in manifest["layers"] if layer["digest"] in added]
    assert len(new_layers) == 1, f"{len(new_layers)} of {len(manifest['layers'])} layers uploaded again"
    with tarfile.open(fileobj=io.BytesIO(reg.blob(repo, new_layers[0]))) as layer:
        files = {m.name: layer.extractfile(m).read().decode() for m in layer.getmembers() if m.isfile()}
    assert list(files) == ["opt/kiln/start.sh"] and "# edited start script" in files["opt/kiln/start.sh"]
    expected = {manifest["config"]["digest"], digest}
    for kind in ("sbom", "att"):
        reference = f"sha256-{digest.removeprefix('sha256:')}.{kind}"
        artifact = reg.manifest(repo, reference)
        expected |= {reg.manifest_digest(repo, reference), artifact["config"]["digest"]}
        expected |= {layer["digest"] for layer in artifact["layers"]}
    assert added - set(new_layers) <= expected, f"unexpected blobs: {added - set(new_layers) - expected}"

    old_ids, new_ids = (client.api.inspect_image(i.image_id)["RootFS"]["Layers"] for i in (first, rebuilt))
    changed = {d[7:19] for d in new_ids if d not in old_ids}
    said = [line.strip().rsplit(": ", 1) for line in out.stdout.splitlines() if ": " in line]
    pushed = {layer for layer, status in said if status == "Pushed"}
    present = {layer for layer, status in said if status == "Layer already exists"}
    assert len(changed) == 1 and pushed == changed, (changed, pushed, out.stdout[-1500:])
    assert present >= {d[7:19] for d in new_ids} - changed, out.stdout[-1500:]


def test_wrong_password_is_one_line_and_nothing_is_claimed(built, registry, monkeypatch):
    project, _, record = built
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", WRONG)
    result = _publish(project, registry, "--force")
    _one_error(result, "refused the credentials", secret=WRONG)
    saved = json.loads(record.read_text())
    assert "published" not in result.stdout and "published" not in saved
    assert "refused the credentials" in saved["publish_failed"]["error"] and PASSWORD not in record.read_text()


def test_dry_run_plans_and_pushes_nothing(built, registry):
    project, result, _ = built
    out = _publish(project, registry, "--force", "--dry-run")
    assert out.returncode == 0 and f"would push {registry.host}/team/{TEST_IMAGE}:" in out.stdout
    assert _client_registry(registry).manifest_digest(f"team/{TEST_IMAGE}", result.tags[0].split(":")[1]) is None


def test_a_registry_down_at_the_push_and_back_during_the_retries(built, registry, client):
    _, result, _ = built
    remote = f"{registry.host}/team/{TEST_IMAGE}"
    client.api.tag(result.image_id, remote, "retry")
    registry.stop()
    threading.Timer(2.0, registry.start).start()
    waits = []
    try:
        digest = push_tag(client, remote, "retry", Credentials(USER, PASSWORD), attempts=6,
                          sleep=lambda s: (waits.append(s), until(lambda: _answers(registry), 60, "the registry back")))
    finally:
        client.images.remove(f"{remote}:retry")
    assert waits and _client_registry(registry).manifest_digest(f"team/{TEST_IMAGE}", "retry") == digest


def test_a_registry_that_stays_down_fails_after_the_retry_budget(built, registry, client):
    _, result, _ = built
    remote = f"{registry.host}/team/{TEST_IMAGE}"
    client.api.tag(result.image_id, remote, "down")
    registry.stop()
    try:
        with pytest.raises(KilnError, match="failed after 3 attempt"):
            push_tag(client, remote, "down", Credentials(USER, PASSWORD), attempts=3, sleep=lambda s: None)
    finally:
        client.images.remove(f"{remote}:down")


@pytest.mark.skipif(subprocess.run(["id", "-u"], capture_output=True, text=True).stdout.strip() != "0",
                    reason="mounting a tmpfs needs root")
def test_registry_storage_full_is_one_line(built, tmp_path, monkeypatch):
    project, _, record = built
    small_disk = tmp_path / "full"
    small_disk.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(small_disk)], check=True)
    reg = LocalRegistry(small_disk, free_port())
    try:
        reg.start()
        monkeypatch.setenv("KILN_PUSH_ATTEMPTS", "1")  # the engine itself retries a failing layer for a minute
        result = _publish(project, reg, "--force")
        _one_error(result, "failed after 1 attempt(s)")
        assert "500" in result.stderr and "may be down or full" in result.stderr
        assert "published" not in json.loads(record.read_text())
    finally:
        reg.stop()
        subprocess.run(["umount", str(small_disk)], check=False)


def test_a_tls_registry_with_its_own_ca(built, tmp_path):
    """The CA goes where a user puts it for Docker (/etc/docker/certs.d/<host>/ca.crt); both the engine's
    push and kiln's own registry client then trust it."""
    project, _, record = built
    ca, cert, key = make_tls(tmp_path / "tls")
    reg = LocalRegistry(tmp_path / "tls-registry", free_port(), tls=(cert, key))
    certs = Path("/etc/docker/certs.d") / reg.host
    certs.mkdir(parents=True, exist_ok=True)
    shutil.copy(ca, certs / "ca.crt")
    try:
        reg.start()
        out = _publish(project, reg, "--force")
        assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
        reference = json.loads(record.read_text())["published"]["references"][0]
        registry = Registry(reg.host, Credentials(USER, PASSWORD))
        assert registry.scheme == "https"
        assert registry.manifest_digest(f"team/{TEST_IMAGE}", reference.split("@")[1]) == reference.split("@")[1]
    finally:
        reg.stop()
        shutil.rmtree(certs, ignore_errors=True)


def test_ctrl_c_mid_push_claims_nothing(built, registry, client):
    project, result, record = built
    cmd = [sys.executable, str(project.root / "tasks.py"), "publish", "--registry", f"{registry.host}/team", "--gpu", "4090",
           "--image", TEST_IMAGE, "--plain", "--force"]
    proc = subprocess.Popen(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                            env={**os.environ, "PYTHONPATH": str(ROOT)})
    for line in proc.stdout:
        if line.startswith("pushing "):
            break
    until(lambda: list((registry.root / "data").rglob("_uploads/*")), 60, "an upload under way")
    proc.send_signal(signal.SIGINT)
    out, err = proc.communicate(timeout=120)
    assert proc.returncode == 2 and "interrupted" in err and "Traceback" not in err, err[-1000:]
    assert "published" not in out and "published" not in json.loads(record.read_text())
    assert tags_starting(client, registry.host) == []


@pytest.fixture
def token_registry(tmp_path):
    """The real docker-registry with token auth, as Docker Hub, GHCR and Artifact Registry run it (ECR
    asks for Basic auth); its token service is the stand-in of tests.engine.token_service."""
    service = TokenService(tmp_path / "token-service")
    reg = LocalRegistry(tmp_path / "token-registry", free_port(), token_auth=service.registry_auth()).start()
    yield reg, service
    reg.stop()
    service.stop()


def test_a_registry_with_a_token_service(built, token_registry, monkeypatch, tmp_path):
    project, result, record = built
    reg, service = token_registry
    out = _publish(project, reg, "--force")
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert PASSWORD not in out.stdout + out.stderr + record.read_text()
    repo = f"team/{TEST_IMAGE}"
    # the engine's push and kiln's own read-back each got bearer tokens, for this repository only
    askers = {issued.client.split("/")[0] for issued in service.issued}
    assert {"docker", "python-urllib3"} <= askers, askers
    assert all(repo in scope for issued in service.issued for scope in issued.scopes), service.issued
    digest = json.loads(record.read_text())["published"]["references"][0].split("@")[1]
    api = _client_registry(reg)
    assert [api.manifest_digest(repo, t.split(":")[1]) for t in result.tags] == [digest] * len(result.tags)
    validate_sbom(api.blob(repo, api.manifest(repo, f"sha256-{digest[7:]}.sbom")["layers"][0]["digest"]).decode())
    with pytest.raises(KilnError, match="asks for credentials"):
        Registry(reg.host, None).manifest_digest(repo, digest)
    # a public image: anyone may pull, and verify needs nothing more (no variables, an empty Docker config)
    service.anonymous_pull = True
    monkeypatch.delenv("KILN_REGISTRY_USER")
    monkeypatch.delenv("KILN_REGISTRY_PASSWORD")
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "no-docker-config"))
    reference = f"{reg.host}/{repo}@{digest}"
    out = invoke("verify", "--reference", reference, "--allow-unsigned", root=project.root)
    assert out.returncode == 0 and f"{reference}: verified" in out.stdout, out.stdout + out.stderr
    anonymous = [issued for issued in service.issued if not issued.account]
    assert anonymous and all(scope.endswith(":pull") for issued in anonymous for scope in issued.scopes), anonymous


def test_a_token_service_refusing_the_password_is_one_line(built, token_registry, monkeypatch):
    project, result, record = built
    reg, service = token_registry
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", WRONG)
    _one_error(_publish(project, reg, "--force"), "token service refused the credentials", secret=WRONG)
    assert WRONG not in record.read_text()
    assert service.refused and not service.issued
    assert "token service refused" in json.loads(record.read_text())["publish_failed"]["error"]
    assert _client_registry(reg).manifest_digest(f"team/{TEST_IMAGE}", result.tags[0].split(":")[1]) is None


def test_a_pull_only_token_is_one_line(built, tmp_path):
    """A token without push rights (a GHCR token lacking write:packages): the registry denies the push."""
    project, result, record = built
    service = TokenService(tmp_path / "token-service", actions=("pull",))
    reg = LocalRegistry(tmp_path / "token-registry", free_port(), token_auth=service.registry_auth()).start()
    try:
        out = _publish(project, reg, "--force")
        _one_error(out, "denied")
        assert "published" not in json.loads(record.read_text())
        assert _client_registry(reg).manifest_digest(f"team/{TEST_IMAGE}", result.tags[0].split(":")[1]) is None
    finally:
        reg.stop()
        service.stop()


def test_an_expired_token_is_renewed(tmp_path):
    """Docker Hub's tokens last 300 s, less than a big push: the read-back after it must ask again.
    docker-registry accepts a token 60 s past its expiry, so one issued 57 s expired lasts 3 s."""
    service = TokenService(tmp_path / "token-service", lifetime_s=-57)
    reg = LocalRegistry(tmp_path / "token-registry", free_port(), token_auth=service.registry_auth()).start()
    try:
        api = _client_registry(reg)
        assert api.manifest_digest("team/renew", "v1") is None and len(service.issued) == 1
        until(lambda: api.manifest_digest("team/renew", "v1") is None and len(service.issued) == 2, 30,
              "a second token once the first expired")
        assert len(service.issued) == 2
    finally:
        reg.stop()
        service.stop()


def test_all_gpus_gates_every_profile_before_pushing_any(small, registry, monkeypatch):
    project, src = small
    monkeypatch.setenv("KILN_REGISTRY_USER", USER)
    monkeypatch.setenv("KILN_REGISTRY_PASSWORD", PASSWORD)
    # an image name of its own: --all-gpus takes every profile of it in the engine, and other tests leave
    # images of theirs behind (built from their own locks, which would stop the set: rightly)
    spec = (project.root / "images" / f"{TEST_IMAGE}.yaml").read_text()
    (project.root / "images" / f"{SET_IMAGE}.yaml").write_text(spec.replace(f"name: {TEST_IMAGE}", f"name: {SET_IMAGE}"))
    repo = f"team/{SET_IMAGE}"
    # the profile refused is the one published later in the set, so a set pushed profile by profile
    # would already have pushed 4090 when the refusal comes
    order = [g for g in project.gpus if g in ("4090", "l4")]
    assert order == ["4090", "l4"], order
    result, _ = build_small(project, src, gpu="4090", image=SET_IMAGE)
    build_small(project, src, gpu="l4", image=SET_IMAGE)
    assert _publish(project, registry, "--force", gpu="l4", image=SET_IMAGE).returncode == 0
    template = project.templates_dir / "start.sh.j2"
    template.write_text(template.read_text().replace("set -eu", "set -eu\n# another l4 build", 1))
    rebuilt, l4_record = build_small(project, src, gpu="l4", image=SET_IMAGE)
    out = _publish(project, registry, "--force", all_gpus=True, image=SET_IMAGE)
    _one_error(out, f"{SET_IMAGE} on l4: ")
    assert "already names another image" in out.stderr and "nothing of the set was pushed" in out.stderr
    assert _client_registry(registry).manifest_digest(repo, result.tags[0].split(":")[1]) is None
    assert "refused before any push" in json.loads(l4_record.read_text())["publish_failed"]["error"]
    out = _publish(project, registry, "--force", "--overwrite", all_gpus=True, image=SET_IMAGE)
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert f"{SET_IMAGE} on 4090: smoke forced" in out.stdout and f"{SET_IMAGE} on l4: smoke forced" in out.stdout
    assert f"{SET_IMAGE} on h200" not in out.stdout  # only the profiles built
    api = _client_registry(registry)
    for built_image in (result, rebuilt):
        assert api.manifest(repo, built_image.tags[0].split(":")[1])["config"]["digest"] == built_image.image_id


def test_all_gpus_with_nothing_built_is_one_line(built, registry):
    project, _, _ = built
    spec = (project.root / "images" / f"{TEST_IMAGE}.yaml").read_text()
    (project.root / "images" / "kiln-unbuilt.yaml").write_text(spec.replace(f"name: {TEST_IMAGE}", "name: kiln-unbuilt"))
    out = invoke("publish", "--registry", f"{registry.host}/team", "--all-gpus", "--image", "kiln-unbuilt", "--force",
                 root=project.root)
    _one_error(out, "no kiln-unbuilt image is built here for any GPU profile")


def test_a_signed_provenance_that_openssl_verifies(built, registry, tmp_path):
    project, _, record = built
    key, public, signature = tmp_path / "signing.pem", tmp_path / "public.pem", tmp_path / "signature"
    for args in (["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                 ["ec", "-in", key, "-pubout", "-out", public]):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    out = _publish(project, registry, "--force", "--sign-key", str(key))
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert "-----BEGIN" not in out.stdout + out.stderr + record.read_text()
    published = json.loads(record.read_text())["published"]
    keyid = published["provenance_signed_by"]
    assert keyid.startswith("sha256:") and f"(signed, key {keyid})" in out.stdout
    digest = published["references"][0].split("@")[1]
    reg, repo = _client_registry(registry), f"team/{TEST_IMAGE}"
    manifest = reg.manifest(repo, f"sha256-{digest[7:]}.att")
    assert manifest["annotations"]["io.kiln.signed-by"] == keyid and manifest["subject"]["digest"] == digest
    envelope = json.loads(reg.blob(repo, manifest["layers"][0]["digest"]))
    assert envelope["payloadType"] == "application/vnd.in-toto+json"
    [sig] = envelope["signatures"]
    signature.write_bytes(base64.b64decode(sig["sig"]))
    payload = base64.b64decode(envelope["payload"])
    kind = b"application/vnd.in-toto+json"
    signed = b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)  # DSSE's PAE, written out again here
    checked = subprocess.run(["openssl", "dgst", "-sha256", "-verify", str(public), "-signature", str(signature)],
                             input=signed, capture_output=True)
    assert checked.returncode == 0, checked.stderr
    statement = json.loads(payload)
    assert statement["subject"][0]["digest"]["sha256"] == digest[7:]
    [verdict] = statement["predicate"]["runDetails"]["byproducts"]  # the smoke verdict is under the signature
    assert base64.b64decode(verdict["content"]).decode().startswith("forced: ")
    # publishing the same image again without the key would swap a signed provenance for an unsigned one
    _one_error(_publish(project, registry, "--force"), "holds a signed provenance and no --sign-key was given")
    other = tmp_path / "other.pem"
    subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(other)], check=True)
    _one_error(_publish(project, registry, "--force", "--sign-key", str(other)), "a provenance signed by another key")
    assert reg.manifest(repo, f"sha256-{digest[7:]}.att")["annotations"]["io.kiln.signed-by"] == keyid
    assert _publish(project, registry, "--force", "--overwrite").returncode == 0
    assert reg.manifest(repo, f"sha256-{digest[7:]}.att")["annotations"]["io.kiln.signed-by"] == "unsigned"


def test_a_bad_signing_key_stops_before_anything_is_pushed(built, registry, tmp_path, monkeypatch):
    project, result, record = built
    rsa = tmp_path / "rsa.pem"
    subprocess.run(["openssl", "genpkey", "-algorithm", "RSA", "-out", str(rsa)], check=True, capture_output=True)
    monkeypatch.setenv("KILN_SIGNING_KEY", str(rsa))
    _one_error(_publish(project, registry, "--force"), "not an ECDSA P-256 key")
    assert _client_registry(registry).manifest_digest(f"team/{TEST_IMAGE}", result.tags[0].split(":")[1]) is None
    assert "published" not in json.loads(record.read_text())


def test_credentials_from_docker_login(built, registry, tmp_path, monkeypatch):
    """No variables: the `auths` entry the real `docker login` wrote is what publish uses."""
    project, _, record = built
    config = tmp_path / "docker-config"
    login = subprocess.run(["docker", "--config", str(config), "login", "-u", USER, "--password-stdin", registry.host],
                           input=PASSWORD, text=True, capture_output=True)
    assert login.returncode == 0, login.stderr
    monkeypatch.delenv("KILN_REGISTRY_USER")
    monkeypatch.delenv("KILN_REGISTRY_PASSWORD")
    monkeypatch.setenv("DOCKER_CONFIG", str(config))
    out = _publish(project, registry, "--force")
    assert out.returncode == 0, out.stdout[-1500:] + out.stderr[-1500:]
    assert PASSWORD not in out.stdout + out.stderr + record.read_text()
    monkeypatch.setenv("DOCKER_CONFIG", str(tmp_path / "empty-config"))
    _one_error(_publish(project, registry, "--force", "--overwrite"), "asks for credentials and none were found")


def test_verify_checks_a_published_image_from_the_registry_alone(built, registry, tmp_path):
    project, _, record = built
    key, public, other = tmp_path / "signing.pem", tmp_path / "public.pem", tmp_path / "other.pem"
    for args in (["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", key],
                 ["ec", "-in", key, "-pubout", "-out", public],
                 ["ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", other]):
        subprocess.run(["openssl", *map(str, args)], check=True, capture_output=True)
    assert _publish(project, registry, "--force", "--sign-key", str(key)).returncode == 0
    reference = json.loads(record.read_text())["published"]["references"][0]
    out = invoke("verify", "--reference", reference, "--key", str(public), root=project.root)
    assert out.returncode == 0 and f"{reference}: verified" in out.stdout, out.stdout + out.stderr
    rows = {line.split()[1]: line.split()[0] for line in out.stdout.splitlines()[2:] if len(line.split()) > 1}
    assert rows["signature"] == "PASS" and rows["smoke"] == "WARN" and rows["image"] == "PASS", out.stdout
    unkeyed = invoke("verify", "--reference", reference, root=project.root)
    assert unkeyed.returncode == 1 and "FAIL (signature)" in unkeyed.stdout and "not authenticated" in unkeyed.stdout
    accepted = invoke("verify", "--reference", reference, "--allow-unsigned", root=project.root)
    assert accepted.returncode == 0 and f"{reference}: verified" in accepted.stdout, accepted.stdout
    # someone with push rights replaces the provenance with one they signed themselves
    reg, repo, digest = _client_registry(registry), f"team/{TEST_IMAGE}", reference.split("@")[1]
    tag = f"sha256-{digest[7:]}.att"
    old = json.loads(reg.blob(repo, reg.manifest(repo, tag)["layers"][0]["digest"]))
    forged = envelope(json.loads(base64.b64decode(old["payload"])), load_signing_key(other))
    reg.put_artifact(repo, tag, json.dumps(forged).encode(), ENVELOPE_TYPE, reg.descriptor(repo, digest), {}, "att.json")
    out = invoke("verify", "--reference", reference, "--key", str(public), root=project.root)
    assert out.returncode == 1 and "FAIL (signature)" in out.stdout, out.stdout + out.stderr
    missing = reference.split("@")[0] + "@sha256:" + "0" * 64
    out = invoke("verify", "--reference", missing, root=project.root)
    assert out.returncode == 1 and "FAIL (image, sbom attached, att attached)" in out.stdout, out.stdout
