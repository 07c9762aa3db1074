"""The command line as a user meets it: task list, one-line errors with exit 2, nothing written."""

import json

import pytest

from tests.conftest import invoke

TASKS = ("base", "build", "check", "clean", "gpus", "lock", "publish", "render", "report", "run", "schema", "smoke",
         "stop", "verify", "provision.cache")


def test_every_task_is_listed_with_help():
    out = invoke("--list").stdout
    for name in TASKS:
        line = next(line for line in out.splitlines() if line.strip().startswith(name + " "))
        assert len(line.split()) > 2, f"{name} has no help line"


def _one_line_error(result, *fragments):
    assert result.returncode == 2, result.stdout + result.stderr
    assert "Traceback" not in result.stderr
    errors = [line for line in result.stderr.splitlines() if line.startswith("error:")]
    assert len(errors) == 1, result.stderr
    for fragment in fragments:
        assert fragment in errors[0]
    return errors[0]


def test_unknown_gpu(project_copy):
    _one_line_error(invoke("render", "--gpu", "rtx6090", root=project_copy), "unknown GPU 'rtx6090'", "4090, 4080")
    assert not (project_copy / "build").exists()


def test_unknown_image(project_copy):
    _one_line_error(invoke("check", "--gpu", "4090", "--image", "sdxl", root=project_copy),
                    "unknown image 'sdxl'", "comfyui, z-image-turbo")


def test_malformed_toml_names_file_and_line(project_copy):
    lock = project_copy / "versions.lock"
    lines = lock.read_text().splitlines()
    lines[6] = "torch = 2.3.1"
    lock.write_text("\n".join(lines) + "\n")
    _one_line_error(invoke("check", "--gpu", "4090", root=project_copy), "versions.lock", "malformed TOML", "line 7")


def test_malformed_yaml_names_file_and_line(project_copy):
    gpus = project_copy / "gpus.yaml"
    gpus.write_text(gpus.read_text().replace("    vram_gb: 24\n", "    vram_gb: [24\n", 1))
    _one_line_error(invoke("check", "--gpu", "4090", root=project_copy), "gpus.yaml:", "malformed YAML")


def test_missing_key(project_copy):
    gpus = project_copy / "gpus.yaml"
    gpus.write_text(gpus.read_text().replace("    bandwidth_gbs: 1008\n", "", 1))
    _one_line_error(invoke("check", "--gpu", "4090", root=project_copy), "gpus.yaml", "missing key 'profiles.4090.bandwidth_gbs'")


def test_wrong_type(project_copy):
    spec = project_copy / "images" / "comfyui.yaml"
    spec.write_text(spec.read_text().replace("port: 8188", "port: eighty"))
    _one_line_error(invoke("render", "--gpu", "4090", root=project_copy), "images/comfyui.yaml",
                    "key 'server.port': input should be a valid integer")
    assert not (project_copy / "build").exists()


def test_inconsistent_lock_stops_render(project_copy):
    lock = project_copy / "versions.lock"
    lock.write_text(lock.read_text().replace('[stacks.card.packages.xformers]\nversion = "0.0.27"',
                                             '[stacks.card.packages.xformers]\nversion = "0.0.28"'))
    result = invoke("render", "--gpu", "4090", root=project_copy)
    assert result.returncode == 2 and "Traceback" not in result.stderr
    assert "[stacks.card.packages.xformers] version 0.0.28 disagrees with its wheel" in result.stderr
    assert not (project_copy / "build").exists()


def test_gate_error_renders_nothing(project_copy):
    spec = project_copy / "images" / "z-image-turbo.yaml"
    spec.write_text(spec.read_text().replace("stack: zimage", "stack: card"))
    result = invoke("render", "--gpu", "4090", "--image", "z-image-turbo", root=project_copy)
    assert result.returncode == 2
    assert "ComfyUI >= 0.3.74" in result.stderr and "nothing rendered" in result.stderr
    assert not (project_copy / "build").exists()


def test_check_names_the_stack_that_serves_z_image():
    on_card = invoke("check", "--gpu", "4090", "--image", "z-image-turbo", "--stack", "card")
    assert on_card.returncode == 2 and "Traceback" not in on_card.stderr
    assert "stack 'card' pins ComfyUI 0.3.18" in on_card.stderr and "set `stack: zimage`" in on_card.stderr
    own = invoke("check", "--gpu", "4090", "--image", "z-image-turbo")
    assert own.returncode == 0, own.stderr
    assert "gate passed: image 'z-image-turbo' on NVIDIA GeForce RTX 4090 (stack 'zimage': ComfyUI 0.3.74" in own.stdout


