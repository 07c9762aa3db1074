"""Benchmark shim, loaded as a ComfyUI custom node: with KILN_BENCH_CARD_RMSNORM=1 ComfyUI's RMSNorm
takes the path it takes on torch 2.3.1 (no torch.nn.functional.rms_norm there), so a newer torch on
the benchmark host can measure what the image's torch would run. Off by default; no nodes."""

import logging
import os

NODE_CLASS_MAPPINGS = {}

if os.environ.get("KILN_BENCH_CARD_RMSNORM") == "1":
    import comfy.rmsnorm

    comfy.rmsnorm.rms_norm_torch = None
    logging.warning("kiln bench: RMSNorm forced to the non-native path (as on torch 2.3.1)")
