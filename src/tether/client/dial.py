"""Dialing the gateway: :func:`dial` ties transport, handshake and connection together.

:func:`dial` opens one WebSocket and returns a :class:`Connection`, or raises
:class:`~tether.errors.TetherError` with a classified Failure. One deadline
covers DNS, TCP, proxy CONNECT, TLS and the handshake
(:mod:`tether.client.transport`); the upgrade is written by hand
(:mod:`tether.client.handshake`) so that a refusal keeps its status, headers,
at most 64 KiB of its body and the request id; the open WebSocket is a
:class:`~tether.client.connection.Connection`.

Every exception of the socket, TLS or websocket-client is mapped at this
boundary by the classifier and raised as ``TetherError(failure) from exc``.
:class:`Connection`, :class:`Message`, :class:`Closed` and the opcodes are
re-exported from :mod:`tether.client.connection` for the sessions.

A :class:`DialProgress` given to :func:`dial` is told as each stage begins
(resolving, TCP, proxy, TLS, handshake) and when the dial ends, so that the
CLI can say what a slow dial is waiting for.
"""

from __future__ import annotations

import logging
import socket
import time
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Protocol, runtime_checkable
from urllib.parse import urlencode, urlsplit, urlunsplit

from tether.classify import classified, classify_handshake
from tether.client import handshake, transport
from tether.client.connection import (
    OPCODE_BINARY,
    OPCODE_TEXT,
    Closed,
    Connection,
    Context,
    Message,
)
from tether.client.credential import CredentialSource
from tether.client.transport import Stage
from tether.errors import Code, Failure, Phase, TetherError
from tether.protocol import (
    ENDPOINTS,
    PORT_FORWARD_SUBPROTOCOLS,
    PORT_FORWARD_SUBPROTOCOLS_V2,
    SHELL_SUBPROTOCOLS_V2,
    SUBPROTOCOL,
)
from tether.text import redact_url, strip_control

__all__ = [
    "OPCODE_BINARY",
    "OPCODE_TEXT",
    "Closed",
    "Connection",
    "DialOptions",
    "DialProgress",
    "Message",
    "ParamValue",
    "Stage",
    "dial",
    "offered_subprotocols",
    "request_url",
]

log = logging.getLogger("tether.client")


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


ParamValue = str | int | Sequence[str] | None


@runtime_checkable
class DialProgress(Protocol):
    """Told what a dial is doing; the CLI shows a dial that takes a while."""

    def connecting(self, stage: Stage, where: str) -> None:
        """Stage ``stage`` of the dial began; ``where`` is the host or ``host:port`` it talks to."""

    def dial_ended(self) -> None:
        """The dial is over: connected, or failed (its failure is raised)."""


def _invalid_url(gateway: str, why: str) -> TetherError:
    shown = strip_control(redact_url(gateway), limit=200)
    return TetherError(Failure.of(Code.INVALID_URL, Phase.CONFIG,
                                  f"The gateway URL {shown!r} is not valid: {why}."))


#: Query parameters left out of the URL that failures show: the terminal's modes (a few
#: hundred characters that say nothing about what went wrong).
UNSHOWN = frozenset({"modes"})


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


def offered_subprotocols(command: str, *, resumable: bool = False) -> tuple[str, ...]:
    """What a dial of ``command`` offers, best first: ``tether.v2`` leads on shell and
    port-forward when ``resumable``; port-forward also offers ``binary`` (websockify)."""
    if command == "port-forward":
        return PORT_FORWARD_SUBPROTOCOLS_V2 if resumable else PORT_FORWARD_SUBPROTOCOLS
    if command == "shell" and resumable:
        return SHELL_SUBPROTOCOLS_V2
    return (SUBPROTOCOL,)


