"""The provenance envelope: DSSE's PAE as the spec gives it, signatures that openssl (not kiln) verifies,
tampering caught, and every kind of bad key refused in one line."""

import base64
import hashlib
import json
import os
import subprocess
from pathlib import Path

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.asymmetric import ec

from kiln.errors import KilnError
from kiln.publish.signing import PAYLOAD_TYPE, envelope, load_public_key, load_signing_key, pae, verify_envelope

STATEMENT = {"_type": "https://in-toto.io/Statement/v1", "subject": [{"name": "r/x", "digest": {"sha256": "1" * 64}}]}


def _openssl(*args, data: bytes | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(["openssl", *map(str, args)], input=data, capture_output=True)


@pytest.fixture
def key_file(tmp_path):
    path = tmp_path / "signing.pem"
    assert _openssl("ecparam", "-name", "prime256v1", "-genkey", "-noout", "-out", path).returncode == 0
    return path


def test_pae_is_the_dsse_spec_encoding():
    # the DSSE v1 protocol's own example
    assert pae("http://example.com/HelloWorld", b"hello world") == b"DSSEv1 29 http://example.com/HelloWorld 11 hello world"


def test_a_signed_envelope_verifies_with_openssl(key_file, tmp_path):
    key = load_signing_key(key_file)
    doc = envelope(STATEMENT, key)
    assert doc["payloadType"] == PAYLOAD_TYPE and json.loads(base64.b64decode(doc["payload"])) == STATEMENT
    [signature] = doc["signatures"]
    assert signature["keyid"] == ""  # as cosign writes it; kiln names the key outside the envelope
    public = tmp_path / "public.pem"
    public.write_bytes(key.public_pem())
    der = _openssl("pkey", "-in", public, "-pubin", "-outform", "DER").stdout
    assert key.keyid == "sha256:" + hashlib.sha256(der).hexdigest()
    (tmp_path / "sig").write_bytes(base64.b64decode(signature["sig"]))
    signed = pae(doc["payloadType"], base64.b64decode(doc["payload"]))
    checked = _openssl("dgst", "-sha256", "-verify", public, "-signature", tmp_path / "sig", data=signed)
    assert checked.returncode == 0 and b"Verified OK" in checked.stdout, checked.stderr
    tampered = _openssl("dgst", "-sha256", "-verify", public, "-signature", tmp_path / "sig", data=signed + b" ")
    assert tampered.returncode == 1
    assert verify_envelope(doc, key.public_pem()) == STATEMENT


def test_tampering_and_missing_signatures_are_caught(key_file):
    key = load_signing_key(key_file)
    doc = envelope(STATEMENT, key)
    other = {**STATEMENT, "subject": [{"name": "r/x", "digest": {"sha256": "2" * 64}}]}
    forged = {**doc, "payload": base64.b64encode(json.dumps(other).encode()).decode()}
    for bad in (forged, envelope(STATEMENT, None)):
        with pytest.raises(KilnError, match="no signature of the provenance envelope checks"):
            verify_envelope(bad, key.public_pem())
    assert envelope(STATEMENT, None)["signatures"] == []
    # signed by the same key, but as another type of payload: refused by its type, not by its signature
    payload = base64.b64decode(doc["payload"])
    sig = key.private.sign(pae("application/json", payload), ec.ECDSA(hashes.SHA256()))
    retyped = {**doc, "payloadType": "application/json", "signatures": [{"keyid": "", "sig": base64.b64encode(sig).decode()}]}
    with pytest.raises(KilnError, match="not application/vnd.in-toto"):
        verify_envelope(retyped, key.public_pem())


def test_an_encrypted_key_needs_its_password(tmp_path):
    path = tmp_path / "encrypted.pem"
    made = _openssl("genpkey", "-algorithm", "EC", "-pkeyopt", "ec_paramgen_curve:P-256", "-aes-256-cbc",
                    "-pass", "pass:open-sesame", "-out", path)
    assert made.returncode == 0, made.stderr
    with pytest.raises(KilnError, match="encrypted and no password"):
        load_signing_key(path)
    with pytest.raises(KilnError, match="password is wrong"):
        load_signing_key(path, "wrong")
    assert load_signing_key(path, "open-sesame").keyid.startswith("sha256:")


def test_a_password_set_for_other_keys_does_not_stop_a_plain_one(key_file):
    assert load_signing_key(key_file, "meant-for-another-key").keyid == load_signing_key(key_file).keyid


@pytest.mark.parametrize("make, fragment", [
    (["genpkey", "-algorithm", "RSA", "-pkeyopt", "rsa_keygen_bits:2048"], "not an ECDSA P-256 key"),
    (["ecparam", "-name", "secp384r1", "-genkey", "-noout"], "not an ECDSA P-256 key"),
])
def test_other_keys_are_refused(tmp_path, make, fragment):
    path = tmp_path / "other.pem"
    assert _openssl(*make, "-out", path).returncode == 0
    with pytest.raises(KilnError, match=fragment):
        load_signing_key(path)


def test_unreadable_and_cosign_keys_are_one_line(tmp_path):
    with pytest.raises(KilnError, match="cannot read the key"):
        load_signing_key(tmp_path / "missing.pem")
    cosign = tmp_path / "cosign.key"
    cosign.write_text("-----BEGIN ENCRYPTED SIGSTORE PRIVATE KEY-----\nabc\n-----END ENCRYPTED SIGSTORE PRIVATE KEY-----\n")
    with pytest.raises(KilnError, match="cosign key file"):
        load_signing_key(cosign)
    garbage = tmp_path / "garbage.pem"
    garbage.write_text("not a key")
    with pytest.raises(KilnError, match="not a PEM private key"):
        load_signing_key(garbage)


def test_a_device_or_a_huge_file_is_not_read_as_a_key(tmp_path):
    with pytest.raises(KilnError, match="not a regular file"):
        load_signing_key(Path("/dev/zero"))
    huge = tmp_path / "huge.pem"
    huge.write_bytes(b"-" * (1 << 20))
    with pytest.raises(KilnError, match="larger than any PEM key"):
        load_signing_key(huge)


def test_the_error_names_where_the_key_came_from(key_file, tmp_path):
    with pytest.raises(KilnError) as caught:
        load_signing_key(tmp_path / "nope.pem", where="KILN_SIGNING_KEY")
    assert caught.value.where == "KILN_SIGNING_KEY" and "nope.pem" in caught.value.what


def test_a_public_key_is_checked_before_use(key_file, tmp_path):
    public = tmp_path / "public.pem"
    assert _openssl("ec", "-in", key_file, "-pubout", "-out", public).returncode == 0
    assert load_public_key(public) == public.read_bytes()
    with pytest.raises(KilnError, match="not a PEM public key"):
        load_public_key(key_file)  # the private half is not what a verifier is given
    rsa = tmp_path / "rsa.pub"
    assert _openssl("genpkey", "-algorithm", "RSA", "-out", tmp_path / "rsa.pem").returncode == 0
    assert _openssl("pkey", "-in", tmp_path / "rsa.pem", "-pubout", "-out", rsa).returncode == 0
    with pytest.raises(KilnError, match="not an ECDSA P-256 public key"):
        load_public_key(rsa)


def test_a_fifo_given_as_the_key_is_refused_at_once(tmp_path):
    fifo = tmp_path / "key.fifo"
    os.mkfifo(fifo)  # opened blocking, nobody writing: reading it would wait for ever
    with pytest.raises(KilnError, match="not a regular file"):
        load_signing_key(fifo)
