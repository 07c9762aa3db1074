"""bench/importtime.py and bench/import_chain.py: Python's import timer read back (own time by package, the
program's slowest imports, who pulled a package in), on a small package tree made here and timed by Python's
own import timer."""

import importlib.util
import subprocess
import sys

from tests.conftest import ROOT

sys.path.insert(0, str(ROOT / "bench"))
import importtime  # noqa: E402

spec = importlib.util.spec_from_file_location("import_chain", ROOT / "bench" / "import_chain.py")
import_chain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_chain)


def timed_imports(tmp_path) -> list[str]:
    files = {
        "app/__init__.py": "import app.models\n",
        "app/models/__init__.py": "import app.models.family\n",
        "app/models/family.py": "import heavy.part\nimport light\n",   # heavy's own line sits under heavy.part
        "heavy/__init__.py": "import time\ntime.sleep(0.2)\n",
        "heavy/part.py": "import time\ntime.sleep(0.2)\n",
        "light.py": "x = 1\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import app"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    return out.stderr.splitlines()


def test_a_packages_own_time_sums_its_modules(tmp_path):
    own = importtime.own_by_package(importtime.rows(timed_imports(tmp_path)))

    assert next(iter(own)) == "heavy" and own["heavy"] >= 0.4   # its two modules' own times summed
    assert own["app"] < 0.2                                       # not what it imported


def test_the_programs_slowest_import_counts_what_it_pulled_in(tmp_path):
    [top] = importtime.slowest_top_level(importtime.rows(timed_imports(tmp_path)), 1)

    assert top.module == "app" and top.depth == 0 and top.cumulative_s >= 0.4


def test_a_package_names_the_modules_outside_it_that_pulled_it_in_nearest_first(tmp_path):
    packages = import_chain.by_package(importtime.rows(timed_imports(tmp_path)), top=50)
    by_name = {p["package"]: p for p in packages}

    assert packages[0]["package"] == "heavy"
    assert by_name["heavy"]["imported_by"] == ["app.models.family", "app.models", "app"]
    assert by_name["app"]["imported_by"] == []


def test_lines_that_are_not_the_timers_are_passed_over():
    table = importtime.rows(["ComfyUI says hello", "import time: self [us] | cumulative | imported package",
                             "import time:       150 |        250 |   json.decoder", "import time: x | y | z"])

    assert table == [importtime.Row("json.decoder", 1, 0.00015, 0.00025)]


def test_the_median_of_several_starts_keeps_the_first_starts_tree():
    def start(seconds: float) -> list:
        return [importtime.Row("heavy", 1, seconds, seconds), importtime.Row("app", 0, 0.01, seconds + 0.01)]

    [heavy, app] = import_chain.median_table([start(0.3), start(0.1), start(0.2)])

    assert heavy == importtime.Row("heavy", 1, 0.2, 0.2) and app.module == "app" and app.depth == 0
