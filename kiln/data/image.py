"""Image specs (images/*.yaml): launch options, environment, cache mount, models and warm-up."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import AfterValidator, BeforeValidator, Field

from kiln.data.files import read_json, read_yaml
from kiln.data.schema import Model, validate
from kiln.errors import KilnError

ENV_NAME = r"^[A-Za-z_][A-Za-z0-9_]*$"
# a path segment with something besides dots: '.' and '..' would let a URL (urllib3 normalises them) or a
# cache path leave the place it is built for
SEGMENT = r"[A-Za-z0-9._-]*[A-Za-z0-9_-][A-Za-z0-9._-]*"


def _one_line(value: str) -> str:
    """Shell metacharacters are fine (templates quote); NUL and newlines can't be carried safely."""
    if any(c in value for c in "\x00\n\r"):
        raise ValueError("holds a NUL or newline; put it on one line")
    return value


def _env_value(value: Any) -> str:
    if isinstance(value, bool) or not isinstance(value, (str, int, float)):
        raise ValueError("must be a string; quote the value")
    return _one_line(str(value))


OneLine = Annotated[str, AfterValidator(_one_line)]
EnvValue = Annotated[str, BeforeValidator(_env_value)]


class Server(Model):
    port: int = Field(ge=1, le=65535, description="port ComfyUI listens on inside the container")
    flags: tuple[OneLine, ...] = Field((), description="ComfyUI launch flags, checked against its version's table")


class Cache(Model):
    mount: str = Field("/cache", pattern=r"^/[A-Za-z0-9._/-]*[A-Za-z0-9._-]$",
                       description="where the persistent cache (models, compile caches) is mounted")


class ModelSource(Model):
    """Where a model file is published: a Hugging Face style repo at a pinned revision."""

    repo: str = Field(pattern=r"^[A-Za-z0-9][A-Za-z0-9._-]*/[A-Za-z0-9][A-Za-z0-9._-]*$",
                      description="owner/name of the model repository")
    revision: str = Field(pattern=rf"^[A-Za-z0-9][A-Za-z0-9._-]*(/{SEGMENT})*$",
                          description="the repository commit (40 hex) the file is pinned at (a branch is refused by "
                                      "the gate's strict mode; no '.' or '..' segments)")
    path: str = Field(pattern=rf"^{SEGMENT}(/{SEGMENT})*$",
                      description="the file's path in the repository (no '.' or '..' segments)")


class ModelFile(Model):
    """One entry of an image's model manifest: what the file is, where it goes and how it is verified."""

    role: str = Field(description="diffusion_model, text_encoder, vae, checkpoint, ...")
    folder: str = Field(pattern=r"^[a-z0-9_]+$", description="ComfyUI model folder the file goes in")
    file: str = Field(pattern=rf"^{SEGMENT}$", description="file name inside that folder (not '.' or '..')")
    size: int = Field(gt=0, description="size in bytes")
    sha256: str = Field(pattern=r"^[0-9a-f]{64}$", description="sha256 of the file (64 lowercase hex)")
    source: ModelSource
    requires_comfyui: str = Field("", description="first ComfyUI version that can load it")
    encoder: str = Field("", description="for a text encoder: what it is (CLIP-L, T5-XXL, Qwen3-4B, ...)")
    clip_type: str = Field("", description="for a text encoder: the type ComfyUI's CLIPLoader must be given")

    @property
    def size_gb(self) -> float:
        return self.size / 1e9


class Recipe(Model):
    """The model's sampling recipe (KSampler and ModelSamplingAuraFlow inputs) the warm-up must follow."""

    steps: int | None = Field(None, ge=1)
    cfg: float | None = None
    sampler_name: str | None = None
    scheduler: str | None = None
    denoise: float | None = Field(None, ge=0, le=1)
    shift: float | None = None


class Warmup(Model):
    workflow: str = Field("", description="API-format workflow (path relative to the spec) run before ready")
    recipe: Recipe = Field(Recipe(), description="the model's sampling recipe the warm-up must follow")
    runs: int = Field(2, ge=1, le=5, description="how many times the warm-up runs the workflow before ready")
    steps: int | None = Field(None, ge=1, description="sampler steps of the warm-up's runs (default: the recipe's); "
                              "the served workflow keeps the recipe's")


class Output(Model):
    """How the served image leaves ComfyUI: kiln's output node (payload comfyui_nodes/kiln_output) encodes it
    once, sends the bytes over the websocket of the client that queued the prompt and keeps the same file
    for /history and /view. Without this block the workflow's own SaveImage is kept."""

    format: Literal["png", "jpeg", "webp"] = Field("png", description="png is lossless; jpeg and webp lose detail")
    png_level: int = Field(1, ge=0, le=9, description="PNG compression level: 0 stores, 9 packs hardest")
    quality: int = Field(95, ge=1, le=100, description="JPEG and WebP quality")


