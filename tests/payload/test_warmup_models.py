"""The warm-up's decision when the image's models are not in the cache: an error that keeps the server
unhealthy and names the fix, unless serving without them was asked for."""

from __future__ import annotations

import json

import pytest

import payload_env  # noqa: F401  (puts the payload on sys.path)
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
