"""Invoke tasks: each parses arguments, calls one library function, and prints its result."""

from __future__ import annotations

import functools
import os
import sys
import time
from pathlib import Path
from typing import TYPE_CHECKING


from invoke import Collection, Exit, Program, task
from invoke.exceptions import ParseError

import console
from kiln import addresses, arguments, paths
from kiln.data.files import read_json
from kiln.data.records.run import RunRecord
from kiln.data.gpus import find_gpu
from kiln.data.schemas import write_schemas
from kiln.deploy.targets import TARGETS, targets as parse_targets
from kiln.errors import KilnError
from kiln.gate.findings import ERROR, errors
from kiln.host.check import as_json, check_host, exit_code, model_bytes, write_json
from kiln.host.probe import read_host
from kiln.identity import BAKED_MODELS_DIR, base_ref, image_tags, run_name
from kiln.models.plan import size_text
from kiln.models.source import endpoint_from_env
from kiln.project import DEFAULT_IMAGE, Project
from kiln.sources import comfyui as source
from kiln.sources.comfyui import comfyui_source

# The Docker SDK, HTTP clients, crypto, SBOM and template libraries are imported inside the tasks that use
# them: `invoke --list`, a bad argument and the gate answer without loading them (tests/unit/test_startup.py).
if TYPE_CHECKING:
    from kiln.models.fetch import FetchReport
    from kiln.publish.job import PublishRequest

PROJECT = Project(Path(__file__).resolve().parent)
BUILD = PROJECT.build


def user_errors(fn):
    """A KilnError becomes one line on stderr and exit code 2, never a traceback."""
    @functools.wraps(fn)
    def wrapper(*args, **kwargs):
        try:
            return fn(*args, **kwargs)
        except KilnError as exc:
            raise Exit(f"error: {exc.line()}", code=2) from None
        except KeyboardInterrupt:
            raise Exit("error: interrupted", code=2) from None
    return wrapper


def _print_findings(findings) -> None:
    for finding in findings:
        print(finding.line(), file=sys.stderr if finding.severity == ERROR else sys.stdout)


def _gate(gpu: str, image: str, strict: bool, stack: str | None = None):
    subject, findings = PROJECT.check(gpu, image, strict, stack)
    _print_findings(findings)
    bad = errors(findings)
    if bad:
        raise Exit(f"gate: {len(bad)} error(s) for image '{subject.image.name}' on {subject.gpu.name}; "
                   "nothing rendered or built", code=2)
    return subject


@task(help={"check": "fail when versions.lock is stale or disagrees with itself (offline)",
            "resolve": "with --check: also resolve again and compare (needs the package index)"})
@user_errors
def lock(c, check=False, resolve=False):
    """Resolve versions.lock's [packages] from its inputs (or --check that it is current)."""
    from kiln.lock.relock import check_lock, relock

    if check:
        counts = check_lock(PROJECT.lock_path, resolve=resolve, shown="versions.lock")
        stacks = ", ".join(f"{name} {count} packages" for name, count in counts.items())
        print(f"versions.lock is current: {stacks}; inputs unchanged, pins consistent")
        return
    started = time.monotonic()
    result = relock(PROJECT.lock_path)
    for name, (changed, count) in result.items():
        print(f"stack {name}: {count} packages, {'changed' if changed else 'unchanged'}")
    verb = "rewritten" if any(changed for changed, _ in result.values()) else "unchanged"
    print(f"versions.lock {verb} in {time.monotonic() - started:.1f} s")


@task(help={"gpu": "GPU profile or spelling (4090, rtx4090, 'RTX 4090')", "image": "image spec name or path",
            "strict": "treat warnings as errors",
            "stack": "judge the image on this [stacks] entry of versions.lock instead of the one its spec names"})
@user_errors
def check(c, gpu, image=DEFAULT_IMAGE, strict=False, stack=None):
    """Run the compatibility gate for one GPU and image; errors exit 2."""
    subject = _gate(gpu, image, strict, stack)
    print(f"gate passed: image '{subject.image.name}' on {subject.gpu.display} "
          f"(stack '{subject.lock.name}': ComfyUI {subject.lock.comfyui.version}, torch {subject.lock.stack.torch})")


@task(help={"gpu": "GPU profile or spelling", "image": "image spec name or path",
            "out": "output directory (default build/<image>-<gpu>, with --all-gpus build/portable/<image>)",
            "strict": "treat warnings as errors",
            "portable": "a context a stock engine builds without kiln: wheels from the index by hash, ComfyUI inside",
            "all_gpus": "with --portable: every profile the gate passes (the others skipped and listed), plus a "
                        "docker-bake.json sharing the heavy stage",
            "comfyui_src": "with --portable: local ComfyUI checkout (verified against the pinned commit) or archive",
            "allow_unverified_source": "with --portable: accept a --comfyui-src that cannot be verified",
            "ca_bundle": "with --portable: CA bundle pip trusts in the builder stage only (also KILN_CA_BUNDLE)",
            "stack": "build from this [stacks] entry of versions.lock instead of the one the spec names"})
