"""The start-time GPU preflight's decision, fed with check results."""

from smoke.preflight import decide
from smoke.verdict import FAIL, PASS, SKIP, WARN, Check


def _checks(**verdicts):
    return [Check(v, measured="m", expected="e", note="n", group="gpu", name=k) for k, v in verdicts.items()]


def test_no_gpu_refuses_to_start_and_says_how():
    code, lines = decide(_checks(visible=SKIP), cpu_mode=False, strict=False)
    assert code == 1 and "--gpus all" in lines[0] and "KILN_CPU_MODE=1" in lines[0]


def test_cpu_mode_is_explicit():
    code, lines = decide([], cpu_mode=True, strict=False)
    assert code == 0 and "CPU" in lines[0]


def test_other_card_warns_unless_strict():
    checks = _checks(visible=PASS, name=WARN, compute_capability=PASS, vram=PASS, driver=PASS)
    assert decide(checks, cpu_mode=False, strict=False)[0] == 0
    assert decide(checks, cpu_mode=False, strict=True)[0] == 1


def test_uncovered_capability_or_small_vram_refuses():
    for bad in ("compute_capability", "vram", "driver"):
        checks = _checks(visible=PASS, **{bad: FAIL})
        code, lines = decide(checks, cpu_mode=False, strict=False)
        assert code == 1 and any(f"gpu.{bad}" in line for line in lines)


def test_pcie_is_advisory_even_when_strict():
    checks = _checks(visible=PASS, pcie=WARN)
    assert decide(checks, cpu_mode=False, strict=True)[0] == 0


def test_a_card_that_does_not_fit_the_profile_is_a_warning_unless_strict():
    checks = _checks(visible=PASS, name=FAIL, compute_capability=WARN, vram=PASS, driver=PASS)
    code, lines = decide(checks, cpu_mode=False, strict=False)
    assert code == 0 and lines[0].startswith("warning: gpu.name")
    code, lines = decide(checks, cpu_mode=False, strict=True)
    assert code == 1 and lines[0].startswith("error: gpu.name")
