"""The records stages hand on: typed, versioned, written whole; one owner of their paths; a damaged or
older record is one line naming the file, what is wrong and the command that writes it again."""

import ast
import json
import re
from dataclasses import replace
from pathlib import Path

import pytest

from kiln.data.records.base_image import BaseImageRecord
from kiln.data.records.build import PublishFailure
from kiln.data.records.folder import BuildFolder
from kiln.data.records.smoke import SmokeRecord, SmokeSummary
from kiln.errors import KilnError
from kiln.project import Project
from kiln.publish.job import PublishRequest, _smoke_requirement
from kiln.publish.push import Target
from tests.conftest import ROOT, invoke
from tests.jsonschema_tool import check_jsonschema
from tests.standin.records import IMAGE_ID, build_record, write_build_record, write_run_record

BASE = BaseImageRecord(ref="kiln-base:debian-bookworm-py3.11", image_id="sha256:" + "2" * 64, recipe_sha256="3" * 64,
                       packages=("base-files=12.4+deb12u15", "python3.11=3.11.2-6+deb12u6"))
SMOKE = SmokeRecord(image_id=IMAGE_ID, tag="kiln/comfyui:x", exit_code=0, gpus="all", profile="4090",
                    summary=SmokeSummary(passed=9, warn=1, fail=0, skip=2))


def test_every_record_reads_back_as_the_model_written(project_copy):
    folder = BuildFolder(project_copy / "build")
    built = build_record(project_copy, "4090")
    folder.write_build(built)
    folder.write_smoke(SMOKE)
    folder.write_base("debian-bookworm", BASE)
    run = write_run_record(project_copy, "kiln/comfyui:x", 30.0, {"device_s": 1.0, "first_s": 9.0}, False)
    assert folder.read_build("comfyui", "4090") == built
    assert folder.read_base("debian-bookworm") == BASE
    assert folder.read_smoke(IMAGE_ID, "4090", "comfyui") == SMOKE
    assert folder.read_run(IMAGE_ID).seconds_to_healthy == 30.0 and not run.kept
    saved = json.loads(folder.smoke_record(IMAGE_ID).read_text())
    assert saved["schema"] == 1 and saved["summary"] == {"pass": 9, "warn": 1, "fail": 0, "skip": 2}


def test_one_owner_of_the_paths(tmp_path):
    folder = BuildFolder(tmp_path)
    assert folder.build_record("comfyui", "4090") == tmp_path / "comfyui-4090.build.json"
    assert folder.build_record("comfyui", "4090", baked=True) == tmp_path / "comfyui-4090-models.build.json"
    assert folder.smoke_record(IMAGE_ID) == tmp_path / "smoke" / "1111111111111111.json"
    assert folder.run_record(IMAGE_ID) == tmp_path / "run" / "1111111111111111.json"
    assert folder.deploy_out("comfyui", "4090", cpu_mode=True) == tmp_path / "deploy" / "comfyui-4090-cpu"
    assert folder.base_record("debian-bookworm") == tmp_path / "bases" / "debian-bookworm.json"


OWNERS = ("kiln/data/records/folder.py", "kiln/project.py")  # the folder's layout; where a project keeps it


SPELLINGS = ('.build.json"', '/ "build"', '"build" /', '"build/', '"deploy" /', '"smoke" / f',
             '/ "run" /', '"run" / f', '.root / "deploy', '.root / "smoke', '.root / "run')


def _spelt(files: list[Path]) -> list[str]:
    return [str(p.relative_to(ROOT)) for p in files
            if str(p.relative_to(ROOT)) not in OWNERS and any(s in p.read_text() for s in SPELLINGS)]


def test_no_record_path_is_spelt_outside_the_folder_owner():
    """tasks.py, the stages and the benchmarks ask BuildFolder; none builds a path under build/ itself."""
    files = [ROOT / "tasks.py", *sorted((ROOT / "kiln").rglob("*.py")), *sorted((ROOT / "bench").rglob("*.py"))]
    assert _spelt(files) == []


def test_the_path_rule_sees_a_spelt_deploy_folder(tmp_path):
    planted = ROOT / "bench" / "zz_planted_for_the_rule.py"
    planted.write_text('out = BUILD.root / "deploy" / "comfyui-4090"\n')
    try:
        assert _spelt([planted]) == ["bench/zz_planted_for_the_rule.py"]
    finally:
        planted.unlink()


