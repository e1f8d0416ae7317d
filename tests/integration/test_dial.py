"""dial() and Connection against real sockets on loopback: a hostile server, TLS, a proxy."""

from __future__ import annotations

import json
import logging
import re
import socket
import ssl
import threading
import time
import uuid
from email.utils import formatdate
from typing import Any

import pytest
import trustme

from tests.hostile import (
    ConnectProxy,
    HostileServer,
    Peer,
    close,
    drop,
    echo,
    mute,
    pause,
    problem,
    respond,
    send,
    short_body,
    stay_silent,
    trickle,
    upgrade_then,
)
from tether.client.credential import StaticCredential
from tether.client.dial import OPCODE_BINARY, OPCODE_TEXT, Closed, DialOptions, dial, request_url
from tether.errors import Code, Phase, TetherError

TOKEN = "tth_secret-token-value"
FAST = DialOptions(connect_timeout=2.0, keepalive_interval=0, keepalive_timeout=0)


def go(server: HostileServer | str, command: str = "shell", options: DialOptions = FAST,
       **params: Any) -> Any:
    url = server if isinstance(server, str) else server.url
    return dial(url, command, {"service": "api", **params}, StaticCredential(TOKEN), options)


def refused(server: HostileServer | str, **kwargs: Any) -> Any:
    with pytest.raises(TetherError) as info:
        go(server, **kwargs)
    failure = info.value.failure
    assert TOKEN not in str(failure.as_dict())
    return failure


def eventually(predicate: Any, timeout: float = 3.0) -> Any:
    """Poll ``predicate`` (bounded) until it is truthy; its last value."""
    end = time.monotonic() + timeout
    while not (value := predicate()) and time.monotonic() < end:
        time.sleep(0.01)
    return value


def expect(failure: Any, code: Code, phase: Phase, retryable: bool, exit_code: int,
           **fields: Any) -> None:
    seen = (failure.code, failure.phase, failure.retryable, failure.exit_code)
    assert seen == (code, phase, retryable, exit_code), failure
    for name, value in fields.items():
        assert getattr(failure, name) == value, (name, failure)



# --- the request ---------------------------------------------------------------------------


def test_request_url_forms() -> None:
    url = request_url("https://gw.example:8443/base/", "/v1/shell",
                      {"service": "api", "instance": None, "command": ["ls", "-l"], "tty": 1})
    assert url == "wss://gw.example:8443/base/v1/shell?service=api&command=ls&command=-l&tty=1"
    assert request_url("http://u:p@h", "/v1/logs", {"service": "a b"}) == \
        "ws://h/v1/logs?service=a+b"
    for bad in ("ftp://h", "https://", "http://h:99999", "nonsense"):
        with pytest.raises(TetherError) as info:
            request_url(bad, "/v1/shell", {})
        assert (info.value.failure.code, info.value.failure.exit_code) == (Code.INVALID_URL, 78)


def test_upgrade_sends_headers_and_exchanges_messages(server_of: Any) -> None:
    server = server_of(upgrade_then(echo()))
    params = {"service": "api", "instance": "api-1", "command": ["ls", "-l"], "tty": "1"}
    with dial(server.url, "shell", params, StaticCredential(TOKEN), FAST) as conn:
        assert conn.subprotocol == "tether.v1"
        conn.send_text('{"type":"resize","cols":80,"rows":24}')
        conn.send_binary(b"\x00ls\n" * 1000)
        assert conn.recv() == (OPCODE_TEXT, b'{"type":"resize","cols":80,"rows":24}')
        message = conn.recv()
        assert message is not None
        assert message.opcode == OPCODE_BINARY and message.data == b"\x00ls\n" * 1000
    request = server.requests[0]
    assert request.path == "/v1/shell"
    assert request.query == {"service": ["api"], "instance": ["api-1"], "command": ["ls", "-l"],
                             "tty": ["1"]}
    assert request.headers["authorization"] == f"Bearer {TOKEN}"
    assert uuid.UUID(request.headers["x-request-id"]).version == 4
    assert conn.request_id == request.headers["x-request-id"]
    assert re.fullmatch(r"tether/\S+ \(python 3\.\d+; \w+\)", request.headers["user-agent"])
    assert request.headers["sec-websocket-protocol"] == "tether.v1"
    assert eventually(lambda: server.peers[0].received[-1:] == [(0x8, b"\x03\xe8")])  # 1000
    assert conn.closed
    with pytest.raises(Closed):
        conn.send_text("late")


