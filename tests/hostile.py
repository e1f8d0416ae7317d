"""A hostile test server on 127.0.0.1:0: it answers whatever a test tells it to.

Each accepted connection runs the next *behaviour* (the last one repeats), a
function of a :class:`Peer`::

    with HostileServer(respond(503), upgrade_then(close(1000))) as server:
        dial(server.url, ...)
        assert server.dials == 1

Behaviours can answer any status with any headers and body, accept and never
answer, upgrade then go silent, send a close frame, drop without one, answer
101 without a subprotocol, trickle bytes, announce a longer body than they send,
answer every request with a captive portal's sign-in page (:func:`portal`).
The server counts connections, records requests, stops itself after
``lifetime`` seconds, and runs only daemon threads, all stopped by ``stop()``.
:class:`ConnectProxy` is a tiny HTTP proxy (CONNECT, and plain requests in
absolute form) for loopback targets.
"""

from __future__ import annotations

import base64
import contextlib
import hashlib
import os
import select
import socket
import ssl
import struct
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from urllib.parse import parse_qs, urlsplit

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"


@dataclass
class Request:
    """The request line and headers a client sent (header names lowercased)."""

    method: str = ""
    target: str = ""
    path: str = ""
    query: dict[str, list[str]] = field(default_factory=dict)
    headers: dict[str, str] = field(default_factory=dict)


class Peer:
    """One accepted connection, as a behaviour sees it."""

    def __init__(self, sock: socket.socket, server: HostileServer) -> None:
        self.sock = sock
        self.server = server
        self.request = Request()
        self._buf = b""
        self.received: list[tuple[int, bytes]] = []  # client frames read by recv_frame

    # --- HTTP -----------------------------------------------------------------------

    def read_request(self, timeout: float = 5.0) -> Request:
        self.sock.settimeout(timeout)
        while b"\r\n\r\n" not in self._buf and len(self._buf) < 65536:
            chunk = self.sock.recv(4096)
            if not chunk:
                break
            self._buf += chunk
        head, _, self._buf = self._buf.partition(b"\r\n\r\n")
        lines = head.decode("latin-1").split("\r\n")
        method, _, rest = lines[0].partition(" ")
        target = rest.rpartition(" ")[0]
        parts = urlsplit(target)
        headers: dict[str, str] = {}
        for line in lines[1:]:
            name, _, value = line.partition(":")
            headers[name.strip().lower()] = value.strip()
        self.request = Request(method, target, parts.path, parse_qs(parts.query), headers)
        self.server.requests.append(self.request)
        return self.request

    def send(self, data: bytes) -> None:
        self.sock.sendall(data)

    def respond(self, status: int, headers: list[tuple[str, str]] | None = None,
                body: bytes = b"", *, reason: str = "Status", content_length: int | None = None,
                close: bool = True) -> None:
        """An HTTP answer; ``content_length`` may lie about the body."""
        lines = [f"HTTP/1.1 {status} {reason}"]
        head = list(headers or [])
        if content_length is None:
            content_length = len(body)
        if content_length >= 0:
            head.append(("Content-Length", str(content_length)))
        lines += [f"{k}: {v}" for k, v in head]
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1") + body)
        if close:
            self.sock.shutdown(socket.SHUT_WR)

    def upgrade(self, subprotocol: str | None = "first", *, accept: str | None = None,
                extra: bytes = b"") -> None:
        """A 101; ``subprotocol`` "first" echoes the first offered one, None echoes none."""
        key = self.request.headers.get("sec-websocket-key", "")
        if accept is None:
            accept = base64.b64encode(hashlib.sha1((key + _GUID).encode()).digest()).decode()
        lines = ["HTTP/1.1 101 Switching Protocols", "Upgrade: websocket",
                 "Connection: Upgrade", f"Sec-WebSocket-Accept: {accept}",
                 f"X-Request-Id: {self.request.headers.get('x-request-id', '')}"]
        offered = [p.strip() for p in
                   self.request.headers.get("sec-websocket-protocol", "").split(",") if p.strip()]
        if subprotocol == "first":
            subprotocol = offered[0] if offered else None
        if subprotocol:
            lines.append(f"Sec-WebSocket-Protocol: {subprotocol}")
        self.send(("\r\n".join(lines) + "\r\n\r\n").encode() + extra)

    # --- WebSocket frames (server side: unmasked) --------------------------------------

    @staticmethod
    def frame(opcode: int, payload: bytes, fin: bool = True) -> bytes:
        first = (0x80 if fin else 0) | opcode
        n = len(payload)
        if n < 126:
            head = struct.pack("!BB", first, n)
        elif n < 65536:
            head = struct.pack("!BBH", first, 126, n)
        else:
            head = struct.pack("!BBQ", first, 127, n)
        return head + payload

    def send_frame(self, opcode: int, payload: bytes, fin: bool = True) -> None:
        self.send(self.frame(opcode, payload, fin))

    def send_close(self, code: int | None, reason: str | bytes = b"") -> None:
        raw = reason.encode() if isinstance(reason, str) else reason
        self.send_frame(0x8, b"" if code is None else struct.pack("!H", code) + raw)

    def _exact(self, n: int) -> bytes:
        while len(self._buf) < n:
            chunk = self.sock.recv(65536)
            if not chunk:
                raise EOFError
            self._buf += chunk
        out, self._buf = self._buf[:n], self._buf[n:]
        return out

    def recv_frame(self, timeout: float = 5.0) -> tuple[int, bytes] | None:
        """The next client frame (opcode, unmasked payload); None on EOF or timeout."""
        self.sock.settimeout(timeout)
        try:
            b1, b2 = self._exact(2)
            n = b2 & 0x7F
            if n == 126:
                n = struct.unpack("!H", self._exact(2))[0]
            elif n == 127:
                n = struct.unpack("!Q", self._exact(8))[0]
            mask = self._exact(4) if b2 & 0x80 else b"\0\0\0\0"
            data = _unmask(mask, self._exact(n))
        except (EOFError, OSError):
            return None
        self.received.append((b1 & 0x0F, data))
        return b1 & 0x0F, data

    def wait(self, seconds: float | None = None) -> None:
        """Do nothing until the server stops (or ``seconds`` pass)."""
        self.server.stopped.wait(seconds if seconds is not None else self.server.lifetime)


