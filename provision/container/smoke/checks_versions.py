"""Installed versions against the image pins."""

from __future__ import annotations

import os
import platform
import re
from typing import Optional

from .context import Context
from .deps import version_of
from .expect import NO_XFORMERS
from .verdict import (FAIL, PASS, WARN, Check, cudnn_pin_prefix, cudnn_version_string,
                      skip, version_verdict)

GROUP = "versions"
COMFYUI_DEFAULT_DIR = "/opt/comfyui"
_COMFY_VERSION_RE = re.compile(r"""__version__\s*=\s*['"]([^'"]+)['"]""")


def _version_check(ctx: Context, measured: Optional[str], pin: str, why_missing: str = "") -> Check:
    verdict, note = version_verdict(measured, pin, ctx.host)
    if measured is None and why_missing:
        note = why_missing
    return Check(verdict, measured=measured, expected=pin, note=note)


def check_python(ctx: Context) -> Check:
    return _version_check(ctx, platform.python_version(), ctx.pins["python"])


def check_torch(ctx: Context) -> Check:
    torch = ctx.torch
    reason = "" if torch is not None else ctx.deps.reason("torch")
    return _version_check(ctx, version_of(torch), ctx.pins["torch"], reason)


def check_cuda(ctx: Context) -> Check:
    torch = ctx.torch
    if torch is None:
        return _version_check(ctx, None, ctx.pins["cuda"], ctx.deps.reason("torch"))
    cuda = getattr(torch.version, "cuda", None)
    why = "" if cuda else f"torch {torch.__version__} is a CPU-only build"
    return _version_check(ctx, cuda, ctx.pins["cuda"], why)


def _cudnn_measured(torch) -> Optional[str]:
    try:
        raw = torch.backends.cudnn.version()
    except Exception:
        return None
    return cudnn_version_string(raw) if raw else None


def check_cudnn(ctx: Context) -> Check:
    pin = ctx.pins["cudnn"]
    torch = ctx.torch
    if torch is None:
        return _version_check(ctx, None, pin, ctx.deps.reason("torch"))
    measured = _cudnn_measured(torch)
    check = _version_check(ctx, measured, cudnn_pin_prefix(pin),
                           "" if measured else "torch reports no cuDNN")
    check.expected = pin
    return check


def check_xformers(ctx: Context) -> Check:
    module = ctx.deps.get("xformers")
    if ctx.pins["xformers"] == NO_XFORMERS:
        return _absent_xformers(ctx, version_of(module))
    reason = "" if module is not None else ctx.deps.reason("xformers")
    return _version_check(ctx, version_of(module), ctx.pins["xformers"], reason)


def _absent_xformers(ctx: Context, measured: Optional[str]) -> Check:
    """A stack without xformers: ComfyUI attends through PyTorch SDPA; an xformers that is there anyway was
    not locked (on the host it may be the host's own)."""
    if measured is None:
        return Check(PASS, measured="absent", expected=NO_XFORMERS, note="attention runs through PyTorch SDPA")
    return Check(WARN if ctx.host else FAIL, measured=measured, expected=NO_XFORMERS,
                 note="xformers is installed but the stack locks none; ComfyUI would pick it over SDPA")


def comfyui_dir() -> str:
    return os.environ.get("COMFYUI_DIR", COMFYUI_DEFAULT_DIR)


def read_comfyui_version(directory: str) -> Optional[str]:
    """Parse comfyui_version.py without executing it."""
    path = os.path.join(directory, "comfyui_version.py")
    try:
        with open(path, encoding="utf-8") as handle:
            match = _COMFY_VERSION_RE.search(handle.read())
    except OSError:
        return None
    return match.group(1) if match else None


def check_comfyui(ctx: Context) -> Check:
    directory = comfyui_dir()
    pin = ctx.pins["comfyui"]
    if not os.path.isfile(os.path.join(directory, "comfyui_version.py")):
        return skip(f"no comfyui_version.py under {directory} (set COMFYUI_DIR)", expected=pin)
    measured = read_comfyui_version(directory)
    return _version_check(ctx, measured, pin, "comfyui_version.py has no __version__")


CHECKS = [
    ("python", check_python),
    ("torch", check_torch),
    ("cuda", check_cuda),
    ("cudnn", check_cudnn),
    ("xformers", check_xformers),
    ("comfyui", check_comfyui),
]
