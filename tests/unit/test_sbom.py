"""The publish stage's SBOM and provenance, built from the real lock, GPU profile and image spec."""

import base64
import hashlib
import json

import pytest

from kiln.errors import KilnError
from kiln.project import Project
from kiln.publish.provenance import provenance
from kiln.publish.sbom import image_sbom, validate_sbom
from tests.conftest import ROOT

IMAGE = "sha256:" + "1" * 64
BASE = "sha256:" + "2" * 64
CREATED = "2025-03-01T12:00:00+00:00"
DEBIAN = ["base-files=12.4+deb12u15", "bsdutils=1:2.38.1-5+deb12u3", "python3.11=3.11.2-6+deb12u6"]


@pytest.fixture(scope="module")
def subject():
    return Project(ROOT).subject("4090")


# Each build validates against the strict schema, whose URL format checks take seconds: build each case once.
@pytest.fixture(scope="module")
def sboms(subject):
    return {verified: image_sbom(subject, IMAGE, verified, DEBIAN, CREATED) for verified in (True, False)}


@pytest.fixture(scope="module")
def sbom(sboms):
    return sboms[True]


def by_purl(doc: dict, prefix: str) -> list[dict]:
    return [c for c in doc["components"] if c.get("purl", "").startswith(prefix)]


def test_every_locked_distribution_appears_once_with_version_purl_and_hash(subject, sbom):
    pypi = by_purl(sbom, "pkg:pypi/")
    assert len(pypi) == len(subject.lock.packages)
    by_name = {c["name"]: c for c in pypi}
    for pkg in subject.lock.packages.values():
        comp = by_name[pkg.name]
        assert comp["version"] == pkg.version
        assert comp["purl"] == f"pkg:pypi/{pkg.name}@{pkg.version}"
        assert comp["hashes"] == [{"alg": "SHA-256", "content": pkg.sha256}]
        assert comp["externalReferences"][0] == {"type": "distribution", "url": pkg.url, "comment": pkg.wheel}


@pytest.mark.parametrize("verified", [True, False])
def test_comfyui_carries_its_commit_and_the_verified_flag(subject, sboms, verified):
    doc = sboms[verified]
    commit = subject.lock.comfyui.commit
    [comfy] = by_purl(doc, "pkg:github/comfyanonymous/comfyui@")
    assert comfy["type"] == "application" and comfy["version"] == subject.lock.comfyui.version
    assert comfy["purl"] == f"pkg:github/comfyanonymous/comfyui@{commit}"
    props = {p["name"]: p["value"] for p in comfy["properties"]}
    assert props == {"kiln:comfyui-commit": commit, "kiln:comfyui-repo": subject.lock.comfyui.repo,
                     "kiln:source-verified": "true" if verified else "false"}


def test_the_base_debian_packages_appear(sbom):
    debs = {c["name"]: c for c in by_purl(sbom, "pkg:deb/debian/")}
    assert sorted(debs) == ["base-files", "bsdutils", "python3.11"]
    assert debs["base-files"]["purl"] == "pkg:deb/debian/base-files@12.4%2Bdeb12u15?distro=bookworm"
    assert debs["bsdutils"]["version"] == "1:2.38.1-5+deb12u3"


def test_the_image_is_the_subject_and_kiln_the_tool(sbom):
    meta = sbom["metadata"]
    assert meta["component"]["type"] == "container"
    assert (meta["component"]["name"], meta["component"]["version"]) == ("kiln/comfyui", IMAGE)
    assert meta["timestamp"] == CREATED
    assert [t["name"] for t in meta["tools"]["components"]] == ["kiln"]
    assert sbom["specVersion"] == "1.6"


def test_the_document_validates_and_tampered_copies_are_refused(sbom):
    validate_sbom(json.dumps(sbom))
    small = {**sbom, "components": by_purl(sbom, "pkg:pypi/")[:3], "dependencies": []}
    validate_sbom(json.dumps(small))
    bad_hash = json.loads(json.dumps(small))
    bad_hash["components"][1]["hashes"][0]["content"] = "not-hex"
    no_name = json.loads(json.dumps(small))
    del no_name["components"][1]["name"]
    for doc in (bad_hash, no_name):
        with pytest.raises(KilnError, match="does not validate against CycloneDX 1.6"):
            validate_sbom(json.dumps(doc))
    with pytest.raises(KilnError):
        validate_sbom("{not json")


def test_same_inputs_give_identical_json(subject, sbom):
    again = image_sbom(subject, IMAGE, True, list(reversed(DEBIAN)), CREATED)
    assert json.dumps(again, sort_keys=True) == json.dumps(sbom, sort_keys=True)


def test_malformed_inputs_are_refused(subject):
    with pytest.raises(KilnError, match="'abc'"):
        image_sbom(subject, "abc", True, DEBIAN, CREATED)
    with pytest.raises(KilnError, match="'base-files'"):
        image_sbom(subject, IMAGE, True, ["base-files"], CREATED)


def test_provenance_names_the_lock_commit_and_base(subject):
    stmt = provenance(subject, "registry.example/kiln/comfyui", IMAGE, "kiln-base:debian-bookworm-py3.11", BASE,
                      True, "2025-03-01T12:00:00Z", "2025-03-01T12:30:00Z", "forced: published without a passing smoke record")
    assert stmt["_type"] == "https://in-toto.io/Statement/v1"
    [verdict] = stmt["predicate"]["runDetails"]["byproducts"]
    assert base64.b64decode(verdict["content"]).decode() == "forced: published without a passing smoke record"
    assert stmt["subject"] == [{"name": "registry.example/kiln/comfyui", "digest": {"sha256": "1" * 64}}]
    build = stmt["predicate"]["buildDefinition"]
    assert build["externalParameters"]["lock_sha256"] == subject.lock.digest
    assert build["externalParameters"]["gpu_profile"] == {"name": "4090", "display": subject.gpu.display}
    deps = {d["uri"]: d for d in build["resolvedDependencies"]}
    commit = subject.lock.comfyui.commit
    assert deps[f"git+{subject.lock.comfyui.repo}@{commit}"]["digest"] == {"gitCommit": commit}
    assert deps["docker-image://kiln-base:debian-bookworm-py3.11"]["digest"] == {"sha256": "2" * 64}
    assert deps["versions.lock"]["digest"] == {"sha256": hashlib.sha256(subject.lock.path.read_bytes()).hexdigest()}
    assert deps[f"versions.lock#stacks.{subject.lock.name}"]["digest"] == {"sha256": subject.lock.digest}
    assert stmt["predicate"]["runDetails"]["metadata"]["invocationId"] == IMAGE


@pytest.mark.parametrize("image, base", [("abc", BASE), (IMAGE, "abc")])
def test_provenance_refuses_a_bad_digest(subject, image, base):
    with pytest.raises(KilnError, match="'abc'"):
        provenance(subject, "kiln/comfyui", image, "kiln-base:x", base, False, "s", "f", "passed")
