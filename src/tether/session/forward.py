"""Port-forward machinery: listeners, one WebSocket per accepted connection, and the reporter.

Threads::

    main thread      select() over the listeners; accepts; raises on Ctrl+C / SIGTERM
    per connection   dial (retry policy, single-flight refresh), then gateway -> local
                     and a second thread local -> gateway; keepalive inside Connection

A connection's halves close independently: local EOF sends ``{"type":"eof"}``
(tether.v1 peers only), the gateway's eof shuts down the local socket's writing
half, and the WebSocket closes 1000 once both are done. A connection that fails
is reported on one line and reset; the listeners keep serving. Only a dial that
fails permanently (credential after one refresh, role, unknown service) stops
the forward, through :meth:`Forwarder.fatal`.
"""

from __future__ import annotations

import contextlib
import errno
import selectors
import socket
import struct
import sys
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from tether.cli.options import Settings
from tether.cli.output.render import clean, emit_line, json_record, render_event
from tether.client.dial import OPCODE_TEXT, Closed, Connection, ParamValue, dial
from tether.client.retry import GiveUp, Refresh, RetryPolicy, RetryState, Wait
from tether.errors import Code, Failure, Phase, Retry, TetherError
from tether.protocol import SUBPROTOCOL, Eof, ProtocolViolation, decode_control, encode_control

if TYPE_CHECKING:
    from tether.client.supervisor import Attempt
    from tether.session.link import Link

READ_SIZE = 256 * 1024
#: How long the dial of one new connection may keep retrying transient failures.
CONNECTION_RETRY_FOR = 20.0
#: How long shutting down waits for open connections to close.
SHUTDOWN_GRACE = 3.0
_MAX_DIALS = 64  # per connection; the policy gives up long before
_PICK_TRIES = 20  # attempts to find one free port on every address
_REFRESH_NOTE_EVERY = 5.0
_EOF = encode_control(Eof())
_RESOURCE_ERRNOS = frozenset({errno.EMFILE, errno.ENFILE, errno.ENOBUFS, errno.ENOMEM})


