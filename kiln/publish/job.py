"""`invoke publish`: the smoke requirement (a passing smoke record for this image id), immutable version tags, the
push of every tag kiln gave the image, the digest read back, and the SBOM and provenance (a DSSE
envelope, signed when a key is given) attached as OCI artifacts (tags sha256-<hex>.sbom and .att, the
convention cosign uses) and pulled back."""

from __future__ import annotations

import json
import sys
from dataclasses import dataclass, field, replace
from datetime import datetime, timezone

import docker

from kiln.data.records.build import BuildRecord, Published, PublishFailure
from kiln.data.records.folder import BuildFolder
from kiln.data.subject import Subject
from kiln.engine.client import listed, remove_image
from kiln.errors import KilnError
from kiln.events import Event, Listener, ignore
from kiln.identity import GPU_LABEL, IMAGE_LABEL, LOCK_LABEL, SOURCE_LABEL, image_tags
from kiln.publish.provenance import provenance
from kiln.publish.push import Target, push_tag, verify_digest
from kiln.publish.registry import Credentials, Registry
from kiln.publish.sbom import image_sbom
from kiln.publish.signing import ENVELOPE_TYPE, SigningKey, envelope, verify_envelope

SBOM_TYPE = "application/vnd.cyclonedx+json"
SMOKE_ANNOTATION = "io.kiln.smoke"
SIGNED_ANNOTATION = "io.kiln.signed-by"


@dataclass(frozen=True)
class PublishRequest:
    target: Target
    credentials: Credentials | None
    folder: BuildFolder                       # where the build and smoke records are
    force: bool = False
    overwrite: bool = False
    dry_run: bool = False
    signing_key: SigningKey | None = None
    stack: str | None = None                  # --stack: the build of that stack, not the spec's


@dataclass(frozen=True)
class PublishResult:
    references: list[str]                     # name@sha256:... for every pushed tag
    artifacts: dict[str, str] = field(default_factory=dict)
    smoke: str = ""                           # what the smoke requirement found (or that it was forced)
    planned: list[str] = field(default_factory=list)
    signed_by: str = ""                       # the provenance's signing key id; "" when unsigned


def publish(client: docker.DockerClient, s: Subject, req: PublishRequest, on_event: Listener = ignore) -> PublishResult:
    local = image_tags(s)
    image = listed(lambda: client.images.get(local[0]))
    _same_inputs(s, image)
    build = _build_record(req.folder, s, image.id, req.stack)
    smoke = _smoke_requirement(req, s, image.id)
    registry = Registry(req.target.host, req.credentials)
    repo = req.target.repo(local[0].rsplit(":", 1)[0])
    tags = [tag.rsplit(":", 1)[1] for tag in local if tag in image.tags]  # only tags this image carries
    planned = [f"{req.target.host}/{repo}:{tag}" for tag in tags]
    try:
        present = _immutable(registry, repo, tags, image.id, req.overwrite)
        if present:  # this very image is there already: its provenance is checked before any push
            _keep_signed(registry, repo, present, req.signing_key, req.overwrite)
        if req.dry_run:
            return PublishResult(references=[], smoke=smoke, planned=planned)
        digest = _push(client, image.id, registry, repo, tags, req.credentials, on_event)
        if digest != present:  # a digest new to this registry may still carry a provenance under its tag
            _keep_signed(registry, repo, digest, req.signing_key, req.overwrite)
        artifacts = _attach(registry, repo, digest, s, image, build, smoke, req.signing_key, on_event)
    except KilnError as exc:
        if not req.dry_run:
            _record_failure(req.folder, build, f"{req.target.host}/{repo}", exc.line())
        raise
    signed_by = req.signing_key.keyid if req.signing_key else ""
    result = PublishResult([f"{req.target.host}/{repo}@{digest}"], artifacts, smoke, planned, signed_by)
    req.folder.record_published(build, Published(
        references=tuple(result.references), artifacts=result.artifacts, smoke=result.smoke,
        provenance_signed_by=result.signed_by or "unsigned"))
    return result


