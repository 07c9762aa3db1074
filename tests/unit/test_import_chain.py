"""bench/import_chain.py: the import timer's tree read back into packages and who imported them, on a small
package tree made here and timed by Python's own import timer."""

import importlib.util
import subprocess
import sys

from tests.conftest import ROOT

spec = importlib.util.spec_from_file_location("import_chain", ROOT / "bench" / "import_chain.py")
import_chain = importlib.util.module_from_spec(spec)
spec.loader.exec_module(import_chain)


def timed_imports(tmp_path) -> str:
    files = {
        "app/__init__.py": "import app.models\n",
        "app/models/__init__.py": "import app.models.family\n",
        "app/models/family.py": "import heavy\nimport light\n",
        "heavy/__init__.py": "import time\nimport heavy.part\ntime.sleep(0.2)\n",
        "heavy/part.py": "import time\ntime.sleep(0.2)\n",
        "light.py": "x = 1\n",
    }
    for rel, text in files.items():
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(text)
    out = subprocess.run([sys.executable, "-X", "importtime", "-c", "import app"], cwd=tmp_path,
                         capture_output=True, text=True, check=True)
    return out.stderr


def test_the_heaviest_package_comes_first_with_its_importers_nearest_first(tmp_path):
    rows = import_chain.timer_rows(timed_imports(tmp_path))
    packages = import_chain.by_package(rows, top=3)

    assert packages[0]["package"] == "heavy"
    assert packages[0]["self_s"] >= 0.4   # its two modules' own times summed
    assert packages[0]["imported_by"] == ["app.models.family", "app.models", "app"]


def test_a_package_imported_at_the_top_has_no_importer(tmp_path):
    rows = import_chain.timer_rows(timed_imports(tmp_path))
    app = next(p for p in import_chain.by_package(rows, top=50) if p["package"] == "app")

    assert app["imported_by"] == []
    assert app["self_s"] < 0.2   # its own time, not what it imported
