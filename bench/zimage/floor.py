"""The compute floor of Z-Image-Turbo's sampling: FLOPs of the DiT's forward passes from its shapes.

Per forward pass (batch 1, cfg 1 so one pass per step; res_multistep evaluates the model once a step):

    F = sum over blocks b of  2 * T_b * W_b  +  4 * T_b^2 * d

W_b: weights of the block's token-wise linears (attention.qkv, attention.out, feed_forward.w1/w2/w3),
T_b: tokens the block runs on (noise_refiner: image tokens; context_refiner: caption tokens; layers:
both), d: attention width (heads x head_dim = 3840); 4*T^2*d is QK^T plus AV. Per-sample terms (the
adaLN modulation on the timestep embedding, the embedders) are under 0.1% and left out.
Image tokens = (H/16) * (W/16) (VAE downsamples 8x, patches are 2x2); caption tokens are padded to a
multiple of 32 (ComfyUI's pad_tokens_multiple for Z-Image).
"""

from __future__ import annotations

from dataclasses import dataclass
from math import prod

from kiln.models.synthetic import load_layout

TOKEN_WISE = ("attention.qkv.weight", "attention.out.weight", "feed_forward.w1.weight",
              "feed_forward.w2.weight", "feed_forward.w3.weight")
PAD_MULTIPLE = 32
SEQUENCE = {"noise_refiner": "image", "context_refiner": "caption", "layers": "joint"}


@dataclass(frozen=True)
class Floor:
    image_tokens: int
    caption_tokens: int
    params: int
    tflop_per_step: float
    steps: int
    matmul_tflops: float

    @property
    def tflop(self) -> float:
        return self.tflop_per_step * self.steps

    @property
    def seconds(self) -> float:
        return self.tflop / self.matmul_tflops

    def formula(self) -> str:
        return (f"{self.steps} steps x {self.tflop_per_step:.2f} TFLOP (image tokens {self.image_tokens}, caption "
                f"tokens {self.caption_tokens}, {self.params / 1e9:.2f} B parameters) / {self.matmul_tflops:.0f} "
                f"TFLOP/s = {self.seconds * 1e3:.0f} ms")


def padded(n: int, multiple: int = PAD_MULTIPLE) -> int:
    return -(-n // multiple) * multiple


def dit_blocks() -> tuple[int, dict[str, tuple[int, int, int]]]:
    """(all parameters, {block kind: (count, token-wise weights per block, attention width)})."""
    dit = next(f for f in load_layout().files if f.role == "diffusion_model")
    params, blocks = 0, {}
    for group in dit.groups:
        params += group.count * sum(prod(shape) for shape in group.tensors.values())
        kind = group.prefix.split(".")[0]
        if kind in SEQUENCE:
            weights = sum(prod(group.tensors[name]) for name in TOKEN_WISE)
            blocks[kind] = (group.count, weights, group.tensors["attention.out.weight"][0])
    return params, blocks


def compute_floor(width: int, height: int, caption_tokens: int, steps: int, matmul_tflops: float) -> Floor:
    image = (height // 16) * (width // 16)
    caption = padded(caption_tokens)
    tokens = {"image": image, "caption": caption, "joint": image + caption}
    params, blocks = dit_blocks()
    flop = 0.0
    for kind, (count, weights, d) in blocks.items():
        t = tokens[SEQUENCE[kind]]
        flop += count * (2 * t * weights + 4 * t * t * d)
    return Floor(image, caption, params, flop / 1e12, steps, matmul_tflops)
