"""Resume routing: a tether.v2 resume through HAProxy reaches the gateway holding its session.

Two ``tether gateway serve`` processes (nodes g1 and g2) on one PostgreSQL
database behind HAProxy, which routes a dial by its ``node`` parameter
(tests/gateways.py, as in the README). The client is the suite's own v2 client;
the cuts are real resets from the chaos proxy between it and HAProxy. The node
itself (its settings and its place in the session message) is checked first,
on one gateway.
"""

from __future__ import annotations

import json
import logging
import os
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.chaos import ChaosProxy
from tests.cli import run_tether, tether_env
from tests.gateways import Deployment, GatewayProcess, deployment, gateway_cli, gateway_toml
from tests.v2_client import KIB, Gone, V2Client, refused, wait_for
from tether.gateway.config import ConfigError, parse_config
from tether.gateway.runner import RunningGateway
from tether.protocol import (
    NODE_PATTERN,
    SESSION_GONE_REASON,
    CloseCode,
    ProtocolViolation,
    SessionStarted,
    decode_control,
    decode_control_v2,
    encode_control,
)

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def shared(tmp_path: Path, pg_url: str, log_dir: Path, echo_server: int) -> Iterator[Deployment]:
    work = tmp_path / "work"
    work.mkdir()
    toml = gateway_toml(issuer="{issuer}", log_dir=log_dir, work=work, echo=echo_server)
    with deployment(tmp_path / "deploy", pg_url, toml) as running:
        yield running


@pytest.fixture
def token(shared: Deployment, tmp_path: Path) -> str:
    return gateway_cli("token", "create", "--role", "Deployer", "--name", "routing",
                       state=shared.state, directory=tmp_path).strip()


@pytest.fixture
def chaos(shared: Deployment) -> Iterator[ChaosProxy]:
    """Between the client and HAProxy: cuts the client's TCP connections on demand."""
    with ChaosProxy(shared.balancer.port) as proxy:
        yield proxy


def cat(proxy: ChaosProxy, token: str) -> V2Client:
    """A v2 shell running ``cat``, through the chaos proxy and HAProxy."""
    return V2Client(f"http://127.0.0.1:{proxy.port}", "/v1/shell", token, shell=True,
                    service="api", tty=0, command=["cat"])


def holder(shared: Deployment, client: V2Client) -> GatewayProcess:
    """The gateway whose node the session message named."""
    [gateway] = [g for g in shared.gateways if g.node == client.node]
    return gateway


def echoes(client: V2Client, data: bytes, sent: bytearray) -> None:
    """Send ``data`` and wait for cat to give back everything sent so far."""
    client.send(data)
    sent += data
    client.pump(lambda c: len(c.received) >= len(sent))


def session_expired(gone: Gone) -> tuple[int | None, str]:
    return gone.code, gone.reason


# --- the node -----------------------------------------------------------------------------


def test_the_node_comes_from_the_toml_else_is_random_and_is_checked(tmp_path: Path) -> None:
    services = {"api": {"shell": "/bin/sh"}}
    assert parse_config({"gateway": {"node": "g1"}, "services": services}).node == "g1"
    a, b = (parse_config({"services": services}).node for _ in range(2))
    assert a != b and NODE_PATTERN.fullmatch(a) and NODE_PATTERN.fullmatch(b)
    for bad in ("", "a b", "-g1", "g" * 64, "g1/x", 7, True):
        with pytest.raises(ConfigError, match=r"gateway\.node: expected a node name"):
            parse_config({"gateway": {"node": bad}, "services": services})
    config = tmp_path / "gateway.toml"
    config.write_text('[services.api]\nshell = "/bin/sh"\n')
    done = run_tether("gateway", "serve", "--config", str(config), "--port", "0",
                      "--node", "no good", env=tether_env(None, None, tmp_path))
    assert done.returncode == 78
    assert b"--node: expected a node name" in done.stderr