def test_no_record_is_read_as_a_dict_in_the_library():
    """Every reader gets a model: no `record.get(` or `record[...]` on a record in kiln/."""
    pattern = re.compile(r"\b(record|run|built|earlier|saved|build|smoke)(\.get\(|\[)")
    found = [f"{p.relative_to(ROOT)}:{n}" for p in sorted((ROOT / "kiln").rglob("*.py"))
             for n, line in enumerate(p.read_text().splitlines(), 1) if pattern.search(line)]
    assert found == []


# Every record is read through BuildFolder's readers (kiln.data.records.base.read_record), as its model. The
# structural rule: outside kiln/data/records/, no JSON, YAML or text read takes a path that came from one of
# BuildFolder's record paths (what its *_record, write_*, record_* and deploy_out methods return), followed
# through the names a function assigns it to.
RECORD_PATHS = {name for name in vars(BuildFolder)
                if name.endswith("_record") or name.startswith(("write_", "record_")) or name == "deploy_out"}
READS = {"load", "loads", "safe_load", "read_json", "read_text", "read_bytes", "open"}


def _callee(call: ast.Call) -> str:
    func = call.func
    return func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""


def _from_record_path(node: ast.AST, tainted: set[str]) -> bool:
    return any((isinstance(n, ast.Call) and _callee(n) in RECORD_PATHS) or (isinstance(n, ast.Name) and n.id in tainted)
               for n in ast.walk(node))


def _targets(node: ast.AST) -> list[ast.AST]:
    if isinstance(node, ast.Assign):
        return node.targets
    if isinstance(node, (ast.AnnAssign, ast.AugAssign, ast.NamedExpr, ast.For, ast.comprehension)):
        return [node.target]
    if isinstance(node, ast.withitem) and node.optional_vars is not None:
        return [node.optional_vars]
    return []


def _tainted(scope: ast.AST) -> set[str]:
    """Names in scope bound, directly or through other such names, to a record path."""
    names: set[str] = set()
    while True:
        more = {n.id for node in ast.walk(scope) for target in _targets(node)
                if _from_record_path(getattr(node, "value", None) or getattr(node, "iter", None)
                                     or getattr(node, "context_expr", None) or ast.Constant(None), names)
                for n in ast.walk(target) if isinstance(n, ast.Name)}
        if more <= names:
            return names
        names |= more


def _raw_record_reads(files: list[Path]) -> list[str]:
    found = set()
    for path in files:
        tree = ast.parse(path.read_text(), str(path))
        for scope in ast.walk(tree):
            if not isinstance(scope, (ast.Module, ast.FunctionDef, ast.AsyncFunctionDef)):
                continue
            tainted = _tainted(scope)
            found |= {f"{path.relative_to(ROOT) if path.is_relative_to(ROOT) else path.name}:{call.lineno}"
                      for call in ast.walk(scope)
                      if isinstance(call, ast.Call) and _callee(call) in READS and _from_record_path(call, tainted)}
    return sorted(found)


def _library_files() -> list[Path]:
    return [ROOT / "tasks.py", *(p for p in sorted((ROOT / "kiln").rglob("*.py"))
                                 if not p.is_relative_to(ROOT / "kiln" / "data" / "records"))]


def test_every_record_is_read_through_the_records_reader():
    files = _library_files()
    assert ROOT / "tasks.py" in files and ROOT / "kiln" / "engine" / "bases.py" in files and len(files) > 50
    assert _raw_record_reads(files) == []


PLANTED = {
    "json of a record path": 'def f(folder):\n    return json.loads(folder.build_record("comfyui", "4090").read_text())\n',
    "through a name": 'def f(folder, image_id):\n    path = folder.smoke_record(image_id)\n    data = json.load(open(path))\n'
                      '    return data.get("exit_code")\n',
    "through two names": 'def f(folder):\n    written = folder.write_run(record)\n    p = written.path\n'
                         '    return p.read_bytes()\n',
    "a deploy record": 'def f(BUILD):\n    out = BUILD.deploy_out("comfyui", "4090")\n'
                       '    return read_json(out / "deploy.json")["image"]\n',
    "in a with": 'def f(folder):\n    with open(folder.base_record("debian-bookworm")) as fh:\n        return json.load(fh)\n',
}


