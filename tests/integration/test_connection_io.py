"""Connection I/O against real loopback sockets: frames coalesced or cut anywhere, large frames,
TLS both ways at once, a close while a write is blocked, and keepalive over TLS."""

from __future__ import annotations

import ssl
import struct
import threading
import time
from typing import Any

import pytest
import trustme

from tests.hostile import HostileServer, Peer, echo, stay_silent, upgrade_then
from tether.client.credential import StaticCredential
from tether.client.dial import OPCODE_BINARY, OPCODE_TEXT, Closed, DialOptions, dial
from tether.client.framing import READ_SIZE
from tether.errors import Code, TetherError

FAST = DialOptions(connect_timeout=2.0, keepalive_interval=0, keepalive_timeout=0)



@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_server(server_of: Any, ca: trustme.CA, *behaviours: Any) -> HostileServer:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("127.0.0.1").configure_cert(context)
    server: HostileServer = server_of(*behaviours, tls=context)
    return server


def go(server: HostileServer, options: DialOptions = FAST, ca_file: str | None = None) -> Any:
    if ca_file is not None:
        options = DialOptions(connect_timeout=options.connect_timeout, ca_cert=ca_file,
                              keepalive_interval=options.keepalive_interval,
                              keepalive_timeout=options.keepalive_timeout)
    return dial(server.url, "shell", {"service": "api"}, StaticCredential("t"), options)


def raw(data: bytes) -> Any:
    """A step that writes ``data`` (any number of frames) in one write."""
    def run(peer: Peer) -> None:
        peer.send(data)
    return run


def one_byte_at_a_time(data: bytes) -> Any:
    def run(peer: Peer) -> None:
        for i in range(len(data)):
            peer.send(data[i:i + 1])
            time.sleep(0.001)
    return run


def test_many_small_frames_in_one_write(server_of: Any) -> None:
    frames = b"".join(Peer.frame(0x2, i.to_bytes(4, "big")) for i in range(2000))
    close = Peer.frame(0x8, struct.pack("!H", 1000))
    with go(server_of(upgrade_then(raw(frames + close)))) as conn:
        got = [conn.recv() for _ in range(2000)]
        assert [m.data for m in got] == [i.to_bytes(4, "big") for i in range(2000)]
        assert conn.recv() is None


def test_frames_cut_anywhere_and_headers_of_every_length(server_of: Any) -> None:
    sizes = [0, 125, 126, 65535, 65536]
    frames = b"".join(Peer.frame(0x2, bytes([n % 251]) * n) for n in sizes)
    head = Peer.frame(0x1, b"slow") + Peer.frame(0x9, b"ping")
    server = server_of(upgrade_then(one_byte_at_a_time(head), raw(frames), echo()))
    with go(server) as conn:
        assert conn.recv() == (OPCODE_TEXT, b"slow")
        for n in sizes:
            assert conn.recv() == (OPCODE_BINARY, bytes([n % 251]) * n)
    assert (0xA, b"ping") in server.peers[0].received


def test_a_frame_larger_than_the_read_buffer(server_of: Any) -> None:
    big = bytes(range(256)) * (3 * READ_SIZE // 256) + b"end"
    server = server_of(upgrade_then(raw(Peer.frame(0x2, big) + Peer.frame(0x1, b"next")), echo()))
    with go(server) as conn:
        assert conn.recv() == (OPCODE_BINARY, big)
        assert conn.recv() == (OPCODE_TEXT, b"next")
        conn.send_binary(big)  # and as large a frame the other way
        assert conn.recv() == (OPCODE_BINARY, big)


def test_tls_both_directions_at_once(server_of: Any, ca: trustme.CA, tmp_path: Any) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    server = tls_server(server_of, ca, upgrade_then(echo()))
    count, size = 300, 20_000
    errors: list[BaseException] = []
    with go(server, ca_file=str(tmp_path / "ca.pem")) as conn:

        def writer() -> None:
            try:
                for i in range(count):
                    conn.send_binary(i.to_bytes(4, "big") + bytes([i % 256]) * size)
            except BaseException as exc:
                errors.append(exc)

        thread = threading.Thread(target=writer, daemon=True)
        thread.start()
        for i in range(count):
            message = conn.recv()
            assert message == (OPCODE_BINARY, i.to_bytes(4, "big") + bytes([i % 256]) * size)
        thread.join(5)
    assert not errors


def test_close_while_a_write_is_blocked(server_of: Any) -> None:
    server = server_of(upgrade_then(stay_silent()))  # reads nothing: writes fill the socket
    conn = go(server)
    outcome: list[BaseException] = []

    def writer() -> None:
        try:
            for _ in range(2000):
                conn.send_binary(b"x" * 65536)
        except (Closed, TetherError) as exc:
            outcome.append(exc)

    thread = threading.Thread(target=writer, daemon=True)
    thread.start()
    time.sleep(0.3)  # the writer is blocked by now
    assert thread.is_alive()
    conn.close()
    thread.join(5)
    assert not thread.is_alive() and len(outcome) == 1
    assert conn.closed and conn.recv() is None


def test_keepalive_over_tls(server_of: Any, ca: trustme.CA, tmp_path: Any) -> None:
    ca.cert_pem.write_to_path(str(tmp_path / "ca.pem"))
    options = DialOptions(connect_timeout=2, keepalive_interval=0.05, keepalive_timeout=0.3)
    alive = go(tls_server(server_of, ca, upgrade_then(echo())), options, str(tmp_path / "ca.pem"))
    silent = go(tls_server(server_of, ca, upgrade_then(stay_silent())), options,
                str(tmp_path / "ca.pem"))
    got: list[Any] = []
    reader = threading.Thread(target=lambda: got.append(alive.recv()), daemon=True)
    reader.start()  # a reader takes the pongs as they come
    with pytest.raises(TetherError) as info:
        silent.recv()
    assert info.value.failure.code == Code.KEEPALIVE_TIMEOUT
    time.sleep(0.3)  # over the timeout once more
    assert not alive.closed  # its pongs kept it up all the while
    alive.send_text("still here")
    reader.join(2)
    assert got == [(OPCODE_TEXT, b"still here")]
    alive.close()


def test_messages_before_a_broken_frame_come_first(server_of: Any) -> None:
    stream = Peer.frame(0x1, b"fine") + b"\xc2\x00"  # then a frame with a reserved bit
    with go(server_of(upgrade_then(raw(stream), stay_silent()))) as conn:
        assert conn.recv() == (OPCODE_TEXT, b"fine")
        with pytest.raises(TetherError) as info:
            conn.recv()
        assert info.value.failure.code == Code.PROTOCOL_ERROR
