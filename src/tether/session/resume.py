"""The client's side of one tether.v2 session, across the connections that carry it.

A :class:`Resumable` keeps the byte counts of docs/protocol.md section 5, one
per direction: what this side sent, held in a
:class:`~tether.replay.ReplayBuffer` until the gateway acknowledges it, and
what it received, acknowledged every ``ACK_BYTES`` or ``ACK_INTERVAL`` (at most
one per ``ACK_GAP``) by a thread of its own (so that a receiver never waits on
a send). The engines (shell, port-forward) read their source only as far as
:meth:`Resumable.room` allows (backpressure; nothing is ever dropped) and hand
what they read to :meth:`Resumable.send`, which keeps it and sends it when a
connection is attached. After a cut, :meth:`Resumable.resume` runs the resume
handshake on the new connection and resends what the gateway lacks.
The session id is a secret: it is in no repr, message or log.
"""

from __future__ import annotations

import contextlib
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass

from tether.client.dial import Closed, Connection
from tether.errors import Code, Failure, Phase, Retry, TetherError
from tether.protocol import (
    ACK_INTERVAL,
    DEFAULT_REPLAY_BUFFER,
    NODE_PARAM,
    RESUME_PARAM,
    SUBPROTOCOL_V2,
    Ack,
    Eof,
    ProtocolViolation,
    Resume,
    Resumed,
    SessionStarted,
    decode_control_v2,
    encode_control,
    parse_close_reason,
)
from tether.replay import ACK_GAP, AckCounter, ReplayBuffer, Ring

Frame = Callable[[int, bytes | memoryview], bytes | memoryview]
_EOF = encode_control(Eof())
#: Close codes after which the gateway keeps the session for a resume (section 5.8).
_DETACHING_CLOSES = frozenset({1001, 1006, 1012, 1013})


def resumable(failure: Failure) -> bool:
    """Whether ``failure`` of an attached v2 session is a cut to resume from (section 5.7).

    The connection lost, a keepalive timeout, 1001, 1012, 1013, a 1011 from the transport
    (a reason without a catalog code) and 1008 ``token-expired`` are; a close that ends
    the session (1011 with a catalog code, 1002, 1007 ...) and 4410/4416 are not.
    """
    if failure.code in (Code.SESSION_EXPIRED, Code.RESUME_LOST):
        return False
    code = failure.close_code
    if code is None:
        return failure.retry in (Retry.BACKOFF, Retry.BUDGET)
    if code in (1011, 1014):
        return parse_close_reason(failure.close_reason or "")[0] is None
    if code == 1008:
        return failure.code is Code.TOKEN_EXPIRED
    return code in _DETACHING_CLOSES


@dataclass(frozen=True)
class Detachment:
    """A v2 session lost its connection and is being resumed: the redial's wait and the counts.

    ``first`` is True for the first wait of this cut; ``sent`` and ``received`` are the
    data bytes of each direction so far; ``unacknowledged`` of ``sent`` are held for a resend.
    """

    failure: Failure
    attempt: int
    delay: float
    first: bool
    sent: int
    received: int
    unacknowledged: int


@dataclass(frozen=True)
class Resumption:
    """A v2 session resumed: ``resent`` bytes sent again, after ``detached_for`` seconds."""

    sent: int
    received: int
    resent: int
    detached_for: float


class Cut:
    """A v2 session being resumed, as a status reporter tells it: the session, the dial
    that was cut, and whether this cut was told yet (the first wait is told as such)."""

    def __init__(self) -> None:
        self.stream: Resumable | None = None
        self.attempt = 0
        self._told = False

    def begin(self, stream: Resumable, attempt: int) -> None:
        """``stream`` lost the connection of dial ``attempt``."""
        self.stream, self.attempt = stream, attempt

    def end(self) -> None:
        """Resumed, or given up: nothing is detached."""
        self.stream, self._told = None, False

    def detachment(self, failure: Failure, attempt: int, delay: float) -> Detachment | None:
        """What to tell of a wait before dial ``attempt``; None when nothing is detached."""
        if self.stream is None:
            return None
        sent, received, held = self.stream.counts()
        first, self._told = not self._told, True
        return Detachment(failure, attempt, delay, first, sent, received, held)

    def untold(self, failure: Failure) -> Detachment | None:
        """The detachment, if it was not told yet (a refresh comes before any wait)."""
        return None if self._told else self.detachment(failure, self.attempt, 0.0)


def _violation(connection: Connection, text: str) -> TetherError:
    return TetherError(Failure.of(Code.PROTOCOL_ERROR, Phase.SESSION,
                                  f"The gateway broke tether.v2: {text}.", close_code=None,
                                  url=connection.url, request_id=connection.request_id))