def check_all(client: docker.DockerClient, pairs: list[tuple[Subject, PublishRequest]]) -> None:
    """Every profile passes the smoke requirement and the tag check before any is pushed, so a refusal leaves
    the registry as it was. The refused profile is named and its build record says why."""
    for subject, request in pairs:
        try:
            publish(client, subject, replace(request, dry_run=True))
        except KilnError as exc:
            where = f"{subject.image.name} on {subject.gpu.name}"
            target = f"{request.target.host}/{request.target.namespace}"
            _record_failure(request.folder, _readable_build(request.folder, subject, request.stack), target,
                            f"refused before any push: {exc.line()}")
            fix = f"{exc.fix}; nothing of the set was pushed" if exc.fix else "nothing of the set was pushed"
            raise KilnError(f"{exc.what} ({exc.where})" if exc.where else exc.what, where, fix) from None


def _same_inputs(s: Subject, image) -> None:
    """The tags, SBOM and provenance are made from today's project: it must be what built the image."""
    labels = image.labels or {}
    for label, want, what in ((LOCK_LABEL, s.lock.digest, "versions.lock"), (GPU_LABEL, s.gpu.name, "GPU profile"),
                              (IMAGE_LABEL, s.image.name, "image spec")):
        if labels.get(label) != want:
            raise KilnError(f"the image was built from another {what} ({str(labels.get(label))[:12]}, now "
                            f"{want[:12]})", "invoke publish", "build it again with `invoke build`, then smoke it")


def _build_record(folder: BuildFolder, s: Subject, image_id: str, stack: str | None) -> BuildRecord:
    record = folder.read_build(s.image.name, s.gpu.name, stack=stack)
    if record is None or record.image_id != image_id:
        raise KilnError("the build record does not describe this image",
                        str(folder.build_record(s.image.name, s.gpu.name, stack=stack)),
                        "build it again with `invoke build`, then smoke it")
    return record


def _readable_build(folder: BuildFolder, s: Subject, stack: str | None) -> BuildRecord | None:
    try:
        return folder.read_build(s.image.name, s.gpu.name, stack=stack)
    except KilnError:
        return None


def _smoke_requirement(req: PublishRequest, s: Subject, image_id: str) -> str:
    try:
        record = req.folder.read_smoke(image_id, s.gpu.name, s.image.name)
    except KilnError:
        if not req.force:
            raise
        return "forced: published with a damaged smoke record (--force)"
    if record is not None and record.passed():
        n = record.summary
        return f"passed: {n.passed} pass, {n.warn} warn, 0 fail, {n.skip} skip ({record.gpus})"
    if not req.force:
        why = "no smoke record" if record is None else "its smoke run failed"
        raise KilnError(f"image {image_id[:19]} has {why}", "invoke publish",
                        "run `invoke smoke --gpu=...` on it first (or --force, which the registry copy records)")
    return "forced: published without a passing smoke record (--force)"


def _immutable(registry: Registry, repo: str, tags: list[str], image_id: str, overwrite: bool) -> str:
    """Refuse a tag that names another image; returns the digest of a tag already naming this one, or ""."""
    present = ""
    for tag in tags:
        digest = registry.manifest_digest(repo, tag)
        if digest is None:
            continue
        config = (registry.manifest(repo, tag).get("config") or {}).get("digest")
        if config == image_id:
            present = digest
        elif not overwrite:
            raise KilnError(f"{repo}:{tag} already names another image ({str(config or '?')[:19]}), not {image_id[:19]}",
                            registry.host, "version tags are immutable: build a new version, or pass --overwrite")
    return present


def _push(client, image_id: str, registry: Registry, repo: str, tags: list[str], credentials: Credentials | None,
          on_event: Listener) -> str:
    remote = f"{registry.host}/{repo}"
    digests = []
    existing = {t for i in listed(lambda: client.images.list(name=remote)) for t in i.tags}
    try:
        for tag in tags:
            listed(lambda: client.api.tag(image_id, remote, tag))
            on_event(Event("phase", f"pushing {remote}:{tag}"))
            digest = push_tag(client, remote, tag, credentials, on_event)
            verify_digest(registry, repo, tag, digest)
            digests.append(digest)
    finally:
        failing = sys.exc_info()[0] is not None
        for tag in tags:
            if f"{remote}:{tag}" in existing:
                continue  # the user's own tag: left as it was
            try:
                remove_image(client, f"{remote}:{tag}", noprune=True)  # one never made (stopped early) is gone
            except KilnError:
                if not failing:
                    raise  # a tag still in use is said; during a failed push, the push's error is the one shown
    if len(set(digests)) != 1:
        raise KilnError(f"the tags of one image got different digests ({', '.join(digests)})", registry.host,
                        "publish again; another push may have raced this one")
    return digests[0]


