"""Is the GPU there, is it the profiled card, and can this torch run on it?"""

from __future__ import annotations

from typing import Optional, Tuple

from .context import Context
from .deps import one_line
from .verdict import (Check, FAIL, PASS, SKIP, cc_text, cc_verdict, driver_verdict,
                      name_verdict, parse_cc, pcie_verdict, skip, vram_floor_gb, vram_verdict)

GROUP = "gpu"


def _no_gpu(ctx: Context, expected=None) -> Check:
    return skip(ctx.gpu_reason() or "no GPU", expected=expected, needs_gpu=True)


def check_visible(ctx: Context) -> Check:
    view = ctx.driver()
    torch_count = ctx.torch.cuda.device_count() if ctx.has_gpu() else 0
    driver_count = "?" if view.count is None else view.count
    measured = f"torch {torch_count}, {view.source or 'driver'} {driver_count}"
    if ctx.has_gpu():
        extra = "" if view.ok else f"; driver view unavailable: {view.error}"
        return Check(PASS, measured=measured, expected=">= 1", note=f"torch sees {torch_count} GPU(s){extra}")
    if view.count and ctx.torch is not None:
        note = f"driver sees {view.count} GPU(s) but torch cannot use them: {ctx.gpu_reason()}"
        return Check(FAIL, measured=measured, expected=">= 1", note=note)
    return _no_gpu(ctx, ">= 1")


def _device_name(ctx: Context) -> Optional[str]:
    if ctx.has_gpu():
        return ctx.torch.cuda.get_device_name(0)
    return ctx.driver().name


def check_name(ctx: Context) -> Check:
    profile = ctx.profile
    name = _device_name(ctx)
    if not name:
        return _no_gpu(ctx, profile["display"])
    device_id = ctx.driver().pci_device_id
    verdict, note = name_verdict(name, profile["names"], profile["display"], device_id,
                                 profile.get("pci_device_id"))
    measured = f"{name} ({device_id:#010x})" if device_id is not None else name
    return Check(verdict, measured=measured, expected=profile["display"], note=note)


def _capability(ctx: Context) -> Optional[Tuple[int, int]]:
    if ctx.has_gpu():
        return tuple(ctx.torch.cuda.get_device_capability(0))
    return ctx.driver().cc


def check_compute_capability(ctx: Context) -> Check:
    want = ctx.profile["compute_capability"]
    cc = _capability(ctx)
    if cc is None:
        return _no_gpu(ctx, want)
    verdict, note = cc_verdict(cc, want, ctx.expect["torch_sass"])
    top = max(ctx.expect["torch_sass"], key=parse_cc)
    return Check(verdict, measured=cc_text(cc), expected=f"{want} (image SASS up to {top})", note=note)


def _arch_list(torch) -> str:
    try:
        archs = torch.cuda.get_arch_list()
    except Exception:
        return "?"
    return ",".join(a.replace("sm_", "") for a in archs) or "?"


def check_kernel(ctx: Context) -> Check:
    """Launch a kernel: catches 'no kernel image is available' directly."""
    if not ctx.has_gpu():
        return _no_gpu(ctx, "ok")
    torch = ctx.torch
    note = f"this torch has SASS/PTX for {_arch_list(torch)}"
    try:
        x = torch.arange(4096, device="cuda", dtype=torch.float32)
        total = float((x * 2 + 1).sum().item())
    except Exception as exc:
        return Check(FAIL, measured="error", expected="ok", note=one_line(exc))
    ok = total == 4096.0 * 4096.0
    return Check(PASS if ok else FAIL, measured="ok" if ok else total, expected="ok", note=note)


def _total_bytes(ctx: Context) -> Optional[int]:
    if ctx.has_gpu():
        return int(ctx.torch.cuda.get_device_properties(0).total_memory)
    return ctx.driver().total_bytes


def check_vram(ctx: Context) -> Check:
    vram_gb = ctx.profile["vram_gb"]
    expected = f">= {vram_floor_gb(vram_gb):.1f}"
    total = _total_bytes(ctx)
    if total is None:
        return _no_gpu(ctx, expected)
    verdict, note = vram_verdict(total, vram_gb)
    return Check(verdict, measured=round(total / 1e9, 1), expected=expected, unit="GB", note=note)


def check_driver(ctx: Context) -> Check:
    floor, rec = ctx.expect["driver_floor"], ctx.expect["driver_recommended"]
    expected = f">= {floor} (rec. {rec})"
    view = ctx.driver()
    if not view.driver:
        if ctx.has_gpu():
            return Check(SKIP, expected=expected, note=f"driver version unreadable: {view.error}")
        return _no_gpu(ctx, expected)
    verdict, note = driver_verdict(view.driver, floor, rec)
    return Check(verdict, measured=view.driver, expected=expected, note=f"{note} (via {view.source})")


def _link(gen, width) -> str:
    return f"Gen{gen if gen is not None else '?'} x{width if width is not None else '?'}"


def check_pcie(ctx: Context) -> Check:
    profile = ctx.profile
    expected = _link(profile["pcie_gen"], profile["pcie_width"])
    view = ctx.driver()
    if not view.ok:
        if ctx.has_gpu():
            return Check(SKIP, expected=expected, note=f"no driver view: {view.error}")
        return _no_gpu(ctx, expected)
    verdict, note = pcie_verdict(view.cur_gen, view.cur_width, view.max_gen, view.max_width,
                                 profile["pcie_gen"], profile["pcie_width"])
    measured = f"{_link(view.cur_gen, view.cur_width)} (max {_link(view.max_gen, view.max_width)})"
    return Check(verdict, measured=measured, expected=expected, note=note)


CHECKS = [
    ("visible", check_visible),
    ("name", check_name),
    ("compute_capability", check_compute_capability),
    ("kernel", check_kernel),
    ("vram", check_vram),
    ("driver", check_driver),
    ("pcie", check_pcie),
]
