"""`invoke verify`: what a consumer of a published image checks before listing or running it, read from
the registry alone: the image is served at its digest, its SBOM and provenance are attached to that
digest, the SBOM is valid CycloneDX and about that digest, the provenance is an in-toto statement about
it signed by the key given, and the smoke verdict under that signature. Whatever the registry serves is
untrusted: a malformed piece is a FAIL row, never a crash."""

from __future__ import annotations

import base64
import binascii
import json
from dataclasses import dataclass

from kiln.addresses import ImageReference, image_reference
from kiln.errors import KilnError, printable
from kiln.publish.provenance import PREDICATE_TYPE, SMOKE_BYPRODUCT, STATEMENT_TYPE
from kiln.publish.registry import Registry
from kiln.publish.sbom import validate_sbom
from kiln.publish.signing import PAYLOAD_TYPE, verify_envelope

DETAIL_CHARS = 160
Reference = ImageReference


@dataclass(frozen=True)
class Check:
    verdict: str        # PASS, WARN, FAIL or SKIP
    item: str
    detail: str


class _Bad(Exception):
    """Something the registry served is not what it should be: one FAIL row."""


def parse_reference(text: str) -> Reference:
    return image_reference(text, "--reference")


def verify_published(registry: Registry, ref: Reference, public_pem: bytes | None,
                     allow_unsigned: bool = False) -> list[Check]:
    """The checks, in order. Reaching the registry at all (auth, network) raises KilnError; anything it
    then serves that is missing or malformed is a FAIL row."""
    served = registry.manifest_digest(ref.repo, ref.digest)
    checks = [_check("image", lambda: _image(registry, ref, served))]
    sbom = _fetch(registry, ref, "sbom", checks)
    if sbom is not None:
        checks.append(_check("sbom valid", lambda: _sbom(sbom, ref)))
    envelope = _fetch(registry, ref, "att", checks)
    if envelope is not None:
        checks += _provenance(envelope, ref, public_pem, allow_unsigned)
    return checks


def _check(item: str, run) -> Check:
    try:
        verdict, detail = run()
    except _Bad as exc:
        verdict, detail = "FAIL", str(exc)
    except Exception as exc:  # noqa: BLE001 - hostile content in a shape nobody checked for is a FAIL row
        verdict, detail = "FAIL", f"malformed ({type(exc).__name__})"
    return Check(verdict, item, printable(detail)[:DETAIL_CHARS])


def _image(registry: Registry, ref: Reference, served: str | None) -> tuple[str, str]:
    if served is None:
        raise _Bad(f"the registry does not serve {ref.repo}@{ref.digest[:19]}")
    try:
        digest = registry.descriptor(ref.repo, ref.digest)["digest"]
    except KilnError as exc:
        raise _Bad(exc.what) from None
    if digest != ref.digest:
        raise _Bad(f"the manifest served hashes to {digest[:19]}, not {ref.digest[:19]}")
    return "PASS", f"served at {ref.digest[:19]}, its bytes hash to it"


def _fetch(registry: Registry, ref: Reference, kind: str, checks: list[Check]) -> bytes | None:
    found: list[bytes] = []

    def run() -> tuple[str, str]:
        tag = f"sha256-{ref.digest.removeprefix('sha256:')}.{kind}"
        if registry.manifest_digest(ref.repo, tag) is None:
            raise _Bad(f"no {tag} in {ref.repo}")
        try:
            manifest = registry.manifest(ref.repo, tag)
            subject = _get(manifest, "subject", dict).get("digest")
            if subject != ref.digest:
                raise _Bad(f"{tag} names {str(subject)[:19]} as its subject")
            layers = _get(manifest, "layers", list)
            if len(layers) != 1 or not isinstance(layers[0], dict):
                raise _Bad(f"{tag} has {len(layers)} layers, not one")
            found.append(registry.blob(ref.repo, str(layers[0].get("digest"))))
        except KilnError as exc:
            raise _Bad(exc.what) from None
        return "PASS", tag

    checks.append(_check(f"{kind} attached", run))
    return found[0] if found else None


def _get(data: object, key: str, kind: type):
    value = data.get(key) if isinstance(data, dict) else None
    if not isinstance(value, kind):
        raise _Bad(f"'{key}' is missing or not a {kind.__name__}")
    return value


