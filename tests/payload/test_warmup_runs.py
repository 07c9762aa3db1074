"""How much the warm-up runs before ready: the image's facts say how many workflow runs and at how many
sampler steps; the served workflow (warmup.json, which smoke also runs) keeps its own steps."""

from __future__ import annotations

import json

import pytest

import payload_env  # noqa: F401  (puts the payload on sys.path)
import serve.warmup as warmup

GRAPH = {"1": {"class_type": "VAELoader", "inputs": {"vae_name": "ae.safetensors"}},
         "2": {"class_type": "KSampler", "inputs": {"steps": 8, "seed": 1, "cfg": 1.0}},
         "3": {"class_type": "ModelSamplingAuraFlow", "inputs": {"shift": 3}},
         "4": {"class_type": "BasicScheduler", "inputs": {"steps": 8, "scheduler": "simple"}},
         "5": {"class_type": "FrameInterpolation", "inputs": {"steps": 4}}}   # a steps input of no sampler


@pytest.fixture
def ran(tmp_path, monkeypatch):
    (tmp_path / "models" / "vae").mkdir(parents=True)
    (tmp_path / "models" / "vae" / "ae.safetensors").write_bytes(b"x")
    path = tmp_path / "warmup.json"
    path.write_text(json.dumps(GRAPH))
    prompts = []
    monkeypatch.setattr(warmup, "run_prompt", lambda url, graph, limit: prompts.append(graph) or 0.5)

    def run(plan: dict) -> dict:
        facts = {"warmup": {"models": [{"folder": "vae", "file": "ae.safetensors"}], **plan}}
        return {"result": warmup.warm_workflow("http://127.0.0.1:9", facts, path, tmp_path / "models", 1),
                "prompts": prompts, "file": json.loads(path.read_text())}
    return run


def test_a_one_step_warm_up_runs_the_sampler_once_at_one_step_and_leaves_the_workflow_alone(ran):
    out = ran({"runs": 1, "steps": 1})
    assert [p["2"]["inputs"]["steps"] for p in out["prompts"]] == [1]
    assert out["result"] == {"workflow": "warmup.json", "runs": 1, "steps": 1, "first_s": 0.5}
    assert out["prompts"][0]["4"]["inputs"]["steps"] == 1 and out["prompts"][0]["5"] == GRAPH["5"]
    assert out["file"]["2"]["inputs"]["steps"] == 8 and out["prompts"][0]["3"] == GRAPH["3"]


def test_without_a_plan_the_warm_up_runs_the_workflow_twice_at_its_own_steps(ran):
    out = ran({})
    assert [p["2"]["inputs"]["steps"] for p in out["prompts"]] == [8, 8]
    assert out["result"]["second_s"] == 0.5 and out["result"]["runs"] == 2
