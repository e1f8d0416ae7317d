"""Every close of docs/protocol.md section 3, produced for real and read off the wire."""

from __future__ import annotations

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import pytest
from websockets.exceptions import ConnectionClosed

from tests.gateway_client import collect, dial
from tether.gateway.runner import RunningGateway


def _parse(reason: str) -> str:
    return reason.partition(":")[0]


def test_1000_after_shell_exit_with_exit_message(gateway: RunningGateway,
                                                deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["sh", "-c", "exit 7"])
    closed = collect(ws)
    assert closed.code == 1000
    first, last = json.loads(closed.text[0]), json.loads(closed.text[-1])
    assert first["type"] == "session" and first["instance"] == "api-1" and first["id"]
    assert last == {"type": "exit", "code": 7}


def test_1001_on_stop(gateway: RunningGateway, viewer_token: str) -> None:
    ws = dial(gateway.url, "/v1/logs", viewer_token, service="api", follow=1)
    ws.recv(timeout=5)  # the backlog
    gateway.stop()
    closed = collect(ws)
    assert closed.code == 1001
    assert _parse(closed.reason) == "gateway-restarting"


def test_1001_on_sigterm_of_a_gateway_process(tmp_path: Path, log_dir: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text(f'[services.api]\nshell = "/bin/sh"\n[[services.api.logs]]\n'
                      f'files = "{log_dir}/*.log"\n')
    state = tmp_path / "state"
    from tether.gateway.state import StateStore
    from tether.gateway.tokens import TokenService

    store = StateStore(state)
    token = TokenService(store).create_api_token("Deployer", "sigterm")
    store.close()
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen([sys.executable, "-m", "tether", "gateway", "serve", "--config",
                             str(config), "--state-dir", str(state), "--port", "0"],
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, env=env, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()
        assert "listening on" in line, line
        url = line.split("listening on ")[1].split()[0]
        ws = dial(url, "/v1/shell", token, service="api", tty=0, command=["sleep", "30"])
        assert json.loads(ws.recv(timeout=5))["type"] == "session"
        proc.send_signal(signal.SIGTERM)
        closed = collect(ws)
        assert closed.code == 1001
        assert proc.wait(timeout=10) == 0
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
        if proc.stdout is not None:
            proc.stdout.close()


def test_1008_when_the_token_expires_during_a_session(gateway: RunningGateway) -> None:
    token = gateway.mint_token("Viewer", ttl=2.0)
    ws = dial(gateway.url, "/v1/logs", token, service="api", follow=1)
    started = time.monotonic()
    closed = collect(ws, timeout=6)
    assert closed.code == 1008
    assert _parse(closed.reason) == "token-expired" and "expired" in closed.reason
    assert time.monotonic() - started < 4


def test_1008_forced_by_fault(gateway: RunningGateway, deployer_token: str) -> None:
    gateway.faults.expire_after = 0.3
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["sleep", "20"])
    closed = collect(ws, timeout=5)
    assert closed.code == 1008


def test_1008_when_an_api_token_is_revoked(gateway: RunningGateway) -> None:
    token = gateway.create_api_token("Viewer", "doomed")
    ws = dial(gateway.url, "/v1/logs", token, service="api", follow=1)
    assert gateway.gateway.tokens.revoke_api_token("doomed") == 1
    closed = collect(ws, timeout=5)
    assert closed.code == 1008 and _parse(closed.reason) == "unauthorized"


def test_1007_when_the_role_no_longer_allows_it(gateway: RunningGateway) -> None:
    token = gateway.create_api_token("Deployer", "demoted")
    ws = dial(gateway.url, "/v1/shell", token, service="api", tty=0, command=["sleep", "20"])
    gateway.gateway.tokens.set_api_token_role("demoted", "Viewer")
    closed = collect(ws, timeout=5)
    assert closed.code == 1007
    assert _parse(closed.reason) == "permission-denied" and "Deployer" in closed.reason


def test_1009_oversized_message(make_gateway: Callable[..., RunningGateway]) -> None:
    gw = make_gateway(max_message_size=4096)
    ws = dial(gw.url, "/v1/shell", gw.mint_token("Deployer"), service="api", tty=0,
              command=["cat"])
    ws.recv(timeout=5)
    with contextlib.suppress(ConnectionClosed):
        ws.send(b"\x00" + b"x" * 10_000)
    closed = collect(ws)
    assert closed.code == 1009


@pytest.mark.parametrize("message, code", [
    ("{not json", 1002),
    ('{"type": "resize", "cols": "wide"}', 1002),
    ('{"type": "teleport"}', 1003),
    ('{"type": "exit", "code": 0}', 1003),
])
def test_bad_control_messages(gateway: RunningGateway, deployer_token: str, message: str,
                              code: int) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["sleep", "20"])
    ws.recv(timeout=5)
    ws.send(message)
    closed = collect(ws)
    assert closed.code == code
    assert _parse(closed.reason) == "protocol-error"


