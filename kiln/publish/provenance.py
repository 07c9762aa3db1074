"""The image's build provenance: an in-toto Statement v1 carrying a SLSA provenance v1 predicate that names
the lock, the image spec, the GPU profile, the ComfyUI commit and the base image it was built from."""

from __future__ import annotations

import base64

from kiln import __version__
from kiln.data.files import file_sha256
from kiln.data.subject import Subject
from kiln.publish.sbom import image_digest_hex

STATEMENT_TYPE = "https://in-toto.io/Statement/v1"
PREDICATE_TYPE = "https://slsa.dev/provenance/v1"
BUILD_TYPE = "https://github.com/kiln-toolkit/kiln/build/v1"
BUILDER = "https://github.com/kiln-toolkit/kiln"
SMOKE_BYPRODUCT = "kiln-smoke-verdict"


def provenance(subject: Subject, image_repo: str, image_digest: str, base_ref: str, base_digest: str,
               verified_source: bool, started: str, finished: str, smoke: str) -> dict:
    """The in-toto statement for one pushed image; both digests are sha256:<64 hex> or refused. The smoke
    verdict (or that it was forced) rides inside, so a signature covers it."""
    image_hex, base_hex = image_digest_hex(image_digest), image_digest_hex(base_digest)
    return {"_type": STATEMENT_TYPE,
            "subject": [{"name": image_repo, "digest": {"sha256": image_hex}}],
            "predicateType": PREDICATE_TYPE,
            "predicate": {"buildDefinition": _build_definition(subject, base_ref, base_hex, verified_source),
                          "runDetails": {"builder": {"id": f"{BUILDER}@{__version__}"},
                                         "metadata": {"invocationId": image_digest, "startedOn": started,
                                                      "finishedOn": finished},
                                         "byproducts": [_smoke_verdict(smoke)]}}}


def _smoke_verdict(verdict: str) -> dict:
    return {"name": SMOKE_BYPRODUCT, "mediaType": "text/plain; charset=utf-8",
            "content": base64.b64encode(verdict.encode()).decode(), "annotations": {"verdict": verdict}}


def _build_definition(subject: Subject, base_ref: str, base_hex: str, verified_source: bool) -> dict:
    comfy = subject.lock.comfyui
    return {"buildType": BUILD_TYPE,
            "externalParameters": {"lock_sha256": subject.lock.digest,
                                   "image_spec": {"file": subject.image.path.name, "name": subject.image.name},
                                   "gpu_profile": {"name": subject.gpu.name, "display": subject.gpu.display}},
            "internalParameters": {"toolkit_version": __version__},
            "resolvedDependencies": [
                {"uri": f"git+{comfy.repo}@{comfy.commit}", "digest": {"gitCommit": comfy.commit},
                 "annotations": {"verified": verified_source}},
                {"uri": f"docker-image://{base_ref}", "digest": {"sha256": base_hex}},
                {"uri": "versions.lock", "digest": {"sha256": file_sha256(subject.lock.path)}},
                {"uri": f"versions.lock#stacks.{subject.lock.name}", "digest": {"sha256": subject.lock.digest},
                 "annotations": {"digest": "sha256 of the canonical JSON of the stack's tables and the bases "
                                           "(kiln.data.lock.stack_digest), the image's io.kiln.lock-sha256"}}]}