class ImageFile(Model):
    name: str = Field(pattern=r"^[a-z0-9][a-z0-9._-]*$")
    title: str
    stack: str | None = Field(None, description="a [stacks] entry of versions.lock (default: the lock's default_stack)")
    base: str | None = Field(None, description="a [bases] entry of versions.lock (default: the lock's default_base)")
    server: Server
    env: dict[Annotated[str, Field(pattern=ENV_NAME)], EnvValue] = {}
    cache: Cache = Cache()
    models: tuple[ModelFile, ...] = ()
    working_gb: float = Field(0.0, ge=0, description="activations and workspace on top of the weights (GB)")
    warmup: Warmup = Warmup()
    output: Output | None = Field(None, description="serve through kiln's output node (else SaveImage)")


@dataclass(frozen=True)
class ImageSpec:
    name: str
    title: str
    path: Path
    where: str  # how messages name the spec file
    stack: str | None  # None: the lock's default stack
    base: str
    port: int
    flags: tuple[str, ...]
    env: dict[str, str]
    cache_mount: str
    models: tuple[ModelFile, ...]
    working_gb: float
    workflow_path: Path | None
    workflow: dict[str, Any] | None
    recipe: dict[str, Any]
    output: Output | None = None
    warmup_runs: int = 2
    warmup_steps: int | None = None

    @property
    def weights_gb(self) -> float:
        return sum(m.size_gb for m in self.models)


def image_path(images_dir: Path, name: str) -> Path:
    path = images_dir / f"{name}.yaml"
    if not path.is_file() and Path(name).is_file():
        return Path(name)
    if not path.is_file():
        known = ", ".join(sorted(p.stem for p in images_dir.glob("*.yaml")))
        raise KilnError(f"unknown image '{name}'", "--image", f"use one of: {known} (or a path to a spec)")
    return path


def load_image(path: Path, default_base: str, where: str = "") -> ImageSpec:
    spec = validate(ImageFile, read_yaml(path), path, where)
    workflow_path = path.parent / spec.warmup.workflow if spec.warmup.workflow else None
    workflow = _workflow(workflow_path)
    return ImageSpec(
        name=spec.name, title=spec.title, path=path, where=where or str(path), stack=spec.stack,
        base=spec.base or default_base,
        port=spec.server.port, flags=spec.server.flags, env={k: str(v) for k, v in spec.env.items()},
        cache_mount=spec.cache.mount, models=spec.models, working_gb=spec.working_gb,
        workflow_path=workflow_path, workflow=workflow,
        recipe=spec.warmup.recipe.model_dump(exclude_none=True), output=_output(spec.output, workflow, where or str(path)),
        warmup_runs=spec.warmup.runs, warmup_steps=_warmup_steps(spec.warmup.steps, workflow, where or str(path)))


def _warmup_steps(steps: int | None, workflow: dict[str, Any] | None, where: str) -> int | None:
    """warmup.steps is set on the workflow's samplers and schedulers: without one, it would change nothing."""
    setters = [n for n in (workflow or {}).values() if "steps" in n.get("inputs", {})
               and any(word in n["class_type"] for word in ("Sampler", "Scheduler"))]
    if steps is not None and not setters:
        raise KilnError("warmup.steps: the warm-up workflow has no sampler or scheduler with a steps input", where,
                        "remove warmup.steps, or give the workflow the sampler it serves with")
    return steps


def _output(output: Output | None, workflow: dict[str, Any] | None, where: str) -> Output | None:
    """kiln's output node takes the place of the workflow's one SaveImage: without exactly one, nothing to take."""
    if output is None:
        return None
    saves = [n for n in (workflow or {}).values() if n["class_type"] == "SaveImage"]
    if len(saves) != 1:
        raise KilnError(f"output: the warm-up workflow has {len(saves)} SaveImage nodes; kiln's output node replaces "
                        "exactly one", where, "keep one SaveImage in the workflow, or remove the output block")
    return output


def _workflow(path: Path | None) -> dict[str, Any] | None:
    workflow = read_json(path) if path else None
    if workflow is None:
        return None
    nodes = workflow.values() if isinstance(workflow, dict) else [None]
    if not all(isinstance(n, dict) and isinstance(n.get("class_type"), str) and isinstance(n.get("inputs", {}), dict)
               for n in nodes):
        raise KilnError("warm-up workflow is not in ComfyUI's API format (node id -> {class_type, inputs})", str(path),
                        "export it with 'Save (API Format)'")
    return workflow
