"""The two directions of one shell session: keyboard to gateway, gateway to screen.

- :func:`write_all`: binary-safe, whole writes to a file descriptor (partial
  writes and non-blocking descriptors handled).
- :class:`InputPump`: one thread that reads stdin with ``os.read`` and sends it
  as stdin frames, ``{"type":"eof"}`` at its end, and a resize when told to.
  With a terminal it also runs ssh's escapes (``~.``, ``~?``) and keeps each
  bracketed paste in one frame. It follows the terminal's size (woken by
  :meth:`InputPump.resize` through a self-pipe, and checked on every poll) and
  stops at once on :meth:`InputPump.stop`, so it never outlives its session.
- :func:`receive`: the main thread's loop: stdout and stderr frames to their
  descriptors, the session and exit messages, until the remote command exits.
- :class:`ScreenModes`: the terminal modes the remote program switched on
  (alternate screen, mouse reporting, hidden cursor...), so that a session
  that ends abruptly does not leave the local terminal in them.
"""

from __future__ import annotations

import contextlib
import os
import re
import select
import threading
from collections.abc import Callable
from dataclasses import dataclass

from tether.client.dial import Closed, Connection
from tether.errors import Code, Failure, Phase, TetherError
from tether.protocol import (
    Ack,
    Eof,
    Exit,
    ProtocolViolation,
    Resize,
    SessionStarted,
    Stream,
    V2Message,
    decode_control,
    decode_control_v2,
    encode_control,
)
from tether.session.keys import ESCAPE_HELP, Action, EscapeScanner, PasteJoiner
from tether.session.resume import Resumable

READ_SIZE = 64 * 1024  # one stdin read, and so at most one stdin frame
BATCH = 256 * 1024  # output joined into one write at most
_POLL = 0.5  # seconds between checks of the stop flag when nothing wakes the pump
_JOIN = 1.0  # seconds to wait for the pump thread on the way out
_STDIN = bytes((Stream.STDIN,))
_OUT, _ERR = int(Stream.STDOUT), int(Stream.STDERR)


def stdin_frame(tag: int, data: bytes | memoryview) -> bytes:
    """The shell frame of stdin bytes (a replay buffer's frame function)."""
    return _STDIN + data


def write_all(fd: int, data: bytes | bytearray | memoryview) -> None:
    """Write every byte of ``data`` to ``fd``, waiting while a non-blocking fd is full."""
    view = memoryview(data)
    while view:
        try:
            written = os.write(fd, view)
        except BlockingIOError:
            select.select([], [fd], [], _POLL)
            continue
        view = view[written:]


