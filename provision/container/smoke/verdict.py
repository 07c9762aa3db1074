"""Pure verdict logic: measurements in, (verdict, note) out.

Nothing here imports torch, numpy or NVML, so every rule can be unit-tested
on a machine without a GPU.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
from pathlib import Path
from typing import Any, Iterable, Optional, Sequence, Tuple

from packaging.version import InvalidVersion, Version

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
VERDICTS = (PASS, WARN, FAIL, SKIP)

THRESHOLDS = json.loads((Path(__file__).parent / "thresholds.json").read_text(encoding="utf-8"))
PERF = THRESHOLDS["perf"]
VRAM_SLACK = THRESHOLDS["vram_slack"]["value"]
XFORMERS_SLOWDOWN_WARN = THRESHOLDS["xformers_slowdown_warn"]["value"]
ERROR_BOUNDS = THRESHOLDS["numerics"]["bounds"]
LATENCY = THRESHOLDS["workflow_latency"]


@dataclasses.dataclass
class Check:
    """One row of the report."""

    verdict: str
    measured: Any = None
    expected: Any = None
    unit: str = ""
    note: str = ""
    group: str = ""
    name: str = ""
    seconds: float = 0.0
    # Internal: this skip happened only because no GPU was usable.
    needs_gpu: bool = False

    def to_json(self) -> dict:
        return {
            "group": self.group,
            "name": self.name,
            "verdict": self.verdict,
            "measured": self.measured,
            "expected": self.expected,
            "unit": self.unit,
            "note": self.note,
            "seconds": round(self.seconds, 3),
        }


def skip(note: str, expected: Any = None, needs_gpu: bool = False) -> Check:
    return Check(SKIP, expected=expected, note=note, needs_gpu=needs_gpu)


# --------------------------------------------------------------- versions

def parse_version(text: str) -> Version:
    """A version as packaging reads it ('2.3.1+cu121', '0.0.27.post1', '580.159.04')."""
    return Version(str(text).strip())


def version_matches(measured: str, pin: str) -> bool:
    """True when `measured` is the pinned release.

    The pin may be shorter than the measured version ('3.11' matches
    '3.11.7'); local suffixes ('+cu121') are ignored on both sides; a
    pre/post/dev suffix must be equal ('0.0.27.post1' is not '0.0.27').
    """
    try:
        m, p = parse_version(measured), parse_version(pin)
    except InvalidVersion:
        return False
    if m.release[: len(p.release)] != p.release:
        return False
    p_suffix = (p.pre, p.post, p.dev)
    if len(m.release) > len(p.release) and p_suffix != (None, None, None):
        return False
    return (m.pre, m.post, m.dev) == p_suffix


def version_verdict(measured: Optional[str], pin: str, host: bool) -> Tuple[str, str]:
    """Verdict of one component's version against its pin."""
    miss = WARN if host else FAIL
    if measured is None:
        return miss, "not installed"
    if version_matches(measured, pin):
        return PASS, "matches pin"
    where = "host differs from image pin" if host else "does not match pin"
    return miss, where


def cudnn_version_string(value: int) -> str:
    """torch.backends.cudnn.version(): 8902 -> '8.9.2'; 90100 -> '9.1.0'."""
    value = int(value)
    if value >= 10000:  # cuDNN 9+: MAJOR*10000 + MINOR*100 + PATCH
        return f"{value // 10000}.{value % 10000 // 100}.{value % 100}"
    return f"{value // 1000}.{value % 1000 // 100}.{value % 100}"


def cudnn_pin_prefix(pin: str) -> str:
    """cuDNN reports three components; the wheel pin has four."""
    return ".".join(str(pin).split(".")[:3])


def compare_versions(a: str, b: str) -> int:
    """Numeric compare of dotted versions: -1, 0 or 1 (missing parts are 0)."""
    ra, rb = Version(parse_version(a).base_version), Version(parse_version(b).base_version)
    return (ra > rb) - (ra < rb)


# --------------------------------------------------------------- gpu

def driver_verdict(driver: str, floor: str, recommended: str) -> Tuple[str, str]:
    if compare_versions(driver, floor) < 0:
        return FAIL, f"below {floor}: CUDA runtime of the image will not start"
    if compare_versions(driver, recommended) < 0:
        return WARN, f"runs via CUDA minor-version compatibility; {recommended}+ recommended"
    return PASS, "driver new enough"


def _spelled(name: str) -> str:
    return " ".join(str(name).lower().split())


def name_verdict(name: str, names: Sequence[str], display: str, device_id: Optional[int] = None,
                 want_id: Optional[int] = None) -> Tuple[str, str]:
    """Exact identity: the product name NVML reports is one of the profile's names (case and spacing
    aside), and the PCI device id matches when the profile records one. An RTX 4070 Ti SUPER is not a
    4070 Ti, an RTX 4090 D is not a 4090."""
    if want_id is not None and device_id is not None and device_id != want_id:
        return FAIL, f"PCI device {device_id:#010x}, profile {display} is {want_id:#010x}: a different card"
    if _spelled(name) in {_spelled(n) for n in names}:
        how = " and PCI device id" if want_id is not None and device_id is not None else ""
        return PASS, f"is the profile's card by name{how}"
    return FAIL, f"not a {display}: the profile (VRAM, bandwidth, TFLOPS) describes another card"


