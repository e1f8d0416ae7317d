"""The gateway against hostile requests, beyond the refusals of test_gateway_refusals.py.

Raw sockets on loopback send what a well-behaved client never would: path and
service-name tricks, control characters, oversized and too many headers, a
handshake trickled byte by byte, a flood of handshakes. For each: it never gets
a 101, the gateway still serves a good request afterwards, and no token value or
signing secret shows in any response or in the gateway's log.
"""

from __future__ import annotations

import contextlib
import json
import logging
import socket
import statistics
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from tests.gateway_client import dial, http_request, refusal
from tether.gateway.config import RateLimit
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(30)


@dataclass
class Answer:
    """What came back on a raw connection: the status (0: none), head and body bytes."""

    status: int
    raw: bytes
    closed_after: float  # seconds until the gateway closed the connection (or the read ended)


def raw_request(port: int, head: bytes, *, timeout: float = 5.0,
                wait_close: bool = False) -> Answer:
    """Send ``head`` as is; read the answer's head and its Content-Length body (a 101: the head
    only), or with ``wait_close`` everything until the gateway closes. At most 256 KiB and
    ``timeout`` seconds."""
    started = time.monotonic()
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        with contextlib.suppress(BrokenPipeError, ConnectionResetError):
            sock.sendall(head)
        data = b""
        deadline = started + timeout
        while len(data) < 256 * 1024 and time.monotonic() < deadline:
            if not wait_close and _complete(data):
                break
            sock.settimeout(max(deadline - time.monotonic(), 0.01))
            try:
                chunk = sock.recv(65536)
            except (TimeoutError, ConnectionResetError):
                break
            if not chunk:
                break
            data += chunk
    status = int(data[9:12]) if data.startswith(b"HTTP/1.1 ") else 0
    return Answer(status, data, time.monotonic() - started)


def _complete(data: bytes) -> bool:
    head, blank, body = data.partition(b"\r\n\r\n")
    if not blank:
        return False
    if head.startswith(b"HTTP/1.1 101"):
        return True
    for line in head.split(b"\r\n")[1:]:
        name, _, value = line.partition(b":")
        if name.strip().lower() == b"content-length":
            return len(body) >= int(value.strip() or 0)
    return False


def upgrade_head(target: str, token: str | None, *extra: str) -> bytes:
    lines = [f"GET {target} HTTP/1.1", "Host: 127.0.0.1", "Upgrade: websocket",
             "Connection: Upgrade", "Sec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==",
             "Sec-WebSocket-Version: 13", "Sec-WebSocket-Protocol: tether.v1",
             f"X-Request-Id: {uuid.uuid4()}"]
    if token is not None:
        lines.append(f"Authorization: Bearer {token}")
    lines.extend(extra)
    return ("\r\n".join(lines) + "\r\n\r\n").encode("latin-1")


@pytest.fixture
def gateway_log(caplog: pytest.LogCaptureFixture) -> pytest.LogCaptureFixture:
    caplog.set_level(logging.INFO, logger="tether.gateway")
    return caplog


@pytest.fixture
def secrets(gateway: RunningGateway, deployer_token: str, viewer_token: str) -> list[str]:
    return [deployer_token, viewer_token, gateway.gateway.state.secret.decode(errors="replace")]


def assert_still_serves(gw: RunningGateway, token: str) -> None:
    ws = dial(gw.url, "/v1/logs", token, service="api", tail=1)
    ws.close()
    health = http_request(gw.url, "GET", "/v1/health")
    assert health.status == 200


def assert_secret_free(secrets: list[str], *texts: str | bytes) -> None:
    for text in texts:
        blob = text.decode(errors="replace") if isinstance(text, bytes) else text
        for secret in secrets:
            assert secret not in blob, "a secret appeared in a response or log"


# --- roles and tokens ---------------------------------------------------------------------------


def test_viewer_on_port_forward_is_403_naming_the_role(gateway: RunningGateway,
                                                       viewer_token: str, echo_server: int,
                                                       secrets: list[str]) -> None:
    r = refusal(gateway.url, "/v1/port-forward", viewer_token, service="api", port=echo_server)
    assert r.status == 403
    problem = r.json()
    assert problem["code"] == "permission-denied" and problem["required_role"] == "Deployer"
    assert_secret_free(secrets, r.body, json.dumps(r.headers))
    assert_still_serves(gateway, viewer_token)


