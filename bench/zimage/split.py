"""Where a prompt's time went, from the websocket timeline: the node that ran between two
'executing' messages, the sampler's per-step 'progress' messages, and when the client had the image.
The total runs from the POST until the client holds the image bytes."""

from __future__ import annotations

import statistics
from dataclasses import dataclass

from .server import Timeline

# the nodes whose time is reported, by class (their ids come from the workflow sent)
PARTS = {"text": ("CLIPTextEncode",), "sampler": ("KSampler",), "decode": ("VAEDecode",),
         "save": ("SaveImage", "PreviewImage", "KilnImageOut")}


def node_ids(workflow: dict) -> dict[str, str]:
    """{part: node id} for the workflow; a part the workflow lacks is an error, not a silent blank."""
    ids = {}
    for part, classes in PARTS.items():
        found = [k for k, node in workflow.items() if node["class_type"] in classes]
        if len(found) != 1:
            raise ValueError(f"the workflow needs exactly one {' or '.join(classes)} node, it has {len(found)}")
        ids[part] = found[0]
    return ids


@dataclass(frozen=True)
class Split:
    total_s: float
    text_s: float | None
    sampling_s: float | None
    step_s: float | None
    decode_s: float | None
    save_s: float | None
    queue_s: float | None  # from the POST to the first node starting
    done_s: float | None = None  # from the POST to execution_success
    fetch_s: float | None = None  # from execution_success to the bytes in hand (negative: they came first)
    image_bytes: int | None = None

    def row(self) -> dict:
        return {k: (round(v, 4) if v is not None else None) for k, v in self.__dict__.items()}


def node_times(timeline: Timeline) -> tuple[list[tuple[float, str]], dict[str, float]]:
    """Each node's start and its seconds, from one 'executing' message to the next (the last ends at success
    or error; without that end, the last node has no time)."""
    end = next((t for t, kind, _, _ in timeline.events if kind in ("execution_success", "execution_error")), None)
    starts = [(t, node) for t, kind, node, _ in timeline.events if kind == "executing" and node]
    spans = {}
    for (t, node), nxt in zip(starts, starts[1:] + [None]):
        stop = nxt[0] if nxt else end
        if stop is not None:
            spans[node] = spans.get(node, 0.0) + stop - t
    return starts, spans


def split(timeline: Timeline, ids: dict[str, str]) -> Split:
    end = next(t for t, kind, _, _ in timeline.events if kind in ("execution_success", "execution_error"))
    starts, spans = node_times(timeline)
    steps = [t for t, kind, node, _ in timeline.events if kind == "progress" and node == ids["sampler"]]
    gaps = [b - a for a, b in zip(steps, steps[1:])]
    if timeline.received is None:
        raise ValueError("the client never had the image: no websocket bytes and no /view fetch")
    return Split(timeline.received - timeline.posted, spans.get(ids["text"]), spans.get(ids["sampler"]),
                 statistics.median(gaps) if gaps else None, spans.get(ids["decode"]), spans.get(ids["save"]),
                 starts[0][0] - timeline.posted if starts else None, end - timeline.posted,
                 timeline.received - end, timeline.image_bytes)


def percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    rank = q * (len(ordered) - 1)
    low = int(rank)
    high = min(low + 1, len(ordered) - 1)
    return ordered[low] + (ordered[high] - ordered[low]) * (rank - low)


def summary(splits: list[Split]) -> dict:
    totals = [s.total_s for s in splits]
    def med(name: str):
        values = [getattr(s, name) for s in splits if getattr(s, name) is not None]
        return round(statistics.median(values), 4) if values else None
    return {"n": len(splits), "p50_s": round(percentile(totals, 0.5), 4), "p90_s": round(percentile(totals, 0.9), 4),
            "min_s": round(min(totals), 4), "text_s": med("text_s"), "sampling_s": med("sampling_s"),
            "step_s": med("step_s"), "decode_s": med("decode_s"), "save_s": med("save_s"), "queue_s": med("queue_s"),
            "done_s": med("done_s"), "fetch_s": med("fetch_s"), "image_bytes": med("image_bytes")}
