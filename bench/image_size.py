"""Two images' sizes side by side: on disk (the engine's unpacked size) and compressed (each layer gzipped
at level 6, as a push sends it), with the layers they share counted once in the comparison.

Usage: python bench/image_size.py BEFORE AFTER [--json OUT.json]
One `docker save` of both streams every layer once; each layer is gzipped on its way through (no copy of
the images lands on disk). Prints a table per image and the after/before ratios.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import subprocess
import sys
import tarfile
import time
import zlib

CHUNK = 1 << 20


def parse(argv):
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("before")
    p.add_argument("after")
    p.add_argument("--json")
    return p.parse_args(argv)


def gzip_size(stream) -> tuple[int, int, str]:
    """(raw bytes, gzip level 6 bytes, sha256 of the raw bytes) of a stream."""
    packer, digest = zlib.compressobj(6, zlib.DEFLATED, 31), hashlib.sha256()
    raw = packed = 0
    while chunk := stream.read(CHUNK):
        raw += len(chunk)
        digest.update(chunk)
        packed += len(packer.compress(chunk))
    return raw, packed + len(packer.flush()), digest.hexdigest()


def saved_layers(refs: list[str]) -> tuple[dict[str, tuple[int, int, str]], list[dict]]:
    """{blob path: (raw, gzipped, sha256)} of every file in the saved archive over 1 KiB, and its manifest."""
    save = subprocess.Popen(["docker", "save", *refs], stdout=subprocess.PIPE)
    sizes, manifest, started = {}, [], time.monotonic()
    with tarfile.open(fileobj=save.stdout, mode="r|") as archive:
        for member in archive:
            if member.name == "manifest.json":
                manifest = json.load(archive.extractfile(member))
            elif member.isfile() and member.size > 1024:
                sizes[member.name] = gzip_size(archive.extractfile(member))
                print(f"  {member.name[:60]}: {member.size / 1e6:.0f} MB -> {sizes[member.name][1] / 1e6:.0f} MB gz "
                      f"({time.monotonic() - started:.0f} s)", file=sys.stderr, flush=True)
    if save.wait() != 0:
        raise SystemExit(f"image_size: docker save {' '.join(refs)} failed")
    return sizes, manifest


def on_disk(ref: str) -> int:
    out = subprocess.run(["docker", "image", "inspect", ref, "--format", "{{.Size}}"], capture_output=True, text=True)
    if out.returncode != 0:
        raise SystemExit(f"image_size: no image {ref}: {out.stderr.strip()}")
    return int(out.stdout)


def main(argv=None) -> int:
    args = parse(argv)
    refs = [args.before, args.after]
    disk = {ref: on_disk(ref) for ref in refs}
    sizes, manifest = saved_layers(refs)
    tagged = {tag: entry["Layers"] for entry in manifest for tag in entry.get("RepoTags") or ()}
    if any(ref not in tagged for ref in refs):
        raise SystemExit("image_size: give both images by repository:tag (docker save names them so)")
    layers = {ref: [layer for layer in tagged[ref] if layer in sizes] for ref in refs}
    # shared by content: a layer id also depends on the layers under it
    shared = {sizes[x][2] for x in layers[args.before]} & {sizes[x][2] for x in layers[args.after]}
    result = {"before": args.before, "after": args.after, "images": {},
              "blobs": {name: {"raw": raw, "gzip": packed, "sha256": sha} for name, (raw, packed, sha) in sizes.items()}}
    for ref in refs:
        own = [layer for layer in layers[ref] if sizes[layer][2] not in shared]
        result["images"][ref] = {"on_disk_bytes": disk[ref], "layers": len(layers[ref]), "layers_not_shared": len(own),
                                 "gzip_bytes": sum(sizes[layer][1] for layer in layers[ref]),
                                 "own_layers_raw_bytes": sum(sizes[layer][0] for layer in own),
                                 "own_layers_gzip_bytes": sum(sizes[layer][1] for layer in own)}
    b, a = (result["images"][ref] for ref in refs)
    result["ratios"] = {key: round(a[key] / b[key], 4) for key in ("on_disk_bytes", "gzip_bytes", "own_layers_gzip_bytes")}
    print("| image | on disk GB | gzip GB | layers not shared | raw GB | gzip GB |\n|---|---|---|---|---|---|")
    for ref, r in result["images"].items():
        print(f"| {ref} | {r['on_disk_bytes'] / 1e9:.3f} | {r['gzip_bytes'] / 1e9:.3f} | {r['layers_not_shared']} | "
              f"{r['own_layers_raw_bytes'] / 1e9:.3f} | {r['own_layers_gzip_bytes'] / 1e9:.3f} |")
    print(f"after/before: on disk {result['ratios']['on_disk_bytes']:.3f}, gzip {result['ratios']['gzip_bytes']:.3f}")
    if args.json:
        with open(args.json, "w") as out:
            json.dump(result, out, indent=1)
    return 0


if __name__ == "__main__":
    sys.exit(main())
