"""`invoke verify`'s verdicts on what a registry serves, honest and hostile. The registry here is a
stand-in holding manifests and blobs in memory with the contract of kiln.publish.registry.Registry;
tests/engine/test_publish.py runs the same checks against the real docker-registry."""

import base64
import hashlib
import json
import subprocess

import pytest

from kiln.errors import KilnError
from kiln.publish.signing import envelope, load_signing_key, pae
from kiln.publish.verify import Reference, parse_reference, verify_published

DIGEST = "sha256:" + hashlib.sha256(b"image manifest").hexdigest()
OTHER = "sha256:" + "e" * 64
REPO = "team/comfyui"


class StandInRegistry:
    def __init__(self):
        self.manifests: dict[str, bytes] = {}
        self.headers: dict[str, str] = {}
        self.blobs: dict[str, bytes] = {}

    def manifest_digest(self, repo, reference):
        return self.headers.get(reference) if reference in self.manifests else None

    def descriptor(self, repo, reference):
        data = self.manifests[reference]
        return {"mediaType": "x", "digest": "sha256:" + hashlib.sha256(data).hexdigest(), "size": len(data)}

    def manifest(self, repo, reference):
        try:
            value = json.loads(self.manifests[reference])
        except ValueError:
            value = None
        if not isinstance(value, dict):
            raise KilnError("not a JSON object", "stand-in")
        return value

    def blob(self, repo, digest):
        if digest not in self.blobs:
            raise KilnError(f"GET /v2/{repo}/blobs/{digest} answered HTTP 404", "stand-in")
        return self.blobs[digest]

    def put(self, reference, manifest: bytes, header: str | None = None):
        self.manifests[reference] = manifest
        self.headers[reference] = header or "sha256:" + hashlib.sha256(manifest).hexdigest()

    def attach(self, kind, payload: bytes, subject=DIGEST, layers=None):
        digest = "sha256:" + hashlib.sha256(payload).hexdigest()
        self.blobs[digest] = payload
        manifest = {"subject": {"digest": subject}, "layers": layers if layers is not None else [{"digest": digest}]}
        self.put(f"sha256-{DIGEST[7:]}.{kind}", json.dumps(manifest).encode())


def _sbom(described=DIGEST) -> dict:
    return {"bomFormat": "CycloneDX", "specVersion": "1.6", "version": 1,
            "metadata": {"component": {"type": "container", "name": "kiln/comfyui", "version": described}},
            "components": []}


def _statement(subjects=(DIGEST,), verdict="passed: 12 pass, 0 warn, 0 fail, 1 skip", annotation=None) -> dict:
    smoke = {"name": "kiln-smoke-verdict", "content": base64.b64encode(verdict.encode()).decode(),
             "annotations": {"verdict": annotation or verdict}}
    return {"_type": "https://in-toto.io/Statement/v1", "predicateType": "https://slsa.dev/provenance/v1",
            "subject": [{"name": "r", "digest": {"sha256": d[7:]}} for d in subjects],
            "predicate": {"runDetails": {"byproducts": [smoke]}}}


@pytest.fixture
def keys(tmp_path):
    made = {}
    for name in ("signer", "stranger"):
        path = tmp_path / f"{name}.pem"
        subprocess.run(["openssl", "ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", str(path)], check=True)
        made[name] = load_signing_key(path)
    return made


def _published(keys, statement=None, sbom=None, att: bytes | None = None) -> StandInRegistry:
    registry = StandInRegistry()
    registry.put(DIGEST, b"image manifest")
    registry.attach("sbom", json.dumps(sbom or _sbom()).encode())
    registry.attach("att", att or json.dumps(envelope(statement or _statement(), keys["signer"])).encode())
    return registry


def _verdicts(registry, keys, key="signer", allow_unsigned=False) -> dict[str, str]:
    public = keys[key].public_pem() if key else None
    checks = verify_published(registry, Reference("reg.example", REPO, DIGEST), public, allow_unsigned)
    return {c.item: c.verdict + ": " + c.detail for c in checks}


