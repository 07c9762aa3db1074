"""ComfyUI stand-in: same CLI shape and HTTP API subset as ComfyUI 0.3.18 (see README.md)."""

import argparse
import collections
import json
import os
import platform
import struct
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from comfyui_version import __version__
import models
import websocket

SWITCHES = ["--disable-auto-launch", "--auto-launch", "--cpu", "--gpu-only", "--highvram", "--normalvram", "--lowvram",
            "--novram", "--force-fp16", "--force-fp32", "--fp16-vae", "--bf16-vae", "--fp32-vae", "--disable-xformers",
            "--disable-cuda-malloc", "--cuda-malloc", "--fast", "--dont-print-server", "--disable-metadata",
            "--disable-all-custom-nodes", "--log-stdout", "--deterministic", "--disable-smart-memory",
            "--fp8_e4m3fn-unet", "--fp8_e4m3fn-text-enc", "--bf16-unet", "--fp16-unet", "--use-pytorch-cross-attention",
            "--disable-api-nodes"]


OUTPUT_NODES = ("SaveImage", "KilnImageOut")  # KilnImageOut: kiln's output node (payload comfyui_nodes/kiln_output)


def parse_args(argv):
    p = argparse.ArgumentParser(prog="main.py")
    p.add_argument("--listen", nargs="?", const="0.0.0.0,::", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8188)
    p.add_argument("--extra-model-paths-config", nargs="+", action="append")
    p.add_argument("--preview-method", choices=["none", "auto", "latent2rgb", "taesd"], default="none")
    p.add_argument("--reserve-vram", type=float)
    p.add_argument("--cuda-device", type=int)
    p.add_argument("--output-directory")
    p.add_argument("--temp-directory")
    p.add_argument("--user-directory")
    p.add_argument("--verbose", nargs="?", const="DEBUG", default="INFO")
    for flag in SWITCHES:
        p.add_argument(flag, action="store_true")
    return p.parse_args(argv)


