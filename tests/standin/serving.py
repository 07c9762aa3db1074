"""The ComfyUI stand-in as a local server for tests that talk to it over HTTP."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import time
import urllib.request
from pathlib import Path
from typing import Iterator

import pytest

from tests.engine.registry import free_port

STANDIN = Path(__file__).resolve().parent / "comfyui"


@contextlib.contextmanager
def standin_server(tmp_path: Path, model_paths: str, env: dict | None = None) -> Iterator[str]:
    """Serve the stand-in with `model_paths` as its extra_model_paths.yaml; yield its URL once it answers."""
    (tmp_path / "paths.yaml").write_text(model_paths)
    port = free_port()
    proc = subprocess.Popen([sys.executable, str(STANDIN / "main.py"), "--port", str(port), "--extra-model-paths-config",
                             str(tmp_path / "paths.yaml"), "--output-directory", str(tmp_path / "out")],
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, cwd=STANDIN, env=env)
    url = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(url + "/system_stats", timeout=1)
                break
            except OSError:
                time.sleep(0.1)
        else:
            pytest.fail("the stand-in did not answer /system_stats within 10 s")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
