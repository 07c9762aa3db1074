"""Verdict rules fed with measurements: no torch, no GPU needed."""

from __future__ import annotations

import math

import pytest

import payload_env  # noqa: F401  (puts the payload on sys.path)
from smoke import verdict as v
from smoke.verdict import FAIL, PASS, SKIP, WARN, Check

SASS = ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"]


# ------------------------------------------------------------------ versions

@pytest.mark.parametrize("measured, pin, ok", [
    ("2.3.1+cu121", "2.3.1", True),      # local suffix tolerated
    ("2.3.1", "2.3.1+cu121", True),
    ("3.11.7", "3.11", True),            # shorter pin = prefix
    ("3.12.3", "3.11", False),
    ("2.3.10", "2.3.1", False),          # component compare, not string prefix
    ("2.3.0", "2.3.1", False),
    ("2.11.0+cu130", "2.3.1", False),
    ("0.0.27", "0.0.27", True),
    ("0.0.27.post1", "0.0.27", False),   # post release pins another torch
    ("0.0.27.post1", "0.0.27.post1", True),
    ("12.1", "12.1", True),
    ("12.4", "12.1", False),
    ("not-a-version", "2.3.1", False),
])
def test_version_matches(measured, pin, ok):
    assert v.version_matches(measured, pin) is ok


def test_version_verdict_image_vs_host():
    assert v.version_verdict("2.3.1+cu121", "2.3.1", host=False) == (PASS, "matches pin")
    assert v.version_verdict("2.11.0+cu130", "2.3.1", host=False)[0] == FAIL
    assert v.version_verdict("2.11.0+cu130", "2.3.1", host=True)[0] == WARN
    assert v.version_verdict(None, "0.0.27", host=False) == (FAIL, "not installed")
    assert v.version_verdict(None, "0.0.27", host=True) == (WARN, "not installed")


@pytest.mark.parametrize("raw, text", [(8902, "8.9.2"), (8700, "8.7.0"), (90100, "9.1.0"),
                                       (91900, "9.19.0")])
def test_cudnn_version_string(raw, text):
    assert v.cudnn_version_string(raw) == text


def test_cudnn_8902_matches_wheel_pin():
    pin = "8.9.2.26"
    assert v.version_matches(v.cudnn_version_string(8902), v.cudnn_pin_prefix(pin))
    assert not v.version_matches(v.cudnn_version_string(91900), v.cudnn_pin_prefix(pin))


def test_compare_versions():
    assert v.compare_versions("580.159.04", "525.60.13") == 1
    assert v.compare_versions("525.60.13", "525.60.13") == 0
    assert v.compare_versions("525.60", "525.60.0") == 0
    assert v.compare_versions("470.256.02", "525.60.13") == -1


# ------------------------------------------------------------------ driver

@pytest.mark.parametrize("driver, verdict", [
    ("580.159.04", PASS),
    ("530.30.02", PASS),     # exactly recommended
    ("528.02", WARN),        # between floor and recommended
    ("525.60.13", WARN),     # exactly the floor
    ("525.60.12", FAIL),
    ("470.256.02", FAIL),
])
def test_driver_verdict(driver, verdict):
    assert v.driver_verdict(driver, "525.60.13", "530.30.02")[0] == verdict


def test_driver_warn_note_says_compat():
    _, note = v.driver_verdict("528.02", "525.60.13", "530.30.02")
    assert "minor-version compatibility" in note and "530.30.02" in note


# ------------------------------------------------------------------ compute capability

def test_cc_exact_sass():
    assert v.cc_verdict((9, 0), "9.0", SASS) == (PASS, "sm_90 SASS present")


def test_cc_ada_runs_ampere_sass_with_note():
    verdict, note = v.cc_verdict((8, 9), "8.9", SASS)
    assert verdict == PASS
    assert "sm_86" in note and "binary compatible" in note


@pytest.mark.parametrize("cc", [(10, 0), (12, 0)])
def test_cc_newer_than_max_sass_fails(cc):
    verdict, note = v.cc_verdict(cc, "9.0", SASS)
    assert verdict == FAIL
    assert "no kernel image" in note and "sm_90" in note


def test_cc_older_than_min_sass_fails():
    assert v.cc_verdict((3, 7), "3.7", SASS)[0] == FAIL


def test_cc_covered_but_not_profile_warns():
    verdict, note = v.cc_verdict((8, 0), "9.0", SASS)
    assert verdict == WARN and "profile expects 9.0" in note


@pytest.mark.parametrize("text, cc", [("9.0", (9, 0)), ("sm_86", (8, 6)), ("sm_90a", (9, 0)),
                                      ("sm_100", (10, 0)), ("12.0", (12, 0))])
def test_parse_cc(text, cc):
    assert v.parse_cc(text) == cc


# ------------------------------------------------------------------ name, VRAM, PCIe

