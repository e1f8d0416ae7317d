"""Dialing the gateway and talking WebSocket: the only module that imports websocket-client.

:func:`dial` opens one WebSocket and returns a :class:`Connection`, or raises
:class:`~tether.errors.TetherError` with a classified Failure. It does the
transport and the HTTP upgrade itself, under one deadline (DNS, TCP, proxy
CONNECT, TLS and the handshake together), so that it keeps what a refusal
said: the status always, the headers, at most 64 KiB of the body (a body
shorter than its ``Content-Length`` is kept as far as it came), and the request
id. websocket-client supplies the framing: masking (``ABNF``, which uses
wsaccel when it is installed), frame parsing (``frame_buffer``) and its
exception classes.

A :class:`Connection` reads frames itself, so that a close frame's code and
reason are kept, and runs keepalive in a daemon thread: a ping every
``keepalive_interval`` seconds, and the connection declared dead
(keepalive-timeout) when nothing at all arrived for ``keepalive_timeout``
seconds. One reader thread and any number of writer threads may share it.

Every exception of the socket, TLS or websocket-client is mapped at this
boundary by :func:`tether.classify.core.classify_exception` and raised as
``TetherError(failure) from exc``.
"""

from __future__ import annotations

import base64
import contextlib
import functools
import hashlib
import ipaddress
import logging
import os
import re
import select
import socket
import ssl
import struct
import threading
import time
import urllib.request
import uuid
from collections.abc import Callable, Iterator, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple
from urllib.parse import unquote, urlencode, urlsplit, urlunsplit

import websocket

from tether.classify.core import MAX_BODY, classify_close, classify_exception, classify_handshake
from tether.client.credential import CredentialSource
from tether.client.http import is_loopback, user_agent
from tether.client.http import tls_context as tls_for
from tether.errors import Code, Failure, Phase, TetherError
from tether.protocol import ENDPOINTS, PORT_FORWARD_SUBPROTOCOLS, SUBPROTOCOL
from tether.text import redact_url, strip_control

__all__ = [
    "OPCODE_BINARY",
    "OPCODE_TEXT",
    "Closed",
    "Connection",
    "Deadline",
    "DialOptions",
    "Message",
    "dial",
    "open_tcp",
    "proxy_for",
    "request_url",
    "resolve",
    "tls_context",
    "tunnel",
    "user_agent",
]

log = logging.getLogger("tether.ws")

OPCODE_TEXT = websocket.ABNF.OPCODE_TEXT
OPCODE_BINARY = websocket.ABNF.OPCODE_BINARY
_OP_CONT = websocket.ABNF.OPCODE_CONT
_OP_CLOSE = websocket.ABNF.OPCODE_CLOSE
_OP_PING = websocket.ABNF.OPCODE_PING
_OP_PONG = websocket.ABNF.OPCODE_PONG

_GUID = "258EAFA5-E914-47DA-95CA-C5AB0DC85B11"
_MAX_HEAD = 64 * 1024  # status line and headers of the gateway's answer
_BODY_GRACE = 1.0  # seconds a refusal's body may take once its headers are in
_READ_SIZE = 256 * 1024
_CLOSE_WAIT = 1.0  # seconds to wait for the peer's close frame


@dataclass(frozen=True)
class DialOptions:
    """How to dial and keep a connection. Durations in seconds; 0 disables keepalive."""

    connect_timeout: float = 15.0  # one deadline over DNS, TCP, proxy, TLS and the handshake
    ca_cert: str | None = None  # a CA bundle to trust instead of the system store
    insecure: bool = False  # no TLS verification (warned about on every dial)
    keepalive_interval: float = 30.0
    keepalive_timeout: float = 75.0
    retry_for: float = 300.0  # for the supervisor's policy; dial does not use it
    max_message: int = 64 * 1024 * 1024  # a larger incoming message fails message-too-big


