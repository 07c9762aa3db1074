"""The gate's rules, each shown on the real data and on one edited copy that must trip it."""

import json
from dataclasses import replace


from kiln.gate.findings import ERROR, NOTE, WARNING, run_rules
from kiln.data.image import load_image
from kiln.gate.rules import ALL_RULES
from tests.conftest import FIXTURES


def findings(subject, severity=None, rule=None):
    return [f for f in run_rules(subject, ALL_RULES)
            if (severity is None or f.severity == severity) and (rule is None or f.rule == rule)]


def test_default_image_passes_on_every_profile(project):
    """On the default stack, or (cards its torch has no kernels for) on the stack the refusal names."""
    from kiln.data.gpus import load_gpus
    for name in load_gpus(project.gpus_path):
        errors = findings(project.subject(name), ERROR)
        if errors:
            [cc] = errors
            assert cc.rule == "compute-capability" and "--stack cuda13" in cc.fix, name
            assert findings(project.subject(name, stack="cuda13"), ERROR) == [], name


def test_blackwell_on_the_card_stack_is_one_error_naming_the_architecture_and_the_stack(project):
    for gpu, sm in (("5090", "sm_120"), ("rtx-pro-6000", "sm_120"), ("b200", "sm_100")):
        [cc] = findings(project.subject(gpu), ERROR)
        assert cc.rule == "compute-capability" and f"is {sm}" in cc.message and f"no {sm}" in cc.message
        assert "SASS for sm_50, sm_60, sm_70, sm_75, sm_80, sm_86, sm_90 and no PTX" in cc.message
        assert cc.fix.startswith("pass --stack cuda13 (torch 2.11.0, CUDA 13.0, ComfyUI 0.33.0")


def test_the_current_stack_serves_both_images_on_blackwell_and_hopper(project):
    for gpu in ("5090", "rtx-pro-6000", "b200", "h100", "h200"):
        for image in ("comfyui", "z-image-turbo"):
            subject = project.subject(gpu, image, stack="cuda13")
            assert subject.lock.comfyui.version == "0.33.0"
            assert findings(subject, ERROR) == [] and findings(subject, WARNING) == [], (gpu, image)


def test_current_stack_kernels_are_the_wheels_list(project):
    [cc] = findings(project.subject("4090", stack="cuda13"), rule="compute-capability")
    assert cc.severity == NOTE and "sm_86 code" in cc.message
    old = project.subject("h200", stack="cuda13")
    volta = old.gpu.model_copy(update={"name": "v100", "display": "Tesla V100-SXM2-16GB", "compute_capability": "7.0"})
    [cc] = findings(replace(old, gpu=volta), ERROR)
    assert "no sm_70" in cc.message and cc.fix.startswith("pass --stack card")


def test_without_a_stack_for_the_card_the_fix_is_to_add_one(project):
    subject = project.subject("5090")
    only_card = replace(subject, lock=replace(subject.lock, file=subject.lock.file.model_copy(
        update={"stacks": {"card": subject.lock.entry}})))
    [cc] = findings(only_card, ERROR)
    assert "add a stack to versions.lock whose torch build lists sm_120" in cc.fix


def test_current_stack_below_the_cuda13_driver_is_an_error(project):
    subject = project.subject("5090", stack="cuda13")
    assert findings(subject, ERROR, "driver") == []
    lock = _with_stack(subject.lock, subject.lock.stack.model_copy(update={"driver_floor": "575.57.08"}))
    [driver] = findings(replace(subject, lock=lock), ERROR, "driver")
    assert "575.57.08" in driver.message and "CUDA 13.0 runtime needs: NVIDIA driver >= 580.65.06 (R580)" in driver.message
    assert driver.fix == "set driver_floor to 580.65.06 or later"


def test_a_stack_without_xformers_says_attention_runs_through_sdpa(project):
    [note] = findings(project.subject("h200", stack="cuda13"), rule="attention")
    assert note.severity == NOTE and "torch 2.11.0" in note.message and "PyTorch SDPA" in note.message
    assert findings(project.subject("h200"), rule="attention") == []


def test_profile_flags_are_checked_against_0_33(project):
    [flag] = findings(project.subject("4080", stack="cuda13"), ERROR, "flags")
    assert "--normalvram is not a ComfyUI 0.33.0 flag" in flag.message and flag.where.endswith("profiles.4080.serving")
    assert findings(project.subject("4080"), ERROR, "flags") == []


def test_4070ti_cannot_hold_z_image_and_is_told_what_fits(project):
    [vram] = findings(project.subject("4070ti", "z-image-turbo"), rule="vram")
    assert vram.severity == ERROR
    assert "22.2 GB with every model resident" in vram.message and "11.5 GB usable" in vram.message
    assert "--fp8_e4m3fn-unet" in vram.fix and "8.0 GB" in vram.fix


def test_16gb_card_swaps_the_text_encoder(project):
    [vram] = findings(project.subject("4080", "z-image-turbo"), rule="vram")
    assert vram.severity == WARNING and "swap" in vram.message


