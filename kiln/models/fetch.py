"""Fetching an image's model files into the cache: a few files at a time, each under its lock,
streamed into <file>.part while its sha256 is computed, resumed with a Range request after a cut
connection (or in a later run), retried with backoff, and renamed into place only once its size
and sha256 match the manifest. A bad hash deletes the partial; anything else keeps it to resume.
Every file is reached through its model folder held open, never through a link (see store)."""

from __future__ import annotations

import hashlib
import os
import random
import re
import threading
import time
from concurrent.futures import ThreadPoolExecutor, wait
from dataclasses import dataclass, field
from pathlib import Path

from urllib3.exceptions import HTTPError

from kiln.data.image import ModelFile
from kiln.errors import KilnError
from kiln.events import Event, Listener, ignore
from kiln.models.cancel import Stopped, check
from kiln.models.locking import held
from kiln.models.plan import Item, branch_warnings, check_space, plan, size_text
from kiln.models.source import Endpoint
from kiln.models.store import Folder, Place, forget, hash_in_place, hash_into, open_folder, plain_size, recorded, \
    write_record
from kiln.models.transfer import Http, Opened, Refused, Transient

WORKERS = 3
CHUNK = 1 << 20
FAILURES = 5              # retries in a row without progress before giving up
BACKOFF_S = 1.0
EVENT_EVERY_S = 0.2
CONTENT_RANGE = re.compile(r"^bytes (\d+)-(\d+)/(\d+|\*)$")


@dataclass(frozen=True)
class FetchRequest:
    cache: Path
    where: str               # the image spec, for messages
    rehash: bool = False     # hash files in place even when their verification record matches
    workers: int = WORKERS


@dataclass(frozen=True)
class Fetched:
    model: ModelFile
    path: Path
    outcome: str        # fetched, resumed, replaced, skipped
    verified: str       # "sha256" (hashed by this run) or "record" (verified earlier, unchanged since)
    received: int       # bytes downloaded by this run
    seconds: float
    note: str = ""


@dataclass(frozen=True)
class FetchReport:
    files: list[Fetched]
    warnings: list[str]
    seconds: float


@dataclass
class _Run:
    http: Http
    endpoint: Endpoint
    request: FetchRequest
    stop: threading.Event
    emit: Listener
    folders: dict[str, Folder]
    reading: set = field(default_factory=set)       # responses being read, cut short on Ctrl-C
    guard: threading.Lock = field(default_factory=threading.Lock)

    def interrupt(self) -> None:
        """Stop every worker, also one blocked reading a stalled connection."""
        self.stop.set()
        with self.guard:
            for response in self.reading:
                try:
                    response.shutdown()
                except (ValueError, RuntimeError, OSError):
                    pass


def fetch_models(models: tuple[ModelFile, ...], request: FetchRequest, endpoint: Endpoint,
                 on_event: Listener = ignore) -> FetchReport:
    started = time.monotonic()
    items = plan(models, request.cache, request.where)
    check_space(items, request.cache)
    emit_lock = threading.Lock()

    def emit(event: Event) -> None:
        with emit_lock:
            on_event(event)

    run = _Run(Http(endpoint, request.workers), endpoint, request, threading.Event(), emit, {})
    created: list[Path] = []
    try:
        for name in dict.fromkeys(m.folder for m in models):
            run.folders[name] = open_folder(request.cache, name, created)
        files = _in_parallel(items, run)
    except BaseException:
        _drop_empty(created)
        raise
    finally:
        for folder in run.folders.values():
            folder.close()
    return FetchReport(files, branch_warnings(models, request.where), time.monotonic() - started)


def _in_parallel(items: list[Item], run: _Run) -> list[Fetched]:
    with ThreadPoolExecutor(max_workers=max(1, min(run.request.workers, len(items)))) as pool:
        futures = [pool.submit(_one, item, run) for item in items]
        try:
            wait(futures)
        except KeyboardInterrupt:
            run.interrupt()
            wait(futures)
            raise _interrupted(items, run.request.cache) from None
    failed = [(item, f.exception()) for item, f in zip(items, futures) if f.exception()]
    if failed:
        raise _first_failure(failed)
    return [f.result() for f in futures]


