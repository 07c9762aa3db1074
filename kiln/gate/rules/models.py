"""Rules on the image's models: the pinned ComfyUI can load them, the warm-up follows their recipe."""

from __future__ import annotations

import re
from typing import Any, Iterator

from packaging.version import Version

from kiln.data.subject import Subject
from kiln.gate.findings import ERROR, WARNING, Finding

RECIPE_NODES = {"KSampler": ("steps", "cfg", "sampler_name", "scheduler", "denoise"),
                "ModelSamplingAuraFlow": ("shift",)}
LOADER_INPUTS = {"UNETLoader": ("unet_name",), "CLIPLoader": ("clip_name",), "VAELoader": ("vae_name",),
                 "CheckpointLoaderSimple": ("ckpt_name",), "DualCLIPLoader": ("clip_name1", "clip_name2")}


def comfyui_loads_models(s: Subject) -> Iterator[Finding]:
    pinned = Version(s.lock.comfyui.version)
    too_new = [m for m in s.image.models if m.requires_comfyui and Version(m.requires_comfyui) > pinned]
    if not too_new:
        return
    need = max(Version(m.requires_comfyui) for m in too_new)
    files = ", ".join(m.file for m in too_new)
    yield Finding(ERROR, "model-comfyui", f"{s.image.where} models",
                  f"{s.image.title}: {files} need ComfyUI >= {need}; stack '{s.lock.name}' pins ComfyUI "
                  f"{s.lock.comfyui.version}, which has no loader for them and fails at the first prompt",
                  _stack_fix(s, need))


def _stack_fix(s: Subject, need: Version) -> str:
    able = [(name, entry.comfyui.version) for name, entry in s.lock.stacks.items()
            if Version(entry.comfyui.version) >= need]
    if able:
        name, version = able[0]
        return (f"build it from stack '{name}' (ComfyUI {version}): set `stack: {name}` in {s.image.where}, "
                "or build an image without these models (--image comfyui)")
    return (f"add a stack to versions.lock with ComfyUI {need} or later (version and commit) and run "
            "`invoke lock`, or build an image without these models (--image comfyui)")


def model_sources_pinned(s: Subject) -> Iterator[Finding]:
    """A branch name moves: the file fetched tomorrow may not be the one the manifest's sha256 names."""
    for i, m in enumerate(s.image.models):
        if not re.fullmatch(r"[0-9a-f]{40}", m.source.revision):
            yield Finding(WARNING, "model-source", f"{s.image.where} models[{i}].source.revision",
                          f"{m.file} is fetched from {m.source.repo} at '{m.source.revision}', a branch or tag that "
                          "can move; the sha256 check then fails instead of fetching the file the manifest names",
                          "pin the repository commit (40 hex) the file was published at")


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



def _recipe_values(workflow: dict[str, Any]) -> Iterator[tuple[str, Any]]:
    for node in workflow.values():
        for key in RECIPE_NODES.get(node.get("class_type", ""), ()):
            if key in node.get("inputs", {}):
                yield key, node["inputs"][key]


def warmup_loads_the_models(s: Subject) -> Iterator[Finding]:
    """Every loader in the warm-up names a file of the image's models, and a text-encoder loader uses the
    type that model needs (a CLIP loader cannot load Z-Image's Qwen3-4B encoder)."""
    if not s.image.workflow or not s.image.models:
        return
    models = {m.file: m for m in s.image.models}
    for node_id, node in s.image.workflow.items():
        for field, name in _loaded_files(node):
            where = f"{s.image.workflow_path} node {node_id} ({node['class_type']}) inputs.{field}"
            model = models.get(name)
            if model is None:
                yield Finding(ERROR, "warmup-models", where, f"loads {name!r}, which is not one of the image's models",
                              f"load one of: {', '.join(models)} (or list {name} under models in {s.image.where})")
            elif node["class_type"] == "CLIPLoader":
                yield from _text_encoder_type(node, model, where.rsplit(" inputs.", 1)[0])


def _text_encoder_type(node: dict[str, Any], model: Any, where: str) -> Iterator[Finding]:
    given = node.get("inputs", {}).get("type")
    if model.clip_type and given != model.clip_type:
        what = f"{model.encoder} ({model.file})" if model.encoder else model.file
        yield Finding(ERROR, "warmup-models", f"{where} inputs.type",
                      f"loads {what} as type {given!r}; ComfyUI's CLIPLoader reads this text encoder only as type "
                      f"{model.clip_type!r} (a CLIP-type loader cannot load it)",
                      f"set inputs.type to {model.clip_type!r}")


def _loaded_files(node: dict[str, Any]) -> Iterator[tuple[str, str]]:
    """(input, file name) of a loader; an input linked to another node (["9", 0]) names no file here."""
    for field in LOADER_INPUTS.get(node.get("class_type", ""), ()):
        value = node.get("inputs", {}).get(field)
        if isinstance(value, str):
            yield field, value


def _text(value: Any) -> str:
    return repr(int(value)) if isinstance(value, float) and value.is_integer() else repr(value)


def _same(got: Any, want: Any) -> bool:
    if isinstance(want, (int, float)) and isinstance(got, (int, float)):
        return abs(float(got) - float(want)) < 1e-9
    return got == want
