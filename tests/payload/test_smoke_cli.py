"""`python3 -m smoke` end to end, as a subprocess, on a machine without a GPU."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest

from payload_env import HAS_TORCH, SMOKE, checks_by_name, run_smoke

ALL_CHECKS = {
    "versions.python", "versions.torch", "versions.cuda", "versions.cudnn", "versions.xformers",
    "versions.comfyui",
    "gpu.visible", "gpu.name", "gpu.compute_capability", "gpu.kernel", "gpu.vram", "gpu.driver",
    "gpu.pcie",
    "numerics.matmul_fp16", "numerics.matmul_bf16", "numerics.sdpa_attention",
    "numerics.xformers_attention", "numerics.numpy_interop",
    "perf.copy_bandwidth", "perf.matmul_bf16", "perf.matmul_fp16", "perf.attention_dit",
    "perf.xformers_vs_sdpa",
    "compile.torch_compile",
    "comfyui.system_stats", "comfyui.cuda_device",
    "workflow.models", "workflow.prompt", "workflow.latency",
}
FIELDS = {"group", "name", "verdict", "measured", "expected", "unit", "note", "seconds"}


def assert_no_traceback(proc):
    assert "Traceback" not in proc.stdout and "Traceback" not in proc.stderr


@pytest.fixture(scope="module")
def full_run(tmp_path_factory):
    """The whole suite in image mode, once for this module (compile included)."""
    tmp = tmp_path_factory.mktemp("smoke")
    expect = tmp / "expect.json"
    from payload_env import EXPECT
    expect.write_text(json.dumps(EXPECT))
    out = tmp / "report.json"
    proc = run_smoke("--expect", str(expect), "--json", str(out), "--cache-dir", str(tmp / "cache"),
                     env_extra={"COMFYUI_DIR": str(tmp / "no-comfyui")})
    return proc, json.loads(out.read_text()), tmp / "cache"


def test_full_run_exit_code_and_no_traceback(full_run):
    proc, doc, _ = full_run
    assert_no_traceback(proc)
    # torch, or at least xformers, is missing here: the image-mode version check fails
    assert proc.returncode == 1
    assert doc["summary"]["fail"] >= 1


def test_full_run_json_schema(full_run):
    _, doc, _ = full_run
    assert set(doc) == {"schema", "summary", "env", "checks"}
    assert doc["schema"] == 1
    summary = doc["summary"]
    assert set(summary) == {"pass", "warn", "fail", "skip", "seconds"}
    assert sum(summary[k] for k in ("pass", "warn", "fail", "skip")) == len(doc["checks"])
    assert summary["seconds"] > 0
    assert set(checks_by_name(doc)) == ALL_CHECKS
    for check in doc["checks"]:
        assert set(check) == FIELDS
        assert check["verdict"] in ("pass", "warn", "fail", "skip")
        assert check["note"], f"{check['name']} has no note"
    assert doc["env"]["mode"] == "image" and doc["env"]["profile"] == "h200"


def test_full_run_table_matches_json(full_run):
    proc, doc, _ = full_run
    lines = proc.stdout.strip().splitlines()
    assert lines[0].split() == ["check", "verdict", "measured", "expected", "note"]
    s = doc["summary"]
    assert re.fullmatch(
        rf"smoke FAILED: {s['pass']} pass, {s['warn']} warn, {s['fail']} fail, "
        rf"{s['skip']} skip in \d+\.\d s", lines[-1])
    rows = {line.split()[0]: line.split()[1] for line in lines[2:-1]}
    assert rows == {name: c["verdict"].upper() for name, c in checks_by_name(doc).items()}


def test_full_run_verdicts_explained(full_run):
    _, doc, cache = full_run
    checks = checks_by_name(doc)
    assert checks["versions.comfyui"]["verdict"] == "skip"
    assert checks["comfyui.system_stats"]["note"] == "no --comfyui-url given"
    assert checks["versions.xformers"]["verdict"] == "fail"
    for name in ("gpu.visible", "gpu.kernel", "perf.copy_bandwidth", "perf.matmul_bf16"):
        assert checks[name]["verdict"] == "skip", name
    if not HAS_TORCH:
        assert checks["versions.torch"]["verdict"] == "fail"
        assert "torch not importable" in checks["versions.torch"]["note"]
        for name in ALL_CHECKS:
            if name.split(".")[0] in ("gpu", "numerics", "perf", "compile"):
                assert checks[name]["verdict"] == "skip", name
                assert "torch not importable" in checks[name]["note"], name
        return
    # A CPU torch: numerics still run on the CPU and must be right.
    assert re.search(r"is_available\(\) is False|CPU-only build", checks["gpu.visible"]["note"])
    assert checks["numerics.sdpa_attention"]["verdict"] == "pass"
    assert checks["numerics.matmul_bf16"]["verdict"] == "pass"
    assert checks["numerics.matmul_fp16"]["verdict"] in ("pass", "skip")
    assert checks["numerics.xformers_attention"]["verdict"] == "skip"
    compile_check = checks["compile.torch_compile"]
    if compile_check["verdict"] == "pass":
        assert "cache under --cache-dir" in compile_check["note"]
        assert any((cache / "inductor").rglob("*"))
    else:
        assert compile_check["verdict"] == "skip" and "C++ compiler" in compile_check["note"]


def test_require_gpu_turns_skips_into_failures(expect_file):
    proc = run_smoke("--expect", str(expect_file), "--require-gpu", "--only", "gpu,perf")
    assert_no_traceback(proc)
    assert proc.returncode == 1
    body = [line for line in proc.stdout.splitlines()[2:-1]]
    assert body and all(" FAIL " in line and "GPU required:" in line for line in body)


def test_host_mode_versions_never_fail(expect_file):
    proc = run_smoke("--expect", str(expect_file), "--host", "--only", "versions,comfyui")
    assert_no_traceback(proc)
    assert proc.returncode == 0, proc.stdout
    assert " FAIL " not in proc.stdout
    assert re.search(r"^versions\.xformers\s+WARN\s", proc.stdout, re.M)
    assert proc.stdout.strip().splitlines()[-1].startswith("smoke OK: ")


def test_payload_never_imports_kiln(tmp_path, expect_file):
    trap = tmp_path / "trap" / "kiln"
    trap.mkdir(parents=True)
    (trap / "__init__.py").write_text("raise SystemExit('the payload imported kiln')\n")
    from payload_env import PAYLOAD
    proc = run_smoke("--expect", str(expect_file), "--host", "--only", "versions",
                     env_extra={"PYTHONPATH": f"{PAYLOAD}:{trap.parent}"})
    assert proc.returncode == 0, proc.stderr
    for source in SMOKE.glob("*.py"):
        assert not re.search(r"^\s*(import|from)\s+kiln\b", source.read_text(), re.M), source


def test_only_the_command_line_entry_points_print():
    for source in SMOKE.glob("*.py"):
        if source.name not in ("cli.py", "preflight.py"):
            assert "print(" not in source.read_text(), source


def _usage(proc):
    assert_no_traceback(proc)
    assert proc.returncode == 2
    assert proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("smoke: "), proc.stderr
    return lines[0]


def test_missing_expect_file(tmp_path):
    line = _usage(run_smoke("--expect", str(tmp_path / "missing.json")))
    assert "expect file not found" in line


def test_malformed_expect_file(tmp_path):
    path = tmp_path / "e.json"
    path.write_text(json.dumps({"pins": {}}))
    assert "bad expect file" in _usage(run_smoke("--expect", str(path)))


def test_expect_not_json(tmp_path):
    path = tmp_path / "e.json"
    path.write_text("nope")
    assert "not JSON" in _usage(run_smoke("--expect", str(path)))


def test_unwritable_json_path(tmp_path, expect_file):
    target = tmp_path / "no-such-dir" / "out.json"
    line = _usage(run_smoke("--expect", str(expect_file), "--json", str(target)))
    assert "cannot write JSON report" in line
    assert not target.parent.exists()


def test_unknown_group(expect_file):
    assert "unknown group(s) nope" in _usage(run_smoke("--expect", str(expect_file), "--only", "gpu,nope"))


def test_expect_is_required():
    assert "--expect" in _usage(run_smoke())


def test_unusable_cache_dir(tmp_path, expect_file):
    blocker = tmp_path / "file"
    blocker.write_text("")
    line = _usage(run_smoke("--expect", str(expect_file), "--cache-dir", str(blocker / "sub")))
    assert "cannot use --cache-dir" in line


def test_runs_from_any_directory(tmp_path, expect_file):
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    proc = run_smoke("--expect", str(expect_file), "--host", "--only", "versions", cwd=elsewhere)
    assert proc.returncode == 0 and "versions.python" in proc.stdout
    assert not any(Path(elsewhere).iterdir())   # writes nothing unless asked
