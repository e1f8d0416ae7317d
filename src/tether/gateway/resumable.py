"""Resumable sessions (tether.v2): the registry, each session's replay buffer, and serving
one connection of a session at a time.

A session outlives its connections. Its pumps read the backend (a shell's pty
or pipes, a forwarded TCP connection) into a :class:`ReplayBuffer` bounded by
``resume_buffer``; the attached connection sends from that buffer, and the
client's acks free it. When it is full the pumps stop reading (backpressure),
except in a detached shell, whose process keeps running: there the oldest
unacknowledged bytes go, and a later resume is told how many (4416
``resume-lost``). A detached session is kept ``resume_grace`` seconds, then
ended and its process reaped.

Session ids carry 192 random bits. The registry keeps only their SHA-256, bound
to the principal and the place (endpoint, service, instance, port) of the dial
that opened them; an id of someone else, of another place, or of no session
at all gets one and the same answer (4410). Ids are never logged.

The session message names this gateway's node; a resume adds ``node=`` to its
query so that a load balancer sends it here (docs/protocol.md 5.7). A resume
that lands on another gateway (this one died) finds no session: 4410.
"""

from __future__ import annotations

import asyncio
import contextlib
import hashlib
import logging
import secrets
from dataclasses import dataclass
from typing import Any

from websockets.asyncio.server import ServerConnection
from websockets.exceptions import ConnectionClosed

from tether.gateway.forward import TcpBackend, open_target
from tether.gateway.session import (
    Backend,
    Ending,
    Reader,
    SessionContext,
    close_with,
    violation_close_code,
)
from tether.gateway.shell import READ_SIZE, ShellBackend, ShellProcess, start_shell
from tether.gateway.tokens import Principal
from tether.protocol import (
    ACK_INTERVAL,
    SESSION_GONE_REASON,
    SUBPROTOCOL_V2,
    Ack,
    CloseCode,
    Eof,
    ProtocolViolation,
    Resize,
    Resume,
    Resumed,
    SessionStarted,
    V2Message,
    decode_control_v2,
    encode_control,
    parse_close_reason,
    resume_lost_reason,
)
from tether.replay import ACK_GAP, AckCounter, ReplayBuffer

log = logging.getLogger("tether.gateway.resumable")
ID_BYTES = 24  # 192 bits
_ACK_ROOM = 64  # bytes an ack frame takes at most
#: A client close with one of these ends the session; any other close (or none) detaches it.
ENDING_CLIENT_CLOSES = frozenset({CloseCode.NORMAL, CloseCode.GOING_AWAY})
#: The gateway's own closes that end the session (the peer broke the protocol, or lost the
#: right to the session); 1008 ends it unless the reason is token-expired (refresh, resume).
ENDING_GATEWAY_CLOSES = frozenset({CloseCode.PROTOCOL_ERROR, CloseCode.UNSUPPORTED_DATA,
                                   CloseCode.INVALID_DATA, CloseCode.MESSAGE_TOO_BIG})


def owner_of(principal: Principal) -> str:
    """Who may resume a session: the user of a JWT (across refreshes), or one API token."""
    return principal.key if principal.kind == "api" else f"{principal.kind}:{principal.sub}"


def _digest(session_id: str) -> bytes:
    return hashlib.sha256(session_id.encode("utf-8", errors="surrogatepass")).digest()


@dataclass(frozen=True)
class Place:
    """What a session serves; a resume must name the same."""

    endpoint: str
    service: str
    instance: str | None
    port: int | None

    @classmethod
    def of(cls, ctx: SessionContext) -> Place:
        return cls(ctx.endpoint, ctx.service.name, ctx.instance, ctx.port)


async def _close(ws: ServerConnection, code: int, reason: str) -> None:
    with contextlib.suppress(ConnectionClosed):
        await ws.close(code, reason)


