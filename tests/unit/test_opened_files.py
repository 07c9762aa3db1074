"""bench/opened_files.py: the access-time trace that decides kiln/data/tables/prune.yaml, on a small site
folder made here (a read, a mapped and an untouched file), and the prune that keeps an entry with a file read."""

import json
import mmap
import subprocess
import sys

import pytest
import yaml

from tests.conftest import ROOT

BENCH = ROOT / "bench" / "opened_files.py"


def bench(site, *args):
    return subprocess.run([sys.executable, str(BENCH), *args], capture_output=True, text=True,
                          env={"PYTHONPATH": str(site), "PATH": "/usr/bin:/bin"}, cwd=site)


@pytest.fixture
def site(tmp_path):
    root = tmp_path / "site"
    for rel, size in {"pkg/__init__.py": 1, "pkg/read.so": 4096, "pkg/mapped.so": 8192, "pkg/unread.so": 3 << 20,
                      "other/__init__.py": 1, "other/hip/_C.so": 5000, "other/cuda/_C.so": 5000}.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_bytes(b"\0" * size)
    policy = tmp_path / "prune.yaml"
    policy.write_text(yaml.safe_dump({"stacks": {"s": [{"path": "other/hip", "why": "another vendor"},
                                                      {"path": "pkg/*.so", "why": "one of them is read"},
                                                      {"path": "gone/x.so", "why": "not installed"}]}}))
    record = tmp_path / "record.json"
    marked = bench(root, "mark", "--record", str(record), "--module", "pkg", "--module", "other")
    assert marked.returncode == 0, marked.stderr
    (root / "pkg" / "read.so").read_bytes()
    with open(root / "pkg" / "mapped.so", "rb") as f, mmap.mmap(f.fileno(), 0, prot=mmap.PROT_READ):
        pass
    return root, record, policy, tmp_path


def test_a_read_and_a_mapped_file_count_as_read_and_an_untouched_one_does_not(site):
    root, record, _, _ = site
    ran = bench(root, "report", "--record", str(record), "--label", "served")
    assert ran.returncode == 0, ran.stderr
    snap = json.loads(record.read_text())["snapshots"][0]
    assert snap["libraries_read"] == ["pkg/mapped.so", "pkg/read.so"]
    assert snap["unread_largest"][0] == {"path": "pkg/unread.so", "bytes": 3 << 20}
    assert snap["packages"]["pkg"]["read_bytes"] == 4096 + 8192


def test_prune_moves_only_entries_with_no_file_read(site):
    root, record, policy, tmp = site
    ran = bench(root, "prune", "--record", str(record), "--stack", "s", "--move-to", str(tmp / "moved"),
                "--policy", str(policy))
    assert ran.returncode == 0, ran.stderr
    status = {e["path"]: e["status"] for e in json.loads(record.read_text())["prune"]["entries"]}
    assert status == {"other/hip": "pruned", "pkg/*.so": "read: kept", "gone/x.so": "absent"}
    assert not (root / "other" / "hip").exists() and (tmp / "moved" / "other" / "hip" / "_C.so").is_file()
    assert (root / "pkg" / "unread.so").is_file()   # its entry had a read file: all of it stays


def test_the_trace_behind_the_prune_list_ran_on_the_locked_wheels():
    """The H200 trace that decided kiln/data/tables/prune.yaml read the cuda13 stack's own wheels: a wheel
    bump in versions.lock fails this until the trace runs again on the new ones."""
    from packaging.utils import canonicalize_name
    from kiln.data.lock import load_lock
    record = json.loads((ROOT / "docs/gpu-validation/cuda13/h200-opened-files.json").read_text())
    traced = dict(key.removesuffix(".dist-info").rsplit("-", 1) for key in record["snapshots"][-1]["packages"]
                  if key.endswith(".dist-info"))
    traced = {canonicalize_name(name): version for name, version in traced.items()}
    lock = load_lock(ROOT / "versions.lock", stack="cuda13")
    owners = [name for name in lock.packages if name.startswith("nvidia-") and name != "nvidia-ml-py"]
    owners += ["torch", "triton", "comfy-kitchen"]
    assert len(owners) > 10
    assert {name: traced.get(name) for name in owners} == {name: lock.packages[name].version for name in owners}
