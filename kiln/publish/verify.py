"""`invoke verify`: what a consumer of a published image checks before listing or running it, read from
the registry alone: the image is served at its digest, its SBOM and provenance are attached to that
digest, the SBOM is valid CycloneDX, the provenance is an in-toto statement about this digest signed
by the key given, and the smoke verdict under that signature."""

from __future__ import annotations

import base64
import binascii
import json
import re
from dataclasses import dataclass

from kiln.errors import KilnError
from kiln.publish.provenance import PREDICATE_TYPE, SMOKE_BYPRODUCT, STATEMENT_TYPE
from kiln.publish.registry import Registry
from kiln.publish.sbom import validate_sbom
from kiln.publish.signing import PAYLOAD_TYPE, verify_envelope

REFERENCE = re.compile(r"^(?P<host>[a-zA-Z0-9.-]+(?::\d{1,5})?)/(?P<repo>[a-z0-9]+(?:[._/-][a-z0-9]+)*)"
                       r"@(?P<digest>sha256:[0-9a-f]{64})$")


@dataclass(frozen=True)
class Reference:
    host: str
    repo: str
    digest: str


@dataclass(frozen=True)
class Check:
    verdict: str        # PASS, WARN, FAIL or SKIP
    item: str
    detail: str


def parse_reference(text: str) -> Reference:
    match = REFERENCE.match(text.strip())
    if not match:
        raise KilnError(f"'{text[:120]}' is not HOST[:PORT]/NAME@sha256:<64 hex>", "--reference",
                        "give the reference `invoke publish` printed, digest and all")
    return Reference(match["host"], match["repo"], match["digest"])


def verify_published(registry: Registry, ref: Reference, public_pem: bytes | None) -> list[Check]:
    served = registry.manifest_digest(ref.repo, ref.digest)
    checks = [Check("PASS", "image", f"served at {ref.digest[:19]}") if served == ref.digest else
              Check("FAIL", "image", f"the registry does not serve {ref.repo}@{ref.digest[:19]}")]
    sbom, sbom_check = _attached(registry, ref, "sbom")
    checks.append(sbom_check)
    if sbom is not None:
        checks.append(_sbom_valid(sbom))
    envelope, att_check = _attached(registry, ref, "att")
    checks.append(att_check)
    if envelope is not None:
        checks += _provenance(envelope, ref, public_pem)
    return checks


def _attached(registry: Registry, ref: Reference, kind: str) -> tuple[bytes | None, Check]:
    tag = f"sha256-{ref.digest.removeprefix('sha256:')}.{kind}"
    if registry.manifest_digest(ref.repo, tag) is None:
        return None, Check("FAIL", f"{kind} attached", f"no {tag} in {ref.repo}")
    manifest = registry.manifest(ref.repo, tag)
    subject = (manifest.get("subject") or {}).get("digest")
    if subject != ref.digest:
        return None, Check("FAIL", f"{kind} attached", f"{tag} names {str(subject)[:19]} as its subject")
    layers = manifest.get("layers") or [{}]
    return registry.blob(ref.repo, layers[0].get("digest", "")), Check("PASS", f"{kind} attached", tag)


def _sbom_valid(data: bytes) -> Check:
    try:
        validate_sbom(data.decode(errors="replace"))
    except KilnError as exc:
        return Check("FAIL", "sbom valid", exc.what)
    components = json.loads(data).get("components", [])
    return Check("PASS", "sbom valid", f"CycloneDX 1.6, {len(components)} components")


def _provenance(data: bytes, ref: Reference, public_pem: bytes | None) -> list[Check]:
    try:
        envelope = json.loads(data)
        statement = json.loads(base64.b64decode(envelope["payload"], validate=True))
    except (ValueError, KeyError, TypeError, binascii.Error):
        return [Check("FAIL", "provenance", "not a DSSE envelope holding JSON")]
    return [_statement(envelope, statement, ref), _signature(envelope, public_pem), _smoke(statement)]


def _statement(envelope: dict, statement: dict, ref: Reference) -> Check:
    subjects = [s.get("digest", {}).get("sha256") for s in statement.get("subject", []) if isinstance(s, dict)]
    if envelope.get("payloadType") != PAYLOAD_TYPE:
        return Check("FAIL", "provenance", f"payload type '{str(envelope.get('payloadType'))[:60]}'")
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        return Check("FAIL", "provenance", "not an in-toto v1 statement with a SLSA v1 provenance predicate")
    if ref.digest.removeprefix("sha256:") not in subjects:
        return Check("FAIL", "provenance", "its subject is another image")
    return Check("PASS", "provenance", "in-toto v1, SLSA provenance v1, about this digest")


def _signature(envelope: dict, public_pem: bytes | None) -> Check:
    if public_pem is None:
        signed = "signed" if envelope.get("signatures") else "unsigned"
        return Check("SKIP", "signature", f"{signed}; not checked without --key")
    try:
        verify_envelope(envelope, public_pem)
    except KilnError as exc:
        return Check("FAIL", "signature", exc.what)
    return Check("PASS", "signature", "checks with the key given")


def _smoke(statement: dict) -> Check:
    byproducts = statement.get("predicate", {}).get("runDetails", {}).get("byproducts", [])
    verdict = next((b.get("annotations", {}).get("verdict", "") for b in byproducts
                    if isinstance(b, dict) and b.get("name") == SMOKE_BYPRODUCT), "")
    if verdict.startswith("passed"):
        return Check("PASS", "smoke", verdict)
    if verdict.startswith("forced"):
        return Check("WARN", "smoke", verdict)
    return Check("FAIL", "smoke", "no smoke verdict in the provenance")
