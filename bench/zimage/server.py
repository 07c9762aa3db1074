"""A real ComfyUI server process for the benchmark: start with flags, queue prompts over its HTTP API,
time each node from the websocket messages it sends, take the image as a client would (the bytes over
the websocket from kiln's output node, else /history then /view), stop."""

from __future__ import annotations

import asyncio
import json
import os
import signal
import subprocess
import threading
import time
import urllib.parse
import urllib.request
import uuid
from dataclasses import dataclass, field
from pathlib import Path

import aiohttp


@dataclass
class Timeline:
    """Websocket messages of one prompt, stamped on arrival (perf_counter seconds)."""
    posted: float
    events: list = field(default_factory=list)
    done: threading.Event = field(default_factory=threading.Event)
    # 'executing' with no node comes after the queue has written /history; execution_success comes before it
    recorded: threading.Event = field(default_factory=threading.Event)
    error: str = ""
    received: float | None = None  # when the client had the image bytes
    image_bytes: int = 0
    image: bytes = b""


class Messages:
    """Reads the server's websocket in a thread and files each message under its prompt id."""

    def __init__(self, url: str, client_id: str):
        self.url, self.client_id = url, client_id
        self.prompts: dict[str, Timeline] = {}
        self.running: str | None = None  # binary frames carry no prompt id: they belong to the running one
        self._ready = threading.Event()
        self._thread = threading.Thread(target=lambda: asyncio.run(self._read()), daemon=True)
        self._thread.start()
        if not self._ready.wait(30):
            raise TimeoutError("the server's websocket did not open within 30 s")

    async def _read(self) -> None:
        ws_url = self.url.replace("http://", "ws://") + f"/ws?clientId={self.client_id}"
        async with aiohttp.ClientSession() as session:
            async with session.ws_connect(ws_url, max_msg_size=0) as ws:
                self._ready.set()
                async for message in ws:
                    if message.type == aiohttp.WSMsgType.TEXT:
                        self._file(json.loads(message.data), time.perf_counter())
                    elif message.type == aiohttp.WSMsgType.BINARY:
                        self._image(message.data, time.perf_counter())

    def _image(self, frame: bytes, now: float) -> None:
        """kiln's output node: event 1 (preview image), 4-byte image type, the encoded file."""
        timeline = self.prompts.get(self.running or "")
        if timeline is None or len(frame) < 8 or int.from_bytes(frame[:4], "big") != 1:
            return
        if timeline.received is None:
            timeline.received, timeline.image_bytes, timeline.image = now, len(frame) - 8, bytes(frame[8:])

    def _file(self, message: dict, now: float) -> None:
        data = message.get("data") or {}
        if not data.get("prompt_id"):
            return
        # a prompt's first messages can arrive before its POST has returned
        timeline = self.prompts.setdefault(data["prompt_id"], Timeline(now))
        kind = message.get("type")
        if kind == "executing":
            self.running = data["prompt_id"]
            if data.get("node") is None:
                timeline.recorded.set()
        timeline.events.append((now, kind, data.get("node"), data.get("value")))
        if kind == "execution_error":
            timeline.error = str(data.get("exception_message", "execution error"))[:300]
        if kind in ("execution_success", "execution_error", "execution_interrupted"):
            timeline.done.set()


class LogLines:
    """Copies the server's output into its log and stamps each line on arrival (perf_counter seconds)."""

    def __init__(self, stream, log):
        self.lines: list[tuple[float, str]] = []
        self._stream, self._log = stream, log
        self._thread = threading.Thread(target=self._copy, daemon=True)
        self._thread.start()

    def _copy(self) -> None:
        for raw in iter(self._stream.readline, b""):
            self.lines.append((time.perf_counter(), raw.decode(errors="replace").rstrip()))
            self._log.write(raw)
            self._log.flush()

    def first(self, needle: str) -> float | None:
        return next((t for t, line in list(self.lines) if needle in line), None)

    def join(self) -> None:
        self._thread.join(timeout=10)


