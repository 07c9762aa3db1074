"""The base image record (build/bases/<name>.json): which Debian packages a local base image holds, for
the SBOM of every image built on it. `invoke base` writes it; `invoke build` reads it when it describes
the very base image the build uses (else it lists the packages from the image itself)."""

from __future__ import annotations

from pydantic import Field

from kiln.data.records.base import Record


class BaseImageRecord(Record):
    ref: str = Field(description="the base image's tag, kiln-base:<name>")
    image_id: str
    recipe_sha256: str = Field(description="sha256 of the lock's recipe the image was made from")
    packages: tuple[str, ...] = Field(description="Debian packages as name=version, sorted")

    def describes(self, ref: str, image_id: str) -> bool:
        """The record is of this very image (a base rebuilt since, here or by another checkout, is not it)."""
        return self.ref == ref and self.image_id == image_id
