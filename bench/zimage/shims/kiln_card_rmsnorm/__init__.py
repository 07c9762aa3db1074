"""Benchmark shim, loaded as a ComfyUI custom node: with KILN_BENCH_CARD_RMSNORM=1 every RMSNorm takes
the path it takes on torch 2.3.1, which has neither torch.nn.RMSNorm nor torch.nn.functional.rms_norm:
ComfyUI then uses its own module, whose forward computes x * rsqrt(mean(x^2) + eps) * weight in plain
tensor ops. So a newer torch on the benchmark host measures what the image's torch would run.
Off by default; no nodes."""

import logging
import os

NODE_CLASS_MAPPINGS = {}

if os.environ.get("KILN_BENCH_CARD_RMSNORM") == "1":
    import torch

    import comfy.rmsnorm

    comfy.rmsnorm.rms_norm_torch = None

    def _card_forward(self, x):
        return comfy.rmsnorm.rms_norm(x, self.weight, self.eps if self.eps is not None else 1e-6)

    # ComfyUI's RMSNorm subclasses torch.nn.RMSNorm where it exists and calls its forward when no weight
    # cast is needed (weights already on the GPU): that forward is the one to replace
    torch.nn.RMSNorm.forward = _card_forward
    logging.warning("kiln bench: RMSNorm forced to the non-native path (as on torch 2.3.1)")
