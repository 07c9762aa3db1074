"""Benchmark shim, loaded as a ComfyUI custom node: KilnBenchCompile compiles the diffusion model like
ComfyUI's TorchCompileModel (inductor, the same guard filter), with inductor options given as JSON, which
the stock node does not expose: {"triton.cudagraphs": true} is mode "reduce-overhead",
{"max_autotune": true} is "max-autotune-no-cudagraphs"; both together are "max-autotune"."""

import json


class KilnBenchCompile:
    CATEGORY = "kiln/bench"
    RETURN_TYPES = ("MODEL",)
    FUNCTION = "compile"

    @classmethod
    def INPUT_TYPES(cls):
        return {"required": {"model": ("MODEL",), "options": ("STRING", {"default": "{}"})}}

    def compile(self, model, options):
        from comfy_api.torch_helpers import set_torch_compile_wrapper
        from comfy_extras.nodes_torch_compile import skip_torch_compile_dict

        patched = model.clone(disable_dynamic=True)  # as the stock node does (no dynamic VRAM under compile)
        set_torch_compile_wrapper(model=patched, backend="inductor",
                                  options={"guard_filter_fn": skip_torch_compile_dict, **json.loads(options)})
        return (patched,)


NODE_CLASS_MAPPINGS = {"KilnBenchCompile": KilnBenchCompile}
