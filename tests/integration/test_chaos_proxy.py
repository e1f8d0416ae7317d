"""The chaos proxy itself: it forwards, and each fault does what it says."""

from __future__ import annotations

import socket
import time

import pytest

from tests.chaos import ChaosProxy


def echo_once(port: int, data: bytes, timeout: float = 3.0) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        sock.sendall(data)
        got = b""
        while len(got) < len(data):
            piece = sock.recv(65536)
            if not piece:
                break
            got += piece
        return got


def test_forwards_byte_exact(echo_server: int) -> None:
    with ChaosProxy(echo_server) as proxy:
        payload = bytes(range(256)) * 400
        assert echo_once(proxy.port, payload) == payload


def test_cut_resets_open_connections_and_new_ones_work(echo_server: int) -> None:
    with ChaosProxy(echo_server) as proxy:
        sock = socket.create_connection(("127.0.0.1", proxy.port), timeout=3)
        sock.sendall(b"hi")
        assert sock.recv(10) == b"hi"
        assert proxy.cut() == 1
        with pytest.raises(OSError):
            for _ in range(50):
                sock.sendall(b"x" * 1024)
                if not sock.recv(10):
                    raise ConnectionResetError("closed")
                time.sleep(0.01)
        sock.close()
        assert echo_once(proxy.port, b"again") == b"again"


def test_stall_holds_bytes_until_released(echo_server: int) -> None:
    with ChaosProxy(echo_server) as proxy:
        proxy.stall(True)
        with socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as sock:
            sock.sendall(b"held")
            sock.settimeout(0.3)
            with pytest.raises(TimeoutError):
                sock.recv(10)
            proxy.stall(False)
            sock.settimeout(3)
            assert sock.recv(10) == b"held"


def test_trickle_and_delay_slow_but_keep_bytes(echo_server: int) -> None:
    with ChaosProxy(echo_server) as proxy:
        proxy.trickle = 8
        proxy.delay = 0.02
        start = time.monotonic()
        assert echo_once(proxy.port, b"y" * 64, timeout=5) == b"y" * 64
        assert time.monotonic() - start >= 0.1


def test_refuse_resets_new_connections(echo_server: int) -> None:
    with ChaosProxy(echo_server) as proxy:
        proxy.refuse = True
        with pytest.raises(OSError), \
                socket.create_connection(("127.0.0.1", proxy.port), timeout=3) as sock:
            sock.settimeout(2)
            sock.sendall(b"z")
            if not sock.recv(10):
                raise ConnectionResetError("closed")
        assert proxy.accepted == 1
