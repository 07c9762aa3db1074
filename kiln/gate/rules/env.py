"""Rules on the image's environment: PYTORCH_CUDA_ALLOC_CONF for the pinned torch, no-op knobs."""

from __future__ import annotations

from typing import Iterator

from kiln.data.tables import AllocKey, alloc_keys
from kiln.data.subject import Subject
from kiln.gate.findings import ERROR, NOTE, WARNING, Finding

_CHECKS = {
    "int": lambda v: v.isdigit(),
    "fraction": lambda v: _float(v) is not None and 0.0 < _float(v) < 1.0,
    "bool": lambda v: v in ("True", "False"),
    "backend": lambda v: v in ("native", "cudaMallocAsync"),
    "divisions": lambda v: v.isdigit() or (v.startswith("[") and v.endswith("]")),
}


def _float(text: str) -> float | None:
    try:
        return float(text)
    except ValueError:
        return None


def alloc_conf_valid(s: Subject) -> Iterator[Finding]:
    conf = s.image.env.get("PYTORCH_CUDA_ALLOC_CONF")
    if conf is None:
        return
    where = f"{s.image.where} env.PYTORCH_CUDA_ALLOC_CONF"
    table = alloc_keys(s.lock.stack.torch.split("+")[0])
    if table is None:
        yield Finding(WARNING, "alloc-conf", where, f"no key table for torch {s.lock.stack.torch}; not checked",
                      "add it to kiln/data/tables/torch_alloc_conf.yaml")
        return
    pairs = [item.partition(":") for item in conf.split(",") if item.strip()]
    for key, colon, value in pairs:
        yield from _pair(key.strip(), value.strip() if colon else "", table, s, where)
    yield from _ignored_under_async(s, [k.strip() for k, _, _ in pairs], table, conf, where)


def _pair(key: str, value: str, table: dict[str, AllocKey], s: Subject, where: str) -> Iterator[Finding]:
    if key not in table:
        yield Finding(ERROR, "alloc-conf", where, f"'{key}' is not a torch {s.lock.stack.torch} allocator key; the "
                      "first CUDA allocation would fail", f"use one of: {', '.join(table)}")
    elif not _CHECKS[table[key].kind](value):
        yield Finding(ERROR, "alloc-conf", where, f"'{key}:{value}' is not a valid {table[key].kind} value",
                      f"write {key}:<{table[key].kind}>")


def _ignored_under_async(s: Subject, keys: list[str], table: dict[str, AllocKey], conf: str, where: str) -> Iterator[Finding]:
    native_keys = [k for k in keys if k in table and table[k].native_only]
    async_on = "--disable-cuda-malloc" not in s.image.flags or "backend:cudaMallocAsync" in conf
    if native_keys and async_on:
        yield Finding(WARNING, "alloc-conf", where, f"{', '.join(native_keys)} only tune the native allocator, but "
                      "ComfyUI switches torch to cudaMallocAsync by default, which ignores them",
                      "add --disable-cuda-malloc to server.flags, or drop those keys")


def env_knobs(s: Subject) -> Iterator[Finding]:
    value = s.image.env.get("CUDA_LAUNCH_BLOCKING")
    where = f"{s.image.where} env.CUDA_LAUNCH_BLOCKING"
    if value == "0":
        yield Finding(NOTE, "env", where, "CUDA_LAUNCH_BLOCKING=0 is already the default and changes nothing",
                      "remove it")
    elif value is not None:
        yield Finding(WARNING, "env", where, f"CUDA_LAUNCH_BLOCKING={value} serialises every kernel launch "
                      "(a debugging switch that slows serving)", "remove it for serving")
