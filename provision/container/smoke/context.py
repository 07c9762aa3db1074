"""Shared state handed to every check: options, expectations, devices."""

from __future__ import annotations

import dataclasses
import os
import platform
import sys
import time
from typing import Any, Dict, Optional

from .deps import Deps, one_line
from .nvml import DriverView, read_driver_view


@dataclasses.dataclass
class Options:
    expect_path: str
    json_path: Optional[str] = None
    require_gpu: bool = False
    host: bool = False
    cache_dir: Optional[str] = None
    comfyui_url: Optional[str] = None
    only: Optional[tuple] = None
    workflow_path: Optional[str] = None
    require_models: bool = False


class Context:
    def __init__(self, expect: Dict[str, Any], options: Options, deps: Optional[Deps] = None):
        self.expect = expect
        self.options = options
        self.deps = deps or Deps()
        self._gpu_reason: Optional[str] = None
        self._gpu_probed = False
        self._driver: Optional[DriverView] = None
        self.memo: Dict[str, Any] = {}  # results shared between checks of a group

    # -- expectations
    @property
    def pins(self) -> Dict[str, str]:
        return self.expect["pins"]

    @property
    def profile(self) -> Dict[str, Any]:
        return self.expect["profile"]

    @property
    def host(self) -> bool:
        return self.options.host

    # -- modules
    @property
    def torch(self) -> Any:
        return self.deps.get("torch")

    @property
    def numpy(self) -> Any:
        return self.deps.get("numpy")

    # -- devices
    def gpu_reason(self) -> Optional[str]:
        """None when torch can use a CUDA GPU, else why not."""
        if not self._gpu_probed:
            self._gpu_probed = True
            self._gpu_reason = self._probe_gpu()
        return self._gpu_reason

    def has_gpu(self) -> bool:
        return self.gpu_reason() is None

    @property
    def device(self) -> str:
        return "cuda" if self.has_gpu() else "cpu"

    def _probe_gpu(self) -> Optional[str]:
        torch = self.torch
        if torch is None:
            return self.deps.reason("torch")
        if not getattr(torch.version, "cuda", None):
            return f"torch {torch.__version__} is a CPU-only build"
        try:
            if torch.cuda.is_available() and torch.cuda.device_count() > 0:
                return None
        except Exception as exc:
            return f"CUDA init failed: {one_line(exc)}"
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        hint = f" (CUDA_VISIBLE_DEVICES={visible!r})" if visible is not None else ""
        return f"torch.cuda.is_available() is False: no GPU or driver visible{hint}"

    def torch_uuid(self) -> Optional[str]:
        if not self.has_gpu():
            return None
        uuid = getattr(self.torch.cuda.get_device_properties(0), "uuid", None)
        if uuid is None:
            return None
        text = str(uuid)
        return text if text.startswith(("GPU-", "MIG-")) else f"GPU-{text}"

    def driver(self) -> DriverView:
        if self._driver is None:
            try:
                uuid = self.torch_uuid()
            except Exception:
                uuid = None
            self._driver = read_driver_view(self.deps.get("pynvml"), uuid)
        return self._driver


def environment(ctx: Context) -> Dict[str, Any]:
    """What ran where: goes into the JSON report's "env"."""
    env: Dict[str, Any] = {
        "python": platform.python_version(),
        "platform": platform.platform(),
        "mode": "host" if ctx.host else "image",
        "profile": ctx.profile["name"],
        "started_utc": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "missing_modules": dict(ctx.deps.errors),
        "cache_dir": ctx.options.cache_dir,
    }
    if "torch" in sys.modules and ctx.torch is not None:
        env.update(_torch_env(ctx))
    if "workflow_timings" in ctx.memo:
        env["workflow"] = ctx.memo["workflow_timings"]
    view = ctx._driver
    if view is not None and view.ok:
        env.update({"driver": view.driver, "driver_source": view.source})
    return env


def _torch_env(ctx: Context) -> Dict[str, Any]:
    torch = ctx.torch
    env = {"torch": torch.__version__, "torch_cuda": getattr(torch.version, "cuda", None)}
    if ctx.has_gpu():
        env["device"] = torch.cuda.get_device_name(0)
    else:
        env["device"] = f"cpu ({ctx.gpu_reason()})"
    return env