@pytest.mark.parametrize("name, names, display, verdict", [
    ("NVIDIA H200", ["NVIDIA H200"], "NVIDIA H200", PASS),
    ("nvidia  h200", ["NVIDIA H200"], "NVIDIA H200", PASS),                      # case and spacing aside
    ("NVIDIA H200 NVL", ["NVIDIA H200"], "NVIDIA H200", FAIL),                  # another card of the family
    ("NVIDIA H100 80GB HBM3", ["NVIDIA H200"], "NVIDIA H200", FAIL),
    ("NVIDIA GeForce RTX 4070 Ti SUPER", ["NVIDIA GeForce RTX 4070 Ti"], "NVIDIA GeForce RTX 4070 Ti", FAIL),
    ("NVIDIA GeForce RTX 4090 D", ["NVIDIA GeForce RTX 4090"], "NVIDIA GeForce RTX 4090", FAIL),
    ("NVIDIA A100 80GB PCIe", ["NVIDIA A100-SXM4-80GB"], "NVIDIA A100-SXM4-80GB", FAIL),      # another card
    ("", ["NVIDIA H200"], "NVIDIA H200", FAIL),
])
def test_name_verdict_is_exact(name, names, display, verdict):
    assert v.name_verdict(name, names, display)[0] == verdict


def test_pci_device_id_decides_when_recorded():
    assert v.name_verdict("NVIDIA H200", ["NVIDIA H200"], "NVIDIA H200", 0x233510DE, 0x233510DE)[0] == PASS
    verdict, note = v.name_verdict("NVIDIA H200", ["NVIDIA H200"], "NVIDIA H200", 0x233110DE, 0x233510DE)
    assert verdict == FAIL and "0x233110de" in note


@pytest.mark.parametrize("total_bytes, gb, verdict", [
    (143771 * 2 ** 20, 141, PASS),   # H200 as the driver reports it
    (24564 * 2 ** 20, 24, PASS),     # RTX 4090: 24 GB card, 25.8e9 bytes
    (12282 * 2 ** 20, 12, PASS),     # RTX 4070 Ti
    (11.0e9, 12, FAIL),
    (81559 * 2 ** 20, 141, FAIL),    # an 80 GB H100 is not an H200
])
def test_vram_verdict(total_bytes, gb, verdict):
    assert v.vram_verdict(int(total_bytes), gb)[0] == verdict


def test_vram_slack_boundary():
    floor = v.vram_floor_gb(141)
    assert floor == pytest.approx(141 * 0.93)
    assert v.vram_verdict(int(floor * 1e9) + 1, 141)[0] == PASS
    assert v.vram_verdict(int(floor * 1e9) - 10 ** 6, 141)[0] == FAIL


def test_pcie_as_profiled():
    assert v.pcie_verdict(5, 16, 5, 16, 5, 16) == (PASS, "link as profiled")


def test_pcie_x8_link_warns():
    verdict, note = v.pcie_verdict(5, 8, 5, 16, 5, 16)
    assert verdict == WARN and "x8" in note


def test_pcie_idle_downclock_passes_with_note():
    verdict, note = v.pcie_verdict(1, 16, 5, 16, 5, 16)
    assert verdict == PASS and "idle" in note and "Gen1" in note


def test_pcie_max_gen_below_profile_warns():
    verdict, note = v.pcie_verdict(3, 16, 4, 16, 5, 16)
    assert verdict == WARN and "Gen4" in note


def test_pcie_unknown_is_skip():
    assert v.pcie_verdict(None, None, None, None, 5, 16)[0] == SKIP


# ------------------------------------------------------------------ error bounds

def test_error_bounds_are_ordered():
    bounds = v.ERROR_BOUNDS
    assert bounds["matmul_fp16"] < bounds["matmul_bf16"]
    assert bounds["attention_fp16"] < bounds["attention_bf16"]
    # fp16 unit roundoff is 2^-11 ~ 4.9e-4; bf16 2^-8 ~ 3.9e-3: bounds above, within 10x
    assert 2 ** -11 < bounds["matmul_fp16"] < 10 * 2 ** -11
    assert 2 ** -8 < bounds["matmul_bf16"] < 10 * 2 ** -8


@pytest.mark.parametrize("err, finite, verdict", [
    (2.1e-4, True, PASS),
    (2e-3, True, PASS),          # on the bound
    (2.1e-3, True, FAIL),        # just past it: wrong results, no warning band
    (5e-3, True, FAIL),
    (math.nan, True, FAIL),
    (math.inf, True, FAIL),
    (1e-5, False, FAIL),         # small error but inf somewhere
])
def test_error_verdict(err, finite, verdict):
    assert v.error_verdict(err, v.ERROR_BOUNDS["matmul_fp16"], finite)[0] == verdict


# ------------------------------------------------------------------ probes