def parse_cc(text: str) -> Tuple[int, int]:
    """'9.0' -> (9, 0); 'sm_86' -> (8, 6); 'sm_90a' -> (9, 0)."""
    text = str(text).strip().lower()
    if text.startswith(("sm_", "compute_")):
        digits = re.sub(r"\D", "", text.split("_", 1)[1])
        return int(digits[:-1]), int(digits[-1])
    major, _, minor = text.partition(".")
    return int(major), int(minor or 0)


def cc_text(cc: Tuple[int, int]) -> str:
    return f"{cc[0]}.{cc[1]}"


def sass_coverage(cc: Tuple[int, int], sass: Iterable[str]) -> Tuple[str, str]:
    """Can code built for `sass` (no PTX) run on a device of capability `cc`?"""
    archs = sorted({parse_cc(a) for a in sass})
    if not archs:
        return FAIL, "expect file lists no SASS targets"
    if cc in archs:
        return PASS, f"sm_{cc[0]}{cc[1]} SASS present"
    same_major = [a for a in archs if a[0] == cc[0] and a[1] <= cc[1]]
    if same_major:
        best = same_major[-1]
        return PASS, f"runs sm_{best[0]}{best[1]} SASS (binary compatible within a major version)"
    top = archs[-1]
    if cc > top:
        return FAIL, f"newer than sm_{top[0]}{top[1]}, the newest SASS in torch, and no PTX: no kernel image"
    return FAIL, f"no SASS for sm_{cc[0]}{cc[1]} and no PTX: no kernel image"


def cc_verdict(cc: Tuple[int, int], profile_cc: str, sass: Iterable[str]) -> Tuple[str, str]:
    verdict, note = sass_coverage(cc, sass)
    if verdict != PASS:
        return verdict, note
    want = parse_cc(profile_cc)
    if cc != want:
        return WARN, f"{note}; profile expects {cc_text(want)}"
    return PASS, note


def vram_floor_gb(vram_gb: float) -> float:
    return float(vram_gb) * (1.0 - VRAM_SLACK)


def vram_verdict(total_bytes: int, vram_gb: float) -> Tuple[str, str]:
    have = total_bytes / 1e9
    floor = vram_floor_gb(vram_gb)
    if have >= floor:
        return PASS, f"{have:.1f} GB >= {floor:.1f} GB ({vram_gb} GB less {VRAM_SLACK:.0%} slack)"
    return FAIL, f"{have:.1f} GB < {floor:.1f} GB: smaller card than the profile"


def pcie_verdict(cur_gen: Optional[int], cur_width: Optional[int],
                 max_gen: Optional[int], max_width: Optional[int],
                 want_gen: int, want_width: int) -> Tuple[str, str]:
    """Link check. Idle GPUs drop the link generation to save power, so the
    generation verdict uses the maximum; the width is taken as negotiated."""
    width = cur_width if cur_width is not None else max_width
    if width is None and cur_gen is None and max_gen is None:
        return SKIP, "PCIe link not reported"
    notes, verdict = [], PASS
    if width is not None and width < want_width:
        verdict = WARN
        notes.append(f"x{width} link, profile x{want_width}: host<->GPU copies slower")
    gen_top = max_gen if max_gen is not None else cur_gen
    if gen_top is not None and gen_top < want_gen:
        verdict = WARN
        notes.append(f"link Gen{gen_top} at most, profile Gen{want_gen}")
    elif cur_gen is not None and max_gen is not None and cur_gen < max_gen:
        notes.append(f"Gen{cur_gen} now, Gen{max_gen} max (idle link downclocks)")
    return verdict, "; ".join(notes) or "link as profiled"


# --------------------------------------------------------------- numerics

def error_verdict(rel_err: float, bound: float, finite: bool = True) -> Tuple[str, str]:
    if not finite or rel_err is None or not math.isfinite(rel_err):
        return FAIL, "NaN or inf in the result"
    if rel_err <= bound:
        return PASS, f"rel. error {rel_err:.2e} <= {bound:.1e}"
    return FAIL, f"rel. error {rel_err:.2e} > bound {bound:.1e}: wrong results"


# --------------------------------------------------------------- perf

def probe_verdict(measured: float, spec: float, ceiling: Optional[float], kind: str) -> Tuple[str, str]:
    """Throughput probe (same unit for all three figures); kind: copy, matmul or attention.

    With a measured ceiling (what this probe reaches on a healthy card of the model) the ceiling
    decides; without one the spec sheet does, with that kind's wider limits. Limits: thresholds.json.
    """
    if measured is None or not math.isfinite(measured) or measured <= 0:
        return FAIL, "probe produced no usable number"
    limits = PERF["ceiling"] if ceiling else PERF["spec"][kind]
    reference = ceiling or spec
    parts = [f"{measured / spec:.0%} of spec {spec:g}"]
    if ceiling:
        parts.append(f"{measured / ceiling:.0%} of measured ceiling {ceiling:g}")
    share = measured / reference
    if share < limits["fail_below"]:
        return FAIL, "; ".join(parts + [f"under {limits['fail_below']:.0%}: a slower card than the profile, "
                                        "throttled or shared"])
    if share < limits["warn_below"]:
        return WARN, "; ".join(parts + [f"under {limits['warn_below']:.0%}: slower than a healthy card"])
    return PASS, "; ".join(parts)