class ResumableSession:
    """One shell or forwarded connection: its backend, replay buffer, and counters."""

    def __init__(self, digest: bytes, owner: str, place: Place, backend: Backend, *,
                 request_id: str, limit: int) -> None:
        self.digest = digest
        self.owner = owner
        self.place = place
        self.backend = backend
        self.request_id = request_id  # of the dial that opened it (logs only)
        self.out = ReplayBuffer(limit)  # gateway to client
        self.acks = AckCounter()  # client to gateway
        self.ending: Ending | None = None
        self.client_eof = False
        self.attachment: Attachment | None = None
        self.gone = False
        self.evicted = 0  # bytes dropped unacknowledged while detached
        self.changed = asyncio.Event()  # data, an ending or the client's eof: wake the sender
        self._room = asyncio.Event()  # acks freed room, or the session detached: wake the pumps
        self._waiting = 0  # pumps waiting for room
        self._input = asyncio.Lock()  # client data reaches the backend in order, whole
        self._whole_writes = bool(getattr(backend, "writes_whole", False))
        self._pumps: list[asyncio.Task[None]] = []
        self._finisher: asyncio.Task[None] | None = None
        self.grace: asyncio.TimerHandle | None = None

    @property
    def state(self) -> str:
        """attached, detached, closing, done or gone (docs/protocol.md)."""
        if self.gone:
            return "gone"
        if self.attachment is not None:
            return "attached" if self.ending is None else "closing"
        return "detached" if self.ending is None else "done"

    def start(self) -> None:
        """Start reading the backend."""
        self._pumps = [asyncio.create_task(self._pump(tag, read))
                       for tag, read in self.backend.outputs()]
        self._finisher = asyncio.create_task(self._finish())

    async def stop(self) -> None:
        """Stop the pumps and release the backend (the process is reaped)."""
        tasks = [*self._pumps, *([self._finisher] if self._finisher else [])]
        for task in tasks:
            task.cancel()
        for task in tasks:
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task
        await self.backend.close()

    # --- backend to buffer ----------------------------------------------------------------

    def _evicting(self) -> bool:
        return self.attachment is None and self.backend.evicts_when_detached

    @property
    def waiting(self) -> int:
        """Pumps holding a read that waits for room in the replay buffer (backpressure)."""
        return self._waiting

    async def _pump(self, tag: int, read: Reader) -> None:
        """Backend to buffer. A read that does not fit waits, in pieces, for the client's acks;
        meanwhile nothing more is read (at most one read waits outside the buffer)."""
        while data := await read(READ_SIZE):
            while data:
                if self._evicting():
                    self.evicted += self.out.append(data, tag, evict=True)
                    data = b""
                elif room := self.out.room:
                    self.out.append(data[:room], tag)
                    data = data[room:]
                else:
                    self._room.clear()
                    self._waiting += 1
                    try:
                        await self._room.wait()
                    finally:
                        self._waiting -= 1
                    continue
                self.changed.set()

    async def _finish(self) -> None:
        try:
            ending = await self.backend.finished(self._pumps, lambda: self.out.end,
                                                 lambda: self._waiting > 0)
        except Exception:
            log.exception("request %s: a resumable %s failed", self.request_id,
                          self.place.endpoint)
            ending = self.backend.broken()
        self.conclude(ending)

    def conclude(self, ending: Ending) -> None:
        """The backend is done: once the buffer is sent, ``ending`` ends the stream."""
        if self.ending is not None:
            return
        self.ending = ending
        for pump in self._pumps:
            pump.cancel()
        self.changed.set()

    def acknowledge(self, offset: int) -> None:
        """The client has ``offset`` bytes: free them."""
        self.out.ack(offset)
        self._room.set()

    # --- client to backend ------------------------------------------------------------------

    @property
    def writes_whole(self) -> bool:
        """Whether :meth:`feed` may run in the receiver without a shield: the backend
        takes the whole of a write before its first wait, and no earlier write is still
        going (cancelling the wait then loses no byte)."""
        return self._whole_writes and not self._input.locked()

    async def feed(self, data: bytes) -> None:
        """Client data to the backend, in order; a failed write ends the session's stream."""
        async with self._input:
            if self.ending is not None and self.ending.message is None:
                return  # the backend broke: nothing takes data any more
            try:
                await self.backend.write(data)
            except OSError:
                self.conclude(self.backend.broken())

    async def feed_eof(self) -> None:
        """The client finished writing; a repeated eof (after a resume) changes nothing."""
        async with self._input:
            if self.client_eof:
                return
            self.client_eof = True
            await self.backend.eof()
        self.changed.set()

    # --- connections ------------------------------------------------------------------------

    def attach(self, attachment: Attachment) -> None:
        """``attachment`` serves the session from now on."""
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None
        self.attachment = attachment

    def detach(self, attachment: Attachment) -> None:
        """``attachment`` is over; the pumps go on (evicting, for a shell)."""
        if self.attachment is attachment:
            self.attachment = None
            self._room.set()


