"""The Supervisor over real dials on loopback; the injected clock and sleep are recorded."""

from __future__ import annotations

import os
import random
import signal
import socket
import threading
import time
from collections.abc import Iterator
from typing import Any

import pytest

from tests.fakeclock import Clock
from tests.hostile import (
    close,
    problem,
    respond,
    send,
    upgrade_then,
)
from tether.client.credential import StaticCredential
from tether.client.dial import Connection, DialOptions, dial
from tether.client.retry import RetryPolicy
from tether.client.supervisor import Attempt, NullReporter, Supervisor
from tether.errors import Code, Failure, Interrupted, Phase, TetherError

OPTIONS = DialOptions(connect_timeout=2.0, keepalive_interval=0, keepalive_timeout=0)


class CountingJWT:
    """A refreshable credential that counts refreshes; its token changes on each one."""

    refreshable = True

    def __init__(self) -> None:
        self.refreshes = 0

    def authorization(self) -> str:
        return f"Bearer jwt-{self.refreshes}"

    def refresh(self) -> None:
        self.refreshes += 1

    def __repr__(self) -> str:
        return "CountingJWT(<redacted>)"



class Recorder(NullReporter):
    def __init__(self) -> None:
        self.events: list[tuple[Any, ...]] = []

    def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
        self.events.append(("retrying", failure.code, attempt, delay))

    def reconnected(self, attempt: int) -> None:
        self.events.append(("reconnected", attempt))

    def refreshing(self, failure: Failure) -> None:
        self.events.append(("refreshing", failure.code))


def read_all(conn: Connection, attempt: Attempt) -> list[bytes]:
    """A session handler: every message until the normal close."""
    out: list[bytes] = []
    for _ in range(1000):
        message = conn.recv()
        if message is None:
            return out
        out.append(message.data)
    raise AssertionError("too many messages")



def supervise(url: str, credential: Any, clock: Clock, reporter: Any = None,
              handler: Any = read_all, **policy: Any) -> Supervisor[Connection, Any]:
    def dial_once(attempt: Attempt) -> Connection:
        return dial(url, "logs", {"service": "api", "follow": "1"}, credential, OPTIONS)

    return Supervisor(dial_once, handler, credential=credential,
                      policy=RetryPolicy(rng=random.Random(3), **policy),
                      reporter=reporter or Recorder(), clock=clock, sleep=clock.sleep)


def gives_up(supervisor: Supervisor[Connection, Any]) -> Failure:
    with pytest.raises(TetherError) as info:
        supervisor.run()
    return info.value.failure


def test_401_refreshable_is_refreshed_once_then_connects(server_of: Any) -> None:
    server = server_of(problem(401, "token-expired", "expired"),
                       upgrade_then(send(0x1, b"line"), close(1000)))
    jwt, clock, reporter = CountingJWT(), Clock(), Recorder()
    result = supervise(server.url, jwt, clock, reporter).run()
    assert result == [b"line"]
    assert (server.dials, jwt.refreshes, clock.sleeps) == (2, 1, [])
    tokens = [r.headers["authorization"] for r in server.requests]
    assert tokens == ["Bearer jwt-0", "Bearer jwt-1"]
    assert reporter.events == [("refreshing", Code.TOKEN_EXPIRED), ("reconnected", 2)]


class FlakyRefreshJWT(CountingJWT):
    """Its first refresh meets an unreachable token endpoint (a real refused connection)."""

    def refresh(self) -> None:
        if self.refreshes == 0 and not getattr(self, "failed", False):
            self.failed = True
            import socket

            from tether.classify import classify_exception

            with socket.socket() as probe:
                probe.bind(("127.0.0.1", 0))
                port = probe.getsockname()[1]
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
            except OSError as exc:
                raise TetherError(classify_exception(exc)) from exc
        super().refresh()


