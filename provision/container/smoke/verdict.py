"""Pure verdict logic: measurements in, (verdict, note) out.

Nothing here imports torch, numpy or NVML, so every rule can be unit-tested
on a machine without a GPU.
"""

from __future__ import annotations

import dataclasses
import math
import re
from typing import Any, Iterable, Optional, Sequence, Tuple

from packaging.version import InvalidVersion, Version

PASS, WARN, FAIL, SKIP = "pass", "warn", "fail", "skip"
VERDICTS = (PASS, WARN, FAIL, SKIP)

# VRAM: marketing GB vs GiB, plus memory the driver and ECC keep back.
VRAM_SLACK = 0.07
# Probes: warn below this share of the spec sheet figure ...
SPEC_WARN_FRACTION = 0.70
# ... or below this share of the card's measured practical ceiling.
CEILING_WARN_FRACTION = 0.80
# Attention kernels reach well under the matmul peak (FlashAttention-2 class
# kernels manage 35-45 % of dense peak on Hopper); under this share of the
# spec peak the backend most likely fell back to the unfused math path.
ATTENTION_WARN_FRACTION = 0.20
# xformers slower than SDPA by more than this factor is worth a warning.
XFORMERS_SLOWDOWN_WARN = 1.5

# Relative Frobenius error bounds against a float64 reference computed from
# the same (already rounded) inputs. Output rounding dominates: unit roundoff
# is 2^-11 for fp16 and 2^-8 for bf16; the bounds leave ~5x headroom.
ERROR_BOUNDS = {
    "matmul_fp16": 2e-3,
    "matmul_bf16": 1.6e-2,
    "attention_fp16": 4e-3,
    "attention_bf16": 3e-2,
    "attention_fp32": 1e-4,
    "mlp_fp32": 1e-4,
}
# Between bound and this multiple of it: warn; beyond: fail.
ERROR_WARN_FACTOR = 4.0


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


def name_verdict(name: str, aliases: Sequence[str], display: str) -> Tuple[str, str]:
    low = name.lower()
    for alias in aliases:
        if alias and alias.lower() in low:
            return PASS, f"matches profile {display}"
    return FAIL, f"not a {display}: profile (VRAM, bandwidth, TFLOPS) does not fit this card"


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
    if rel_err <= bound * ERROR_WARN_FACTOR:
        return WARN, f"rel. error {rel_err:.2e} above {bound:.1e}"
    return FAIL, f"rel. error {rel_err:.2e} > {ERROR_WARN_FACTOR:g}x bound {bound:.1e}: wrong results"


# --------------------------------------------------------------- perf

def probe_verdict(measured: float, spec: float, ceiling: Optional[float] = None,
                  spec_fraction: float = SPEC_WARN_FRACTION,
                  ceiling_fraction: float = CEILING_WARN_FRACTION) -> Tuple[str, str]:
    """Throughput probe (same unit for all three figures).

    Without a measured ceiling the spec sheet is the reference: warn under
    `spec_fraction` of it. With one, the ceiling is what a healthy card of
    this model really reaches, so it decides (warn under `ceiling_fraction`
    of it) and the share of the spec figure is reported beside it: for the
    H200 the practical bf16 matmul ceiling is itself under 80 % of spec.
    """
    if measured is None or not math.isfinite(measured) or measured <= 0:
        return FAIL, "probe produced no usable number"
    parts = [f"{measured / spec:.0%} of spec {spec:g}"]
    if ceiling:
        parts.append(f"{measured / ceiling:.0%} of measured ceiling {ceiling:g}")
        ok = measured >= ceiling * ceiling_fraction
    else:
        ok = measured >= spec * spec_fraction
    if not ok:
        parts.append("below expected: throttled, shared or misconfigured GPU?")
    return (PASS if ok else WARN), "; ".join(parts)


def probe_expected(spec: float, ceiling: Optional[float],
                   spec_fraction: float = SPEC_WARN_FRACTION,
                   ceiling_fraction: float = CEILING_WARN_FRACTION) -> str:
    floor = ceiling * ceiling_fraction if ceiling else spec * spec_fraction
    return f">= {floor:.0f}"


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
