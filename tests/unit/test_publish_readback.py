"""What `invoke publish` reads back after it writes, without an engine: the digest the registry serves for
each pushed tag against the one the engine reported, and each attachment (SBOM, provenance) pulled back
against the bytes sent. The registry is the in-memory stand-in (tests/unit/oci_registry.py) spoken to over
HTTP by kiln's own client; the engine is a stand-in whose push puts the image's manifest there. The real
engine and registry run the honest path in tests/engine/test_publish.py."""

from __future__ import annotations

import json

import pytest

from kiln.data.records.folder import BuildFolder
from kiln.errors import KilnError
from kiln.identity import GPU_LABEL, IMAGE_LABEL, LOCK_LABEL, SOURCE_LABEL, image_tags
from kiln.publish.job import PublishRequest, publish
from kiln.publish.push import parse_target
from tests.standin.records import build_record
from tests.unit.oci_registry import OciRegistry, digest_of

IMAGE_ID = "sha256:" + "1" * 64
OCI_MANIFEST = "application/vnd.oci.image.manifest.v1+json"


class Image:
    def __init__(self, tags: list[str], labels: dict[str, str]):
        self.id, self.tags, self.labels = IMAGE_ID, tags, labels


class Engine:
    """The docker SDK calls publish makes; a push stores the image's manifest in the stand-in registry
    and reports its digest, as the engine does. after_push runs once the engine has reported."""

    def __init__(self, image: Image, registry: OciRegistry):
        self.image, self.registry, self.after_push = image, registry, lambda repo, tag: None
        self.images, self.api = self, self

    def get(self, name):
        return self.image

    def list(self, name=None):
        return []

    def remove(self, name, force=False, noprune=False):
        pass

    def tag(self, image_id, repository, tag):
        return True

    def push(self, repository, tag, stream, decode, auth_config=None):
        repo = repository.split("/", 1)[1]
        body = _image_manifest(IMAGE_ID)
        self.registry.put_manifest(repo, tag, body, OCI_MANIFEST)
        yield {"status": "Pushed", "id": "layer"}
        yield {"aux": {"Tag": tag, "Digest": digest_of(body), "Size": len(body)}}
        self.after_push(repo, tag)


def _image_manifest(config: str) -> bytes:
    return json.dumps({"schemaVersion": 2, "mediaType": OCI_MANIFEST,
                       "config": {"mediaType": "application/vnd.oci.image.config.v1+json", "digest": config,
                                  "size": 2}, "layers": []}, sort_keys=True).encode()


@pytest.fixture
def registry():
    with OciRegistry() as reg:
        yield reg


@pytest.fixture
def setup(project, registry, tmp_path):
    s = project.subject("4090")
    labels = {LOCK_LABEL: s.lock.digest, GPU_LABEL: s.gpu.name, IMAGE_LABEL: s.image.name, SOURCE_LABEL: "verified"}
    engine = Engine(Image(image_tags(s), labels), registry)
    folder = BuildFolder(tmp_path)
    folder.write_build(build_record(project.root, "4090", published=False).model_copy(update={"image_id": IMAGE_ID}))
    request = PublishRequest(parse_target(f"{registry.host}/team"), None, folder, force=True)
    return s, engine, request


def test_an_honest_registry_gets_every_tag_and_both_attachments(setup, registry):
    s, engine, request = setup
    result = publish(engine, s, request)
    [reference] = result.references
    digest = reference.split("@")[1]
    repo = f"team/{s.image.name}"
    assert {registry.manifests[(repo, tag.split(":")[1])][1] for tag in image_tags(s)} == {_image_manifest(IMAGE_ID)}
    assert registry.tags(repo) == {t.split(":")[1] for t in image_tags(s)} | \
        {f"sha256-{digest[7:]}.sbom", f"sha256-{digest[7:]}.att"}
    assert set(result.artifacts) == {"sbom", "att"}


def test_a_tag_changed_between_the_push_and_the_read_back_is_refused(setup, registry):
    s, engine, request = setup
    other = _image_manifest("sha256:" + "9" * 64)
    engine.after_push = lambda repo, tag: registry.put_manifest(repo, tag, other, OCI_MANIFEST)
    with pytest.raises(KilnError) as caught:
        publish(engine, s, request)
    assert f"is served as {digest_of(other)}, the engine pushed {digest_of(_image_manifest(IMAGE_ID))}" in caught.value.what
    assert "publish again" in caught.value.fix
    assert not any(tag.endswith((".sbom", ".att")) for tag in registry.tags(f"team/{s.image.name}"))


def test_a_provenance_the_registry_keeps_in_another_form_is_refused(setup, registry):
    """The registry keeps the provenance's manifest with another (stored, intact) blob as its layer: only the
    comparison with the bytes sent can tell (an SBOM kept so would also fail its schema)."""
    s, engine, request = setup
    kind = "att"
    decoy = b'{"not": "what was pushed"}'
    registry.blobs[digest_of(decoy)] = decoy

    def keep(repo, ref, body):
        if not ref.endswith(f".{kind}"):
            return body
        manifest = json.loads(body)
        manifest["layers"][0]["digest"] = digest_of(decoy)
        return json.dumps(manifest).encode()

    registry.keep = keep
    with pytest.raises(KilnError) as caught:
        publish(engine, s, request)
    assert f"the {kind} read back from team/{s.image.name}:sha256-" in caught.value.what
    assert "differs from the one pushed" in caught.value.what
