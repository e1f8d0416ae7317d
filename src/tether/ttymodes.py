"""Terminal modes on the wire: the local terminal's settings, given to the remote pty.

Like ssh (RFC 4254, section 8), the client sends the modes its terminal had
before it went raw, and the gateway sets them on the new pty: the remote
terminal erases with the user's erase key, knows UTF-8 (``iutf8``), and
processes output the way the user's own terminal does. The ``modes``
parameter is a comma-separated list in stty's words: ``name=N`` sets a
control character to byte N (0 disables it), ``name`` sets a flag and
``-name`` clears it. Names this side does not know are ignored, so either
side may know more modes than the other.

``termios`` exists on POSIX only: it is imported where it is used.
"""

from __future__ import annotations

import sys
from dataclasses import dataclass
from functools import cache

__all__ = ["MAX_LENGTH", "Modes", "ModesError", "apply", "capture", "parse"]

MAX_LENGTH = 1024  # characters of the parameter; the full list is about 300
_IUTF8_LINUX = 0o40000  # termios lacks IUTF8 before Python 3.13

# index of each flag word in termios' attribute list
_IFLAG, _OFLAG, _LFLAG = 0, 1, 3
_CC = 6

_CHARS = ("intr", "quit", "erase", "kill", "eof", "eol", "eol2", "start", "stop", "susp",
          "rprnt", "werase", "lnext", "discard")
_CHAR_CONSTANTS = {"rprnt": "VREPRINT"}
_FLAGS = {
    _IFLAG: ("ignpar", "parmrk", "inpck", "istrip", "inlcr", "igncr", "icrnl", "iuclc", "ixon",
             "ixany", "ixoff", "imaxbel", "iutf8"),
    _LFLAG: ("isig", "icanon", "xcase", "echo", "echoe", "echok", "echonl", "noflsh", "tostop",
             "iexten", "echoctl", "echoke", "pendin"),
    _OFLAG: ("opost", "olcuc", "onlcr", "ocrnl", "onocr", "onlret"),
}


class ModesError(ValueError):
    """A ``modes`` parameter that is not a list of modes."""


@dataclass(frozen=True)
class _Table:
    chars: dict[str, int]  # name -> index in the control characters
    flags: dict[str, tuple[int, int]]  # name -> (flag word, bit)


@cache
def _table() -> _Table:
    """The modes this platform's termios knows."""
    import termios

    chars = {name: index for name in _CHARS
             if (index := getattr(termios, _CHAR_CONSTANTS.get(name, "V" + name.upper()),
                                  None)) is not None}
    flags: dict[str, tuple[int, int]] = {}
    for word, names in _FLAGS.items():
        for name in names:
            bit = getattr(termios, name.upper(), None)
            if bit is None and name == "iutf8" and sys.platform == "linux":
                bit = _IUTF8_LINUX
            if bit is not None:
                flags[name] = (word, bit)
    return _Table(chars, flags)


def capture(fd: int) -> str:
    """The modes of the terminal on ``fd`` as the ``modes`` parameter."""
    import termios

    attrs = termios.tcgetattr(fd)
    table = _table()
    items = [f"{name}={_byte(attrs[_CC][index])}" for name, index in table.chars.items()]
    items += [name if attrs[word] & bit else f"-{name}"
              for name, (word, bit) in table.flags.items()]
    return ",".join(items)


def _byte(value: int | bytes) -> int:
    """A control character as termios gives it (bytes of length 1 in canonical slots)."""
    return value[0] if isinstance(value, bytes) else value


@dataclass(frozen=True)
class Modes:
    """Parsed modes: control characters by index, flag bits set and cleared by word."""

    chars: dict[int, int]
    on: dict[int, int]
    off: dict[int, int]


def parse(text: str) -> Modes:
    """The modes in ``text``; unknown names are skipped. Raises ModesError."""
    if len(text) > MAX_LENGTH:
        raise ModesError(f"modes is longer than {MAX_LENGTH} characters")
    table = _table()
    chars: dict[int, int] = {}
    on: dict[int, int] = {}
    off: dict[int, int] = {}
    for item in filter(None, text.split(",")):
        name, equals, value = item.partition("=")
        if equals:
            if not (value.isascii() and value.isdigit() and int(value) <= 255):
                raise ModesError(f"mode {name[:20]!r} needs a byte from 0 to 255")
            if name in table.chars:
                chars[table.chars[name]] = int(value)
            continue
        if not name.lstrip("-").isalnum():
            raise ModesError(f"{item[:20]!r} is not a mode")
        clear = name.startswith("-")
        known = table.flags.get(name[1:] if clear else name)
        if known is not None:
            word, bit = known
            target = off if clear else on
            target[word] = target.get(word, 0) | bit
    return Modes(chars, on, off)


def apply(fd: int, modes: Modes) -> None:
    """Set ``modes`` on the terminal on ``fd`` (a new pty, before its process starts)."""
    import termios

    attrs = termios.tcgetattr(fd)
    cc = attrs[_CC]
    for index, value in modes.chars.items():
        cc[index] = bytes([value]) if isinstance(cc[index], bytes) else value
    for word, bits in modes.on.items():
        attrs[word] |= bits
    for word, bits in modes.off.items():
        attrs[word] &= ~bits
    termios.tcsetattr(fd, termios.TCSANOW, attrs)