class InputPump:
    """Reads ``fd`` in a thread and sends what it reads to ``connection`` as stdin frames.

    ``terminal``: the remote side has a tty: escapes are recognised (when
    ``escapes``) and pastes kept whole. ``size()`` gives ``(cols, rows)`` for a
    resize; ``sent_size`` is the size the remote terminal has. With a tether.v2
    ``stream`` stdin goes through its replay buffer, and is read only while the
    buffer has room.
    """

    def __init__(self, connection: Connection, fd: int, *, terminal: bool, escapes: bool,
                 size: Callable[[], tuple[int, int]] | None = None,
                 sent_size: tuple[int, int] | None = None, notice_fd: int = 2,
                 stream: Resumable | None = None) -> None:
        self._conn = connection
        self._stream = stream
        self._fd = fd
        self._terminal = terminal
        self._escapes = EscapeScanner() if terminal and escapes else None
        self._paste = PasteJoiner() if terminal else None
        self._size = size
        self._sent_size = sent_size
        self._notice_fd = notice_fd
        self._stop = threading.Event()
        self._wake_r, self._wake_w = os.pipe()
        os.set_blocking(self._wake_w, False)
        self._fds_lock = threading.Lock()
        self._fds_open = True
        self._thread = threading.Thread(target=self._run, name="tether-stdin", daemon=True)
        self.disconnected = False  # ~. was typed
        self.eof = False  # stdin ended and eof was sent
        if stream is not None:
            stream.on_room = self._wake
            self.eof = stream.eof_sent

    @property
    def sent_size(self) -> tuple[int, int] | None:
        """The size the remote terminal was last given."""
        return self._sent_size

    def start(self) -> None:
        """Start reading (a resize goes first when the size changed since the dial)."""
        self._thread.start()

    def resize(self) -> None:
        """Check the terminal's size now (safe in a signal handler: it only writes a pipe)."""
        self._wake()

    def stop(self) -> None:
        """Stop the thread and wait for it briefly; idempotent."""
        self._stop.set()
        self._wake()
        if self._thread.is_alive():
            self._thread.join(_JOIN)
        if not self._thread.is_alive():
            self._close_fds()

    def _wake(self) -> None:
        with contextlib.suppress(OSError):
            if self._fds_open:
                os.write(self._wake_w, b"w")

    def _close_fds(self) -> None:
        with self._fds_lock:
            if self._fds_open:
                self._fds_open = False
                os.close(self._wake_r)
                os.close(self._wake_w)

    def _run(self) -> None:
        try:
            self._loop()
        except (TetherError, Closed, OSError, ValueError):
            pass  # the connection ended or stdin went away: the receiving side reports why
        finally:
            if self._stop.is_set():
                self._close_fds()

    def _room(self) -> int:
        return READ_SIZE if self._stream is None else min(READ_SIZE, self._stream.room(0))

    def _loop(self) -> None:
        reading = not self.eof
        if not reading and not self._terminal:
            return
        self._follow_size()  # the window may have changed since the dial
        while not self._stop.is_set():
            # a full replay buffer: stdin waits (an ack wakes this loop)
            room = self._room() if reading else 0
            watched = [self._wake_r, self._fd] if room else [self._wake_r]
            ready = select.select(watched, [], [], _POLL)[0]
            if self._stop.is_set():
                return
            if self._wake_r in ready:
                os.read(self._wake_r, 4096)
            if not ready or self._wake_r in ready:
                # SIGWINCH's handler wakes this loop, and a quiet poll checks anyway; a key
                # alone does not cost a size query
                self._follow_size()
            if reading and self._fd in ready and not self._pump_once(room):
                reading = False
                if not self._terminal or self.disconnected:
                    return  # nothing more to do: resizes need a terminal

    def _pump_once(self, room: int) -> bool:
        """One read of up to ``room`` bytes from stdin, sent on; False at its end (or on ``~.``)."""
        try:
            data = os.read(self._fd, room)
        except OSError:
            data = b""  # a hung-up terminal or a closed descriptor: the input is over
        if not data:
            rest = self._paste.flush() if self._paste is not None else b""
            if rest:
                self._send(rest)
            if self._stream is not None:
                self._stream.send_eof()
            else:
                self._conn.send_text(encode_control(Eof()))
            self.eof = True
            return False
        actions: list[Action] = []
        if self._escapes is not None:
            scanned = self._escapes.feed(data)
            data, actions = scanned.data, scanned.actions
        if self._paste is not None:
            data = self._paste.feed(data)
        if data:
            self._send(data)
        for action in actions:
            if action is Action.HELP:
                write_all(self._notice_fd, ESCAPE_HELP.encode())
            elif action is Action.DISCONNECT:
                self.disconnected = True
                self._conn.close(1000, "disconnected by the user")
                return False
        return True

    def _send(self, data: bytes) -> None:
        if self._stream is not None:
            self._stream.send(data, Stream.STDIN)
        else:
            self._conn.send_binary(_STDIN + data)

    def _follow_size(self) -> None:
        """Send a resize when the local terminal's size differs from the remote one's."""
        if not self._terminal or self._size is None:
            return
        now = self._size()
        if now != self._sent_size:
            self._sent_size = now
            self._conn.send_text(encode_control(Resize(*now)))


#: DEC private modes worth undoing, with the sequence that puts each back to normal.
_MODE_RESETS = {
    b"1049": b"\x1b[?1049l", b"1047": b"\x1b[?1047l", b"47": b"\x1b[?47l",  # alternate screen
    b"1000": b"\x1b[?1000l", b"1002": b"\x1b[?1002l", b"1003": b"\x1b[?1003l",  # mouse
    b"1006": b"\x1b[?1006l", b"1015": b"\x1b[?1015l",
    b"2004": b"\x1b[?2004l",  # bracketed paste
    b"1": b"\x1b[?1l",  # application cursor keys
}
_SHOWN_CURSOR = b"25"
_PRIVATE_MODE = re.compile(rb"\x1b\[\?([0-9;]+)([hl])")