class Message(NamedTuple):
    """One whole message: ``opcode`` is :data:`OPCODE_TEXT` or :data:`OPCODE_BINARY`."""

    opcode: int
    data: bytes  # text messages stay UTF-8 bytes; decode with errors="replace" if shown

    @property
    def is_text(self) -> bool:
        """True for a text message (JSON control messages, log records)."""
        return self.opcode == OPCODE_TEXT


class Closed(Exception):
    """Raised by a send on a connection that already ended normally or was closed locally."""

    def __init__(self, code: int | None, reason: str = "") -> None:
        super().__init__(f"the connection is closed (code {code})")
        self.code = code
        self.reason = reason


ParamValue = str | int | Sequence[str] | None


def _invalid_url(gateway: str, why: str) -> TetherError:
    shown = strip_control(redact_url(gateway), limit=200)
    return TetherError(Failure.of(Code.INVALID_URL, Phase.CONFIG,
                                  f"The gateway URL {shown!r} is not valid: {why}."))


def request_url(gateway: str, path: str, params: Mapping[str, ParamValue]) -> str:
    """The ``ws://`` or ``wss://`` URL of ``path`` on ``gateway`` with ``params`` as the query.

    http and https become ws and wss; a path prefix of the gateway is kept;
    user info is dropped; a sequence value repeats its name (``command=a&command=b``);
    None is left out. Raises TetherError(invalid-url).
    """
    try:
        parts = urlsplit(gateway.strip())
        parts.port  # noqa: B018 - raises ValueError on a bad port
    except ValueError as exc:
        raise _invalid_url(gateway, str(exc)) from None
    scheme = {"http": "ws", "https": "wss", "ws": "ws", "wss": "wss"}.get(parts.scheme.lower())
    if scheme is None:
        raise _invalid_url(gateway, "the scheme must be https, http, wss or ws")
    if not parts.hostname:
        raise _invalid_url(gateway, "it has no host name")
    pairs: list[tuple[str, str]] = []
    for name, value in params.items():
        if value is None:
            continue
        if isinstance(value, str | int):
            pairs.append((name, str(value)))
        else:
            pairs.extend((name, str(item)) for item in value)
    query = "&".join(q for q in (parts.query, urlencode(pairs)) if q)
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((scheme, netloc, parts.path.rstrip("/") + path, query, ""))


# --- the boundary ----------------------------------------------------------------------


@dataclass(frozen=True)
class _Context:
    """What classify needs to word a failure."""

    url: str
    service: str | None
    command: str | None
    role: str | None
    gateway: str | None

    def exception(self, exc: BaseException, phase: Phase) -> Failure:
        return classify_exception(exc, phase=phase, url=self.url, service=self.service,
                                  command=self.command, role=self.role, gateway=self.gateway,
                                  now=time.time())

    def close(self, code: int | None, reason: str | None) -> Failure:
        return classify_close(code, reason, service=self.service, command=self.command,
                              role=self.role, gateway=self.gateway, url=self.url)


@contextlib.contextmanager
def _boundary(ctx: _Context, phase: Phase, request_id: str) -> Iterator[None]:
    """Map any exception but TetherError to ``TetherError(classified) from exc``."""
    try:
        yield
    except TetherError as err:
        if err.failure.request_id is None:
            raise TetherError(err.failure.replace(request_id=request_id)) from err
        raise
    except Exception as exc:
        failure = ctx.exception(exc, phase)
        raise TetherError(failure.replace(request_id=failure.request_id or request_id)) from exc


# --- transport -------------------------------------------------------------------------


class _Deadline:
    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {self.seconds:g} s")
        return left