def test_fresh_request_id_per_dial(server_of: Any) -> None:
    server = server_of(upgrade_then(echo()))
    for _ in range(2):
        go(server).close()
    ids = {r.headers["x-request-id"] for r in server.requests}
    assert len(ids) == 2


def test_port_forward_offers_binary_and_accepts_no_subprotocol(server_of: Any) -> None:
    server = server_of(upgrade_then(echo(), subprotocol=None))
    with go(server, command="port-forward", port=5432) as conn:
        assert conn.subprotocol is None
        conn.send_binary(b"raw tcp bytes")
        assert conn.recv() == (OPCODE_BINARY, b"raw tcp bytes")
    assert server.requests[0].headers["sec-websocket-protocol"] == "tether.v1,binary"
    assert server.requests[0].query["port"] == ["5432"]


def test_unoffered_subprotocol_or_bad_accept_is_a_protocol_error(server_of: Any) -> None:
    failure = refused(server_of(upgrade_then(stay_silent(), subprotocol="chat")))
    expect(failure, Code.PROTOCOL_ERROR, Phase.HANDSHAKE, False, 65, http_status=101)
    failure = refused(server_of(upgrade_then(stay_silent(), accept="bm9wZQ==")))
    expect(failure, Code.PROTOCOL_ERROR, Phase.HANDSHAKE, False, 65, http_status=101)


# --- refusals ------------------------------------------------------------------------------

HTTP_DATE_LATER = "an HTTP-date 30 s from when the test runs"

REFUSALS = [
    (problem(400, "invalid-request", "missing parameter service"),
     Code.INVALID_REQUEST, False, 64, 400),
    (problem(401, "unauthorized", "bad signature",
             www_authenticate='Bearer error="invalid_token"'), Code.UNAUTHORIZED, False, 77, 401),
    (problem(404, "not-found", "no service api"), Code.NOT_FOUND, False, 69, 404),
    (problem(429, "rate-limited", "slow down", retry_after="2"), Code.RATE_LIMITED, True, 75, 429),
    (problem(500, "gateway-error", "oops"), Code.GATEWAY_ERROR, True, 69, 500),
    (problem(502, "backend-unavailable", "cluster down"),
     Code.BACKEND_UNAVAILABLE, True, 69, 502),
    (problem(503, "gateway-unavailable", "maintenance"),
     Code.GATEWAY_UNAVAILABLE, True, 69, 503),
    # not the gateway's problem+json: something in between answered (issue 15)
    (respond(504, [("Content-Type", "text/plain")], b"upstream timed out"),
     Code.GATEWAY_UNREACHABLE, True, 69, 504),
    (respond(200, [("Content-Type", "text/html")], b"<html><title>Welcome</title></html>"),
     Code.PROTOCOL_ERROR, False, 65, 200),
    (respond(301, [("Location", "https://login.example/sso")], b""),
     Code.UNEXPECTED_STATUS, False, 69, 301),
]


@pytest.mark.parametrize(("behaviour", "code", "retryable", "exit_code", "status"), REFUSALS)
def test_refusal_is_classified_with_its_status(server_of: Any, behaviour: Any, code: Code,
                                              retryable: bool, exit_code: int,
                                              status: int) -> None:
    server = server_of(behaviour)
    failure = refused(server)
    expect(failure, code, Phase.HANDSHAKE, retryable, exit_code, http_status=status,
           request_id=server.requests[0].headers["x-request-id"])
    assert server.dials == 1


