"""The engine tests find what one test made by a scope label; a fresh scope must be the only one its builds carry
(with two LABELs of one key, the later wins and the test would watch for containers that never exist)."""

from tests.engine.scope import SCOPE_LABEL, scope_templates


def test_a_fresh_scope_replaces_the_session_scope(tmp_path):
    template = tmp_path / "Dockerfile.j2"
    template.write_text("FROM a AS builder\nRUN x\nFROM b\nRUN y\n")
    scope_templates(tmp_path, "session")
    scope_templates(tmp_path, "fresh")
    labels = [line for line in template.read_text().splitlines() if line.startswith(f"LABEL {SCOPE_LABEL}=")]
    assert labels == [f'LABEL {SCOPE_LABEL}="fresh"'] * 2
    assert template.read_text().splitlines()[:2] == ["FROM a AS builder", f'LABEL {SCOPE_LABEL}="fresh"']