class ComfyServer:
    def __init__(self, comfyui: Path, python: str, port: int, work: Path, flags: list[str], env: dict[str, str],
                 log: Path, stamp: bool = False):
        self.url = f"http://127.0.0.1:{port}"
        self.client_id = uuid.uuid4().hex
        (work / "frontend").mkdir(parents=True, exist_ok=True)
        (work / "frontend" / "index.html").write_text("<!doctype html><title>kiln bench</title>\n")
        argv = [python, "main.py", "--listen", "127.0.0.1", "--port", str(port), "--disable-auto-launch",
                "--front-end-root", str(work / "frontend"), "--extra-model-paths-config", str(work / "models.yaml"),
                "--output-directory", str(work / "output"), "--temp-directory", str(work / "temp"), *flags]
        self.argv = argv
        self._log = open(log, "ab")
        self._log.write(("\n$ " + " ".join(argv) + "\n").encode())
        self._log.flush()
        self.started = time.perf_counter()
        self.process = subprocess.Popen(argv, cwd=comfyui, env={**os.environ, **env},
                                        stdout=subprocess.PIPE if stamp else self._log, stderr=subprocess.STDOUT,
                                        start_new_session=True)
        self.output = LogLines(self.process.stdout, self._log) if stamp else None
        self.messages: Messages | None = None

    def wait_ready(self, limit_s: float) -> float:
        while time.perf_counter() - self.started < limit_s:
            if self.process.poll() is not None:
                raise RuntimeError(f"ComfyUI exited with {self.process.returncode} before answering")
            try:
                with urllib.request.urlopen(self.url + "/system_stats", timeout=2):
                    self.messages = Messages(self.url, self.client_id)
                    return time.perf_counter() - self.started
            except OSError:
                time.sleep(0.2)
        raise TimeoutError(f"ComfyUI did not answer within {limit_s:.0f} s")

    def run(self, workflow: dict, limit_s: float) -> Timeline:
        body = json.dumps({"prompt": workflow, "client_id": self.client_id}).encode()
        request = urllib.request.Request(self.url + "/prompt", data=body, headers={"Content-Type": "application/json"})
        posted = time.perf_counter()
        with urllib.request.urlopen(request, timeout=30) as response:
            answer = json.loads(response.read())
        if "prompt_id" not in answer:
            raise RuntimeError(f"ComfyUI refused the prompt: {json.dumps(answer)[:300]}")
        timeline = self.messages.prompts.setdefault(answer["prompt_id"], Timeline(posted))
        timeline.posted = posted
        if not timeline.done.wait(limit_s):
            raise TimeoutError(f"the prompt did not finish within {limit_s:.0f} s")
        if timeline.error:
            raise RuntimeError(f"the prompt failed: {timeline.error}")
        if timeline.received is None:
            if not timeline.recorded.wait(limit_s):
                raise TimeoutError(f"the prompt's /history entry was not written within {limit_s:.0f} s")
            self._fetch_image(answer["prompt_id"], timeline)
        return timeline

    def _fetch_image(self, prompt_id: str, timeline: Timeline) -> None:
        """What a client without the websocket bytes does: read /history, then /view the first image."""
        with urllib.request.urlopen(f"{self.url}/history/{prompt_id}", timeout=30) as response:
            entry = json.loads(response.read())[prompt_id]
        images = [i for out in entry["outputs"].values() for i in out.get("images", [])]
        if not images:
            raise RuntimeError("the prompt finished without an image in /history")
        query = urllib.parse.urlencode({k: images[0][k] for k in ("filename", "subfolder", "type")})
        with urllib.request.urlopen(f"{self.url}/view?{query}", timeout=30) as response:
            timeline.image = response.read()
        timeline.received, timeline.image_bytes = time.perf_counter(), len(timeline.image)

    def stop(self) -> None:
        if self.process.poll() is None:
            os.killpg(self.process.pid, signal.SIGTERM)
            try:
                self.process.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.process.pid, signal.SIGKILL)
                self.process.wait(15)
        if self.output:
            self.output.join()
        self._log.close()