class Attachment:
    """One connection serving one session: sender, receiver and acks."""

    def __init__(self, session: ResumableSession, ws: ServerConnection, sent: int,
                 close_timeout: float) -> None:
        self.session = session
        self.ws = ws
        self.sent = sent  # bytes of the buffer this connection has sent (absolute offset)
        self.close_timeout = close_timeout
        self.completed = False  # the ending went out and the close began
        self.kicked = asyncio.Event()  # a resume took the session over
        self.done = asyncio.Event()
        self._ack_wanted = asyncio.Event()
        self._ack_now = asyncio.Event()
        self._next_ack = 0.0  # loop time before which an ack due by size waits (ACK_GAP)

    async def run(self) -> None:
        """Serve until the connection ends, is taken over, or the session completes."""
        sender = asyncio.create_task(self._send())
        receiver = asyncio.create_task(self._receive())
        tasks = [sender, receiver, asyncio.create_task(self._acks()),
                 asyncio.create_task(self.kicked.wait())]
        try:
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if self.completed and not sender.done():
                await asyncio.wait([sender], timeout=self.close_timeout + 1.0)
            elif (not receiver.done() and not self.kicked.is_set()
                  and self.ws.protocol.close_rcvd is not None):
                # the client closed (a send failed on that first): what it sent before its
                # close still reaches the backend, in order, before the session ends
                await asyncio.wait([receiver], timeout=self.close_timeout)
        finally:
            for task in tasks:
                task.cancel()
            results = await asyncio.gather(*tasks, return_exceptions=True)
        for result in results:
            if isinstance(result, Exception) and not isinstance(result, ConnectionClosed):
                log.error("request %s: a resumable %s failed", self.session.request_id,
                          self.session.place.endpoint, exc_info=result)
        if self.kicked.is_set():
            self.ws.transport.abort()

    def verdict(self) -> str:
        """What the end of this connection means: complete, end or detach."""
        if self.kicked.is_set():
            return "detach"
        protocol = self.ws.protocol
        sent, received = protocol.close_sent, protocol.close_rcvd
        if self.completed:
            return "complete" if received is not None else "detach"
        if received is not None and (sent is None or protocol.close_rcvd_then_sent):
            return "end" if received.code in ENDING_CLIENT_CLOSES else "detach"
        if sent is not None:
            if sent.code in ENDING_GATEWAY_CLOSES:
                return "end"
            if (sent.code == CloseCode.POLICY_VIOLATION
                    and parse_close_reason(sent.reason)[0] != "token-expired"):
                return "end"
        return "detach"

    async def _send(self) -> None:
        session, ws = self.session, self.ws
        final_sent = False
        while True:
            session.changed.clear()
            for tag, data in session.out.since(self.sent):
                await ws.send(session.backend.frame(tag, data))
                self.sent += len(data)
            ending = session.ending
            if ending is not None and self.sent == session.out.end:
                if not final_sent:
                    final_sent = True
                    if ending.message is not None:
                        await ws.send(encode_control(ending.message))
                if not ending.needs_client_eof or session.client_eof:
                    self.completed = True
                    await ws.close(ending.code, ending.reason)
                    return
            await session.changed.wait()

    async def _receive(self) -> None:
        session, ws = self.session, self.ws
        loop = asyncio.get_running_loop()
        async for message in ws:
            if isinstance(message, str):
                try:
                    control = decode_control_v2(message)
                except ProtocolViolation as exc:
                    await close_with(ws, violation_close_code(exc), "protocol-error", str(exc))
                    return
                if not await self._control(control):
                    return
                continue
            try:
                data = session.backend.payload(message)
            except ProtocolViolation as exc:
                await close_with(ws, CloseCode.PROTOCOL_ERROR, "protocol-error", str(exc))
                return
            if session.client_eof and data:
                await close_with(ws, CloseCode.PROTOCOL_ERROR, "protocol-error",
                                 "data after eof")
                return
            if data:
                # Counted and written with no wait between: a cancel loses or repeats nothing.
                due = session.acks.add(len(data))
                if session.writes_whole:
                    await session.feed(data)  # nothing to shield: see ResumableSession.feed
                else:
                    await asyncio.shield(session.feed(data))
                if due:
                    now = loop.time()
                    if now >= self._next_ack and self._can_ack_now():
                        self._next_ack = now + ACK_GAP  # sent from here, sparing a task switch
                        # a client that closed needs no ack, but what it sent before its close
                        # must still be read and written: a failed ack ends nothing here
                        with contextlib.suppress(ConnectionClosed):
                            await ws.send(encode_control(Ack(session.acks.take())))
                    else:
                        self._ack_now.set()
                if session.acks.pending:
                    self._ack_wanted.set()
                await asyncio.sleep(0)  # the other direction's turn, as a shield gave it

    def _can_ack_now(self) -> bool:
        """Whether an ack fits in the connection's write buffer: sending it from the
        receiver must never wait (reading would then wait on the client's reading)."""
        transport = self.ws.transport
        return transport.get_write_buffer_size() + _ACK_ROOM < \
            transport.get_write_buffer_limits()[1]

    async def _control(self, control: V2Message) -> bool:
        session, ws = self.session, self.ws
        if isinstance(control, Ack):
            if control.received > self.sent:
                await close_with(ws, CloseCode.PROTOCOL_ERROR, "protocol-error",
                                 "ack of bytes that were not sent")
                return False
            session.acknowledge(control.received)
            return True
        if isinstance(control, Eof):
            await asyncio.shield(session.feed_eof())
            return True
        if isinstance(control, Resize) and session.backend.resize(control.cols, control.rows):
            return True
        text = ("port-forward takes only data, ack and eof" if isinstance(control, Resize)
                else f"{type(control).__name__} is not a message a client sends here")
        await close_with(ws, CloseCode.UNSUPPORTED_DATA, "protocol-error", text)
        return False

    async def _acks(self) -> None:
        acks, ws = self.session.acks, self.ws
        loop = asyncio.get_running_loop()
        while True:
            await self._ack_wanted.wait()
            if not self._ack_now.is_set():
                with contextlib.suppress(TimeoutError):
                    await asyncio.wait_for(self._ack_now.wait(), ACK_INTERVAL)
            if (gap := self._next_ack - loop.time()) > 0:
                await asyncio.sleep(gap)
            self._ack_wanted.clear()
            self._ack_now.clear()
            if acks.pending:
                self._next_ack = loop.time() + ACK_GAP
                await ws.send(encode_control(Ack(acks.take())))


