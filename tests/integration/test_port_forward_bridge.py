"""Port-forward through a plain WebSocket-to-TCP bridge: websockify, started and stopped by PID."""

from __future__ import annotations

import os
import socket
import subprocess
import sys
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.integration.test_port_forward import OPTIONS, forwarding
from tests.servers import free_port
from tether.auth.credentials import EnvCredential
from tether.client.dial import dial

WEBSOCKIFY = Path(sys.executable).with_name("websockify")


@pytest.fixture
def bridge(echo_server: int) -> Iterator[str]:
    """websockify on 127.0.0.1 in front of the echo server; yields its http:// URL."""
    if not WEBSOCKIFY.exists():
        pytest.skip("websockify is not installed in this environment")
    port = free_port()
    proc = subprocess.Popen([str(WEBSOCKIFY), f"127.0.0.1:{port}", f"127.0.0.1:{echo_server}"],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=0.5).close()
                break
            except OSError:
                if time.monotonic() > deadline or proc.poll() is not None:
                    raise AssertionError("websockify did not start") from None
                time.sleep(0.05)
        yield f"http://127.0.0.1:{port}"
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def echo_exactly(port: int, payload: bytes) -> bytes:
    """Send ``payload`` and read as many bytes back (a plain peer has no half-close)."""
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        got = bytearray()
        while len(got) < len(payload):
            data = sock.recv(256 * 1024)
            if not data:
                break
            got += data
        return bytes(got)


def test_websockify_is_a_plain_peer_that_forwards(bridge: str) -> None:
    credential = EnvCredential(bridge, "unused-by-the-bridge")
    with dial(bridge, "port-forward", {"service": "api", "port": 1}, credential,
              OPTIONS) as conn:
        assert conn.subprotocol == "binary"  # not tether.v1: no eof messages
    payload = os.urandom(1 << 20)
    with forwarding(bridge, credential, 1) as running:
        assert echo_exactly(running.port, payload) == payload
        assert echo_exactly(running.port, b"second connection") == b"second connection"
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(b"half")
            sock.shutdown(socket.SHUT_WR)  # no eof for a plain peer; the reply still comes
            assert sock.recv(100) == b"half"
        assert running.thread.is_alive() and not running.errors
        started = time.monotonic()
        running.forwarder.shutdown()  # a quiet plain peer is closed too, without waiting
        assert time.monotonic() - started < 1.5
