"""The layer rule: data, gate and render (and the identity module) never reach the engine, processes,
uv or HTTP, directly or through another kiln module. Checked on the source and on a live import."""

import ast
import subprocess
import sys
from pathlib import Path

import pytest

from tests.conftest import ROOT

PURE = ("kiln/data", "kiln/gate", "kiln/render", "kiln/identity.py")
FORBIDDEN = ("docker", "subprocess", "uv", "urllib", "urllib3", "http", "requests", "socket",
             "kiln.engine", "kiln.sources", "kiln.lock.index", "kiln.lock.resolve", "kiln.lock.wheelmeta")


def _module(path: Path) -> str:
    rel = path.relative_to(ROOT).with_suffix("")
    parts = rel.parts[:-1] if rel.name == "__init__" else rel.parts
    return ".".join(parts)


def _path(module: str) -> Path | None:
    base = ROOT.joinpath(*module.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    package = _module(path) if path.name == "__init__.py" else _module(path).rpartition(".")[0]
    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names}
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                base = ".".join(package.split(".")[:len(package.split(".")) - node.level + 1] + ([base] if base else []))
            found.add(base)
            found |= {f"{base}.{alias.name}" for alias in node.names if _path(f"{base}.{alias.name}")}
    return found


def _reach(start: Path) -> dict[str, str]:
    """Every module reachable from start: {imported name: the kiln module that imports it}."""
    seen, todo, reached = set(), [start], {}
    while todo:
        path = todo.pop()
        if path in seen:
            continue
        seen.add(path)
        for name in _imports(path):
            reached.setdefault(name, _module(path))
            inner = _path(name) if name.startswith("kiln") else None
            if inner:
                todo.append(inner)
    return reached


def _pure_files() -> list[Path]:
    files = []
    for entry in PURE:
        path = ROOT / entry
        files += sorted(path.rglob("*.py")) if path.is_dir() else [path]
    return files


@pytest.mark.parametrize("path", _pure_files(), ids=lambda p: str(p.relative_to(ROOT)))
def test_pure_stage_reaches_no_io_layer(path):
    reached = _reach(path)
    bad = {name: via for name, via in reached.items()
           if any(name == f or name.startswith(f + ".") for f in FORBIDDEN)}
    assert not bad, f"{path.relative_to(ROOT)} reaches {bad}"


def test_the_rule_sees_an_indirect_import(tmp_path):
    """The scan follows kiln imports: engine code reached through a kiln module is found."""
    reached = _reach(ROOT / "kiln" / "engine" / "job.py")
    assert "docker" in reached and "subprocess" in reached


def test_importing_the_pure_stages_loads_no_io_module():
    # subprocess is left to the source scan: packaging.tags itself imports it
    modules = sorted({_module(p) for p in _pure_files()})
    code = ("import sys\n" + "".join(f"import {m}\n" for m in modules) +
            "bad = [m for m in sys.modules if m.split('.')[0] in ('docker', 'urllib3', 'requests', 'uv') "
            "or m in ('http.client', 'urllib.request') or m.startswith(('kiln.engine', 'kiln.sources'))]\n"
            "print(','.join(sorted(bad)))\n")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, cwd=ROOT, check=True)
    assert out.stdout.strip() == ""



DATA_MAY_IMPORT = ("kiln.data", "kiln.errors")


def _upward(path: Path) -> set[str]:
    """The kiln modules a data-layer file imports from above the data layer."""
    return {name for name in _imports(path) if name.startswith("kiln.")
            and not any(name == a or name.startswith(a + ".") for a in DATA_MAY_IMPORT)}


@pytest.mark.parametrize("path", sorted((ROOT / "kiln" / "data").rglob("*.py")), ids=lambda p: str(p.relative_to(ROOT)))
def test_the_data_layer_imports_nothing_above_it(path):
    """kiln/data is the bottom layer: names (identity), rules and stages build on it, never the reverse."""
    assert _upward(path) == set()


def test_the_data_rule_sees_an_upward_import():
    # the launch line needs the image's paths from identity, which is why it lives above the data layer
    assert "kiln.identity" in _upward(ROOT / "kiln" / "launch.py")
