"""A task's start-up stays cheap: importing tasks.py, listing the tasks, refusing a bad argument and running the
gate load none of the heavy libraries (the Docker SDK, HTTP clients, crypto, SBOM, templates, terminal
drawing). Each is imported inside the task that uses it; an eager import at the top of tasks.py, or in a
module it imports, fails here by name."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest

from tests.conftest import ROOT

HEAVY = ("docker", "requests", "urllib3", "cryptography", "cyclonedx", "jsonschema", "rich", "jinja2", "uv",
         "numpy", "safetensors")

# Runs tasks.py as `bin/invoke` does, then reports the top-level modules loaded, whatever way the program ends.
PROBE = """
import atexit, json, runpy, sys
atexit.register(lambda: print("MODULES " + json.dumps(sorted({m.split(".")[0] for m in sys.modules}))))
sys.argv = ["invoke", *sys.argv[1:]]
runpy.run_path("tasks.py", run_name="tasks" if sys.argv[1:] == ["--import-only"] else "__main__")
"""


def _loaded(*args: str) -> tuple[set[str], subprocess.CompletedProcess]:
    result = subprocess.run([sys.executable, "-c", PROBE, *args], capture_output=True, text=True, cwd=ROOT,
                            env={"PYTHONPATH": str(ROOT), "PATH": "/usr/bin:/bin"}, timeout=120)
    line = next(line for line in result.stdout.splitlines() if line.startswith("MODULES "))
    return set(json.loads(line.removeprefix("MODULES "))), result


@pytest.mark.parametrize("args, code", [
    (("--import-only",), 0),                       # tasks.py imported, nothing run
    (("--list",), 0),
    (("check", "--gpu=4090"), 0),                  # arguments parsed and the whole gate run
    (("run", "--gpu", "4090", "--port", "0"), 2),  # a bad argument refused
])
def test_no_heavy_module_is_loaded(args, code):
    loaded, result = _loaded(*args)
    assert result.returncode == code, result.stderr
    assert not loaded & set(HEAVY), f"`invoke {' '.join(args)}` loaded {sorted(loaded & set(HEAVY))}"


def test_the_probe_sees_a_heavy_module_when_one_is_loaded():
    """The rule above can fail: a task that draws a table does load rich."""
    loaded, result = _loaded("gpus")
    assert result.returncode == 0, result.stderr
    assert "rich" in loaded