class Registry:
    """The gateway's resumable sessions, by id digest."""

    def __init__(self, *, buffer: int, grace: float, open_timeout: float = 10.0,
                 close_timeout: float = 5.0, node: str = "") -> None:
        self.buffer = buffer
        self.node = node  # told to clients: a resume names it for the load balancer
        self.grace = grace
        self.open_timeout = open_timeout
        self.close_timeout = close_timeout
        self._sessions: dict[bytes, ResumableSession] = {}
        self._tasks: set[asyncio.Task[None]] = set()

    @property
    def detached(self) -> int:
        """Sessions kept with no connection."""
        return sum(1 for s in self._sessions.values() if s.attachment is None)

    def snapshot(self) -> list[dict[str, Any]]:
        """Each session's place, state and offsets (never its id)."""
        return [{"endpoint": s.place.endpoint, "state": s.state, "start": s.out.start,
                 "end": s.out.end, "received": s.acks.received, "evicted": s.evicted,
                 "waiting": s.waiting}
                for s in self._sessions.values()]

    async def serve(self, ws: ServerConnection, ctx: SessionContext) -> None:
        """Serve a v2 dial (new or resuming), or refuse a resume that came over v1."""
        if ws.subprotocol != SUBPROTOCOL_V2:
            await _close(ws, CloseCode.SESSION_GONE, SESSION_GONE_REASON)
        elif ctx.resume:
            await self._resume(ws, ctx)
        else:
            await self._open(ws, ctx)

    async def close_all(self) -> None:
        """End every session (the gateway is stopping)."""
        await asyncio.gather(*(self._end(s, "the gateway stopped")
                               for s in list(self._sessions.values())))
        for task in list(self._tasks):
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await task

    # --- dials ------------------------------------------------------------------------------

    async def _open(self, ws: ServerConnection, ctx: SessionContext) -> None:
        backend = await self._backend(ws, ctx)
        if backend is None:
            return
        session_id = secrets.token_urlsafe(ID_BYTES)
        session = ResumableSession(_digest(session_id), owner_of(ctx.principal), Place.of(ctx),
                                   backend, request_id=ctx.request_id, limit=self.buffer)
        self._sessions[session.digest] = session
        session.start()
        log.info("request %s: resumable %s opened", ctx.request_id, ctx.endpoint)
        await self._attach(session, ws, 0, SessionStarted(session_id, ctx.instance or "",
                                                          self.node))

    async def _backend(self, ws: ServerConnection, ctx: SessionContext) -> Backend | None:
        service = ctx.service
        if ctx.shell is not None:
            request = ctx.shell
            process = ShellProcess(service, ctx.instance or service.name, request.argv,
                                   tty=request.tty, cols=request.cols, rows=request.rows)
            return ShellBackend(process) if await start_shell(ws, process) else None
        assert ctx.port is not None
        target = await open_target(ws, service.name, service.host, ctx.port,
                                   request_id=ctx.request_id)
        return None if target is None else TcpBackend(*target, service.name, ctx.port)

    async def _resume(self, ws: ServerConnection, ctx: SessionContext) -> None:
        resume = await self._resume_message(ws)
        if resume is None:
            return
        session = self._sessions.get(_digest(resume.id))
        if (session is None or session.gone or session.owner != owner_of(ctx.principal)
                or session.place != Place.of(ctx)):
            log.info("request %s: resume refused: no such session", ctx.request_id)
            await _close(ws, CloseCode.SESSION_GONE, SESSION_GONE_REASON)
            return
        if resume.received > session.out.end:
            await close_with(ws, CloseCode.PROTOCOL_ERROR, "protocol-error",
                             "resume claims bytes that were never sent")
            return
        old = session.attachment
        if old is not None:  # the old connection is dead but not yet noticed: take over
            old.kicked.set()
            try:
                await asyncio.wait_for(old.done.wait(), self.close_timeout + 5.0)
            except TimeoutError:
                log.error("request %s: the old connection of a session did not let go",
                          ctx.request_id)
                await close_with(ws, CloseCode.TRY_AGAIN_LATER, "overloaded",
                                 "the session is busy; try again")
                return
        lost = session.out.missing(resume.received)
        if session.gone or lost:
            log.info("request %s: resume refused: %d bytes lost", ctx.request_id, lost)
            await _close(ws, *((CloseCode.RESUME_LOST, resume_lost_reason(lost)) if lost
                               else (CloseCode.SESSION_GONE, SESSION_GONE_REASON)))
            await self._end(session, "a resume came after bytes were lost")
            return
        session.acknowledge(resume.received)
        log.info("request %s: resumed the %s of request %s", ctx.request_id,
                 session.place.endpoint, session.request_id)
        await self._attach(session, ws, resume.received, Resumed(session.acks.take()))

    async def _resume_message(self, ws: ServerConnection) -> Resume | None:
        """The client's first message, which must be a resume; None after closing."""
        try:
            message = await asyncio.wait_for(ws.recv(), self.open_timeout)
        except TimeoutError:
            await close_with(ws, CloseCode.PROTOCOL_ERROR, "protocol-error",
                             "a resuming dial must send its resume message at once")
            return None
        except ConnectionClosed:
            return None
        try:
            if isinstance(message, bytes):
                raise ProtocolViolation("a resuming dial must begin with a resume message")
            resume = decode_control_v2(message)
            if not isinstance(resume, Resume):
                raise ProtocolViolation("a resuming dial must begin with a resume message")
        except ProtocolViolation as exc:
            await close_with(ws, violation_close_code(exc), "protocol-error", str(exc))
            return None
        return resume

    # --- a connection's life ----------------------------------------------------------------

    async def _attach(self, session: ResumableSession, ws: ServerConnection, sent: int,
                      first: SessionStarted | Resumed) -> None:
        attachment = Attachment(session, ws, sent, self.close_timeout)
        session.attach(attachment)
        verdict = "detach"
        try:
            await ws.send(encode_control(first))
            await attachment.run()
            verdict = attachment.verdict()
        except ConnectionClosed:
            verdict = "end" if isinstance(first, SessionStarted) else "detach"  # id never seen
        finally:
            session.detach(attachment)
            if verdict == "detach" and not session.gone:
                self._start_grace(session)
            elif verdict != "detach":
                await self._end(session, "completed" if verdict == "complete"
                                else "the client ended it")
            attachment.done.set()

    def _start_grace(self, session: ResumableSession) -> None:
        log.info("request %s: %s detached (%d bytes unacknowledged); kept %.0f s",
                 session.request_id, session.place.endpoint, session.out.size, self.grace)
        loop = asyncio.get_running_loop()
        session.grace = loop.call_later(self.grace, self._expire, session)

    def _expire(self, session: ResumableSession) -> None:
        task = asyncio.create_task(self._end(session, "its grace period ended"))
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)

    async def _end(self, session: ResumableSession, why: str) -> None:
        if session.gone:
            return
        session.gone = True
        self._sessions.pop(session.digest, None)
        if session.grace is not None:
            session.grace.cancel()
            session.grace = None
        if session.attachment is not None:
            session.attachment.kicked.set()
        await session.stop()
        log.info("request %s: %s ended: %s", session.request_id, session.place.endpoint, why)