@user_errors
def render(c, gpu=None, image=DEFAULT_IMAGE, out=None, strict=False, portable=False, all_gpus=False, comfyui_src=None,
           allow_unverified_source=False, ca_bundle=None, stack=None):
    """Gate, then render the build context (Dockerfile, start script, model paths, facts, manifest)."""
    if (all_gpus or comfyui_src or allow_unverified_source or ca_bundle) and not portable:
        raise KilnError("--all-gpus, --comfyui-src, --allow-unverified-source and --ca-bundle go with --portable",
                        "invoke render", "add --portable")
    if not gpu and not all_gpus:
        raise KilnError("no GPU profile given", "--gpu", "pass --gpu=X (or --portable --all-gpus)")
    folder = paths.output_folder(out, "--out") if out is not None else None
    if stack and (portable or all_gpus):
        raise KilnError("--stack is not taken with --portable", "--stack",
                        "render the portable context from the spec's stack")
    if not portable:
        from kiln.render.context import write_context

        subject = _gate(gpu, image, strict, stack)
        target = folder or BUILD.context(subject.image.name, subject.gpu.name, stack=_override(subject, stack))
        rendered = write_context(subject, PROJECT.templates_dir, PROJECT.payload_dir, target)
        print(f"rendered {len(rendered.files)} files to {rendered.out}")
        return
    from kiln.render.portable import SUMMARY, PortableRequest, every_profile, render_portable

    ca = _ca_bundle(ca_bundle)
    src = arguments.path(comfyui_src, "--comfyui-src") if comfyui_src is not None else None
    source_cache = source.default_cache()
    if all_gpus:
        selection = every_profile(PROJECT, image, strict)
        for subject, findings in selection.passed:
            _print_findings(findings)
        subjects = [subject for subject, _ in selection.passed]
    else:
        selection, subjects = None, [_gate(gpu, image, strict)]
    request = PortableRequest(
        out=folder or BUILD.portable(subjects[0].image.name, None if all_gpus else subjects[0].gpu.name),
        templates=PROJECT.templates_dir, payload=PROJECT.payload_dir,
        source=lambda pin, stack: comfyui_source(pin, src, allow_unverified_source, source_cache, stack),
        ca_bundle=ca)
    result = render_portable(subjects, request, all_gpus, selection.skipped if selection else ())
    for name, rendered in result.contexts.items():
        print(f"rendered {len(rendered.files)} files to {rendered.out} (portable"
              f"{'' if result.verified else ', ComfyUI source UNVERIFIED'})")
    if result.matrix:
        print(f"build matrix {result.matrix}: docker buildx bake -f {result.matrix}")
    for skipped in result.skipped:
        print(f"skipped {skipped.profile}: the gate refuses image '{subjects[0].image.name}' there "
              f"({len(skipped.errors)} error(s)):", file=sys.stderr)
        _print_findings(skipped.errors)
    if result.skipped:
        print(f"warning: {len(result.skipped)} profile(s) skipped and left out of the build matrix: "
              f"{', '.join(k.profile for k in result.skipped)} (recorded in {result.root / SUMMARY})", file=sys.stderr)


@task(help={"out": "where to write the JSON Schemas (default docs/schemas)"})
@user_errors
def schema(c, out=None):
    """Write JSON Schemas for gpus.yaml and image specs (editors validate and complete with them)."""
    written = write_schemas(paths.output_folder(out, "--out") if out is not None else PROJECT.root / "docs" / "schemas")
    for path in written:
        print(f"wrote {path}")


@task
@user_errors
def gpus(c):
    """List the GPU profiles with their hardware figures, serving defaults and the stacks that run on them."""
    rows = [(p.name, p.display, f"{p.vram_gb:g}", f"{p.bandwidth_gbs:g}", p.sm, f"{p.tflops_fp16:g}",
             f"{p.pcie.gen} x{p.pcie.width}", p.serving.vram_mode, p.confidence, ",".join(PROJECT.stacks_for(p)))
            for p in PROJECT.gpus.values()]
    console.table(("profile", "card", "VRAM GB", "GB/s", "arch", "TFLOPS", "PCIe", "VRAM mode", "confidence",
                   "stacks with kernels"), rows, numeric=(2, 3, 5))
    print("\nimages get the stack their spec names (--stack overrides it):")
    for image, stack in PROJECT.image_stacks().items():
        refused = [p.name for p in PROJECT.gpus.values() if stack not in PROJECT.stacks_for(p)]
        print(f"  {image}: {stack}" + (f"; on {', '.join(refused)} it has no kernels: pass --stack "
                                       f"{PROJECT.stacks_for(PROJECT.gpus[refused[0]])[0]}" if refused else ""))


