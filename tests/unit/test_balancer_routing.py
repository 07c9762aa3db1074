"""The rendered balancer (HAProxy from Debian, `invoke balancer.render`) in front of stand-in servers on this
host, each with the image's exporter: new prompts go to the least busy warm server, a warming server gets
none, a refused connection is tried on another server, the follow-ups of a prompt (/history, /view, /queue,
the websocket) reach the server that ran it and fail when it is gone, and a draining server takes no new
prompts while it finishes its own."""

from __future__ import annotations

import collections
import json
import subprocess
import sys
import time
import urllib.error
import urllib.request

import pytest

from tests.standin.fleet import PAYLOAD, PROMPT, host_fleet
from tests.waiting import until
from tests.ws_client import WebSocket


def _post(base: str, body: dict, cookie: str = "") -> tuple[dict, dict]:
    headers = {"Content-Type": "application/json", **({"Cookie": cookie} if cookie else {})}
    request = urllib.request.Request(base + "/prompt", json.dumps(body).encode(), headers)
    with urllib.request.urlopen(request, timeout=10) as resp:
        return json.load(resp), {k.lower(): v for k, v in resp.headers.items()}


def _get(url: str, cookie: str = "") -> tuple[int, bytes, dict]:
    request = urllib.request.Request(url, headers={"Cookie": cookie} if cookie else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as resp:
            return resp.status, resp.read(), {k.lower(): v for k, v in resp.headers.items()}
    except urllib.error.HTTPError as exc:
        return exc.code, exc.read(), {k.lower(): v for k, v in exc.headers.items()}


def _servers_of(base: str, count: int) -> collections.Counter:
    return collections.Counter(_post(base, {"prompt": PROMPT})[1]["x-kiln-server"] for _ in range(count))


def _history(base: str, pid: str, cookie: str = "") -> dict:
    return json.loads(_get(f"{base}/history/{pid}", cookie)[1]).get(pid)


def _events_of(ws, pids: set) -> None:
    """Read the websocket until each of these prompts' execution_success came over it."""
    done = set()
    while done != pids:
        message = ws.receive()
        if message["type"] == "execution_success":
            done.add(message["data"]["prompt_id"])


def _idle(fleet) -> None:
    """Both servers back at full weight: what one test queued does not steer the next one's prompts."""
    until(lambda: set(fleet.server_state().values()) == {"UP 100"}, 30, "both servers idle and in rotation")


def test_new_prompts_go_to_the_least_busy_server(tmp_path):
    with host_fleet(tmp_path, 2, prompt_s=1.0) as fleet:
        busy = fleet.servers[0]
        for _ in range(10):   # straight to server 0, past the balancer: 10 s of queue, seen by many agent checks
            _post(busy.url, {"prompt": PROMPT})
        until(lambda: fleet.server_state()["comfyui-0"].endswith(" 1") or fleet.server_state()["comfyui-0"].endswith(" 2"),
              10, "the agent check lowering the busy server's weight")
        got = _servers_of(fleet.url, 8)
        assert got["comfyui-1"] >= 7, got


@pytest.fixture(scope="module")
def idle_fleet(tmp_path_factory):
    """Two warm servers for the tests that leave them as they found them (idle, none killed)."""
    with host_fleet(tmp_path_factory.mktemp("fleet"), 2) as fleet:
        yield fleet


def test_equally_idle_servers_share_new_prompts(idle_fleet):
    _idle(idle_fleet)
    assert _servers_of(idle_fleet.url, 8) == {"comfyui-0": 4, "comfyui-1": 4}


def test_a_new_prompt_is_balanced_whatever_server_an_earlier_answers_cookie_names(idle_fleet):
    """A client keeping cookies (a browser, a requests.Session) sends kiln_server with every prompt."""
    _idle(idle_fleet)
    got = collections.Counter(_post(idle_fleet.url, {"prompt": PROMPT}, "theme=dark; kiln_server=comfyui-0")[1]
                              ["x-kiln-server"] for _ in range(6))
    assert got == {"comfyui-0": 3, "comfyui-1": 3}


def test_a_warming_server_gets_no_prompts_until_its_warmup_is_done(tmp_path):
    with host_fleet(tmp_path, 2, warm=False) as fleet:
        fleet.servers[0].warm()
        until(lambda: fleet.server_state()["comfyui-0"].startswith("UP"), 10, "the warm server in rotation")
        assert fleet.server_state()["comfyui-1"].startswith("DOWN")
        assert _servers_of(fleet.url, 6) == {"comfyui-0": 6}
        fleet.servers[1].warm()
        until(lambda: fleet.server_state()["comfyui-1"].startswith("UP"), 10, "the second server in rotation once warm")
        assert set(_servers_of(fleet.url, 6)) == {"comfyui-0", "comfyui-1"}


def test_a_refused_connection_is_tried_again_on_another_server(tmp_path):
    with host_fleet(tmp_path, 2) as fleet:
        gone = fleet.servers[1]
        gone.comfyui.kill()   # ComfyUI dies; its exporter still answers, so its checks have not failed yet
        gone.comfyui.wait()
        assert fleet.server_state()["comfyui-1"].startswith("UP")
        assert _servers_of(fleet.url, 6) == {"comfyui-0": 6}


def test_history_view_and_queue_reach_the_server_that_ran_the_prompt(idle_fleet):
    fleet = idle_fleet
    _idle(fleet)
    placed = []
    for _ in range(8):
        answer, headers = _post(fleet.url, {"prompt": PROMPT})
        placed.append((answer["prompt_id"], headers["x-kiln-server"], headers["set-cookie"].split(";")[0]))
    assert {server for _, server, _ in placed} == {"comfyui-0", "comfyui-1"}
    for pid, server, cookie in placed:
        # no cookie: the balancer's prompt table routes /history/<id>
        entry = until(lambda: _history(fleet.url, pid), 10, f"prompt {pid} in /history")
        assert _get(f"{fleet.url}/history/{pid}")[2]["x-kiln-server"] == server
        [image] = entry["outputs"]["9"]["images"]
        # /view names a file that every server may hold under the same name: the cookie decides
        code, png, headers = _get(f"{fleet.url}/view?filename={image['filename']}&type=output", cookie)
        assert code == 200 and png[:4] == b"\x89PNG" and headers["x-kiln-server"] == server
        assert _get(f"{fleet.url}/queue", cookie)[2]["x-kiln-server"] == server


def test_a_websocket_clients_prompts_go_to_its_server_and_its_events_come_back(idle_fleet):
    fleet = idle_fleet
    _idle(fleet)
    with WebSocket(fleet.url.replace("http://", "ws://") + "/ws?clientId=kiln-test-ws") as ws:
        [server] = ws.headers["x-kiln-server"]
        assert ws.receive()["type"] == "status"
        pids = set()
        for _ in range(4):
            answer, headers = _post(fleet.url, {"prompt": PROMPT, "client_id": "kiln-test-ws"})
            assert headers["x-kiln-server"] == server
            pids.add(answer["prompt_id"])
        _events_of(ws, pids)
    _idle(fleet)
    assert set(_servers_of(fleet.url, 4)) == {"comfyui-0", "comfyui-1"}   # other clients are balanced


def test_a_cookie_jar_with_prompts_on_two_servers_reads_each_history_where_it_ran(idle_fleet):
    """One cookie jar, prompts on both servers: the jar names the last answer's server only, and the prompt
    table still routes each /history/<id> to the server that ran it."""
    fleet, jar, placed = idle_fleet, "", {}
    _idle(fleet)
    while set(placed.values()) != {"comfyui-0", "comfyui-1"}:
        answer, headers = _post(fleet.url, {"prompt": PROMPT}, jar)
        placed[answer["prompt_id"]] = headers["x-kiln-server"]
        jar = headers["set-cookie"].split(";")[0]
    for pid, server in placed.items():
        until(lambda: _history(fleet.url, pid, jar), 10, f"prompt {pid} in /history through the jar's cookie")
        assert _get(f"{fleet.url}/history/{pid}", jar)[2]["x-kiln-server"] == server


def test_a_websocket_opened_without_a_client_id_gets_one_and_its_prompts_follow(idle_fleet):
    """ComfyUI's frontend opens /ws bare on its first load and sends later prompts with the sid it is told."""
    fleet = idle_fleet
    _idle(fleet)
    with WebSocket(fleet.url.replace("http://", "ws://") + "/ws") as ws:
        [server] = ws.headers["x-kiln-server"]
        sid = ws.receive()["data"]["sid"]
        assert sid
        answers = [_post(fleet.url, {"prompt": PROMPT, "client_id": sid}) for _ in range(4)]
        assert {headers["x-kiln-server"] for _, headers in answers} == {server}
        _events_of(ws, {answer["prompt_id"] for answer, _ in answers})


def test_a_websocket_client_whose_server_died_reconnects_to_another_and_its_prompts_follow(tmp_path):
    with host_fleet(tmp_path, 2) as fleet:
        url = fleet.url.replace("http://", "ws://") + "/ws?clientId=kiln-test-again"
        with WebSocket(url) as ws:
            [first] = ws.headers["x-kiln-server"]
        fleet.servers[int(first[-1])].kill()
        until(lambda: fleet.server_state()[first].startswith("DOWN"), 10, "its server out")
        with WebSocket(url) as ws:
            [second] = ws.headers["x-kiln-server"]
            assert second != first and ws.receive()["type"] == "status"
            _, headers = _post(fleet.url, {"prompt": PROMPT, "client_id": "kiln-test-again"})
            assert headers["x-kiln-server"] == second


def test_the_follow_ups_of_a_dead_servers_prompt_fail_instead_of_going_elsewhere(tmp_path):
    with host_fleet(tmp_path, 2) as fleet:
        answer, headers = _post(fleet.url, {"prompt": PROMPT})
        pid, cookie = answer["prompt_id"], headers["set-cookie"].split(";")[0]
        until(lambda: _history(fleet.url, pid), 10, "the prompt done")
        dead = fleet.servers[int(headers["x-kiln-server"][-1])]
        dead.kill()
        until(lambda: fleet.server_state()[headers["x-kiln-server"]].startswith("DOWN"), 10, "the dead server out")
        # the other server would answer 200 {} (no such prompt) and a client would wait forever
        assert _get(f"{fleet.url}/history/{pid}")[0] == 503
        assert _get(f"{fleet.url}/queue", cookie)[0] == 503
        assert {_post(fleet.url, {"prompt": PROMPT})[1]["x-kiln-server"] for _ in range(3)} != {headers["x-kiln-server"]}


def test_a_draining_server_takes_no_new_prompts_and_finishes_its_own(tmp_path):
    with host_fleet(tmp_path, 2, prompt_s=0.4) as fleet:
        draining = fleet.servers[1]
        mine = []
        while len(mine) < 3:   # three prompts on server 1 through the balancer
            answer, headers = _post(fleet.url, {"prompt": PROMPT})
            if headers["x-kiln-server"] == "comfyui-1":
                mine.append((answer["prompt_id"], headers["set-cookie"].split(";")[0]))
        drain = subprocess.Popen([sys.executable, "-m", "fleet.drain", "--url", draining.url, "--drain",
                                  str(draining.folder / "draining"), "--settle-s", "1", "--limit-s", "30"],
                                 cwd=PAYLOAD, stdout=subprocess.PIPE, text=True)
        try:
            until(lambda: not fleet.server_state()["comfyui-1"].startswith("UP"), 10, "the draining server out")
            assert _servers_of(fleet.url, 4) == {"comfyui-0": 4}
            out, _ = drain.communicate(timeout=60)
        finally:
            drain.kill()
        assert drain.returncode == 0 and json.loads(out)["kiln_drain"]["drained"]
        for pid, cookie in mine:   # its own prompts finished, and their follow-ups still reach it
            entry = _history(fleet.url, pid, cookie)
            assert entry["status"]["status_str"] == "success"

