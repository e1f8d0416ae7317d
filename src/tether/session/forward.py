"""Port-forward: one WebSocket per connection accepted on the listeners, each under the supervisor.

Threads::

    main thread      select() over the listeners; accepts; raises on Ctrl+C / SIGTERM
    per connection   dial under the supervisor (its own policy: CONNECTION_RETRY_FOR),
                     then gateway -> local and a second thread local -> gateway;
                     keepalive inside Connection

A connection's halves close independently: local EOF sends ``{"type":"eof"}``
(tether peers only), the gateway's eof shuts down the local socket's writing
half, and the WebSocket closes 1000 once both are done. With a tether.v2
gateway each connection is a resumable session (:mod:`tether.session.resume`):
a cut detaches it, the local connection stays open (its bytes wait in the
replay buffer, then the local socket is no longer read), and the supervisor's
redial resumes it within ``--retry-for``. A connection that fails otherwise
is reported on one line and reset; the listeners keep serving. Only a dial that
fails permanently (credential after one refresh, role, unknown service) stops
the forward, through :meth:`Forwarder.fatal`, worded as :func:`supervise` words
it for logs and shell. What happens is told to a :class:`ForwardEvents`.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from typing import TYPE_CHECKING, Protocol

from tether.client.dial import OPCODE_TEXT, Closed, Connection
from tether.client.retry import RetryPolicy
from tether.errors import Code, Failure, Interrupted, Phase, Retry, TetherError
from tether.protocol import (
    SUBPROTOCOL,
    SUBPROTOCOL_V2,
    Ack,
    Eof,
    ProtocolViolation,
    SessionStarted,
    decode_control,
    decode_control_v2,
    encode_control,
)
from tether.session.link import supervise
from tether.session.listeners import Listener, Route, host_port
from tether.session.resume import Cut, Detachment, Resumable, Resumption, resumable
from tether.text import strip_control

if TYPE_CHECKING:
    from tether.client.dial import ParamValue
    from tether.client.supervisor import Attempt
    from tether.session.link import Link, LinkReporter

READ_SIZE = 256 * 1024
_ROOM_WAIT = 0.5  # seconds between checks of the end while the replay buffer is full
#: How long the dial of one new connection may keep retrying transient failures.
CONNECTION_RETRY_FOR = 20.0
#: How long shutting down waits for open connections to close.
SHUTDOWN_GRACE = 3.0
_EOF = encode_control(Eof())
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


# --- reporting --------------------------------------------------------------------------


class ForwardEvents(Protocol):
    """What the forward tells about its connections; the CLI implements it."""

    def connection_failed(self, peer: str, route: Route, failure: Failure) -> None:
        """The connection from ``peer`` failed with ``failure``; it was reset."""

    def connection_retrying(self, peer: str, route: Route, failure: Failure, attempt: int,
                            delay: float) -> None:
        """The dial for ``peer`` failed transiently; the next is in ``delay`` seconds."""

    def refreshing(self, failure: Failure) -> None:
        """The token is being renewed because of ``failure`` (any number of connections may say)."""

    def warning(self, text: str) -> None:
        """Something to know that does not stop the forward (the same text may come again)."""

    def connection_detached(self, peer: str, route: Route, detachment: Detachment) -> None:
        """The v2 session of the connection from ``peer`` lost its connection; it is being
        resumed (said before each redial's wait, ``detachment.first`` for the first)."""

    def connection_resumed(self, peer: str, route: Route, resumption: Resumption) -> None:
        """The v2 session of the connection from ``peer`` resumed; nothing was lost."""


class _ConnectionStatus:
    """The supervisor's reporter for one forwarded connection: its events, by peer and route."""

    def __init__(self, events: ForwardEvents, peer: str, route: Route) -> None:
        self._events = events
        self._peer = peer
        self._route = route
        self.cut = Cut()

    def _tell(self, detachment: Detachment | None) -> bool:
        if detachment is None:
            return False
        self._events.connection_detached(self._peer, self._route, detachment)
        return True

    def retrying(self, failure: Failure, attempt: int, delay: float) -> None:
        """The dial of this connection is tried again after ``delay`` (to resume it, if
        its session is detached)."""
        if not self._tell(self.cut.detachment(failure, attempt, delay)):
            self._events.connection_retrying(self._peer, self._route, failure, attempt, delay)

    def resumed(self, resumption: Resumption) -> None:
        """The session is back."""
        self.cut.end()
        self._events.connection_resumed(self._peer, self._route, resumption)

    def reconnected(self, attempt: int) -> None:
        """Nothing to say: the connection's bytes flow."""

    def refreshing(self, failure: Failure) -> None:
        """The token is being renewed (a session it detached is told first)."""
        self._tell(self.cut.untold(failure))
        self._events.refreshing(failure)

    def warning(self, text: str) -> None:
        """Something to know that does not stop the forward."""
        self._events.warning(text)

    def clear(self) -> None:
        """Nothing transient is shown."""


def probe_close(conn: Connection, attempt: Attempt) -> str | None:
    """Close a probe connection at once; what the gateway said if the target was unreachable."""
    conn.close()
    reason = conn.close_reason or ""
    if conn.close_code == 1011 and reason.startswith(str(Code.TARGET_UNREACHABLE)):
        return strip_control(reason, limit=200)
    return None


# --- one forwarded connection --------------------------------------------------------------


def _internal(exc: Exception) -> Failure:
    return Failure.of(Code.INTERNAL_ERROR, Phase.SESSION,
                      f"unexpected {type(exc).__name__} in this connection", cause=exc)


class _Forwarded:
    """One accepted TCP connection bridged to its own WebSocket (one after another, for a
    tether.v2 session that is resumed)."""

    def __init__(self, owner: Forwarder, client: socket.socket, peer: str, route: Route) -> None:
        self.owner = owner
        self.client = client
        self.peer = peer
        self.route = route
        self.conn: Connection | None = None
        self.status = _ConnectionStatus(owner.events, peer, route)
        self.stream: Resumable | None = None  # the v2 session
        self.thread = threading.Thread(target=self._run, name=f"tether-forward-{peer}",
                                       daemon=True)
        self._upstream: threading.Thread | None = None
        self._lock = threading.Lock()
        self._halves = 0
        self._remote_eof = False
        self._aborted = False
        self._failed = False
        self._released = False

    def abort(self) -> None:
        """Close this connection because the forward is stopping (from any thread)."""
        self._aborted = True
        with contextlib.suppress(OSError):
            self.client.shutdown(socket.SHUT_RDWR)
        conn = self.conn
        if conn is not None:  # the reader may be waiting on a quiet peer: close it too
            threading.Thread(target=conn.close, args=(1001,), daemon=True,
                             name=f"tether-close-{self.peer}").start()

    def params(self, attempt: Attempt) -> dict[str, ParamValue]:
        """The query of each dial: ``resume=1`` (and the node) while the v2 session waits to be
        resumed."""
        params = self.route.params()
        if self.stream is not None:
            params.update(self.stream.resume_params())
        return params

    def _run(self) -> None:
        owner = self.owner
        try:
            owner.connect(self.params, self._bridge, self.status)
        except Interrupted:
            pass  # the forward is stopping
        except TetherError as err:  # the dial gave up
            if err.failure.retry in (Retry.NEVER, Retry.REFRESH_ONCE):
                owner.fatal(err.failure, self)
            else:
                self._fail(err.failure)
        except Exception as exc:  # a bug must not take the listener down
            self._fail(_internal(exc))
        finally:
            self._release()
            owner.finished(self)

    def _bridge(self, conn: Connection, attempt: Attempt) -> None:
        """The supervisor's handler: both directions until done. Failures are reported here,
        except a cut of a v2 session, which goes to the supervisor to be resumed."""
        self.conn = conn
        stream = self.stream
        try:
            if self._aborted:
                return
            if stream is not None:
                self.status.resumed(stream.resume(conn))
            elif conn.subprotocol == SUBPROTOCOL_V2:
                stream = self.stream = Resumable(conn, frame=_raw)
            if stream is None:
                self._bridge_v1(conn)
                return
            if self._upstream is None:
                self._upstream = threading.Thread(
                    target=self._upstream_v2, args=(stream,), daemon=True,
                    name=f"tether-upstream-{self.peer}")
                self._upstream.start()
            self._downstream(conn, stream)
        except TetherError as err:
            if stream is not None and stream.can_resume and resumable(err.failure) and \
                    not self._aborted and not self._released:
                stream.detach(conn)
                self.status.cut.begin(stream, attempt.number)
                raise
            self._fail(err.failure)
        except ProtocolViolation as exc:
            self._fail(Failure.of(Code.PROTOCOL_ERROR, Phase.SESSION,
                                  f"The gateway broke the protocol: {exc}", close_code=1002,
                                  request_id=conn.request_id, url=conn.url))
            conn.close(1002, "protocol-error")
        except Exception as exc:  # a bug must not take the listener down
            self._fail(_internal(exc))

    def _bridge_v1(self, conn: Connection) -> None:
        """tether.v1 or a plain bridge: one connection, the local socket's life."""
        tether = conn.subprotocol == SUBPROTOCOL
        self._upstream = threading.Thread(target=self._upstream_v1, args=(conn, tether),
                                          name=f"tether-upstream-{self.peer}", daemon=True)
        self._upstream.start()
        self._downstream(conn, None, tether=tether)

    def _release(self) -> None:
        """Reset (failed or never connected) or close the local socket, then the WebSocket."""
        with self._lock:
            if self._released:
                return
            self._released = True
        sock = self.client
        reset = self._failed or self.conn is None  # tell the local client it did not work
        with contextlib.suppress(OSError):
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)  # wakes the upstream
        if self.stream is not None:
            self.stream.close()  # wakes an upstream waiting for room
        if self._upstream is not None:
            self._upstream.join(SHUTDOWN_GRACE)
        sock.close()
        if self.conn is not None and not self.conn.closed:
            self.conn.close(1001 if self._aborted else 1000)

    def _fail(self, failure: Failure) -> None:
        with self._lock:
            if self._failed or self._aborted:
                return
            self._failed = True
        self.owner.events.connection_failed(self.peer, self.route, failure)

    def _half_done(self) -> None:
        with self._lock:
            self._halves += 1
            both = self._halves == 2
        conn, stream = self.conn, self.stream
        # A v2 session is the gateway's to complete (it closes once our eof has come): closing
        # first would end it with bytes of ours still unprocessed, so only when all is acked.
        if both and conn is not None and (stream is None or stream.delivered(conn)):
            conn.close()

    def _upstream_v1(self, conn: Connection, tether: bool) -> None:
        """Local -> gateway; at local EOF, ``eof`` (tether.v1) and half done."""
        recv, send = self.client.recv, conn.send_binary
        try:
            while data := recv(READ_SIZE):
                send(data)
            if self._aborted:
                conn.close(1001)
            elif tether:
                conn.send_text(_EOF)
                self._half_done()
        except (TetherError, Closed):
            return  # the connection ended: the downstream side reports why
        except OSError:
            conn.close()  # the local client reset: nothing to report

    def _upstream_v2(self, stream: Resumable) -> None:
        """Local -> replay buffer -> gateway, across connections; reads only while the buffer
        has room. At local EOF, ``eof`` and half done."""
        recv_into = self.client.recv_into
        try:
            while True:
                count = stream.read_into(recv_into, READ_SIZE, _ROOM_WAIT)
                if count is None:  # no room: the gateway is behind, or the forward ended
                    if self._released or stream.closed:
                        return
                    continue
                if not count:
                    break
            conn = self.conn
            if self._aborted:
                if conn is not None:
                    conn.close(1001)
            elif not self._released:
                stream.send_eof()
                self._half_done()
        except OSError:
            conn = self.conn
            if conn is not None:
                conn.close()  # the local client reset: the session ends

    def _downstream(self, conn: Connection, stream: Resumable | None, *,
                    tether: bool = True) -> None:
        """Gateway -> local until the WebSocket ends; raises TetherError when it broke."""
        sendall = self.client.sendall
        try:
            while (message := conn.recv()) is not None:
                if tether and message.opcode == OPCODE_TEXT:
                    self._control(conn, stream, message.data)
                    continue
                sendall(message.data)
                if stream is not None:
                    stream.received(len(message.data))
        except OSError:
            conn.close(1001 if self._aborted else 1000)  # the local client went away

    def _control(self, conn: Connection, stream: Resumable | None, data: bytes) -> None:
        control = decode_control(data) if stream is None else decode_control_v2(data)
        if isinstance(control, Ack) and stream is not None:
            stream.acked(conn, control.received)
        elif isinstance(control, SessionStarted) and stream is not None:
            stream.opened(control)
        elif isinstance(control, Eof):
            if not self._remote_eof:  # a repeated eof (after a resume) changes nothing
                self._remote_eof = True
                with contextlib.suppress(OSError):
                    self.client.shutdown(socket.SHUT_WR)
                self._half_done()
        else:
            raise ProtocolViolation("port-forward takes only data, ack and eof")