@task(help={"name": "base from versions.lock [bases] (default: the lock's default_base)",
            "plain": "plain log lines instead of a live view"})
@user_errors
def base(c, name=None, plain=False):
    """Build the local base image (debootstrap + import); nothing to do when it is current."""
    from kiln.engine.bases import ensure_base, mirror_from_env
    from kiln.engine.client import connect

    mirror_from_env()  # refused before the engine is asked anything
    lock = PROJECT.lock
    show = console.progress(plain)
    try:
        result = ensure_base(connect(), lock, name or lock.default_base, BUILD, show)
    finally:
        show.close()
    verb = "built" if result.built else "up to date, nothing to do"
    print(f"base {result.ref} {verb}: {result.image_id[:19]}, {len(result.packages)} Debian packages")


@task(help={"gpu": "GPU profile or spelling", "image": "image spec name or path",
            "comfyui_src": "local ComfyUI checkout (verified against the pinned commit) or archive",
            "allow_unverified_source": "accept a --comfyui-src that cannot be verified (labelled unverified)",
            "ca_bundle": "extra CA bundle for the package index (also KILN_CA_BUNDLE); never enters the image",
            "strict": "treat gate warnings as errors", "plain": "plain log lines instead of a live view",
            "bake_models": "put the manifest's model files, verified again, in their own layer (tag suffix -models)",
            "models_from": "with --bake-models: the cache `invoke models.fetch --to` filled",
            "stack": "build from this [stacks] entry of versions.lock instead of the one the spec names"})
@user_errors
def build(c, gpu, image=DEFAULT_IMAGE, comfyui_src=None, allow_unverified_source=False, ca_bundle=None,
          strict=False, plain=False, bake_models=False, models_from=None, stack=None):
    """Gate, render and build the image through the Docker engine; tags it and writes a build record."""
    extra_ca = _ca_bundle(ca_bundle)
    bake_from = _bake_from(bake_models, models_from)
    src = arguments.path(comfyui_src, "--comfyui-src") if comfyui_src is not None else None
    from kiln.engine.job import BuildRequest, run_build
    from kiln.sources import wheels

    wheel_cache, source_cache, _ = wheels.default_cache(), source.default_cache(), wheels.server_port()
    subject = _gate(gpu, image, strict, stack)
    request = BuildRequest(
        templates=PROJECT.templates_dir, payload=PROJECT.payload_dir, folder=BUILD, stack=_override(subject, stack),
        wheel_cache=wheel_cache, source_cache=source_cache, comfyui_src=src,
        allow_unverified=allow_unverified_source, bake_from=bake_from,
        ca_bundle=extra_ca.resolve() if extra_ca else None)
    show = console.progress(plain)
    failed = True
    try:
        result, record = run_build(subject, request, show)
        failed = False
    finally:
        show.close(failed)
    print(f"built {result.image_id[:19]} ({result.size / 1e9:.2f} GB) in {result.durations['total_s']:.0f} s")
    for tag in result.tags:
        print(f"  tag {tag}")
    if not result.verified_source:
        print("  ComfyUI source is UNVERIFIED (labelled io.kiln.comfyui-source=unverified)")
    if bake_from:
        print(f"  models baked into {BAKED_MODELS_DIR} from {bake_from}: {len(subject.image.models)} file(s), "
              f"{sum(m.size for m in subject.image.models) / 1e9:.2f} GB, sha256 verified (labelled io.kiln.models=baked)")
    print(f"  record {record}")


def _override(subject, stack) -> str | None:
    """The stack --stack chose (its context and record stand apart from the spec's own), else None."""
    return subject.lock.name if stack else None


def _bake_from(bake_models, models_from):
    """The cache the baked files come from. Image specs and profiles name only the in-container mount, never a
    host cache, so with --bake-models the cache must be given."""
    if models_from is not None and not bake_models:
        raise KilnError("--models-from is only used with --bake-models", "--models-from", "add --bake-models")
    if not bake_models:
        return None
    if models_from is None:
        raise KilnError("--bake-models needs the cache the models were fetched to (no image spec or profile names a "
                        "host cache)", "--bake-models", "pass --models-from CACHE, the folder given to "
                        "`invoke models.fetch --to`")
    return paths.cache_folder(models_from, "--models-from")