def _first_failure(failed: list[tuple[Item, BaseException]]) -> BaseException:
    item, first = failed[0]
    if not isinstance(first, KilnError) or len(failed) == 1:
        return first
    others = ", ".join(i.spot.shown for i, _ in failed[1:])
    return KilnError(f"{first.what} (also failed: {others})", first.where, first.fix)


def _interrupted(items: list[Item], cache: Path) -> KilnError:
    sizes = [(i.spot.part.name, plain_size(i.spot.part)) for i in items]
    kept = [f"{name} ({size_text(size)})" for name, size in sizes if size is not None]
    left = f"kept to resume: {', '.join(kept)}; " if kept else ""
    return KilnError("interrupted; no unverified file was put in place", f"--to {cache}",
                     f"{left}run the same command again to continue")


def _one(item: Item, run: _Run) -> Fetched:
    try:
        return _fetch_one(item, run)
    except OSError as exc:
        raise KilnError(f"{exc.strerror or exc} ({exc.filename or item.spot.final})", item.spot.shown,
                        "check the cache folder and its disk, then run again") from None


def _fetch_one(item: Item, run: _Run) -> Fetched:
    model, spot, folder = item.model, item.spot, run.folders[item.model.folder]
    waited: list[str] = []

    def on_wait(holder: str) -> None:
        waited.append(holder)
        run.emit(Event("phase", f"{spot.shown}: another fetch ({holder}) holds it; waiting for it to finish"))

    with held(folder, spot.lock.name, run.stop, on_wait):
        started = time.monotonic()
        verified = _already_verified(folder, spot, model, run)
        if verified:
            note = f"by {waited[0]}" if waited else ""
            return Fetched(model, spot.final, "skipped", verified, 0, time.monotonic() - started, note)
        replacing = folder.stat(spot.final.name) is not None
        received, resumed = _download(model, folder, spot, run)
        outcome = "replaced" if replacing else "resumed" if resumed else "fetched"
        return Fetched(model, spot.final, outcome, "sha256", received, time.monotonic() - started)


def _already_verified(folder: Folder, spot: Place, model: ModelFile, run: _Run) -> str:
    """How the file in place is known to be the manifest's ("record" or "sha256"), or "" to fetch it."""
    if not run.request.rehash and recorded(folder, spot, model):
        return "record"
    info = folder.stat(spot.final.name)
    size = info.st_size if info else None
    if size == model.size and _hashes_right(folder, spot, model, run, "as --rehash asks" if run.request.rehash else
                                            "not verified by this toolkit since it last changed"):
        return "sha256"
    forget(folder, spot)
    if size is not None and size != model.size:
        run.emit(Event("phase", f"{spot.shown}: in place with {size} bytes, the manifest says {model.size}; "
                                "fetching it again (replaced once the new one is verified)"))
    return ""


def _hashes_right(folder: Folder, spot: Place, model: ModelFile, run: _Run, why: str) -> bool:
    run.emit(Event("phase", f"{spot.shown}: in place, {why}; hashing its {size_text(model.size)}"))
    got, info = hash_in_place(folder, spot.final.name, run.stop)
    if got == model.sha256:
        write_record(folder, spot, model, info)
        return True
    run.emit(Event("phase", f"{spot.shown}: in place but its sha256 is {got}, the manifest says {model.sha256}; "
                            "fetching it again (the file in place is replaced once the new one is verified)"))
    return False


