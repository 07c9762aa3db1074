"""A running ComfyUI answers and sees a CUDA device (only with --comfyui-url)."""

from __future__ import annotations

import json
import urllib.error
import urllib.request
from typing import Any, Dict, Tuple

from .context import Context
from .deps import one_line
from .verdict import FAIL, PASS, WARN, Check, skip, version_matches

GROUP = "comfyui"
TIMEOUT_S = 10.0


def stats_url(base: str) -> str:
    return base.rstrip("/") + "/system_stats"


def fetch_stats(url: str, timeout: float = TIMEOUT_S) -> Tuple[Dict[str, Any], str]:
    """(parsed /system_stats, '') or ({}, error)."""
    try:
        with urllib.request.urlopen(url, timeout=timeout) as response:
            body = response.read()
    except urllib.error.HTTPError as exc:
        return {}, f"HTTP {exc.code} from {url}"
    except (urllib.error.URLError, OSError, ValueError) as exc:
        reason = getattr(exc, "reason", None)
        return {}, f"no answer from {url}: {reason if reason else one_line(exc)}"
    try:
        data = json.loads(body)
    except ValueError:
        return {}, f"{url} did not answer JSON"
    if not isinstance(data, dict):
        return {}, f"{url} answered {type(data).__name__}, not an object"
    return data, ""


def _stats(ctx: Context) -> Tuple[Dict[str, Any], str]:
    if "comfyui_stats" not in ctx.memo:
        ctx.memo["comfyui_stats"] = fetch_stats(stats_url(ctx.options.comfyui_url))
    return ctx.memo["comfyui_stats"]


def _no_url(expected: str) -> Check:
    return skip("no --comfyui-url given", expected=expected)


def check_system_stats(ctx: Context) -> Check:
    if not ctx.options.comfyui_url:
        return _no_url(ctx.pins["comfyui"])
    data, error = _stats(ctx)
    if error:
        return Check(FAIL, measured="no answer", expected=ctx.pins["comfyui"], note=error)
    system = data.get("system") or {}
    version = system.get("comfyui_version")
    pin = ctx.pins["comfyui"]
    if version and not version_matches(str(version), pin):
        return Check(WARN, measured=version, expected=pin, note="server runs another ComfyUI version")
    note = f"ComfyUI {version}" if version else "answered (no comfyui_version field)"
    return Check(PASS, measured=version or "ok", expected=pin, note=note)


def cuda_devices(data: Dict[str, Any]) -> list:
    devices = data.get("devices") or []
    return [d for d in devices if isinstance(d, dict) and str(d.get("type", "")).lower() == "cuda"]


def check_cuda_device(ctx: Context) -> Check:
    if not ctx.options.comfyui_url:
        return _no_url("cuda")
    data, error = _stats(ctx)
    if error:
        return Check(FAIL, measured="no answer", expected="cuda", note=error)
    found = cuda_devices(data)
    if not found and ctx.gpu_reason():
        return skip(f"server runs on the CPU because no GPU is usable here: {ctx.gpu_reason()}",
                    expected="cuda", needs_gpu=True)
    if found:
        return Check(PASS, measured="cuda", expected="cuda", note=str(found[0].get("name", ""))[:100])
    kinds = sorted({str(d.get("type")) for d in data.get("devices") or [] if isinstance(d, dict)})
    note = f"devices: {', '.join(kinds) or 'none'} (started with --cpu, or torch cannot see the GPU?)"
    return Check(FAIL, measured=",".join(kinds) or "none", expected="cuda", note=note)


CHECKS = [
    ("system_stats", check_system_stats),
    ("cuda_device", check_cuda_device),
]
