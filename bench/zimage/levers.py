"""The levers (levers.yaml) and what each one changes in the server's launch and the workflow."""

from __future__ import annotations

import copy
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
    warmup: bool = False
    inductor_cache: str = ""
    fresh_cache: bool = False
    smoke: bool = False
    extra_site: bool = False

    def flags(self, baseline: list[str]) -> list[str]:
        return [f for f in baseline if f not in self.drop] + list(self.add)

    def prompt(self, workflow: dict) -> dict:
        if self.workflow == "preview":
            graph = copy.deepcopy(workflow)
            for node in graph.values():
                if node["class_type"] == "SaveImage":
                    node.update(class_type="PreviewImage", inputs={"images": node["inputs"]["images"]})
            return graph
        if self.workflow != "compile":
            return workflow
        graph = copy.deepcopy(workflow)
        loader = next(k for k, n in graph.items() if n["class_type"] == "UNETLoader")
        graph[COMPILE_NODE] = {"class_type": "TorchCompileModel", "inputs": {"model": [loader, 0], "backend": "inductor"}}
        for node in graph.values():
            if node["inputs"].get("model") == [loader, 0] and node is not graph[COMPILE_NODE]:
                node["inputs"]["model"] = [COMPILE_NODE, 0]
        return graph


def load_levers(groups: set[int] | None, names: set[str] | None) -> list[Lever]:
    raw = yaml.safe_load(LEVERS.read_text())["levers"]
    levers = [Lever(**{k: tuple(v) if isinstance(v, list) else v for k, v in item.items()}) for item in raw]
    return [lv for lv in levers if (not groups or lv.group in groups) and (not names or lv.name in names)]
