"""The test tiers a user selects with -m: engine (tests/engine, tests/slow), slow (tests/slow) and network;
`-m "not engine and not slow"` is the fast path that needs no Docker Engine. An unknown marker is refused."""

import json
import os
import subprocess
import sys

from tests.conftest import ROOT

PROBE = """import json, os
def pytest_collection_finish(session):
    with open(os.environ["MARKS_OUT"], "w") as out:
        json.dump({i.nodeid: sorted({m.name for m in i.iter_markers()}) for i in session.items}, out)
"""


def _collect(tmp_path, *args) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "MARKS_OUT": str(tmp_path / "marks.json")}
    return subprocess.run([sys.executable, "-m", "pytest", "--collect-only", "-q", "-p", "no:cacheprovider", *args],
                          capture_output=True, text=True, cwd=ROOT, env=env, timeout=300)


def test_every_test_carries_its_folders_tier(tmp_path):
    (tmp_path / "markprobe.py").write_text(PROBE)
    result = _collect(tmp_path, "-p", "markprobe")
    assert result.returncode == 0, result.stdout[-2000:] + result.stderr[-2000:]
    marks = json.loads((tmp_path / "marks.json").read_text())
    tier = {node: node.split("/")[1] for node in marks}
    assert {"unit", "payload", "engine", "slow"} <= set(tier.values())
    for node, names in marks.items():
        assert ("engine" in names) == (tier[node] in ("engine", "slow")), node
        assert ("slow" in names) == (tier[node] == "slow"), node
    fast = [node for node, names in marks.items() if "engine" not in names and "slow" not in names]
    assert fast and all(tier[node] in ("unit", "payload") for node in fast)
    network = {node for node, names in marks.items() if "network" in names}
    assert "tests/unit/test_lock.py::test_relock_from_the_index_reproduces_the_lock_and_keeps_hand_written_comments" in network
    assert not [node for node in network if "test_bad_input.py" in node or "test_gate.py" in node]


def test_an_unknown_marker_is_refused(tmp_path):
    (tmp_path / "test_typo.py").write_text("import pytest\n\n@pytest.mark.enigne\ndef test_x():\n    pass\n")
    result = _collect(tmp_path, "-c", str(ROOT / "pytest.ini"), "--rootdir", str(tmp_path), str(tmp_path / "test_typo.py"))
    assert result.returncode != 0
    assert "'enigne' not found in `markers` configuration option" in result.stdout + result.stderr