def host_port(host: str, port: int) -> str:
    """``127.0.0.1:5432`` or ``[::1]:5432``."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


@dataclass(frozen=True)
class Route:
    """Where a listener's connections go: a service's port (on one instance, if given)."""

    service: str
    remote: int
    instance: str | None = None

    def params(self) -> dict[str, ParamValue]:
        """The query of ``/v1/port-forward``."""
        return {"service": self.service, "instance": self.instance, "port": self.remote}

    def __str__(self) -> str:
        name = f"{self.service}/{self.instance}" if self.instance else self.service
        return f"{name}:{self.remote}"


# --- listeners ---------------------------------------------------------------------------


@dataclass(frozen=True)
class BindAddress:
    """A local address to listen on; ``optional`` ones (from ``localhost``) may be missing."""

    host: str
    optional: bool = False


class Listener:
    """One listening socket of one mapping on one address."""

    def __init__(self, sock: socket.socket, host: str, route: Route) -> None:
        self.sock = sock
        self.host = host
        self.port: int = sock.getsockname()[1]
        self.route = route

    def __str__(self) -> str:
        return host_port(self.host, self.port)

    def close(self) -> None:
        """Stop listening. Idempotent."""
        self.sock.close()


def _bind_failure(exc: OSError, host: str, port: int) -> TetherError:
    where = host_port(host, port)
    number = exc.errno
    if number == errno.EADDRINUSE:
        message = f"The local port {where} is already in use by another program."
        hint = None
    elif number == errno.EACCES:
        message = f"Not allowed to listen on {where} (ports below 1024 need privileges)."
        hint = None
    elif number in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
        message = f"Cannot listen on {where}: {host} is not an address of this machine."
        hint = "Check --address; 127.0.0.1 (the default) or ::1 are always local."
    else:
        from tether.classify.core import classify_exception

        failure = classify_exception(exc, phase=Phase.LOCAL)
        return TetherError(failure.replace(message=f"Cannot listen on {where}: {failure.message}"))
    failure = Failure.of(Code.LOCAL_PORT_IN_USE, Phase.LOCAL, message, cause=exc)
    return TetherError(failure.replace(hint=hint) if hint else failure)


def _listen(host: str, port: int) -> socket.socket:
    family = socket.AF_INET6 if ":" in host else socket.AF_INET
    return socket.create_server((host, port), family=family, backlog=socket.SOMAXCONN)


def _bind_all(port: int, addresses: Sequence[BindAddress], route: Route) -> list[Listener]:
    """Listeners on ``port`` (0: the one the first address got) on every address."""
    out: list[Listener] = []
    try:
        for address in addresses:
            want = out[0].port if out else port
            try:
                sock = _listen(address.host, want)
            except OSError as exc:
                if address.optional and exc.errno in (errno.EADDRNOTAVAIL, errno.EAFNOSUPPORT):
                    continue
                raise _bind_failure(exc, address.host, want) from exc
            out.append(Listener(sock, address.host, route))
    except BaseException:
        for listener in out:
            listener.close()
        raise
    if not out:
        raise _bind_failure(OSError(errno.EADDRNOTAVAIL, "unavailable"), addresses[-1].host, port)
    return out


def bind_listeners(mappings: Sequence[tuple[int, Route]],
                   addresses: Sequence[BindAddress]) -> list[Listener]:
    """Bind every mapping (local port, route) on every address; raises TetherError.

    A local port of 0 picks one free port, the same on every address.
    """
    listeners: list[Listener] = []
    try:
        for local, route in mappings:
            for attempt in range(1 if local else _PICK_TRIES):
                try:
                    listeners.extend(_bind_all(local, addresses, route))
                    break
                except TetherError as err:
                    last_try = local or attempt == _PICK_TRIES - 1
                    if last_try or err.failure.code is not Code.LOCAL_PORT_IN_USE:
                        raise
    except BaseException:
        for listener in listeners:
            listener.close()
        raise
    return listeners


# --- reporting --------------------------------------------------------------------------


class ForwardReporter:
    """Writes what the forward does: listeners on stdout; connection events on stderr."""

    def __init__(self, settings: Settings) -> None:
        self._json = settings.json
        self._lock = threading.Lock()
        self._warned: set[str] = set()
        self._refresh_noted = -_REFRESH_NOTE_EVERY

    def _emit(self, line: str) -> None:
        with self._lock:
            emit_line(line)

    def forwarding(self, listeners: Sequence[Listener]) -> None:
        """One line per listener on stdout: ``Forwarding from 127.0.0.1:5432 -> api:5432``."""
        lines = []
        for listener in listeners:
            route = listener.route
            if self._json:
                lines.append(render_event("forwarding", address=listener.host,
                                          local_port=listener.port, service=route.service,
                                          instance=route.instance, remote_port=route.remote))
            else:
                lines.append(f"Forwarding from {listener} -> {clean(str(route), limit=200)}")
        sys.stdout.write("".join(line + "\n" for line in lines))
        sys.stdout.flush()

    def connection_failed(self, peer: str, route: Route, failure: Failure) -> None:
        """One classified line (or JSON event) for a connection that failed."""
        if self._json:
            record = json_record(failure)
            del record["event"]
            self._emit(render_event("connection-failed", connection=peer, target=str(route),
                                    **record))
            return
        message = clean(failure.message, limit=400).rstrip(". ")
        said = f" (request id {clean(failure.request_id, limit=80)})" if failure.request_id else ""
        self._emit(f"connection {peer} -> {clean(str(route), limit=200)} failed: "
                   f"{failure.code}: {message}{said}")

    def connection_retrying(self, peer: str, route: Route, failure: Failure, attempt: int,
                            delay: float) -> None:
        """The dial of one connection failed transiently and is tried again after ``delay``."""
        if self._json:
            self._emit(render_event("connection-retry", connection=peer, target=str(route),
                                    code=str(failure.code), attempt=attempt,
                                    delay=round(delay, 3), message=failure.message))
            return
        message = clean(failure.message, limit=300).rstrip(". ")
        self._emit(f"connection {peer} -> {clean(str(route), limit=200)}: {failure.code}: "
                   f"{message}; retrying in {delay:.1f} s (attempt {attempt})")

    def refreshing(self, failure: Failure) -> None:
        """The token is being renewed (said once however many connections asked)."""
        now = time.monotonic()
        with self._lock:
            if now - self._refresh_noted < _REFRESH_NOTE_EVERY:
                return
            self._refresh_noted = now
        if self._json:
            self._emit(render_event("refresh", code=str(failure.code)))
        else:
            self._emit(f"{failure.code}: refreshing the token and trying once more.")

    def warning(self, text: str) -> None:
        """Something to know that does not stop the forward; each text once."""
        with self._lock:
            if text in self._warned:
                return
            self._warned.add(text)
        self._emit(render_event("warning", message=text) if self._json
                   else f"warning: {clean(text, limit=500)}")

    def closed(self, count: int) -> None:
        """How many open connections were closed on the way out."""
        if self._json:
            self._emit(render_event("closed", connections=count))
        else:
            self._emit(f"Closed {count} connection{'' if count == 1 else 's'}.")


def probe_close(conn: Connection, attempt: Attempt) -> str | None:
    """Close a probe connection at once; what the gateway said if the target was unreachable."""
    conn.close()
    reason = conn.close_reason or ""
    if conn.close_code == 1011 and reason.startswith(str(Code.TARGET_UNREACHABLE)):
        return clean(reason, limit=200)
    return None


# --- one forwarded connection --------------------------------------------------------------


class _Forwarded:
    """One accepted TCP connection bridged to its own WebSocket."""

    def __init__(self, owner: Forwarder, client: socket.socket, peer: str, route: Route) -> None:
        self.owner = owner
        self.client = client
        self.peer = peer
        self.route = route
        self.conn: Connection | None = None
        self.thread = threading.Thread(target=self._run, name=f"tether-forward-{peer}",
                                       daemon=True)
        self._lock = threading.Lock()
        self._halves = 0
        self._aborted = False
        self._failed = False

    def abort(self) -> None:
        """Close this connection because the forward is stopping (from any thread)."""
        self._aborted = True
        with contextlib.suppress(OSError):
            self.client.shutdown(socket.SHUT_RDWR)
        conn = self.conn
        if conn is not None:  # the reader may be waiting on a quiet peer: close it too
            threading.Thread(target=conn.close, args=(1001,), daemon=True,
                             name=f"tether-close-{self.peer}").start()

    def _run(self) -> None:
        upstream: threading.Thread | None = None
        try:
            conn = self._dial()
            if conn is None:
                return
            self.conn = conn
            if self._aborted:
                conn.close(1001)
                return
            tether = conn.subprotocol == SUBPROTOCOL
            upstream = threading.Thread(target=self._upstream, args=(conn, tether),
                                        name=f"tether-upstream-{self.peer}", daemon=True)
            upstream.start()
            self._downstream(conn, tether)
        except Exception as exc:  # a bug must not take the listener down
            self._fail(Failure.of(Code.INTERNAL_ERROR, Phase.SESSION,
                                  f"unexpected {type(exc).__name__} in this connection",
                                  cause=exc))
        finally:
            self._release(upstream)
            self.owner.finished(self)

    def _release(self, upstream: threading.Thread | None) -> None:
        sock = self.client
        reset = self._failed or self.conn is None  # tell the local client it did not work
        with contextlib.suppress(OSError):
            if reset:
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
            sock.shutdown(socket.SHUT_RD if reset else socket.SHUT_RDWR)  # wakes the upstream
        if upstream is not None:
            upstream.join(SHUTDOWN_GRACE)
        sock.close()
        if self.conn is not None and not self.conn.closed:
            self.conn.close(1001 if self._aborted else 1000)

    def _dial(self) -> Connection | None:
        """A WebSocket for this connection under the retry policy; None when there is none."""
        owner = self.owner
        state = RetryState(owner.policy)
        for _ in range(_MAX_DIALS):
            if owner.stopping or self._aborted:
                return None
            try:
                return owner.dial(self.route)
            except TetherError as err:
                failure = err.failure
            decision = state.decide(failure, refreshable=owner.refreshable, now=time.monotonic())
            if isinstance(decision, Refresh):
                if not owner.refresh(failure, self):
                    return None
            elif isinstance(decision, Wait):
                owner.reporter.connection_retrying(self.peer, self.route, failure,
                                                   decision.attempt, decision.delay)
                if owner.wait_stopping(decision.delay):
                    return None
            elif isinstance(decision, GiveUp):
                if decision.failure.retry in (Retry.NEVER, Retry.REFRESH_ONCE):
                    owner.fatal(decision.failure, self)
                else:
                    self._fail(decision.failure)
                return None
        return None

    def _fail(self, failure: Failure) -> None:
        with self._lock:
            if self._failed or self._aborted:
                return
            self._failed = True
        self.owner.reporter.connection_failed(self.peer, self.route, failure)

    def _half_done(self, conn: Connection) -> None:
        with self._lock:
            self._halves += 1
            both = self._halves == 2
        if both:
            conn.close()

    def _upstream(self, conn: Connection, tether: bool) -> None:
        """Local -> gateway; at local EOF, ``eof`` (tether.v1) and half done."""
        recv, send = self.client.recv, conn.send_binary
        try:
            while data := recv(READ_SIZE):
                send(data)
            if self._aborted:
                conn.close(1001)
            elif tether:
                conn.send_text(_EOF)
                self._half_done(conn)
        except (TetherError, Closed):
            return  # the connection ended: the downstream side reports why
        except OSError:
            conn.close()  # the local client reset: nothing to report

    def _downstream(self, conn: Connection, tether: bool) -> None:
        """Gateway -> local until the WebSocket ends; a failure is reported once."""
        sendall = self.client.sendall
        try:
            while (message := conn.recv()) is not None:
                if tether and message.opcode == OPCODE_TEXT:
                    if not isinstance(decode_control(message.data), Eof):
                        raise ProtocolViolation("port-forward takes only data and eof")
                    with contextlib.suppress(OSError):
                        self.client.shutdown(socket.SHUT_WR)
                    self._half_done(conn)
                    continue
                sendall(message.data)
        except TetherError as err:
            self._fail(err.failure)
        except ProtocolViolation as exc:
            self._fail(Failure.of(Code.PROTOCOL_ERROR, Phase.SESSION,
                                  f"The gateway broke tether.v1: {exc}", close_code=1002,
                                  request_id=conn.request_id, url=conn.url))
            conn.close(1002, "protocol-error")
        except OSError:
            conn.close(1001 if self._aborted else 1000)  # the local client went away


# --- the forward -------------------------------------------------------------------------


class Forwarder:
    """Accepts on every listener and forwards each connection over its own WebSocket."""

    def __init__(self, link: Link, listeners: Sequence[Listener], reporter: ForwardReporter,
                 *, policy: RetryPolicy | None = None) -> None:
        self.link = link
        self.listeners = list(listeners)
        self.reporter = reporter
        retry_for = min(link.settings.retry_for, CONNECTION_RETRY_FOR)
        self.policy = policy or RetryPolicy(retry_for=retry_for,
                                            connect_budget=min(retry_for, CONNECTION_RETRY_FOR))
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
    def stopping(self) -> bool:
        """True once the forward is stopping."""
        return self._stop.is_set()

    @property
    def refreshable(self) -> bool:
        """Whether the credential can be refreshed."""
        return bool(self.link.credential.refreshable)

    @property
    def open_connections(self) -> int:
        """Accepted connections not yet finished."""
        with self._lock:
            return len(self._active)

    def wait_stopping(self, seconds: float) -> bool:
        """Sleep ``seconds`` unless the forward stops first (then True)."""
        return self._stop.wait(seconds)

    def dial(self, route: Route) -> Connection:
        """One dial of ``route``; raises TetherError."""
        link = self.link
        return dial(link.gateway, "port-forward", route.params(), link.credential, link.options,
                    role=link.role, warn=self.reporter.warning)

    def refresh(self, failure: Failure, who: _Forwarded) -> bool:
        """Refresh the credential (single-flight in the credential); False if that failed."""
        self.reporter.refreshing(failure)
        try:
            self.link.credential.refresh()
        except TetherError as err:
            self.fatal(err.failure, who)
            return False
        return True

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
                    self.reporter.warning(f"cannot accept on {listener}: "
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