def expired(connection: Connection) -> TetherError:
    """session-expired for a resuming dial that the gateway answered without tether.v2."""
    return TetherError(Failure.of(
        Code.SESSION_EXPIRED, Phase.SESSION,
        f"The session could not be resumed: the gateway answered the resume with "
        f"{connection.subprotocol or 'no subprotocol'}, not {SUBPROTOCOL_V2}, so its state "
        "is lost.", url=connection.url, request_id=connection.request_id))


class Resumable:
    """One v2 session: the replay buffer of what was sent, the count of what was received.

    ``frame(tag, data)`` makes the binary frame of data read from the source (the shell
    puts its stream byte in front). One thread sends data (:meth:`send`), one receives
    (:meth:`received`, :meth:`acked`); :meth:`resume` runs in the receiving thread.
    """

    def __init__(self, connection: Connection, *, frame: Frame,
                 limit: int = DEFAULT_REPLAY_BUFFER) -> None:
        self.id: str | None = None  # from the session message; a secret
        self.node = ""  # the gateway holding the session, from the session message
        self.out = ReplayBuffer(limit)
        self._ring: Ring | None = None  # the buffer's memory once a source reads in place
        self.acks = AckCounter()
        self.eof_sent = False
        self.on_room: Callable[[], None] | None = None  # told when acks free room
        self._frame = frame
        self._lock = threading.Lock()  # the counts and the buffer (a C lock: hot paths)
        self._cond = threading.Condition(self._lock)  # waiting for room
        self._send_lock = threading.Lock()  # data frames go out in offset order
        self._conn: Connection | None = connection
        self._closed = False
        self._detached_at: float | None = None
        self._ack_due = threading.Event()  # a byte is not acknowledged yet
        self._ack_now = threading.Event()  # ACK_BYTES arrived: do not wait for the interval
        self._acker = threading.Thread(target=self._ack_loop, name="tether-acks", daemon=True)
        self._acker.start()

    def __repr__(self) -> str:
        return (f"Resumable(sent={self.out.end}, received={self.acks.received}, "
                f"held={self.out.size})")

    @property
    def can_resume(self) -> bool:
        """Whether the gateway named the session (a cut before that cannot be resumed)."""
        return self.id is not None and not self._closed

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    @property
    def connection(self) -> Connection | None:
        """The connection attached now; None while detached."""
        return self._conn

    # --- the source side ------------------------------------------------------------------

    def room(self, timeout: float | None = None) -> int:
        """Bytes the source may be read for now; waits up to ``timeout`` while there are none.

        0 after :meth:`close` or when the wait ran out.
        """
        if timeout == 0:  # no lock: only the sender appends, and acks only ever widen it
            return 0 if self._closed else self.out.room
        with self._lock:
            if not self.out.room:
                self._cond.wait_for(lambda: self.out.room > 0 or self._closed, timeout)
            return 0 if self._closed else self.out.room

    def read_into(self, recv_into: Callable[[memoryview], int], want: int,
                  timeout: float | None = None) -> int | None:
        """Read the source straight into the replay buffer's memory (a :class:`Ring`), then
        :meth:`send` it: the count read, 0 at the source's end, None when there was no room
        within ``timeout`` (or the session closed). Only one thread reads."""
        out = self.out
        with self._lock:
            if out.end - out.start >= out.limit and not self._closed:
                self._cond.wait_for(lambda: out.room > 0 or self._closed, timeout)
            if self._closed:
                return None
            ring = self._ring
            if ring is None:
                ring = self._ring = Ring(out)
            space = ring.space(want)  # acks only ever widen it: no lock while reading
        if not space:
            return None
        count = recv_into(space)
        if count:
            self.send(space[:count])
        return count

    def send(self, data: bytes | memoryview, tag: int = 0) -> None:
        """Keep ``data`` for a resend and send it if attached. A failed send is left to the
        receiving side, which finds out why; the bytes wait in the buffer."""
        with self._send_lock:
            with self._lock:
                self.out.append(data, tag)
                conn = self._conn
            if conn is not None:
                try:  # noqa: SIM105 - once per message: a plain try costs less than suppress()
                    conn.send_binary(self._frame(tag, data))
                except (TetherError, Closed):
                    pass

    def send_eof(self) -> None:
        """The source ended: ``eof`` now, and again after every resume."""
        with self._send_lock:
            self.eof_sent = True
            conn = self._conn
            if conn is not None:
                with contextlib.suppress(TetherError, Closed):
                    conn.send_text(_EOF)

    def delivered(self, connection: Connection) -> bool:
        """Whether ``eof`` went out on ``connection`` (attached) and the gateway acknowledged
        every byte sent: only then may the client end the session (close 1000) itself."""
        with self._send_lock, self._lock:
            return self.eof_sent and self._conn is connection and self.out.size == 0

    # --- the receiving side ---------------------------------------------------------------

    def received(self, count: int) -> None:
        """``count`` data bytes arrived; an ack goes out when due (another thread sends it)."""
        # no lock: only this thread counts what arrived, and the ack thread only reads it
        due = self.acks.add(count)
        if due and not self._ack_now.is_set():
            self._ack_now.set()
        if not self._ack_due.is_set():
            self._ack_due.set()

    def acked(self, connection: Connection, offset: int) -> None:
        """The gateway acknowledged ``offset`` bytes; raises TetherError past what was sent."""
        with self._lock:
            try:
                freed = self.out.ack(offset)
            except ValueError:
                raise _violation(connection, "it acknowledged bytes that were never sent") from None
            if freed:
                self._cond.notify_all()
        if freed and self.on_room is not None:
            self.on_room()

    def opened(self, started: SessionStarted) -> None:
        """The gateway's session message named the session (and the node holding it)."""
        if self.id is None:
            self.id, self.node = started.id, started.node

    def resume_params(self) -> dict[str, str]:
        """What a resuming dial adds to its query: ``resume=1``, and ``node=`` when known."""
        params = {RESUME_PARAM: "1"}
        if self.node:
            params[NODE_PARAM] = self.node
        return params

    # --- connections ----------------------------------------------------------------------

    def detach(self, connection: Connection) -> None:
        """``connection`` broke: keep the bytes, send nothing until :meth:`resume`."""
        with self._lock:
            if self._conn is connection:
                self._conn = None
                self._detached_at = time.monotonic()

    def counts(self) -> tuple[int, int, int]:
        """``(sent, received, unacknowledged)`` data bytes."""
        with self._lock:
            return self.out.end, self.acks.received, self.out.size

    def resume(self, connection: Connection) -> Resumption:
        """The resume handshake on a new ``connection``, then the resend of what the gateway
        lacks (and ``eof`` if it was sent). Raises TetherError: the gateway's close (4410
        session-expired, 4416 resume-lost, or a cut to resume from again), or a protocol error.
        """
        if self.id is None:
            raise RuntimeError("a session that was never named cannot be resumed")
        if connection.subprotocol != SUBPROTOCOL_V2:
            connection.close()
            raise expired(connection)
        with self._send_lock:
            with self._lock:
                received = self.acks.received
            connection.send_text(encode_control(Resume(self.id, received)))
            answer = self._answer(connection)
            with self._lock:
                if answer.received < self.out.start:
                    raise _violation(connection, "its resume asked for bytes it had acknowledged")
                try:
                    self.out.ack(answer.received)
                except ValueError:
                    raise _violation(connection, "it claims bytes that were never sent") from None
                self.acks.take()
                pieces = self.out.since(answer.received)
                self._conn = connection
                detached_for = (time.monotonic() - self._detached_at
                                if self._detached_at is not None else 0.0)
                self._detached_at = None
                self._cond.notify_all()
            # Closed: the gateway already finished (its last messages wait to be read)
            with contextlib.suppress(Closed):
                for tag, data in pieces:
                    connection.send_binary(self._frame(tag, data))
                if self.eof_sent:
                    connection.send_text(_EOF)
        if self.on_room is not None:
            self.on_room()
        sent, got, _ = self.counts()
        return Resumption(sent, got, sum(len(data) for _, data in pieces), detached_for)

    @staticmethod
    def _answer(connection: Connection) -> Resumed:
        message = connection.recv()
        if message is None:
            raise _violation(connection, "it closed the connection instead of answering the "
                                         "resume")
        try:
            if not message.is_text:
                raise ProtocolViolation("data came before the answer to the resume")
            answer = decode_control_v2(message.data)
        except ProtocolViolation as exc:
            raise _violation(connection, str(exc).rstrip(".")) from exc
        if not isinstance(answer, Resumed):
            raise _violation(connection, f"it answered the resume with {type(answer).__name__}")
        return answer

    def close(self) -> None:
        """The session is over here: wake whoever waits for room, stop the ack thread."""
        with self._lock:
            self._closed = True
            self._conn = None
            self._cond.notify_all()
        self._ack_due.set()
        self._ack_now.set()

    # --- acks -----------------------------------------------------------------------------

    def _ack_loop(self) -> None:
        next_ack = 0.0  # monotonic time before which an ack waits (ACK_GAP)
        while True:
            self._ack_due.wait()
            if self._closed:
                return
            self._ack_now.wait(ACK_INTERVAL)
            if (gap := next_ack - time.monotonic()) > 0:
                time.sleep(gap)
            with self._lock:
                if self._closed:  # close() may have set the events just cleared below
                    return
                self._ack_due.clear()
                self._ack_now.clear()
                conn = self._conn
                offset = self.acks.take() if conn is not None and self.acks.pending else None
            if conn is not None and offset is not None:
                next_ack = time.monotonic() + ACK_GAP
                with contextlib.suppress(TetherError, Closed):
                    conn.send_text(encode_control(Ack(offset)))