def test_4090_holds_z_image_but_comfyui_0_3_18_cannot_load_it(project):
    subject = project.subject("4090", "z-image-turbo", stack="card")
    assert findings(subject, rule="vram") == []
    [model] = findings(subject, rule="model-comfyui")
    assert model.severity == ERROR
    assert "ComfyUI >= 0.3.74" in model.message and "stack 'card' pins ComfyUI 0.3.18" in model.message
    assert "stack 'zimage' (ComfyUI 0.3.74)" in model.fix and "`stack: zimage`" in model.fix


def test_z_image_passes_on_its_own_stack(project):
    for gpu in ("4090", "h200"):
        subject = project.subject(gpu, "z-image-turbo")
        assert subject.lock.name == "zimage" and subject.lock.comfyui.version == "0.3.74"
        assert findings(subject, ERROR) == [] and findings(subject, WARNING) == [], gpu


def test_without_a_stack_that_loads_the_model_the_fix_is_to_add_one(project):
    subject = project.subject("4090", "z-image-turbo", stack="card")
    only_card = replace(subject, lock=replace(subject.lock, file=subject.lock.file.model_copy(
        update={"stacks": {"card": subject.lock.entry}})))
    [model] = findings(only_card, rule="model-comfyui")
    assert "add a stack to versions.lock with ComfyUI 0.3.74 or later" in model.fix


def test_article_flags_one_finding_per_bad_flag(project):
    spec = load_image(FIXTURES / "images" / "article.yaml", "debian-bookworm", "article.yaml")
    subject = replace(project.subject("4090"), image=spec)
    flags = findings(subject, rule="flags")
    assert [f.severity for f in flags] == [ERROR] * 4
    text = "\n".join(f.message + " | " + f.fix for f in flags)
    for expected in ("--listen 0.0.0.0 --port 8188", "--enable-xformers", "--use-torch-compile", "--cpu runs"):
        assert expected in text
    assert "--force-fp16" not in text and "--disable-auto-launch" not in text


def test_article_env_and_workflow(project):
    spec = load_image(FIXTURES / "images" / "article.yaml", "debian-bookworm", "article.yaml")
    subject = replace(project.subject("4090"), image=spec)
    [alloc] = findings(subject, rule="alloc-conf")
    assert alloc.severity == WARNING and "cudaMallocAsync" in alloc.message and "max_split_size_mb" in alloc.message
    [blocking] = findings(subject, rule="env")
    assert blocking.severity == NOTE and "already the default" in blocking.message
    [recipe] = findings(subject, rule="warmup-recipe")
    assert "cfg=7 (recipe 1)" in recipe.message and "dpmpp_2m_sde_gpu" in recipe.message


def test_unknown_alloc_key_is_an_error(project):
    subject = project.subject("4090")
    image = replace(subject.image, env={"PYTORCH_CUDA_ALLOC_CONF": "max_split_mb:512,expandable_segments:yes"})
    errors = findings(replace(subject, image=image), ERROR, "alloc-conf")
    assert [("max_split_mb" in e.message, "expandable_segments:yes" in e.message) for e in errors] == \
        [(True, False), (False, True)]


def test_strict_turns_warnings_into_errors(project):
    subject = project.subject("4080", "z-image-turbo")
    strict = run_rules(subject, ALL_RULES, strict=True)
    assert [f for f in strict if f.rule == "vram"][0].severity == ERROR


def test_sm89_runs_sm86_code_as_a_note(project):
    [cc] = findings(project.subject("4090"), rule="compute-capability")
    assert cc.severity == NOTE and "sm_86" in cc.message


def test_blackwell_is_refused_with_the_reason(project):
    subject = project.subject("h200")
    blackwell = subject.gpu.model_copy(update={"name": "b200", "display": "NVIDIA B200", "compute_capability": "10.0"})
    [cc] = findings(replace(subject, gpu=blackwell), rule="compute-capability")
    assert cc.severity == ERROR and "sm_100" in cc.message and "no kernel image" in cc.message


def test_xformers_pin_read_from_the_lock_metadata(project):
    subject = project.subject("4090")
    article_stack = subject.lock.stack.model_copy(update={"torch": "2.3.0"})
    [finding] = findings(replace(subject, lock=_with_stack(subject.lock, article_stack)), rule="xformers-torch")
    assert "torch==2.3.1" in finding.message and "2.3.0" in finding.message


def test_wheel_for_another_platform_is_refused(project):
    subject = project.subject("4090")
    packages = dict(subject.lock.packages)
    packages["torch"] = packages["torch"].model_copy(update={"wheel": "torch-2.3.1-cp311-none-macosx_11_0_arm64.whl"})
    [finding] = findings(replace(subject, lock=replace(subject.lock, packages=packages)), rule="wheel-platform")
    assert "macosx" in finding.message


def test_declared_cudnn_must_be_what_torch_carries(project):
    subject = project.subject("4090")
    lock = _with_stack(subject.lock, subject.lock.stack.model_copy(update={"cudnn": "9.1.0.70"}))
    [finding] = findings(replace(subject, lock=lock), rule="cuda-wheels")
    assert "cuDNN 9.1.0.70" in finding.message and "8.9.2.26" in finding.message


