"""tether.v2 from the client's side, in this process: the port-forward engine against a real
gateway through the suite's chaos proxy, cut at chosen byte offsets (in the middle of data,
of acks, and of a resume handshake); v1 fallback; the classifier's 4410 and 4416.

The CLI's own runs (shell in a real pty, the 64 MiB port-forward, the bound, JSON events)
are tests/e2e/test_resume_cli.py.
"""

from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from urllib.parse import urlencode

import pytest

from tests.chaos import DOWN, UP, ChaosProxy
from tests.cli import json_events
from tests.integration.test_port_forward import OPTIONS, exchange, forwarding, wait_for
from tests.secrets_guard import register_secret
from tests.servers import tcp_server
from tether.auth.credentials import EnvCredential
from tether.classify import classify_close
from tether.cli.options import Output, Settings
from tether.client.dial import dial
from tether.errors import Code
from tether.gateway.runner import RunningGateway
from tether.protocol import (
    SESSION_GONE_REASON,
    SUBPROTOCOL,
    SUBPROTOCOL_V2,
    Ack,
    SessionStarted,
    decode_control_v2,
    lost_bytes,
    resume_lost_reason,
)
from tether.session import resume

MIB = 1 << 20
KIB = 1024


#: How far one side's upload may run ahead of its download: the two directions of a
#: both-ways stream stay within this of each other, so a cut planned at an offset of one
#: direction falls inside it however the machine schedules the two (a busy one let the
#: upload finish while the download was half-way).
WINDOW = 4 * MIB


class Received:
    """Bytes received so far on one connection, for its sender to keep within WINDOW."""

    def __init__(self) -> None:
        self.count = 0
        self.ended = False
        self._changed = threading.Condition()

    def add(self, size: int) -> None:
        with self._changed:
            self.count += size
            self._changed.notify_all()

    def end(self) -> None:
        with self._changed:
            self.ended = True
            self._changed.notify_all()

    def reach(self, count: int, timeout: float) -> bool:
        """Wait until ``count`` bytes came (or reading ended); False after ``timeout``."""
        with self._changed:
            return self._changed.wait_for(lambda: self.count >= count or self.ended, timeout)


def sending(sock: socket.socket, data: bytes, received: Received) -> threading.Thread:
    """A started thread that writes ``data`` to ``sock`` in 256 KiB pieces, never more than
    WINDOW ahead of ``received``, then half-closes (a connection that breaks meanwhile, or
    a minute without progress, ends it quietly: the reader reports)."""

    def send() -> None:
        with contextlib.suppress(OSError):
            view = memoryview(data)
            for start in range(0, len(data), 256 * KIB):
                if not received.reach(start - WINDOW, timeout=60):
                    return
                sock.sendall(view[start:start + 256 * KIB])
            sock.shutdown(socket.SHUT_WR)

    thread = threading.Thread(target=send, daemon=True)
    thread.start()
    return thread


def receive_all(sock: socket.socket, received: Received) -> str:
    """Read ``sock`` to EOF, counting into ``received``: the SHA-256 of what came."""
    digest = hashlib.sha256()
    try:
        while chunk := sock.recv(256 * KIB):
            digest.update(chunk)
            received.add(len(chunk))
    finally:
        received.end()
    return digest.hexdigest()


def sink_and_source(total: int, seen: list[dict[str, object]]
                    ) -> Callable[[socket.socket], None]:
    """A target that reads everything (hashing it) while it writes ``total`` bytes of its own;
    one record in ``seen`` per connection (probes included)."""

    def handle(conn: socket.socket) -> None:
        conn.settimeout(60)
        data = os.urandom(total)
        got: dict[str, object] = {"sent_hash": hashlib.sha256(data).hexdigest()}
        seen.append(got)
        received = Received()
        writer = sending(conn, data, received)
        got["received_hash"] = receive_all(conn, received)
        got["received"] = received.count
        writer.join(60)

    return handle


