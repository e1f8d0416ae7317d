"""``/v1/port-forward``: raw bytes both ways, half-close with eof, subprotocol choice."""

from __future__ import annotations

import dataclasses
import json
import socket
import threading
from collections.abc import Callable

from tests.gateway_client import collect, dial
from tether.gateway.config import GatewayConfig
from tether.gateway.runner import RunningGateway

BOTH = ("tether.v1", "binary")


def test_echo_and_half_close(gateway: RunningGateway, deployer_token: str,
                             echo_server: int) -> None:
    ws = dial(gateway.url, "/v1/port-forward", deployer_token, service="api", port=echo_server,
              subprotocols=BOTH)
    assert ws.subprotocol == "tether.v1"
    payload = bytes(range(256)) * 1000
    ws.send(payload)
    ws.send(json.dumps({"type": "eof"}))  # our half is done; the echo server then ends its own
    closed = collect(ws)
    assert closed.binary == payload
    assert closed.text == ['{"type":"eof"}']
    assert closed.code == 1000


def test_binary_subprotocol_for_plain_bridges(gateway: RunningGateway, deployer_token: str,
                                              echo_server: int) -> None:
    ws = dial(gateway.url, "/v1/port-forward", deployer_token, service="api", port=echo_server,
              subprotocols=("binary",))
    assert ws.subprotocol == "binary"
    ws.send(b"ping")
    assert ws.recv(timeout=5) == b"ping"
    ws.close()


def test_viewer_cannot_forward(gateway: RunningGateway, viewer_token: str,
                               echo_server: int) -> None:
    from tests.gateway_client import refusal

    r = refusal(gateway.url, "/v1/port-forward", viewer_token, service="api", port=echo_server)
    assert r.status == 403 and r.json()["required_role"] == "Deployer"


def test_fragmented_messages_are_joined(gateway: RunningGateway, deployer_token: str,
                                        echo_server: int) -> None:
    """The gateway handles frames as they are parsed: a message sent in fragments (data
    and control alike) reaches the target as the whole message."""
    ws = dial(gateway.url, "/v1/port-forward", deployer_token, service="api", port=echo_server,
              subprotocols=BOTH)
    parts = [bytes([n]) * 3000 for n in range(1, 6)]
    ws.send(parts)  # one binary message in five frames
    ws.send(['{"type":', '"eof"}'])  # one text message in two
    closed = collect(ws)
    assert closed.binary == b"".join(parts)
    assert closed.text == ['{"type":"eof"}']
    assert closed.code == 1000


def test_a_slow_target_slows_the_client_and_loses_nothing(
        make_gateway: Callable[..., RunningGateway], gateway_config: GatewayConfig) -> None:
    """A target that reads late: the gateway stops reading the client meanwhile (its
    write to the target waits), and every byte arrives in order once the target reads."""
    listener = socket.create_server(("127.0.0.1", 0))
    port = listener.getsockname()[1]
    received = bytearray()

    def late_reader() -> None:
        conn, _ = listener.accept()
        with conn:
            conn.settimeout(30)
            threading.Event().wait(1.0)  # the client's bytes pile up meanwhile
            while chunk := conn.recv(65536):
                received.extend(chunk)

    reader = threading.Thread(target=late_reader, daemon=True)
    reader.start()
    api = dataclasses.replace(gateway_config.services["api"], ports=(port,))
    running = make_gateway(services={"api": api})
    token = running.mint_token("Deployer", ttl=300, sub="deployer")
    try:
        ws = dial(running.url, "/v1/port-forward", token, service="api", port=port,
                  subprotocols=BOTH)
        payload = bytes(range(251)) * 40_000  # about 10 MB: far beyond every buffer
        for start in range(0, len(payload), 65536):
            ws.send(payload[start:start + 65536])
        ws.send(json.dumps({"type": "eof"}))
        reader.join(timeout=30)
        assert not reader.is_alive()
        assert bytes(received) == payload
        ws.close()
    finally:
        listener.close()
