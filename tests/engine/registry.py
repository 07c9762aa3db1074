"""A real registry for the tests: Debian's docker-registry (distribution 2.8) on 127.0.0.1 with htpasswd
auth (or token auth, as cloud registries use), started and stopped by the tests; its storage can be a
small tmpfs to fill it up."""

from __future__ import annotations

import socket
import subprocess
import time
import urllib.error
import urllib.request
from dataclasses import dataclass
from pathlib import Path

USER, PASSWORD = "kiln", "s3cret-for-tests"


@dataclass
class LocalRegistry:
    root: Path
    port: int
    process: subprocess.Popen | None = None
    tls: tuple[Path, Path] | None = None   # (certificate, key): serve HTTPS
    token_auth: str = ""                   # an `auth:` section for token auth instead of htpasswd

    @property
    def host(self) -> str:
        return f"127.0.0.1:{self.port}"

    def start(self) -> "LocalRegistry":
        storage = self.root / "data"
        storage.mkdir(parents=True, exist_ok=True)
        (self.root / "htpasswd").write_text(subprocess.run(["htpasswd", "-Bbn", USER, PASSWORD], check=True,
                                                           capture_output=True, text=True).stdout)
        (self.root / "config.yml").write_text(
            "version: 0.1\nlog: {level: warn}\n"
            f"storage:\n  filesystem: {{rootdirectory: {storage}}}\n  delete: {{enabled: true}}\n"
            f"http:\n  addr: 127.0.0.1:{self.port}\n"
            + (f"  tls: {{certificate: {self.tls[0]}, key: {self.tls[1]}}}\n" if self.tls else "")
            + (self.token_auth or f"auth:\n  htpasswd: {{realm: kiln-test, path: {self.root / 'htpasswd'}}}\n"))
        log = open(self.root / "registry.log", "ab")
        self.process = subprocess.Popen(["docker-registry", "serve", str(self.root / "config.yml")], stdout=log,
                                        stderr=subprocess.STDOUT)
        self._wait()
        return self

    def stop(self) -> None:
        if self.process and self.process.poll() is None:
            self.process.terminate()
            self.process.wait(timeout=10)
        self.process = None

    def blobs(self) -> dict[str, int]:
        """Every blob the registry stores (layers, configs, manifests, artifacts): {digest: bytes}. Content
        addressed, so what one push adds is exactly what it uploaded that the registry did not hold."""
        stored = self.root / "data" / "docker" / "registry" / "v2" / "blobs" / "sha256"
        return {f"sha256:{d.name}": (d / "data").stat().st_size for d in stored.glob("*/*") if (d / "data").is_file()}

    def _wait(self) -> None:
        deadline = time.monotonic() + 60  # a busy host starts it slowly
        while time.monotonic() < deadline:
            try:
                with socket.create_connection(("127.0.0.1", self.port), timeout=1):
                    pass
                if not self.tls:
                    urllib.request.urlopen(f"http://{self.host}/v2/", timeout=1)
                return
            except urllib.error.HTTPError:
                return  # 401: up, asking for credentials
            except OSError:
                time.sleep(0.1)
        raise RuntimeError(f"docker-registry did not start: {(self.root / 'registry.log').read_text()[-500:]}")


def make_tls(folder: Path) -> tuple[Path, Path, Path]:
    """A CA made for the test and a server certificate for 127.0.0.1 signed by it: (ca, cert, key)."""
    folder.mkdir(parents=True, exist_ok=True)
    ca, ca_key, cert, key, csr = (folder / n for n in ("ca.crt", "ca.key", "server.crt", "server.key", "server.csr"))
    ext = folder / "san.cnf"
    ext.write_text("subjectAltName=IP:127.0.0.1\nbasicConstraints=CA:FALSE\n")
    for cmd in (["req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1", "-subj", "/CN=kiln-test-registry-ca",
                 "-keyout", ca_key, "-out", ca],
                ["req", "-newkey", "rsa:2048", "-nodes", "-subj", "/CN=127.0.0.1", "-keyout", key, "-out", csr],
                ["x509", "-req", "-in", csr, "-CA", ca, "-CAkey", ca_key, "-CAcreateserial", "-days", "1",
                 "-extfile", ext, "-out", cert]):
        subprocess.run(["openssl", *map(str, cmd)], check=True, capture_output=True)
    return ca, cert, key


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]
