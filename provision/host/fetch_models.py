#!/usr/bin/env python3
"""Put a deployment's model files into its cache, on a host without the toolkit (a cloud-init VM, a pod).

Usage: fetch_models.py DEPLOY_JSON CACHE_DIR [--check | --announce] [--owner UID]

Reads `cache.models` of the deployment manifest `invoke deploy` wrote (deploy.json: folder, file, size,
sha256 and the source repo, revision and path of each file) and makes CACHE_DIR/models/<folder>/<file>
of each. A file already there with the manifest's size and sha256 is kept. Others are downloaded from
HF_ENDPOINT (default: the manifest's cache.endpoint) into <file>.part, resumed where a cut left it,
and renamed into place only after size and sha256 match. HF_TOKEN is sent to the endpoint's own host
only, never along a redirect to a CDN. With --check nothing is downloaded: each file must be there with
the manifest's size. --owner gives what it makes to that uid/gid when run as root. --announce: while
it runs, a marker naming this boot tells a server started beside it on this machine to wait.

Standard library only (Python 3.6 or later): it runs on the python3 every cloud-init host has. Exit 0
when every file is in place, 1 with one line saying which file and why, 2 on bad usage, 128+N on signal N."""

import hashlib
import http.client
import json
import os
import signal
import sys
import time
import urllib.error
import urllib.parse
import urllib.request

BOOT_ID = "/proc/sys/kernel/random/boot_id"
CHUNK = 4 << 20
ATTEMPTS = 4


class Failed(Exception):
    pass


def say(text):
    print("kiln-fetch: " + text, flush=True)


def sha256_of(path):
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        for block in iter(lambda: f.read(CHUNK), b""):
            digest.update(block)
    return digest.hexdigest()


def url_of(endpoint, source):
    quote = urllib.parse.quote
    return "{}/{}/resolve/{}/{}".format(endpoint, source["repo"], quote(source["revision"], safe=""),
                                        quote(source["path"]))


def origin(url):
    parts = urllib.parse.urlsplit(url)
    scheme = parts.scheme.lower()
    return scheme, (parts.hostname or "").lower(), parts.port or (443 if scheme == "https" else 80)


def request(url, endpoint, token, offset):
    req = urllib.request.Request(url, headers={"User-Agent": "kiln-fetch"})
    if offset:
        req.add_header("Range", "bytes={}-".format(offset))
    if token and origin(url) == origin(endpoint):
        # not carried along a redirect (urllib copies only redirectable headers to the next request)
        req.add_unredirected_header("Authorization", "Bearer " + token)
    return urllib.request.urlopen(req, timeout=60)


def download(model, part, endpoint, token):
    """Append to part until it holds model['size'] bytes, resuming with a Range request after a cut (a cut
    may end the body early with no error)."""
    url = url_of(endpoint, model["source"])
    for attempt in range(1, ATTEMPTS + 1):
        offset = os.path.getsize(part) if os.path.exists(part) else 0
        if offset >= model["size"]:
            return
        try:
            with request(url, endpoint, token, offset) as answer, open(part, "ab") as out:
                if offset and answer.status != 206:  # the server ignored the Range: start over
                    out.truncate(0)
                for block in iter(lambda: answer.read(CHUNK), b""):
                    out.write(block)
            got = os.path.getsize(part)
            if got >= model["size"]:
                return
            problem = "the connection ended at {} of {} bytes".format(got, model["size"])
        except urllib.error.HTTPError as exc:
            if exc.code in (401, 403, 404):
                raise Failed("{} answered {} for {}: check HF_TOKEN and the model's access".format(
                    urllib.parse.urlsplit(url).hostname, exc.code, model["source"]["path"]))
            problem = "HTTP {}".format(exc.code)
        except (OSError, ValueError, http.client.HTTPException) as exc:
            problem = str(exc) or type(exc).__name__
        say("{}: {} (attempt {} of {})".format(model["file"], problem, attempt, ATTEMPTS))
        time.sleep(min(30, 2 ** attempt))
    raise Failed("cannot download {}: the endpoint keeps failing".format(model["file"]))


