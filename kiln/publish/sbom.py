"""The image's software bill of materials: a CycloneDX 1.6 document of every Python distribution in the
lock, every Debian package of the base and the pinned ComfyUI, built and validated with cyclonedx-python-lib."""

from __future__ import annotations

import json
import re
import uuid
from datetime import datetime
from urllib.parse import urlparse

from cyclonedx.model import ExternalReference, ExternalReferenceType, HashAlgorithm, HashType, Property, XsUri
from cyclonedx.model.bom import Bom, BomMetaData
from cyclonedx.model.component import Component, ComponentType
from cyclonedx.model.tool import ToolRepository
from cyclonedx.output.json import JsonV1Dot6
from cyclonedx.schema import SchemaVersion
from cyclonedx.validation.json import JsonStrictValidator
from packageurl import PackageURL

from kiln import __version__
from kiln.data.lock import Package
from kiln.data.subject import Subject
from kiln.errors import KilnError

IMAGE_DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
SERIAL_NAMESPACE = uuid.uuid5(uuid.NAMESPACE_URL, "https://github.com/kiln-toolkit/kiln/sbom")


def image_digest_hex(image_digest: str) -> str:
    """The 64 hex digits of an image digest written sha256:<hex>; anything else is refused."""
    if not IMAGE_DIGEST.match(image_digest):
        raise KilnError(f"'{image_digest}' is not an image digest", "image digest",
                        "give it as sha256: followed by 64 lowercase hex digits")
    return image_digest.removeprefix("sha256:")


def image_sbom(subject: Subject, image_digest: str, verified_source: bool, base_packages: list[str],
               created: str) -> dict:
    """The SBOM of one built image as a CycloneDX 1.6 JSON document (a dict), validated before it is returned."""
    image_digest_hex(image_digest)
    components = [*(_python(pkg) for _, pkg in sorted(subject.lock.packages.items())),
                  *(_debian(entry, _suite(subject)) for entry in sorted(base_packages)),
                  _comfyui(subject, verified_source)]
    bom = Bom(components=components, serial_number=uuid.uuid5(SERIAL_NAMESPACE, image_digest),
              metadata=_metadata(subject, image_digest, created))
    bom.register_dependency(bom.metadata.component, components)
    text = JsonV1Dot6(bom).output_as_string(indent=2)
    validate_sbom(text)
    return json.loads(text)


def validate_sbom(text: str) -> None:
    """Raise KilnError unless text is a CycloneDX 1.6 JSON document by the strict schema."""
    try:
        error = JsonStrictValidator(SchemaVersion.V1_6).validate_str(text)
    except ValueError as exc:
        error = exc
    if error is not None:
        raise KilnError(f"the SBOM does not validate against CycloneDX 1.6 ({_first_line(error)})", "sbom",
                        "report this as a kiln bug")


def _first_line(error: object) -> str:
    data = getattr(error, "data", error)
    where = "/".join(str(part) for part in getattr(data, "absolute_path", ()))
    message = getattr(data, "message", str(data)).splitlines()[0]
    return f"{where}: {message}" if where else message


def _metadata(subject: Subject, image_digest: str, created: str) -> BomMetaData:
    try:
        timestamp = datetime.fromisoformat(created)
    except ValueError:
        raise KilnError(f"'{created}' is not an ISO 8601 timestamp", "sbom created",
                        "pass a time like 2025-03-01T12:00:00+00:00") from None
    image = Component(type=ComponentType.CONTAINER, name=f"kiln/{subject.image.name}", version=image_digest,
                      bom_ref=f"kiln/{subject.image.name}@{image_digest}")
    kiln = Component(type=ComponentType.APPLICATION, name="kiln", version=__version__, bom_ref=f"kiln@{__version__}")
    return BomMetaData(component=image, tools=ToolRepository(components=[kiln]), timestamp=timestamp)


def _python(pkg: Package) -> Component:
    purl = PackageURL(type="pypi", name=pkg.name, version=pkg.version)
    wheel = ExternalReference(type=ExternalReferenceType.DISTRIBUTION, url=XsUri(pkg.url), comment=pkg.wheel)
    return Component(type=ComponentType.LIBRARY, name=pkg.name, version=pkg.version, purl=purl,
                     bom_ref=purl.to_string(), hashes=[HashType(alg=HashAlgorithm.SHA_256, content=pkg.sha256)],
                     external_references=[wheel])


def _suite(subject: Subject) -> str | None:
    base = subject.lock.bases.get(subject.image.base)
    return base.suite if base is not None else None


def _debian(entry: str, suite: str | None) -> Component:
    name, sep, version = entry.partition("=")
    if not (sep and name and version):
        raise KilnError(f"the base package '{entry}' is not name=version", "base record",
                        "rebuild the base with `invoke base`")
    purl = PackageURL(type="deb", namespace="debian", name=name, version=version,
                      qualifiers={"distro": suite} if suite else None)
    return Component(type=ComponentType.LIBRARY, name=name, version=version, purl=purl, bom_ref=purl.to_string())


def _comfyui(subject: Subject, verified_source: bool) -> Component:
    comfy = subject.lock.comfyui
    purl = _source_purl(comfy.repo, comfy.commit)
    properties = [Property(name="kiln:comfyui-commit", value=comfy.commit),
                  Property(name="kiln:comfyui-repo", value=comfy.repo),
                  Property(name="kiln:source-verified", value="true" if verified_source else "false")]
    return Component(type=ComponentType.APPLICATION, name="comfyui", version=comfy.version, purl=purl,
                     bom_ref=purl.to_string(), properties=properties)


def _source_purl(repo: str, commit: str) -> PackageURL:
    url = urlparse(repo)
    parts = url.path.strip("/").removesuffix(".git").lower().split("/")
    if url.hostname == "github.com" and len(parts) == 2:
        return PackageURL(type="github", namespace=parts[0], name=parts[1], version=commit)
    return PackageURL(type="generic", name=parts[-1], version=commit, qualifiers={"vcs_url": f"git+{repo}@{commit}"})
