import re

import pytest
import yaml

from kiln.errors import KilnError
from kiln.data.gpus import find_gpu, load_gpus

REQUIRED = ["4090", "4080", "4070ti", "4070ti-super", "3090", "l4", "l40s", "a100-40", "a100-80", "h100", "h800",
            "h200"]


@pytest.fixture
def profiles(project):
    return load_gpus(project.gpus_path)


def test_every_required_profile_exists(profiles):
    assert set(REQUIRED) <= set(profiles)


@pytest.mark.parametrize("spelling", ["4090", "rtx4090", "RTX 4090", "NVIDIA GeForce RTX 4090", "rtx-4090"])
def test_common_spellings_find_the_4090(profiles, spelling):
    assert find_gpu(profiles, spelling).name == "4090"


@pytest.mark.parametrize("spelling, name", [("RTX 4070 Ti", "4070ti"), ("4070 Ti SUPER", "4070ti-super"),
                                            ("A100 80GB", "a100-80"), ("NVIDIA H200", "h200"), ("L40S", "l40s"),
                                            ("RTX 5090", "5090"), ("RTX PRO 6000", "rtx-pro-6000"),
                                            ("NVIDIA RTX PRO 6000 Blackwell Workstation Edition", "rtx-pro-6000"),
                                            ("NVIDIA B200", "b200")])
def test_spellings_do_not_cross_cards(profiles, spelling, name):
    assert find_gpu(profiles, spelling).name == name


def test_unknown_gpu_lists_valid_names(profiles):
    with pytest.raises(KilnError) as err:
        find_gpu(profiles, "rtx 6090")
    assert "unknown GPU 'rtx 6090'" in err.value.line()
    assert "4090" in err.value.fix and "h200" in err.value.fix


def test_facts_the_article_gets_wrong(profiles):
    ti, ti_super = profiles["4070ti"], profiles["4070ti-super"]
    assert (ti.vram_gb, ti.bandwidth_gbs) == (12, 504)
    assert (ti_super.vram_gb, ti_super.bandwidth_gbs) == (16, 672)


def test_serving_defaults_are_merged(profiles):
    assert profiles["4090"].serving.vram_mode == "--highvram"
    assert profiles["4070ti"].serving.vram_mode == "--normalvram"
    assert profiles["4070ti"].serving.reserve_vram_gb == 0.5


def _with_latency(project, tmp_path, serving: str):
    """gpus.yaml with the 4090's serving block replaced (comments are not needed for loading)."""
    data = yaml.safe_load(project.gpus_path.read_text())
    data["profiles"]["4090"]["serving"] = yaml.safe_load(serving)
    path = tmp_path / "gpus.yaml"
    path.write_text(yaml.safe_dump(data, sort_keys=False))
    return path


def test_an_expected_latency_needs_its_source_and_confidence(project, tmp_path):
    with pytest.raises(KilnError) as err:
        load_gpus(_with_latency(project, tmp_path, "{expected_latency: {z-image-turbo: {seconds: 0.9}}}"))
    assert "missing key" in err.value.line() and "expected_latency.z-image-turbo" in err.value.line()
    assert "gpus.yaml" in err.value.line()
    with pytest.raises(KilnError):
        load_gpus(_with_latency(project, tmp_path, "{expected_latency: {z-image-turbo: {seconds: 0.9, source: x, "
                                                   "confidence: guessed}}}"))


def test_an_expected_latency_reaches_the_facts_of_its_image_only(project, tmp_path):
    from dataclasses import replace
    from kiln.render.facts import image_facts
    profiles = load_gpus(_with_latency(project, tmp_path, "{expected_latency: {z-image-turbo: {seconds: 0.9, source: "
                                                          "H200 runs, confidence: estimated}}}"))
    assert profiles["4090"].serving.resolution == 1024     # the defaults still merge in
    subject = replace(project.subject("4090", "z-image-turbo"), gpu=profiles["4090"])
    facts = image_facts(subject).to_json()["profile"]
    assert (facts["expected_latency_s"], facts["expected_latency_source"], facts["expected_latency_confidence"]) == (
        0.9, "H200 runs", "estimated")
    other = replace(project.subject("4090", "comfyui"), gpu=profiles["4090"])
    assert "expected_latency_s" not in image_facts(other).to_json()["profile"]


ESTIMATE = re.compile(r"\(([\d.]+) s x ([\d.]+) / ([\d.]+) \+ ([\d.]+) s\)")


def _passes(project, gpu, image):
    """The gate passes on the image's own stack, or (cards its torch has no kernels for) on the one it names."""
    errors = [f for f in project.check(gpu, image)[1] if f.severity == "error"]
    if [f.rule for f in errors] == ["compute-capability"]:
        errors = [f for f in project.check(gpu, image, stack="cuda13")[1] if f.severity == "error"]
    return not errors