def test_403_names_the_required_role(server_of: Any) -> None:
    server = server_of(problem(403, "permission-denied", "role Viewer cannot open a shell",
                               required_role="Deployer"))
    failure = refused(server)
    expect(failure, Code.PERMISSION_DENIED, Phase.HANDSHAKE, False, 77, http_status=403,
           required_role="Deployer")
    assert "Deployer" in failure.message


@pytest.mark.parametrize("retry_after", ["2", HTTP_DATE_LATER])
def test_429_keeps_retry_after(server_of: Any, retry_after: str) -> None:
    seconds = 2 if retry_after == "2" else 25
    if retry_after == HTTP_DATE_LATER:
        retry_after = formatdate(time.time() + 30, usegmt=True)
    failure = refused(server_of(respond(429, [("Retry-After", retry_after)])))
    expect(failure, Code.RATE_LIMITED, Phase.HANDSHAKE, True, 75, http_status=429)
    assert failure.retry_after is not None
    assert failure.retry_after >= seconds


@pytest.mark.parametrize("then", ["hang", "close"])
def test_body_shorter_than_content_length_keeps_the_status(server_of: Any, then: str) -> None:
    body = json.dumps({"code": "permission-denied", "required_role": "Admin"}).encode()
    server = server_of(short_body(403, 100_000, body, then=then))
    started = time.monotonic()
    failure = refused(server, options=DialOptions(connect_timeout=10.0))
    assert time.monotonic() - started < 2.5  # a short grace, not the 10 s deadline
    expect(failure, Code.PERMISSION_DENIED, Phase.HANDSHAKE, False, 77, http_status=403)


def test_huge_body_is_read_only_up_to_64_kib(server_of: Any) -> None:
    big = b"x" * (4 * 1024 * 1024)
    server = server_of(respond(500, [("Content-Type", "text/plain")], big))
    failure = refused(server)
    expect(failure, Code.GATEWAY_ERROR, Phase.HANDSHAKE, True, 69, http_status=500)
    assert len(failure.message) < 2000


def test_garbage_answer_is_a_protocol_error(server_of: Any) -> None:
    def garbage(peer: Peer) -> None:
        peer.read_request()
        peer.send(b"SSH-2.0-OpenSSH_9.6\r\n\r\n")
        peer.wait(1)
    failure = refused(server_of(garbage))
    expect(failure, Code.PROTOCOL_ERROR, Phase.HANDSHAKE, False, 65)


# --- connect failures ----------------------------------------------------------------------


def test_accepts_and_never_answers_is_a_connect_timeout(server_of: Any) -> None:
    server = server_of(mute())
    started = time.monotonic()
    failure = refused(server, options=DialOptions(connect_timeout=0.4))
    elapsed = time.monotonic() - started
    assert 0.35 <= elapsed < 1.2
    expect(failure, Code.CONNECT_TIMEOUT, Phase.CONNECT, True, 69)


def test_one_deadline_covers_the_whole_handshake(server_of: Any) -> None:
    # One byte every 0.1 s: each read succeeds, but the dial as a whole must stop at 0.5 s.
    server = server_of(trickle(b"HTTP/1.1 101 Switching Protocols\r\n" * 5, 0.1))
    started = time.monotonic()
    failure = refused(server, options=DialOptions(connect_timeout=0.5))
    assert time.monotonic() - started < 1.2
    expect(failure, Code.CONNECT_TIMEOUT, Phase.CONNECT, True, 69)


def test_nothing_listening_is_connection_refused() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    failure = refused(f"http://127.0.0.1:{port}")
    expect(failure, Code.CONNECTION_REFUSED, Phase.CONNECT, True, 69)


def test_invalid_host_is_a_dns_failure() -> None:
    failure = refused("https://gateway.tether.invalid")
    expect(failure, Code.DNS_FAILURE, Phase.CONNECT, True, 69)