def test_viewer_api_token_on_shell_and_port_forward(gateway: RunningGateway,
                                                    echo_server: int) -> None:
    token = gateway.create_api_token("Viewer", "sec-viewer")
    for path, params in (("/v1/shell", {"tty": 0}), ("/v1/port-forward", {"port": echo_server})):
        r = refusal(gateway.url, path, token, service="api", **params)
        assert r.status == 403 and r.json()["required_role"] == "Deployer"
        assert token not in r.body.decode()


def test_a_refresh_token_used_twice_revokes_the_family_and_is_never_echoed(
        gateway: RunningGateway, gateway_log: pytest.LogCaptureFixture) -> None:
    oauth = gateway.gateway.oauth
    device = oauth.start_device(gateway.url + "/v1/auth/verify")
    assert oauth.decide(device["user_code"], approve=True, role="Deployer", sub="twice")
    first = oauth.poll_device(device["device_code"])["refresh_token"]

    def grant(refresh_token: str) -> tuple[int, dict[str, str], bytes]:
        r = http_request(gateway.url, "POST", "/v1/auth/token",
                         form={"grant_type": "refresh_token", "refresh_token": refresh_token})
        return r.status, r.headers, r.body

    status, _, body = grant(first)
    assert status == 200
    second = json.loads(body)["refresh_token"]
    reuse = grant(first)
    assert reuse[0] == 400 and json.loads(reuse[2])["error"] == "invalid_grant"
    after = grant(second)  # the rotated one died with its family
    assert after[0] == 400 and json.loads(after[2])["error"] == "invalid_grant"
    for _, headers, answer in (reuse, after):
        assert_secret_free([first, second], answer, json.dumps(headers))
    assert_secret_free([first, second], gateway_log.text)


# --- names, paths and parameters ------------------------------------------------------------------

LONG = "a" * 5000
TRICKS = {
    "dotdot": "/v1/logs?service=..%2Fapi",
    "encoded-dotdot": "/v1/logs?service=%2e%2e",
    "slash": "/v1/logs?service=%2F",
    "trailing-slash": "/v1/logs?service=api%2F",
    "dotdot-etc": "/v1/logs?service=..%2F..%2F..%2Fetc%2Fpasswd",
    "instance-dotdot": "/v1/logs?service=api&instance=..%2Fapi-1",
    "very-long": f"/v1/logs?service={LONG}",
    "control": "/v1/logs?service=api%1b%5b2J%00%07",
    "newline": "/v1/logs?service=api%0d%0aX-Injected:%201",
    "path-dotdot": "/v1/logs/../shell?service=api",
    "path-encoded": "/v1/%73hell?service=api",
    "double-service": "/v1/logs?service=nope&service=api",
}


@pytest.mark.parametrize("trick", sorted(TRICKS))
def test_names_with_path_tricks_and_control_characters_get_nowhere(
        trick: str, gateway: RunningGateway, deployer_token: str, secrets: list[str],
        gateway_log: pytest.LogCaptureFixture) -> None:
    answer = raw_request(gateway.port, upgrade_head(TRICKS[trick], deployer_token))
    assert answer.status in (400, 404), answer.raw[:300]
    head, _, body = answer.raw.partition(b"\r\n\r\n")
    assert b"x-injected" not in head.lower()
    for byte in (b"\x1b", b"\x00", b"\x07"):
        assert byte not in answer.raw
    assert b"/etc/passwd" not in body or b"no service" in body  # echoed only as a name, if at all
    assert LONG.encode() not in answer.raw
    assert_secret_free(secrets, answer.raw, gateway_log.text)
    assert_still_serves(gateway, deployer_token)


# --- oversized and malformed handshakes -----------------------------------------------------------


@pytest.mark.parametrize("extra", [
    pytest.param(("X-Pad: " + "a" * 65536,), id="one-64KiB-header"),
    pytest.param(tuple(f"X-Many-{i}: {i}" for i in range(300)), id="300-headers"),
    pytest.param(("Authorization: Bearer " + "e" * 70000,), id="64KiB-authorization"),
])
def test_oversized_headers_are_refused_without_an_upgrade(
        extra: tuple[str, ...], gateway: RunningGateway, deployer_token: str,
        secrets: list[str], gateway_log: pytest.LogCaptureFixture) -> None:
    answer = raw_request(gateway.port, upgrade_head("/v1/logs?service=api", deployer_token,
                                                    *extra), wait_close=True)
    assert answer.status != 101
    assert answer.status in (0, 400, 413, 431), answer.raw[:300]
    assert answer.closed_after < 3.0  # refused and closed, not left open
    assert_secret_free(secrets, answer.raw, gateway_log.text)
    assert_still_serves(gateway, deployer_token)