def _json(data: bytes, what: str) -> dict:
    try:
        value = json.loads(data)
    except (ValueError, RecursionError):
        raise _Bad(f"the {what} is not JSON") from None
    if not isinstance(value, dict):
        raise _Bad(f"the {what} is not a JSON object")
    return value


def _sbom(data: bytes, ref: Reference) -> tuple[str, str]:
    try:
        validate_sbom(data.decode(errors="replace"))
    except KilnError as exc:
        raise _Bad(exc.what) from None
    document = _json(data, "SBOM")
    described = _get(_get(document, "metadata", dict), "component", dict).get("version")
    if described != ref.digest:
        raise _Bad(f"it describes {str(described)[:19]}, another image")
    return "PASS", f"CycloneDX 1.6, {len(document.get('components') or [])} components, about this digest"


def _provenance(data: bytes, ref: Reference, public_pem: bytes | None, allow_unsigned: bool) -> list[Check]:
    read: list[tuple[dict, dict]] = []   # (envelope, statement), once both are known good

    def check() -> tuple[str, str]:
        envelope = _json(data, "provenance envelope")
        if envelope.get("payloadType") != PAYLOAD_TYPE:
            raise _Bad(f"payload type '{str(envelope.get('payloadType'))[:60]}', not {PAYLOAD_TYPE}")
        try:
            payload = base64.b64decode(_get(envelope, "payload", str), validate=True)
        except binascii.Error:
            raise _Bad("its payload is not base64") from None
        read.append((envelope, _statement(_json(payload, "statement"), ref)))
        return "PASS", "in-toto v1, SLSA provenance v1, about this digest alone"

    checks = [_check("provenance", check)]
    if not read:
        return checks
    envelope, statement = read[0]
    signature = _check("signature", lambda: _signature(envelope, public_pem, allow_unsigned))
    smoke = Check("SKIP", "smoke", "not judged: the provenance is not authenticated") \
        if signature.verdict == "FAIL" else _check("smoke", lambda: _smoke(statement))
    return checks + [signature, smoke]


def _statement(statement: dict, ref: Reference) -> dict:
    if statement.get("_type") != STATEMENT_TYPE or statement.get("predicateType") != PREDICATE_TYPE:
        raise _Bad("not an in-toto v1 statement with a SLSA v1 provenance predicate")
    subjects = _get(statement, "subject", list)
    digests = [s.get("digest") for s in subjects if isinstance(s, dict)]
    if len(subjects) != 1 or len(digests) != 1 or not isinstance(digests[0], dict) or \
            digests[0].get("sha256") != ref.digest.removeprefix("sha256:"):
        raise _Bad("its subject is not this image alone")
    return statement


def _signature(envelope: dict, public_pem: bytes | None, allow_unsigned: bool) -> tuple[str, str]:
    if public_pem is None:
        if allow_unsigned:
            return "WARN", "not checked (--allow-unsigned): anyone who can push could have written it"
        raise _Bad("no --key: the provenance and its smoke verdict are not authenticated "
                   "(give the signer's public key, or --allow-unsigned to accept that)")
    try:
        verify_envelope(envelope, public_pem)
    except KilnError as exc:
        raise _Bad(exc.what) from None
    return "PASS", "checks with the key given"


def _smoke(statement: dict) -> tuple[str, str]:
    run_details = _get(_get(statement, "predicate", dict), "runDetails", dict)
    listed = run_details.get("byproducts")
    byproducts = [b for b in listed if isinstance(b, dict)] if isinstance(listed, list) else []
    found = [b for b in byproducts if b.get("name") == SMOKE_BYPRODUCT]
    if len(found) != 1:
        raise _Bad("no smoke verdict in the provenance")
    try:
        verdict = base64.b64decode(_get(found[0], "content", str), validate=True).decode()
    except (binascii.Error, UnicodeDecodeError):
        raise _Bad("the smoke verdict is not base64 text") from None
    annotations = found[0].get("annotations")
    if isinstance(annotations, dict) and annotations.get("verdict") not in (None, verdict):
        raise _Bad("the smoke verdict's content and annotation disagree")
    if verdict.startswith("passed"):
        return "PASS", verdict
    if verdict.startswith("forced"):
        return "WARN", verdict
    raise _Bad(f"smoke verdict '{verdict[:80]}'")
