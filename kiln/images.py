"""Image specs (images/*.yaml): launch options, environment, cache layout, models and warm-up."""

from __future__ import annotations

import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from .errors import KilnError
from .loading import Fields, read_json, read_yaml

_ENV_NAME = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


@dataclass(frozen=True)
class Model:
    role: str
    folder: str
    file: str
    size_gb: float
    precision: str
    requires_comfyui: str
    source: dict[str, str]


@dataclass(frozen=True)
class Warmup:
    workflow_path: Path | None
    workflow: dict[str, Any] | None
    recipe: dict[str, Any]


@dataclass(frozen=True)
class ImageSpec:
    name: str
    title: str
    path: Path
    where: str  # how messages name the spec file
    base: str
    port: int
    flags: tuple[str, ...]
    env: dict[str, str]
    cache_mount: str
    models: tuple[Model, ...]
    working_gb: float
    warmup: Warmup

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
    f = Fields(read_yaml(path), where or str(path))
    server = f.sub("server")
    port = server.get("port", int)
    if not 1 <= port <= 65535:
        raise KilnError(f"server.port {port} is out of range", str(path), "use 1-65535")
    return ImageSpec(
        name=f.get("name", str), title=f.get("title", str), path=path, where=f.where, base=f.get("base", str, default_base),
        port=port, flags=tuple(_safe(v, "server.flags", path) for v in server.strings("flags", ())),
        env=_env(f.get("env", dict, {}), path), cache_mount=f.sub("cache").get("mount", str),
        models=tuple(_model(f, i) for i in range(len(f.get("models", list, [])))),
        working_gb=f.get("working_gb", float, 0.0), warmup=_warmup(f.sub("warmup", {}), path))


def _safe(value: str, key: str, path: Path) -> str:
    """Shell metacharacters are fine (templates quote); NUL and newlines can't be carried safely."""
    if "\x00" in value or "\n" in value or "\r" in value:
        raise KilnError(f"{key} value {value!r} holds a NUL or newline", str(path), "put it on one line")
    return value


def _env(env: dict[str, Any], path: Path) -> dict[str, str]:
    out = {}
    for name, value in env.items():
        if not _ENV_NAME.match(str(name)):
            raise KilnError(f"env name '{name}' is not a valid variable name", str(path), "use letters, digits, _")
        if not isinstance(value, (str, int, float)) or isinstance(value, bool):
            raise KilnError(f"env.{name} must be a string, got {value!r}", str(path), "quote the value")
        out[str(name)] = _safe(str(value), f"env.{name}", path)
    return out


def _model(f: Fields, index: int) -> Model:
    item = Fields(f.data["models"][index], f.where, f"models[{index}]")
    return Model(role=item.get("role", str), folder=item.get("folder", str), file=item.get("file", str),
                 size_gb=item.get("size_gb", float), precision=item.get("precision", str),
                 requires_comfyui=item.get("requires_comfyui", str, ""),
                 source={k: str(v) for k, v in item.get("source", dict, {}).items()})


def _warmup(f: Fields, path: Path) -> Warmup:
    name = f.get("workflow", str, "")
    workflow_path = (path.parent / name) if name else None
    workflow = read_json(workflow_path) if workflow_path else None
    if workflow is not None and not isinstance(workflow, dict):
        raise KilnError("warm-up workflow must be a ComfyUI API-format object", str(workflow_path),
                        "export it with 'Save (API Format)'")
    return Warmup(workflow_path=workflow_path, workflow=workflow, recipe=f.get("recipe", dict, {}))
