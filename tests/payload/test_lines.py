"""Each line the payload logs reaches the container's shared stdout/stderr in one write (lines.py says why)."""

import ast
import json

import payload_env  # noqa: F401  (puts the payload on sys.path)
from fleet import drain
from lines import PIPE_BUF, emit
from serve import warmup
from smoke import preflight


class Writes:
    """A stream that keeps each write() apart, as the pipe under an unbuffered Python sees them."""

    def __init__(self):
        self.writes: list[str] = []

    def write(self, text: str) -> int:
        self.writes.append(text)
        return len(text)

    def flush(self):
        pass


def test_phase_and_json_lines_of_the_warmup_are_whole_writes(monkeypatch, tmp_path):
    out = Writes()
    monkeypatch.setattr("sys.stdout", out)
    warmup.say("warm-up", "warming the GPU")
    warmup.fail("KSampler broke", str(tmp_path / "failed"))
    assert out.writes == ["kiln: phase warm-up: warming the GPU\n",
                          json.dumps({"kiln_warmup": {"error": "KSampler broke"}}) + "\n"]


def test_the_preflight_lines_are_whole_writes(monkeypatch):
    err = Writes()
    monkeypatch.setattr("sys.stderr", err)
    monkeypatch.setenv("KILN_CPU_MODE", "1")
    assert preflight.main(["--expect", "unused.json"]) == 0
    assert err.writes and all(w.startswith("kiln-preflight: ") and w.count("\n") == 1 and w.endswith("\n")
                              for w in err.writes)


def test_the_drain_result_is_one_write(monkeypatch, tmp_path):
    out = Writes()
    monkeypatch.setattr("sys.stdout", out)
    monkeypatch.setattr(drain, "drain", lambda *_: {"drained": True, "seconds": 0.0})
    assert drain.main(["--url", "http://127.0.0.1:1", "--drain", str(tmp_path / "d"), "--limit-s", "1"]) == 0
    assert out.writes == [json.dumps({"kiln_drain": {"drained": True, "seconds": 0.0}}, sort_keys=True) + "\n"]


def test_a_line_past_the_pipe_atomic_size_is_cut_on_a_character():
    out = Writes()
    emit("é" * PIPE_BUF, out)
    [written] = out.writes
    assert len(written.encode()) <= PIPE_BUF and written.endswith(" [cut]\n") and "\ufffd" not in written


# The modules whose lines kiln reads from the container's log, run beside ComfyUI by the start script
BESIDE_THE_SERVER = ["serve", "fleet", "smoke/preflight.py"]


def test_no_module_beside_the_server_prints():
    """print() would write the newline apart again; each line goes through lines.emit."""
    paths = [payload_env.PAYLOAD / name for name in BESIDE_THE_SERVER]
    files = [f for path in paths for f in ([path] if path.suffix == ".py" else path.rglob("*.py"))]
    printing = [f"{f.relative_to(payload_env.PAYLOAD)}:{node.lineno}" for f in files
                for node in ast.walk(ast.parse(f.read_text()))
                if isinstance(node, ast.Call) and getattr(node.func, "id", None) == "print"]
    assert len(files) > 5 and printing == []