def _resolve(host: str, port: int, deadline: _Deadline) -> list[Any]:
    """getaddrinfo within the deadline (in a daemon thread: getaddrinfo has no timeout)."""
    try:
        ipaddress.ip_address(host)
        return socket.getaddrinfo(host, port, type=socket.SOCK_STREAM,
                                  flags=socket.AI_NUMERICHOST)
    except ValueError:
        pass
    result: list[Any] = []
    error: list[BaseException] = []
    done = threading.Event()

    def lookup() -> None:
        try:
            result.extend(socket.getaddrinfo(host, port, type=socket.SOCK_STREAM))
        except BaseException as exc:
            error.append(exc)
        finally:
            done.set()

    threading.Thread(target=lookup, name="tether-dns", daemon=True).start()
    if not done.wait(deadline.remaining()):
        raise socket.gaierror(socket.EAI_AGAIN, "DNS lookup timed out")
    if error:
        raise error[0]
    return result


def _open_tcp(host: str, port: int, deadline: _Deadline) -> socket.socket:
    last: OSError | None = None
    for family, kind, proto, _, address in _resolve(host, port, deadline):
        sock = socket.socket(family, kind, proto)
        try:
            sock.settimeout(deadline.remaining())
            sock.connect(address)
        except BaseException as exc:
            sock.close()
            if isinstance(exc, OSError) and not isinstance(exc, TimeoutError):
                last = exc
                continue
            raise
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        return sock
    raise last or OSError(f"no address for {host}")


def _no_proxy(host: str, rules: str) -> bool:
    """Whether NO_PROXY ``rules`` (names, .suffixes, IPs, CIDRs, ``*``) cover ``host``."""
    host = host.lower().strip("[]").rstrip(".")
    try:
        address: ipaddress.IPv4Address | ipaddress.IPv6Address | None = ipaddress.ip_address(host)
    except ValueError:
        address = None
    for raw in rules.split(","):
        rule = raw.strip().lower()
        if rule == "*":
            return True
        if rule.startswith("[") and "]" in rule:
            rule = rule[1:rule.index("]")]
        elif rule.count(":") == 1:
            rule = rule.partition(":")[0]  # a port in a rule: match the host alone
        rule = rule.lstrip("*").lstrip(".").rstrip(".")
        if not rule:
            continue
        if address is not None:
            with contextlib.suppress(ValueError):
                if address in ipaddress.ip_network(rule, strict=False):
                    return True
            continue
        if host == rule or host.endswith("." + rule):
            return True
    return False


@dataclass(frozen=True)
class _Proxy:
    host: str
    port: int
    authorization: str | None
    source: str  # the variable it came from, for messages


def _proxy_for(scheme: str, host: str) -> _Proxy | None:
    """The proxy for ``host`` from HTTPS_PROXY / HTTP_PROXY (either case), unless NO_PROXY or
    loopback says to go direct."""
    if is_loopback(host):
        return None
    proxies = urllib.request.getproxies_environment()
    key = "https" if scheme == "wss" else "http"
    url = proxies.get(key)
    if not url or _no_proxy(host, proxies.get("no", "")):
        return None
    source = f"{key.upper()}_PROXY"
    parts = urlsplit(url if "://" in url else f"http://{url}")
    if parts.scheme != "http" or not parts.hostname:
        raise TetherError(Failure.of(
            Code.PROXY_ERROR, Phase.CONNECT,
            f"The proxy in {source} is not usable: only http:// proxies are supported."))
    auth = None
    if parts.username is not None:
        pair = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        auth = "Basic " + base64.b64encode(pair.encode()).decode()
    return _Proxy(parts.hostname, parts.port or 8080, auth, source)


