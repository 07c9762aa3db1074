"""Shared fixtures: the real project, a disposable copy of it, and running the CLI like a user."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from kiln.project import Project
from tests.forked_tasks import TaskServer

ROOT = Path(__file__).resolve().parent.parent
FIXTURES = Path(__file__).resolve().parent / "fixtures"
PROJECT_FILES = ("tasks.py", "console.py", "versions.lock", "gpus.yaml", "images", "templates", "provision")


# Tiers by folder, so a new test file is marked by where it lives: `-m "not engine and not slow"` is the
# fast path (no Docker Engine needed). `network` is marked where a test needs it.
TIERS = {"engine": ("engine",), "slow": ("slow", "engine")}


def pytest_collection_modifyitems(items) -> None:
    tests = Path(__file__).resolve().parent
    for item in items:
        folder = Path(item.fspath).resolve().relative_to(tests).parts[0]
        for marker in TIERS.get(folder, ()):
            item.add_marker(marker)


@pytest.fixture
def project() -> Project:
    return Project(ROOT)


@pytest.fixture
def project_copy(tmp_path: Path) -> Path:
    """A copy of the project's data and tasks that a test may edit."""
    root = tmp_path / "proj"
    for name in PROJECT_FILES:
        src, dest = ROOT / name, root / name
        dest.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dest, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(src, dest)
    return root


_SERVERS: list[TaskServer] = []


def invoke(*args: str, root: Path = ROOT, cwd: Path | None = None, env: dict[str, str] | None = None,
           timeout: float = 300, fresh: bool = False) -> subprocess.CompletedProcess:
    """Run a project's tasks as `bin/invoke` does (its tasks.py as the program), capturing both streams; env
    adds to (or overrides) this process's environment. The run is forked from this test run's task server,
    which imported the library once (tests/forked_tasks.py); fresh=True starts a new interpreter, as a shell
    does, for what happens before the script runs."""
    if not fresh:
        if not _SERVERS:
            _SERVERS.append(TaskServer())
        return _SERVERS[0].invoke(*args, root=root, cwd=cwd, env=env, timeout=timeout)
    env = {**os.environ, "PYTHONPATH": str(ROOT), **(env or {})}
    cmd = [sys.executable, str(root / "tasks.py"), *args]
    return subprocess.run(cmd, capture_output=True, text=True, cwd=cwd or root, env=env, timeout=timeout)


def pytest_sessionfinish() -> None:
    while _SERVERS:
        _SERVERS.pop().close()
