"""The data path of shell and port-forward sessions, tether.v1 and tether.v2 alike.

A :class:`Session` owns a backend (a shell's process, a forwarded TCP
connection) and the bytes between it and the client; an :class:`Attachment`
is one connection serving it. Everything happens in callbacks, not tasks: the
backend's read callback puts its bytes in the session's replay buffer and the
attachment sends them at once (``GatewayConnection.send_now``); the
connection's read callback hands each client frame to the attachment, which
writes it to the backend at once (``InputQueue``). A task runs only while a
write must wait for the backend.

Backpressure, never loss: a replay buffer that is full pauses the backend's
reading; a connection whose write buffer is full leaves bytes in the replay
buffer until it drains; a backend that cannot take a write pauses reading the
client. With tether.v2 (``resumable``) the buffer keeps what was sent until the
client acknowledges it, and the session outlives its connections
(``resumable.py``); with tether.v1 a byte leaves the buffer once handed to the
connection, and the session ends with it.
"""

from __future__ import annotations

import asyncio
import logging
from collections import deque
from collections.abc import Callable
from typing import Any

from websockets.frames import Frame

from tether.gateway.connection import GatewayConnection
from tether.gateway.datapath import InputQueue, Messages, cancelled
from tether.gateway.session import Backend, Ending, violation_close_code
from tether.protocol import (
    ACK_INTERVAL,
    Ack,
    CloseCode,
    ControlMessage,
    Eof,
    ProtocolViolation,
    Resize,
    V2Message,
    decode_control,
    encode_control,
    format_close_reason,
    parse_close_reason,
)
from tether.replay import ACK_GAP, AckCounter, ReplayBuffer

log = logging.getLogger("tether.gateway.stream")
#: What a tether.v1 session holds for a slow client before it stops reading the backend.
V1_BUFFER = 256 * 1024
Decode = Callable[[str], ControlMessage | V2Message]


class Session:
    """A backend and the bytes between it and the client, across the connections serving it."""

    def __init__(self, backend: Backend, *, limit: int, resumable: bool, request_id: str,
                 endpoint: str) -> None:
        self.backend = backend
        self.resumable = resumable
        self.request_id = request_id  # of the dial that opened it (logs only)
        self.endpoint = endpoint
        self.out = ReplayBuffer(limit)  # gateway to client
        self.acks = AckCounter()  # client to gateway
        self.ending: Ending | None = None
        self.client_eof = False
        self.attachment: Attachment | None = None
        self.gone = False
        self.evicted = 0  # bytes dropped unacknowledged while detached
        self.input = InputQueue(self._hold_input, self._input_idle, self._input_broke)
        self._held: deque[tuple[int, bytes]] = deque()  # read past the buffer's room
        self._output_paused = False
        self._finisher: asyncio.Task[None] | None = None

    @property
    def state(self) -> str:
        """attached, detached, closing, done or gone (docs/protocol.md)."""
        if self.gone:
            return "gone"
        if self.attachment is not None:
            return "attached" if self.ending is None else "closing"
        return "detached" if self.ending is None else "done"

    @property
    def waiting(self) -> int:
        """1 while reading the backend is stopped for want of room in the replay buffer."""
        return int(self._output_paused and self.ending is None)

    def start(self) -> None:
        """Start reading the backend."""
        self.backend.start(self)
        self._finisher = asyncio.create_task(self._finish())

    async def stop(self) -> None:
        """Stop reading, and release the backend (the process is reaped)."""
        finisher, self._finisher = self._finisher, None
        await cancelled(finisher)
        await self.input.cancel()
        await self.backend.close()

    # --- backend to client ----------------------------------------------------------------

    def _evicting(self) -> bool:
        return self.attachment is None and self.backend.evicts_when_detached

    def data(self, tag: int, data: bytes) -> None:
        """Bytes the backend read: into the buffer, and out when attached."""
        if self.ending is not None or not data:
            return  # the session's stream ended: what a leftover process writes goes nowhere
        if self._held:
            self._held.append((tag, data))
        elif self._evicting():
            self.evicted += self.out.append(data, tag, evict=True)
        else:
            room = self.out.room
            if len(data) > room:
                if room:
                    self.out.append(data[:room], tag)
                self._held.append((tag, data[room:]))
            else:
                self.out.append(data, tag)
        if self._held or not (self.out.room or self._evicting()):
            self._pause_output()
        if self.attachment is not None:
            self.attachment.push()

    def _pause_output(self) -> None:
        if not self._output_paused:
            self._output_paused = True
            self.backend.pause_output()

    def refill(self) -> None:
        """Room was freed (or the session detached): take in what waits, read on."""
        held = self._held
        while held:
            tag, data = held[0]
            if self._evicting():
                self.evicted += self.out.append(data, tag, evict=True)
            elif (room := self.out.room) < len(data):
                if room:
                    self.out.append(data[:room], tag)
                    held[0] = (tag, data[room:])
                break
            else:
                self.out.append(data, tag)
            held.popleft()
        if self._output_paused and not held and (self.out.room or self._evicting()):
            self._output_paused = False
            if self.ending is None:
                self.backend.resume_output()

    def acknowledge(self, offset: int) -> None:
        """The client has ``offset`` bytes: free them."""
        if self.out.ack(offset):
            self.refill()

    @property
    def drained(self) -> bool:
        """Whether every byte read from the backend is in the buffer."""
        return not self._held

    async def _finish(self) -> None:
        try:
            ending = await self.backend.finished(lambda: self.out.end + len(self._held),
                                                 lambda: self._output_paused)
        except Exception:
            log.exception("request %s: the %s failed", self.request_id, self.endpoint)
            ending = self.backend.broken()
        self.conclude(ending)

    def conclude(self, ending: Ending) -> None:
        """The backend is done: once the buffer is sent, ``ending`` ends the stream."""
        if self.ending is not None:
            return
        self.ending = ending
        self._pause_output()
        if self.attachment is not None:
            self.attachment.push()

    # --- client to backend ----------------------------------------------------------------

    def _hold_input(self, holding: bool) -> None:
        if self.attachment is not None:
            ws = self.attachment.ws
            ws.pause_reading() if holding else ws.resume_reading()

    def _input_idle(self) -> None:
        if self.attachment is not None:
            self.attachment.push()  # an ending may wait for the client's eof to be written

    def _input_broke(self) -> None:
        self.conclude(self.backend.broken())

    # --- connections ----------------------------------------------------------------------

    def attach(self, attachment: Attachment) -> None:
        """``attachment`` serves the session from now on."""
        self.attachment = attachment

    def detach(self, attachment: Attachment) -> None:
        """``attachment`` is over; reading goes on (evicting, for a shell)."""
        if self.attachment is attachment:
            self.attachment = None
            self.refill()


