"""The test hub's paced link (tests/unit/model_server.py, Faults.pace_bytes_s): what bench/cold_node.py's
--hub-mbit rests on, so that a fetch can outlast a pull on loopback."""

import time
import urllib.request

from tests.unit.model_server import ModelServer

SIZE = 1 << 20


def _get(server: ModelServer) -> tuple[bytes, float]:
    started = time.monotonic()
    body = urllib.request.urlopen(server.base + "/m/resolve/main/f.bin", timeout=30).read()
    return body, time.monotonic() - started


def test_a_paced_body_takes_its_size_over_the_rate_and_arrives_whole():
    with ModelServer() as server:
        server.files["/m/resolve/main/f.bin"] = bytes(range(256)) * (SIZE // 256)
        server.faults.pace_bytes_s = 4 * SIZE   # 0.25 s for the file
        body, seconds = _get(server)
    assert body == bytes(range(256)) * (SIZE // 256)
    assert 0.24 <= seconds < 1.0


def test_an_unpaced_body_is_not_held_back():
    with ModelServer() as server:
        server.files["/m/resolve/main/f.bin"] = bytes(SIZE)
        _, seconds = _get(server)
    assert seconds < 0.24
