"""What this test session, or one test, made in the engine, found by a label of its own. The tests' copies
of the Dockerfile template carry it after every FROM, so the images built from them, their intermediate
build containers and every container made from those images carry it too; what other processes make on
the same engine is never counted. Plain listings (no look-up per object): an object someone else removes
while the engine lists them cannot fail a test."""

from __future__ import annotations

import uuid
from pathlib import Path

SCOPE_LABEL = "io.kiln.test-scope"
SESSION = uuid.uuid4().hex[:12]
SCOPES = [SESSION]   # every scope this session made: its teardown removes what carries any of them


def scope_templates(templates: Path, value: str = SESSION) -> str:
    """Label everything built from this template copy (the image's and the balancer's Dockerfile) with
    `value`, in place of any scope it carried before (a second LABEL of one key would win over the first,
    leaving the new scope on no container); returns it."""
    for path in sorted(templates.rglob("Dockerfile.j2")):
        lines = []
        for line in path.read_text().splitlines(keepends=True):
            if line.startswith(f"LABEL {SCOPE_LABEL}="):
                continue
            lines.append(line)
            if line.startswith("FROM "):
                lines.append(f'LABEL {SCOPE_LABEL}="{value}"\n')
        path.write_text("".join(lines))
    return value


def fresh_scope(templates: Path) -> str:
    """A label value for one test alone."""
    SCOPES.append(scope_templates(templates, uuid.uuid4().hex[:12]))
    return SCOPES[-1]


def containers(client, label: str) -> list[str]:
    """Ids of the containers (running or not) carrying `label` (KEY or KEY=VALUE)."""
    return sorted(c["Id"] for c in client.api.containers(all=True, filters={"label": label}))


def made_containers(client, value: str = SESSION) -> list[str]:
    return containers(client, f"{SCOPE_LABEL}={value}")


def made_tags(client, value: str = SESSION, repository: str = "") -> list[str]:
    """Tags of the images carrying the scope, optionally only those of one repository (kiln/NAME)."""
    images = client.api.images(filters={"label": f"{SCOPE_LABEL}={value}"})
    return sorted(t for i in images for t in i.get("RepoTags") or [] if t != "<none>:<none>"
                  and (not repository or t.startswith(f"{repository}:")))


def tags_starting(client, prefix: str) -> list[str]:
    """Every tag in the engine starting with `prefix` (a name the test chose, such as its registry's host)."""
    return sorted(t for i in client.api.images() for t in i.get("RepoTags") or [] if t.startswith(prefix))