def probe_expected(spec: float, ceiling: Optional[float], kind: str) -> str:
    limits = PERF["ceiling"] if ceiling else PERF["spec"][kind]
    reference = ceiling or spec
    return f">= {reference * limits['warn_below']:.0f} (fail < {reference * limits['fail_below']:.0f})"


def speed_ratio_verdict(candidate_ms: float, baseline_ms: float,
                        limit: float = XFORMERS_SLOWDOWN_WARN) -> Tuple[str, str]:
    """xformers time against SDPA time on the same inputs."""
    if not candidate_ms or not baseline_ms or candidate_ms <= 0 or baseline_ms <= 0:
        return FAIL, "timing produced no usable number"
    ratio = baseline_ms / candidate_ms
    note = f"xformers {candidate_ms:.3f} ms vs SDPA {baseline_ms:.3f} ms"
    if candidate_ms > baseline_ms * limit:
        return WARN, note + ": xformers much slower; consider --disable-xformers"
    return PASS, note if ratio >= 1 else note + " (within tolerance)"


# --------------------------------------------------------------- workflow

def png_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) from a PNG's IHDR chunk, None when the bytes are not a PNG."""
    if len(data) < 24 or data[:8] != b"\x89PNG\r\n\x1a\n" or data[12:16] != b"IHDR":
        return None
    return int.from_bytes(data[16:20], "big"), int.from_bytes(data[20:24], "big")


def image_size(data: bytes) -> Optional[Tuple[int, int]]:
    """(width, height) of a PNG, or of a JPEG or WebP (kiln's output node) through Pillow, which every image
    has as a ComfyUI requirement; None when the bytes are no picture."""
    size = png_size(data)
    if size is not None:
        return size
    try:
        import io

        from PIL import Image
        with Image.open(io.BytesIO(data)) as picture:
            return picture.size
    except (ImportError, OSError):
        return None


def p50(values: Sequence[float]) -> float:
    ordered = sorted(values)
    mid = len(ordered) // 2
    return ordered[mid] if len(ordered) % 2 else (ordered[mid - 1] + ordered[mid]) / 2


def latency_budget(expected_s: float, slack: float = LATENCY["slack"]) -> float:
    return expected_s * (1.0 + slack)


def latency_verdict(p50_s: float, expected_s: Optional[float], has_gpu: bool, gpu_reason: str = "",
                    profile: str = "", slack: float = LATENCY["slack"], confidence: str = "measured") -> Tuple[str, str]:
    """Steady p50 of the workflow against the profile's expected latency plus the slack: over a measured
    expectation fails; over an estimated one (scaled from another card) warns, since the estimate may be
    what is wrong. Without a GPU, or without an expectation, there is nothing to judge (skip, saying why)."""
    if not has_gpu:
        return SKIP, f"no GPU ({gpu_reason or 'none visible'}): CPU latency is not judged"
    if expected_s is None:
        return SKIP, (f"no expected latency for this image on profile {profile or '?'} (gpus.yaml "
                      f"serving.expected_latency): "
                      f"steady p50 {p50_s:.3f} s not judged")
    if p50_s is None or not math.isfinite(p50_s) or p50_s <= 0:
        return FAIL, "timing produced no usable number"
    budget = latency_budget(expected_s, slack)
    share = f"steady p50 {p50_s:.3f} s = {p50_s / expected_s:.0%} of the expected {expected_s:g} s"
    if p50_s > budget:
        over = f"{share}: over the budget {budget:.3f} s (+{slack:.0%} slack)"
        return (FAIL, over) if confidence == "measured" else (WARN, over + "; the expectation is estimated")
    return PASS, f"{share}; budget {budget:.3f} s (+{slack:.0%} slack)"


# --------------------------------------------------------------- suite

def apply_require_gpu(checks: Iterable[Check], require: bool) -> list:
    """With --require-gpu, skips that happened for lack of a GPU are failures."""
    out = []
    for check in checks:
        if require and check.verdict == SKIP and check.needs_gpu:
            check = dataclasses.replace(check, verdict=FAIL, note=f"GPU required: {check.note}")
        out.append(check)
    return out


def summarize(checks: Iterable[Check], seconds: float) -> dict:
    counts = {v: 0 for v in VERDICTS}
    for check in checks:
        counts[check.verdict] += 1
    counts["seconds"] = round(seconds, 2)
    return counts


def exit_code(checks: Iterable[Check]) -> int:
    return 1 if any(c.verdict == FAIL for c in checks) else 0
