"""tether.v2 on the gateway: resume after a cut with exact bytes both ways, the replay
buffer's bound and backpressure, principal binding, and the grace period.

The client is the suite's own minimal v2 client (tests/v2_client.py), so the
gateway is checked against docs/protocol.md, not against tether's client. Cuts are
real resets from the suite's chaos proxy.
"""

from __future__ import annotations

import dataclasses
import logging
import os
import re
import secrets
import socket
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed

from tests.chaos import ChaosProxy
from tests.gateway_client import dial
from tests.servers import tcp_server
from tests.v2_client import KIB, V2_OFFER, V2Client, refused, wait_for, with_ignored_close
from tether.gateway.config import ConfigError, GatewayConfig, parse_config
from tether.gateway.runner import RunningGateway
from tether.protocol import (
    SESSION_GONE_REASON,
    SUBPROTOCOL,
    SUBPROTOCOL_V2,
    CloseCode,
    lost_bytes,
    parse_close_reason,
)


def snapshot(gateway: RunningGateway) -> list[dict[str, Any]]:
    async def take() -> list[dict[str, Any]]:
        return gateway.gateway.resumable.snapshot()
    return gateway.call(take())


def state_is(gateway: RunningGateway, *states: str) -> Callable[[], bool]:
    return lambda: [s["state"] for s in snapshot(gateway)] == list(states)