def _raw(tag: int, data: bytes | memoryview) -> bytes | memoryview:
    return data


# --- the forward -------------------------------------------------------------------------


class Forwarder:
    """Accepts on every listener and forwards each connection over its own WebSocket."""

    def __init__(self, link: Link, listeners: Sequence[Listener], events: ForwardEvents,
                 *, policy: RetryPolicy | None = None) -> None:
        self.link = link
        self.listeners = list(listeners)
        self.events = events
        retry_for = min(link.retry_for, CONNECTION_RETRY_FOR)
        self.policy = policy or RetryPolicy(retry_for=retry_for,
                                            connect_budget=min(retry_for, CONNECTION_RETRY_FOR))
        self.resume_policy = RetryPolicy(retry_for=link.retry_for,
                                         connect_budget=max(link.retry_for, 0.0),
                                         rng=self.policy.rng)
        self.accepted = 0
        self._stop = threading.Event()
        self._lock = threading.Lock()
        self._active: set[_Forwarded] = set()
        self._fatal: Failure | None = None
        self._closed: int | None = None
        self._wake_r, self._wake_w = socket.socketpair()
        self._wake_r.setblocking(False)
        self._wake_w.setblocking(False)

    # --- what connections use ---

    @property
    def open_connections(self) -> int:
        """Accepted connections not yet finished."""
        with self._lock:
            return len(self._active)

    def connect(self, params: Callable[[Attempt], Mapping[str, ParamValue]],
                handler: Callable[[Connection, Attempt], None], status: LinkReporter) -> None:
        """Dial under the supervisor with the connections' policy and run ``handler``; once
        connected, a cut is resumed within ``--retry-for``.

        Raises TetherError when the dial gives up, Interrupted when the forward stops first.
        """
        supervise(self.link, "port-forward", params, handler, status, policy=self.policy,
                  established_policy=self.resume_policy, resumable=True, sleep=self._sleep)

    def _sleep(self, seconds: float) -> None:
        """Wait before a redial; Interrupted when the forward stops meanwhile."""
        if self._stop.wait(seconds):
            raise Interrupted()

    def fatal(self, failure: Failure, who: _Forwarded | None = None) -> None:
        """A permanent failure: stop the forward; :meth:`serve` raises it."""
        with self._lock:
            if self._fatal is None:
                self._fatal = failure
            if who is not None:
                self._active.discard(who)
        self.stop()

    def finished(self, who: _Forwarded) -> None:
        """A connection is done."""
        with self._lock:
            self._active.discard(who)

    # --- serving ---

    def stop(self) -> None:
        """Make :meth:`serve` return (thread-safe)."""
        self._stop.set()
        with contextlib.suppress(OSError):
            self._wake_w.send(b"x")

    def serve(self) -> None:
        """Accept until :meth:`stop`; after a permanent failure, shut down and raise it.

        KeyboardInterrupt and Interrupted pass through; call :meth:`shutdown` after.
        """
        with selectors.DefaultSelector() as selector:
            for listener in self.listeners:
                listener.sock.setblocking(False)
                selector.register(listener.sock, selectors.EVENT_READ, listener)
            selector.register(self._wake_r, selectors.EVENT_READ, None)
            while not self._stop.is_set():
                for key, _ in selector.select(timeout=1.0):
                    if key.data is None:
                        with contextlib.suppress(OSError):
                            self._wake_r.recv(64)
                    elif not self._stop.is_set():
                        self._accept(key.data)
        if self._fatal is not None:
            self.shutdown()
            raise TetherError(self._fatal)

    def _accept(self, listener: Listener) -> None:
        for _ in range(64):  # what is pending now; select() reports the rest
            try:
                client, address = listener.sock.accept()
            except (BlockingIOError, InterruptedError):
                return
            except OSError as exc:  # the listener keeps serving whatever happened
                if exc.errno in _RESOURCE_ERRNOS:
                    self.events.warning(f"cannot accept on {listener}: "
                                          f"{exc.strerror or exc}; waiting")
                    self._stop.wait(0.1)
                return
            client.setblocking(True)
            with contextlib.suppress(OSError):
                client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            forwarded = _Forwarded(self, client, host_port(address[0], address[1]),
                                   listener.route)
            with self._lock:
                if self._stop.is_set():
                    client.close()
                    return
                self._active.add(forwarded)
                self.accepted += 1
            forwarded.thread.start()

    def shutdown(self) -> int:
        """Stop; close the listeners and every open connection; how many were open. Idempotent."""
        with self._lock:
            if self._closed is not None:
                return self._closed
            active = list(self._active)
            self._closed = len(active)
        self.stop()
        for listener in self.listeners:
            listener.close()
        for forwarded in active:
            forwarded.abort()
        deadline = time.monotonic() + SHUTDOWN_GRACE
        for forwarded in active:
            forwarded.thread.join(max(0.0, deadline - time.monotonic()))
        self._wake_r.close()
        self._wake_w.close()
        return len(active)
