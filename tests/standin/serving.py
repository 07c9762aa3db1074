"""The ComfyUI stand-in as a local server for tests that talk to it over HTTP."""

from __future__ import annotations

import contextlib
import subprocess
import sys
import urllib.request
from pathlib import Path
from typing import Iterator

from tests.engine.registry import free_port
from tests.waiting import until

STANDIN = Path(__file__).resolve().parent / "comfyui"


def _answers(url: str) -> bool:
    try:
        urllib.request.urlopen(url, timeout=1).close()
    except OSError:
        return False
    return True


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
        until(lambda: _answers(url + "/system_stats"), 60, "the stand-in answering /system_stats")
        yield url
    finally:
        proc.terminate()
        proc.wait(timeout=10)
