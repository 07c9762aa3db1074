"""Write the expect files bench/gpu_verdicts.sh runs against: the h200 and 4090 profiles as the
toolkit renders them into images, and an h200 profile claiming twice the card.

    python bench/gpu_expects.py [OUT [STACK]]   (default bench/results/gpu; STACK: build the h200 and 4090
                                                  facts from that stack of versions.lock, files named -STACK)
"""

import json
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from kiln.project import Project  # noqa: E402
from kiln.render.facts import image_facts  # noqa: E402

DOUBLED = ("bandwidth_gbs", "tflops_fp16", "measured_copy_tbs", "measured_matmul_tflops", "measured_matmul_fp16_tflops",
           "measured_attention_tflops")


def main(out: Path, stack: str | None = None) -> None:
    project = Project(ROOT)
    out.mkdir(parents=True, exist_ok=True)
    facts = {gpu: image_facts(project.subject(gpu, stack=stack)).to_json() for gpu in ("h200", "4090")}
    double = json.loads(json.dumps(facts["h200"]))
    double["profile"].update({key: 2 * double["profile"][key] for key in DOUBLED})
    for name, data in (("h200", facts["h200"]), ("h200-2x", double), ("4090", facts["4090"])):
        path = out / f"expect-{name}{'-' + stack if stack else ''}.json"
        path.write_text(json.dumps(data, indent=2) + "\n")
        print(f"wrote {path}")


if __name__ == "__main__":
    main(Path(sys.argv[1]) if len(sys.argv) > 1 else ROOT / "bench" / "results" / "gpu",
         sys.argv[2] if len(sys.argv) > 2 else None)