def _unmask(mask: bytes, data: bytes) -> bytes:
    n = len(data)
    key = (mask * (n // 4 + 1))[:n]
    return (int.from_bytes(data, "big") ^ int.from_bytes(key, "big")).to_bytes(n, "big")


Behaviour = Callable[[Peer], None]


class HostileServer:
    """A raw TCP (optionally TLS) server on 127.0.0.1:0 driven by behaviours."""

    def __init__(self, *behaviours: Behaviour, tls: ssl.SSLContext | None = None,
                 lifetime: float = 20.0, host: str = "127.0.0.1") -> None:
        self.behaviours = list(behaviours) or [silent()]
        self.tls = tls
        self.lifetime = lifetime
        self.requests: list[Request] = []
        self.peers: list[Peer] = []
        self.dials = 0
        self.errors: list[BaseException] = []
        self.stopped = threading.Event()
        self._listener = socket.create_server((host, 0))
        self._listener.settimeout(0.05)
        self.port = self._listener.getsockname()[1]
        self.host = host
        self._sockets: list[socket.socket] = []
        self._lock = threading.Lock()
        self._thread = threading.Thread(target=self._serve, name="hostile", daemon=True)
        self._started_at = 0.0

    @property
    def url(self) -> str:
        return f"{'https' if self.tls else 'http'}://{self.host}:{self.port}"

    def __enter__(self) -> HostileServer:
        self.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def start(self) -> None:
        self._started_at = time.monotonic()
        self._thread.start()

    def stop(self) -> None:
        self.stopped.set()
        with self._lock:
            for sock in self._sockets:
                with contextlib.suppress(OSError):
                    sock.shutdown(socket.SHUT_RDWR)
                sock.close()
        self._thread.join(2.0)
        self._listener.close()

    def _serve(self) -> None:
        while not self.stopped.is_set():
            if time.monotonic() - self._started_at > self.lifetime:
                self.stopped.set()
                break
            try:
                sock, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                break
            with self._lock:
                behaviour = self.behaviours[min(self.dials, len(self.behaviours) - 1)]
                self.dials += 1
                self._sockets.append(sock)
            threading.Thread(target=self._handle, args=(sock, behaviour), daemon=True).start()

    def _handle(self, sock: socket.socket, behaviour: Behaviour) -> None:
        try:
            if self.tls is not None:
                sock.settimeout(5.0)
                sock = self.tls.wrap_socket(sock, server_side=True)
                with self._lock:
                    self._sockets.append(sock)
            peer = Peer(sock, self)
            self.peers.append(peer)
            behaviour(peer)
        except (OSError, EOFError):
            pass
        except BaseException as exc:  # a broken behaviour: the test should see it
            self.errors.append(exc)
        finally:
            if not self.stopped.is_set():
                with contextlib.suppress(OSError):
                    sock.close()


# --- behaviours ---------------------------------------------------------------------------


def respond(status: int, headers: list[tuple[str, str]] | None = None, body: bytes = b"",
            **kwargs: object) -> Behaviour:
    """Read the request, answer ``status`` with ``headers`` and ``body``, close."""
    def run(peer: Peer) -> None:
        peer.read_request()
        rid = peer.request.headers.get("x-request-id", "")
        head = list(headers or [])
        if rid and not any(k.lower() == "x-request-id" for k, _ in head):
            head.append(("X-Request-Id", rid))
        peer.respond(status, head, body, **kwargs)  # type: ignore[arg-type]
        peer.wait(0.5)
    return run


def problem(status: int, code: str, detail: str = "", **extra: object) -> Behaviour:
    """A refusal with an RFC 9457 problem body, as the reference gateway writes it."""
    import json

    headers = [("Content-Type", "application/problem+json")]
    for name in ("retry_after", "www_authenticate"):
        value = extra.pop(name, None)
        if value is not None:
            headers.append(("Retry-After" if name == "retry_after" else "WWW-Authenticate",
                            str(value)))
    body = {"type": f"https://tether.dev/errors/{code}", "title": code, "status": status,
            "detail": detail, "code": code, **extra}
    return respond(status, headers, json.dumps(body).encode())


def portal(title: str, text: str = "Accept the terms of use to continue.") -> Behaviour:
    """A captive portal's or a sign-in page's answer: 200 with an HTML page, whatever was asked."""
    page = (f"<!doctype html><html><head><title>{title}</title></head><body>"
            f"<h1>{title}</h1><p>{text}</p><form method=post><button>Accept</button></form>"
            "</body></html>").encode()
    return respond(200, [("Content-Type", "text/html; charset=utf-8")], page)


def short_body(status: int, announced: int, body: bytes, then: str = "hang") -> Behaviour:
    """Announce ``announced`` bytes of body, send ``body`` (shorter), then hang or close."""
    def run(peer: Peer) -> None:
        peer.read_request()
        peer.respond(status, [("Content-Type", "application/problem+json")], body,
                     content_length=announced, close=False)
        if then == "close":
            peer.sock.shutdown(socket.SHUT_WR)
        peer.wait()
    return run


def mute() -> Behaviour:
    """Accept TCP and never read or answer."""
    def run(peer: Peer) -> None:
        peer.wait()
    return run


def silent() -> Behaviour:
    """Read the request and never answer."""
    def run(peer: Peer) -> None:
        peer.read_request()
        peer.wait()
    return run


def trickle(data: bytes, delay: float) -> Behaviour:
    """Read the request, then send ``data`` one byte every ``delay`` seconds."""
    def run(peer: Peer) -> None:
        peer.read_request()
        for byte in data:
            if peer.server.stopped.wait(delay):
                return
            peer.send(bytes([byte]))
        peer.wait()
    return run


Step = Callable[[Peer], None]


def upgrade_then(*steps: Step, subprotocol: str | None = "first",
                 accept: str | None = None) -> Behaviour:
    """Read the request, answer 101, then run ``steps`` in order."""
    def run(peer: Peer) -> None:
        peer.read_request()
        peer.upgrade(subprotocol, accept=accept)
        for step in steps:
            step(peer)
    return run


def close(code: int | None, reason: str | bytes = b"", *, then_drop: bool = True) -> Step:
    """Send a close frame; wait (briefly) for the client's, then drop the TCP connection."""
    def run(peer: Peer) -> None:
        peer.send_close(code, reason)
        if then_drop:
            peer.recv_frame(timeout=1.0)
            peer.sock.shutdown(socket.SHUT_RDWR)
    return run


def stay_silent() -> Step:
    """Say nothing more (not even pongs) until the server stops."""
    def run(peer: Peer) -> None:
        peer.wait()
    return run


def drop() -> Step:
    """Close the TCP connection without a close frame."""
    def run(peer: Peer) -> None:
        peer.sock.shutdown(socket.SHUT_RDWR)
    return run


def send(opcode: int, payload: bytes, fin: bool = True) -> Step:
    """Send one frame."""
    def run(peer: Peer) -> None:
        peer.send_frame(opcode, payload, fin)
    return run


def pause(seconds: float) -> Step:
    def run(peer: Peer) -> None:
        peer.server.stopped.wait(seconds)
    return run


def echo(limit: int = 100_000) -> Step:
    """Answer pings, echo data frames back; stop on a close frame (answering it) or EOF."""
    def run(peer: Peer) -> None:
        for _ in range(limit):
            got = peer.recv_frame(timeout=peer.server.lifetime)
            if got is None:
                return
            opcode, data = got
            if opcode == 0x9:
                peer.send_frame(0xA, data)
            elif opcode == 0x8:
                peer.send_frame(0x8, data)
                return
            elif opcode in (0x1, 0x2):
                peer.send_frame(opcode, data)
    return run


def sink(limit: int = 1_000_000) -> Step:
    """Read and discard client frames until a close frame or EOF."""
    def run(peer: Peer) -> None:
        for _ in range(limit):
            got = peer.recv_frame(timeout=peer.server.lifetime)
            if got is None or got[0] == 0x8:
                return
            peer.received.clear()
    return run


# --- a CONNECT proxy ---------------------------------------------------------------------------


class ConnectProxy:
    """An HTTP proxy on 127.0.0.1:0 for loopback targets: CONNECT tunnels, and requests in
    absolute form (``GET http://host/path``) forwarded; ``refuse`` answers that status
    instead; ``route_to`` sends everything to that loopback port, so that a made-up gateway
    name can be tested through it."""

    def __init__(self, refuse: int | None = None, lifetime: float = 20.0,
                 route_to: int | None = None) -> None:
        self.refuse = refuse
        self.route_to = route_to  # tunnel every target to this loopback port
        self.targets: list[str] = []
        self.stopped = threading.Event()
        self._server = HostileServer(self._behaviour, lifetime=lifetime)
        self.port = self._server.port
        self.url = f"http://127.0.0.1:{self.port}"

    @property
    def uses(self) -> int:
        return self._server.dials

    @property
    def requests(self) -> list[Request]:
        """What clients asked of the proxy, in order (CONNECT or absolute-form requests)."""
        return self._server.requests

    def __enter__(self) -> ConnectProxy:
        self._server.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.stop()

    def _behaviour(self, peer: Peer) -> None:
        request = peer.read_request()
        self.targets.append(request.target)
        if self.refuse is not None:
            peer.respond(self.refuse, [("Proxy-Authenticate", 'Basic realm="p"')]
                         if self.refuse == 407 else [])
            return
        forward = request.method != "CONNECT"
        target = urlsplit(request.target) if forward else None
        if target is not None:
            host, port = target.hostname or "", str(target.port or 80)
        else:
            host, _, port = request.target.rpartition(":")
        if self.route_to is not None:
            host, port = "127.0.0.1", str(self.route_to)
        if host.strip("[]") not in ("127.0.0.1", "::1", "localhost"):
            peer.respond(403)
            return
        upstream = socket.create_connection((host.strip("[]"), int(port)), timeout=5)
        self._server._sockets.append(upstream)
        if target is None:
            peer.send(b"HTTP/1.1 200 Connection established\r\n\r\n")
        else:  # the request again, in origin form, without the proxy's own headers
            path = target.path + (f"?{target.query}" if target.query else "")
            lines = [f"{request.method} {path or '/'} HTTP/1.1"]
            lines += [f"{name}: {value}" for name, value in request.headers.items()
                      if not name.startswith("proxy-")]
            upstream.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        _pipe(peer.sock, upstream, peer._buf, self._server.stopped)


def _pipe(a: socket.socket, b: socket.socket, pending: bytes, stopped: threading.Event) -> None:
    if pending:
        b.sendall(pending)
    a.settimeout(None)
    b.settimeout(None)
    for _ in range(1_000_000):
        if stopped.is_set():
            return
        ready, _, _ = select.select([a, b], [], [], 0.1)
        for sock in ready:
            data = sock.recv(65536)
            if not data:
                return
            (b if sock is a else a).sendall(data)


def random_bytes(n: int) -> bytes:
    return os.urandom(n)