def _ca_bundle(flag):
    """--ca-bundle, else KILN_CA_BUNDLE (empty counts as unset), as a readable file; None when neither is given."""
    if flag is not None:
        return paths.input_file(flag, "--ca-bundle")
    value = os.environ.get("KILN_CA_BUNDLE")
    return paths.input_file(value, "environment KILN_CA_BUNDLE") if value else None




@task(help={"images": "also remove the images kiln built (bases stay unless --bases)",
            "bases": "with --images: remove the local base images too"})
@user_errors
def clean(c, images=False, bases=False):
    """Remove what kiln made: its containers, and with --images its images (found by label)."""
    from kiln.engine.client import connect, remove_made_containers, remove_made_images

    client = connect()
    print(f"removed {remove_made_containers(client)} container(s)")
    if images:
        tags = remove_made_images(client, keep_bases=not bases)
        print(f"removed {len(tags)} image tag(s)" + "".join(f"\n  {t}" for t in tags))


@task(help={"gpu": "GPU profile or spelling the image was built for", "image": "image spec name or a full tag",
            "require_gpu": "GPU checks that cannot run fail instead of skipping",
            "json": "also write the JSON report here", "html": "also write a one-page HTML report here",
            "host": "run the payload on this host's Python instead of in the image",
            "allow_no_gpu": "given GPUs, a container that sees none is not a failure (recorded in the report)",
            "cache": "a cache with the image's models (from `invoke models.fetch`), mounted as `invoke run` does: "
                     "the workflow checks run the image's warm-up workflow on them",
            "require_models": "the workflow's models missing from the cache fail the run instead of skipping"})
@user_errors
def smoke(c, gpu, image=DEFAULT_IMAGE, require_gpu=False, json=None, html=None, host=False, allow_no_gpu=False,
          cache=None, require_models=False):
    """Run the GPU smoke suite inside the built image (or --host); table, JSON, HTML; exit 1 on failures."""
    json_out = paths.output_file(json, "--json") if json is not None else None
    html_out = paths.output_file(html, "--html") if html is not None else None
    tag = addresses.image_tag(image, "--image") if ":" in image else None
    cache_dir = paths.mounted_cache(cache, "--cache") if cache is not None else None
    from kiln.engine.client import connect
    from kiln.engine.smoke import resolve_tag, run_in_image, run_on_host, smoke_record
    from kiln.render.report import write_reports

    subject = PROJECT.subject(gpu, DEFAULT_IMAGE if tag else image)
    if host:
        run = run_on_host(subject, PROJECT.payload_dir, require_gpu, cache_dir, require_models)
        title = f"kiln smoke on this host against {subject.gpu.display}"
    else:
        client = connect()
        tag = resolve_tag(client, tag or image_tags(subject)[0], subject.gpu.name)
        run = run_in_image(client, tag, require_gpu, allow_no_gpu, cache=cache_dir, require_models=require_models)
        title = f"kiln smoke of {tag}"
    print(run.gpu_note)
    print(run.table)
    if run.image_id:
        print(f"record: {BUILD.write_smoke(smoke_record(run, tag))}")
    for path in write_reports(run.report, run.facts, title, PROJECT.templates_dir, json_out, html_out):
        print(f"report: {path}")
    if run.exit_code != 0:
        raise Exit(code=1)


@task(help={"json": "a smoke JSON report (from `invoke smoke --json`)", "html": "where to write the HTML page",
            "image": "a built image to take the facts from, for reports that do not carry them",
            "gpu": "optional: the profile the report must have been judged against"})
@user_errors
def report(c, json, html, image=None, gpu=None):
    """Turn a smoke JSON report into the one-page HTML report (chart + table), with the image's own facts."""
    source = paths.input_file(json, "--json")
    target = paths.output_file(html, "--html")
    image = addresses.image_tag(image, "--image") if image is not None else None
    from kiln.render.report import report_facts, write_reports

    data = read_json(source)
    facts = report_facts(data, str(source), (lambda: _read_facts(image)) if image else None,
                         find_gpu(PROJECT.gpus, gpu).name if gpu else None)
    write_reports(data, facts.to_json(), f"kiln smoke report: {facts.profile.display}", PROJECT.templates_dir, None,
                  target)
    print(f"report: {target}")


def _read_facts(image):
    from kiln.engine.client import connect
    from kiln.engine.facts import read_facts

    return read_facts(connect(), image)