def _tunnel(proxy: _Proxy, host: str, port: int, deadline: _Deadline, url: str) -> socket.socket:
    """A TCP connection to host:port through an HTTP CONNECT proxy."""
    where = f"the proxy {proxy.host}:{proxy.port} (from {proxy.source})"
    try:
        sock = _open_tcp(proxy.host, proxy.port, deadline)
    except TimeoutError:
        raise
    except OSError as exc:
        raise TetherError(Failure.of(Code.PROXY_ERROR, Phase.CONNECT,
                                     f"Could not connect to {where}: {exc.strerror or exc}.",
                                     url=redact_url(url), cause=exc)) from exc
    target = f"[{host}]:{port}" if ":" in host else f"{host}:{port}"
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", f"User-Agent: {user_agent()}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    try:
        sock.settimeout(deadline.remaining())
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head, _ = _read_head(sock, deadline)
        status, _, _ = _parse_head(head)
    except BaseException:
        sock.close()
        raise
    if status != 200:
        sock.close()
        shown = f"HTTP {status}" if status else "an answer that is not HTTP"
        extra = " (proxy authentication required)" if status == 407 else ""
        raise TetherError(Failure.of(Code.PROXY_ERROR, Phase.CONNECT,
                                     f"{where} refused to connect to {target}: {shown}{extra}.",
                                     url=redact_url(url), http_status=status or None))
    return sock


def _tls_context(options: DialOptions) -> ssl.SSLContext:
    return tls_for(options.ca_cert, options.insecure)


#: Public names of the transport steps, for step-by-step diagnosis (`tether doctor`).
Deadline = _Deadline
resolve = _resolve
open_tcp = _open_tcp
proxy_for = _proxy_for
tunnel = _tunnel
tls_context = _tls_context


# --- the HTTP upgrade --------------------------------------------------------------------

_STATUS_LINE = re.compile(rb"HTTP/\d(?:\.\d)? +(\d{3})(?: .*)?")


def _read_head(sock: socket.socket, deadline: _Deadline) -> tuple[bytes, bytes]:
    """Status line and headers (up to the blank line), and whatever came after them."""
    buf = b""
    while b"\r\n\r\n" not in buf:
        if len(buf) > _MAX_HEAD:
            break
        sock.settimeout(deadline.remaining())
        chunk = sock.recv(16384)
        if not chunk:
            if not buf:
                raise websocket.WebSocketConnectionClosedException(
                    "the connection was closed before any answer")
            break
        buf += chunk
    head, sep, rest = buf.partition(b"\r\n\r\n")
    return head, rest if sep else b""


def _parse_head(head: bytes) -> tuple[int, list[tuple[str, str]], dict[str, str]]:
    """The status (0 when not HTTP), the headers in order, and a lowercased dict of them."""
    lines = head.split(b"\r\n")
    match = _STATUS_LINE.fullmatch(lines[0].rstrip())
    if match is None:
        return 0, [], {}
    pairs: list[tuple[str, str]] = []
    lowered: dict[str, str] = {}
    for line in lines[1:200]:
        name, sep, value = line.partition(b":")
        if not sep:
            continue
        key, text = name.strip().decode("latin-1"), value.strip().decode("latin-1")
        pairs.append((key, text))
        low = key.lower()
        lowered[low] = f"{lowered[low]}, {text}" if low in lowered else text
    return int(match.group(1)), pairs, lowered


def _read_body(sock: socket.socket, headers: dict[str, str], status: int, first: bytes,
               deadline: _Deadline) -> bytes:
    """At most MAX_BODY bytes of a refusal's body; what came, when it stops short."""
    if status < 200 or status in (204, 304):
        return b""
    try:
        length: int | None = int(headers.get("content-length", ""))
    except ValueError:
        length = None
    want = MAX_BODY if length is None else min(max(length, 0), MAX_BODY)
    body = bytearray(first[:want])
    grace_end = min(deadline.end, time.monotonic() + _BODY_GRACE)
    with contextlib.suppress(OSError):
        while len(body) < want:
            left = grace_end - time.monotonic()
            if left <= 0:
                break
            sock.settimeout(left)
            chunk = sock.recv(want - len(body))
            if not chunk:
                break
            body += chunk
    if "chunked" in headers.get("transfer-encoding", "").lower():
        return _dechunk(bytes(body))
    return bytes(body)