def test_refresh_that_cannot_reach_its_endpoint_waits_and_refreshes_later(
        server_of: Any) -> None:
    server = server_of(problem(401, "token-expired", "expired"),
                       problem(401, "token-expired", "expired"),
                       upgrade_then(send(0x1, b"line"), close(1000)))
    jwt, clock = FlakyRefreshJWT(), Clock()
    assert supervise(server.url, jwt, clock).run() == [b"line"]
    assert (server.dials, jwt.refreshes, len(clock.sleeps)) == (3, 1, 1)


def test_401_twice_gives_up_after_one_refresh(server_of: Any) -> None:
    server = server_of(problem(401, "unauthorized", "bad signature"))
    jwt, clock = CountingJWT(), Clock()
    failure = gives_up(supervise(server.url, jwt, clock))
    assert (failure.code, failure.phase, failure.retryable, failure.exit_code) == \
        (Code.UNAUTHORIZED, Phase.HANDSHAKE, False, 77)
    assert (failure.attempts, server.dials, jwt.refreshes, clock.sleeps) == (2, 2, 1, [])


def test_401_api_token_is_never_refreshed(server_of: Any) -> None:
    server = server_of(problem(401, "unauthorized", "revoked"))
    clock = Clock()
    failure = gives_up(supervise(server.url, StaticCredential("tth_x"), clock))
    assert (failure.code, failure.exit_code, failure.attempts) == (Code.UNAUTHORIZED, 77, 1)
    assert (server.dials, clock.sleeps) == (1, [])


def test_403_jwt_refreshes_once_and_keeps_the_role(server_of: Any) -> None:
    server = server_of(problem(403, "permission-denied", "role Viewer",
                               required_role="Deployer"))
    jwt, clock = CountingJWT(), Clock()
    failure = gives_up(supervise(server.url, jwt, clock))
    assert (failure.code, failure.http_status, failure.required_role, failure.exit_code) == \
        (Code.PERMISSION_DENIED, 403, "Deployer", 77)
    assert (server.dials, jwt.refreshes, clock.sleeps, failure.attempts) == (2, 1, [], 2)


@pytest.mark.parametrize(("behaviour", "code", "exit_code"), [
    (problem(400, "invalid-request", "bad tail"), Code.INVALID_REQUEST, 64),
    (problem(404, "not-found", "no such service"), Code.NOT_FOUND, 69),
    (respond(200, [("Content-Type", "text/html")], b"<html></html>"), Code.PROTOCOL_ERROR, 65),
    (upgrade_then(close(1009)), Code.MESSAGE_TOO_BIG, 65),
    (upgrade_then(close(1007, "permission-denied: revoked")), Code.PERMISSION_DENIED, 77),
])
def test_permanent_failure_is_one_dial_and_no_wait(server_of: Any, behaviour: Any, code: Code,
                                                   exit_code: int) -> None:
    server = server_of(behaviour)
    clock = Clock()
    started = time.monotonic()
    failure = gives_up(supervise(server.url, StaticCredential("tth_x"), clock))
    assert time.monotonic() - started < 1.5
    assert (failure.code, failure.retryable, failure.exit_code, failure.attempts) == \
        (code, False, exit_code, 1)
    assert (server.dials, clock.sleeps) == (1, [])


def test_transient_stream_respects_the_policy_and_the_budget(server_of: Any) -> None:
    server = server_of(problem(503, "gateway-unavailable", "maintenance"))
    clock, reporter = Clock(), Recorder()
    failure = gives_up(supervise(server.url, StaticCredential("tth_x"), clock, reporter,
                                 retry_for=40))
    assert (failure.code, failure.phase, failure.retryable, failure.exit_code) == \
        (Code.GATEWAY_UNAVAILABLE, Phase.HANDSHAKE, True, 69)
    assert failure.attempts == server.dials == len(clock.sleeps) + 1
    assert sum(clock.sleeps) <= 40
    for i, delay in enumerate(clock.sleeps):
        assert 0 <= delay <= min(30.0, 0.5 * 2**i)
    assert [e[2] for e in reporter.events] == list(range(1, len(clock.sleeps) + 1))


