"""ComfyUI stand-in: same CLI shape and HTTP API subset as ComfyUI 0.3.18 (see README.md)."""

import argparse
import json
import os
import platform
import sys
import threading
import time
import uuid
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

from comfyui_version import __version__
import models

SWITCHES = ["--disable-auto-launch", "--auto-launch", "--cpu", "--gpu-only", "--highvram", "--normalvram", "--lowvram",
            "--novram", "--force-fp16", "--force-fp32", "--fp16-vae", "--bf16-vae", "--fp32-vae", "--disable-xformers",
            "--disable-cuda-malloc", "--cuda-malloc", "--fast", "--dont-print-server", "--disable-metadata",
            "--disable-all-custom-nodes", "--log-stdout", "--deterministic", "--disable-smart-memory",
            "--fp8_e4m3fn-unet", "--fp8_e4m3fn-text-enc", "--bf16-unet", "--fp16-unet", "--use-pytorch-cross-attention"]


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
    def __init__(self, args):
        self.args, self.history, self.counter, self.lock = args, {}, 0, threading.Lock()

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

    def execute(self, prompt):
        """(status, outputs): loaders recognise their files, SaveImage writes the image."""
        roots = models.model_roots(sum(self.args.extra_model_paths_config or [], []))
        failing = os.environ.get("STANDIN_FAIL_NODE")  # a node class whose execution fails, as a broken model would
        for node_id, node in prompt.items():
            cls, inputs = node.get("class_type"), node.get("inputs", {})
            field = models.FILE_INPUTS.get(cls)
            problem = f"stand-in: {failing} failed" if cls == failing else None
            if problem is None and field and isinstance(inputs.get(field), str):
                problem = models.recognise(cls, inputs.get("type"), models.find(roots, cls, inputs[field]))
            if problem:
                return {"status_str": "error", "completed": False, "messages": [
                    ["execution_error", {"node_id": node_id, "node_type": cls, "exception_message": problem}]]}, {}
        if any(node.get("class_type") == "KSampler" for node in prompt.values()):
            self.compile_once()
        outputs = {}
        for node_id, node in prompt.items():
            if node.get("class_type") == "SaveImage":
                outputs[node_id] = {"images": [self.save(node, prompt)]}
        return {"status_str": "success", "completed": True, "messages": []}, outputs

    def save(self, node, prompt):
        folder = self.args.output_directory or os.path.join(os.path.dirname(os.path.abspath(__file__)), "output")
        name = f"{node.get('inputs', {}).get('filename_prefix', 'ComfyUI')}_{self.counter:05d}_.png"
        try:
            os.makedirs(folder, exist_ok=True)
            with open(os.path.join(folder, name), "wb") as handle:
                handle.write(models.png(*models.latent_size(prompt)))
        except OSError as exc:
            sys.stderr.write(f"standin: cannot save {name}: {exc}\n")
        return {"filename": name, "subfolder": "", "type": "output"}

    def submit(self, prompt):
        errors = self.missing_files(prompt)
        if errors:
            return None, {"error": {"type": "prompt_outputs_failed_validation",
                                    "message": "Prompt outputs failed validation"}, "node_errors": errors}
        with self.lock:
            self.counter += 1
            prompt_id = str(uuid.uuid4())
            status, outputs = self.execute(prompt)
            self.history[prompt_id] = {"prompt": [self.counter, prompt_id, prompt, {}, []], "outputs": outputs,
                                       "status": status}
            return prompt_id, {"prompt_id": prompt_id, "number": self.counter, "node_errors": {}}


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

        def do_GET(self):
            path = self._route()
            if path == "/system_stats":
                self._send(200, {"system": {"os": os.name, "python_version": sys.version,
                                            "comfyui_version": __version__, "embedded_python": False,
                                            "argv": sys.argv, "standin": True, "platform": platform.platform()},
                                 "devices": state.devices()})
            elif path == "/history":
                self._send(200, dict(state.history))
            elif path.startswith("/history/"):
                entry = state.history.get(path.split("/", 2)[2])
                self._send(200, {path.split("/", 2)[2]: entry} if entry else {})
            elif path == "/view":
                query = dict(part.split("=", 1) for part in self.path.partition("?")[2].split("&") if "=" in part)
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
                self._send(200, {"queue_running": [], "queue_pending": []})
            elif path == "/object_info":
                self._send(200, {"KSampler": {"input": {}, "output": ["LATENT"]}, "SaveImage": {"input": {}}})
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
                prompt_id, answer = state.submit(body["prompt"])
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
    print(f"To see the GUI go to: http://{host}:{args.port} (ComfyUI stand-in {__version__})", flush=True)
    server.serve_forever()


if __name__ == "__main__":
    main()
