"""The provenance as a DSSE envelope, the form cosign's `.att` tags hold: the in-toto statement as its
payload, signed with the user's ECDSA P-256 key over DSSE's pre-authentication encoding (PAE), the
signature a DSSE verifier checks with the public key. Without a key the envelope carries no signature."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import stat
from dataclasses import dataclass, field
from pathlib import Path

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives import hashes, serialization
from cryptography.hazmat.primitives.asymmetric import ec

from kiln.errors import KilnError

ENVELOPE_TYPE = "application/vnd.dsse.envelope.v1+json"
PAYLOAD_TYPE = "application/vnd.in-toto+json"
MAX_KEY_BYTES = 64 * 1024
MAKE_KEY = "make one with `openssl ecparam -name prime256v1 -genkey -noout -out kiln-signing.pem`"


@dataclass(frozen=True)
class SigningKey:
    private: ec.EllipticCurvePrivateKey = field(repr=False)

    @property
    def keyid(self) -> str:
        """sha256 of the public key's DER SubjectPublicKeyInfo: how kiln's annotation and record name the key."""
        der = self.private.public_key().public_bytes(serialization.Encoding.DER,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)
        return "sha256:" + hashlib.sha256(der).hexdigest()

    def public_pem(self) -> bytes:
        return self.private.public_key().public_bytes(serialization.Encoding.PEM,
                                                      serialization.PublicFormat.SubjectPublicKeyInfo)


def load_signing_key(path: Path, password: str | None = None, where: str = "--sign-key") -> SigningKey:
    """An ECDSA P-256 private key from a PEM file (encrypted ones with the password given)."""
    data = _read_file(path, where)
    if b"SIGSTORE PRIVATE KEY" in data or b"COSIGN PRIVATE KEY" in data:
        raise KilnError(f"{path} is a cosign key file, which only cosign reads", where,
                        f"give kiln a PEM key ({MAKE_KEY}); `cosign import-key-pair --key` takes the same file")
    key = _read_key(data, password, f"{where} {path}")
    if not isinstance(key, ec.EllipticCurvePrivateKey) or key.curve.name != "secp256r1":
        raise KilnError(f"{path} is not an ECDSA P-256 key", where, MAKE_KEY)
    return SigningKey(key)


def load_public_key(path: Path, where: str = "--key") -> bytes:
    """The PEM of an ECDSA P-256 public key (the half a publisher hands out), checked before use."""
    data = _read_file(path, where)
    try:
        key = serialization.load_pem_public_key(data)
    except ValueError:
        raise KilnError(f"{path} is not a PEM public key", where,
                        "give the public half: `openssl ec -in kiln-signing.pem -pubout -out kiln-signing.pub`") from None
    if not isinstance(key, ec.EllipticCurvePublicKey) or key.curve.name != "secp256r1":
        raise KilnError(f"{path} is not an ECDSA P-256 public key", where, "give the key the image was signed with")
    return data


def _read_file(path: Path, where: str) -> bytes:
    try:
        # non-blocking, so a FIFO given as the key is refused instead of waited on
        with os.fdopen(os.open(path, os.O_RDONLY | os.O_NONBLOCK), "rb") as handle:
            if not stat.S_ISREG(os.fstat(handle.fileno()).st_mode):
                raise KilnError(f"{path} is not a regular file", where, "give the path of a PEM key file")
            data = handle.read(MAX_KEY_BYTES + 1)
    except OSError as exc:
        raise KilnError(f"cannot read the key {path} ({exc.strerror})", where, "give the path of a PEM key file") from None
    if len(data) > MAX_KEY_BYTES:
        raise KilnError(f"{path} is larger than any PEM key ({MAX_KEY_BYTES} bytes)", where,
                        "give the path of a PEM key file")
    return data


def _read_key(data: bytes, password: str | None, where: str):
    try:
        return serialization.load_pem_private_key(data, password.encode() if password else None)
    except TypeError:
        if password:  # a password set for other keys: this one is not encrypted
            return _read_key(data, None, where)
        raise KilnError("the signing key is encrypted and no password was given", where,
                        "set KILN_SIGNING_KEY_PASSWORD") from None
    except ValueError:
        if password and b"ENCRYPTED" in data:
            raise KilnError("the signing key's password is wrong", where, "check KILN_SIGNING_KEY_PASSWORD") from None
        raise KilnError("the signing key is not a PEM private key", where, MAKE_KEY) from None


def pae(payload_type: str, payload: bytes) -> bytes:
    """DSSE v1's pre-authentication encoding: what is signed, binding the payload to its type."""
    kind = payload_type.encode()
    return b"DSSEv1 %d %s %d %s" % (len(kind), kind, len(payload), payload)


def envelope(statement: dict, key: SigningKey | None) -> dict:
    payload = json.dumps(statement, indent=2, sort_keys=True).encode()
    signatures = []
    if key is not None:
        signature = key.private.sign(pae(PAYLOAD_TYPE, payload), ec.ECDSA(hashes.SHA256()))
        # keyid left empty as cosign writes it: DSSE verifiers skip a signature whose keyid is not theirs
        signatures.append({"keyid": "", "sig": base64.b64encode(signature).decode()})
    return {"payloadType": PAYLOAD_TYPE, "payload": base64.b64encode(payload).decode(), "signatures": signatures}


def verify_envelope(doc: dict, public_pem: bytes) -> dict:
    """The statement inside an envelope, once one of its signatures checks with the public key (DSSE
    lets an envelope carry several; one good one is enough, undecodable ones are skipped)."""
    public = serialization.load_pem_public_key(public_pem)
    if doc.get("payloadType") != PAYLOAD_TYPE:
        raise KilnError(f"the provenance envelope carries '{str(doc.get('payloadType'))[:60]}', not {PAYLOAD_TYPE}",
                        "provenance", "it is not an in-toto attestation; publish again")
    try:
        payload = base64.b64decode(doc["payload"], validate=True)
    except (KeyError, TypeError, ValueError):
        raise KilnError("the provenance envelope is malformed", "provenance", "publish again") from None
    signed = pae(PAYLOAD_TYPE, payload)
    listed = doc.get("signatures")
    for signature in listed if isinstance(listed, list) else []:
        try:
            public.verify(base64.b64decode(signature["sig"], validate=True), signed, ec.ECDSA(hashes.SHA256()))
        except (InvalidSignature, KeyError, TypeError, ValueError):
            continue
        return json.loads(payload)
    raise KilnError("no signature of the provenance envelope checks with the signing key", "provenance",
                    "check the key and publish again")