@task(help={"gpu": "GPU profile or spelling the image was built for", "image": "image spec name or a full tag",
            "cache": "cache directory mounted at the image's cache mount (see provision.cache)",
            "port": "host port (default 8188)", "gpus": "all, or device ids like 0,1",
            "public": "publish on all interfaces instead of 127.0.0.1",
            "cpu_mode": "no GPUs: ComfyUI on the CPU (tests only)", "timeout": "seconds to wait for healthy"})
@user_errors
def run(c, gpu, image=DEFAULT_IMAGE, cache=None, port="8188", gpus="all", public=False, cpu_mode=False, timeout="900"):
    """Start the image with GPUs, cache and port; wait until warm-up made it healthy; print URL and timings."""
    host_port, selection, limit = arguments.port(port), arguments.gpus(gpus), arguments.positive(timeout, "--timeout")
    tag = addresses.image_tag(image, "--image") if ":" in image else None
    cache_dir = paths.mounted_cache(cache, "--cache") if cache is not None else None
    from kiln.engine.client import connect, listed
    from kiln.engine.run import RunRequest, start
    from kiln.engine.smoke import resolve_tag

    subject = PROJECT.subject(gpu, DEFAULT_IMAGE if tag else image)
    client = connect()
    tag = resolve_tag(client, tag or image_tags(subject)[0], subject.gpu.name)
    request = RunRequest(tag=tag, name=run_name(subject, host_port), port=host_port, cache=cache_dir,
                         gpus=selection, public=public, cpu_mode=cpu_mode, timeout_s=limit)
    show = console.progress(plain=False)
    try:
        running = start(client, request, show)
    finally:
        show.close()
    print(f"{running.name} is ready at {running.url} ({running.seconds_to_healthy:.1f} s to healthy)")
    timings = running.warmup.model_dump(exclude_none=True)
    print("warm-up: " + ", ".join(f"{k}={v}" for k, v in sorted(timings.items())))
    image_id = listed(lambda: client.images.get(tag).id)
    written = BUILD.write_run(RunRecord(image_id=image_id, tag=tag, seconds_to_healthy=running.seconds_to_healthy,
                                        warmup=running.warmup, cpu_mode=cpu_mode))
    print(f"record: {written.path}" + (f" kept, not replaced: {written.kept_because}" if written.kept else ""))


@task(help={"name": "only this container (default: every one `invoke run` started)"})
@user_errors
def stop(c, name=None):
    """Stop (SIGTERM) and remove the containers `invoke run` started."""
    only = arguments.name(name) if name is not None else None
    from kiln.engine.client import connect
    from kiln.engine.run import stop as stop_containers

    names = stop_containers(connect(), only)
    print(f"stopped {len(names)} container(s)" + "".join(f"\n  {n}" for n in names))


@task(help={"path": "directory for models and compile caches, ideally on local NVMe"})
@user_errors
def cache(c, path):
    """Prepare a cache directory on fast local disk (models/ inductor/ triton/ hf/ cuda/, owned by the image user)."""
    folder = paths.new_cache_folder(path, "--path")
    from kiln.host.cache import prepare_cache

    report = prepare_cache(PROJECT.root / "provision" / "host" / "cache.sh", folder)
    sys.stdout.write(report.said)
    sys.stderr.write(report.warnings)


@task(help={"gpu": "GPU profile or spelling the image was built for", "image": "image spec name or path",
            "registry": "HOST[:PORT]/NAMESPACE to push to", "all_gpus": "every profile of this image built here; all are gated before any is pushed",
            "force": "publish without a passing smoke record (recorded with the image in the registry)",
            "overwrite": "let a version tag move to this image", "dry_run": "gate and plan only, push nothing",
            "plain": "plain log lines instead of a live view",
            "sign_key": "ECDSA P-256 PEM key to sign the provenance with (default $KILN_SIGNING_KEY; "
                        "an encrypted one takes $KILN_SIGNING_KEY_PASSWORD)",
            "stack": "the image built with this --stack (default: the stack the spec names)"})
@user_errors
def publish(c, registry, gpu=None, image=DEFAULT_IMAGE, all_gpus=False, force=False, overwrite=False, dry_run=False,
            plain=False, sign_key=None, stack=None):
    """Push the built image's tags to a registry, verify them by digest, attach SBOM and signed provenance."""
    host, namespace = addresses.registry_target(registry, "--registry")
    if bool(gpu) == bool(all_gpus):
        raise KilnError("give one of --gpu and --all-gpus", "--gpu", "pass --gpu=X, or --all-gpus for every profile built here")
    signing_key = _signing_key(sign_key)
    from kiln.engine.client import connect
    from kiln.publish.credentials import find_credentials
    from kiln.publish.job import PublishRequest, check_all, publish as run_publish
    from kiln.publish.push import Target

    target = Target(host, namespace)
    client = connect()
    pairs = _publish_requests(client, gpu, image, PublishRequest(
        target=target, credentials=find_credentials(target.host), folder=BUILD, force=force, overwrite=overwrite,
        dry_run=dry_run, signing_key=signing_key, stack=stack), stack)
    if len(pairs) > 1 and not dry_run:
        check_all(client, pairs)
    for subject, request in pairs:
        show = console.progress(plain)
        try:
            result = run_publish(client, subject, request, show)
        finally:
            show.close()
        print(f"{subject.image.name} on {subject.gpu.name}: smoke {result.smoke}")
        for line in (result.planned if dry_run else result.references):
            print(f"  {'would push' if dry_run else 'published'} {line}")
        for kind, ref in result.artifacts.items():
            print(f"  {kind} {ref}{_signed(result.signed_by) if kind == 'att' else ''}")


