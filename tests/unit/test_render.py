"""Rendering: golden files, determinism, linters, quoting, and refusing to clobber or half-write."""

import json
import os
import shutil
import subprocess
import sys
from dataclasses import replace
from pathlib import Path

import pytest

from kiln.errors import KilnError
from kiln.data.image import load_image
from kiln.render.context import render_texts, write_context

GOLDEN = Path(__file__).resolve().parent.parent / "golden"
GOLDEN_FILES = ("Dockerfile", "start.sh", "extra_model_paths.yaml", "kiln.json")
BIN = Path(sys.executable).parent


def _render(project, gpu, out, image="comfyui"):
    return write_context(project.subject(gpu, image), project.templates_dir, project.payload_dir, out)


@pytest.mark.parametrize("gpu", ["4090", "4070ti", "h200"])
def test_golden_files(project, tmp_path, gpu):
    _render(project, gpu, tmp_path / "ctx")
    for name in GOLDEN_FILES:
        golden = GOLDEN / gpu / name
        got = (tmp_path / "ctx" / name).read_text()
        if os.environ.get("KILN_UPDATE_GOLDEN"):
            golden.parent.mkdir(parents=True, exist_ok=True)
            golden.write_text(got)
        assert got == golden.read_text(), f"{gpu}/{name} differs; KILN_UPDATE_GOLDEN=1 rewrites goldens"


def _tree(path: Path) -> dict[str, bytes]:
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(path.rglob("*")) if p.is_file()}


def test_second_render_is_byte_identical(project, tmp_path):
    out = tmp_path / "ctx"
    _render(project, "4090", out)
    first = _tree(out)
    _render(project, "4090", out)
    assert _tree(out) == first
    assert os.access(out / "start.sh", os.X_OK)
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["generator"] == "kiln" and set(manifest["files"]) == set(first) - {"manifest.json"}


def test_profiles_share_the_heavy_part_of_the_dockerfile(project, tmp_path):
    texts = {gpu: render_texts(project.subject(gpu), project.templates_dir) for gpu in ("4090", "h200")}
    heavy = [t["Dockerfile"].split("COPY kiln.json")[0].split("\n", 1)[1] for t in texts.values()]
    assert heavy[0] == heavy[1]
    assert texts["4090"]["requirements.lock.txt"] == texts["h200"]["requirements.lock.txt"]


def test_every_profile_passes_hadolint_and_shellcheck(project, tmp_path):
    from kiln.data.gpus import load_gpus
    for gpu in load_gpus(project.gpus_path):
        out = tmp_path / gpu
        _render(project, gpu, out)
        lint = subprocess.run([BIN / "hadolint", out / "Dockerfile"], capture_output=True, text=True)
        assert lint.returncode == 0, lint.stdout
        sc = subprocess.run([BIN / "shellcheck", out / "start.sh"], capture_output=True, text=True)
        assert sc.returncode == 0, sc.stdout


def test_shell_metacharacters_are_quoted_not_rejected(project, tmp_path):
    nasty = """a b 'c' "d" $(touch pwned) `id` ; & | * ~ \\"""
    subject = project.subject("4090")
    subject = replace(subject, image=replace(subject.image, env={"KILN_NASTY": nasty}))
    start = render_texts(subject, project.templates_dir)["start.sh"]
    exports = "\n".join(line for line in start.splitlines() if line.startswith("export "))
    out = subprocess.run(["sh", "-c", exports + '\nprintf %s "$KILN_NASTY"'], capture_output=True, text=True,
                         cwd=tmp_path)
    assert out.stdout == nasty
    assert not (tmp_path / "pwned").exists()
    script = tmp_path / "start.sh"
    script.write_text(start)
    assert subprocess.run([BIN / "shellcheck", script]).returncode == 0


def test_newline_in_a_value_is_rejected(project_copy):
    spec = project_copy / "images" / "comfyui.yaml"
    spec.write_text(spec.read_text().replace("env: {}", 'env: {EVIL: "line1\\nline2"}'))
    with pytest.raises(KilnError) as err:
        load_image(spec, "debian-bookworm")
    assert "NUL or newline" in err.value.line() and "env.EVIL" in err.value.line()