def test_an_honest_signed_publish_passes_every_check(keys):
    verdicts = _verdicts(_published(keys), keys)
    assert [v.split(":")[0] for v in verdicts.values()] == ["PASS"] * 7, verdicts


def test_a_forced_publish_is_a_warning(keys):
    registry = _published(keys, _statement(verdict="forced: published without a passing smoke record (--force)"))
    assert _verdicts(registry, keys)["smoke"].startswith("WARN: forced")


@pytest.mark.parametrize("statement, fragment", [
    (_statement(subjects=(OTHER,)), "not this image alone"),
    (_statement(subjects=(DIGEST, OTHER)), "not this image alone"),
    ({**_statement(), "predicateType": "https://example.com/other"}, "SLSA v1 provenance"),
])
def test_a_statement_about_something_else_fails(keys, statement, fragment):
    verdicts = _verdicts(_published(keys, statement), keys)
    assert verdicts["provenance"].startswith("FAIL") and fragment in verdicts["provenance"], verdicts
    assert "signature" not in verdicts  # nothing else is read from a statement that is not about this image


def test_signatures_unsigned_stranger_and_forged(keys):
    stranger = _verdicts(_published(keys), keys, key="stranger")
    assert stranger["signature"].startswith("FAIL: no signature") and stranger["smoke"].startswith("SKIP: not judged")
    assert "not authenticated" in _verdicts(_published(keys), keys, key=None)["signature"]
    assert _verdicts(_published(keys), keys, key=None, allow_unsigned=True)["signature"].startswith("WARN")
    forged = envelope(_statement(), keys["signer"])
    forged["payload"] = base64.b64encode(json.dumps(_statement(verdict="passed: forged")).encode()).decode()
    assert _verdicts(_published(keys, att=json.dumps(forged).encode()), keys)["signature"].startswith("FAIL")


def test_a_good_signature_beside_an_undecodable_one_still_checks(keys):
    doc = envelope(_statement(), keys["signer"])
    doc["signatures"].insert(0, {"keyid": "", "sig": "not base64!"})
    assert _verdicts(_published(keys, att=json.dumps(doc).encode()), keys)["signature"].startswith("PASS")


