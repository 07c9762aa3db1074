"""The ComfyUI stand-in's model handling, which the Z-Image engine test leans on: it must refuse what ComfyUI
refuses (a missing file, a DiT that is not Z-Image), and a text encoder of a type it does not serve."""

import json
import struct
import urllib.error
import urllib.request

import pytest

from tests.conftest import ROOT
from tests.standin.serving import standin_server
from tests.waiting import until

WORKFLOW = json.loads((ROOT / "images" / "workflows" / "z-image-turbo.json").read_text())


def _safetensors(path, tensors):
    header = {name: {"dtype": "BF16", "shape": list(shape), "data_offsets": [0, 0]} for name, shape in tensors.items()}
    raw = json.dumps(header).encode()
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(struct.pack("<Q", len(raw)) + raw)


def _models(root, dim=3840, vocab=151936):
    _safetensors(root / "diffusion_models" / "z_image_turbo_bf16.safetensors",
                 {"cap_embedder.1.weight": (dim, 2560), "layers.0.attention.qkv.weight": (3 * dim, dim)})
    _safetensors(root / "text_encoders" / "qwen_3_4b.safetensors", {"model.embed_tokens.weight": (vocab, 2560)})
    _safetensors(root / "vae" / "ae.safetensors", {"decoder.conv_in.weight": (512, 16, 3, 3)})


@pytest.fixture
def standin(tmp_path):
    with standin_server(tmp_path, f"kiln:\n  base_path: {tmp_path / 'models'}\n  vae: vae\n") as url:
        yield url, tmp_path


def _prompt(url, workflow):
    request = urllib.request.Request(url + "/prompt", json.dumps({"prompt": workflow}).encode(),
                                     {"Content-Type": "application/json"})
    try:
        answer = json.load(urllib.request.urlopen(request, timeout=10))
    except urllib.error.HTTPError as exc:
        return json.load(exc)
    # queued, as ComfyUI does: the entry appears in /history once the worker has run it
    return until(lambda: json.load(urllib.request.urlopen(f"{url}/history/{answer['prompt_id']}", timeout=10))
                 .get(answer["prompt_id"]), 30, "the prompt in /history")


def test_z_image_workflow_runs_and_saves_an_image_of_the_latent_size(standin):
    url, tmp = standin
    _models(tmp / "models")
    workflow = json.loads(json.dumps(WORKFLOW))
    workflow["7"]["inputs"].update(width=320, height=192)
    entry = _prompt(url, workflow)
    assert entry["status"]["completed"], entry["status"]
    [image] = entry["outputs"]["10"]["images"]
    png = urllib.request.urlopen(f"{url}/view?filename={image['filename']}&type=output", timeout=10).read()
    assert png[:8] == b"\x89PNG\r\n\x1a\n" and struct.unpack(">II", png[16:24]) == (320, 192)


def test_a_missing_model_file_is_refused_at_validation(standin):
    url, _ = standin
    answer = _prompt(url, WORKFLOW)
    assert answer["error"]["type"] == "prompt_outputs_failed_validation" and set(answer["node_errors"]) == {"1", "2", "3"}


@pytest.mark.parametrize("dim, vocab, node", [(2304, 151936, "1"), (3840, 32000, "2")])
def test_a_model_of_another_shape_is_not_recognised(standin, dim, vocab, node):
    url, tmp = standin
    _models(tmp / "models", dim=dim, vocab=vocab)
    entry = _prompt(url, WORKFLOW)
    [[start, _], [kind, detail]] = entry["status"]["messages"]  # ComfyUI's order: execution_start first
    assert start == "execution_start" and kind == "execution_error" and detail["node_id"] == node and "Could not detect model type" in detail["exception_message"]


def test_a_clip_type_loader_cannot_take_the_qwen_encoder(standin):
    url, tmp = standin
    _models(tmp / "models")
    workflow = json.loads(json.dumps(WORKFLOW))
    workflow["2"]["inputs"]["type"] = "stable_diffusion"
    entry = _prompt(url, workflow)
    assert entry["status"]["status_str"] == "error" and "unsupported CLIPLoader type" in str(entry["status"]["messages"])
