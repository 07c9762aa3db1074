"""The one-page HTML report, from the JSON of the recorded H200 run."""

import json
from html.parser import HTMLParser
from pathlib import Path

from kiln.render.facts import image_facts
from kiln.render.report import bars, render_report

H200 = Path(__file__).resolve().parent.parent.parent / "docs" / "gpu-validation" / "h200.json"


class _Collect(HTMLParser):
    def __init__(self):
        super().__init__()
        self.rects, self.rows, self.text = [], 0, []

    def handle_starttag(self, tag, attrs):
        self.rects += [dict(attrs)] if tag == "rect" else []
        self.rows += tag == "tr"

    def handle_data(self, data):
        self.text.append(data)


def test_bars_compare_measured_with_the_profile(project):
    report = json.loads(H200.read_text())
    facts = image_facts(project.subject("h200")).to_json()
    found = {b["label"]: b for b in bars(report, facts["profile"])}
    assert set(found) == {"copy bandwidth", "bf16 matmul", "fp16 matmul", "DiT attention", "VRAM"}
    copy = found["copy bandwidth"]
    assert copy["spec"] == 4800 and round(copy["share"], 2) == round(4273.9 / 4800, 2)


def test_page_has_chart_and_every_check(project, tmp_path):
    report = json.loads(H200.read_text())
    page = render_report(report, image_facts(project.subject("h200")).to_json(), "H200 <run>", project.templates_dir)
    parsed = _Collect()
    parsed.feed(page)
    assert len(parsed.rects) == 5
    assert parsed.rows == len(report["checks"]) + 1
    text = " ".join(parsed.text)
    assert "H200 <run>" in text and "4274 / 4800 GB/s (89%)" in text
    assert "http" not in page.split("<body>")[1].split("</svg>")[0]  # nothing fetched to view it


def test_page_without_gpu_measurements_says_so(project):
    report = {"schema": 1, "summary": {"pass": 1, "warn": 0, "fail": 0, "skip": 1, "seconds": 1.0},
              "checks": [{"group": "gpu", "name": "visible", "verdict": "skip", "measured": None,
                          "expected": ">= 1", "unit": "", "note": "no GPU", "seconds": 0}]}
    page = render_report(report, image_facts(project.subject("4090")).to_json(), "t", project.templates_dir)
    assert "No GPU measurements" in page and "<rect" not in page