def test_the_payload_type_is_pinned_even_when_signed(keys):
    doc = envelope(_statement(), keys["signer"])
    payload = base64.b64decode(doc["payload"])
    from cryptography.hazmat.primitives import hashes
    from cryptography.hazmat.primitives.asymmetric import ec
    sig = keys["signer"].private.sign(pae("application/json", payload), ec.ECDSA(hashes.SHA256()))
    doc = {**doc, "payloadType": "application/json", "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]}
    assert "payload type 'application/json'" in _verdicts(_published(keys, att=json.dumps(doc).encode()), keys)["provenance"]


@pytest.mark.parametrize("statement, fragment", [
    (_statement(verdict="failed: 3 fail", annotation="passed: 12 pass"), "disagree"),
    ({**_statement(), "predicate": {"runDetails": {"byproducts": []}}}, "no smoke verdict"),
    ({**_statement(), "predicate": {"runDetails": {"byproducts": 7}}}, "no smoke verdict"),
    ({**_statement(), "predicate": []}, "'predicate' is missing or not a dict"),
    (_statement(verdict="failed: 3 fail"), "smoke verdict 'failed: 3 fail'"),
])
def test_smoke_verdicts_that_do_not_pass(keys, statement, fragment):
    verdicts = _verdicts(_published(keys, statement), keys)
    assert verdicts["smoke"].startswith("FAIL") and fragment in verdicts["smoke"], verdicts


@pytest.mark.parametrize("sbom, fragment", [
    (_sbom(described=OTHER), "another image"),
    ({"bomFormat": "CycloneDX", "specVersion": "1.6", "version": "one"}, "does not validate"),
])
def test_an_sbom_of_another_image_or_invalid_fails(keys, sbom, fragment):
    verdicts = _verdicts(_published(keys, sbom=sbom), keys)
    assert verdicts["sbom valid"].startswith("FAIL") and fragment in verdicts["sbom valid"], verdicts


def test_hostile_shapes_are_fail_rows_not_crashes(keys):
    for att in (b"[1, 2]", b"not json", json.dumps({"payloadType": "application/vnd.in-toto+json",
                                                    "payload": base64.b64encode(b"[]").decode()}).encode(),
                json.dumps({"payloadType": "application/vnd.in-toto+json", "payload": 5}).encode()):
        verdicts = _verdicts(_published(keys, att=att), keys)
        assert verdicts["provenance"].startswith("FAIL"), (att, verdicts)
    for subjects in ([{"name": "r", "digest": "sha256:abc"}], [5], "abc"):
        statement = {**_statement(), "subject": subjects}
        assert _verdicts(_published(keys, statement), keys)["provenance"].startswith("FAIL"), subjects
    deep = b"[" * 100_000
    for att in (deep, json.dumps({"payloadType": "application/vnd.in-toto+json",
                                  "payload": base64.b64encode(deep).decode()}).encode()):
        assert _verdicts(_published(keys, att=att), keys)["provenance"].startswith("FAIL")
    assert _verdicts(_published(keys, sbom=None), keys)["sbom valid"].startswith("PASS")
    registry = _published(keys)
    registry.attach("sbom", deep)
    assert _verdicts(registry, keys)["sbom valid"].startswith("FAIL")
    registry = _published(keys)
    registry.attach("att", b"x", layers=[])
    assert "0 layers" in _verdicts(registry, keys)["att attached"]
    registry.attach("att", b"x", layers=[{"digest": "sha256:" + "0" * 64}])
    assert "HTTP 404" in _verdicts(registry, keys)["att attached"]
    registry.put(f"sha256-{DIGEST[7:]}.sbom", b"<html>")
    assert _verdicts(registry, keys)["sbom attached"].startswith("FAIL")
    registry.attach("sbom", b"{}", subject=OTHER)
    assert "names sha256:eeeeeeeeeeee as its subject" in _verdicts(registry, keys)["sbom attached"]


def test_an_image_whose_bytes_do_not_hash_to_the_digest_fails(keys):
    registry = _published(keys)
    registry.put(DIGEST, b"something else", header=DIGEST)  # the header claims the digest, the bytes do not
    assert "hashes to" in _verdicts(registry, keys)["image"]
    del registry.manifests[DIGEST]
    assert "does not serve" in _verdicts(registry, keys)["image"]


def test_escape_sequences_in_what_the_registry_serves_are_shown_not_obeyed(keys):
    verdicts = _verdicts(_published(keys, _statement(verdict="failed \x1b[8mhidden")), keys)
    assert "\x1b" not in verdicts["smoke"] and "\\x1b[8m" in verdicts["smoke"]


@pytest.mark.parametrize("text, fragment", [
    ("team/comfyui@" + DIGEST, "'team' in"),
    ("reg.example/team/comfyui:v1", "is not HOST[:PORT]/NAME@sha256"),
])
def test_references_that_name_no_registry_or_digest(text, fragment):
    with pytest.raises(KilnError, match=fragment.replace("[", r"\[")):
        parse_reference(text)
    assert parse_reference("localhost:5000/my__team/comfy--ui@" + DIGEST).repo == "my__team/comfy--ui"


def test_an_attachment_with_a_second_layer_is_refused(keys):
    """A second layer could carry anything beside the checked first: an attachment is one layer."""
    for kind in ("sbom", "att"):
        registry = _published(keys)
        good = json.loads(registry.manifests[f"sha256-{DIGEST[7:]}.{kind}"])["layers"][0]
        registry.attach(kind, b"extra", layers=[good, {"digest": "sha256:" + hashlib.sha256(b"extra").hexdigest()}])
        verdicts = _verdicts(registry, keys)
        assert verdicts[f"{kind} attached"] == f"FAIL: sha256-{DIGEST[7:]}.{kind} has 2 layers, not one", verdicts
