"""Helpers shared by the payload tests (kept out of conftest.py so tests can import them)."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
PAYLOAD = ROOT / "provision" / "container"
SMOKE = PAYLOAD / "smoke"
H200_EXPECT = ROOT / "docs" / "gpu-validation" / "h200-expect.json"

if str(PAYLOAD) not in sys.path:
    sys.path.insert(0, str(PAYLOAD))

EXPECT = {
    "pins": {"python": "3.11", "torch": "2.3.1", "cuda": "12.1", "cudnn": "8.9.2.26",
             "xformers": "0.0.27", "comfyui": "0.3.18"},
    "driver_floor": "525.60.13",
    "driver_recommended": "530.30.02",
    "torch_sass": ["sm_50", "sm_60", "sm_70", "sm_75", "sm_80", "sm_86", "sm_90"],
    "profile": {"name": "h200", "display": "NVIDIA H200",
                "names": ["NVIDIA H200"],
                "vram_gb": 141, "bandwidth_gbs": 4800, "compute_capability": "9.0",
                "tflops_fp16": 989, "pcie_gen": 5, "pcie_width": 16,
                "measured_copy_tbs": 4.3, "measured_matmul_tflops": 780},
}


def fresh_expect() -> dict:
    return copy.deepcopy(EXPECT)


def _importable(name: str) -> bool:
    probe = [sys.executable, "-c", f"import {name}"]
    return subprocess.run(probe, capture_output=True, timeout=120).returncode == 0


# Whether the interpreter running the payload has torch: the assertions differ.
HAS_TORCH = _importable("torch")


def run_smoke(*args: str, env_extra: dict | None = None, timeout: float = 600,
              cwd: Path | None = None) -> subprocess.CompletedProcess:
    """`python3 -m smoke ...` as the image runs it: only the payload on PYTHONPATH."""
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "COMFYUI_DIR")}
    env["PYTHONPATH"] = str(PAYLOAD)
    env.update(env_extra or {})
    cmd = [sys.executable, "-m", "smoke", *args]
    return subprocess.run(cmd, capture_output=True, text=True, env=env, timeout=timeout,
                          cwd=str(cwd or ROOT))


def checks_by_name(doc: dict) -> dict:
    return {f"{c['group']}.{c['name']}": c for c in doc["checks"]}
