"""What the local keyboard sends, before it goes to the remote: ssh escapes and whole pastes.

Pure state machines fed bytes; no terminal I/O here.

- :class:`EscapeScanner`: ``~.`` after a newline disconnects, ``~?`` lists the
  escapes, ``~~`` sends one ``~``; anything else after ``~`` is sent as typed, as in ssh.
- :class:`PasteJoiner`: holds back a bracketed paste (``ESC [200~`` ... ``ESC [201~``)
  until it is complete, so that it never straddles two frames; bounded.
"""

from __future__ import annotations

import enum
from dataclasses import dataclass, field

ESCAPE_CHAR = b"~"
NEWLINES = (b"\r", b"\n")
ESCAPE_HELP = (
    "Supported escape sequences:\r\n"
    " ~.   - disconnect\r\n"
    " ~?   - this message\r\n"
    " ~~   - send the escape character by typing it twice\r\n"
    "(Note that escapes are only recognized immediately after newline.)\r\n"
)


class Action(enum.Enum):
    """What an escape asks the shell to do."""

    DISCONNECT = "disconnect"
    HELP = "help"


@dataclass
class Scanned:
    """The bytes to send on, and the escapes found, in order of arrival."""

    data: bytes = b""
    actions: list[Action] = field(default_factory=list)


class EscapeScanner:
    """ssh's escape character, recognised only at the start of a line."""

    def __init__(self) -> None:
        self._line_start = True
        self._pending_tilde = False

    def feed(self, data: bytes) -> Scanned:
        """Scan ``data``; a lone ``~`` at the end is held until the next byte."""
        if not self._pending_tilde and ESCAPE_CHAR not in data:  # a key typed: no scan
            if data:
                self._line_start = data[-1:] in NEWLINES
            return Scanned(data)
        out = bytearray()
        result = Scanned()
        for i in range(len(data)):
            byte = data[i : i + 1]
            if self._pending_tilde:
                self._pending_tilde = False
                if byte == b".":
                    result.data = bytes(out)
                    result.actions.append(Action.DISCONNECT)
                    return result  # nothing after a disconnect is sent
                if byte == b"?":
                    result.actions.append(Action.HELP)
                    self._line_start = False
                    continue
                if byte != ESCAPE_CHAR:
                    out += ESCAPE_CHAR
                out += byte
                self._line_start = byte in NEWLINES
                continue
            if self._line_start and byte == ESCAPE_CHAR:
                self._pending_tilde = True
                continue
            out += byte
            self._line_start = byte in NEWLINES
        result.data = bytes(out)
        return result


PASTE_START = b"\x1b[200~"
PASTE_END = b"\x1b[201~"


class PasteJoiner:
    """Keeps each bracketed paste in one piece; lets everything else through at once.

    A paste larger than ``limit`` is released as it stands rather than buffered
    without bound.
    """

    def __init__(self, limit: int = 1 << 20) -> None:
        self._held = bytearray()
        self._limit = limit

    def feed(self, data: bytes) -> bytes:
        """What can be sent now; an unfinished paste (or its partial start marker) is held."""
        if not self._held and b"\x1b" not in data:  # every marker starts with ESC
            return data
        self._held += data
        out = bytearray()
        while self._held:
            start = self._held.find(PASTE_START)
            if start < 0:
                keep = _partial_suffix(self._held, PASTE_START)
                cut = len(self._held) - keep
                out += self._held[:cut]
                del self._held[:cut]
                break
            out += self._held[:start]
            del self._held[:start]
            end = self._held.find(PASTE_END, len(PASTE_START))
            if end < 0:
                if len(self._held) > self._limit:
                    out += self._held
                    self._held.clear()
                break
            cut = end + len(PASTE_END)
            out += self._held[:cut]
            del self._held[:cut]
        return bytes(out)

    def flush(self) -> bytes:
        """Whatever is held, at end of input."""
        out = bytes(self._held)
        self._held.clear()
        return out


def _partial_suffix(data: bytearray, marker: bytes) -> int:
    """Length of the longest end of ``data`` that is a proper start of ``marker``."""
    for n in range(min(len(marker) - 1, len(data)), 0, -1):
        if data.endswith(marker[:n]):
            return n
    return 0