def both_ways(port: int, total: int) -> tuple[str, str, int, bool]:
    """Send ``total`` random bytes to ``port`` while reading to EOF: (hash sent, hash
    received, bytes received, whether the local connection was reset)."""
    data = os.urandom(total)
    received, received_hash, reset = Received(), "", False
    with socket.create_connection(("127.0.0.1", port), timeout=60) as sock:
        sender = sending(sock, data, received)
        try:
            received_hash = receive_all(sock, received)
        except ConnectionResetError:
            reset = True
        sender.join(60)
    return hashlib.sha256(data).hexdigest(), received_hash, received.count, reset


@pytest.fixture
def chaos(gateway: RunningGateway) -> Iterator[ChaosProxy]:
    with ChaosProxy(gateway.port) as proxy:
        yield proxy


def handshake_sizes(proxy: ChaosProxy, token: str, port: int) -> tuple[int, int]:
    """Bytes of a resuming port-forward dial's upgrade request (without its resume message)
    and of its 101 answer, through ``proxy`` (to cut inside the next handshake)."""
    up, down = proxy.forwarded[UP], proxy.forwarded[DOWN]
    with dial(proxy.url, "port-forward", {"service": "api", "port": port},
              EnvCredential(proxy.url, token), OPTIONS, resumable=True) as conn:
        assert conn.subprotocol == SUBPROTOCOL_V2
        message = conn.recv()  # the session message
        assert message is not None and message.is_text
        started = decode_control_v2(message.data)
        assert isinstance(started, SessionStarted) and started.node
        resuming = len("&" + urlencode({"resume": "1", "node": started.node}))
        return (proxy.forwarded[UP] - up + resuming,
                proxy.forwarded[DOWN] - down - len(message.data) - 2)


