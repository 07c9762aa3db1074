"""The cloud-init script's main sequence run for real by /bin/sh, with every step a stub that logs when it
starts and ends (and may sleep or fail): what runs, in which order, and what overlaps."""

from __future__ import annotations

import subprocess
import time
from pathlib import Path


def main_sequence(script: str) -> str:
    """The script's last part: the steps it calls, from check_driver on."""
    return script[script.rindex("\ncheck_driver\n"):]


def run_steps(script: str, tmp: Path, sleep: dict[str, float] | None = None,
              fail: tuple[str, ...] = ()) -> tuple[int, list[tuple[float, str, str]]]:
    """Exit code and the log [(seconds, start|end, step)] of the main sequence with stubbed steps."""
    body = main_sequence(script)
    steps = sorted({line.split()[0] for line in body.splitlines() if line.strip()
                    and line.split()[0].isidentifier() and line.split()[0] not in ("wait", "trap", "kill")})
    tmp.mkdir(parents=True, exist_ok=True)
    log = tmp / "steps.log"
    stubs = [f"{name}() {{ echo \"$(date +%s.%N) start {name}\" >> {log}; sleep {(sleep or {}).get(name, 0)}; "
             + ("exit 1; " if name in fail else "")
             + f"echo \"$(date +%s.%N) end {name}\" >> {log}; }}" for name in steps]
    started = time.time()
    done = subprocess.run(["/bin/sh", "-c", "\n".join(stubs) + "\n" + body], capture_output=True, text=True,
                          timeout=60)
    time.sleep(0.2)   # a step left running in the background (it must not be) would still write
    rows = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, [(float(t) - started, what, name) for t, what, name in rows]


def order(events: list[tuple[float, str, str]]) -> list[str]:
    return [f"{what} {name}" for _, what, name in sorted(events)]