def pid_gone(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return True
    return False


@pytest.fixture
def proxy(gateway: RunningGateway) -> Iterator[ChaosProxy]:
    with ChaosProxy(gateway.port) as chaos:
        yield chaos


def shell(proxy_or_url: ChaosProxy | str, token: str, **params: Any) -> V2Client:
    base = proxy_or_url.url if isinstance(proxy_or_url, ChaosProxy) else proxy_or_url
    return V2Client(base, "/v1/shell", token, shell=True, service="api", **params)


def forward(proxy: ChaosProxy, token: str, port: int) -> V2Client:
    return V2Client(proxy.url, "/v1/port-forward", token, shell=False, service="api", port=port)


def shell_pid(client: V2Client) -> int:
    marker = secrets.token_hex(4)
    client.send(f"echo {marker}-$$-{marker}\n".encode())
    pattern = re.compile(marker.encode() + rb"-(\d+)-" + marker.encode())
    client.pump(lambda c: pattern.search(c.text()) is not None)
    match = pattern.findall(client.text())
    return int(match[-1])


# --- negotiation ------------------------------------------------------------------------


def test_v2_is_chosen_when_offered_and_v1_stays_as_it_was(
        gateway: RunningGateway, deployer_token: str, echo_server: int,
        make_gateway: Callable[..., RunningGateway]) -> None:
    client = V2Client(gateway.url, "/v1/shell", deployer_token, shell=True, service="api",
                      tty=0, command=["true"])
    assert re.fullmatch(r"[A-Za-z0-9_-]{32}", client.id)  # 192 random bits
    assert client.until_closed().code == 1000 and client.controls[-1] == {"type": "exit",
                                                                          "code": 0}
    v1 = dial(gateway.url, "/v1/shell", deployer_token, service="api", command=["true"])
    assert v1.subprotocol == SUBPROTOCOL
    v1.close()
    pf = dial(gateway.url, "/v1/port-forward", deployer_token,
              subprotocols=(SUBPROTOCOL_V2, SUBPROTOCOL, "binary"), service="api", port=echo_server)
    assert pf.subprotocol == SUBPROTOCOL_V2
    pf.close()
    logs = dial(gateway.url, "/v1/logs", deployer_token, subprotocols=V2_OFFER, service="api")
    assert logs.subprotocol == SUBPROTOCOL
    logs.close()
    plain = make_gateway(resume=False)
    old = dial(plain.url, "/v1/shell", plain.mint_token("Deployer"), subprotocols=V2_OFFER,
               service="api", command=["true"])
    assert old.subprotocol == SUBPROTOCOL  # the client falls back to v1
    old.close()


def test_a_resume_over_v1_is_refused_as_gone(gateway: RunningGateway,
                                             deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", resume=1)
    assert ws.subprotocol == SUBPROTOCOL
    with pytest.raises(ConnectionClosed) as info:
        ws.recv(timeout=5)
    assert info.value.rcvd is not None
    assert (info.value.rcvd.code, info.value.rcvd.reason) == (4410, SESSION_GONE_REASON)


# --- resume with exact bytes --------------------------------------------------------------


def test_port_forward_resumes_with_exact_bytes_both_ways(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str,
        echo_server: int) -> None:
    client = forward(proxy, deployer_token, echo_server)
    sent = bytearray()
    for round_ in range(3):
        first, lost = os.urandom(300 * KIB), os.urandom(100 * KIB)
        client.send(first)
        sent += first
        client.pump(lambda c, n=len(sent): len(c.received) >= n - 200 * KIB)
        proxy.stall(True)
        client.send(lost)  # held by the stalled proxy, then dropped by the cut
        sent += lost
        time.sleep(0.05)
        proxy.cut()
        proxy.stall(False)
        answer = client.resume()
        assert answer["received"] <= len(sent) - len(lost), round_
        client.pump(lambda c, n=len(sent): len(c.received) >= n)
    assert client.text() == bytes(sent)
    client.pump(lambda c: c.acks_from_gateway[-1:] == [len(sent)])  # the 100 ms ack
    assert client.acks_from_gateway == sorted(client.acks_from_gateway)
    client.send_control({"type": "eof"})
    gone = client.until_closed()
    assert gone.code == 1000 and client.controls[-1] == {"type": "eof"}
    assert client.text() == bytes(sent)
    wait_for(state_is(gateway), "the session to end")


def test_shell_resumes_the_same_shell_and_output_arrives_once(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str) -> None:
    client = shell(proxy, deployer_token, tty=1)
    pid = shell_pid(client)
    client.send(b"i=0; while [ $i -lt 400 ]; do i=$((i+1)); echo L$i; sleep 0.002; done\n")
    for _ in range(3):
        client.pump(lambda c, n=len(client.received) + 300: len(c.received) >= n)
        proxy.cut()
        client.resume()
    client.pump(lambda c: b"L400\r\n" in c.text())
    numbers = [int(n) for n in re.findall(rb"L(\d+)\r\n", client.text())]
    assert numbers == list(range(1, 401))
    assert shell_pid(client) == pid
    client.send(b"exit 7\n")
    assert client.until_closed().code == 1000
    assert client.controls[-1] == {"type": "exit", "code": 7}
    wait_for(lambda: pid_gone(pid), "the shell to be reaped")


def test_shell_stdin_resent_after_a_cut_reaches_the_process_once(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str) -> None:
    client = shell(proxy, deployer_token, tty=0, command=["cat"])
    data = os.urandom(200 * KIB)
    client.send(data[:100 * KIB])
    client.pump(lambda c: len(c.received) >= 50 * KIB)
    proxy.stall(True)
    client.send(data[100 * KIB:])
    time.sleep(0.05)
    proxy.cut()
    proxy.stall(False)
    answer = client.resume()
    assert answer["received"] <= 100 * KIB
    client.send_control({"type": "eof"})
    client.send_control({"type": "eof"})  # repeated after a resume: changes nothing
    assert client.until_closed().code == 1000
    assert client.text() == data
    assert client.controls[-1] == {"type": "exit", "code": 0}


def test_a_resume_cut_in_its_handshake_or_its_resend_resumes_again(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str) -> None:
    client = shell(proxy, deployer_token, tty=0, command=["cat"])
    data = os.urandom(256 * KIB)
    client.send(data[:64 * KIB])
    client.pump(lambda c: len(c.received) >= 32 * KIB)
    proxy.cut()
    with_ignored_close(client.ws)
    client.ws = client._dial(resume=1)
    client.send_control({"type": "resume", "id": client.id, "received": client.offset()})
    proxy.cut()  # before or after the gateway answered: the client never saw it
    client.resume()
    client.ack()
    client.send(data[64 * KIB:])
    proxy.cut()  # during the resend, with acks in flight
    client.resume()
    client.pump(lambda c: len(c.received) >= len(data))
    assert client.text() == data
    client.send_control({"type": "eof"})
    assert client.until_closed().code == 1000


def test_an_exit_while_detached_is_delivered_on_resume(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str, tmp_path: Path) -> None:
    go = tmp_path / "work" / "go-exit"
    client = shell(proxy, deployer_token, tty=0,
                   command=["sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; "
                                        "seq 1 5000; exit 3"])
    proxy.cut()
    wait_for(state_is(gateway, "detached"), "the session to detach")
    go.touch()
    wait_for(state_is(gateway, "done"), "the process to exit while detached")
    client.resume()
    assert client.until_closed().code == 1000
    assert client.text() == b"".join(b"%d\n" % i for i in range(1, 5001))
    assert client.controls[-1] == {"type": "exit", "code": 3}
    wait_for(state_is(gateway), "the session to be forgotten")


def test_a_resume_takes_over_a_connection_the_gateway_still_thinks_alive(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str) -> None:
    client = shell(proxy, deployer_token, tty=1)
    pid = shell_pid(client)
    proxy.stall(True)  # half-open: nothing moves, nobody closes
    client.send(b"echo before-$$\n")  # held in the stalled proxy
    assert [s["state"] for s in snapshot(gateway)] == ["attached"]
    client.resume(base=gateway.url)  # straight to the gateway
    client.pump(lambda c: f"before-{pid}".encode() in c.text())
    assert shell_pid(client) == pid
    proxy.stall(False)
    client.send(b"exit\n")
    assert client.until_closed().code == 1000


def test_an_expired_token_detaches_and_a_refreshed_one_resumes(
        gateway: RunningGateway, deployer_token: str) -> None:
    client = shell(gateway.url, deployer_token, tty=1)
    pid = shell_pid(client)
    gateway.faults.expire_after = 0.2
    gone = client.until_closed()
    assert gone.code == 1008 and parse_close_reason(gone.reason)[0] == "token-expired"
    gateway.faults.expire_after = None
    wait_for(state_is(gateway, "detached"), "the session to detach")
    client.resume(token=gateway.mint_token("Deployer", sub="deployer"))
    assert shell_pid(client) == pid
    client.send(b"exit\n")
    assert client.until_closed().code == 1000


def test_a_client_close_1000_ends_the_session(gateway: RunningGateway,
                                              deployer_token: str) -> None:
    client = shell(gateway.url, deployer_token, tty=1)
    pid = shell_pid(client)
    client.ws.close(1000)
    wait_for(lambda: pid_gone(pid), "the shell to be reaped")
    assert snapshot(gateway) == []
    assert refused(client).code == 4410


def test_a_client_close_1000_right_after_its_data_still_delivers_it_to_the_target(
        make_gateway: Callable[..., RunningGateway], gateway_config: GatewayConfig) -> None:
    # A slow target: the client's close 1000 (and the end of its TCP stream) comes while much
    # of its data still waits in the gateway, so an ack the gateway sends after the close
    # fails first. That must not drop what came before the close, nor the target's eof.
    total, got, done = 12 * 1024 * KIB, bytearray(), threading.Event()

    def slow_sink(conn: socket.socket) -> None:
        while chunk := conn.recv(64 * KIB):
            got.extend(chunk)
            time.sleep(0.01)
        done.set()

    with tcp_server(slow_sink) as target:
        api = dataclasses.replace(gateway_config.services["api"], ports=(target,))
        gateway = make_gateway(services={"api": api})
        client = V2Client(gateway.url, "/v1/port-forward", gateway.mint_token("Deployer"),
                          shell=False, service="api", port=target)
        data = os.urandom(total)

        def send_all_then_close() -> None:
            for start in range(0, total, 256 * KIB):
                client.send(data[start:start + 256 * KIB])
            client.send_control({"type": "eof"})
            # close 1000, then (like tether's client after its wait) the end of the TCP stream
            mask = os.urandom(4)
            payload = bytes(b ^ mask[i % 4] for i, b in enumerate(b"\x03\xe8"))
            client.ws.socket.sendall(b"\x88\x82" + mask + payload)
            client.ws.socket.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send_all_then_close, daemon=True)
        sender.start()
        assert done.wait(30), f"the target got {len(got)} bytes and no eof"
        sender.join(10)
        assert len(got) == total and bytes(got) == data
        wait_for(lambda: snapshot(gateway) == [], "the session to end")


# --- who may resume -------------------------------------------------------------------------


def test_someone_elses_session_id_is_refused_exactly_like_an_unknown_one(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str, echo_server: int) -> None:
    owner = shell(proxy, deployer_token, tty=1)
    pid = shell_pid(owner)
    proxy.cut()
    intruder_token = gateway.mint_token("Deployer", sub="mallory")
    intruder = refused(owner, token=intruder_token)
    unknown = refused(owner, session_id=secrets.token_urlsafe(24))
    api_token = gateway.create_api_token("Deployer", "robot")
    by_api_token = refused(owner, token=api_token)
    other_place = V2Client(gateway.url, "/v1/port-forward", deployer_token, shell=False,
                           service="api", port=echo_server)
    elsewhere = refused(other_place, session_id=owner.id)
    answers = {(g.code, g.reason) for g in (intruder, unknown, by_api_token, elsewhere)}
    assert answers == {(CloseCode.SESSION_GONE, SESSION_GONE_REASON)}
    assert parse_close_reason(SESSION_GONE_REASON)[0] == "session-expired"
    owner.resume()  # untouched by all that
    assert shell_pid(owner) == pid
    owner.send(b"exit\n")
    assert owner.until_closed().code == 1000


# --- grace period, bound, backpressure --------------------------------------------------------


def test_the_grace_period_ends_the_session_and_reaps_its_process(
        make_gateway: Callable[..., RunningGateway]) -> None:
    running = make_gateway(resume_grace=0.5)
    token = running.mint_token("Deployer", sub="deployer")
    with ChaosProxy(running.port) as chaos:
        client = shell(chaos, token, tty=1)
        pid = shell_pid(client)
        client.send(b"sleep 300 & echo child-$!\n")
        client.pump(lambda c: re.search(rb"child-(\d+)", c.text()) is not None)
        child = int(re.findall(rb"child-(\d+)", client.text())[-1])
        chaos.cut()
        wait_for(lambda: snapshot(running) == [], "the grace period to end the session")
        wait_for(lambda: pid_gone(pid), "the shell to be reaped")
        wait_for(lambda: pid_gone(child) or _zombie_or_gone(child), "its job to be hung up")
        gone = refused(client)
        assert (gone.code, gone.reason) == (CloseCode.SESSION_GONE, SESSION_GONE_REASON)


def _zombie_or_gone(pid: int) -> bool:
    """A background job is reparented (to init or a subreaper): dead means gone or a zombie."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return True
    return stat.rsplit(")", 1)[1].split()[0] in ("Z", "X")


def test_detached_output_beyond_the_buffer_ends_with_resume_lost(
        make_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    limit, total = 64 * KIB, 300_000
    running = make_gateway(resume_buffer=limit)
    token = running.mint_token("Deployer", sub="deployer")
    go = tmp_path / "work" / "go-lost"
    with ChaosProxy(running.port) as chaos:
        client = shell(chaos, token, tty=0, command=[
            "sh", "-c", f"while [ ! -e {go} ]; do sleep 0.02; done; head -c {total} /dev/zero"])
        chaos.cut()
        wait_for(state_is(running, "detached"), "the session to detach")
        go.touch()
        wait_for(state_is(running, "done"), "the output to be read while detached")
        [state] = snapshot(running)
        assert state["end"] == total and state["end"] - state["start"] == limit
        gone = refused(client)
    assert gone.code == CloseCode.RESUME_LOST
    assert parse_close_reason(gone.reason)[0] == "resume-lost"
    assert lost_bytes(gone.reason) == total - limit
    assert f"{total - limit} bytes" in gone.reason
    wait_for(lambda: snapshot(running) == [], "the session to end")


def test_a_full_buffer_stops_reading_and_drops_nothing(
        make_gateway: Callable[..., RunningGateway]) -> None:
    limit = 64 * KIB
    running = make_gateway(resume_buffer=limit)
    token = running.mint_token("Deployer", sub="deployer")
    client = shell(running.url, token, tty=0, command=["seq", "1", "200000"])
    client.pump(lambda c: len(c.received) >= limit, ack=False)
    wait_for(lambda: snapshot(running)[0]["waiting"] == 1, "the output to wait for room")
    [state] = snapshot(running)
    assert (state["start"], state["end"], len(client.received)) == (0, limit, limit)
    client.ack()
    gone = client.until_closed(timeout=60)
    assert gone.code == 1000 and client.controls[-1] == {"type": "exit", "code": 0}
    assert client.text() == b"".join(b"%d\n" % i for i in range(1, 200_001))
    assert snapshot(running) == []


def test_a_detached_port_forward_stops_reading_its_target_and_loses_nothing(
        make_gateway: Callable[..., RunningGateway], echo_server: int) -> None:
    limit = 64 * KIB
    running = make_gateway(resume_buffer=limit)
    token = running.mint_token("Deployer", sub="deployer")
    data = os.urandom(1024 * KIB)
    with ChaosProxy(running.port) as chaos:
        client = forward(chaos, token, echo_server)
        for start in range(0, len(data), 64 * KIB):
            client.send(data[start:start + 64 * KIB])
        wait_for(lambda: snapshot(running)[0]["received"] >= 256 * KIB, "data to arrive")
        chaos.cut()

        def held_back() -> bool:
            [state] = snapshot(running)
            return state["state"] == "detached" and state["waiting"] == 1

        wait_for(held_back, "the full buffer to stop the reads")
        [state] = snapshot(running)
        assert state["end"] - state["start"] == limit and state["evicted"] == 0
        client.resume()
        client.pump(lambda c: len(c.received) >= len(data))
    assert client.text() == data


# --- settings and secrecy ---------------------------------------------------------------------


def test_resume_settings_come_from_the_gateway_toml() -> None:
    services = {"api": {"shell": "/bin/sh"}}
    config = parse_config({"gateway": {"resume_buffer": "512KiB", "resume_grace": "30s",
                                       "resume": False}, "services": services})
    assert (config.resume_buffer, config.resume_grace, config.resume) == (512 * KIB, 30.0, False)
    default = parse_config({"services": services})
    assert (default.resume_buffer, default.resume_grace, default.resume) == (8 << 20, 120.0, True)
    assert parse_config({"gateway": {"resume_buffer": 1 << 20},
                         "services": services}).resume_buffer == 1 << 20
    for bad in ("8MB", "-1", 0, "2GiB", True, "1.5MiB", 1024, [8]):
        with pytest.raises(ConfigError, match=r"gateway\.resume_buffer: expected a size"):
            parse_config({"gateway": {"resume_buffer": bad}, "services": services})
    with pytest.raises(ConfigError, match=r"gateway\.resume: expected true or false"):
        parse_config({"gateway": {"resume": "yes"}, "services": services})


def test_session_ids_stay_out_of_the_gateway_log_even_at_debug(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str,
        caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tether.gateway")
    client = shell(proxy, deployer_token, tty=0, command=["cat"])
    client.send(b"x")
    client.pump(lambda c: c.text() == b"x")
    proxy.cut()
    client.resume()
    client.send_control({"type": "eof"})
    assert client.until_closed().code == 1000
    frames = [r.getMessage() for r in caplog.records if r.name == "tether.gateway.websockets"]
    assert any("REDACTED" in line for line in frames)  # the session and resume frames
    assert all(client.id not in record.getMessage() for record in caplog.records)
    assert all(client.id[:16] not in record.getMessage() for record in caplog.records)