def _dechunk(raw: bytes) -> bytes:
    """A chunked body decoded as far as it is well formed."""
    out = bytearray()
    pos = 0
    while pos < len(raw):
        line_end = raw.find(b"\r\n", pos)
        if line_end < 0:
            break
        try:
            size = int(raw[pos:line_end].split(b";")[0].strip(), 16)
        except ValueError:
            break
        if size == 0:
            break
        out += raw[line_end + 2 : line_end + 2 + size]
        pos = line_end + 2 + size + 2
    return bytes(out)


def _protocol_error(message: str, ctx: _Context, request_id: str, status: int = 101) -> TetherError:
    return TetherError(Failure.of(Code.PROTOCOL_ERROR, Phase.HANDSHAKE, message,
                                  http_status=status, url=redact_url(ctx.url),
                                  request_id=request_id))


def _check_upgrade(headers: dict[str, str], key: str, offered: Sequence[str], ctx: _Context,
                   request_id: str) -> str | None:
    """The subprotocol the gateway chose (None: it chose none, as plain bridges do)."""
    accept = base64.b64encode(hashlib.sha1((key + _GUID).encode(),
                                           usedforsecurity=False).digest()).decode()
    if (headers.get("upgrade", "").lower() != "websocket"
            or "upgrade" not in headers.get("connection", "").lower()
            or headers.get("sec-websocket-accept", "").strip() != accept):
        raise _protocol_error("The gateway answered 101 but did not complete a valid WebSocket "
                              "upgrade (Upgrade, Connection or Sec-WebSocket-Accept is wrong).",
                              ctx, request_id)
    chosen = headers.get("sec-websocket-protocol", "").strip() or None
    if chosen is not None and chosen not in offered:
        shown = strip_control(chosen, limit=60)
        raise _protocol_error(f"The gateway chose the subprotocol {shown!r}, which tether did "
                              f"not offer ({', '.join(offered)}).", ctx, request_id)
    return chosen


def _header_value(value: str) -> str:
    if "\r" in value or "\n" in value:
        raise TetherError(Failure.of(Code.UNAUTHORIZED, Phase.CREDENTIALS,
                                     "The credential contains a line break and cannot be sent."))
    return value


