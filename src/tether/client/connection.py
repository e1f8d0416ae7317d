"""One open WebSocket: I/O in the caller's thread, keepalive and close.

A :class:`Connection` reads frames itself, so that a close frame's code and
reason are kept, and runs keepalive in a daemon thread: a ping every
``keepalive_interval`` seconds, and the connection declared dead
(keepalive-timeout) when nothing at all arrived for ``keepalive_timeout``
seconds. One reader thread and any number of writer threads share it, each
doing its own socket calls: a byte crosses no thread hand-off inside the
client (bench/analysis.md measures this against one I/O thread per
connection). :mod:`tether.client.framing` parses and masks frames. Every
failure is classified through the connection's :class:`Context`.
"""

from __future__ import annotations

import contextlib
import functools
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import websocket

from tether.classify import classify_close, classify_exception
from tether.client.framing import (
    OPCODE_BINARY,
    OPCODE_CLOSE,
    OPCODE_PING,
    OPCODE_PONG,
    OPCODE_TEXT,
    FrameTooBig,
    Message,
    Parser,
    encode,
)
from tether.errors import Code, Failure, Phase, TetherError
from tether.text import redact_url

__all__ = ["OPCODE_BINARY", "OPCODE_TEXT", "Closed", "Connection", "Context", "Message"]

_CLOSE_WAIT = 1.0  # seconds to wait for the peer's close frame
_GATHER = hasattr(socket.socket, "sendmsg")  # not on Windows
_TLS_JOIN = 16 * 1024  # payloads from this size on are not copied to join their header
_T = TypeVar("_T")


class Closed(Exception):
    """Raised by a send on a connection that already ended normally or was closed locally."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"the connection is closed (code {code})")
        self.code = code
        self.reason = reason


@dataclass(frozen=True)
class Context:
    """What a dial was for: classify words the connection's failures with it."""

    url: str
    service: str | None
    command: str | None
    role: str | None
    gateway: str | None

    def exception(self, exc: BaseException, phase: Phase) -> Failure:
        """The failure ``exc`` stands for."""
        return classify_exception(exc, phase=phase, url=self.url, service=self.service,
                                  command=self.command, role=self.role, gateway=self.gateway,
                                  now=time.time())

    def close(self, code: int | None, reason: str | None) -> Failure:
        """The failure a close frame with ``code`` and ``reason`` stands for."""
        return classify_close(code, reason, service=self.service, command=self.command,
                              role=self.role, gateway=self.gateway, url=self.url)


_NORMAL = "normal"  # outcome of a session that ended with close 1000 or was closed locally


