"""Load and validate the EXPECT.json the toolkit writes next to the payload."""

from __future__ import annotations

import json
from typing import Any, Dict

from .verdict import parse_cc, parse_version

PIN_KEYS = ("python", "torch", "cuda", "cudnn", "xformers", "comfyui")
NO_XFORMERS = "none"  # pins.xformers of a stack that locks no xformers
PROFILE_REQUIRED = {
    "name": str,
    "display": str,
    "names": list,
    "vram_gb": (int, float),
    "bandwidth_gbs": (int, float),
    "compute_capability": str,
    "tflops_fp16": (int, float),
    "pcie_gen": int,
    "pcie_width": int,
}
PROFILE_OPTIONAL = {
    "measured_copy_tbs": (int, float),
    "measured_matmul_tflops": (int, float),
    "measured_attention_tflops": (int, float),
    "measured_matmul_fp16_tflops": (int, float),
    "measured_torch": str,
    "pci_device_id": int,
    "expected_latency_s": (int, float),
    "expected_latency_source": str,
    "expected_latency_confidence": str,
}


class ExpectError(ValueError):
    """The expect file is missing, unreadable or malformed."""


def load_expect(path: str) -> Dict[str, Any]:
    try:
        with open(path, encoding="utf-8") as handle:
            data = json.load(handle)
    except FileNotFoundError:
        raise ExpectError(f"expect file not found: {path}") from None
    except (OSError, UnicodeDecodeError) as exc:
        raise ExpectError(f"cannot read expect file {path}: {exc}") from None
    except json.JSONDecodeError as exc:
        raise ExpectError(f"expect file {path} is not JSON: {exc}") from None
    validate_expect(data)
    return data


def _require(cond: bool, message: str) -> None:
    if not cond:
        raise ExpectError(f"bad expect file: {message}")


def _is_type(value: Any, kind) -> bool:
    if isinstance(value, bool):
        return False
    return isinstance(value, kind)


def validate_expect(data: Any) -> None:
    _require(isinstance(data, dict), "top level must be an object")
    pins = data.get("pins")
    _require(isinstance(pins, dict), "'pins' must be an object")
    for key in PIN_KEYS:
        _require(isinstance(pins.get(key), str) and pins[key], f"pins.{key} must be a version string")
    for key in ("driver_floor", "driver_recommended"):
        _require(isinstance(data.get(key), str) and data[key], f"{key} must be a version string")
    sass = data.get("torch_sass")
    _require(isinstance(sass, list) and sass and all(isinstance(s, str) for s in sass),
             "torch_sass must be a non-empty list of 'sm_XY' strings")
    _validate_profile(data.get("profile"))
    _validate_parsable(data)


def _validate_parsable(data: Dict[str, Any]) -> None:
    for label, text, parse in _parsable_fields(data):
        try:
            parse(text)
        except (ValueError, IndexError):
            raise ExpectError(f"bad expect file: {label} {text!r} cannot be parsed") from None


def _parsable_fields(data: Dict[str, Any]):
    for key in PIN_KEYS:
        if not (key == "xformers" and data["pins"][key] == NO_XFORMERS):
            yield f"pins.{key}", data["pins"][key], parse_version
    yield "driver_floor", data["driver_floor"], parse_version
    yield "driver_recommended", data["driver_recommended"], parse_version
    for arch in data["torch_sass"]:
        yield "torch_sass entry", arch, parse_cc
    yield "profile.compute_capability", data["profile"]["compute_capability"], parse_cc


def _validate_profile(profile: Any) -> None:
    _require(isinstance(profile, dict), "'profile' must be an object")
    for key, kind in PROFILE_REQUIRED.items():
        _require(key in profile, f"profile.{key} is missing")
        _require(_is_type(profile[key], kind), f"profile.{key} has the wrong type")
    for key, kind in PROFILE_OPTIONAL.items():
        if profile.get(key) is not None:
            _require(_is_type(profile[key], kind), f"profile.{key} must be a number")
    _require(all(isinstance(a, str) for a in profile["names"]), "profile.names must be strings")