def test_foreign_out_dir_is_refused(project_copy):
    out = project_copy / "elsewhere"
    out.mkdir()
    (out / "data.bin").write_bytes(b"precious")
    _one_line_error(invoke("render", "--gpu", "4090", "--out", str(out), root=project_copy),
                    "not an earlier kiln render")
    assert (out / "data.bin").read_bytes() == b"precious"


@pytest.mark.parametrize("gpu", ["4090", "RTX 4090", "rtx4090"])
def test_render_writes_the_context(project_copy, gpu):
    result = invoke("render", "--gpu", gpu, root=project_copy)
    assert result.returncode == 0, result.stderr
    out = project_copy / "build" / "comfyui-4090"
    listed = json.loads((out / "manifest.json").read_text())["files"]
    assert f"rendered {len(listed)} files to {out}" in result.stdout and len(listed) > 20
    assert (out / "Dockerfile").is_file()


def test_strict_refuses_warnings(project_copy):
    spec = project_copy / "images" / "comfyui.yaml"
    spec.write_text(spec.read_text().replace("env: {}", 'env: {PYTORCH_CUDA_ALLOC_CONF: "max_split_size_mb:512"}'))
    assert invoke("check", "--gpu", "4090", root=project_copy).returncode == 0
    strict = invoke("check", "--gpu", "4090", "--strict", root=project_copy)
    assert strict.returncode == 2 and "(--strict)" in strict.stderr


def test_gpus_lists_every_profile_as_a_table():
    result = invoke("gpus")
    assert result.returncode == 0, result.stderr
    table, _, footer = result.stdout.partition("\n\n")
    rows = {line.split()[0]: line.split() for line in table.splitlines()[2:] if line.strip()}
    assert rows["4070ti"] == ["4070ti", "NVIDIA", "GeForce", "RTX", "4070", "Ti", "12", "504", "sm_89", "80", "4",
                              "x16", "--normalvram", "sourced", "card,zimage,cuda13"]
    assert rows["5090"][-3:] == ["--highvram", "sourced", "cuda13"] and rows["b200"][5] == "sm_100"
    assert len(rows) == 15
    assert "  comfyui: card; on 5090, rtx-pro-6000, b200 it has no kernels: pass --stack cuda13" in footer
    assert "  z-image-turbo: zimage; on 5090" in footer


@pytest.mark.parametrize("args, fragment", [
    (("--registry", "127.0.0.1:1/team"), "give one of --gpu and --all-gpus"),
    (("--registry", "127.0.0.1:1/team", "--gpu", "4090", "--all-gpus"), "give one of --gpu and --all-gpus"),
    (("--registry", "no namespace", "--gpu", "4090"), "is not HOST[:PORT]/NAMESPACE"),
    (("--registry", "reg.example/Team", "--gpu", "4090"), "'Team' is not a repository namespace"),
    (("--registry", "127.0.0.1:1/team", "--gpu", "4090", "--sign-key", "/nonexistent/k.pem"),
     "--sign-key: /nonexistent/k.pem does not exist"),
])
def test_publish_refuses_before_touching_anything(args, fragment):
    _one_line_error(invoke("publish", *args), fragment)


@pytest.mark.parametrize("args, fragment", [
    (("--reference", "127.0.0.1:1/team/comfyui:tag"), "is not HOST[:PORT]/NAME@sha256:<64 hex>"),
    (("--reference", "127.0.0.1:1/team/comfyui@sha256:" + "0" * 64, "--key", "/nonexistent.pub"),
     "--key: /nonexistent.pub does not exist"),
])
def test_verify_refuses_bad_input_in_one_line(args, fragment):
    _one_line_error(invoke("verify", *args), fragment)


def test_blackwell_renders_only_on_the_stack_the_refusal_names(project_copy):
    refused = _one_line_error(invoke("render", "--gpu", "5090", root=project_copy), "is sm_120",
                              "Fix: pass --stack cuda13")
    assert "torch 2.3.1 (stack 'card')" in refused and not (project_copy / "build").exists()
    rendered = invoke("render", "--gpu", "5090", "--stack", "cuda13", root=project_copy)
    assert rendered.returncode == 0, rendered.stderr
    facts = json.loads((project_copy / "build" / "comfyui-5090-cuda13" / "kiln.json").read_text())
    assert (facts["pins"]["torch"], facts["pins"]["cuda"], facts["pins"]["xformers"]) == ("2.11.0", "13.0", "none")
    assert "torch_sass" in facts and "sm_120" in facts["torch_sass"]