def dial(gateway: str, command: str, params: Mapping[str, ParamValue],
         credential: CredentialSource, options: DialOptions | None = None, *,
         role: str | None = None, warn: Callable[[str], None] | None = None) -> Connection:
    """Open the WebSocket of ``command`` (a key of ENDPOINTS) on ``gateway``.

    ``params`` become the query (``service`` first, by convention). The
    credential's ``authorization()`` is called once per dial. ``warn`` receives
    warnings meant for the user (``insecure``); the ``tether.ws`` logger when
    None. ``role`` (the user's, when known) only words failures. Raises
    TetherError: the credential's own, invalid-url, or the classified failure
    of the connection or the handshake.
    """
    opts = options or DialOptions()
    url = request_url(gateway, ENDPOINTS[command], params)
    service = params.get("service")
    ctx = _Context(url, service if isinstance(service, str) else None, command, role, gateway)
    offered = PORT_FORWARD_SUBPROTOCOLS if command == "port-forward" else (SUBPROTOCOL,)
    request_id = str(uuid.uuid4())
    authorization = _header_value(credential.authorization())

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    if opts.insecure and parts.scheme == "wss":
        (warn or log.warning)(f"TLS certificate verification is disabled (--insecure): the "
                              f"connection to {host} is not authenticated and can be "
                              "intercepted.")
    key = base64.b64encode(os.urandom(16)).decode()
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    # Subprotocols joined by "," alone: websockify 0.13 splits the header on "," and does not strip.
    request = "\r\n".join([
        f"GET {path} HTTP/1.1", f"Host: {parts.netloc}", "Upgrade: websocket",
        "Connection: Upgrade", f"Sec-WebSocket-Key: {key}", "Sec-WebSocket-Version: 13",
        f"Sec-WebSocket-Protocol: {','.join(offered)}",
        *([f"Authorization: {authorization}"] if authorization else []),
        f"X-Request-Id: {request_id}", f"User-Agent: {user_agent()}", "", ""]).encode()

    deadline = _Deadline(opts.connect_timeout)
    sock: socket.socket | None = None
    try:
        with _boundary(ctx, Phase.CONNECT, request_id):
            proxy = _proxy_for(parts.scheme, host)
            sock = (_tunnel(proxy, host, port, deadline, url) if proxy
                    else _open_tcp(host, port, deadline))
            if parts.scheme == "wss":
                sock.settimeout(deadline.remaining())
                sock = _tls_context(opts).wrap_socket(sock, server_hostname=host)
            sock.settimeout(deadline.remaining())
            sock.sendall(request)
            head, rest = _read_head(sock, deadline)
        status, pairs, headers = _parse_head(head)
        answer_id = headers.get("x-request-id") or request_id
        answer_id = strip_control(answer_id, limit=200) or request_id
        if status == 0:
            raise _protocol_error("The gateway's answer is not HTTP: the URL may not point at a "
                                  "tether gateway.", ctx, answer_id, status=0)
        if status != 101:
            body = _read_body(sock, headers, status, rest, deadline)
            failure = classify_handshake(status, pairs, body, url=url, service=ctx.service,
                                         command=command, role=role, gateway=gateway,
                                         now=time.time())
            raise TetherError(failure.replace(request_id=failure.request_id or answer_id))
        subprotocol = _check_upgrade(headers, key, offered, ctx, answer_id)
        connection = Connection(sock, ctx=ctx, request_id=answer_id, subprotocol=subprotocol,
                                options=opts, buffered=rest)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    return connection


# --- the connection -------------------------------------------------------------------------

_NORMAL = "normal"  # outcome of a session that ended with close 1000 or was closed locally