class Attachment:
    """One connection serving one session, in its callbacks: frames in, bytes and acks out."""

    def __init__(self, session: Session, ws: GatewayConnection, sent: int, *,
                 close_timeout: float, decode: Decode) -> None:
        self.session = session
        self.ws = ws
        self.sent = sent  # bytes of the buffer this connection has sent (absolute offset)
        self.close_timeout = close_timeout
        self.decode = decode
        self.completed = False  # the ending went out and the close began
        self.kicked = asyncio.Event()  # a resume took the session over
        self.done = asyncio.Event()
        self._messages = Messages()
        self._stopped = False  # this side is closing: later frames are not taken
        self._final_sent = False
        self._pushing = False
        self._loop = asyncio.get_running_loop()
        self._next_ack = 0.0  # loop time before which an ack waits (ACK_GAP)
        self._ack_timer: asyncio.TimerHandle | None = None
        self._ack_at = 0.0
        self._tasks: set[asyncio.Task[Any]] = set()

    async def run(self) -> None:
        """Serve until the connection ends or a resume takes the session over."""
        ws = self.ws
        ws.on_writable = self.push
        if self.session.input.busy:
            ws.pause_reading()
        ws.divert(self._frame)
        self.push()
        waits = [asyncio.create_task(ws.wait_closed()), asyncio.create_task(self.kicked.wait())]
        try:
            await asyncio.wait(waits, return_when=asyncio.FIRST_COMPLETED)
        finally:
            self._stopped = True
            ws.on_writable = None
            if self._ack_timer is not None:
                self._ack_timer.cancel()
            for task in (*waits, *self._tasks):
                task.cancel()
            await asyncio.gather(*waits, *self._tasks, return_exceptions=True)
        if self.kicked.is_set():
            ws.transport.abort()

    def verdict(self) -> str:
        """What the end of this connection means: complete, end or detach."""
        if self.kicked.is_set():
            return "detach"
        protocol = self.ws.protocol
        sent, received = protocol.close_sent, protocol.close_rcvd
        if self.completed:
            return "complete" if received is not None else "detach"
        if received is not None and (sent is None or protocol.close_rcvd_then_sent):
            return "end" if received.code in (CloseCode.NORMAL, CloseCode.GOING_AWAY) \
                else "detach"
        if sent is not None:
            if sent.code in (CloseCode.PROTOCOL_ERROR, CloseCode.UNSUPPORTED_DATA,
                             CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG):
                return "end"
            if (sent.code == CloseCode.POLICY_VIOLATION
                    and parse_close_reason(sent.reason)[0] != "token-expired"):
                return "end"
        return "detach"

    def _spawn(self, work: Any) -> None:
        task = asyncio.ensure_future(work)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    # --- out --------------------------------------------------------------------------------

    def push(self) -> None:
        """Send what the buffer holds past ``sent`` while the connection takes it; then the
        ending, once everything before it is out."""
        if self._pushing or self.completed:
            return
        self._pushing = True
        try:
            self._push()
        finally:
            self._pushing = False

    def _push(self) -> None:
        session, ws, out = self.session, self.ws, self.session.out
        if not ws.open:
            return
        frame = session.backend.frame
        while self.sent < out.end and ws.writable:
            for tag, data in out.since(self.sent):
                if not ws.send_now(frame(tag, data)):
                    return
                self.sent += len(data)
                if not ws.writable:
                    break
            if not session.resumable:
                session.acknowledge(self.sent)  # v1: handed over is done with
        ending = session.ending
        if ending is None or self.sent != out.end or not session.drained:
            return
        if not self._final_sent:
            self._final_sent = True
            if ending.message is not None and not ws.send_now(encode_control(ending.message)):
                return
        if not ending.needs_client_eof or (session.client_eof and not session.input.busy):
            self.completed = True
            self._spawn(ws.close(ending.code, ending.reason))

    # --- in ---------------------------------------------------------------------------------

    def _frame(self, frame: Frame) -> None:
        if self._stopped:
            return
        message = self._messages.add(frame)
        if message is None:
            return
        is_text, payload = message
        if not is_text:
            self._data(payload)
            return
        try:
            control = self.decode(payload.decode())
        except UnicodeDecodeError:
            self._refuse(CloseCode.INVALID_DATA, "a text frame that is not UTF-8")
            return
        except ProtocolViolation as exc:
            self._refuse(violation_close_code(exc), str(exc))
            return
        self._control(control)

    def _refuse(self, code: int, text: str) -> None:
        """Close for a client that broke the protocol; nothing it sends after counts."""
        self._stopped = True
        self._spawn(self.ws.close(code, format_close_reason("protocol-error", text)))

    def _data(self, message: bytes) -> None:
        session = self.session
        try:
            data = session.backend.payload(message)
        except ProtocolViolation as exc:
            self._refuse(CloseCode.PROTOCOL_ERROR, str(exc))
            return
        if not data:
            return
        if session.client_eof:
            self._refuse(CloseCode.PROTOCOL_ERROR, "data after eof")
            return
        if session.resumable:
            self._count(len(data))
        backend = session.backend
        session.input.put(lambda: backend.write(data))

    def _control(self, control: ControlMessage | V2Message) -> None:
        session = self.session
        if isinstance(control, Ack) and session.resumable:
            if control.received > self.sent:
                self._refuse(CloseCode.PROTOCOL_ERROR, "ack of bytes that were not sent")
                return
            session.acknowledge(control.received)
            self.push()
        elif isinstance(control, Eof):
            if not session.client_eof:  # a repeated eof (after a resume) changes nothing
                session.client_eof = True
                session.input.put(session.backend.eof)
                if not session.input.busy:
                    self.push()
        elif not (isinstance(control, Resize)
                  and session.backend.resize(control.cols, control.rows)):
            if isinstance(control, Resize):
                text = ("port-forward takes only data, ack and eof" if session.resumable
                        else "port-forward takes only data and eof")
            else:
                text = f"{type(control).__name__} is not a message a client sends here"
            self._refuse(CloseCode.UNSUPPORTED_DATA, text)

    # --- acks (tether.v2) --------------------------------------------------------------------

    def _count(self, count: int) -> None:
        """Count client bytes; acknowledge every ACK_BYTES (at most once per ACK_GAP) or
        after ACK_INTERVAL, from a timer rather than a task."""
        due = self.session.acks.add(count)
        now = self._loop.time()
        if due and now >= self._next_ack:
            self._send_ack(now)
            return
        at = self._next_ack if due else now + ACK_INTERVAL
        if self._ack_timer is None or self._ack_at > at:
            if self._ack_timer is not None:
                self._ack_timer.cancel()
            self._ack_at = at
            self._ack_timer = self._loop.call_at(at, self._ack_due)

    def _ack_due(self) -> None:
        self._ack_timer = None
        if self.session.acks.pending and not self._stopped:
            self._send_ack(self._loop.time())

    def _send_ack(self, now: float) -> None:
        self._next_ack = now + ACK_GAP
        self.ws.send_now(encode_control(Ack(self.session.acks.take())))


async def serve_stream(ws: GatewayConnection, backend: Backend, *, first: ControlMessage | None,
                       request_id: str, endpoint: str, close_timeout: float) -> None:
    """Serve one tether.v1 (or plain ``binary``) session: ``first`` (the session message),
    then the backend's bytes, until it ends or the client goes."""
    session = Session(backend, limit=V1_BUFFER, resumable=False, request_id=request_id,
                      endpoint=endpoint)
    attachment = Attachment(session, ws, 0, close_timeout=close_timeout, decode=decode_control)
    session.attach(attachment)
    try:
        if first is None or ws.send_now(encode_control(first)):
            session.start()
            await attachment.run()
            if attachment.verdict() == "end":  # what came before the client's close goes in
                await session.input.flushed(close_timeout)
    finally:
        session.detach(attachment)
        await session.stop()