def test_a_forwarded_connection_resumes_through_cuts_in_data_acks_and_the_handshake(
        make_gateway: Callable[..., RunningGateway], gateway_config: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    total, seen = 24 * MIB, []
    err = ""

    def count(event: str) -> int:
        nonlocal err
        err += capsys.readouterr().err
        return err.count(f'"event":"{event}"')

    with tcp_server(sink_and_source(total, seen)) as target:
        gw = make_gateway(services={"api": _service(gateway_config, target)})
        token = gw.mint_token("Deployer", sub="deployer")
        with ChaosProxy(gw.port) as proxy:
            request, answer = handshake_sizes(proxy, token, target)
            with forwarding(proxy.url, EnvCredential(proxy.url, token), target,
                            settings=Settings(retry_for=30.0, output=Output.JSON)) as running:
                result: list[tuple[str, str, int, bool]] = []
                client = threading.Thread(target=lambda: result.append(
                    both_ways(running.port, total)), daemon=True)
                client.start()
                proxy.arm(DOWN, 2 * MIB)  # in the middle of data (and of the gateway's acks)
                assert wait_for(lambda: count("resumed") >= 1, timeout=30), err
                proxy.arm(UP, 1 * MIB)  # in the middle of data and of the client's acks
                assert wait_for(lambda: count("resumed") >= 2, timeout=30), err
                # one cut, then the resume message of the next dial cut, then the answer
                # of the one after: all in one detachment
                proxy.arm(UP, request + 20, next_connection=1)
                proxy.arm(DOWN, answer + 12, next_connection=2)
                proxy.cut()
                assert wait_for(lambda: not proxy.armed(UP) and not proxy.armed(DOWN),
                                timeout=30), err
                assert wait_for(lambda: count("resumed") >= 3, timeout=30), err
                proxy.arm(DOWN, 2 * MIB)
                assert wait_for(lambda: count("resumed") >= 4, timeout=30), err
                client.join(90)
                assert not client.is_alive()
                [(sent_hash, received_hash, received, reset)] = result
                assert wait_for(lambda: any(one.get("received") == total for one in seen), 30)
                cuts = proxy.cuts
            assert not running.errors
    count("resumed")
    [got] = [one for one in seen if one.get("received") == total]
    assert not reset and received == total
    assert received_hash == got["sent_hash"] and got["received_hash"] == sent_hash
    assert cuts == 6
    events = json_events(err)
    assert not [e for e in events if e["event"] == "connection-failed"]
    detached = [e for e in events if e["event"] == "detached"]
    resumed = [e for e in events if e["event"] == "resumed"]
    assert len(detached) == len(resumed) == 4  # cuts in a resume handshake: one detachment
    assert all(e["sent"] >= e["unacknowledged"] >= 0 and e["received"] > 0 for e in detached)
    assert all(e["sent"] <= total and e["received"] <= total for e in resumed)


def _service(gateway_config: object, port: int) -> object:
    import dataclasses

    api = gateway_config.services["api"]  # type: ignore[attr-defined]
    return dataclasses.replace(api, ports=(port,))


def test_a_stalled_path_is_declared_dead_and_resumed_with_the_local_connection_open(
        gateway: RunningGateway, chaos: ChaosProxy, deployer_token: str,
        echo_server: int) -> None:
    options = dataclass_replace(OPTIONS, keepalive_interval=0.2, keepalive_timeout=1.0)
    credential = EnvCredential(chaos.url, deployer_token)
    with forwarding(chaos.url, credential, echo_server, options=options,
                    settings=Settings(retry_for=30.0)) as running, \
            socket.create_connection(("127.0.0.1", running.port), timeout=20) as sock:
        sock.sendall(b"one")
        assert sock.recv(10) == b"one"
        chaos.arm(UP, 10, "stall")
        sock.sendall(b"two" * 100)  # held by the stalled path, then resent
        time.sleep(1.5)  # past the keepalive timeout: the client detaches
        chaos.stall(False)
        chaos.cut()
        got = b""
        for _ in range(100):
            if len(got) >= 300:
                break
            got += sock.recv(1000)
        assert got == b"two" * 100
        assert not running.errors


def dataclass_replace(obj: object, **changes: object) -> object:
    import dataclasses

    return dataclasses.replace(obj, **changes)  # type: ignore[type-var]


def test_the_clients_replay_buffer_is_bounded_and_only_acks_free_it(
        gateway: RunningGateway, chaos: ChaosProxy, deployer_token: str,
        echo_server: int) -> None:
    limit = 64 * KIB
    with dial(chaos.url, "port-forward", {"service": "api", "port": echo_server},
              EnvCredential(chaos.url, deployer_token), OPTIONS, resumable=True) as conn:
        stream = resume.Resumable(conn, frame=lambda tag, data: data, limit=limit)
        first = conn.recv()
        assert first is not None
        started = decode_control_v2(first.data)
        assert isinstance(started, SessionStarted)
        stream.opened(started)
        chaos.stall(True)  # no ack can come back
        for _ in range(100):
            room = stream.room(0)
            if not room:
                break
            stream.send(os.urandom(min(room, 10_000)))
        assert (stream.out.size, stream.room(0.3)) == (limit, 0)  # full, and it stays full
        chaos.stall(False)
        echoed = 0
        for _ in range(1000):
            if not stream.out.size and echoed == limit:
                break
            message = conn.recv()
            assert message is not None
            if message.is_text:
                ack = decode_control_v2(message.data)
                assert isinstance(ack, Ack)
                stream.acked(conn, ack.received)
            else:
                echoed += len(message.data)
                stream.received(len(message.data))
        assert (stream.out.size, stream.room(0), echoed) == (0, limit, limit)
        stream.close()


def test_the_client_may_end_the_session_only_once_its_eof_and_every_byte_are_acknowledged(
        gateway: RunningGateway, chaos: ChaosProxy, deployer_token: str,
        echo_server: int) -> None:
    # closing 1000 ends a v2 session at once: bytes the gateway has not taken would be lost
    with dial(chaos.url, "port-forward", {"service": "api", "port": echo_server},
              EnvCredential(chaos.url, deployer_token), OPTIONS, resumable=True) as conn:
        stream = resume.Resumable(conn, frame=lambda tag, data: data)
        first = conn.recv()
        assert first is not None
        started = decode_control_v2(first.data)
        assert isinstance(started, SessionStarted)
        stream.opened(started)
        chaos.stall(True)  # no ack can come back
        stream.send(os.urandom(100 * KIB))
        assert not stream.delivered(conn)  # no eof yet
        stream.send_eof()
        assert not stream.delivered(conn)  # the gateway lacks bytes
        chaos.stall(False)
        for _ in range(1000):
            if not stream.out.size:
                break
            message = conn.recv()
            assert message is not None
            if message.is_text:
                control = decode_control_v2(message.data)
                if isinstance(control, Ack):
                    stream.acked(conn, control.received)
            else:
                stream.received(len(message.data))
        assert stream.delivered(conn)
        stream.detach(conn)
        assert not stream.delivered(conn)  # not attached: its eof is not on this connection
        stream.close()


_CLIENT_THREADS = ("tether-acks", "tether-forward-", "tether-upstream-", "tether-keepalive",
                   "tether-close-")


def _ack_threads() -> set[threading.Thread]:
    return {t for t in threading.enumerate() if t.name == "tether-acks" and t.is_alive()}


def test_closing_while_an_ack_waits_ends_the_ack_thread(
        gateway: RunningGateway, deployer_token: str, echo_server: int) -> None:
    before = _ack_threads()
    with dial(gateway.url, "port-forward", {"service": "api", "port": echo_server},
              EnvCredential(gateway.url, deployer_token), OPTIONS, resumable=True) as conn:
        stream = resume.Resumable(conn, frame=lambda tag, data: data)
        ours = _ack_threads() - before
        assert len(ours) == 1
        stream.received(1)  # an ack is due within ACK_INTERVAL: the thread waits for it
        time.sleep(0.03)
        stream.close()  # wakes it in the middle of that wait
        assert wait_for(lambda: not ours & _ack_threads())


def test_finished_forwarded_connections_leave_no_thread_behind(
        gateway: RunningGateway, deployer_token: str, echo_server: int) -> None:
    before = {t for t in threading.enumerate() if t.is_alive()}
    credential = EnvCredential(gateway.url, deployer_token)
    with forwarding(gateway.url, credential, echo_server) as running:
        for size in (1, 100 * KIB, 1, 2 * MIB, 1):
            payload = os.urandom(size)
            assert exchange(running.port, payload) == payload
        assert wait_for(lambda: running.forwarder.open_connections == 0)

        def leftovers() -> set[str]:  # the client's threads (the gateway's pool may grow)
            return {t.name for t in threading.enumerate()
                    if t.is_alive() and t not in before and t.name.startswith(_CLIENT_THREADS)}

        assert wait_for(lambda: not leftovers()), leftovers()
        assert not running.errors


class Minting(EnvCredential):
    """A refreshable credential whose refresh gets a new JWT from the gateway."""

    refreshable = True  # type: ignore[assignment]

    def __init__(self, gateway: RunningGateway) -> None:
        super().__init__(gateway.url, gateway.mint_token("Deployer", sub="deployer"))
        self.running, self.refreshes = gateway, 0

    def authorization(self) -> str:
        return f"Bearer {self._token}"

    def refresh(self) -> None:
        self.refreshes += 1
        self._token = self.running.mint_token("Deployer", sub="deployer")


def test_a_token_expired_mid_session_is_refreshed_once_and_the_session_resumed(
        gateway: RunningGateway, echo_server: int, capsys: pytest.CaptureFixture[str]) -> None:
    credential = Minting(gateway)
    with forwarding(gateway.url, credential, echo_server,
                    settings=Settings(retry_for=30.0, output=Output.JSON)) as running, \
            socket.create_connection(("127.0.0.1", running.port), timeout=20) as sock:
        sock.sendall(b"before")
        assert sock.recv(10) == b"before"
        gateway.faults.expire_after = 0.2  # 1008 token-expired: the session only detaches
        assert wait_for(lambda: credential.refreshes == 1, timeout=10)
        gateway.faults.expire_after = None
        sock.sendall(b"after")
        assert sock.recv(10) == b"after"
        assert not running.errors
    events = json_events(capsys.readouterr().err)
    assert [e["event"] for e in events] == ["detached", "refresh", "resumed"]
    assert events[0]["code"] == events[1]["code"] == "token-expired"


# --- v1 fallback ------------------------------------------------------------------------------


def test_a_gateway_without_resume_is_spoken_to_in_v1(
        make_gateway: Callable[..., RunningGateway], echo_server: int) -> None:
    plain = make_gateway(resume=False)
    token = plain.mint_token("Deployer")
    credential = EnvCredential(plain.url, token)
    with dial(plain.url, "port-forward", {"service": "api", "port": echo_server}, credential,
              OPTIONS, resumable=True) as conn:
        assert conn.subprotocol == SUBPROTOCOL
    payload = os.urandom(2 * MIB)
    with forwarding(plain.url, credential, echo_server) as running:
        assert exchange(running.port, payload) == payload
        assert not running.errors


def test_a_cut_without_v2_fails_the_connection_as_before(
        make_gateway: Callable[..., RunningGateway], echo_server: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    plain = make_gateway(resume=False)
    with ChaosProxy(plain.port) as proxy, \
            forwarding(proxy.url, EnvCredential(proxy.url, plain.mint_token("Deployer")),
                       echo_server) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as held:
            held.sendall(b"held")
            assert held.recv(10) == b"held"
            proxy.cut()
            with contextlib.suppress(ConnectionResetError):
                assert held.recv(10) == b""
        assert exchange(running.port, b"after") == b"after"
    assert "failed: connection-lost" in capsys.readouterr().err


# --- what the client reads from 4410 and 4416 -----------------------------------------------------


def test_4410_and_4416_are_read_as_their_catalog_codes() -> None:
    expired = classify_close(4410, SESSION_GONE_REASON, service="api", command="shell")
    assert (expired.code, expired.exit_code) == (Code.SESSION_EXPIRED, 69)
    assert "state is lost" in expired.message and not resume.resumable(expired)
    lost = classify_close(4416, resume_lost_reason(123_456), service="api", command="shell")
    assert (lost.code, lost.exit_code, lost.retry.value) == (Code.RESUME_LOST, 65, "no")
    assert "123,456 bytes" in lost.message and lost_bytes(lost.close_reason or "") == 123_456
    assert not resume.resumable(lost)


@pytest.mark.parametrize(("code", "reason", "resumes"), [
    (1001, "gateway-restarting: bye", True), (1012, "", True), (1013, "", True),
    (1011, "keepalive ping timeout", True), (1011, "backend-unavailable: gone", False),
    (1011, "target-unreachable: reset", False), (1008, "token-expired: expired", True),
    (1008, "unauthorized: revoked", False), (1002, "protocol-error: x", False),
    (1007, "permission-denied: no", False), (None, "", True),
])
def test_which_closes_are_cuts_to_resume_from(code: int | None, reason: str,
                                              resumes: bool) -> None:
    assert resume.resumable(classify_close(code, reason, command="shell")) is resumes


def test_the_session_id_stays_out_of_reprs_and_errors(
        gateway: RunningGateway, deployer_token: str, echo_server: int) -> None:
    credential = EnvCredential(gateway.url, deployer_token)
    with dial(gateway.url, "port-forward", {"service": "api", "port": echo_server}, credential,
              OPTIONS, resumable=True) as conn:
        stream = resume.Resumable(conn, frame=lambda tag, data: data)
        message = conn.recv()
        assert message is not None
        started = decode_control_v2(message.data)
        assert isinstance(started, SessionStarted)
        register_secret(started.id, "session id")  # the guard has it already (the gateway's)
        stream.opened(started)
        assert started.id not in repr(stream) and started.id not in repr(started)
        assert stream.resume_params() == {"resume": "1", "node": started.node}  # never the id
        stream.close()