def test_the_session_message_names_the_node_and_stays_v1_compatible() -> None:
    started = SessionStarted("secret-id", "api-1", "g1")
    wire = encode_control(started)
    assert wire == '{"type":"session","id":"secret-id","instance":"api-1","node":"g1"}'
    assert decode_control_v2(wire) == decode_control(wire) == started
    plain = encode_control(SessionStarted("secret-id", "api-1"))
    assert "node" not in plain and decode_control(plain) == SessionStarted("secret-id", "api-1")
    for bad in ("a b", 7, "g" * 64, "-g1"):
        body = {"type": "session", "id": "x", "instance": "api", "node": bad}
        with pytest.raises(ProtocolViolation, match="node"):
            decode_control_v2(json.dumps(body))


def test_a_gateway_names_its_node_and_ignores_the_node_of_a_resume(
        make_gateway: Callable[..., RunningGateway], caplog: pytest.LogCaptureFixture) -> None:
    running = make_gateway(node="g7")
    token = running.mint_token("Deployer", sub="deployer")
    with ChaosProxy(running.port) as proxy:
        client = cat(proxy, token)
        assert client.node == "g7"
        sent = bytearray()
        echoes(client, b"one\n", sent)
        proxy.cut()
        client.resume()  # node=g7
        client.node = "g9"  # misrouted: the gateway serves what it holds all the same
        caplog.set_level(logging.INFO, logger="tether.gateway")
        proxy.cut()
        client.resume()
        echoes(client, b"two\n", sent)
    assert client.text() == bytes(sent)
    assert any("a resume for node 'g9' reached node g7" in r.getMessage()
               for r in caplog.records)
    assert all(client.id not in r.getMessage() for r in caplog.records)


# --- through HAProxy ----------------------------------------------------------------------


def test_a_resume_through_haproxy_reaches_the_gateway_holding_the_session(
        shared: Deployment, chaos: ChaosProxy, token: str) -> None:
    client = cat(chaos, token)
    assert client.node in {"g1", "g2"}
    sent = bytearray()
    for _ in range(6):  # round robin alone would send half of these to the other gateway
        echoes(client, os.urandom(64 * KIB), sent)
        chaos.stall(True)
        client.send(lost := os.urandom(16 * KIB))  # held by the stalled proxy, then cut
        sent += lost
        chaos.cut()
        chaos.stall(False)
        answer = client.resume()
        assert answer["received"] <= len(sent) - len(lost)
        client.pump(lambda c: len(c.received) >= len(sent))
    assert client.text() == bytes(sent)
    unrouted = []
    for _ in range(4):  # without node=, round robin reaches the other gateway within two
        try:
            client.resume(route=False)
        except Gone as gone:
            unrouted.append(session_expired(gone))
            break
    assert unrouted == [(CloseCode.SESSION_GONE, SESSION_GONE_REASON)]
    client.resume()  # the other gateway's 4410 left the session where it was
    echoes(client, b"still here\n", sent)
    assert client.text() == bytes(sent)
    client.send_control({"type": "eof"})
    assert client.until_closed().code == 1000
    assert client.controls[-1] == {"type": "exit", "code": 0}


def test_a_resume_of_a_session_whose_gateway_was_killed_ends_with_session_expired(
        shared: Deployment, chaos: ChaosProxy, token: str) -> None:
    clients = [cat(chaos, token) for _ in range(3)]  # round robin: two on one gateway
    nodes = [c.node for c in clients]
    doomed = max(set(nodes), key=nodes.count)
    victims = [c for c in clients if c.node == doomed]
    [survivor] = [c for c in clients if c.node != doomed]
    assert len(victims) == 2
    sent = {id(c): bytearray() for c in clients}
    for client in clients:
        echoes(client, os.urandom(8 * KIB), sent[id(client)])
    holder(shared, victims[0]).kill()
    first = refused(victims[0])  # at once: HAProxy may not know yet that it is down
    assert session_expired(first) == (CloseCode.SESSION_GONE, SESSION_GONE_REASON)
    wait_for(lambda: f"gateways/{doomed} is DOWN" in shared.balancer.log(),
             f"HAProxy to mark {doomed} down")
    second = refused(victims[1])  # the use-server rule of a down server is skipped
    assert session_expired(second) == (CloseCode.SESSION_GONE, SESSION_GONE_REASON)
    chaos.cut()
    survivor.resume()  # the live gateway's session is untouched
    echoes(survivor, b"after the kill\n", sent[id(survivor)])
    assert survivor.text() == bytes(sent[id(survivor)])
    survivor.send_control({"type": "eof"})
    assert survivor.until_closed().code == 1000
