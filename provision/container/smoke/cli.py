"""Command line: python3 -m smoke --expect EXPECT.json [options]."""

from __future__ import annotations

import argparse
import sys
import time
from typing import List, Optional, Sequence

EXIT_OK, EXIT_FAILED, EXIT_USAGE = 0, 1, 2


class UsageError(Exception):
    """Bad input: reported as one line on stderr, exit code 2."""


class _Parser(argparse.ArgumentParser):
    def error(self, message: str) -> None:  # one line, exit 2, no usage dump
        raise UsageError(message)


def build_parser() -> argparse.ArgumentParser:
    parser = _Parser(prog="python3 -m smoke", description="GPU smoke checks for the ComfyUI image.")
    parser.add_argument("--expect", required=True, help="EXPECT.json written by the toolkit")
    parser.add_argument("--json", dest="json_path", help="also write the JSON report here")
    parser.add_argument("--require-gpu", action="store_true", help="no usable GPU is a failure")
    parser.add_argument("--host", action="store_true",
                        help="host mode: version mismatches against the image pins only warn")
    parser.add_argument("--cache-dir", help="put TORCHINDUCTOR_CACHE_DIR/TRITON_CACHE_DIR here")
    parser.add_argument("--comfyui-url", help="base URL of a running ComfyUI to query")
    parser.add_argument("--only", help="comma-separated groups to run")
    parser.add_argument("--workflow", help="the image's warm-up workflow (API format) for the workflow checks")
    parser.add_argument("--require-models", action="store_true",
                        help="the workflow's models missing from the cache is a failure, not a skip")
    return parser


def parse_only(text: Optional[str], groups: Sequence[str]) -> Optional[tuple]:
    if not text:
        return None
    wanted = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [g for g in wanted if g not in groups]
    if unknown or not wanted:
        raise UsageError(f"--only: unknown group(s) {', '.join(unknown) or '(none)'}; "
                         f"choose from {', '.join(groups)}")
    return wanted


def _prepare(argv: Optional[List[str]]):
    # Imports stay light here: torch must not load before the cache env is set.
    from .context import Options
    from .expect import ExpectError, load_expect
    from .report import check_writable
    from .runner import GROUPS

    args = build_parser().parse_args(argv)
    options = Options(expect_path=args.expect, json_path=args.json_path,
                      require_gpu=args.require_gpu, host=args.host, cache_dir=args.cache_dir,
                      comfyui_url=args.comfyui_url, only=parse_only(args.only, GROUPS),
                      workflow_path=args.workflow, require_models=args.require_models)
    try:
        expect = load_expect(options.expect_path)
    except ExpectError as exc:
        raise UsageError(str(exc)) from None
    if options.json_path:
        try:
            check_writable(options.json_path)
        except OSError as exc:
            raise UsageError(f"cannot write JSON report {options.json_path}: {exc}") from None
    return expect, options


def _set_cache_dir(cache_dir: Optional[str]) -> None:
    if not cache_dir:
        return
    from .checks_compile import apply_cache_env
    try:
        apply_cache_env(cache_dir)
    except OSError as exc:
        raise UsageError(f"cannot use --cache-dir {cache_dir}: {exc}") from None


def run(expect, options) -> int:
    from .context import Context, environment
    from .report import document, render_table, summary_line, write_json
    from .runner import run_checks, run_requiring_gpu, selected_modules
    from .verdict import apply_require_gpu, exit_code, summarize

    started = time.perf_counter()
    ctx = Context(expect, options)
    run_groups = run_requiring_gpu if options.require_gpu else run_checks
    checks = run_groups(ctx, selected_modules(options.only))
    checks = apply_require_gpu(checks, options.require_gpu)
    summary = summarize(checks, time.perf_counter() - started)
    print(render_table(checks))
    print(summary_line(summary))
    if options.json_path:
        write_json(options.json_path, document(checks, summary, environment(ctx)))
    return exit_code(checks)


def main(argv: Optional[List[str]] = None) -> int:
    try:
        expect, options = _prepare(argv)
        _set_cache_dir(options.cache_dir)
        return run(expect, options)
    except UsageError as exc:
        print(f"smoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except OSError as exc:  # e.g. the JSON path vanished while the probes ran
        print(f"smoke: {exc}", file=sys.stderr)
        return EXIT_USAGE
    except KeyboardInterrupt:
        print("smoke: interrupted", file=sys.stderr)
        return 130
