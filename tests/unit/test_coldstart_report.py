"""bench/coldstart_report.py on the committed H200 record of the prefetch levers: what docs/cold-start.md quotes."""

import importlib.util
import subprocess
import sys

from tests.conftest import ROOT

G7 = ROOT / "docs/gpu-validation/cuda13/h200-coldstart-g7.json"


def printed() -> tuple[dict[str, list[str]], list[str]]:
    """The table's rows as {lever: cells}, and the summary lines under it."""
    out = subprocess.run([sys.executable, str(ROOT / "bench/coldstart_report.py"), str(G7)],
                         capture_output=True, text=True, check=True).stdout.splitlines()
    header = next(line for line in out if line.startswith("| run |"))
    columns = [c.strip() for c in header.strip("|").split("|")]
    rows = {}
    for line in out:
        if line.startswith("| g7 |"):
            cells = [c.strip() for c in line.strip("|").split("|")]
            rows[cells[1]] = dict(zip(columns, cells))
    return rows, [line for line in out if line.startswith("g7 ")]


def test_the_prefetch_column_says_when_it_ended_and_what_was_cached():
    rows, _ = printed()
    assert rows["prefetch"]["prefetch"] == "0.5 s, 0.00 GB/s, 20.69 GB cached"
    assert rows["cold-prefetch"]["prefetch"] == "15.2 s, 1.37 GB/s"
    assert rows["cold-prefetch-1"]["prefetch"] == "14.5 s, 1.43 GB/s"
    assert rows["baseline"]["prefetch"] == "-"


def test_a_one_round_lever_gets_its_ratio_against_the_reference_median():
    _, lines = printed()
    assert ("g7 cold-prefetch: start to warm 30.82 s (one round) = 3.08x the 10 s goal, 0.74x baseline-cold (2 rounds)"
            in lines)
    assert "g7 baseline-cold: start to warm 39.91 / 43.23 s, median 41.57 s = 4.16x the 10 s goal" in lines


def _cell(prefetch: dict) -> str:
    spec = importlib.util.spec_from_file_location("coldstart_report", ROOT / "bench/coldstart_report.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module._prefetch({"prefetch": prefetch})


def test_a_prefetch_still_reading_or_reading_nothing_says_so():
    start = [0.1, "kiln: phase prefetch: reading 3 model file(s), 20.69 GB, into the page cache beside the start"]
    assert _cell({"ended": False, "lines": [start]}) == "0.1 s, not ended"
    none = [0.2, "kiln: phase prefetch: none: the deployment's fetch is writing the model files"]
    assert _cell({"ended": True, "lines": [none]}) == "0.2 s, none: the deployment's fetch is writing the model files"