class _Partial:
    """The .part file, held open: the bytes written so far and their running sha256."""

    def __init__(self, folder: Folder, path: Path, model: ModelFile):
        self.folder, self.path, self.model = folder, path, model
        try:
            fd = folder.open(path.name, os.O_RDWR | os.O_CREAT | os.O_EXCL)
        except FileExistsError:
            fd = folder.open(path.name, os.O_RDWR)
        self.handle = os.fdopen(fd, "r+b")
        self.digest, self.have, self.received = hashlib.sha256(), 0, 0

    def load(self, stop: threading.Event) -> int:
        """Hash what an earlier run left (a partial longer than the file cannot be it and is dropped)."""
        length = os.fstat(self.handle.fileno()).st_size
        if length > self.model.size:
            self.restart()
            return 0
        self.handle.seek(0)
        self.have = hash_into(self.handle, self.digest, stop) if length else 0
        self.handle.seek(self.have)
        self.handle.truncate()
        return self.have

    def restart(self) -> None:
        self.handle.seek(0)
        self.handle.truncate()
        self.digest, self.have = hashlib.sha256(), 0

    def add(self, chunk: bytes) -> None:
        if self.have + len(chunk) > self.model.size:
            raise _Mismatch(f"the server sent more than the manifest's {self.model.size} bytes")
        try:
            self.handle.write(chunk)
        except OSError as exc:
            raise self._disk_error(exc) from None
        self.digest.update(chunk)
        self.have += len(chunk)
        self.received += len(chunk)

    def finish(self) -> None:
        try:
            self.handle.flush()
            os.fsync(self.handle.fileno())
        except OSError as exc:
            raise self._disk_error(exc) from None

    def close(self) -> None:
        """Close it; an empty partial is removed (nothing to resume)."""
        try:
            empty = os.fstat(self.handle.fileno()).st_size == 0
            self.handle.close()
        except (OSError, ValueError):
            return
        if empty:
            self.folder.unlink(self.path.name)

    def _disk_error(self, exc: OSError) -> KilnError:
        return KilnError(f"cannot write {self.path.name} ({exc.strerror})", str(self.path.parent),
                         "free space on the cache's disk and run again: the partial download is kept and resumes")


class _Mismatch(Exception):
    """The server's file is not the manifest's (size): retrying or resuming cannot fix it."""


def _download(model: ModelFile, folder: Folder, spot: Place, run: _Run) -> tuple[int, bool]:
    partial = _Partial(folder, spot.part, model)
    try:
        start = partial.load(run.stop)
        if start:
            run.emit(Event("phase", f"{spot.shown}: resuming after the {size_text(start)} already downloaded"))
        _receive_all(partial, model, spot, run)
        partial.finish()
        _verify(partial, model, spot, run)
        _put_in_place(partial, spot, model)
    except _Mismatch as exc:
        folder.unlink(spot.part.name)
        raise KilnError(f"{exc}; the download was deleted", f"{spot.shown} from {run.endpoint.url(model)}",
                        f"check the source (repo, revision, path) and size in {run.request.where}") from None
    except Refused as exc:
        raise _refused(exc, model, spot, run) from None
    finally:
        partial.close()
    return partial.received, start > 0


def _receive_all(partial: _Partial, model: ModelFile, spot: Place, run: _Run) -> None:
    failures = 0
    if partial.have < model.size:
        run.emit(Event("download", model.file, partial.have, model.size))
    while partial.have < model.size:
        check(run.stop)
        before = partial.have
        try:
            _receive(run.http.open(run.endpoint.url(model), partial.have), partial, model, run)
            if partial.have == before:
                raise Transient("the server sent no data")
        except Transient as exc:
            failures = 0 if partial.have - before >= CHUNK else failures
            failures += 1
            if failures >= FAILURES:
                kept = f": the partial download ({size_text(partial.have)}) is kept and resumes" if partial.have else ""
                raise KilnError(f"download failed {failures} times in a row, last: {exc}", spot.shown,
                                f"check the connection to {run.endpoint.base} and run again{kept}") from None
            delay = exc.retry_after or BACKOFF_S * 2 ** (failures - 1) * (1 + random.random() / 4)
            at = f"resuming at {size_text(partial.have)}" if partial.have else "from the start"
            run.emit(Event("phase", f"{spot.shown}: {exc}; retry {failures}/{FAILURES - 1} in {delay:.1f} s, {at}"))
            if run.stop.wait(delay):
                raise Stopped() from None