@pytest.mark.parametrize("case", sorted(PLANTED))
def test_the_reader_rule_sees_a_planted_raw_read(tmp_path, case):
    planted = tmp_path / "planted.py"
    planted.write_text("import json\n\n" + PLANTED[case])
    assert _raw_record_reads([planted]) and all(hit.startswith("planted.py:") for hit in _raw_record_reads([planted]))


def test_a_smoke_record_of_another_image_is_not_this_images(project_copy):
    folder = BuildFolder(project_copy / "build")
    folder.write_smoke(SMOKE)
    other = "sha256:" + "1" * 16 + "f" * 48  # same file name (first 16 hex digits), another image
    assert folder.read_smoke(other, "4090", "comfyui") is None


BAD = {
    "not JSON": ("{not json", "damaged record (not JSON)"),
    "older kiln": (json.dumps({"image_id": IMAGE_ID}), "record written by an older kiln (no schema version)"),
    "newer kiln": (json.dumps({"schema": 2, "image_id": IMAGE_ID}), "record written by another kiln (schema 2"),
    "unknown key": (None, "damaged record: unknown key 'colour'"),
    "wrong type": (None, "damaged record: key 'size'"),
}


def _bad_build_record(root: Path, case: str) -> Path:
    path = write_build_record(root, "4090")
    text, _ = BAD[case]
    if text is None:
        data = json.loads(path.read_text())
        data.update({"colour": "red"} if case == "unknown key" else {"size": "big"})
        text = json.dumps(data)
    path.write_text(text)
    return path


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_damaged_or_foreign_build_record_is_one_line_with_the_command_that_rewrites_it(project_copy, tmp_path, case):
    path = _bad_build_record(project_copy, case)
    result = invoke("deploy", "--gpu", "4090", "--target", "compose", "--out", str(tmp_path / "out"), root=project_copy)
    lines = result.stderr.strip().splitlines()
    assert result.returncode == 2 and len(lines) == 1 and "Traceback" not in result.stderr, result.stderr
    assert str(path) in lines[0] and BAD[case][1] in lines[0]
    assert "run `invoke build --gpu=4090 --image comfyui` to write it again" in lines[0]
    assert not (tmp_path / "out").exists()


def test_a_damaged_run_record_names_invoke_run(project_copy, tmp_path):
    write_build_record(project_copy, "4090")
    run = write_run_record(project_copy, "kiln/comfyui:x", 30.0, {"first_s": 9.0}, False)
    run.path.write_text(run.path.read_text().replace('"cpu_mode": false', '"cpu_mode": "maybe"'))
    result = invoke("deploy", "--gpu", "4090", "--target", "compose", "--out", str(tmp_path / "out"), root=project_copy)
    assert result.returncode == 2 and f"{run.path}: damaged record: key 'cpu_mode'" in result.stderr
    assert "start the image again with `invoke run` to write it again, or delete" in result.stderr


def test_a_damaged_run_record_is_replaced_by_the_next_run(project_copy):
    first = write_run_record(project_copy, "kiln/comfyui:x", 30.0, {"first_s": 9.0}, False)
    first.path.write_text("{")
    again = write_run_record(project_copy, "kiln/comfyui:x", 5.0, {}, True)
    assert not again.kept and json.loads(again.path.read_text())["seconds_to_healthy"] == 5.0


def test_a_damaged_smoke_record_is_one_error_naming_invoke_smoke(project_copy):
    folder = BuildFolder(project_copy / "build")
    folder.write_smoke(SMOKE)
    folder.smoke_record(IMAGE_ID).write_text(json.dumps({"schema": 1, "image_id": IMAGE_ID}))
    with pytest.raises(KilnError) as caught:
        folder.read_smoke(IMAGE_ID, "4090", "comfyui")
    assert "damaged record: missing key" in caught.value.line()
    assert "run `invoke smoke --gpu=4090 --image comfyui` to write it again, or delete" in caught.value.line()


@pytest.mark.parametrize("text, what", [("{", "damaged record (not JSON)"),
                                        (json.dumps({"schema": 1, "ref": "kiln-base:x"}), "damaged record: missing key")])