def _with_stack(lock, stack):
    return replace(lock, entry=lock.entry.model_copy(update={"stack": stack}))


def test_driver_floor_is_reported(project):
    [driver] = findings(project.subject("4090"), rule="driver")
    assert "525.60.13" in driver.message and "cuda>=12.0" in driver.message


def test_article_clip_warmup_is_refused_with_the_fix(project):
    spec = load_image(FIXTURES / "images" / "article.yaml", "debian-bookworm", "article.yaml")
    [clip] = findings(replace(project.subject("4090"), image=spec), ERROR, "warmup-models")
    assert "node 2 (CLIPLoader) inputs.type" in clip.where and "'stable_diffusion'" in clip.message
    assert "Qwen3-4B" in clip.message and clip.fix == "set inputs.type to 'lumina2'"


def test_warmup_loading_a_file_the_image_lacks_is_an_error(project):
    subject = project.subject("h200", "z-image-turbo")
    workflow = json.loads(json.dumps(subject.image.workflow))
    node = next(k for k, n in workflow.items() if n["class_type"] == "VAELoader")
    workflow[node]["inputs"]["vae_name"] = "sdxl_vae.safetensors"
    [missing] = findings(replace(subject, image=replace(subject.image, workflow=workflow)), ERROR, "warmup-models")
    assert f"node {node} (VAELoader) inputs.vae_name" in missing.where and "ae.safetensors" in missing.fix


def test_a_linked_loader_input_names_no_file(project):
    subject = project.subject("h200", "z-image-turbo")
    workflow = json.loads(json.dumps(subject.image.workflow))
    node = next(k for k, n in workflow.items() if n["class_type"] == "VAELoader")
    workflow[node]["inputs"]["vae_name"] = ["9", 0]
    assert findings(replace(subject, image=replace(subject.image, workflow=workflow)), rule="warmup-models") == []


def test_the_shipped_zimage_warmup_loads_its_models(project):
    assert findings(project.subject("h200", "z-image-turbo"), rule="warmup-models") == []


def test_a_model_fetched_from_a_branch_is_a_warning(project, tmp_path):
    spec = tmp_path / "zi.yaml"
    spec.write_text((project.images_dir / "z-image-turbo.yaml").read_text().replace(
        "revision: 6fc90a3b1b653e935a0d175e260736de25b84df5, path: split_files/vae", "revision: main, path: split_files/vae"))
    (tmp_path / "workflows").symlink_to(project.images_dir / "workflows")
    subject = project.subject("h200", "z-image-turbo")
    assert findings(subject, rule="model-source") == []
    edited = replace(subject, image=load_image(spec, "debian-bookworm", "zi.yaml"))
    [warning] = findings(edited, rule="model-source")
    assert warning.severity == WARNING and "ae.safetensors" in warning.message and "models[2].source.revision" in warning.where


def _with_flags(subject, *flags):
    return replace(subject, image=replace(subject.image, flags=flags))


def test_flags_the_toolkit_sets_twice_given_or_exclusive_are_errors(project):
    subject = project.subject("4090")
    cases = {("--port", "9000"): "--port is set by the toolkit (--listen 0.0.0.0 --port 8188)",
             ("--listen", "0.0.0.0"): "--listen is set by the toolkit",
             ("--highvram", "--highvram"): "--highvram is given twice",
             ("--highvram", "--lowvram"): "--lowvram and --highvram exclude each other in ComfyUI 0.3.18"}
    for flags, message in cases.items():
        [finding] = findings(_with_flags(subject, *flags), rule="flags")
        assert finding.severity == ERROR and message in finding.message, flags
    repeated = ("--extra-model-paths-config", "a.yaml", "--extra-model-paths-config", "b.yaml")  # repeatable
    assert findings(_with_flags(subject, *repeated), rule="flags") == []


def test_a_base_of_another_python_is_refused(project):
    subject = project.subject("4090")
    bases = dict(subject.lock.bases)
    bases[subject.image.base] = bases[subject.image.base].model_copy(update={"python": "3.12"})
    lock = replace(subject.lock, file=subject.lock.file.model_copy(update={"bases": bases}))
    [base] = findings(replace(subject, lock=lock), rule="base")
    assert base.severity == ERROR and "base Python 3.12 differs from the stack's Python 3.11" in base.message
    assert base.where == f"versions.lock [bases.{subject.image.base}]"


def test_an_allocator_fraction_lies_strictly_between_0_and_1(project):
    subject = project.subject("4090")

    def alloc(conf):
        image = replace(subject.image, flags=subject.image.flags + ("--disable-cuda-malloc",),
                        env={"PYTORCH_CUDA_ALLOC_CONF": conf})
        return [f.message for f in findings(replace(subject, image=image), ERROR, "alloc-conf")]

    assert alloc("garbage_collection_threshold:0.6") == []
    for bad in ("0", "1", "1.5", "x"):
        assert alloc(f"garbage_collection_threshold:{bad}") == \
            [f"'garbage_collection_threshold:{bad}' is not a valid fraction value"], bad