class Connection:
    """One open WebSocket. ``recv`` from one thread; ``send_*`` and ``close`` from any.

    ``sock`` has completed the upgrade; ``buffered`` is what arrived after the
    101. Durations in seconds; 0 disables the keepalive ping or timeout.
    """

    def __init__(self, sock: socket.socket, *, ctx: Context, request_id: str,
                 subprotocol: str | None, keepalive_interval: float, keepalive_timeout: float,
                 max_message: int, buffered: bytes = b"") -> None:
        self.request_id = request_id
        self.subprotocol = subprotocol
        self.url = redact_url(ctx.url)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._sock = sock
        self._ctx = ctx
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ended = threading.Event()
        self._outcome: Failure | str | None = None
        self._closing = False
        self._dead = False
        self._parser = Parser(max_message, buffered)
        self._unparsed = bool(buffered)
        self._last_rx = time.monotonic()
        self._keepalive_timeout = keepalive_timeout
        self._timeout = keepalive_timeout if keepalive_timeout > 0 else None
        # One SSL object must not be used by two threads at once (OpenSSL): with TLS the
        # socket is non-blocking and every SSL call holds _tls_lock; waiting is done in select.
        # A plain socket blocks without a timeout (one with a timeout polls before every
        # recv and send): the keepalive thread ends a silent connection, and the shutdown in
        # _end wakes a blocked call.
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._tls_lock = threading.Lock()
        sock.settimeout(0.0 if self._tls else None)
        if keepalive_interval > 0 or keepalive_timeout > 0:
            threading.Thread(target=self._keepalive, name="tether-keepalive", daemon=True,
                             args=(keepalive_interval, keepalive_timeout)).start()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Connection({self.url!r}, request_id={self.request_id!r})"

    # --- reading ------------------------------------------------------------------------

    def _fill(self) -> None:
        """One socket read into the parser's buffer, then parse: pings answered, close taken."""
        parser = self._parser
        if self._unparsed:  # first what arrived with the 101
            self._unparsed = False
            self._answer(parser.parse())
            return
        space = parser.buffer()
        if self._tls:
            count = self._tls_io(functools.partial(self._sock.recv_into, space), reading=True)
        else:
            count = self._sock.recv_into(space)
        del space  # the parser may replace its buffer
        if not count:
            raise websocket.WebSocketConnectionClosedException(
                "the connection was closed without a close frame")
        self._last_rx = time.monotonic()
        self._answer(parser.received(count))

    def _answer(self, pings: list[bytes]) -> None:
        """Answer the pings just parsed; take the peer's close frame if it came."""
        for payload in pings:
            self._control(OPCODE_PONG, payload)
        if self._parser.close is not None:
            self._on_close(self._parser.close)

    def recv(self) -> Message | None:
        """The next message; None once the session ended normally (close 1000) or locally.

        Raises TetherError with the classified close, the lost connection, or
        keepalive-timeout. Pings are answered here; pongs only count as traffic.
        Messages that arrived before the peer's close frame come first.
        """
        messages = self._parser.messages
        if self._outcome is not None and (self._closing or not messages):
            self._result()
            return None
        with self._read_lock:
            try:
                while True:
                    if self._outcome is not None and (self._closing or not messages):
                        self._result()
                        return None
                    if messages:
                        return messages.popleft()
                    self._fill()
            except Exception as exc:
                self._end(self._reader_failure(exc))
                if messages and not self._closing:  # what arrived before the failure first
                    return messages.popleft()
                if isinstance(self._outcome, Failure) and not isinstance(exc, TetherError):
                    raise TetherError(self._outcome) from exc
                self._result()
                return None

    def ready(self) -> bool:
        """Whether more of the stream has already arrived, so that ``recv`` would likely not wait.

        For a reader that batches its output: it flushes when this is False.
        """
        if self._parser.messages or self._parser.pending or self._outcome is not None:
            return True
        if self._tls and self._sock.pending():  # type: ignore[attr-defined]
            return True
        try:
            return bool(select.select([self._sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # recv() finds out what is wrong

    def _on_close(self, payload: bytes) -> None:
        """Record the peer's close frame, answer it, and end the connection."""
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        reason = payload[2:].decode("utf-8", errors="replace")
        self.close_code, self.close_reason = code, reason
        echo = struct.pack("!H", code) if code is not None and 1000 <= code < 5000 else b""
        with contextlib.suppress(Exception):
            self._control(OPCODE_CLOSE, echo, wait=_CLOSE_WAIT)
        if self._closing or code == 1000:
            self._end(_NORMAL)
        else:
            failure = self._ctx.close(1005 if code is None else code, reason)
            self._end(failure.replace(request_id=failure.request_id or self.request_id))

    def _reader_failure(self, exc: BaseException) -> Failure | str:
        if self._outcome is not None:
            return self._outcome
        if self._closing:
            return _NORMAL
        if isinstance(exc, TetherError):
            return exc.failure
        if isinstance(exc, FrameTooBig):
            return Failure.of(Code.MESSAGE_TOO_BIG, Phase.SESSION, str(exc), url=self.url,
                              request_id=self.request_id)
        if self._dead or isinstance(exc, TimeoutError | websocket.WebSocketTimeoutException):
            return self._keepalive_failure()
        failure = self._ctx.exception(exc, Phase.SESSION)
        return failure.replace(request_id=failure.request_id or self.request_id)

    def _keepalive_failure(self) -> Failure:
        return Failure.of(Code.KEEPALIVE_TIMEOUT, Phase.SESSION,
                          f"Nothing, not even a pong, arrived from the gateway for "
                          f"{self._keepalive_timeout:g} s.", url=self.url,
                          request_id=self.request_id)

    def _result(self) -> None:
        outcome = self._outcome
        if isinstance(outcome, Failure):
            raise TetherError(outcome)

    def _end(self, outcome: Failure | str) -> None:
        """Record how the connection ended (first outcome wins) and release the socket."""
        with self._state_lock:
            if self._outcome is None:
                self._outcome = outcome
        self._ended.set()
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()

    # --- writing ------------------------------------------------------------------------

    def send_binary(self, data: bytes | memoryview) -> None:
        """Send one binary message. Raises TetherError, or Closed after a normal end."""
        self._send(OPCODE_BINARY, data)

    def send_text(self, text: str) -> None:
        """Send one text message. Raises TetherError, or Closed after a normal end."""
        self._send(OPCODE_TEXT, text.encode("utf-8"))

    def _send(self, opcode: int, payload: bytes | memoryview) -> None:
        if self._outcome is not None or self._closing:
            self._raise_ended()
        header, body = encode(opcode, payload)
        try:
            with self._send_lock:
                self._sendall(header, body)
        except Exception as exc:
            self._settle(exc)
            self._raise_ended(exc)

    def _control(self, opcode: int, payload: bytes, wait: float | None = None) -> None:
        header, body = encode(opcode, payload)
        if self._send_lock.acquire(timeout=-1 if wait is None else wait):
            try:
                self._sendall(header, body)
            finally:
                self._send_lock.release()

    def _sendall(self, header: bytes, body: bytes) -> None:
        """Write one frame: without TLS in one gathered write, without copying the payload."""
        if not self._tls:
            if not _GATHER:
                self._sock.sendall(header + body)
                return
            sent = self._sock.sendmsg((header, body))
            if sent < len(header) + len(body):  # cut short: the rest the usual way
                self._sock.sendall(memoryview(header + body)[sent:])
            return
        # TLS has no gathered write: a small frame is joined (one record); a large one is
        # written as header then payload, sparing a copy of the payload for one small record
        pieces = ((memoryview(header + body),) if len(body) < _TLS_JOIN
                  else (memoryview(header), memoryview(body)))
        for piece in pieces:
            left = piece
            while left:
                left = left[self._tls_io(functools.partial(self._sock.send, left)):]

    def _tls_io(self, call: Callable[[], _T], *, reading: bool = False) -> _T:
        """``call()`` on the non-blocking TLS socket under the lock, waiting in select().

        A read waits for the socket first unless OpenSSL holds decrypted bytes: the
        reader usually waits, and a read that would block costs more than the wait.
        """
        sock = self._sock
        end = None if self._timeout is None else time.monotonic() + self._timeout
        wait: tuple[list[socket.socket], list[socket.socket]] | None = None
        if reading and not sock.pending():  # type: ignore[attr-defined]
            wait = ([sock], [])
        while True:
            if wait is not None:
                left = None if end is None else end - time.monotonic()
                if (left is not None and left <= 0) or not any(select.select(*wait, [], left)):
                    raise TimeoutError("the socket timed out")
            with self._tls_lock:
                try:
                    return call()
                except ssl.SSLWantReadError:
                    wait = ([sock], [])
                except (ssl.SSLWantWriteError, BlockingIOError):
                    wait = ([], [sock])

    def _settle(self, exc: BaseException) -> None:
        """After a failed send: find the close frame the peer may have sent, then end."""
        if self._outcome is None:
            self._await_close()
        if self._outcome is None:
            self._end(self._reader_failure(exc))

    def _await_close(self) -> None:
        """Read the peer's close frame here, or let the reader thread read it; bounded."""
        if self._read_lock.acquire(blocking=False):
            try:
                self._drain(time.monotonic() + _CLOSE_WAIT)
            finally:
                self._read_lock.release()
        else:
            self._ended.wait(_CLOSE_WAIT)

    def _drain(self, until: float) -> None:
        """Read (and drop) frames until the peer's close frame, an error, or ``until``."""
        with contextlib.suppress(Exception):
            for _ in range(10_000):
                left = until - time.monotonic()
                if left <= 0 or self._outcome is not None:
                    return
                if self._tls:
                    self._timeout = left
                else:
                    self._sock.settimeout(left)
                self._parser.messages.clear()
                self._fill()

    def _raise_ended(self, exc: BaseException | None = None) -> None:
        outcome = self._outcome
        if isinstance(outcome, Failure):
            raise TetherError(outcome) from exc
        raise Closed(self.close_code, self.close_reason or "") from exc

    # --- keepalive and close -----------------------------------------------------------------

    def _keepalive(self, interval: float, timeout: float) -> None:
        tick = min(x for x in (interval, timeout / 4) if x > 0)
        last_ping = time.monotonic()
        while not self._ended.wait(tick):
            now = time.monotonic()
            if timeout > 0 and now - self._last_rx >= timeout:
                self._dead = True
                self._end(self._keepalive_failure())
                return
            if interval > 0 and now - last_ping >= interval:
                last_ping = now
                try:
                    self._control(OPCODE_PING, b"", wait=tick)
                except Exception:
                    return  # the reader sees why

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket (sending ``code`` and ``reason``) and wait briefly for the peer."""
        if self._outcome is not None or self._closing:
            return
        self._closing = True
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
        with contextlib.suppress(Exception):
            self._control(OPCODE_CLOSE, payload, wait=_CLOSE_WAIT)
        self._await_close()
        self._end(_NORMAL)

    @property
    def closed(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self._outcome is not None