def place(model, cache, endpoint, token, owner):
    folder = os.path.join(cache, "models", model["folder"])
    final = os.path.join(folder, model["file"])
    if os.path.exists(final) and os.path.getsize(final) == model["size"] and sha256_of(final) == model["sha256"]:
        say("{}/{}: in place, sha256 verified".format(model["folder"], model["file"]))
        return
    os.makedirs(folder, exist_ok=True)
    part = final + ".part"
    say("{}/{}: fetching {:.2f} GB".format(model["folder"], model["file"], model["size"] / 1e9))
    download(model, part, endpoint, token)
    size = os.path.getsize(part)
    if size != model["size"] or sha256_of(part) != model["sha256"]:
        os.unlink(part)
        raise Failed("{}: downloaded {} bytes that do not match the manifest's size {} and sha256 {}".format(
            model["file"], size, model["size"], model["sha256"][:16]))
    os.replace(part, final)
    if owner is not None and os.geteuid() == 0:
        for path in (os.path.join(cache, "models"), folder, final):
            os.chown(path, owner, owner)
    say("{}/{}: fetched, sha256 verified".format(model["folder"], model["file"]))


def check(model, cache):
    final = os.path.join(cache, "models", model["folder"], model["file"])
    if not os.path.isfile(final):
        raise Failed("{}/{} is not in the cache".format(model["folder"], model["file"]))
    if os.path.getsize(final) != model["size"]:
        raise Failed("{}/{} has {} bytes, the manifest says {}".format(
            model["folder"], model["file"], os.path.getsize(final), model["size"]))


def announce(path):
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(BOOT_ID) as f:
        boot = f.read().strip()
    with open(path + ".new", "w") as f:
        f.write(boot + "\n")
    os.replace(path + ".new", path)


def parse(argv):
    args, options, owner, rest = [], set(), None, iter(argv)
    for arg in rest:
        if arg == "--owner":
            owner = next(rest, "")
            if not owner or owner.strip("0123456789"):
                return "--owner needs a uid"
        elif arg in ("--check", "--announce"):
            options.add(arg)
        elif arg.startswith("-"):
            return "unknown option " + arg
        else:
            args.append(arg)
    if len(args) != 2 or "" in args:
        return "two arguments needed"
    if len(options) == 2:
        return "--check or --announce, not both"
    return args[0], args[1], options, int(owner) if owner else None


def main(argv):
    parsed = parse(argv)
    if isinstance(parsed, str):
        print("kiln-fetch: {}; usage: {}".format(parsed, __doc__.split("\n\n")[1][7:]), file=sys.stderr)
        return 2
    manifest, cache, options, owner = parsed
    for sig in (signal.SIGTERM, signal.SIGHUP, signal.SIGINT):   # through the finally: the marker goes
        if signal.getsignal(sig) != signal.SIG_IGN:   # nohup's, a shell's for its background jobs
            signal.signal(sig, lambda number, _: sys.exit(128 + number))
    try:
        with open(manifest) as f:
            spec = json.load(f)["cache"]
        models = spec["models"]
        endpoint = (os.environ.get("HF_ENDPOINT") or spec["endpoint"]).rstrip("/")
        token = (os.environ.get("HF_TOKEN") or "").strip()
        marker = os.path.join(cache, "models", spec["arriving_marker"]) if "--announce" in options else ""
        try:
            if marker:
                announce(marker)
            for model in models:
                if "--check" in options:
                    check(model, cache)
                else:
                    place(model, cache, endpoint, token, owner)
        finally:
            for path in (marker, marker + ".new") if marker else ():
                if os.path.exists(path):
                    os.unlink(path)
    except Failed as exc:
        print("kiln-fetch: " + str(exc), file=sys.stderr)
        return 1
    except (OSError, ValueError, KeyError, TypeError) as exc:
        print("kiln-fetch: cannot use {} or {} ({})".format(manifest, cache, exc), file=sys.stderr)
        return 1
    say("{} model file(s) in {}".format(len(models), os.path.join(cache, "models")))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