class State:
    """ComfyUI's prompt queue as the HTTP API shows it: POST /prompt validates and queues, one worker runs the
    prompts in order (as ComfyUI's prompt_worker does), /queue and GET /prompt show what is left, /history
    what finished, and a client's websocket gets the events of the prompts it queued."""

    def __init__(self, args):
        self.args, self.history, self.counter = args, {}, 0
        self.pending, self.running = collections.deque(), {}
        self.sockets = {}
        self.lock = threading.Condition()
        threading.Thread(target=self.worker, daemon=True).start()

    def devices(self):
        try:
            import torch
            if torch.cuda.is_available() and not self.args.cpu:
                free, total = torch.cuda.mem_get_info()
                return [{"name": f"cuda:0 {torch.cuda.get_device_name(0)}", "type": "cuda", "index": 0,
                         "vram_total": total, "vram_free": free, "torch_vram_total": 0, "torch_vram_free": 0}]
            version = torch.__version__
        except ImportError:
            version = "absent"
        return [{"name": "cpu", "type": "cpu", "index": None, "vram_total": 0, "vram_free": 0,
                 "torch_vram_total": 0, "torch_vram_free": 0, "pytorch": version}]

    def missing_files(self, prompt):
        """ComfyUI refuses a prompt whose loader names a file no model folder has (value_not_in_list)."""
        roots = models.model_roots(sum(self.args.extra_model_paths_config or [], []))
        errors = {}
        for node_id, node in prompt.items():
            field = models.FILE_INPUTS.get(node.get("class_type"))
            name = node.get("inputs", {}).get(field) if field else None
            if isinstance(name, str) and models.find(roots, node["class_type"], name) is None:
                errors[node_id] = {"errors": [{"type": "value_not_in_list", "message": "Value not in list",
                                               "details": f"{field}: '{name}' not in []"}],
                                   "class_type": node["class_type"]}
        return errors

    def execute(self, number, prompt_id, prompt, client):
        """(status, outputs): loaders recognise their files, SaveImage writes the image."""
        messages = [self.event("execution_start", {"prompt_id": prompt_id}, client)]
        roots = models.model_roots(sum(self.args.extra_model_paths_config or [], []))
        failing = os.environ.get("STANDIN_FAIL_NODE")  # a node class whose execution fails, as a broken model would
        for node_id, node in prompt.items():
            cls, inputs = node.get("class_type"), node.get("inputs", {})
            field = models.FILE_INPUTS.get(cls)
            problem = f"stand-in: {failing} failed" if cls == failing else None
            if cls == "KilnImageOut" and inputs.get("format", "png") != "png":
                problem = f"stand-in: KilnImageOut format {inputs['format']!r} is not imitated (png only)"
            if problem is None and field and isinstance(inputs.get(field), str):
                problem = models.recognise(cls, inputs.get("type"), models.find(roots, cls, inputs[field]))
            if problem:
                messages.append(self.event("execution_error", {"prompt_id": prompt_id, "node_id": node_id,
                                                              "node_type": cls, "exception_message": problem}, client))
                return {"status_str": "error", "completed": False, "messages": messages}, {}
        if any(node.get("class_type") == "KSampler" for node in prompt.values()):
            self.compile_once()
            busy(float(os.environ.get("STANDIN_PROMPT_S", "0")))
        outputs = {}
        for node_id, node in prompt.items():
            if node.get("class_type") in OUTPUT_NODES:
                self.send("executing", {"node": node_id, "prompt_id": prompt_id}, client)
                outputs[node_id] = {"images": [self.save(node, prompt, number, client)]}
                self.send("executed", {"node": node_id, "output": outputs[node_id], "prompt_id": prompt_id}, client)
        messages.append(self.event("execution_success", {"prompt_id": prompt_id}, client))
        return {"status_str": "success", "completed": True, "messages": messages}, outputs

    def event(self, kind, data, client):
        """A status message as ComfyUI keeps it in /history (with its timestamp), also sent to the prompt's client."""
        data = {**data, "timestamp": int(time.time() * 1000)}
        self.send(kind, data, client)
        return [kind, data]

    def send(self, kind, data, client=None):
        """To one client's websocket, or to every open one (client None), as ComfyUI's send_sync does."""
        text = json.dumps({"type": kind, "data": data})
        with self.lock:
            targets = [self.sockets.get(client)] if client else list(self.sockets.values())
        for socket in targets:
            if socket is not None:
                socket.send(text)

    def save(self, node, prompt, number, client):
        """SaveImage writes the PNG; kiln's KilnImageOut also sends it to the prompt's client as a binary
        frame (event 1, image type 2 = PNG). The stand-in encodes PNG only."""
        folder = self.args.output_directory or os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")
        inputs = node.get("inputs", {})
        name = f"{inputs.get('filename_prefix', 'ComfyUI')}_{number:05d}_.png"
        data = models.png(*models.latent_size(prompt))
        try:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, name), "wb") as handle:
                handle.write(data)
        except OSError as exc:
            sys.stderr.write(f"standin: cannot save {name}: {exc}\n")
        if node["class_type"] == "KilnImageOut" and client:   # after the file, as the node does
            with self.lock:
                socket = self.sockets.get(client)
            if socket is not None:
                socket.send(struct.pack(">II", 1, 2) + data)
        return {"filename": name, "subfolder": "", "type": "output"}

    def submit(self, prompt, client):
        errors = self.missing_files(prompt)
        if errors:
            return None, {"error": {"type": "prompt_outputs_failed_validation",
                                    "message": "Prompt outputs failed validation"}, "node_errors": errors}
        with self.lock:
            self.counter += 1
            prompt_id = str(uuid.uuid4())
            self.pending.append([self.counter, prompt_id, prompt, {"client_id": client} if client else {}, []])
            self.lock.notify_all()
            number = self.counter
        self.queue_updated()
        return prompt_id, {"prompt_id": prompt_id, "number": number, "node_errors": {}}

    def worker(self):
        while True:
            with self.lock:
                while not self.pending:
                    self.lock.wait()
                item = self.pending.popleft()
                self.running[item[1]] = item
            number, prompt_id, prompt, extra, _ = item
            status, outputs = self.execute(number, prompt_id, prompt, extra.get("client_id"))
            with self.lock:
                self.history[prompt_id] = {"prompt": item, "outputs": outputs, "status": status}
                del self.running[prompt_id]
            self.queue_updated()
            if extra.get("client_id"):
                self.send("executing", {"node": None, "prompt_id": prompt_id}, extra["client_id"])

    def queue_info(self):
        with self.lock:
            return {"exec_info": {"queue_remaining": len(self.pending) + len(self.running)}}

    def queue_updated(self):
        self.send("status", {"status": self.queue_info()})

    def queue(self):
        with self.lock:
            return {"queue_running": list(self.running.values()), "queue_pending": list(self.pending)}

    def last_history(self, max_items):
        with self.lock:
            ids = list(self.history)
            return {key: self.history[key] for key in (ids[-max_items:] if max_items is not None else ids)}

    def connect(self, client, socket):
        with self.lock:
            self.sockets[client] = socket
        socket.send(json.dumps({"type": "status", "data": {"status": self.queue_info(), "sid": client}}))

    def disconnect(self, client, socket):
        with self.lock:
            if self.sockets.get(client) is socket:
                del self.sockets[client]

    @staticmethod
    def compile_once():
        """Imitates the first-prompt compile that lands in the persistent cache: slow once per cache."""
        marker = os.path.join(os.environ.get("TORCHINDUCTOR_CACHE_DIR", "/tmp"), "standin-compiled")
        if not os.path.exists(marker):
            time.sleep(float(os.environ.get("STANDIN_COMPILE_S", "2")))
            try:
                with open(marker, "w") as handle:
                    handle.write("compiled\n")
            except OSError:
                pass


