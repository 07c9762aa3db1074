"""Benchmark shim, loaded as a ComfyUI custom node: with KILN_BENCH_SDPA=cudnn|efficient, the named PyTorch
SDPA backend goes first in ComfyUI's backend priority (comfy/ops.py puts flash attention first), so one
backend can be measured against the other with everything else equal. Off by default; no nodes."""

import logging
import os

NODE_CLASS_MAPPINGS = {}

_FIRST = os.environ.get("KILN_BENCH_SDPA", "")
if _FIRST:
    from torch.nn.attention import SDPBackend

    import comfy.ops

    wanted = {"cudnn": SDPBackend.CUDNN_ATTENTION, "efficient": SDPBackend.EFFICIENT_ATTENTION,
              "flash": SDPBackend.FLASH_ATTENTION}[_FIRST]
    priority = comfy.ops.SDPA_BACKEND_PRIORITY  # read at every call: reorder the same list in place
    priority.remove(wanted)
    priority.insert(0, wanted)
    logging.warning("kiln bench: SDPA backend priority %s", [b.name for b in priority])
