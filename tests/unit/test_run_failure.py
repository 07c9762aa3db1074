"""Why `invoke run` says a warm-up failed when the engine has lost the warm-up's own JSON line.

The container here is a stand-in: a real engine cannot be made to drop a line on demand (a loaded host's
engine did, in CI). The real container's path is tested in tests/engine/test_run.py.
"""

import json

import docker
import pytest

from kiln.engine.run import HEALTH_FAILED, RunRequest, _wait_healthy
from kiln.errors import KilnError
from tests.payload import payload_env  # noqa: F401  (puts the payload on sys.path)
from serve.warmup import fail  # noqa: E402

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


class UnreadableLogs(ExitedContainer):
    """A log driver the engine cannot read back (docker-py raises from logs())."""

    def logs(self, tail=None):
        raise docker.errors.APIError("configured logging driver does not support reading")


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
    ([JSON_LINE, '{"kiln_warmup": {"err', "Terminated"], []),
    ([json.dumps({"kiln_warmup": {"error": ""}}), SCRIPT_LINE], []),
    (["Prompt executed in 0.5" + JSON_LINE, "Terminated"], []),
    (["  3%|#  | 1/30 [00:01<00:30]" + SCRIPT_LINE], []),
    ([JSON_LINE, '{"kiln_warmup": "not a record"}'], []),
], ids=["json-line", "script-line-only", "health-log-only", "garbled-line-after", "empty-json-reason",
        "json-glued-to-an-unfinished-line", "script-line-glued", "record-not-a-dict"])
def test_the_reason_is_found_where_it_survived(lines, health):
    line = said(ExitedContainer(lines, health))
    assert f"the warm-up failed, so the container stopped (exit 3): {REASON}" in line
    assert "stopping ComfyUI" not in line


def test_an_exit_without_a_reason_says_the_last_line():
    line = said(ExitedContainer(["kiln: phase start: starting ComfyUI", "Segmentation fault"], []))
    assert "exited with code 3 before it was ready (Segmentation fault)" in line


def test_unreadable_logs_leave_the_health_log():
    line = said(UnreadableLogs([], [f"warm-up failed: {REASON}\n"]))
    assert f"(exit 3): {REASON}" in line


def test_a_reason_over_several_lines_is_said_on_one():
    line = said(ExitedContainer([json.dumps({"kiln_warmup": {"error": "CUDA error:\nout of memory\n"}})], []))
    assert line.count("\n") == 0 and "(exit 3): CUDA error: out of memory" in line


def test_the_health_prefix_is_what_the_warmup_writes(tmp_path, capsys):
    assert fail("KSampler broke", str(tmp_path / "failed")) == 1
    assert (tmp_path / "failed").read_text().startswith(HEALTH_FAILED + "KSampler broke")
