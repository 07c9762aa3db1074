"""GPU preflight at container start: python3 -m smoke.preflight --expect /opt/kiln/kiln.json

Runs the gpu group of the smoke checks, while ComfyUI starts beside it, and decides whether ComfyUI may go on
to its warm-up (the start script stops it otherwise):
- no usable GPU: refuse (exit 1), unless KILN_CPU_MODE=1 (an explicit CPU mode for tests);
- a GPU other than the baked profile: a warning, an error when STRICT_GPU=1;
- compute capability not covered, VRAM under the profile's, driver under the floor: refuse.
Prints one line per finding on stderr, prefixed "kiln-preflight:".
"""

from __future__ import annotations

import argparse
import os
import sys
from typing import List

from lines import emit

from . import checks_gpu
from .context import Context, Options
from .expect import load_expect
from .runner import run_checks
from .verdict import FAIL, SKIP, WARN, Check

ADVISORY = {"pcie"}  # reported, never blocks a start
OTHER_CARD = {"name"}  # a card other than the baked profile's: a warning, an error with STRICT_GPU=1


def decide(checks: List[Check], cpu_mode: bool, strict: bool) -> tuple[int, List[str]]:
    """(exit code, lines to print) for the gpu checks' results."""
    if cpu_mode:
        return 0, ["KILN_CPU_MODE=1: skipping the GPU preflight; ComfyUI will run on the CPU (tests only)"]
    lines, code = [], 0
    visible = next((c for c in checks if c.name == "visible"), None)
    if visible is None or visible.verdict in (SKIP, FAIL):
        reason = visible.note if visible else "no gpu checks ran"
        return 1, [f"no usable GPU ({reason}); start with --gpus all on a host with the NVIDIA Container "
                   "Toolkit, or KILN_CPU_MODE=1 for a CPU-only test run"]
    for check in checks:
        verdict = WARN if check.name in OTHER_CARD and check.verdict == FAIL else check.verdict
        blocking = verdict == FAIL or (strict and verdict == WARN and check.name not in ADVISORY)
        if blocking:
            code = 1
        if verdict in (FAIL, WARN):
            level = "error" if blocking else "warning"
            lines.append(f"{level}: gpu.{check.name}: {check.measured} (expected {check.expected}): {check.note}")
    lines.append("GPU preflight passed" if code == 0 else "GPU preflight failed; ComfyUI is stopped before its warm-up")
    return code, lines


def main(argv=None) -> int:
    parser = argparse.ArgumentParser(prog="smoke.preflight")
    parser.add_argument("--expect", required=True)
    args = parser.parse_args(argv)
    cpu_mode = os.environ.get("KILN_CPU_MODE") == "1"
    checks = [] if cpu_mode else run_checks(Context(load_expect(args.expect), Options(expect_path=args.expect)),
                                             [checks_gpu])
    code, lines = decide(checks, cpu_mode, os.environ.get("STRICT_GPU") == "1")
    for line in lines:
        emit(f"kiln-preflight: {line}", sys.stderr)
    return code


if __name__ == "__main__":
    sys.exit(main())
