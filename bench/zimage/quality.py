"""How far a lever's output is from the bf16 reference's, for one fixed seed and prompt (quality.yaml):
the sampled latents (SaveLatent's file) and the image bytes the client received, decoded to 8-bit RGB."""

from __future__ import annotations

import io
import math
import shutil
from pathlib import Path

import yaml

BOUNDS = yaml.safe_load(Path(__file__).with_name("quality.yaml").read_text())
LATENT_NODE = "98"


def with_latent_saved(graph: dict, prefix: str) -> dict:
    """The lever's graph with the fixed seed and text, and the sampler's latent written by SaveLatent."""
    fixed = {key: {**node, "inputs": dict(node["inputs"])} for key, node in graph.items()}
    sampler = next(k for k, n in fixed.items() if n["class_type"] == "KSampler")
    fixed[sampler]["inputs"]["seed"] = BOUNDS["seed"]
    for node in fixed.values():
        if node["class_type"] == "CLIPTextEncode":
            node["inputs"]["text"] = BOUNDS["text"]
    fixed[LATENT_NODE] = {"class_type": "SaveLatent", "inputs": {"samples": [sampler, 0], "filename_prefix": prefix}}
    return fixed


def keep(output_dir: Path, prefix: str, image: bytes, into: Path, name: str) -> None:
    """Move the newest latent written under `prefix` and the received image into `into`."""
    latents = sorted(output_dir.glob(f"{prefix}*.latent"), key=lambda p: p.stat().st_mtime)
    if not latents:
        raise RuntimeError(f"SaveLatent wrote nothing under {output_dir / prefix}")
    into.mkdir(parents=True, exist_ok=True)
    shutil.move(str(latents[-1]), into / f"{name}.latent")
    (into / f"{name}.image").write_bytes(image)


def latent_figures(reference: Path, lever: Path) -> dict:
    from safetensors.torch import load_file
    ref = load_file(str(reference))["latent_tensor"].double().flatten()
    got = load_file(str(lever))["latent_tensor"].double().flatten()
    error = (got - ref).norm().item()
    cosine = (got @ ref).item() / (got.norm().item() * ref.norm().item())
    return {"relative_error": round(error / ref.norm().item(), 6), "cosine": round(cosine, 6),
            "snr_db": round(20 * math.log10(ref.norm().item() / error), 2) if error else math.inf}


def image_psnr(reference: bytes, lever: bytes) -> float:
    import numpy as np
    from PIL import Image
    a = np.asarray(Image.open(io.BytesIO(reference)).convert("RGB"), dtype=np.float64)
    b = np.asarray(Image.open(io.BytesIO(lever)).convert("RGB"), dtype=np.float64)
    mse = float(((a - b) ** 2).mean())
    return round(10 * math.log10(255.0 ** 2 / mse), 2) if mse else math.inf


def compare(folder: Path, name: str) -> dict:
    """The lever's figures against the reference's, with the verdict of the bounds."""
    reference = BOUNDS["reference"]
    if not (folder / f"{reference}.latent").is_file():
        return {"skipped": f"no {reference} output in this run to compare with"}
    figures = latent_figures(folder / f"{reference}.latent", folder / f"{name}.latent")
    figures["image_psnr_db"] = image_psnr((folder / f"{reference}.image").read_bytes(),
                                          (folder / f"{name}.image").read_bytes())
    figures["within_bounds"] = (figures["snr_db"] >= BOUNDS["latent_snr_db_min"]
                                and figures["image_psnr_db"] >= BOUNDS["image_psnr_db_min"])
    figures["bounds"] = {"latent_snr_db_min": BOUNDS["latent_snr_db_min"],
                         "image_psnr_db_min": BOUNDS["image_psnr_db_min"]}
    return figures