def test_429_waits_at_least_retry_after(server_of: Any) -> None:
    server = server_of(respond(429, [("Retry-After", "2")]),
                       respond(429, [("Retry-After", "3")]),
                       upgrade_then(send(0x1, b"ok"), close(1000)))
    clock = Clock()
    assert supervise(server.url, StaticCredential("tth_x"), clock).run() == [b"ok"]
    assert clock.sleeps[0] >= 2 and clock.sleeps[1] >= 3
    assert server.dials == 3


def test_connection_refused_stops_at_the_connect_budget() -> None:
    with socket.create_server(("127.0.0.1", 0)) as probe:
        port = probe.getsockname()[1]
    clock = Clock()
    failure = gives_up(supervise(f"http://127.0.0.1:{port}", StaticCredential("t"), clock,
                                 connect_budget=10))
    assert (failure.code, failure.phase, failure.exit_code) == \
        (Code.CONNECTION_REFUSED, Phase.CONNECT, 69)
    assert sum(clock.sleeps) <= 10 and failure.attempts == len(clock.sleeps) + 1 >= 3


def test_session_break_reconnects_and_tells_the_handler(server_of: Any) -> None:
    server = server_of(upgrade_then(send(0x1, b"one"), close(1011, "agent-timeout: slow")),
                       upgrade_then(send(0x1, b"two"), close(1000)))
    clock, reporter = Clock(), Recorder()
    seen: list[tuple[int, bool, bytes]] = []

    def handler(conn: Connection, attempt: Attempt) -> str:
        for _ in range(10):
            message = conn.recv()
            if message is None:
                return "done"
            seen.append((attempt.number, attempt.reconnect, message.data))
        return "too many"

    assert supervise(server.url, StaticCredential("t"), clock, reporter, handler).run() == "done"
    assert seen == [(1, False, b"one"), (2, True, b"two")]
    assert len(clock.sleeps) == 1 and clock.sleeps[0] <= 0.5
    assert reporter.events == [("retrying", Code.AGENT_TIMEOUT, 1, clock.sleeps[0]),
                               ("reconnected", 2)]


def test_target_unreachable_is_left_to_the_caller(server_of: Any) -> None:
    server = server_of(upgrade_then(close(1011, "target-unreachable: port 5432 refused")))
    clock = Clock()
    failure = gives_up(supervise(server.url, StaticCredential("t"), clock))
    assert (failure.code, failure.exit_code, server.dials, clock.sleeps) == \
        (Code.TARGET_UNREACHABLE, 69, 1, [])


def test_ctrl_c_while_waiting_is_interrupted_at_once(server_of: Any) -> None:
    server = server_of(problem(503, "gateway-unavailable", "busy", retry_after="30"))

    def ctrl_c(delay: float) -> None:
        raise KeyboardInterrupt

    supervisor = supervise(server.url, StaticCredential("t"), Clock())
    supervisor._sleep = ctrl_c
    with pytest.raises(Interrupted) as info:
        supervisor.run()
    assert (info.value.failure.code, info.value.failure.exit_code) == (Code.INTERRUPTED, 130)
    assert server.dials == 1


def test_real_sigint_during_the_default_wait(server_of: Any) -> None:
    server = server_of(problem(503, "gateway-unavailable", "busy", retry_after="20"))

    def dial_once(attempt: Attempt) -> Connection:
        return dial(server.url, "logs", {"service": "api"}, StaticCredential("t"), OPTIONS)

    supervisor: Supervisor[Connection, Any] = Supervisor(dial_once, read_all)
    timer = threading.Timer(0.3, os.kill, (os.getpid(), signal.SIGINT))
    started = time.monotonic()
    timer.start()
    try:
        with pytest.raises(Interrupted):
            supervisor.run()
    finally:
        timer.cancel()
    assert time.monotonic() - started < 1.5
    assert server.dials == 1