def test_a_damaged_base_record_stops_the_build_naming_invoke_base(tmp_path, text, what):
    """What the build reads first (tests/engine/test_build_cli.py: before anything is made)."""
    folder = BuildFolder(tmp_path)
    folder.base_record("debian-bookworm").parent.mkdir()
    folder.base_record("debian-bookworm").write_text(text)
    with pytest.raises(KilnError) as caught:
        folder.read_base("debian-bookworm")
    assert caught.value.line().startswith(f"{folder.base_record('debian-bookworm')}: {what}")
    assert caught.value.line().endswith("run `invoke base --name debian-bookworm` to write it again")


def test_the_published_schemas_validate_records_kiln_writes(project_copy):
    folder = BuildFolder(project_copy / "build")
    written = {"build-record": write_build_record(project_copy, "4090"), "smoke-record": folder.write_smoke(SMOKE),
               "base-record": folder.write_base("debian-bookworm", BASE),
               "run-record": write_run_record(project_copy, "kiln/comfyui:x", 3.0, {"first_s": 1.0}, True).path}
    for schema, path in written.items():
        checked = check_jsonschema("--schemafile", ROOT / "docs" / "schemas" / f"{schema}.schema.json", path)
        assert checked.returncode == 0, checked.stdout
    bad = json.loads(written["smoke-record"].read_text()) | {"exit_code": "zero"}
    written["smoke-record"].write_text(json.dumps(bad))
    refused = check_jsonschema("--schemafile", ROOT / "docs/schemas/smoke-record.schema.json", written["smoke-record"])
    assert refused.returncode == 1 and "'zero' is not of type 'integer'" in refused.stdout, refused.stdout


def test_a_record_of_the_kiln_before_versions_reads_when_it_has_every_field(project_copy):
    path = write_build_record(project_copy, "4090")
    data = json.loads(path.read_text())
    del data["schema"]
    path.write_text(json.dumps(data))
    assert BuildFolder(project_copy / "build").read_build("comfyui", "4090").image_id == IMAGE_ID


def test_a_record_that_is_not_an_object_is_damaged(project_copy):
    path = write_build_record(project_copy, "4090")
    path.write_text("[1, 2]")
    with pytest.raises(KilnError) as caught:
        BuildFolder(project_copy / "build").read_build("comfyui", "4090")
    assert "damaged record (not a JSON object)" in caught.value.line()


def test_a_stack_build_is_deployed_and_published_from_its_own_record(project_copy, tmp_path):
    """--stack cuda13 on a 5090: the record beside that build is the one deploy reads and publish writes."""
    path = write_build_record(project_copy, "5090", published=True, stack="cuda13")
    assert path.name == "comfyui-5090-cuda13.build.json"
    refused = invoke("deploy", "--gpu", "5090", "--target", "compose", "--out", str(tmp_path / "a"), root=project_copy)
    assert refused.returncode == 2 and "no build record" in refused.stderr
    done = invoke("deploy", "--gpu", "5090", "--stack", "cuda13", "--target", "compose", root=project_copy)
    assert done.returncode == 0, done.stderr
    assert (project_copy / "build" / "deploy" / "comfyui-5090-cuda13" / "compose.yaml").is_file()
    folder = BuildFolder(project_copy / "build")
    record = folder.read_build("comfyui", "5090", stack="cuda13")
    folder.record_publish_failure(record, PublishFailure(target="r/ns", error="refused"))
    assert folder.read_build("comfyui", "5090", stack="cuda13").publish_failed.error == "refused"
    assert not folder.build_record("comfyui", "5090").exists()  # the spec's own record was not made up


def test_force_publishes_past_a_damaged_smoke_record_and_says_so(project_copy):
    folder = BuildFolder(project_copy / "build")
    folder.write_smoke(SMOKE)
    folder.smoke_record(IMAGE_ID).write_text("{")
    subject = Project(project_copy).subject("4090")
    request = PublishRequest(target=Target("r.example", "ns"), credentials=None, folder=folder)
    with pytest.raises(KilnError, match="damaged record"):
        _smoke_requirement(request, subject, IMAGE_ID)
    forced = _smoke_requirement(replace(request, force=True), subject, IMAGE_ID)
    assert forced == "forced: published with a damaged smoke record (--force)"