def _signing_key(flag: str | None):
    """--sign-key, else KILN_SIGNING_KEY (empty counts as unset); None when neither is given."""
    if flag is not None:
        path, where = paths.input_file(flag, "--sign-key"), "--sign-key"
    elif os.environ.get("KILN_SIGNING_KEY"):
        path = paths.input_file(os.environ["KILN_SIGNING_KEY"], "environment KILN_SIGNING_KEY")
        where = "KILN_SIGNING_KEY"
    else:
        return None
    from kiln.publish.signing import load_signing_key

    return load_signing_key(path, os.environ.get("KILN_SIGNING_KEY_PASSWORD"), where)


def _publish_requests(client, gpu, image, template: PublishRequest, stack: str | None = None) -> list:
    """(subject, request) for the profile asked for, or every profile of the image built here."""
    from kiln.engine.client import image_exists
    from kiln.engine.smoke import resolve_tag

    subjects = [PROJECT.subject(g, image, stack) for g in ([gpu] if gpu else PROJECT.gpus)]
    subjects = [s for s in subjects if gpu or image_exists(client, image_tags(s)[0])]
    if not subjects:
        raise KilnError(f"no {image} image is built here for any GPU profile", "--all-gpus",
                        "build one first with `invoke build --gpu=X`")
    for subject in subjects:
        resolve_tag(client, image_tags(subject)[0], subject.gpu.name)
    return [(subject, template) for subject in subjects]


@task(help={"reference": "HOST[:PORT]/NAME@sha256:<hex>, as `invoke publish` printed it",
            "key": "the signer's ECDSA P-256 public key (PEM) to check the provenance's signature with",
            "allow_unsigned": "without --key, accept a provenance nobody can authenticate (a WARN, not a FAIL)"})
@user_errors
def verify(c, reference, key=None, allow_unsigned=False):
    """Check a published image from its registry alone: digest, SBOM, provenance, signature, smoke verdict."""
    ref = addresses.image_reference(reference, "--reference")
    key_file = paths.input_file(key, "--key") if key is not None else None
    from kiln.publish.credentials import find_credentials
    from kiln.publish.registry import Registry
    from kiln.publish.signing import load_public_key
    from kiln.publish.verify import verify_published

    public = load_public_key(key_file) if key_file else None
    registry = Registry(ref.host, find_credentials(ref.host), actions="pull")
    checks = verify_published(registry, ref, public, allow_unsigned)
    console.table(("verdict", "item", "detail"), [(c.verdict, c.item, c.detail) for c in checks], wrap=(2,))
    failed = [c.item for c in checks if c.verdict == "FAIL"]
    print(f"{ref.host}/{ref.repo}@{ref.digest}: " + (f"FAIL ({', '.join(failed)})" if failed else "verified"))
    if failed:
        raise Exit(code=1)


def _signed(keyid: str) -> str:
    return f" (signed, key {keyid})" if keyid else " (unsigned: pass --sign-key to sign it)"


@task(help={"gpu": "GPU profile or spelling the image was built for", "image": "image spec name or path",
            "target": f"{', '.join(TARGETS)} or all",
            "out": "output directory (default build/deploy/<image>-<gpu>, with --cpu-mode build/deploy/<image>-<gpu>-cpu)",
            "cpu_mode": "compose only: no GPU request, ComfyUI on the CPU (tests on hosts without a GPU)",
            "stack": "the image built with this --stack (default: the stack the spec names)",
            "gpus": "compose, cloud-init: N servers, one per GPU, behind one balancer (HAProxy; invoke balancer.build)"})