def test_slowloris_handshake_is_closed_after_open_timeout(
        make_gateway: Callable[..., RunningGateway]) -> None:
    gw = make_gateway(open_timeout=1.0)
    token = gw.mint_token("Viewer", sub="slow")
    head = upgrade_head("/v1/logs?service=api", token)
    started = time.monotonic()
    closed_after: float | None = None
    got = b""
    with socket.create_connection(("127.0.0.1", gw.port), timeout=5) as sock:
        sock.settimeout(0.2)
        for i, byte in enumerate(head[:-4]):  # never the final blank line
            if time.monotonic() - started > 6:
                break
            try:
                sock.send(bytes([byte]))
            except (BrokenPipeError, ConnectionResetError):
                closed_after = time.monotonic() - started
                break
            if i % 10 == 0:
                try:
                    chunk = sock.recv(4096)
                except TimeoutError:
                    continue
                except ConnectionResetError:
                    chunk = b""
                got += chunk
                if not chunk:
                    closed_after = time.monotonic() - started
                    break
        # meanwhile, everyone else is served
    assert closed_after is not None, "the trickled handshake was never closed"
    assert 0.8 < closed_after < 3.0
    assert b" 101 " not in got
    assert_still_serves(gw, gw.mint_token("Viewer", sub="other"))


# --- a flood of handshakes ------------------------------------------------------------------------


def test_handshake_flood_is_rate_limited_for_that_credential_only(
        make_gateway: Callable[..., RunningGateway],
        gateway_log: pytest.LogCaptureFixture) -> None:
    gw = make_gateway(rate_limit=RateLimit(rate=2.0, burst=6))
    flooder = gw.mint_token("Viewer", sub="flooder")
    other = gw.mint_token("Viewer", sub="bystander")
    statuses: list[int] = []
    retry_after: list[str] = []
    lock = threading.Lock()

    def flood() -> None:
        for _ in range(50):
            answer = raw_request(gw.port, upgrade_head("/v1/logs?service=api&follow=0",
                                                       flooder), timeout=3)
            head = answer.raw.partition(b"\r\n\r\n")[0].decode("latin-1").lower()
            with lock:
                statuses.append(answer.status)
                if answer.status == 429:
                    retry_after.extend(line.split(":", 1)[1].strip()
                                       for line in head.split("\r\n")
                                       if line.startswith("retry-after:"))

    threads = [threading.Thread(target=flood) for _ in range(4)]
    for thread in threads:
        thread.start()
    time.sleep(0.05)
    latencies = []
    try:
        for _ in range(5):  # within the bystander's own burst
            started = time.monotonic()
            ws = dial(gw.url, "/v1/logs", other, service="api", tail=0)
            latencies.append(time.monotonic() - started)
            ws.close()
            time.sleep(0.1)
    finally:
        for thread in threads:
            thread.join(20)
    assert len(statuses) == 200
    admitted = statuses.count(101)
    assert admitted <= 6 + 2 * 8  # the burst, and what the rate refilled meanwhile (< 8 s)
    assert statuses.count(429) == len(statuses) - admitted
    assert set(statuses) <= {101, 429}
    assert retry_after and all(int(value) >= 1 for value in retry_after)
    assert max(latencies) < 0.5, latencies  # the bystander was never slowed down
    assert statistics.median(latencies) < 0.2
    assert_secret_free([flooder, other], gateway_log.text)
    assert_still_serves(gw, other)


def test_no_refusal_carries_a_secret_in_headers_or_body(
        gateway: RunningGateway, secrets: list[str],
        gateway_log: pytest.LogCaptureFixture) -> None:
    expired = gateway.mint_token("Admin", ttl=-1, sub="old")
    api = gateway.create_api_token("Viewer", "headers")
    for token, target in ((expired, "/v1/shell?service=api"),
                          (api, "/v1/shell?service=api"),
                          (api, "/v1/port-forward?service=api&port=1"),
                          ("tth_" + "Q" * 43, "/v1/logs?service=api"),
                          (secrets[0] + "x", "/v1/logs?service=api")):
        answer = raw_request(gateway.port, upgrade_head(target, token))
        assert answer.status in (401, 403), answer.raw[:200]
        assert_secret_free([*secrets, expired, api, "Q" * 43], answer.raw)
    assert "refused" in gateway_log.text
    assert_secret_free([*secrets, expired, api, "Q" * 43], gateway_log.text)
