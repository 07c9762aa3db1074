"""Table, summary line and JSON document."""

from __future__ import annotations

import json

import pytest

import payload_env  # noqa: F401
from smoke import report
from smoke.verdict import FAIL, PASS, SKIP, WARN, Check, summarize

CHECKS = [
    Check(PASS, measured="2.3.1+cu121", expected="2.3.1", note="matches pin",
          group="versions", name="torch", seconds=0.01),
    Check(WARN, measured=662.2, expected=">= 624", unit="TFLOPS", note="85% of ceiling",
          group="perf", name="matmul_fp16", seconds=0.4),
    Check(SKIP, expected=">= 1", note="no GPU", group="gpu", name="visible"),
    Check(FAIL, measured=0.000207, expected="<= 0.002", unit="rel", note="x",
          group="numerics", name="matmul_fp16"),
]


def test_table_has_header_rule_and_rows():
    lines = report.render_table(CHECKS).splitlines()
    assert lines[0].split() == ["check", "verdict", "measured", "expected", "note"]
    assert set(lines[1].replace(" ", "")) == {"-"}
    assert len(lines) == 2 + len(CHECKS)
    assert lines[2].split()[:4] == ["versions.torch", "PASS", "2.3.1+cu121", "2.3.1"]
    assert "662.2 TFLOPS" in lines[3] and "WARN" in lines[3]
    assert lines[4].split()[:3] == ["gpu.visible", "SKIP", "-"]


def test_columns_are_aligned():
    lines = report.render_table(CHECKS).splitlines()
    column = lines[0].index("verdict")
    for line in lines[2:]:
        assert line[column:column + 4] in ("PASS", "WARN", "SKIP", "FAIL")


@pytest.mark.parametrize("value, unit, text", [
    (None, "", "-"), (4272.81, "GB/s", "4272.8 GB/s"), (0.000207, "rel", "0.000207"),
    ("ok", "", "ok"), (150.1, "GB", "150.1 GB"), (3, "x", "3 x"),
])
def test_format_value(value, unit, text):
    assert report.format_value(value, unit) == text


def test_summary_line():
    summary = summarize(CHECKS, 12.345)
    assert report.summary_line(summary) == "smoke FAILED: 1 pass, 1 warn, 1 fail, 1 skip in 12.3 s"
    ok = summarize(CHECKS[:3], 1.0)
    assert report.summary_line(ok).startswith("smoke OK: ")


def test_document_schema(tmp_path):
    summary = summarize(CHECKS, 2.0)
    doc = report.document(CHECKS, summary, {"python": "3.11.7"})
    path = tmp_path / "out.json"
    report.write_json(str(path), doc)
    loaded = json.loads(path.read_text())
    assert loaded["schema"] == 1
    assert loaded["summary"] == {"pass": 1, "warn": 1, "fail": 1, "skip": 1, "seconds": 2.0}
    assert loaded["env"] == {"python": "3.11.7"}
    assert [c["name"] for c in loaded["checks"]] == ["torch", "matmul_fp16", "visible", "matmul_fp16"]
    assert set(loaded["checks"][0]) == {"group", "name", "verdict", "measured", "expected",
                                        "unit", "note", "seconds"}
    assert not (tmp_path / "out.json.tmp").exists()


def test_check_writable(tmp_path):
    report.check_writable(str(tmp_path / "ok.json"))
    with pytest.raises(OSError):
        report.check_writable(str(tmp_path / "missing-dir" / "x.json"))
    with pytest.raises(OSError):
        report.check_writable(str(tmp_path))
