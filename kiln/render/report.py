"""A one-page HTML smoke report: measured-vs-spec bars and the full table, no network needed to view."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, Callable

import jinja2

from pydantic import ValidationError

from kiln.data.facts import ImageFacts
from kiln.errors import KilnError

# (check, label, unit, expect-profile key, scale from the spec key to the check's unit)
BARS = (("perf.copy_bandwidth", "copy bandwidth", "GB/s", "bandwidth_gbs", 1.0),
        ("perf.matmul_bf16", "bf16 matmul", "TFLOPS", "tflops_fp16", 1.0),
        ("perf.matmul_fp16", "fp16 matmul", "TFLOPS", "tflops_fp16", 1.0),
        ("perf.attention_dit", "DiT attention", "TFLOPS", "tflops_fp16", 1.0),
        ("gpu.vram", "VRAM", "GB", "vram_gb", 1.0))


def bars(report: dict[str, Any], profile: dict[str, Any]) -> list[dict[str, Any]]:
    checks = {f"{c['group']}.{c['name']}": c for c in report.get("checks", [])}
    out = []
    for key, label, unit, spec_key, scale in BARS:
        measured = _number(checks.get(key, {}).get("measured"))
        spec = profile.get(spec_key)
        if measured is None or not spec:
            continue
        share = measured / (spec * scale)
        out.append({"label": label, "unit": unit, "measured": measured, "spec": spec * scale,
                    "share": share, "width": min(share, 1.25) / 1.25, "verdict": checks[key]["verdict"]})
    return out


def _number(value: Any) -> float | None:
    if isinstance(value, (int, float)):
        return float(value)
    try:
        return float(str(value).split()[0])
    except (ValueError, IndexError):
        return None


def render_report(report: dict[str, Any], facts: dict[str, Any], title: str, templates: Path) -> str:
    env = jinja2.Environment(loader=jinja2.FileSystemLoader(str(templates)), undefined=jinja2.StrictUndefined,
                             autoescape=True, trim_blocks=True, lstrip_blocks=True)
    try:
        return env.get_template("smoke-report.html.j2").render(
            title=title, report=report, facts=facts, bars=bars(report, facts["profile"]))
    except (jinja2.TemplateError, KeyError, TypeError) as exc:
        raise KilnError(f"the report cannot be rendered ({exc})", "smoke-report.html.j2",
                        "use a report written by `invoke smoke --json`") from None


FACTS_KEY = "image_facts"  # a smoke JSON report carries the facts it was judged against


def report_facts(report: Any, where: str, from_image: Callable[[], ImageFacts] | None = None,
                 profile: str | None = None) -> ImageFacts:
    """The facts a smoke report was judged against: the ones it carries, else those of the image given."""
    if not isinstance(report, dict) or not isinstance(report.get("checks"), list):
        raise KilnError("not a smoke report (no list of checks)", where, "use a report written by `invoke smoke --json`")
    if FACTS_KEY in report:
        try:
            facts = ImageFacts.model_validate(report[FACTS_KEY])
        except ValidationError as exc:
            raise KilnError(f"its '{FACTS_KEY}' are unreadable ({exc.errors()[0]['msg']} at "
                            f"{'.'.join(map(str, exc.errors()[0]['loc']))})", where,
                            "use a report written by `invoke smoke --json`") from None
    elif from_image:
        facts = from_image()
    else:
        raise KilnError("the report carries no image facts", where, "pass --image TAG of the image it tested")
    if profile and profile != facts.profile.name:
        raise KilnError(f"the report was judged against the {facts.profile.name} profile, not {profile}", "--gpu",
                        f"pass --gpu={facts.profile.name} or leave --gpu out")
    return facts


def write_reports(report: dict[str, Any], facts: dict[str, Any], title: str, templates: Path,
                  json_path: Path | None, html_path: Path | None) -> list[Path]:
    """The JSON report (with the facts it was judged against) and/or the HTML page; returns what was written."""
    outputs = []
    try:
        if json_path:
            json_path.write_text(json.dumps({**report, FACTS_KEY: facts}, indent=2) + "\n")
            outputs.append(json_path)
        if html_path:
            html_path.write_text(render_report(report, facts, title, templates))
            outputs.append(html_path)
    except OSError as exc:
        raise KilnError(f"cannot write the report ({exc.strerror})", str(exc.filename), "choose a writable path") from None
    return outputs
