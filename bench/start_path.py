"""The start path of a kiln image on this host, without a GPU: ComfyUI's own start with and without the
bytecode in the image, and the GPU preflight run before ComfyUI (as the start script did) or beside it (as it
does now).

Usage: python bench/start_path.py IMAGE [--rounds 3] [--flag=--disable-api-nodes ...] [--json OUT.json]

IMAGE is a kiln image built with its bytecode. Its twin without (every __pycache__ under /opt/comfyui and
/opt/kiln removed, the image as kiln built it before) is derived here and removed at the end. Every run is a
read-only container with the writable folders a deployment gives it, no network, timed from inside:
- comfyui: `main.py --cpu --quick-test-for-ci` (imports, nodes, server set-up; it exits where it would listen);
- serial: the preflight to its end, then comfyui;
- beside: the preflight and comfyui started together, done when both are.
The preflight finds no GPU here and ends after torch is imported and CUDA probed, so what it adds here is the
part of its cost that does not depend on the GPU: on a GPU host it also opens the device and runs a kernel.
Each round runs every case once, in an order that rotates between rounds; one untimed run of each image
first puts both in the page cache. Prints the medians and the ratios: compiled / none, beside / serial, and
the image now (beside, compiled) / the image as it was (serial, none).
"""

from __future__ import annotations

import argparse
import json
import statistics
import subprocess
import sys
import time

TWIN = "kiln-measure/start-path:no-bytecode"
WRITABLE = ("/tmp", "/opt/comfyui/user", "/opt/comfyui/output", "/opt/comfyui/temp")
COMFYUI = "cd /opt/comfyui && /opt/venv/bin/python main.py --cpu --quick-test-for-ci --disable-auto-launch {flags}"
PREFLIGHT = "(cd /opt/kiln/payload && /opt/venv/bin/python -m smoke.preflight --expect /opt/kiln/kiln.json)"
SCRIPTS = {   # each ends with ComfyUI's own exit status (the preflight, which finds no GPU here, fails by design)
    "comfyui": "{comfyui}",
    "serial": "{preflight}; {comfyui}",
    "beside": "{preflight} & {comfyui}; code=$?; wait; exit $code",
}
TIMED = 't0=$(date +%s.%N); ({body}) >/dev/null 2>&1; code=$?; t1=$(date +%s.%N); echo "kiln-timed $t0 $t1 $code"'
CASES = [("comfyui", "compiled"), ("comfyui", "none"), ("serial", "compiled"), ("beside", "compiled"),
         ("serial", "none")]


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("image")
    p.add_argument("--rounds", type=int, default=3)
    p.add_argument("--flag", action="append", default=[], help="a launch flag of the image for ComfyUI (repeat)")
    p.add_argument("--json")
    return p.parse_args(argv)


def docker(*args: str, stdin: str | None = None) -> str:
    done = subprocess.run(["docker", *args], input=stdin, capture_output=True, text=True)
    if done.returncode != 0:
        raise SystemExit(f"start_path: docker {args[0]} failed: {done.stderr.strip()[-300:]}")
    return done.stdout


def derive_twin(image: str) -> None:
    """The image without any bytecode under /opt/comfyui and /opt/kiln, as its own user."""
    user = docker("image", "inspect", "--format", "{{.Config.User}}", image).strip() or "root"
    dockerfile = (f"FROM {image}\nUSER root\n"
                  "RUN find /opt/comfyui /opt/kiln -name __pycache__ -prune -exec rm -r {} +\n"
                  f"USER {user}\n")
    docker("build", "--quiet", "--tag", TWIN, "-", stdin=dockerfile)


def timed(image: str, body: str) -> float:
    """Seconds the body takes inside a read-only container of the image."""
    tmpfs = [arg for path in WRITABLE for arg in ("--tmpfs", f"{path}:rw,exec,mode=1777")]
    out = docker("run", "--rm", "--read-only", *tmpfs, "--network", "none", "--entrypoint", "/bin/sh", image,
                 "-c", TIMED.format(body=body))
    marker = [line for line in out.splitlines() if line.startswith("kiln-timed ")]
    if not marker:
        raise SystemExit(f"start_path: no timing from {image}: {out[-300:]}")
    t0, t1, code = marker[-1].split()[1:]
    if code != "0":
        raise SystemExit(f"start_path: ComfyUI's start failed ({code}) in {image}: {body}")
    return round(float(t1) - float(t0), 3)


def body(script: str, flags: list[str]) -> str:
    return SCRIPTS[script].format(comfyui=COMFYUI.format(flags=" ".join(flags)), preflight=PREFLIGHT)


def measure(image: str, rounds: int, flags: list[str], progress) -> dict[str, list[float]]:
    images = {"compiled": image, "none": TWIN}
    for ref in images.values():
        timed(ref, body("comfyui", flags))   # untimed: the image's files into the page cache
    runs: dict[str, list[float]] = {f"{s} {b}": [] for s, b in CASES}
    for round_ in range(rounds):
        shift = round_ % len(CASES)
        for script, bytecode in CASES[shift:] + CASES[:shift]:
            seconds = timed(images[bytecode], body(script, flags))
            runs[f"{script} {bytecode}"].append(seconds)
            progress(f"round {round_ + 1}/{rounds}: {script}, bytecode {bytecode}: {seconds:.2f} s")
    return runs


def report(runs: dict[str, list[float]]) -> tuple[str, dict[str, float]]:
    mid = {name: statistics.median(values) for name, values in runs.items()}
    rows = ["| case | runs s | median s |", "|---|---|---|"]
    rows += [f"| {name} | {' / '.join(f'{v:.2f}' for v in values)} | {mid[name]:.2f} |" for name, values in runs.items()]
    ratios = {
        "comfyui: compiled / none": mid["comfyui compiled"] / mid["comfyui none"],
        "compiled: beside / serial": mid["beside compiled"] / mid["serial compiled"],
        "the image now / as it was (beside compiled / serial none)": mid["beside compiled"] / mid["serial none"],
    }
    rows += ["", "| ratio | value |", "|---|---|"] + [f"| {k} | {v:.3f} |" for k, v in ratios.items()]
    return "\n".join(rows), {k: round(v, 3) for k, v in ratios.items()}


def main(argv=None) -> int:
    args = parse(argv)
    started = time.monotonic()
    derive_twin(args.image)
    try:
        runs = measure(args.image, args.rounds, args.flag, lambda line: print(line, file=sys.stderr, flush=True))
    finally:
        subprocess.run(["docker", "rmi", "--force", TWIN], capture_output=True)
    text, ratios = report(runs)
    print(text)
    if args.json:
        record = {"image": args.image, "image_id": docker("image", "inspect", "--format", "{{.Id}}", args.image).strip(),
                  "flags": args.flag, "rounds": args.rounds, "runs": runs, "ratios": ratios,
                  "elapsed_s": round(time.monotonic() - started, 1)}
        with open(args.json, "w") as out:
            out.write(json.dumps(record, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