def test_1002_stdout_frame_from_client(gateway: RunningGateway, deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0, command=["cat"])
    ws.recv(timeout=5)
    ws.send(b"\x01nope")
    assert collect(ws).code == 1002


def test_1011_backend_unavailable_after_upgrade(gateway: RunningGateway,
                                                viewer_token: str) -> None:
    gateway.faults.backend_down["api"] = "close"
    closed = collect(dial(gateway.url, "/v1/logs", viewer_token, service="api"))
    assert closed.code == 1011 and _parse(closed.reason) == "backend-unavailable"


@pytest.mark.parametrize("reason", ["", "agent-timeout: Retry budget exhausted"])
def test_1011_agent_timeout(gateway: RunningGateway, deployer_token: str, reason: str) -> None:
    gateway.faults.agent_timeout["api"] = reason
    closed = collect(dial(gateway.url, "/v1/shell", deployer_token, service="api"))
    assert closed.code == 1011
    assert "timeout" in closed.reason or "Retry budget exhausted" in closed.reason


def test_1011_target_unreachable(gateway: RunningGateway, deployer_token: str) -> None:
    import dataclasses
    import socket

    with socket.socket() as probe:  # a port with nothing listening
        probe.bind(("127.0.0.1", 0))
        dead = probe.getsockname()[1]
    service = gateway.gateway.config.services["api"]
    gateway.gateway.config = dataclasses.replace(
        gateway.gateway.config, services={"api": dataclasses.replace(service, ports=(dead,))})
    closed = collect(dial(gateway.url, "/v1/port-forward", deployer_token, service="api",
                          port=dead, subprotocols=("tether.v1", "binary")))
    assert closed.code == 1011 and _parse(closed.reason) == "target-unreachable"
    assert str(dead) in closed.reason


def test_delay_before_upgrade_and_slow_handshake(make_gateway: Callable[..., RunningGateway]
                                                 ) -> None:
    import socket

    gw = make_gateway(open_timeout=0.5)
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(b"GET /v1/logs HTTP/1.1\r\n")  # and never finish the request
        started = time.monotonic()
        assert sock.recv(1024) == b""  # dropped by open_timeout
        assert time.monotonic() - started < 3
    gw.faults.delay_before_upgrade = 0.3
    started = time.monotonic()
    dial(gw.url, "/v1/logs", gw.mint_token("Viewer"), service="api").close()
    assert time.monotonic() - started >= 0.3


def test_silent_peer_is_dropped_by_keepalive(make_gateway: Callable[..., RunningGateway]) -> None:
    import base64
    import os as _os
    import socket

    gw = make_gateway(ping_interval=0.2, ping_timeout=0.3)
    token = gw.mint_token("Viewer")
    key = base64.b64encode(_os.urandom(16)).decode()
    request = (f"GET /v1/logs?service=api&follow=1 HTTP/1.1\r\nHost: 127.0.0.1\r\n"
               f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
               f"Sec-WebSocket-Version: 13\r\nSec-WebSocket-Protocol: tether.v1\r\n"
               f"Authorization: Bearer {token}\r\n\r\n")
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.sendall(request.encode())
        received = b""
        started = time.monotonic()
        for _ in range(1000):  # read pings and data, never answer: until the gateway hangs up
            chunk = sock.recv(65536)
            if not chunk:
                break
            received += chunk
        assert received.startswith(b"HTTP/1.1 101")
        assert time.monotonic() - started < 4
    for _ in range(40):  # the handler ends right after the connection
        if gw.session_count == 0:
            break
        time.sleep(0.05)
    assert gw.session_count == 0


def test_request_id_echoed_on_101(gateway: RunningGateway, viewer_token: str) -> None:
    ws = dial(gateway.url, "/v1/logs", viewer_token, request_id="my-req-101", service="api")
    assert ws.response.headers["X-Request-Id"] == "my-req-101"
    assert ws.subprotocol == "tether.v1"
    ws.close()


def test_faults_from_json(tmp_path: Path) -> None:
    from tether.gateway.faults import Faults

    path = tmp_path / "faults.json"
    path.write_text('{"backend_down": {"api": "refuse"}, "delay_after_upgrade": 0.1}')
    faults = Faults.from_json(path)
    assert faults.backend_down == {"api": "refuse"} and faults.delay_after_upgrade == 0.1
    path.write_text('{"explode": true}')
    with pytest.raises(ValueError, match="unknown faults"):
        Faults.from_json(path)
