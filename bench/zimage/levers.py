"""The levers (levers.yaml) and what each one changes in the server's launch and the workflow."""

from __future__ import annotations

import copy
import json
from dataclasses import dataclass, field
from pathlib import Path

import yaml

LEVERS = Path(__file__).with_name("levers.yaml")
COMPILE_NODE = "99"


@dataclass(frozen=True)
class Lever:
    name: str
    what: str
    group: int
    add: tuple[str, ...] = ()
    drop: tuple[str, ...] = ()
    env: dict = field(default_factory=dict)
    workflow: str = ""
    output: dict = field(default_factory=dict)
    compile_options: dict = field(default_factory=dict)
    warmup: bool = False
    inductor_cache: str = ""
    fresh_cache: bool = False
    smoke: bool = False
    extra_site: bool = False
    lossy: bool = False  # judged against the quality bounds (bench/zimage/quality.yaml)

    def flags(self, baseline: list[str]) -> list[str]:
        return [f for f in baseline if f not in self.drop] + list(self.add)

    def prompt(self, workflow: dict) -> dict:
        graph = copy.deepcopy(workflow)
        if self.workflow == "preview":
            for node in graph.values():
                if node["class_type"] == "SaveImage":
                    node.update(class_type="PreviewImage", inputs={"images": node["inputs"]["images"]})
        if self.output:
            for node in graph.values():
                if node["class_type"] == "SaveImage":
                    node.update(class_type="KilnImageOut", inputs={
                        "images": node["inputs"]["images"], "filename_prefix": node["inputs"]["filename_prefix"],
                        "format": "png", "quality": 95, "png_level": 1, **self.output})
        if self.workflow == "compile":
            insert_compile(graph, self.compile_options)
        return graph


def insert_compile(graph: dict, options: dict) -> None:
    """ComfyUI's TorchCompileModel after the diffusion model loader; with options, the bench's own
    node (shims/kiln_bench_compile) that passes inductor options the stock node does not offer."""
    loader = next(k for k, n in graph.items() if n["class_type"] == "UNETLoader")
    if options:
        node = {"class_type": "KilnBenchCompile", "inputs": {"model": [loader, 0], "options": json.dumps(options)}}
    else:
        node = {"class_type": "TorchCompileModel", "inputs": {"model": [loader, 0], "backend": "inductor"}}
    graph[COMPILE_NODE] = node
    for key, other in graph.items():
        if key != COMPILE_NODE and other["inputs"].get("model") == [loader, 0]:
            other["inputs"]["model"] = [COMPILE_NODE, 0]


def load_levers(groups: set[int] | None, names: set[str] | None, path: Path = LEVERS) -> list[Lever]:
    raw = yaml.safe_load(path.read_text())["levers"]
    levers = [Lever(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}) for item in raw]
    return [lv for lv in levers if (not groups or lv.group in groups) and (not names or lv.name in names)]
