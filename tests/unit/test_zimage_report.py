"""bench/zimage_report.py on the committed H200 records: what a reader of docs/performance.md sees."""

import importlib.util
import subprocess
import sys

import pytest

from tests.conftest import ROOT

CUDA13 = sorted((ROOT / "docs/gpu-validation/cuda13").glob("h200-zimage-levers-g*.json"))
ZIMAGE = sorted((ROOT / "docs/gpu-validation/zimage").glob("h200-zimage-g*.json"))


@pytest.fixture(scope="module")
def report():
    spec = importlib.util.spec_from_file_location("zimage_report", ROOT / "bench/zimage_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def printed(report, paths, capsys) -> tuple[dict, list[str]]:
    """The report's table as {(run, lever): {column: cell}}, and the lines after it."""
    assert report.main([str(p) for p in paths]) == 0
    table, _, after = capsys.readouterr().out.partition("\n\n")
    lines = table.splitlines()
    header = [c.strip() for c in lines[0].strip("|").split("|")]
    rows = [dict(zip(header, (c.strip() for c in line.strip("|").split("|")))) for line in lines[2:]]
    return {(row["run"], row["lever"]): row for row in rows}, after.splitlines()


def test_the_current_stack_records_are_the_three_runs():
    assert [p.name for p in CUDA13] == [f"h200-zimage-levers-g{n}.json" for n in (6, 7, 8)]


def test_a_lever_of_two_runs_keeps_both_rows(report, capsys):
    rows, _ = printed(report, CUDA13, capsys)
    assert rows[("g6", "baseline")]["p50 s"] == "1.406" and rows[("g6", "baseline")]["floor ms"] == "622"
    assert rows[("g7", "baseline")]["p50 s"] == "1.335" and rows[("g7", "baseline")]["floor ms"] == "645"
    assert rows[("g6", "baseline")]["latent SNR dB"] == "ref" and rows[("g6", "baseline")]["within bound"] == "-"
    assert len(rows) == 18 and rows[("g8", "baseline")]["p50 s"] == "1.390"
    rendered = rows[("g8", "serving-defaults-smoke")]   # the image as kiln renders it
    assert (rendered["p50 s"], rendered["x floor"], rendered["save ms"], rendered["KB"]) == ("1.203", "1.88", "194", "3074")


def test_the_rendered_output_lever_reads_as_measured(report, capsys):
    row = printed(report, CUDA13, capsys)[0][("g6", "out-png0")]
    assert (row["p50 s"], row["x floor"], row["sampling ms"], row["sampling x floor"]) == \
        ("1.160", "1.86", "928", "1.491")
    assert (row["save ms"], row["KB"], row["latent SNR dB"], row["image PSNR dB"]) == ("176", "3074", "inf", "51.14")
    assert row["within bound"] == "yes"


def test_fp8_is_out_of_the_quality_bound(report, capsys):
    rows, _ = printed(report, CUDA13, capsys)
    fp8 = rows[("g7", "fp8-compile")]
    assert (fp8["p50 s"], fp8["sampling x floor"], fp8["latent SNR dB"], fp8["within bound"]) == \
        ("0.926", "0.989", "21.23", "no")
    assert rows[("g6", "fp8-matmul")]["within bound"] == "no"
    assert rows[("g6", "out-jpeg95")]["within bound"] == "no" and rows[("g6", "sdpa-cudnn")]["within bound"] == "yes"


def test_a_skipped_lever_says_why(report, capsys):
    row = printed(report, CUDA13, capsys)[0][("g7", "compile-autotune")]
    assert row["p50 s"] == "out of time in this run"


def test_the_ratio_lines(report, capsys):
    _, lines = printed(report, CUDA13, capsys)
    assert ("floor (g6): 8 steps x 55.12 TFLOP (image tokens 4096, caption tokens 32, 6.15 B parameters) "
            "/ 709 TFLOP/s = 622 ms") in lines
    assert any(line.startswith("g7/compile: p50 1.163 s = 0.871x baseline (g7), 1.80x its run's floor")
               for line in lines)
    assert ("fastest measured: g7/fp8-compile, p50 0.926 s = 1.43x floor, sampling 638 ms = 0.989x floor "
            "(out of the quality bound)") in lines
    assert ("fastest within the quality bound: g8/winners-lossless, p50 1.026 s = 1.60x floor, sampling 771 ms = "
            "1.205x floor (within the quality bound)") in lines


def test_the_older_records_still_read(report, capsys):
    """The tables of the torch 2.11 / ComfyUI v0.3.74 section: runs without a baseline are set against g1's."""
    rows, lines = printed(report, ZIMAGE, capsys)
    assert rows[("g1", "baseline")]["p50 s"] == "1.425" and rows[("g3", "gpu-only-compile-warm")]["p50 s"] == "1.121"
    assert rows[("g1", "card-rmsnorm")]["p50 s"] == "1.466" and rows[("g3", "card-rmsnorm")]["p50 s"] == "1.461"
    assert rows[("g2", "gpu-only")]["latent SNR dB"] == "-" and rows[("g2", "gpu-only")]["fetch ms"] == "-"
    assert any(line.startswith("g2/gpu-only: p50 1.308 s = 0.918x baseline (g1)") for line in lines)
    assert not any(line.startswith("fastest") for line in lines)


def test_the_command_line_runs_without_the_bench_dependencies():
    """The report imports nothing the GPU host's bench needs (aiohttp, torch): it runs in the toolkit's venv."""
    done = subprocess.run([sys.executable, str(ROOT / "bench/zimage_report.py"), *map(str, CUDA13)],
                          capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert "| g6 | out-png0 | 1.160 |" in done.stdout


def test_the_performance_page_shows_what_the_report_prints(report, capsys):
    """docs/performance.md's lever table and ratio lines are the report's output on the committed records."""
    assert report.main([str(p) for p in CUDA13]) == 0
    page = (ROOT / "docs" / "performance.md").read_text()
    table, _, lines = capsys.readouterr().out.partition("\n\n")
    assert table.strip() in page
    assert [line for line in lines.splitlines() if f"    {line}\n" not in page] == []


@pytest.mark.parametrize("argv", [[], ["docs/gpu-validation/cuda13/no-such-run.json"]])
def test_no_record_or_a_missing_one_is_one_line_and_exit_2(report, capsys, argv):
    assert report.main(argv) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and err.startswith("error: ") and "JSON records" in err
