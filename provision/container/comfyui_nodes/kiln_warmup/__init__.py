"""A ComfyUI custom node the image ships for its warm-up: inside the server process, it creates the
CUDA context, cuBLAS and cuDNN handles and primes the caching allocator, with no model files.
The warm-up submits a one-node prompt with it before reporting ready."""

import time


class KilnDeviceWarmup:
    CATEGORY = "kiln"
    RETURN_TYPES = ()
    OUTPUT_NODE = True
    FUNCTION = "warm"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"size": ("INT", {"default": 2048, "min": 64, "max": 8192})}}

    def warm(self, size):
        import torch
        import comfy.model_management as mm

        device = mm.get_torch_device()
        started = time.monotonic()
        dtype = torch.float16 if device.type == "cuda" else torch.float32
        x = torch.randn(size, size, device=device, dtype=dtype)
        (x @ x).sum().item()
        image = torch.randn(1, 16, 128, 128, device=device, dtype=dtype)
        torch.nn.functional.conv2d(image, torch.randn(16, 16, 3, 3, device=device, dtype=dtype)).sum().item()
        del x, image
        if device.type == "cuda":
            torch.cuda.synchronize()
        return {"ui": {"kiln_warmup": [{"device": str(device), "seconds": round(time.monotonic() - started, 3)}]}}


NODE_CLASS_MAPPINGS = {"KilnDeviceWarmup": KilnDeviceWarmup}
NODE_DISPLAY_NAME_MAPPINGS = {"KilnDeviceWarmup": "kiln device warm-up"}
