"""Run by the opt-in test with a real ComfyUI tree's Python (cwd = the tree): load the files under
MODELS_DIR with ComfyUI's own loaders on the CPU and print one JSON line of what it detected and whether
a forward pass stays finite. Never imported by the toolkit."""

import ast
import json
import logging
import re
import sys

models = sys.argv[1]
sys.argv = [sys.argv[0], "--cpu"]
import comfy.options  # noqa: E402  (ComfyUI reads its command line at import)

comfy.options.enable_args_parsing()
import torch  # noqa: E402
import comfy.sd  # noqa: E402
import comfy.utils  # noqa: E402


class Missing(logging.Handler):
    """ComfyUI reports keys a file lacks only as a log line: 'unet missing: [...]' / 'clip missing: [...]'."""

    def __init__(self):
        super().__init__()
        self.found = {}

    def emit(self, record):
        found = re.match(r"(unet|clip) missing: (\[.*\])", record.getMessage())
        if found:
            self.found[found.group(1)] = ast.literal_eval(found.group(2))


missing = Missing()
logging.getLogger().addHandler(missing)
logging.getLogger().setLevel(logging.INFO)
report = {}
with torch.no_grad():
    patcher = comfy.sd.load_diffusion_model(f"{models}/diffusion_models/z_image_turbo_bf16.safetensors")
    net = patcher.model.diffusion_model
    out = patcher.model.apply_model(torch.randn(1, 16, 32, 32), torch.tensor([0.5]),
                                    c_crossattn=torch.randn(1, 12, 2560) * 0.5, num_tokens=12)
    report["diffusion_model"] = {"config": type(patcher.model.model_config).__name__, "dim": net.dim,
                                 "layers": len(net.layers), "missing": missing.found.get("unet", []),
                                 "finite": bool(torch.isfinite(out).all())}
    del patcher, net

    clip = comfy.sd.load_clip([f"{models}/text_encoders/qwen_3_4b.safetensors"],
                              clip_type=comfy.sd.CLIPType.LUMINA2)
    cond = clip.encode_from_tokens_scheduled(clip.tokenize("a red bicycle leaning on a white wall"))[0][0]
    report["text_encoder"] = {"model": type(clip.cond_stage_model).__name__,
                              "tokenizer": type(clip.tokenizer).__name__, "missing": missing.found.get("clip", []),
                              "shape": list(cond.shape), "finite": bool(torch.isfinite(cond).all())}
    del clip, cond

    vae = comfy.sd.VAE(sd=comfy.utils.load_torch_file(f"{models}/vae/ae.safetensors"))
    image = vae.decode(torch.randn(1, 16, 32, 32))
    report["vae"] = {"model": type(vae.first_stage_model).__name__, "latent_channels": vae.latent_channels,
                     "image": list(image.shape), "finite": bool(torch.isfinite(image).all())}
print(json.dumps(report))