def _keep_signed(registry: Registry, repo: str, digest: str, key: SigningKey | None, overwrite: bool) -> None:
    """A provenance signed earlier for this digest (by kiln, cosign or anyone: judged by the envelope's
    signatures, not by an annotation) is replaced only by one this key signs too, or with --overwrite.
    One kiln cannot read counts as signed."""
    tag = f"sha256-{digest.removeprefix('sha256:')}.att"
    if overwrite or registry.manifest_digest(repo, tag) is None:
        return
    doc = _envelope_at(registry, repo, tag)
    if doc is not None and not doc.get("signatures"):
        return  # unsigned: nothing to lose
    if doc is not None and key is not None:
        try:
            verify_envelope(doc, key.public_pem())
            return
        except KilnError:
            pass
    what = "a signed provenance and no --sign-key was given" if key is None else "a provenance signed by another key"
    raise KilnError(f"{repo}:{tag} holds {what}", registry.host,
                    "sign with the key that signed it (--sign-key), or pass --overwrite to replace it")


def _envelope_at(registry: Registry, repo: str, tag: str) -> dict | None:
    """The envelope at tag, or None for anything else the registry serves there (hostile shapes included)."""
    try:
        layers = registry.manifest(repo, tag).get("layers")
        doc = json.loads(registry.blob(repo, str(layers[0]["digest"])))
    except Exception:  # noqa: BLE001 - whatever is there and unreadable counts as signed
        return None
    return doc if isinstance(doc, dict) else None


def _attach(registry: Registry, repo: str, digest: str, s: Subject, image, build: BuildRecord, smoke: str,
            key: SigningKey | None, on_event: Listener) -> dict[str, str]:
    verified = (image.labels or {}).get(SOURCE_LABEL) == "verified"
    now = datetime.now(timezone.utc).replace(microsecond=0).isoformat()
    sbom = image_sbom(s, digest, verified, list(build.base_packages), now)
    statement = provenance(s, f"{registry.host}/{repo}", digest, build.base, build.base_id, verified,
                           build.started, build.finished, smoke)
    subject = registry.descriptor(repo, digest)
    hex_digest = digest.removeprefix("sha256:")
    annotations = {SMOKE_ANNOTATION: smoke, "org.opencontainers.image.created": now}
    made = {}
    for kind, media, doc, extra in (("sbom", SBOM_TYPE, sbom, {}),
                                    ("att", ENVELOPE_TYPE, envelope(statement, key),
                                     {SIGNED_ANNOTATION: key.keyid if key else "unsigned"})):
        payload = json.dumps(doc, indent=2, sort_keys=True).encode()
        tag = f"sha256-{hex_digest}.{kind}"
        on_event(Event("phase", f"attaching {kind} as {repo}:{tag}"))
        registry.put_artifact(repo, tag, payload, media, subject, {**annotations, **extra}, f"{kind}.json")
        _pull_back(registry, repo, tag, payload, kind)
        made[kind] = f"{registry.host}/{repo}:{tag}"
    return made


def _pull_back(registry: Registry, repo: str, tag: str, payload: bytes, kind: str) -> None:
    """The attachment the registry serves is byte for byte the one sent (which image_sbom validated: the same
    JSON, so validating the copy again would only cost its seconds of URL format checks)."""
    layer = registry.manifest(repo, tag)["layers"][0]
    data = registry.blob(repo, layer["digest"])
    if data != payload:
        raise KilnError(f"the {kind} read back from {repo}:{tag} differs from the one pushed", registry.host,
                        "check the registry's storage and publish again")


def _record_failure(folder: BuildFolder, record: BuildRecord | None, target: str, line: str) -> None:
    """The build record says this publish did not happen (an earlier one elsewhere stays recorded)."""
    if record is None:
        return  # no build record to speak for (the error says so); none is made up
    try:
        folder.record_publish_failure(record, PublishFailure(target=target, error=line))
    except KilnError:
        pass  # the error being raised already says what failed