# --- TLS ----------------------------------------------------------------------------------------


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(server_of: Any, ca: trustme.CA, name: str, *behaviours: Any) -> HostileServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert(name).configure_cert(context)
    server: HostileServer = server_of(*behaviours, tls=context)
    return server


def test_untrusted_certificate_is_a_tls_error(server_of: Any, ca: trustme.CA) -> None:
    server = tls_server(server_of, ca, "127.0.0.1", upgrade_then(echo()))
    failure = refused(server)
    expect(failure, Code.TLS_ERROR, Phase.CONNECT, False, 78)


def test_wrong_host_name_is_a_tls_error(server_of: Any, ca: trustme.CA, tmp_path: Any) -> None:
    server = tls_server(server_of, ca, "other.example", upgrade_then(echo()))
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    failure = refused(server, options=DialOptions(connect_timeout=2,
                                                  ca_cert=str(tmp_path / "ca.pem")))
    expect(failure, Code.TLS_ERROR, Phase.CONNECT, False, 78)


def test_ca_cert_option_and_ssl_cert_file(server_of: Any, ca: trustme.CA, tmp_path: Any,
                                          monkeypatch: pytest.MonkeyPatch) -> None:
    server = tls_server(server_of, ca, "127.0.0.1", upgrade_then(echo()))
    pem = tmp_path / "ca.pem"
    ca.cert_pem.write_to_path(str(pem))
    with go(server, options=DialOptions(ca_cert=str(pem), keepalive_interval=0)) as conn:
        conn.send_text("hi")
        assert conn.recv() == (OPCODE_TEXT, b"hi")
    monkeypatch.setenv("SSL_CERT_FILE", str(pem))
    with go(server) as conn:
        conn.send_text("again")
        assert conn.recv() == (OPCODE_TEXT, b"again")


def test_insecure_connects_and_warns_every_time(server_of: Any, ca: trustme.CA) -> None:
    server = tls_server(server_of, ca, "other.example", upgrade_then(echo()))
    warnings: list[str] = []
    options = DialOptions(insecure=True, keepalive_interval=0)
    for _ in range(2):
        conn = dial(server.url, "logs", {"service": "api"}, StaticCredential(TOKEN), options,
                    warn=warnings.append)
        conn.close()
    assert len(warnings) == 2
    assert "verification is disabled" in warnings[0]
    assert TOKEN not in warnings[0]


def test_insecure_warns_on_the_client_logger_without_warn(server_of: Any, ca: trustme.CA,
                                                          caplog: pytest.LogCaptureFixture) -> None:
    server = tls_server(server_of, ca, "other.example", upgrade_then(echo()))
    caplog.set_level(logging.WARNING, logger="tether.client")
    go(server, options=DialOptions(insecure=True, keepalive_interval=0)).close()
    assert [r.name for r in caplog.records] == ["tether.client"]
    assert "verification is disabled" in caplog.records[0].getMessage()


# --- proxies ----------------------------------------------------------------------------------


@pytest.fixture
def no_proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                 "NO_PROXY", "all_proxy", "ALL_PROXY"):
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


@pytest.mark.parametrize("variable", ["HTTP_PROXY", "http_proxy"])
def test_proxy_from_environment_is_used(server_of: Any, no_proxy_env: pytest.MonkeyPatch,
                                        variable: str) -> None:
    server = server_of(upgrade_then(echo()))
    with ConnectProxy(route_to=server.port) as proxy:
        no_proxy_env.setenv(variable, proxy.url)
        with go(f"http://gateway.tether.test:{server.port}") as conn:
            conn.send_text("via proxy")
            assert conn.recv() == (OPCODE_TEXT, b"via proxy")
        assert proxy.targets == [f"gateway.tether.test:{server.port}"]


