"""Why `invoke run` says a warm-up failed when the engine has lost the warm-up's own JSON line.

The container here is a stand-in: a real engine cannot be made to drop a line on demand (a loaded host's
engine did, in CI). The real container's path is tested in tests/engine/test_run.py.
"""

import json

import pytest

from kiln.engine.run import RunRequest, _wait_healthy
from kiln.errors import KilnError

REASON = "RuntimeError: the prompt failed: KSampler (node 2): stand-in: KSampler failed"


class ExitedContainer:
    """A stand-in for docker-py's Container after the start script's exit 3."""

    def __init__(self, lines: list[str], health: list[str]):
        self._logs = "".join(f"{line}\n" for line in lines).encode()
        self.attrs = {"State": {"Status": "exited", "ExitCode": 3,
                                "Health": {"Status": "unhealthy", "Log": [{"Output": o} for o in health]}}}

    def reload(self):
        pass

    def logs(self, tail=None):
        return self._logs


def said(container) -> str:
    with pytest.raises(KilnError) as err:
        _wait_healthy(container, RunRequest(tag="t", name="kiln-run", port=1, timeout_s=5), lambda _: None)
    return err.value.line()


SCRIPT_LINE = f"kiln: warm-up failed: {REASON}; stopping ComfyUI"
JSON_LINE = json.dumps({"kiln_warmup": {"error": REASON}})


@pytest.mark.parametrize("lines, health", [
    ([JSON_LINE, SCRIPT_LINE, "Terminated"], []),
    ([SCRIPT_LINE, "Terminated"], []),
    (["Terminated"], ["", f"warm-up failed: {REASON}\n"]),
], ids=["json-line", "script-line-only", "health-log-only"])
def test_the_reason_is_found_where_it_survived(lines, health):
    line = said(ExitedContainer(lines, health))
    assert f"the warm-up failed, so the container stopped (exit 3): {REASON}" in line
    assert "stopping ComfyUI" not in line


def test_an_exit_without_a_reason_says_the_last_line():
    line = said(ExitedContainer(["kiln: phase start: starting ComfyUI", "Segmentation fault"], []))
    assert "exited with code 3 before it was ready (Segmentation fault)" in line
