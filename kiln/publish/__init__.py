"""The publish stage: pushing a built image to a registry, verifying it by digest,
and attaching its SBOM and provenance."""
