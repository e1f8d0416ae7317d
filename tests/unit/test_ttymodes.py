"""Terminal modes on the wire, read from and set on real pseudo-terminals."""

from __future__ import annotations

import os
import termios
import tty
from collections.abc import Iterator

import pytest
from hypothesis import given
from hypothesis import strategies as st

from tether import ttymodes


@pytest.fixture
def ptys() -> Iterator[tuple[int, int]]:
    """The slave sides of two fresh pseudo-terminals."""
    fds = [*os.openpty(), *os.openpty()]
    try:
        yield fds[1], fds[3]
    finally:
        for fd in fds:
            os.close(fd)


def test_modes_copied_from_one_terminal_to_another(ptys: tuple[int, int]) -> None:
    local, remote = ptys
    attrs = termios.tcgetattr(local)
    attrs[0] = (attrs[0] | 0o40000) & ~termios.IXON  # iutf8 on, ixon off
    attrs[3] &= ~termios.ECHOE
    attrs[6][termios.VERASE] = b"\x08"
    termios.tcsetattr(local, termios.TCSANOW, attrs)
    tty.setraw(remote)
    text = ttymodes.capture(local)
    assert "erase=8" in text.split(",") and "iutf8" in text.split(",")
    ttymodes.apply(remote, ttymodes.parse(text))
    assert ttymodes.capture(remote) == text
    got = termios.tcgetattr(remote)
    assert got[6][termios.VERASE] == b"\x08"
    assert got[0] & 0o40000 and not got[0] & termios.IXON and got[1] & termios.OPOST


def test_raw_modes_make_a_raw_remote(ptys: tuple[int, int]) -> None:
    local, remote = ptys
    tty.setraw(local)
    ttymodes.apply(remote, ttymodes.parse(ttymodes.capture(local)))
    lflag, oflag = termios.tcgetattr(remote)[3], termios.tcgetattr(remote)[1]
    assert not lflag & (termios.ECHO | termios.ICANON | termios.ISIG)
    assert not oflag & termios.OPOST


def test_unknown_modes_are_skipped_and_the_rest_applied(ptys: tuple[int, int]) -> None:
    _, remote = ptys
    ttymodes.apply(remote, ttymodes.parse("vdsusp=25,-frobnicate,flusho,-echo,,intr=1"))
    attrs = termios.tcgetattr(remote)
    assert not attrs[3] & termios.ECHO and attrs[6][termios.VINTR] == b"\x01"


@pytest.mark.parametrize("text", ["erase=256", "erase=-1", "erase=x", "intr=٣", "echo;rm",
                                  "-", "a" * (ttymodes.MAX_LENGTH + 1)])
def test_malformed_modes_are_refused(text: str) -> None:
    with pytest.raises(ttymodes.ModesError):
        ttymodes.parse(text)


@given(st.text(max_size=200))
def test_any_text_parses_or_is_refused_cleanly(text: str) -> None:
    try:
        modes = ttymodes.parse(text)
    except ttymodes.ModesError:
        return
    assert all(0 <= value <= 255 for value in modes.chars.values())