class Connection:
    """One open WebSocket. ``recv`` from one thread; ``send_*`` and ``close`` from any."""

    def __init__(self, sock: socket.socket, *, ctx: _Context, request_id: str,
                 subprotocol: str | None, options: DialOptions, buffered: bytes = b"") -> None:
        self.request_id = request_id
        self.subprotocol = subprotocol
        self.url = redact_url(ctx.url)
        self.close_code: int | None = None
        self.close_reason: str | None = None
        self._sock = sock
        self._ctx = ctx
        self._max_message = options.max_message
        self._send_lock = threading.Lock()
        self._read_lock = threading.Lock()
        self._state_lock = threading.Lock()
        self._ended = threading.Event()
        self._outcome: Failure | str | None = None
        self._closing = False
        self._dead = False
        self._rbuf = buffered
        self._rpos = 0
        self._last_rx = time.monotonic()
        self._frames = websocket.frame_buffer(self._read, True)
        self._fragments: list[bytes] = []
        self._fragment_op = 0
        self._fragment_size = 0
        self._keepalive_timeout = options.keepalive_timeout
        self._timeout = options.keepalive_timeout if options.keepalive_timeout > 0 else None
        # One SSL object must not be used by two threads at once (OpenSSL): with TLS the
        # socket is non-blocking and every SSL call holds _tls_lock; waiting is done in select.
        self._tls = isinstance(sock, ssl.SSLSocket)
        self._tls_lock = threading.Lock()
        sock.settimeout(0.0 if self._tls else self._timeout)
        if options.keepalive_interval > 0 or options.keepalive_timeout > 0:
            threading.Thread(target=self._keepalive, name="tether-keepalive", daemon=True,
                             args=(options.keepalive_interval, options.keepalive_timeout)).start()

    def __enter__(self) -> Connection:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"Connection({self.url!r}, request_id={self.request_id!r})"

    # --- reading ------------------------------------------------------------------------

    def _read(self, bufsize: int) -> bytes:
        """Up to ``bufsize`` bytes for the frame parser, from one large socket read."""
        buf = self._rbuf
        if buf:
            pos = self._rpos
            end = pos + bufsize
            if end >= len(buf):
                self._rbuf, self._rpos = b"", 0
                return buf[pos:] if pos else buf
            self._rpos = end
            return buf[pos:end]
        data = self._tls_io(self._recv_tls) if self._tls else self._sock.recv(_READ_SIZE)
        if not data:
            raise websocket.WebSocketConnectionClosedException(
                "the connection was closed without a close frame")
        self._last_rx = time.monotonic()
        if len(data) <= bufsize:
            return data
        self._rbuf, self._rpos = data, bufsize
        return data[:bufsize]

    def _next_frame(self) -> tuple[int, int, bytes]:
        """The next frame's (fin, opcode, payload); close frames are read leniently."""
        frames = self._frames
        if frames.needs_header():
            frames.recv_header()
        if frames.needs_length():
            frames.recv_length()
        length = frames.length or 0
        if length > self._max_message:
            raise TetherError(Failure.of(
                Code.MESSAGE_TOO_BIG, Phase.SESSION,
                f"The gateway sent a frame of {length} bytes, more than the limit of "
                f"{self._max_message} bytes.", url=self.url, request_id=self.request_id))
        header = frames.header or (0, 0, 0, 0, 0, 0, 0)
        if header[4] == _OP_CLOSE:
            if frames.needs_mask():
                frames.recv_mask()
            payload = frames.recv_strict(length)
            if header[5] and frames.mask_value:
                payload = websocket.ABNF.mask(frames.mask_value, payload)
            frames.clear()
            return 1, _OP_CLOSE, payload
        frame = frames.recv_frame()
        data = frame.data
        return frame.fin, frame.opcode, data if isinstance(data, bytes) else data.encode()

    def recv(self) -> Message | None:
        """The next message; None once the session ended normally (close 1000) or locally.

        Raises TetherError with the classified close, the lost connection, or
        keepalive-timeout. Pings are answered here; pongs only count as traffic.
        """
        if self._outcome is not None:
            self._result()
            return None
        with self._read_lock:
            if self._outcome is not None:
                self._result()
                return None
            try:
                while True:
                    fin, opcode, data = self._next_frame()
                    if opcode in (OPCODE_BINARY, OPCODE_TEXT, _OP_CONT):
                        message = self._assemble(fin, opcode, data)
                        if message is not None:
                            return message
                    elif opcode == _OP_CLOSE:
                        self._on_close(data)
                        self._result()
                        return None
                    elif opcode == _OP_PING:
                        self._control(_OP_PONG, data[:125])
            except Exception as exc:
                self._end(self._reader_failure(exc))
                if isinstance(self._outcome, Failure) and not isinstance(exc, TetherError):
                    raise TetherError(self._outcome) from exc
                self._result()
                return None

    def ready(self) -> bool:
        """Whether more of the stream has already arrived, so that ``recv`` would likely not wait.

        For a reader that batches its output: it flushes when this is False.
        """
        if self._rpos < len(self._rbuf) or self._outcome is not None:
            return True
        pending = getattr(self._sock, "pending", None)
        if pending is not None and pending():
            return True
        try:
            return bool(select.select([self._sock], [], [], 0)[0])
        except (OSError, ValueError):
            return True  # recv() finds out what is wrong

    def _assemble(self, fin: int, opcode: int, data: bytes) -> Message | None:
        if opcode != _OP_CONT:
            if self._fragments:
                raise websocket.WebSocketProtocolException("a new message began inside another")
            if fin:
                return Message(opcode, data)
            self._fragment_op, self._fragments, self._fragment_size = opcode, [data], len(data)
            return None
        if not self._fragments:
            raise websocket.WebSocketProtocolException("a continuation frame without a message")
        self._fragments.append(data)
        self._fragment_size += len(data)
        if self._fragment_size > self._max_message:
            raise TetherError(Failure.of(
                Code.MESSAGE_TOO_BIG, Phase.SESSION,
                f"The gateway sent a message of more than {self._max_message} bytes.",
                url=self.url, request_id=self.request_id))
        if not fin:
            return None
        whole = b"".join(self._fragments)
        self._fragments, self._fragment_size = [], 0
        return Message(self._fragment_op, whole)

    def _on_close(self, payload: bytes) -> None:
        """Record the peer's close frame, answer it, and end the connection."""
        code = struct.unpack("!H", payload[:2])[0] if len(payload) >= 2 else None
        reason = payload[2:].decode("utf-8", errors="replace")
        self.close_code, self.close_reason = code, reason
        echo = struct.pack("!H", code) if code is not None and 1000 <= code < 5000 else b""
        with contextlib.suppress(Exception):
            self._control(_OP_CLOSE, echo, wait=_CLOSE_WAIT)
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

    def send_binary(self, data: bytes) -> None:
        """Send one binary message. Raises TetherError, or Closed after a normal end."""
        self._send(OPCODE_BINARY, data)

    def send_text(self, text: str) -> None:
        """Send one text message. Raises TetherError, or Closed after a normal end."""
        self._send(OPCODE_TEXT, text.encode("utf-8"))

    def _send(self, opcode: int, payload: bytes) -> None:
        if self._outcome is not None or self._closing:
            self._raise_ended()
        raw = websocket.ABNF.create_frame(payload, opcode).format()
        try:
            with self._send_lock:
                self._sendall(raw)
        except Exception as exc:
            self._settle(exc)
            self._raise_ended(exc)

    def _control(self, opcode: int, payload: bytes, wait: float | None = None) -> None:
        raw = websocket.ABNF.create_frame(payload, opcode).format()
        if self._send_lock.acquire(timeout=-1 if wait is None else wait):
            try:
                self._sendall(raw)
            finally:
                self._send_lock.release()

    def _sendall(self, raw: bytes) -> None:
        if not self._tls:
            self._sock.sendall(raw)
            return
        view = memoryview(raw)
        while view:
            view = view[self._tls_io(functools.partial(self._sock.send, view)):]

    def _recv_tls(self) -> bytes:
        return self._sock.recv(_READ_SIZE)

    def _tls_io(self, call: Callable[[], Any]) -> Any:
        """``call()`` on the non-blocking TLS socket under the lock, waiting in select()."""
        end = None if self._timeout is None else time.monotonic() + self._timeout
        while True:
            with self._tls_lock:
                try:
                    return call()
                except ssl.SSLWantReadError:
                    want: tuple[list[socket.socket], list[socket.socket]] = ([self._sock], [])
                except (ssl.SSLWantWriteError, BlockingIOError):
                    want = ([], [self._sock])
            left = None if end is None else end - time.monotonic()
            if (left is not None and left <= 0) or not any(select.select(*want, [], left)):
                raise TimeoutError("the socket timed out")

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
                _, opcode, data = self._next_frame()
                if opcode == _OP_CLOSE:
                    self._on_close(data)
                    return

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
                    self._control(_OP_PING, b"", wait=tick)
                except Exception:
                    return  # the reader sees why

    def close(self, code: int = 1000, reason: str = "") -> None:
        """Close the WebSocket (sending ``code`` and ``reason``) and wait briefly for the peer."""
        if self._outcome is not None or self._closing:
            return
        self._closing = True
        payload = struct.pack("!H", code) + reason.encode("utf-8")[:123]
        with contextlib.suppress(Exception):
            self._control(_OP_CLOSE, payload, wait=_CLOSE_WAIT)
        self._await_close()
        self._end(_NORMAL)

    @property
    def closed(self) -> bool:
        """True once the connection has ended, for whatever reason."""
        return self._outcome is not None
