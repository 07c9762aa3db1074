"""The build matrix (docker-bake.json, for `docker buildx bake -f`; "bake" is Docker's word) for
portable contexts of one image on many GPU profiles: the heavy builder stage (the locked venv, the same
for every profile) is one target, and each profile's build takes it as its `builder` stage, so a remote
builder makes it once."""

from __future__ import annotations

import json


def matrix_text(image: str, contexts: dict[str, tuple[str, list[str]]]) -> str:
    """contexts: profile -> (context folder relative to the matrix file, image tags)."""
    first = next(iter(sorted(contexts)))
    targets = {"venv": {"context": contexts[first][0], "dockerfile": "Dockerfile", "target": "builder"}}
    for gpu, (folder, tags) in sorted(contexts.items()):
        targets[f"{image}-{gpu}"] = {"context": folder, "dockerfile": "Dockerfile", "contexts": {"builder": "target:venv"},
                                     "tags": tags}
    doc = {"group": {"default": {"targets": [f"{image}-{gpu}" for gpu in sorted(contexts)]}}, "target": targets}
    return json.dumps(doc, indent=2, sort_keys=True) + "\n"