class ScreenModes:
    """Follows the DEC private modes (``ESC [ ? N h`` / ``l``) in the remote's output.

    Only chunks that contain ``ESC [ ?`` are parsed, so plain output costs one
    search in C. A sequence split between two frames is missed (rare; harmless).
    """

    def __init__(self) -> None:
        self._on: dict[bytes, bool] = {}

    def feed(self, data: bytes) -> None:
        """Note the modes set and reset in one chunk of output."""
        if b"\x1b[?" not in data:
            return
        for match in _PRIVATE_MODE.finditer(data):
            on = match.group(2) == b"h"
            for mode in match.group(1).split(b";"):
                if mode in _MODE_RESETS or mode == _SHOWN_CURSOR:
                    self._on[mode] = on if mode != _SHOWN_CURSOR else not on

    def reset(self) -> bytes:
        """What undoes every mode still on (the alternate screen last), and forget them."""
        order = sorted(self._on, key=lambda mode: mode in (b"1049", b"1047", b"47"))
        out = b"".join(_MODE_RESETS.get(mode, b"\x1b[?25h") for mode in order if self._on[mode])
        self._on.clear()
        return out


class _Batch:
    """Output frames that arrived back to back, written to their descriptor in one piece.

    A terminal takes one large write much faster than many small ones; frames
    of one stream are joined while more are already waiting, up to BATCH bytes.
    """

    def __init__(self) -> None:
        self._fd = -1
        self._buf = bytearray()

    def __bool__(self) -> bool:
        return bool(self._buf)

    def add(self, fd: int, frame: bytes) -> None:
        """Queue ``frame`` (stream byte first) for ``fd``; flushes at a stream change or BATCH."""
        if fd != self._fd:
            self.flush()
            self._fd = fd
        self._buf += memoryview(frame)[1:]
        if len(self._buf) >= BATCH:
            self.flush()

    def flush(self) -> None:
        """Write what is queued."""
        if self._buf:
            # Hand the buffer off rather than clear it: a write cut short by Ctrl+C leaves
            # views of it alive in the traceback, and a bytearray with views cannot resize.
            queued, self._buf = self._buf, bytearray()
            write_all(self._fd, queued)


@dataclass
class Outcome:
    """How a session ended: the remote exit status, or ``~.``; and what the gateway said."""

    exit_code: int | None = None
    disconnected: bool = False
    instance: str | None = None


def _protocol_error(connection: Connection, message: str) -> TetherError:
    return TetherError(Failure.of(Code.PROTOCOL_ERROR, Phase.SESSION, message,
                                  url=connection.url, request_id=connection.request_id))


def receive(connection: Connection, pump: InputPump, *, stdout: int = 1, stderr: int = 2,
            modes: ScreenModes | None = None, stream: Resumable | None = None) -> Outcome:
    """Write the session's output until the exit message (or ``~.``); the outcome.

    ``modes``, when given, follows the terminal modes in the output. With a tether.v2
    ``stream``, output bytes are counted for its acks and the gateway's acks free its buffer.

    Raises TetherError when the connection breaks or the gateway breaks the protocol.
    """
    outcome = Outcome()
    batch = _Batch()
    try:
        while True:
            if batch and not connection.ready():
                batch.flush()  # nothing more has arrived: show what came
            message = connection.recv()
            if message is None:
                if pump.disconnected:
                    outcome.disconnected = True
                    return outcome
                raise _protocol_error(connection, "The gateway ended the session without "
                                                  "reporting the remote command's exit status.")
            data = message.data
            if message.is_text:
                batch.flush()
                if _control(connection, data, outcome, stream):
                    return outcome
                continue
            stream_byte = data[0] if data else -1
            if stream_byte == _OUT:
                if modes is not None:
                    modes.feed(data)
                batch.add(stdout, data)
            elif stream_byte == _ERR:
                batch.add(stderr, data)
            else:
                raise _protocol_error(connection, "The gateway sent a shell frame with stream "
                                                  f"byte {stream_byte}; expected 1 or 2.")
            if stream is not None:
                stream.received(len(data) - 1)
    finally:
        batch.flush()


def _control(connection: Connection, data: bytes, outcome: Outcome,
             stream: Resumable | None) -> bool:
    """Apply one control message to ``outcome``; True when it was the exit message."""
    control: V2Message
    try:
        control = decode_control(data) if stream is None else decode_control_v2(data)
    except ProtocolViolation as exc:
        version = "tether.v1" if stream is None else "tether.v2"
        raise _protocol_error(connection, f"The gateway sent a control message that is "
                                          f"not {version}: {exc}.") from exc
    if isinstance(control, Exit):
        outcome.exit_code = control.code
        return True
    if isinstance(control, SessionStarted):
        outcome.instance = control.instance
        if stream is not None:
            stream.opened(control)
    elif isinstance(control, Ack) and stream is not None:
        stream.acked(connection, control.received)
    elif not isinstance(control, SessionStarted | Eof | Resize):
        raise _protocol_error(connection, f"The gateway sent {type(control).__name__} in the "
                                          "middle of a session.")
    return False
