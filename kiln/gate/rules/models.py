"""Rules on the image's models: the pinned ComfyUI can load them, the warm-up follows their recipe."""

from __future__ import annotations

from typing import Any, Iterator

from packaging.version import Version

from kiln.data.subject import Subject
from kiln.gate.findings import ERROR, WARNING, Finding

RECIPE_NODES = {"KSampler": ("steps", "cfg", "sampler_name", "scheduler", "denoise"),
                "ModelSamplingAuraFlow": ("shift",)}
LOADER_INPUTS = {"UNETLoader": "unet_name", "CLIPLoader": "clip_name", "VAELoader": "vae_name",
                 "CheckpointLoaderSimple": "ckpt_name"}


def comfyui_loads_models(s: Subject) -> Iterator[Finding]:
    pinned = Version(s.lock.comfyui.version)
    too_new = [m for m in s.image.models if m.requires_comfyui and Version(m.requires_comfyui) > pinned]
    if not too_new:
        return
    need = max(Version(m.requires_comfyui) for m in too_new)
    files = ", ".join(m.file for m in too_new)
    yield Finding(ERROR, "model-comfyui", f"{s.image.where} models",
                  f"{s.image.title}: {files} need ComfyUI >= {need}; versions.lock pins ComfyUI "
                  f"{s.lock.comfyui.version}, which has no loader for them and fails at the first prompt",
                  f"move [comfyui] in versions.lock to {need} or later (version and commit) and run `invoke lock`, "
                  "or build an image without these models (--image comfyui)")


def warmup_follows_recipe(s: Subject) -> Iterator[Finding]:
    workflow, recipe = s.image.workflow, s.image.recipe
    if not workflow:
        return
    where = str(s.image.workflow_path)
    off = [f"{key}={got!r} (recipe {_text(recipe[key])})" for key, got in _recipe_values(workflow)
           if key in recipe and not _same(got, recipe[key])]
    if off:
        yield Finding(WARNING, "warmup-recipe", where, "the warm-up departs from the model's recipe: " + ", ".join(off),
                      "use the recipe's values so the warm-up compiles and caches what serving will run")
    files = {m.file for m in s.image.models}
    missing = [name for name in _loaded_files(workflow) if files and name not in files]
    if missing:
        yield Finding(WARNING, "warmup-models", where, f"the warm-up loads {', '.join(missing)}, which the image "
                      "does not list under models", "list them under models or load the listed files")


def _recipe_values(workflow: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for node in workflow.values():
        for key in RECIPE_NODES.get(node.get("class_type", ""), ()):
            if key in node.get("inputs", {}):
                yield key, node["inputs"][key]


def _loaded_files(workflow: dict[str, Any]) -> list[str]:
    return [node["inputs"][LOADER_INPUTS[node["class_type"]]] for node in workflow.values()
            if node.get("class_type") in LOADER_INPUTS and LOADER_INPUTS[node["class_type"]] in node.get("inputs", {})]


def _text(value: Any) -> str:
    return repr(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(float(got) - float(want)) < 1e-9
    return got == want
