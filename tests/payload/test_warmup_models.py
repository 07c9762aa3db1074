"""The warm-up's decision when the image's models are not in the cache: an error that keeps the server
unhealthy and names the fix, unless serving without them was asked for; a wait while a deployment's fetch
beside the server says they are arriving."""

from __future__ import annotations

import json
import threading
import time

import pytest

import payload_env  # noqa: F401  (puts the payload on sys.path)
from serve.model_files import wait_for_fetch
from serve.warmup import warm_workflow

FACTS = {"warmup": {"models": [{"folder": "vae", "file": "ae.safetensors"}]}}


@pytest.fixture
def workflow(tmp_path):
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps({"1": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}}}))
    return path


def test_missing_models_are_an_error_naming_the_fix(workflow, tmp_path, monkeypatch):
    monkeypatch.delenv("KILN_SERVE_WITHOUT_MODELS", raising=False)
    with pytest.raises(RuntimeError, match=r"models not in the cache: vae/ae.safetensors .*invoke models.fetch"):
        warm_workflow("http://127.0.0.1:9", FACTS, workflow, tmp_path / "models", 1)


def test_serving_without_models_is_an_explicit_choice(workflow, tmp_path, monkeypatch):
    monkeypatch.setenv("KILN_SERVE_WITHOUT_MODELS", "1")
    result = warm_workflow("http://127.0.0.1:9", FACTS, workflow, tmp_path / "models", 1)
    assert result == {"workflow": "skipped: models not in the cache: vae/ae.safetensors"}


BOOT_ID = "/proc/sys/kernel/random/boot_id"


def _later(seconds: float, *actions):
    def run():
        time.sleep(seconds)
        for action in actions:
            action()
    thread = threading.Thread(target=run)
    thread.start()
    return thread


def test_the_warm_up_waits_for_the_fetch_to_end_even_where_an_older_file_is_there(tmp_path):
    """The deployment's fetch runs beside the server: its marker names this boot; the fetch replaces the older
    file of the same name with the verified one, then takes the marker away. Nothing is read before."""
    models, marker = tmp_path / "models", tmp_path / "models" / ".kiln-arriving"
    (models / "vae").mkdir(parents=True)
    (models / "vae" / "ae.safetensors").write_bytes(b"older")
    marker.write_text(open(BOOT_ID).read())
    started = time.monotonic()
    done = _later(0.6, lambda: (models / "vae" / "ae.safetensors").write_bytes(b"verified"), marker.unlink)
    wait_for_fetch(marker, poll_s=0.05)
    done.join()
    assert time.monotonic() - started >= 0.6 and (models / "vae" / "ae.safetensors").read_bytes() == b"verified"


def test_a_failed_fetch_or_a_marker_of_another_boot_is_not_waited_on(workflow, tmp_path, capsys, monkeypatch):
    monkeypatch.delenv("KILN_SERVE_WITHOUT_MODELS", raising=False)
    models, marker = tmp_path / "models", tmp_path / "models" / ".kiln-arriving"
    models.mkdir()
    marker.write_text("an-earlier-boot\n")
    started = time.monotonic()
    with pytest.raises(RuntimeError, match="models not in the cache"):
        warm_workflow("http://127.0.0.1:9", FACTS, workflow, models, 30, marker)
    assert time.monotonic() - started < 5 and "waiting for" not in capsys.readouterr().out
    marker.write_text(open(BOOT_ID).read())   # this boot's fetch, which then fails: the marker goes, no file came
    done = _later(0.5, marker.unlink)
    with pytest.raises(RuntimeError, match="models not in the cache: vae/ae.safetensors"):
        warm_workflow("http://127.0.0.1:9", FACTS, workflow, models, 30, marker)
    done.join()
    assert time.monotonic() - started < 10
    assert "kiln: phase warm-up: waiting for the deployment's fetch of 1 model file(s)" in capsys.readouterr().out


def test_an_older_file_of_the_same_name_is_not_read_while_the_fetch_runs(workflow, tmp_path, capsys):
    """Every file is there, an older one among them: the warm-up still waits until the fetch ended, then runs
    (here against no server, so the run's connection error is what ends it)."""
    models, marker = tmp_path / "models", tmp_path / "models" / ".kiln-arriving"
    (models / "vae").mkdir(parents=True)
    (models / "vae" / "ae.safetensors").write_bytes(b"older")
    marker.write_text(open(BOOT_ID).read())
    started = time.monotonic()
    done = _later(0.6, marker.unlink)
    with pytest.raises(OSError):
        warm_workflow("http://127.0.0.1:9", FACTS, workflow, models, 5, marker)
    done.join()
    assert time.monotonic() - started >= 0.6
    assert "waiting for the deployment's fetch of 1 model file(s)" in capsys.readouterr().out
