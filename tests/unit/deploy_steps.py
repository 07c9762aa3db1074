"""The cloud-init script's main sequence run for real by /bin/sh, with every step a stub that logs when it
starts and ends (and may sleep or fail), or, for the steps named real, the script's own function with a
fake `docker` on PATH that logs the same way: what runs, in which order, what overlaps, what is stopped."""

from __future__ import annotations

import os
import re
import subprocess
import time
from pathlib import Path

HELPERS = ("say", "report", "fail", "relay_phases")   # what the real steps call
# the main sequence's own control (the marker, the fetch's end, its failure, an early end, the wait for the
# fetch): as written
CONTROL = ("mark_arriving", "fetched", "fetch_failed", "stop_started", "wait_fetch")
FAKE_DOCKER = """#!/bin/sh
# the docker client as the real steps call it: pull sleeps, logs, and fails where told; inspect answers
case "$1" in
    pull) echo "$(date +%s.%N) start docker-pull" >> "$STEPS_LOG"; sleep "$PULL_S"
          [ "$PULL_FAILS" = 1 ] && exit 1
          echo "$(date +%s.%N) end docker-pull" >> "$STEPS_LOG" ;;
    image) echo 6460000000 ;;
    rm|run) echo "$(date +%s.%N) start docker-$1" >> "$STEPS_LOG"; echo "$(date +%s.%N) end docker-$1" >> "$STEPS_LOG" ;;
    logs) cat "$DOCKER_LOGS" 2> /dev/null ;;
esac
"""


FAKE_PYTHON = """#!/bin/sh
# python3 as the real fetch step calls it: logs, sleeps, ends
echo "$(date +%s.%N) start fetch-python" >> "$STEPS_LOG"; sleep "$PY_S"
echo "$(date +%s.%N) end fetch-python" >> "$STEPS_LOG"
"""


def main_sequence(script: str) -> str:
    """The script's last part: the steps it calls, from check_driver on."""
    return script[script.rindex("\ncheck_driver\n"):]


def function(script: str, name: str) -> str:
    """One shell function of the script, as written there."""
    start = script.index(f"\n{name}() {{\n") + 1
    return script[start:script.index("\n}\n", start) + 3]


def fake_docker(tmp: Path) -> dict[str, str]:
    """PATH with the fake docker first."""
    folder = tmp / "bin"
    folder.mkdir(parents=True, exist_ok=True)
    for name, text in (("docker", FAKE_DOCKER), ("python3", FAKE_PYTHON)):
        (folder / name).write_text(text)
        (folder / name).chmod(0o755)
    return {"PATH": f"{folder}:{os.environ['PATH']}"}


def run_steps(script: str, tmp: Path, sleep: dict[str, float] | None = None, fail: tuple[str, ...] = (),
              real: tuple[str, ...] = (), env: dict[str, str] | None = None, settle_s: float = 0.2,
              signal: dict[str, str] | None = None) -> tuple[int, list[tuple[float, str, str]]]:
    """Exit code and the log [(seconds, start|end, step)] of the main sequence with stubbed steps; a step
    named in `signal` sends that signal to the script instead of ending."""
    body = main_sequence(script)
    steps = sorted(name for name in re.findall(r"^(\w+)\(\) \{$", script, re.M)
                   if re.search(rf"\b{name}\b", body) and name not in CONTROL)
    tmp.mkdir(parents=True, exist_ok=True)
    (tmp / "cache" / "models").mkdir(parents=True, exist_ok=True)
    log = tmp / "steps.log"
    stubs = [f"{name}() {{ echo \"$(date +%s.%N) start {name}\" >> {log}; sleep {(sleep or {}).get(name, 0)}; "
             + ("exit 1; " if name in fail else "")
             + (f"kill -{(signal or {})[name]} $$; sleep 1; " if name in (signal or {}) else "")
             + f"echo \"$(date +%s.%N) end {name}\" >> {log}; }}" for name in steps if name not in real]
    own = [function(script, name) for name in (*(HELPERS if real else ()), *real, *CONTROL)]
    variables = (f"IMAGE=registry.example/kiln@sha256:0\nSTATUS={tmp}/status.json\nKILN_REGISTRY_USER=\n"
                 f"CACHE={tmp}/cache\nARRIVING=.kiln-arriving\nNAME=kiln-test\nMODELS=1\nFETCH=fetch.py\n"
                 f"MANIFEST=deploy.json\nKILN_FETCH_MODELS=1\n")
    started = time.time()
    done = subprocess.run(["/bin/sh", "-c", variables + "\n".join(own + stubs) + "\n" + body], capture_output=True,
                          text=True, timeout=60, env={**os.environ, **fake_docker(tmp), "STEPS_LOG": str(log),
                                                      "PULL_S": "0", "PY_S": "0", **(env or {})})
    time.sleep(settle_s)   # a step left running in the background (it must not be) would still write
    rows = [line.split() for line in log.read_text().splitlines()] if log.exists() else []
    return done.returncode, [(float(t) - started, what, name) for t, what, name in rows]


def order(events: list[tuple[float, str, str]]) -> list[str]:
    return [f"{what} {name}" for _, what, name in sorted(events)]
