"""Resumable sessions (tether.v2): the registry of sessions kept through cuts, opening and
resuming them, and their grace period.

A session outlives its connections (the data path is ``stream.py``). Its
backend (a shell's pty or pipes, a forwarded TCP connection) is read into a
:class:`~tether.replay.ReplayBuffer` bounded by ``resume_buffer``; the attached
connection sends from that buffer, and the client's acks free it. When it is
full the backend is not read (backpressure),
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

from tether.gateway.connection import GatewayConnection
from tether.gateway.forward import open_target
from tether.gateway.session import Backend, SessionContext, close_with, violation_close_code
from tether.gateway.shell import ShellBackend, ShellProcess, start_shell
from tether.gateway.stream import Attachment, Session
from tether.gateway.tokens import Principal
from tether.protocol import (
    SESSION_GONE_REASON,
    SUBPROTOCOL_V2,
    CloseCode,
    ProtocolViolation,
    Resume,
    Resumed,
    SessionStarted,
    decode_control_v2,
    encode_control,
    resume_lost_reason,
)

log = logging.getLogger("tether.gateway.resumable")
ID_BYTES = 24  # 192 bits


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


class ResumableSession(Session):
    """A tether.v2 session: a :class:`Session` kept by id for its owner and place."""

    def __init__(self, digest: bytes, owner: str, place: Place, backend: Backend, *,
                 request_id: str, limit: int) -> None:
        super().__init__(backend, limit=limit, resumable=True, request_id=request_id,
                         endpoint=place.endpoint)
        self.digest = digest
        self.owner = owner
        self.place = place
        self.grace: asyncio.TimerHandle | None = None

    def attach(self, attachment: Attachment) -> None:
        if self.grace is not None:
            self.grace.cancel()
            self.grace = None
        super().attach(attachment)


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
        log.info("request %s: resumable %s opened", ctx.request_id, ctx.endpoint)
        await self._attach(session, ws, 0, SessionStarted(session_id, ctx.instance or "",
                                                          self.node))

    async def _backend(self, ws: ServerConnection, ctx: SessionContext) -> Backend | None:
        service = ctx.service
        if ctx.shell is not None:
            process = ShellProcess(service, ctx.instance or service.name, ctx.shell)
            return ShellBackend(process) if await start_shell(ws, process) else None
        assert ctx.port is not None
        return await open_target(ws, service.name, service.host, ctx.port,
                                 request_id=ctx.request_id)

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
        assert isinstance(ws, GatewayConnection)
        attachment = Attachment(session, ws, sent, close_timeout=self.close_timeout,
                                decode=decode_control_v2)
        session.attach(attachment)
        verdict = "detach"
        try:
            if ws.send_now(encode_control(first)):
                if isinstance(first, SessionStarted):
                    session.start()
                await attachment.run()
                verdict = attachment.verdict()
            elif isinstance(first, SessionStarted):
                verdict = "end"  # the client never learnt the id
        finally:
            session.detach(attachment)
            if verdict == "detach" and not session.gone:
                self._start_grace(session)
            elif verdict != "detach":
                if verdict == "end":  # what came before the client's close goes in first
                    await session.input.flushed(self.close_timeout)
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