def test_z_image_expectations_cover_every_resident_profile_and_estimates_follow_their_formula(project, profiles):
    """H200: measured (bench/zimage_latency.py). Every other profile the gate lets hold all models resident
    (not --normalvram): estimated by the formula its source states, with this profile's own tflops_fp16."""
    resident = {name for name, p in profiles.items()
                if p.serving.vram_mode != "--normalvram" and _passes(project, name, "z-image-turbo")}
    having = {name for name, p in profiles.items() if "z-image-turbo" in p.serving.expected_latency}
    assert having == resident and "h200" in having
    for name in having:
        expected = profiles[name].serving.expected_latency["z-image-turbo"]
        assert "docs/performance.md" in expected.source, name
        if name == "h200":
            assert expected.confidence == "measured"
            continue
        assert expected.confidence == "estimated", name
        gpu_s, reference, tflops, cpu_s = map(float, ESTIMATE.search(expected.source).groups())
        assert tflops == profiles[name].tflops_fp16 and reference == profiles["h200"].tflops_fp16, name
        assert expected.seconds == round(gpu_s * reference / tflops + cpu_s, 2), name


def test_stack_expectations_follow_their_formula_and_reach_the_subject_of_that_stack(project, profiles):
    """The cuda13 stack's H200 figure is measured; the other Hopper cards' are estimated from it by the formula
    their source states; a subject built from the zimage stack keeps the profile's own figure."""
    stacked = {name: p.serving_stacks["cuda13"].expected_latency["z-image-turbo"] for name, p in profiles.items()
               if "cuda13" in p.serving_stacks}
    assert {"h100", "h800", "h200"} <= set(stacked) and stacked["h200"].confidence == "measured"
    for name, expected in stacked.items():
        if name != "h200":
            gpu_s, reference, tflops, cpu_s = map(float, ESTIMATE.search(expected.source).groups())
            assert (expected.confidence, tflops) == ("estimated", profiles[name].tflops_fp16), name
            assert expected.seconds == round(gpu_s * reference / tflops + cpu_s, 2), name
    on_cuda13 = project.subject("h200", "z-image-turbo", "cuda13").gpu.serving
    on_zimage = project.subject("h200", "z-image-turbo", "zimage").gpu.serving
    assert on_cuda13.expected_latency["z-image-turbo"].seconds == stacked["h200"].seconds == 1.2
    assert on_zimage.expected_latency["z-image-turbo"].seconds == profiles["h200"].serving.expected_latency[
        "z-image-turbo"].seconds == 1.34
    assert on_cuda13.vram_mode == on_zimage.vram_mode == "--gpu-only"   # what the stack does not name stays


def test_a_serving_stack_not_in_the_lock_is_one_line_naming_where(project_copy):
    from tests.conftest import invoke
    path = project_copy / "gpus.yaml"
    path.write_text(path.read_text().replace("      stacks:\n        cuda13:", "      stacks:\n        cuda-13:", 1))
    result = invoke("check", "--gpu", "h200", "--image", "z-image-turbo", root=project_copy)
    assert result.returncode == 2 and result.stdout == ""
    line = result.stderr.strip()
    assert "\n" not in line and "unknown stack 'cuda-13'" in line and "profiles.h100.serving.stacks" in line
    assert "use one of the lock's [stacks]: card, zimage, cuda13" in line




def _edited_gpus(project, tmp_path, old, new):
    path = tmp_path / "gpus.yaml"
    text = project.gpus_path.read_text()
    assert old in text
    path.write_text(text.replace(old, new, 1))
    return path


def test_a_profile_written_twice_is_refused(project, tmp_path):
    path = _edited_gpus(project, tmp_path, '  "4080":', '  "4090":')
    with pytest.raises(KilnError, match="key '4090' is written twice"):
        load_gpus(path)


def test_a_spelling_shared_by_two_profiles_is_refused(project, tmp_path):
    path = _edited_gpus(project, tmp_path, "aliases: [rtx4090, geforce-rtx-4090]", "aliases: [rtx4090, rtx4080]")
    with pytest.raises(KilnError, match="the spelling '4080' names both profiles 4080 and 4090|the spelling '4080' "
                                        "names both profiles 4090 and 4080"):
        load_gpus(path)


def test_a_stack_changes_only_the_images_it_names(project, tmp_path):
    """A stack's figure for one image leaves the profile's figure for another image in place."""
    serving = ("{expected_latency: {z-image-turbo: {seconds: 2.0, source: a, confidence: estimated}, "
               "comfyui: {seconds: 3.0, source: b, confidence: estimated}}, stacks: {cuda13: {expected_latency: "
               "{z-image-turbo: {seconds: 1.5, source: c, confidence: measured}}, reserve_vram_gb: 1.5}}}")
    profile = load_gpus(_with_latency(project, tmp_path, serving))["4090"]
    on = profile.on_stack("cuda13").serving
    assert {k: v.seconds for k, v in on.expected_latency.items()} == {"z-image-turbo": 1.5, "comfyui": 3.0}
    assert on.reserve_vram_gb == 1.5 and on.vram_mode == profile.serving.vram_mode == "--highvram"
    assert profile.on_stack("zimage") is profile