def test_out_dir_with_foreign_files_is_refused_untouched(project, tmp_path):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    with pytest.raises(KilnError) as err:
        _render(project, "4090", out)
    assert "not an earlier kiln render" in err.value.line()
    assert [p.name for p in out.iterdir()] == ["notes.txt"]
    assert [p.name for p in tmp_path.iterdir()] == ["mine"]


def test_undefined_template_variable_names_template_and_line(project, tmp_path):
    templates = tmp_path / "templates"
    shutil.copytree(project.templates_dir, templates)
    path = templates / "start.sh.j2"
    text = path.read_text().replace("set -eu", "set -eu\n{{ no_such_value }}")
    path.write_text(text)
    line = text.splitlines().index("{{ no_such_value }}") + 1
    with pytest.raises(KilnError) as err:
        write_context(project.subject("4090"), templates, project.payload_dir, tmp_path / "ctx")
    assert f"templates/start.sh.j2:{line}" in err.value.line() and "no_such_value" in err.value.line()
    assert not (tmp_path / "ctx").exists()


def test_registry_base_renders_pinned_by_digest_and_lints(project, tmp_path):
    from tests.conftest import FIXTURES
    spec = load_image(FIXTURES / "images" / "slim.yaml", "debian-bookworm", "slim.yaml")
    subject = replace(project.subject("4090"), image=spec)
    out = tmp_path / "slim"
    write_context(subject, project.templates_dir, project.payload_dir, out)
    dockerfile = (out / "Dockerfile").read_text()
    digest = project.lock.bases["python-slim"].digest
    froms = [line for line in dockerfile.splitlines() if line.startswith("FROM ")]
    assert froms == [f"FROM python:3.11-slim-bookworm@{digest} AS builder", f"FROM python:3.11-slim-bookworm@{digest}"]
    assert "tini=0.19.0-1" in dockerfile
    lint = subprocess.run([BIN / "hadolint", out / "Dockerfile"], capture_output=True, text=True)
    assert lint.returncode == 0, lint.stdout


def test_the_warmup_renders_at_the_profiles_resolution(project_copy):
    gpus = project_copy / "gpus.yaml"
    gpus.write_text(gpus.read_text().replace('    serving: {vram_mode: --normalvram}\n  4070ti:',
                                             '    serving: {vram_mode: --normalvram, resolution: 768}\n  4070ti:', 1))
    from kiln.project import Project
    from kiln.render.context import sized_workflow
    project = Project(project_copy)
    latent = lambda gpu: sized_workflow(project.subject(gpu, "z-image-turbo"))["7"]["inputs"]
    assert (latent("h200")["width"], latent("h200")["height"]) == (1024, 1024)
    edited = [name for name, p in project.gpus.items() if p.serving.resolution == 768]
    assert edited and (latent(edited[0])["width"], latent(edited[0])["height"]) == (768, 768)


def test_the_image_output_replaces_saveimage_in_the_warmup_and_ships_its_node(project, tmp_path):
    """z-image-turbo serves through kiln's output node (PNG level 0); the default image keeps SaveImage."""
    write_context(project.subject("h200", "z-image-turbo", "cuda13"), project.templates_dir, project.payload_dir,
                  tmp_path / "z")
    warmup = json.loads((tmp_path / "z" / "warmup.json").read_text())
    assert warmup["10"] == {"class_type": "KilnImageOut", "inputs": {"images": ["9", 0], "format": "png", "png_level": 0,
                                                                     "quality": 95, "filename_prefix": "warmup"}}
    dockerfile = (tmp_path / "z" / "Dockerfile").read_text()
    assert "COPY payload/comfyui_nodes/kiln_output/ /opt/comfyui/custom_nodes/kiln_output/" in dockerfile
    assert (tmp_path / "z" / "payload" / "comfyui_nodes" / "kiln_output" / "__init__.py").is_file()
    _render(project, "h200", tmp_path / "plain")
    assert "kiln_output" not in (tmp_path / "plain" / "Dockerfile").read_text()
    assert "KilnImageOut" not in (tmp_path / "plain" / "warmup.json").read_text()