def test_cancel_stops_a_waiting_supervisor(server_of: Any) -> None:
    server = server_of(problem(503, "gateway-unavailable", "busy", retry_after="20"))

    def dial_once(attempt: Attempt) -> Connection:
        return dial(server.url, "logs", {"service": "api"}, StaticCredential("t"), OPTIONS)

    supervisor: Supervisor[Connection, Any] = Supervisor(dial_once, read_all)
    threading.Timer(0.2, supervisor.cancel).start()
    started = time.monotonic()
    with pytest.raises(Interrupted):
        supervisor.run()
    assert time.monotonic() - started < 1.5


# --- against the reference gateway ---------------------------------------------------------------


@pytest.fixture
def gw(tmp_path: Any) -> Iterator[Any]:
    from tether.gateway.config import GatewayConfig, ServiceConfig
    from tether.gateway.runner import start_in_thread

    running = start_in_thread(GatewayConfig(services={"api": ServiceConfig(name="api")}),
                              tmp_path)
    yield running
    running.stop()


class MintingJWT(CountingJWT):
    """A refreshable credential whose refresh gets a new token from the gateway."""

    def __init__(self, gateway: Any, first: str) -> None:
        super().__init__()
        self.gateway, self.token = gateway, first

    def authorization(self) -> str:
        return f"Bearer {self.token}"

    def refresh(self) -> None:
        super().refresh()
        self.token = self.gateway.mint_token("Deployer", ttl=60)


def shell_output(conn: Connection, attempt: Attempt) -> bytes:
    out = b""
    for _ in range(100):
        message = conn.recv()
        if message is None:
            return out
        if not message.is_text:
            out += message.data[1:]
    raise AssertionError("too many messages")


def shell_supervisor(gateway: Any, credential: Any, clock: Clock,
                     reporter: Any = None) -> Supervisor[Connection, bytes]:
    def dial_once(attempt: Attempt) -> Connection:
        return dial(gateway.url, "shell", {"service": "api", "tty": "0",
                                           "command": ["echo", "hello"]}, credential, OPTIONS)

    return Supervisor(dial_once, shell_output, credential=credential,
                      policy=RetryPolicy(rng=random.Random(5), retry_for=60),
                      reporter=reporter or Recorder(), clock=clock, sleep=clock.sleep)


def test_gateway_shell_runs_to_a_normal_close(gw: Any) -> None:
    clock = Clock()
    credential = StaticCredential(gw.create_api_token("Deployer"))
    assert shell_supervisor(gw, credential, clock).run() == b"hello\n"
    assert (gw.dial_count.get("/v1/shell"), clock.sleeps) == (1, [])


def test_gateway_expired_jwt_is_refreshed_once(gw: Any) -> None:
    jwt, clock = MintingJWT(gw, gw.mint_token("Deployer", ttl=-5)), Clock()
    assert shell_supervisor(gw, jwt, clock).run() == b"hello\n"
    assert (gw.dial_count.get("/v1/shell"), jwt.refreshes, clock.sleeps) == (2, 1, [])


def test_gateway_viewer_is_refused_with_the_role(gw: Any) -> None:
    clock = Clock()
    failure = gives_up(shell_supervisor(gw, StaticCredential(gw.mint_token("Viewer")), clock))
    assert (failure.code, failure.http_status, failure.required_role, failure.exit_code,
            failure.attempts) == (Code.PERMISSION_DENIED, 403, "Deployer", 77, 1)
    assert (gw.dial_count.get("/v1/shell"), clock.sleeps) == (1, [])


def test_gateway_503_then_recovery(gw: Any) -> None:
    gw.faults.refuse_status = 503

    class Healing(Recorder):
        def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
            super().retrying(failure, attempt, delay)
            if attempt == 2:
                gw.faults.refuse_status = None

    clock, reporter = Clock(), Healing()
    credential = StaticCredential(gw.create_api_token("Deployer"))
    assert shell_supervisor(gw, credential, clock, reporter).run() == b"hello\n"
    assert gw.dial_count.get("/v1/shell") == 3 and len(clock.sleeps) == 2
    assert [e[:3] for e in reporter.events] == [
        ("retrying", Code.GATEWAY_UNAVAILABLE, 1), ("retrying", Code.GATEWAY_UNAVAILABLE, 2),
        ("reconnected", 3)]
