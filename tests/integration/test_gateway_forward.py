"""``/v1/port-forward``: raw bytes both ways, half-close with eof, subprotocol choice."""

from __future__ import annotations

import json

from tests.gateway_client import collect, dial
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