def dial(gateway: str, command: str, params: Mapping[str, ParamValue],
         credential: CredentialSource, options: DialOptions | None = None, *,
         role: str | None = None, warn: Callable[[str], None] | None = None,
         progress: DialProgress | None = None, resumable: bool = False) -> Connection:
    """Open the WebSocket of ``command`` (a key of ENDPOINTS) on ``gateway``.

    ``params`` become the query (``service`` first, by convention). The
    credential's ``authorization()`` is called once per dial. ``warn`` receives
    warnings meant for the user (``insecure``); the ``tether.client`` logger when
    None. ``role`` (the user's, when known) only words failures. ``progress`` hears
    of each stage and of the end. ``resumable`` offers ``tether.v2`` first (shell and
    port-forward; the connection's ``subprotocol`` says what the gateway chose).
    Raises TetherError: the credential's own, invalid-url, or the classified failure of
    the connection or the handshake.
    """
    opts = options or DialOptions()
    url = request_url(gateway, ENDPOINTS[command], params)
    # what failures show: the URL without parameters that only make it long
    shown = request_url(gateway, ENDPOINTS[command],
                        {name: value for name, value in params.items() if name not in UNSHOWN})
    service = params.get("service")
    ctx = Context(shown, service if isinstance(service, str) else None, command, role, gateway)
    offered = offered_subprotocols(command, resumable=resumable)
    request_id = str(uuid.uuid4())
    authorization = handshake.header_value(credential.authorization())

    parts = urlsplit(url)
    host = parts.hostname or ""
    port = parts.port or (443 if parts.scheme == "wss" else 80)
    if opts.insecure and parts.scheme == "wss":
        (warn or log.warning)(f"TLS certificate verification is disabled (--insecure): the "
                              f"connection to {host} is not authenticated and can be "
                              "intercepted.")
    path = parts.path + (f"?{parts.query}" if parts.query else "")
    request, key = handshake.upgrade_request(path, parts.netloc, offered, authorization,
                                             request_id)

    on_stage = progress.connecting if progress is not None else None
    deadline = transport.Deadline(opts.connect_timeout)
    sock: socket.socket | None = None
    try:
        with classified(phase=Phase.CONNECT, url=shown, service=ctx.service, command=command,
                        role=role, gateway=gateway, request_id=request_id):
            proxy = transport.proxy_for(parts.scheme, host)
            if proxy is not None:
                if on_stage is not None:
                    on_stage(Stage.PROXY, proxy.address)
                sock = transport.tunnel(proxy, host, port, deadline, shown)
            else:
                sock = transport.open_tcp(host, port, deadline, on_stage)
            where = transport.authority(host, port)
            if parts.scheme == "wss":
                if on_stage is not None:
                    on_stage(Stage.TLS, where)
                sock.settimeout(deadline.remaining())
                sock = transport.tls_context(opts.ca_cert, opts.insecure).wrap_socket(
                    sock, server_hostname=host)
            if on_stage is not None:
                on_stage(Stage.HANDSHAKE, where)
            sock.settimeout(deadline.remaining())
            sock.sendall(request)
            head, rest = handshake.read_head(sock, deadline)
        status, pairs, headers = handshake.parse_head(head)
        answer_id = headers.get("x-request-id") or request_id
        answer_id = strip_control(answer_id, limit=200) or request_id
        if status == 0:
            raise handshake.protocol_error("The gateway's answer is not HTTP: the URL may not "
                                           "point at a tether gateway.", shown, answer_id,
                                           status=0)
        if status != 101:
            body = handshake.read_body(sock, headers, status, rest, deadline)
            failure = classify_handshake(status, pairs, body, url=shown, service=ctx.service,
                                         command=command, role=role, gateway=gateway,
                                         now=time.time())
            raise TetherError(failure.replace(request_id=failure.request_id or answer_id))
        subprotocol = handshake.check_upgrade(headers, key, offered, shown, answer_id)
        connection = Connection(sock, ctx=ctx, request_id=answer_id, subprotocol=subprotocol,
                                keepalive_interval=opts.keepalive_interval,
                                keepalive_timeout=opts.keepalive_timeout,
                                max_message=opts.max_message, buffered=rest)
    except BaseException:
        if sock is not None:
            sock.close()
        raise
    finally:
        if progress is not None:
            progress.dial_ended()
    return connection
