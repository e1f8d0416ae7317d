"""A minimal tether.v2 client of the suite's own (websockets' sync client), for checking
gateways against docs/protocol.md rather than against tether's client.

``V2Client`` opens one resumable session and keeps what it received (by absolute
offset) and everything it sent, to resend what the gateway lacks on ``resume()``.
A resume names the session message's ``node`` in its query, as a client must for
a load balancer to route it (docs/protocol.md 5.7).
"""

from __future__ import annotations

import contextlib
import json
import time
from collections.abc import Callable
from typing import Any

import pytest
from websockets.exceptions import ConnectionClosed
from websockets.sync.client import ClientConnection

from tests.gateway_client import dial
from tests.secrets_guard import register_secret
from tether.protocol import NODE_PARAM, SUBPROTOCOL, SUBPROTOCOL_V2

V2_OFFER = (SUBPROTOCOL_V2, SUBPROTOCOL)
KIB = 1024


class Gone(Exception):
    """The connection closed; ``code`` and ``reason`` of the close frame received, if any."""

    def __init__(self, code: int | None, reason: str) -> None:
        super().__init__(f"closed {code} {reason}")
        self.code, self.reason = code, reason


class V2Client:
    """One resumable session from the client's side: what it received (by absolute offset),
    everything it sent (to resend what the gateway lacks), and resuming."""

    def __init__(self, base: str, path: str, token: str, *, shell: bool, **params: Any) -> None:
        self.base, self.path, self.token, self.params = base, path, token, params
        self.shell = shell
        self.received = bytearray()  # gateway to client data, stream bytes left out
        self.stderr = bytearray()
        self.sent = bytearray()  # client to gateway data, from offset 0
        self.controls: list[dict[str, Any]] = []  # control messages other than acks
        self.acks_from_gateway: list[int] = []
        self._acked = 0
        self.ws = self._dial()
        first = self._control()
        assert first["type"] == "session", first
        self.id: str = first["id"]
        register_secret(self.id, "session id")
        self.instance = first["instance"]
        self.node: str | None = first.get("node")  # the gateway holding the session

    def _dial(self, token: str | None = None, base: str | None = None,
              **extra: Any) -> ClientConnection:
        ws = dial(base or self.base, self.path, token or self.token, subprotocols=V2_OFFER,
                  **self.params, **extra)
        assert ws.subprotocol == SUBPROTOCOL_V2
        return ws

    def _control(self) -> dict[str, Any]:
        message = self.ws.recv(timeout=10)
        assert isinstance(message, str), message[:40]
        body: dict[str, Any] = json.loads(message)
        return body

    # --- sending ---------------------------------------------------------------------

    def send(self, data: bytes) -> None:
        self.sent += data
        self.ws.send(b"\x00" + data if self.shell else data)

    def send_control(self, body: dict[str, Any]) -> None:
        self.ws.send(json.dumps(body))

    def ack(self) -> None:
        self._acked = self.offset()
        self.send_control({"type": "ack", "received": self._acked})

    # --- receiving -------------------------------------------------------------------

    def pump(self, until: Callable[[V2Client], bool], *, ack: bool = True,
             timeout: float = 20.0) -> None:
        """Take messages until ``until(self)``; raises Gone at a close."""
        deadline = time.monotonic() + timeout
        for _ in range(1_000_000):
            if until(self):
                return
            left = deadline - time.monotonic()
            assert left > 0, f"not reached; received {len(self.received)} bytes"
            try:
                message = self.ws.recv(timeout=left)
            except ConnectionClosed as exc:
                rcvd = exc.rcvd
                raise Gone(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
            except TimeoutError:
                continue
            self._take(message, ack)
        raise AssertionError("too many messages")

    def _take(self, message: str | bytes, ack: bool) -> None:
        if isinstance(message, bytes):
            if self.shell:
                assert message[0] in (1, 2)
                (self.received if message[0] == 1 else self.stderr).extend(message[1:])
            else:
                self.received.extend(message)
            if ack and self.offset() - self._acked >= 32 * KIB:
                with contextlib.suppress(ConnectionClosed):  # the close may be on its way
                    self.ack()
            return
        body = json.loads(message)
        if body["type"] == "ack":
            self.acks_from_gateway.append(body["received"])
        else:
            self.controls.append(body)

    def until_closed(self, timeout: float = 20.0) -> Gone:
        try:
            self.pump(lambda _: False, timeout=timeout)
        except Gone as gone:
            return gone
        raise AssertionError("unreachable")

    def text(self) -> bytes:
        return bytes(self.received)

    # --- cuts and resumes ------------------------------------------------------------

    def resume(self, *, token: str | None = None, base: str | None = None,
               session_id: str | None = None, route: bool = True) -> dict[str, Any]:
        """Resume; the ``resumed`` answer (after resending what the gateway lacks), or Gone.
        With ``route`` (the default) the dial names the session's node, when it has one."""
        with_ignored_close(self.ws)
        node = self.node if route else None
        self.ws = self._dial(token, base, resume=1,
                              **({NODE_PARAM: node} if node else {}))
        self.send_control({"type": "resume", "id": session_id or self.id,
                           "received": self.offset()})
        try:
            message = self.ws.recv(timeout=10)
        except ConnectionClosed as exc:
            rcvd = exc.rcvd
            raise Gone(rcvd.code if rcvd else None, rcvd.reason if rcvd else "") from None
        assert isinstance(message, str)
        answer: dict[str, Any] = json.loads(message)
        assert answer["type"] == "resumed", answer
        missing = self.sent[answer["received"]:]
        for start in range(0, len(missing), 64 * KIB):
            piece = bytes(missing[start:start + 64 * KIB])
            self.ws.send(b"\x00" + piece if self.shell else piece)
        return answer

    def offset(self) -> int:
        """Bytes received from the gateway: both shell streams count."""
        return len(self.received) + len(self.stderr)


def wait_for(check: Callable[[], bool], what: str, timeout: float = 15.0) -> None:
    """Poll ``check`` (every 20 ms, bounded in count and time) until it holds."""
    deadline = time.monotonic() + timeout
    for _ in range(10_000):
        if check():
            return
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.02)
    raise AssertionError(f"never {what}")


def with_ignored_close(ws: ClientConnection) -> None:
    """Let go of a connection that the proxy already cut."""
    with contextlib.suppress(OSError):
        ws.close_socket()


def refused(client: V2Client, **kwargs: Any) -> Gone:
    """The close that answers ``client.resume(**kwargs)``, which must not resume."""
    with pytest.raises(Gone) as info:
        client.resume(**kwargs)
    return info.value
