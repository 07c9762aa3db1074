"""Stand-in model handling: loaders find their file in the model folders and recognise what it holds
from its safetensors header, the way ComfyUI's detection keys on a few tensors; SaveImage writes a PNG of
the latent's size. No weights are read and nothing is computed."""

import json
import os
import struct
import zlib

# What a loader expects to find in the header: a key suffix and, where ComfyUI's detection keys on it,
# the shape (Z-Image: cap_embedder.1.weight with dim 3840; Qwen3-4B: a 151936 x 2560 embedding).
KINDS = {
    ("UNETLoader", None): ("z-image", "cap_embedder.1.weight", (3840, 2560)),
    ("CLIPLoader", "lumina2"): ("qwen3-4b", "embed_tokens.weight", (151936, 2560)),
    ("VAELoader", None): ("flux-vae", "decoder.conv_in.weight", None),
}
FILE_INPUTS = {"UNETLoader": "unet_name", "CLIPLoader": "clip_name", "VAELoader": "vae_name",
               "CheckpointLoaderSimple": "ckpt_name"}
FOLDERS = {"UNETLoader": ("diffusion_models", "unet"), "CLIPLoader": ("text_encoders", "clip"),
           "VAELoader": ("vae",), "CheckpointLoaderSimple": ("checkpoints",)}


# ComfyUI's own models folder beside main.py, read before the extra paths (where baked images keep their files)
OWN_MODELS = os.path.join(os.path.dirname(os.path.abspath(__file__)), "models")


def model_roots(config_paths):
    """ComfyUI's own models folder, then base_path of every extra_model_paths.yaml given (the one key the
    stand-in reads)."""
    roots = [OWN_MODELS]
    for path in config_paths:
        with open(path) as handle:
            roots += [line.split(":", 1)[1].strip() for line in handle if line.strip().startswith("base_path:")]
    return roots


def find(roots, node_class, name):
    for root in roots:
        for folder in FOLDERS.get(node_class, ()):
            path = os.path.join(root, folder, name)
            if os.path.isfile(path):
                return path
    return None


def header(path):
    with open(path, "rb") as handle:
        size = struct.unpack("<Q", handle.read(8))[0]
        return json.loads(handle.read(size))


def recognise(node_class, clip_type, path):
    """None when the file holds what the loader needs, else ComfyUI-like error text."""
    kind = KINDS.get((node_class, clip_type if node_class == "CLIPLoader" else None))
    if kind is None:
        return None if node_class != "CLIPLoader" else f"stand-in: unsupported CLIPLoader type {clip_type!r}"
    name, suffix, shape = kind
    try:
        tensors = header(path)
    except (OSError, ValueError, struct.error) as exc:
        return f"stand-in: {os.path.basename(path)} is not a safetensors file ({exc})"
    hits = [v for k, v in tensors.items() if k.endswith(suffix) and isinstance(v, dict)]
    if not hits or (shape and tuple(hits[0].get("shape", ())) != shape):
        return f"ERROR: Could not detect model type of: {path} (stand-in looked for {name}: {suffix} {shape})"
    return None


def png(width, height):
    """A grey PNG of that size."""
    raw = b"".join(b"\x00" + b"\x80" * (3 * width) for _ in range(height))

    def chunk(tag, data):
        return struct.pack(">I", len(data)) + tag + data + struct.pack(">I", zlib.crc32(tag + data) & 0xFFFFFFFF)
    return (b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0))
            + chunk(b"IDAT", zlib.compress(raw, 1)) + chunk(b"IEND", b""))


def latent_size(prompt):
    for node in prompt.values():
        inputs = node.get("inputs", {})
        if "width" in inputs and "height" in inputs:
            return int(inputs["width"]), int(inputs["height"])
    return 64, 64
