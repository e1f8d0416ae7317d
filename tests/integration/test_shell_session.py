"""The shell's I/O parts against a real gateway: the stdin pump, the receiver, terminal modes."""

from __future__ import annotations

import os
import threading
import time

import pytest

from tether.auth.credentials import resolve_credential
from tether.client.dial import Connection, DialOptions, dial
from tether.gateway.runner import RunningGateway
from tether.session.shell_streams import InputPump, ScreenModes, receive, write_all

pytestmark = pytest.mark.timeout(20)


def _dial(gateway: RunningGateway, token: str, monkeypatch: pytest.MonkeyPatch,
          **params: object) -> Connection:
    monkeypatch.setenv("TETHER_TOKEN", token)
    credential = resolve_credential(gateway.url)
    query = {"service": "api", **params}
    return dial(gateway.url, "shell", query, credential, DialOptions())  # type: ignore[arg-type]


def _read_all(fd: int) -> bytes:
    out = bytearray()
    while chunk := os.read(fd, 65536):
        out += chunk
    return bytes(out)


def test_pipes_keep_streams_apart_and_eof_ends_stdin(
        gateway: RunningGateway, deployer_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _dial(gateway, deployer_token, monkeypatch, tty="0",
                 command=["sh", "-c", "cat; echo done >&2; exit 7"])
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    os.write(stdin_w, b"\x00\xffbinary\n")
    os.close(stdin_w)
    pump = InputPump(conn, stdin_r, terminal=False, escapes=False)
    pump.start()
    try:
        outcome = receive(conn, pump, stdout=out_w, stderr=err_w)
    finally:
        conn.close()
        pump.stop()
        for fd in (stdin_r, out_w, err_w):
            os.close(fd)
    assert outcome.exit_code == 7 and pump.eof and outcome.instance
    assert _read_all(out_r) == b"\x00\xffbinary\n"
    assert _read_all(err_r) == b"done\n"


def test_tty_pump_sends_a_resize_when_the_size_changes(
        gateway: RunningGateway, deployer_token: str, monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _dial(gateway, deployer_token, monkeypatch, tty="1", cols=80, rows=24,
                 command=["sh", "-c", "read x; stty size; exit 0"])
    size = [(80, 24)]
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    pump = InputPump(conn, stdin_r, terminal=True, escapes=True, size=lambda: size[0],
                     sent_size=(80, 24))
    pump.start()
    try:
        size[0] = (101, 33)
        pump.resize()
        time.sleep(0.2)
        os.write(stdin_w, b"go\r")
        outcome = receive(conn, pump, stdout=out_w, stderr=out_w)
    finally:
        conn.close()
        pump.stop()
        for fd in (stdin_r, stdin_w, out_w):
            os.close(fd)
    assert outcome.exit_code == 0
    assert b"33 101" in _read_all(out_r)


def test_tilde_dot_disconnects(gateway: RunningGateway, deployer_token: str,
                               monkeypatch: pytest.MonkeyPatch) -> None:
    conn = _dial(gateway, deployer_token, monkeypatch, tty="1", cols=80, rows=24,
                 command=["sh", "-c", "sleep 30"])
    stdin_r, stdin_w = os.pipe()
    out_r, out_w = os.pipe()
    pump = InputPump(conn, stdin_r, terminal=True, escapes=True, size=lambda: (80, 24),
                     sent_size=(80, 24), notice_fd=out_w)
    pump.start()
    os.write(stdin_w, b"~?\r~.")
    started = time.monotonic()
    try:
        outcome = receive(conn, pump, stdout=out_w, stderr=out_w)
    finally:
        pump.stop()
        for fd in (stdin_r, stdin_w, out_w):
            os.close(fd)
    assert outcome.disconnected and outcome.exit_code is None
    assert time.monotonic() - started < 3
    assert b"Supported escape sequences" in _read_all(out_r)


def test_write_all_survives_partial_writes_to_a_full_pipe() -> None:
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)
    payload = os.urandom(1 << 20)  # far more than a pipe holds
    got = bytearray()

    def drain() -> None:
        while chunk := os.read(read_fd, 7919):
            got.extend(chunk)
            time.sleep(0.0005)

    reader = threading.Thread(target=drain)
    reader.start()
    write_all(write_fd, payload)
    os.close(write_fd)
    reader.join(10)
    os.close(read_fd)
    assert bytes(got) == payload


def test_screen_modes_undo_only_what_is_still_on() -> None:
    modes = ScreenModes()
    modes.feed(b"\x01\x1b[?1049h\x1b[?1000;1006h\x1b[?25lhello")
    modes.feed(b"\x01\x1b[?1000l plain text")
    modes.feed(b"\x01no escapes at all")
    undo = modes.reset()
    assert b"\x1b[?1006l" in undo and b"\x1b[?25h" in undo
    assert b"?1000l" not in undo
    assert undo.endswith(b"\x1b[?1049l")  # the alternate screen is left last
    assert modes.reset() == b""
    modes.feed(b"\x1b[?1049h\x1b[?1049l")
    assert modes.reset() == b""
