"""Every data file goes through a typed model: a misspelt key is refused in one line that names the
file and line, the key path and the nearest valid key; the JSON Schemas validate the shipped files."""

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
from pydantic import ValidationError

from kiln.data.facts import ImageFacts
from kiln.data.schema import validate
from kiln.data.tables import ALLOC_PATH, FLAGS_PATH, AllocFile, FlagsFile
from kiln.data.files import read_yaml
from kiln.errors import KilnError
from kiln.render.facts import image_facts
from tests.conftest import ROOT, invoke
from tests.jsonschema_tool import check_jsonschema


# (file in the project, text to misspell, misspelt, the key path the error names, the nearest valid key)
TYPOS = [
    ("versions.lock", 'driver_floor = "525.60.13"', 'driver_flor = "525.60.13"', "stacks.card.stack.driver_flor", "driver_floor"),
    ("gpus.yaml", "    vram_gb: 24\n    bandwidth_gbs: 1008", "    vram_gbs: 24\n    bandwidth_gbs: 1008",
     "profiles.4090.vram_gbs", "vram_gb"),
    ("images/comfyui.yaml", "  port: 8188", "  prot: 8188", "server.prot", "port"),
    ("images/comfyui.yaml", "cache:\n  mount: /cache", "cache:\n  mount_point: /cache", "cache.mount_point", "mount"),
]


def _one_error(result) -> str:
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize("name, old, new, keypath, nearest", TYPOS, ids=[t[3] for t in TYPOS])
def test_a_misspelt_key_names_the_nearest_valid_one(project_copy, name, old, new, keypath, nearest):
    path = project_copy / name
    text = path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    misspelt = keypath.rsplit(".", 1)[1]
    line = next(i for i, text in enumerate(path.read_text().splitlines(), 1) if text.strip().startswith(misspelt))
    error = _one_error(invoke("check", "--gpu", "4090", root=project_copy))
    assert f"{name}:{line}" in error
    assert f"unknown key '{keypath}'" in error and f"did you mean '{nearest}'?" in error


def test_a_wrong_value_names_the_key_and_the_value(project_copy):
    spec = project_copy / "images" / "comfyui.yaml"
    spec.write_text(spec.read_text().replace("mount: /cache", "mount: cache"))
    error = _one_error(invoke("check", "--gpu", "4090", root=project_copy))
    assert "images/comfyui.yaml:" in error and "key 'cache.mount'" in error and "'cache'" in error


@pytest.mark.parametrize("model, path, old, new, nearest", [
    (FlagsFile, FLAGS_PATH, "    exclusive:", "    exclusives:", "exclusive"),
    (AllocFile, ALLOC_PATH, "{kind: int, native_only: true}", "{kind: int, native_onyl: true}", "native_only"),
], ids=["comfyui_flags.yaml", "torch_alloc_conf.yaml"])
def test_reference_tables_are_validated_too(tmp_path, model, path, old, new, nearest):
    copy = tmp_path / path.name
    copy.write_text(path.read_text().replace(old, new, 1))
    with pytest.raises(KilnError) as caught:
        validate(model, read_yaml(copy), copy)
    assert f"did you mean '{nearest}'?" in str(caught.value) and f"{copy}:" in str(caught.value)


def test_image_facts_are_one_model(project):
    facts = image_facts(project.subject("h200")).to_json()
    assert ImageFacts.model_validate(facts).to_json() == facts
    with pytest.raises(ValidationError, match="profil"):
        ImageFacts.model_validate({**facts, "profil": {}})


def test_schemas_in_docs_are_current(tmp_path):
    result = invoke("schema", "--out", str(tmp_path))
    assert result.returncode == 0, result.stderr
    for made in tmp_path.iterdir():
        assert made.read_text() == (ROOT / "docs" / "schemas" / made.name).read_text(), \
            f"docs/schemas/{made.name} is stale: run `invoke schema`"


def _check(schema: str, *files: Path) -> subprocess.CompletedProcess:
    return check_jsonschema("--schemafile", ROOT / "docs" / "schemas" / schema, *files)


def test_schemas_validate_the_shipped_files():
    assert _check("gpus.schema.json", ROOT / "gpus.yaml").returncode == 0
    specs = sorted((ROOT / "images").glob("*.yaml"))
    result = _check("image.schema.json", *specs)
    assert result.returncode == 0, result.stdout + result.stderr


def test_schema_refuses_a_typo(tmp_path):
    spec = tmp_path / "comfyui.yaml"
    shutil.copy(ROOT / "images" / "comfyui.yaml", spec)
    spec.write_text(spec.read_text().replace("  port: 8188", "  prot: 8188"))
    result = _check("image.schema.json", spec)
    assert result.returncode == 1 and "prot" in result.stdout


def test_shipped_files_carry_the_editor_modeline():
    files = [ROOT / "gpus.yaml", *sorted((ROOT / "images").glob("*.yaml"))]
    for path in files:
        first = path.read_text().splitlines()[0]
        assert first.startswith("# yaml-language-server: $schema=")
        target = (path.parent / first.split("$schema=", 1)[1]).resolve()
        assert target.is_file() and json.loads(target.read_text())["additionalProperties"] is False


def _payload_expect():
    sys.path.insert(0, str(ROOT / "provision" / "container"))
    try:
        from smoke import expect
    finally:
        sys.path.pop(0)
    return expect


def test_the_payload_checks_the_same_facts_the_model_defines(project):
    """The in-image payload cannot import the toolkit; its own check of kiln.json must agree with the model."""
    from kiln.data.facts import Pins, ProfileFacts
    expect = _payload_expect()
    assert set(expect.PIN_KEYS) == set(Pins.model_fields)
    required = {name for name, f in ProfileFacts.model_fields.items() if f.is_required()}
    assert set(expect.PROFILE_REQUIRED) == required
    assert set(expect.PROFILE_OPTIONAL) == set(ProfileFacts.model_fields) - required
    for gpu in project.gpus:
        expect.validate_expect(image_facts(project.subject(gpu)).to_json())
