"""Raw mode on a real pseudo-terminal: set inside the block, restored on every way out."""

from __future__ import annotations

import os
import signal
import termios

import pytest

from tether.session import terminal


@pytest.fixture
def pty_pair() -> tuple[int, int]:
    master, slave = os.openpty()
    yield master, slave
    os.close(master)
    os.close(slave)


def test_raw_mode_is_set_inside_and_restored_after(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    assert before[3] & termios.ECHO
    with terminal.raw_mode(slave):
        inside = termios.tcgetattr(slave)
        assert not inside[3] & termios.ECHO
        assert not inside[3] & termios.ICANON
    assert termios.tcgetattr(slave) == before


def test_restored_after_an_exception(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(RuntimeError), terminal.raw_mode(slave):
        raise RuntimeError("boom")
    assert termios.tcgetattr(slave) == before


def test_restored_after_keyboard_interrupt(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    before = termios.tcgetattr(slave)
    with pytest.raises(KeyboardInterrupt), terminal.raw_mode(slave):
        raise KeyboardInterrupt
    assert termios.tcgetattr(slave) == before


def test_size_reads_the_pty_and_resize_calls_back(pty_pair: tuple[int, int]) -> None:
    import fcntl
    import struct

    _, slave = pty_pair
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 33, 101, 0, 0))
    assert terminal.size(slave) == (101, 33)
    seen: list[int] = []
    with terminal.on_resize(lambda: seen.append(1)):
        os.kill(os.getpid(), signal.SIGWINCH)
    assert seen == [1]
    assert signal.getsignal(signal.SIGWINCH) in (signal.SIG_DFL, signal.SIG_IGN, None)


def test_is_terminal(pty_pair: tuple[int, int]) -> None:
    _, slave = pty_pair
    assert terminal.is_terminal(slave)
    read_end, write_end = os.pipe()
    try:
        assert not terminal.is_terminal(read_end)
    finally:
        os.close(read_end)
        os.close(write_end)
