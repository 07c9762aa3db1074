"""The facts an image carries (kiln.json), made from the subject."""

from __future__ import annotations

from kiln import __version__
from kiln.data.facts import ImageFacts
from kiln.launch import launch_flags
from kiln.data.subject import Subject


def image_facts(s: Subject, baked_models: str | None = None) -> ImageFacts:
    st, gpu = s.lock.stack, s.gpu
    measured = {f"measured_{k}": v for k, v in gpu.measured.model_dump(exclude_none=True).items()}
    expected = gpu.serving.expected_latency.get(s.image.name)
    latency = {"expected_latency_s": expected.seconds, "expected_latency_source": expected.source,
               "expected_latency_confidence": expected.confidence} if expected else {}
    return ImageFacts.model_validate({
        "toolkit": __version__, "image": s.image.name, "lock_sha256": s.lock.digest,
        "pins": {"python": st.python, "torch": st.torch, "cuda": st.cuda, "cudnn": st.cudnn,
                 "xformers": st.xformers, "comfyui": s.lock.comfyui.version},
        "comfyui_commit": s.lock.comfyui.commit,
        "driver_floor": st.driver_floor, "driver_recommended": st.driver_recommended,
        "torch_sass": st.torch_sass,
        "profile": {"name": gpu.name, "display": gpu.display, "names": [gpu.display, *gpu.nvml_names],
                    "vram_gb": gpu.vram_gb, "bandwidth_gbs": gpu.bandwidth_gbs,
                    "compute_capability": gpu.compute_capability, "tflops_fp16": gpu.tflops_fp16,
                    "pcie_gen": gpu.pcie.gen, "pcie_width": gpu.pcie.width, "pci_device_id": gpu.pci_device_id,
                    **measured, **latency},
        "launch": {"port": s.image.port, "flags": launch_flags(s.gpu, s.image, s.flags)},
        "cache_mount": s.image.cache_mount,
        "warmup": {"models": [{"folder": m.folder, "file": m.file} for m in s.image.models],
                   "baked_models": baked_models, "runs": s.image.warmup_runs, "steps": s.image.warmup_steps},
    })
