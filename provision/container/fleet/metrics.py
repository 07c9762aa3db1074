"""The server's Prometheus metrics (prometheus-client, in the image's venv). Counters and histograms of
finished prompts are fed by the history watcher; the queue, the devices' memory, the warm-up and the drain are
read when Prometheus scrapes, so a scrape always shows the present."""

from __future__ import annotations

from typing import Any, Callable, Dict, Iterator

from prometheus_client import CollectorRegistry, Counter, Histogram
from prometheus_client.core import GaugeMetricFamily
from prometheus_client.registry import Collector

from . import comfyui
from .state import Markers


class Finished:
    """What the history watcher counts: completed and failed prompts, and how long they took."""

    def __init__(self, registry: CollectorRegistry, config: Dict[str, Any]):
        self.completed = Counter("kiln_prompts_completed", "Prompts ComfyUI finished with success", registry=registry)
        self.failed = Counter("kiln_prompts_failed", "Prompts ComfyUI finished with an error or interrupted",
                              registry=registry)
        self.execution = Histogram("kiln_prompt_execution_seconds",
                                   "From execution_start to the prompt's end, by ComfyUI's own timestamps",
                                   buckets=config["execution_buckets_s"], registry=registry)
        self.latency = Histogram("kiln_prompt_latency_seconds",
                                 "From queued (ComfyUI's create_time, 0.3.74 and later) to the prompt's end",
                                 buckets=config["latency_buckets_s"], registry=registry)

    def count(self, entry: Dict[str, Any]) -> None:
        outcome, execution, latency = comfyui.timings(entry)
        (self.completed if outcome == "completed" else self.failed).inc()
        if execution >= 0:
            self.execution.observe(execution)
        if latency >= 0:
            self.latency.observe(latency)


class Live(Collector):
    """Read at every scrape: ComfyUI's queue and devices, the warm-up and the drain, the balancer weight."""

    def __init__(self, url: str, markers: Markers, weight: Callable[[int], int]):
        self.url, self.markers, self.weight = url, markers, weight

    def collect(self) -> Iterator[GaugeMetricFamily]:
        yield from self._warmup()
        try:
            remaining = comfyui.queue_length(self.url)
            devices = comfyui.devices(self.url)
        except (OSError, ValueError, KeyError, TypeError):
            yield _gauge("kiln_comfyui_up", "1 when ComfyUI answered this scrape", 0)
            return
        yield _gauge("kiln_comfyui_up", "1 when ComfyUI answered this scrape", 1)
        yield _gauge("kiln_queue_length", "Prompts queued or running (ComfyUI's queue_remaining)", remaining)
        yield _gauge("kiln_queue_pending", "Prompts waiting behind the running one", max(0, remaining - 1))
        yield _gauge("kiln_prompt_running", "1 while a prompt runs (ComfyUI runs one at a time)", min(1, remaining))
        yield _gauge("kiln_balancer_weight_percent", "The weight the agent check gives the balancer now",
                     0 if self.markers.draining() else self.weight(remaining))
        yield from _memory(devices)

    def _warmup(self) -> Iterator[GaugeMetricFamily]:
        yield _gauge("kiln_warmup_ready", "1 once the warm-up wrote its ready marker", int(self.markers.warmed()))
        yield _gauge("kiln_warmup_failed", "1 when the warm-up failed (the reason is in the health log)",
                     int(bool(self.markers.failure())))
        yield _gauge("kiln_draining", "1 while a shutdown drains the server", int(self.markers.draining()))
        phases = GaugeMetricFamily("kiln_warmup_seconds", "The warm-up's timings by phase", labels=["phase"])
        for phase, seconds in sorted(self.markers.warmup_seconds().items()):
            phases.add_metric([phase], seconds)
        yield phases


def _memory(devices) -> Iterator[GaugeMetricFamily]:
    names = {"vram_total": ("kiln_gpu_memory_total_bytes", "Device memory (RAM for the cpu device), /system_stats"),
             "vram_free": ("kiln_gpu_memory_free_bytes", "Free device memory, /system_stats"),
             "torch_vram_total": ("kiln_torch_memory_reserved_bytes", "Memory torch's allocator holds, /system_stats"),
             "torch_vram_free": ("kiln_torch_memory_free_bytes", "Of that, free inside the allocator, /system_stats")}
    for key, (name, text) in names.items():
        family = GaugeMetricFamily(name, text, labels=["device", "type"])
        for device in devices:
            if isinstance(device.get(key), (int, float)):
                family.add_metric([str(device.get("name")), str(device.get("type"))], device[key])
        yield family


def _gauge(name: str, text: str, value: float) -> GaugeMetricFamily:
    return GaugeMetricFamily(name, text, value=value)