def _receive(opened: Opened, partial: _Partial, model: ModelFile, run: _Run) -> None:
    response, done = opened.response, False
    with run.guard:
        run.reading.add(response)
    try:
        if _body_start(response, partial.have, model.size) != partial.have:
            run.emit(Event("phase", f"{model.file}: the server ignored the Range request; starting over"))
            partial.restart()
        chunks = response.stream(CHUNK, decode_content=False)
        last = 0.0
        while True:
            check(run.stop)
            try:
                chunk = next(chunks)
            except StopIteration:
                break
            except (HTTPError, OSError) as exc:
                raise Transient(f"connection broken after {size_text(partial.have)} ({type(exc).__name__})") from None
            partial.add(chunk)
            now = time.monotonic()
            if now - last >= EVENT_EVERY_S or partial.have == model.size:
                run.emit(Event("download", model.file, partial.have, model.size))
                last = now
        done = True
    finally:
        with run.guard:
            run.reading.discard(response)
        if done:
            response.release_conn()
        else:
            response.close()


def _body_start(response, have: int, size: int) -> int:
    """Where the body starts in the file: 0 for a 200 (a server that ignored the Range: start over),
    the requested offset for a 206 whose Content-Range says so."""
    if response.status == 200:
        length = response.headers.get("Content-Length")
        if length is not None and length.isdigit() and int(length) != size:
            raise _Mismatch(f"the server's file is {length} bytes, the manifest says {size}")
        return 0
    match = CONTENT_RANGE.match((response.headers.get("Content-Range") or "").strip())
    if not match:
        raise Transient(f"a 206 answer without a usable Content-Range ({response.headers.get('Content-Range')!r})")
    if match[3] != "*" and int(match[3]) != size:
        raise _Mismatch(f"the server's file is {match[3]} bytes, the manifest says {size}")
    if int(match[1]) != have:
        raise Transient(f"asked for bytes from {have}, the server sent from {match[1]}")
    return have


def _verify(partial: _Partial, model: ModelFile, spot: Place, run: _Run) -> None:
    got = partial.digest.hexdigest()
    if partial.have == model.size and got == model.sha256:
        return
    partial.folder.unlink(spot.part.name)
    raise KilnError(f"sha256 mismatch: expected {model.sha256}, got {got}; the download was deleted",
                    f"{spot.shown} from {run.endpoint.url(model)}",
                    f"check the source (repo, revision, path) and sha256 in {run.request.where}, or the endpoint")


def _put_in_place(partial: _Partial, spot: Place, model: ModelFile) -> None:
    """Rename the verified partial over the file; the record is made from the fstat of the verified
    descriptor right after the rename (which moves the ctime on), not from whatever the name holds then."""
    folder, fd = partial.folder, partial.handle.fileno()
    try:
        os.fchmod(fd, 0o644)
        forget(folder, spot)
        folder.replace(spot.part.name, spot.final.name)
        info = os.fstat(fd)
        folder.sync()
    except OSError as exc:
        raise KilnError(f"cannot move the verified download into place ({exc.strerror})", str(spot.final),
                        "check the cache folder; the verified download is kept as .part") from None
    write_record(folder, spot, model, info)


def _refused(exc: Refused, model: ModelFile, spot: Place, run: _Run) -> KilnError:
    via = f" (answered by {exc.answered_by} after a redirect)" if exc.answered_by else ""
    what = f"HTTP {exc.status} for {exc.url}{via}" + (f" ({exc.detail})" if exc.detail else "")
    if exc.status in (401, 403):
        fix = ("the token in HF_TOKEN was refused: check that it can read the repository" if run.endpoint.token else
               "the repository may be gated or private: accept its terms on its page and set HF_TOKEN")
    elif exc.status == 404:
        fix = f"check source.repo, revision and path of {model.file} in {run.request.where} (and HF_ENDPOINT)"
    else:
        fix = f"check the endpoint {run.endpoint.base} and the source of {model.file} in {run.request.where}"
    return KilnError(what, spot.shown, fix)


def _drop_empty(folders: list[Path]) -> None:
    """A failed run takes back the folders it created and left empty."""
    for folder in reversed(folders):
        try:
            folder.rmdir()
        except OSError:
            pass