@user_errors
def deploy(c, gpu, target, image=DEFAULT_IMAGE, out=None, cpu_mode=False, stack=None, gpus="1"):
    """Render where the image runs (compose, k8s, cloud-init, runpod, vast) from one deployment manifest."""
    chosen = parse_targets(target)
    servers = arguments.servers(gpus)
    folder = paths.output_folder(out, "--out") if out is not None else None
    from kiln.deploy.job import DeployRequest, deploy as run_deploy

    subject = PROJECT.subject(gpu, image, stack)
    chosen_stack = _override(subject, stack)
    default_out = BUILD.deploy_out(subject.image.name, subject.gpu.name, cpu_mode, chosen_stack, servers)
    request = DeployRequest(targets=chosen, out=folder or default_out, folder=BUILD, templates=PROJECT.templates_dir,
                            fetch_script=PROJECT.root / "provision" / "host" / "fetch_models.py",
                            gpus_file="gpus.yaml", cpu_mode=cpu_mode, stack=chosen_stack, gpus=servers)
    manifest, written = run_deploy(subject, request)
    print(f"{manifest.name}: {manifest.image.reference} ({'published' if manifest.image.published else 'local image id'}), "
          f"start-up budget {manifest.startup.budget_s} s ({manifest.startup.source})")
    if servers > 1:
        print(f"{servers} servers behind one balancer, image {manifest.fleet.balancer_image} "
              "(`invoke balancer.build` makes it on this host)")
    for path in written:
        print(f"  wrote {path}")


@task(name="render", help={"backends": "the ComfyUI servers: HOST:PORT[,HOST:PORT...] (each with kiln's exporter on "
                                       "PORT + 1000 and its agent check on PORT + 1100)",
                           "port": "the one endpoint's port (KILN_PORT overrides it when HAProxy starts)",
                           "stats_port": "HAProxy's metrics (/metrics) and stats page (KILN_STATS_PORT overrides it)",
                           "out": "output folder (default build/balancer)"})
@user_errors
def balancer_render(c, backends, port="8188", stats_port=None, out=None):
    """Write HAProxy's configuration for servers given by address (a host without containers)."""
    from kiln.data.deploy import deploy_defaults
    from kiln.deploy.job import BalancerRequest, render_balancer

    b = deploy_defaults().balancer
    request = BalancerRequest(backends=backends, port=arguments.port(port, "--port"),
                              stats_port=arguments.port(stats_port if stats_port is not None else b.stats_port,
                                                        "--stats-port"),
                              out=paths.output_folder(out, "--out") if out is not None else BUILD.balancer,
                              templates=PROJECT.templates_dir)
    config, servers = render_balancer(request)
    print(f"{len(servers)} server(s) behind one endpoint on ${{KILN_BIND-127.0.0.1}}:${{KILN_PORT-{request.port}}}: "
          + ", ".join(f"{s.name} {s.host}:{s.port}" for s in servers))
    print(f"  wrote {config}; run it with HAProxy {b.series} or later: haproxy -db -f {config}")


@task(name="build", help={"image": "image spec name or path: the balancer is built on its base",
                          "plain": "plain log lines instead of a live view"})
@user_errors
def balancer_build(c, image=DEFAULT_IMAGE, plain=False):
    """Build the balancer image (HAProxy from Debian on the image's base); nothing to do when it is current."""
    from kiln.data.deploy import deploy_defaults
    from kiln.engine.balancer import ensure_balancer
    from kiln.engine.client import connect

    base = PROJECT.image_base(image)
    show = console.progress(plain)
    failed = True
    try:
        result = ensure_balancer(connect(), base, deploy_defaults().balancer, PROJECT.templates_dir, show)
        failed = False
    finally:
        show.close(failed)
    verb = "built" if result.built else "up to date, nothing to do"
    print(f"balancer {result.tag} {verb}: {result.image_id[:19]}, {result.version}")


@task(name="check", help={"gpu": "GPU profile the host will run", "image": "image spec name or path",
                          "cache": "the cache folder the image will mount (space, filesystem, NVMe)",
                          "json": "also write the readings and verdicts here",
                          "require_gpu": "a host without an NVIDIA driver or GPU fails instead of skipping"})
@user_errors
def host_check(c, gpu, image=DEFAULT_IMAGE, cache=None, json=None, require_gpu=False):
    """Read-only report of this host against the image: driver, container toolkit, GPUs, clocks, disks."""
    cache_dir = paths.cache_folder(cache, "--cache") if cache is not None else None
    target = paths.output_file(json, "--json") if json is not None else None
    from kiln.engine.gpu_access import engine_reading

    subject = PROJECT.subject(gpu, image)
    images = [image_tags(subject)[0], base_ref(subject.lock, subject.image.base)]
    reading = read_host(cache_dir, lambda: engine_reading(images, try_gpu=True))
    lines = check_host(reading, subject.gpu, subject.lock.stack, model_bytes(subject.image, cache_dir), require_gpu)
    console.table(("verdict", "item", "measured", "expected", "fix"),
                  [(line.verdict.upper(), line.item, line.measured, line.expected, line.fix) for line in lines],
                  wrap=(2, 3, 4))
    if target:
        write_json(target, as_json(reading, lines))
        print(f"report: {target}")
    if exit_code(lines):
        raise Exit(code=1)