def test_no_proxy_and_loopback_bypass_the_proxy(server_of: Any,
                                                no_proxy_env: pytest.MonkeyPatch) -> None:
    server = server_of(upgrade_then(echo()))
    with ConnectProxy(route_to=server.port) as proxy:
        no_proxy_env.setenv("HTTP_PROXY", proxy.url)
        no_proxy_env.setenv("NO_PROXY", "example.org,.tether.test")
        failure = refused("http://gateway.tether.test:1")  # direct: the name does not resolve
        expect(failure, Code.DNS_FAILURE, Phase.CONNECT, True, 69)
        go(server).close()  # 127.0.0.1 never goes through a proxy
        go(f"http://localhost:{server.port}").close()
        assert proxy.uses == 0


def test_proxy_refusal_is_a_proxy_error(no_proxy_env: pytest.MonkeyPatch) -> None:
    with ConnectProxy(refuse=407) as proxy:
        no_proxy_env.setenv("HTTPS_PROXY", proxy.url)
        failure = refused("https://gateway.tether.test")
        expect(failure, Code.PROXY_ERROR, Phase.CONNECT, False, 78, http_status=407)
        assert proxy.uses == 1


# --- closes and the session ---------------------------------------------------------------------

AGENT_PHRASES = ["agent-timeout: timeout", "exceeded for receiving agent response",
                 "timeout while connecting to pod", "timeout while setting up port forward",
                 "Retry budget exhausted"]

CLOSES = [
    (1001, "", Code.GATEWAY_RESTARTING, True, 69),
    (1007, "permission-denied: role revoked", Code.PERMISSION_DENIED, False, 77),
    (1008, "token-expired: token expired", Code.TOKEN_EXPIRED, False, 77),
    (1008, "", Code.UNAUTHORIZED, False, 77),
    (1009, "", Code.MESSAGE_TOO_BIG, False, 65),
    (1011, "", Code.BACKEND_UNAVAILABLE, True, 69),
    *[(1011, phrase, Code.AGENT_TIMEOUT, True, 69) for phrase in AGENT_PHRASES],
    (1012, "", Code.GATEWAY_RESTARTING, True, 69),
    (1013, "", Code.OVERLOADED, True, 75),
    (4403, "role Viewer", Code.PERMISSION_DENIED, False, 77),
    (4429, "", Code.RATE_LIMITED, True, 75),
]


@pytest.mark.parametrize(("close_code", "reason", "code", "retryable", "exit_code"), CLOSES)
def test_close_is_classified(server_of: Any, close_code: int, reason: str, code: Code,
                             retryable: bool, exit_code: int) -> None:
    server = server_of(upgrade_then(send(0x2, b"\x01hello"), close(close_code, reason)))
    conn = go(server)
    assert conn.recv() == (OPCODE_BINARY, b"\x01hello")
    with pytest.raises(TetherError) as info:
        conn.recv()
    expect(info.value.failure, code, Phase.SESSION, retryable, exit_code,
           close_code=close_code, request_id=conn.request_id)
    assert conn.close_code == close_code
    # the close frame was answered with the same code
    assert eventually(lambda: server.peers[0].received)
    assert server.peers[0].received[0] == (0x8, close_code.to_bytes(2, "big"))
    with pytest.raises(TetherError):
        conn.recv()


def test_normal_close_ends_recv_with_none(server_of: Any) -> None:
    server = server_of(upgrade_then(send(0x1, b'{"type":"exit","code":0}'), close(1000, "")))
    conn = go(server)
    assert conn.recv() == (OPCODE_TEXT, b'{"type":"exit","code":0}')
    assert conn.recv() is None
    assert conn.recv() is None
    assert (conn.close_code, conn.closed) == (1000, True)
    with pytest.raises(Closed) as info:
        conn.send_binary(b"x")
    assert info.value.code == 1000


def test_drop_without_close_frame_is_connection_lost(server_of: Any) -> None:
    conn = go(server_of(upgrade_then(drop())))
    with pytest.raises(TetherError) as info:
        conn.recv()
    expect(info.value.failure, Code.CONNECTION_LOST, Phase.SESSION, True, 69, close_code=None)