def busy(seconds):
    """Sampling stand-in: keeps one CPU busy for `seconds` (STANDIN_PROMPT_S), as a small CPU workload would."""
    end = time.monotonic() + seconds
    while time.monotonic() < end:
        sum(i * i for i in range(1000))


def handler_for(state):
    class Handler(BaseHTTPRequestHandler):
        def _send(self, code, body):
            data = json.dumps(body).encode()
            self.send_response(code)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            self.wfile.write(data)

        def _route(self):
            path = self.path.split("?", 1)[0]
            return path[4:] if path.startswith("/api/") else path

        def _query(self):
            return dict(part.split("=", 1) for part in self.path.partition("?")[2].split("&") if "=" in part)

        def _websocket(self):
            key = self.headers.get("Sec-WebSocket-Key")
            if "websocket" not in (self.headers.get("Upgrade") or "").lower() or not key:
                return self._send(400, {"error": "not a websocket request"})
            self.send_response(101, "Switching Protocols")
            self.send_header("Upgrade", "websocket")
            self.send_header("Connection", "Upgrade")
            self.send_header("Sec-WebSocket-Accept", websocket.accept_key(key))
            self.end_headers()
            self.wfile.flush()
            client = self._query().get("clientId") or uuid.uuid4().hex
            socket = websocket.Socket(self.rfile, self.wfile)
            state.connect(client, socket)
            try:
                socket.read_until_closed()
            finally:
                state.disconnect(client, socket)
            self.close_connection = True

        def do_GET(self):
            path = self._route()
            if path == "/system_stats":
                self._send(200, {"system": {"os": os.name, "python_version": sys.version,
                                            "comfyui_version": __version__, "embedded_python": False,
                                            "argv": sys.argv, "standin": True, "platform": platform.platform()},
                                 "devices": state.devices()})
            elif path == "/history":
                max_items = self._query().get("max_items")
                self._send(200, state.last_history(int(max_items) if max_items else None))
            elif path.startswith("/history/"):
                entry = state.history.get(path.split("/", 2)[2])
                self._send(200, {path.split("/", 2)[2]: entry} if entry else {})
            elif path == "/prompt":
                self._send(200, state.queue_info())
            elif path == "/ws":
                self._websocket()
            elif path == "/view":
                query = self._query()
                folder = state.args.output_directory or os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")
                target = os.path.join(folder, os.path.basename(query.get("filename", "")))
                if not os.path.isfile(target):
                    return self._send(404, {"error": "not found"})
                with open(target, "rb") as handle:
                    data = handle.read()
                self.send_response(200)
                self.send_header("Content-Type", "image/png")
                self.send_header("Content-Length", str(len(data)))
                self.end_headers()
                self.wfile.write(data)
            elif path == "/queue":
                self._send(200, state.queue())
            elif path == "/object_info":
                self._send(200, {"KSampler": {"input": {}, "output": ["LATENT"]}, "SaveImage": {"input": {}},
                                 "KilnImageOut": {"input": {}}})
            elif path == "/":
                self._send(200, {"standin": "ComfyUI stand-in", "version": __version__})
            else:
                self._send(404, {"error": "not found"})

        def do_POST(self):
            path = self._route()
            length = int(self.headers.get("Content-Length") or 0)
            try:
                body = json.loads(self.rfile.read(length) or b"{}")
            except ValueError:
                return self._send(400, {"error": {"type": "invalid_prompt", "message": "invalid JSON"}})
            if path == "/prompt":
                if not isinstance(body.get("prompt"), dict) or not body["prompt"]:
                    return self._send(400, {"error": {"type": "prompt_no_outputs", "message": "no prompt"},
                                            "node_errors": {}})
                client = body.get("client_id") if isinstance(body.get("client_id"), str) else None
                prompt_id, answer = state.submit(body["prompt"], client)
                return self._send(200 if prompt_id else 400, answer)
            if path in ("/free", "/interrupt"):
                return self._send(200, {})
            self._send(404, {"error": "not found"})

        def log_message(self, fmt, *args):
            sys.stderr.write("standin: " + fmt % args + "\n")

    return Handler


def main():
    args = parse_args(sys.argv[1:])
    time.sleep(float(os.environ.get("STANDIN_START_DELAY", "0")))
    host = args.listen.split(",")[0]
    server = ThreadingHTTPServer((host, args.port), handler_for(State(args)))
    sys.stdout.write(f"To see the GUI go to: http://{host}:{args.port} (ComfyUI stand-in {__version__})\n")
    sys.stdout.flush()
    server.serve_forever()


if __name__ == "__main__":
    main()