@pytest.mark.parametrize("share, verdict", [(1.0, PASS), (0.91, PASS), (0.89, WARN), (0.71, WARN), (0.69, FAIL),
                                            (0.5, FAIL)])
def test_probe_against_a_measured_ceiling(share, verdict):
    """Ceiling limits from thresholds.json: warn under 90 %, fail under 70 %."""
    assert v.probe_verdict(share * 4300, 4800, 4300, "copy")[0] == verdict


def test_a_half_speed_card_fails_against_its_profile():
    """A profile claiming twice what the card does: every ceiling-judged probe fails."""
    verdict, note = v.probe_verdict(4273.9, 2 * 4800, 2 * 4300, "copy")
    assert verdict == FAIL and "50% of measured ceiling" in note
    assert v.probe_verdict(690.0, 2 * 989, 2 * 690, "matmul")[0] == FAIL


@pytest.mark.parametrize("kind, share, verdict", [
    ("copy", 0.89, PASS), ("copy", 0.70, WARN), ("copy", 0.445, FAIL),      # half of the H200's 0.89: fails
    ("matmul", 0.62, PASS), ("matmul", 0.45, WARN), ("matmul", 0.31, FAIL),  # half of 0.62: fails
    ("attention", 0.63, PASS), ("attention", 0.15, WARN), ("attention", 0.05, FAIL),
])
def test_probe_against_the_spec_sheet_only(kind, share, verdict):
    assert v.probe_verdict(share * 1000, 1000, None, kind)[0] == verdict


def test_spec_only_matmul_cannot_catch_every_half_speed_card():
    """Said in thresholds.json: a half-speed card that is healthy at 0.9 of its sheet sits at 0.45 and
    only warns; measured ceilings are what fail it."""
    assert v.probe_verdict(0.45 * 1000, 1000, None, "matmul")[0] == WARN
    assert v.probe_verdict(0.45 * 1000, 1000, 0.9 * 1000, "matmul")[0] == FAIL


def test_copy_near_ceiling_passes():
    verdict, note = v.probe_verdict(4272.8, 4800, 4300, "copy")
    assert verdict == PASS
    assert "89% of spec" in note and "99% of measured ceiling" in note


def test_thresholds_are_data_with_their_source():
    for key in ("perf", "numerics", "vram_slack", "xformers_slowdown_warn"):
        assert len(v.THRESHOLDS[key]["source"]) > 40
    for limits in (v.PERF["ceiling"], *v.PERF["spec"].values()):
        assert 0 < limits["fail_below"] < limits["warn_below"] <= 1


def test_probe_expected_names_both_limits():
    assert v.probe_expected(4800, 4300, "copy") == ">= 3870 (fail < 3010)"
    assert v.probe_expected(1000, None, "matmul") == ">= 500 (fail < 350)"


@pytest.mark.parametrize("bad", [0, -1, math.nan, None])
def test_probe_without_number_fails(bad):
    assert v.probe_verdict(bad, 4800, None, "copy")[0] == FAIL


def test_speed_ratio():
    assert v.speed_ratio_verdict(1.0, 1.0)[0] == PASS
    assert v.speed_ratio_verdict(1.4, 1.0)[0] == PASS
    verdict, note = v.speed_ratio_verdict(2.0, 1.0)
    assert verdict == WARN and "--disable-xformers" in note
    assert v.speed_ratio_verdict(0, 1.0)[0] == FAIL


# ------------------------------------------------------------------ suite

def _checks():
    return [
        Check(PASS, group="versions", name="python"),
        Check(SKIP, group="gpu", name="visible", note="no GPU", needs_gpu=True),
        Check(SKIP, group="comfyui", name="system_stats", note="no --comfyui-url given"),
        Check(WARN, group="versions", name="torch"),
    ]


def test_require_gpu_turns_gpu_skips_into_fail():
    out = v.apply_require_gpu(_checks(), require=True)
    assert [c.verdict for c in out] == [PASS, FAIL, SKIP, WARN]
    assert out[1].note == "GPU required: no GPU"
    assert v.exit_code(out) == 1


def test_without_require_gpu_skips_stay():
    out = v.apply_require_gpu(_checks(), require=False)
    assert [c.verdict for c in out] == [PASS, SKIP, SKIP, WARN]
    assert v.exit_code(out) == 0


def test_summarize_counts():
    summary = v.summarize(_checks(), 1.234)
    assert summary == {"pass": 1, "warn": 1, "fail": 0, "skip": 2, "seconds": 1.23}


def test_check_json_has_schema_fields_only():
    row = Check(PASS, measured=1.5, expected=">= 1", unit="GB", note="n", group="g",
                name="x", seconds=0.12345, needs_gpu=True).to_json()
    assert row == {"group": "g", "name": "x", "verdict": "pass", "measured": 1.5,
                   "expected": ">= 1", "unit": "GB", "note": "n", "seconds": 0.123}