def test_silent_peer_is_a_keepalive_timeout(server_of: Any) -> None:
    server = server_of(upgrade_then(stay_silent()))
    options = DialOptions(connect_timeout=2, keepalive_interval=0.05, keepalive_timeout=0.3)
    conn = go(server, options=options)
    started = time.monotonic()
    with pytest.raises(TetherError) as info:
        conn.recv()
    assert 0.25 <= time.monotonic() - started < 1.0
    expect(info.value.failure, Code.KEEPALIVE_TIMEOUT, Phase.SESSION, True, 69)


def test_pongs_keep_a_quiet_connection_alive(server_of: Any) -> None:
    server = server_of(upgrade_then(echo()))
    options = DialOptions(keepalive_interval=0.05, keepalive_timeout=0.3)
    conn = go(server, options=options)
    result: list[Any] = []
    reader = threading.Thread(target=lambda: result.append(conn.recv()), daemon=True)
    reader.start()
    reader.join(0.8)
    assert reader.is_alive() and not conn.closed  # 0.8 s with no data, alive thanks to pongs
    conn.close()
    reader.join(2)
    assert result == [None]
    assert sum(1 for op, _ in server.peers[0].received if op == 0x9) >= 5


def test_connect_timeout_does_not_stay_on_the_socket(server_of: Any) -> None:
    server = server_of(upgrade_then(pause(0.6), send(0x1, b"late but fine"), echo()))
    conn = go(server, options=DialOptions(connect_timeout=0.2, keepalive_interval=0,
                                          keepalive_timeout=0))
    assert conn.recv() == (OPCODE_TEXT, b"late but fine")
    conn.close()


def test_fragmented_message_and_server_ping(server_of: Any) -> None:
    server = server_of(upgrade_then(send(0x1, b"he", fin=False), send(0x9, b"p"),
                                    send(0x0, b"ll", fin=False), send(0x0, b"o"),
                                    echo()))
    with go(server) as conn:
        assert conn.recv() == (OPCODE_TEXT, b"hello")
    assert eventually(lambda: server.peers[0].received)[0] == (0xA, b"p")


def test_message_over_the_limit_is_message_too_big(server_of: Any) -> None:
    server = server_of(upgrade_then(send(0x2, b"x" * 5000), stay_silent()))
    conn = go(server, options=DialOptions(max_message=4096, keepalive_interval=0))
    with pytest.raises(TetherError) as info:
        conn.recv()
    expect(info.value.failure, Code.MESSAGE_TOO_BIG, Phase.SESSION, False, 65)


def test_send_after_peer_close_reports_the_close_not_a_broken_pipe(server_of: Any) -> None:
    server = server_of(upgrade_then(close(1008, "token-expired: the token expired")))
    conn = go(server)
    time.sleep(1.3)  # the server has sent its close frame and dropped the connection
    with pytest.raises(TetherError) as info:
        for _ in range(100):
            conn.send_binary(b"\x00" + b"y" * 65536)
    expect(info.value.failure, Code.TOKEN_EXPIRED, Phase.SESSION, False, 77, close_code=1008)


def test_writer_and_reader_threads_share_a_connection(server_of: Any) -> None:
    server = server_of(upgrade_then(echo()))
    conn = go(server)
    count, size = 200, 2048
    errors: list[BaseException] = []

    def writer(tag: int) -> None:
        try:
            for i in range(count):
                conn.send_binary(bytes([tag]) * size + i.to_bytes(4, "big"))
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=writer, args=(t,), daemon=True) for t in (1, 2)]
    for t in threads:
        t.start()
    seen = {1: 0, 2: 0}
    for _ in range(2 * count):
        message = conn.recv()
        assert message is not None and len(message.data) == size + 4
        tag = message.data[0]
        assert message.data[:size] == bytes([tag]) * size  # frames never interleave
        assert int.from_bytes(message.data[size:], "big") == seen[tag]
        seen[tag] += 1
    for t in threads:
        t.join(5)
    conn.close()
    assert not errors and seen == {1: count, 2: count}