@pytest.mark.parametrize("saves", [0, 2])
def test_an_output_block_needs_one_saveimage_to_replace(project_copy, saves):
    from tests.conftest import invoke
    path = project_copy / "images" / "workflows" / "z-image-turbo.json"
    workflow = json.loads(path.read_text())
    if saves == 0:
        workflow["10"]["class_type"] = "PreviewImage"
    else:
        workflow["11"] = json.loads(json.dumps(workflow["10"]))
    path.write_text(json.dumps(workflow))
    result = invoke("check", "--gpu", "h200", "--image", "z-image-turbo", root=project_copy)
    assert result.returncode == 2 and result.stdout == ""
    assert result.stderr.count("\n") == 1 and f"output: the warm-up workflow has {saves} SaveImage nodes" in result.stderr
    assert "images/z-image-turbo.yaml" in result.stderr and "remove the output block" in result.stderr


def test_the_cuda13_venv_leaves_out_what_the_trace_found_unread_and_keeps_what_it_read(project, tmp_path):
    """kiln/data/tables/prune.yaml: the unread entries are removed in the builder stage, before the venv is
    copied (so the layer shrinks), with `rm -r` (a path gone from the wheels fails the build); read ones stay."""
    from kiln.data.tables import _prune_file
    entries = _prune_file().stacks["cuda13"]
    text = render_texts(project.subject("h200", "z-image-turbo", "cuda13"), project.templates_dir)["Dockerfile"]
    builder, final = text.split("\nFROM kiln-base:debian-bookworm-py3.11\n")
    site = "/opt/venv/lib/python3.11/site-packages/"
    removed = [x.strip().removesuffix(" \\").removeprefix(site) for x in builder.split(" && rm -r \\\n")[1]
               .split(" && find")[0].splitlines()]
    assert removed == [e.path for e in entries if e.trace == "unread"] and "nvidia/cusparselt" not in removed
    assert "rm -r" not in final and "rm -rf" not in builder
    card = render_texts(project.subject("h200"), project.templates_dir)["Dockerfile"]
    assert " && rm -r " not in card   # the card's stack has no prune list


@pytest.mark.parametrize("path", ["../etc/passwd", "/opt/venv", "nvidia/../../x", "nvidia/.hidden", "*", "nvidia/*",
                                  "torch/**/x.so", "*/lib"])
def test_a_prune_path_that_could_leave_site_packages_is_refused(path):
    from pydantic import ValidationError
    from kiln.data.tables import PruneEntry
    with pytest.raises(ValidationError, match="path"):
        PruneEntry(path=path, why="x", trace="unread")


def test_warmup_steps_need_a_sampler_to_set(project_copy):
    """warmup.steps changes the samplers' and schedulers' steps: a workflow without one is refused, not
    warmed up at its own steps while kiln.json says otherwise."""
    from tests.conftest import invoke
    path = project_copy / "images" / "workflows" / "z-image-turbo.json"
    workflow = json.loads(path.read_text())
    sampler = next(key for key, node in workflow.items() if node["class_type"] == "KSampler")
    workflow[sampler]["class_type"] = "StepsStandIn"   # keeps its steps input, but is no sampler
    path.write_text(json.dumps(workflow))
    result = invoke("check", "--gpu", "h200", "--image", "z-image-turbo", root=project_copy)
    assert result.returncode == 2 and result.stderr.count("\n") == 1
    assert "warmup.steps: the warm-up workflow has no sampler or scheduler with a steps input" in result.stderr


def test_the_zimage_facts_carry_its_warmup_plan_and_the_default_image_keeps_two_runs(project, tmp_path):
    z = json.loads(render_texts(project.subject("h200", "z-image-turbo", "cuda13"), project.templates_dir)["kiln.json"])
    assert (z["warmup"]["runs"], z["warmup"]["steps"]) == (1, 1)
    card = json.loads(render_texts(project.subject("h200"), project.templates_dir)["kiln.json"])
    assert card["warmup"]["runs"] == 2 and "steps" not in card["warmup"]


def test_the_portable_build_prunes_the_same_files(project):
    subject = project.subject("h200", "z-image-turbo", "cuda13")
    local, portable = (render_texts(subject, project.templates_dir, portable=p)["Dockerfile"] for p in (False, True))
    cut = [[line.strip() for line in text.split(" && rm -r \\\n")[1].split(" && find")[0].splitlines()]
           for text in (local, portable)]
    from kiln.data.tables import pruned_paths
    assert cut[0] == cut[1] and len(cut[0]) == len(pruned_paths("cuda13")) > 0