@task(name="synth", help={"out": "folder to write into (<out>/<folder>/<file>, as ComfyUI's models/ is laid out)",
                          "full": "the real sizes (about 20.7 GB) instead of the small set",
                          "seed": "seed of the random weights (same seed, same bytes)",
                          "only": "comma-separated roles to write (diffusion_model, text_encoder, vae)",
                          "plain": "plain log lines instead of a live view"})
@user_errors
def synth(c, out, full=False, seed="0", only="", plain=False):
    """Write synthetic Z-Image-Turbo model files: the real key layout with random weights."""
    roles = tuple(r.strip() for r in only.split(",") if r.strip())
    folder, number = paths.output_folder(out, "--out"), arguments.whole(seed, "--seed")
    from kiln.models.synthetic import write_synthetic

    show = console.progress(plain)
    failed = True
    try:
        written = write_synthetic(folder, "full" if full else "small", number, show, roles)
        failed = False
    finally:
        show.close(failed)
    console.table(("file", "bytes", "sha256"), [(f.path, f"{f.size:,}", f.sha256) for f in written], numeric=(1,))


@task(name="fetch", help={"gpu": "GPU profile or spelling (selects the spec like the other tasks)",
                          "image": "image spec name or path whose models: manifest is fetched",
                          "to": "the cache folder (see provision.cache); files go to <to>/models/<folder>/<file>",
                          "rehash": "hash files already in place even when their verification record matches",
                          "plain": "plain log lines instead of a live view"})
@user_errors
def models_fetch(c, gpu, to, image=DEFAULT_IMAGE, rehash=False, plain=False):
    """Fetch the image's model files into a cache: parallel, resumable, each verified by size and sha256."""
    cache = paths.cache_folder(to, "--to")
    endpoint = endpoint_from_env()
    from kiln.models.fetch import FetchRequest, fetch_models

    subject = PROJECT.subject(gpu, image)
    if not subject.image.models:
        print(f"image '{subject.image.name}' lists no model files; nothing to fetch")
        return
    request = FetchRequest(cache=cache, where=subject.image.where, rehash=rehash)
    show = console.progress(plain)
    failed = True
    try:
        result = fetch_models(subject.image.models, request, endpoint, show)
        failed = False
    finally:
        show.close(failed)
    _print_fetch(result, cache)


def _print_fetch(result: FetchReport, cache: Path) -> None:
    for line in result.warnings:
        print(f"warning: {line}", file=sys.stderr)
    rows = [(f"{f.model.folder}/{f.model.file}", size_text(f.model.size), f"{f.model.sha256[:16]} ok",
             "record" if f.verified == "record" else "hashed", f.outcome + (f" ({f.note})" if f.note else ""),
             f"{f.seconds:.1f} s", f"{size_text(int(f.received / f.seconds))}/s" if f.received and f.seconds else "-")
            for f in result.files]
    console.table(("file", "size", "sha256", "verified", "outcome", "time", "rate"), rows, numeric=(1, 5, 6))
    got = [f for f in result.files if f.outcome != "skipped"]
    received = sum(f.received for f in got)
    print(f"{len(result.files)} model file(s) in {cache / 'models'}, every sha256 verified: {len(got)} fetched "
          f"({size_text(received)} received), {len(result.files) - len(got)} already in place; "
          f"{result.seconds:.1f} s")


ns = Collection(lock, check, render, schema, gpus, base, build, clean, smoke, report, run, stop, publish, verify, deploy)
ns.add_collection(Collection("provision", cache))
ns.add_collection(Collection("host", host_check))
ns.add_collection(Collection("models", synth, models_fetch))
ns.add_collection(Collection("balancer", balancer_render, balancer_build))


class KilnProgram(Program):
    """`invoke` with kiln's exit codes: a command line it cannot parse is bad input too (one line, exit 2)."""

    def parse_core(self, argv):
        self._parsed(super().parse_core, argv)

    def parse_tasks(self):
        self._parsed(super().parse_tasks)

    @staticmethod
    def _parsed(step, *args):
        try:
            step(*args)
        except (ParseError, ValueError) as exc:
            raise Exit(f"error: {exc}; see `invoke --help <task>`", code=2) from None


if __name__ == "__main__":
    KilnProgram(namespace=ns, binary="invoke").run()
