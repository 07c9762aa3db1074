"""Reading the facts a built image carries (/opt/kiln/kiln.json) out of the image itself, so that smoke,
report and run judge an image by what it was built with, not by today's working tree."""

from __future__ import annotations

import io
import tarfile

import docker
from pydantic import ValidationError

from kiln.data.facts import ImageFacts
from kiln.engine.client import remove_container
from kiln.errors import KilnError
from kiln.identity import FACTS_PATH, ROLE_LABEL, TOOLKIT_LABEL


def read_facts(client: docker.DockerClient, ref: str) -> ImageFacts:
    """The image's facts; the container used to read them is created, never started, and removed."""
    try:
        container = client.containers.create(ref, entrypoint=["/bin/true"], network_disabled=True,
                                              labels={TOOLKIT_LABEL: "facts", ROLE_LABEL: "facts"})
    except docker.errors.APIError as exc:
        raise KilnError(f"cannot open image {ref} ({exc.explanation or exc})", ref, "check the image name") from None
    try:
        stream, _ = container.get_archive(FACTS_PATH)
        data = b"".join(stream)
    except docker.errors.NotFound:
        raise KilnError(f"image {ref} carries no {FACTS_PATH}", ref, "rebuild it with this toolkit's `invoke build`") from None
    except docker.errors.APIError as exc:
        raise KilnError(f"cannot read {FACTS_PATH} from {ref} ({exc.explanation or exc})", ref,
                        "check the engine and the image") from None
    finally:
        remove_container(container)
    return _parse(data, ref)


def _parse(tar_bytes: bytes, ref: str) -> ImageFacts:
    try:
        with tarfile.open(fileobj=io.BytesIO(tar_bytes)) as tar:
            member = tar.getmembers()[0]
            text = tar.extractfile(member).read()
        return ImageFacts.model_validate_json(text)
    except (tarfile.TarError, IndexError, AttributeError, ValidationError) as exc:
        raise KilnError(f"the facts in {ref} are unreadable ({str(exc).splitlines()[0]})", ref,
                        "rebuild it with this toolkit's `invoke build`") from None
