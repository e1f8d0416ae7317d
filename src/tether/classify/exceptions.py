"""Exceptions from the socket, TLS and websocket-client to one Failure. Pure.

:func:`classify_exception` walks an exception's ``__cause__``/``__context__``
chain (and exceptions given as its arguments) from the outermost inward,
bounded and cycle-safe; the first one with a specific answer wins, else the
outermost one's generic answer. :func:`classified` is the boundary: it raises
any exception of its block as ``TetherError(failure) from exc``.

Each exception is looked up along its class's MRO in :func:`exception_map`, a
map keyed by the real classes, so the most specific class wins. It is built on
first use and holds websocket-client's and python-socks' classes once those
libraries are loaded: an exception of a library that was never imported cannot
exist, so this module never imports one (``tether --help`` loads neither).

Exceptions (connect phase unless another is given)::

    TetherError                           its own Failure
    WebSocketBadStatusException           classify_handshake(status, headers, body[:64 KiB])
    WebSocketAddressException             dns-failure, refined by the gaierror inside it
    socket.gaierror                       dns-failure: EAI_NONAME/EAI_NODATA "does not exist",
                                          EAI_AGAIN/EAI_FAIL "no DNS server answered"
    WebSocketTimeoutException,            connect-timeout; keepalive-timeout in the session
      TimeoutError, ETIMEDOUT
    ConnectionRefusedError, ECONNREFUSED  connection-refused
    ENETUNREACH, EHOSTUNREACH, ENETDOWN,  network-unreachable
      EHOSTDOWN, EADDRNOTAVAIL
    ConnectionReset/Aborted, BrokenPipe,  connection-lost
      ENOTCONN, ESHUTDOWN, EOFError,
      WebSocketConnectionClosedException
    ssl.SSLCertVerificationError          tls-error naming the verify message
    ssl.SSLError                          tls-error (connection-lost for a TLS EOF in session)
    WebSocketProxyException, ProxyError   proxy-error (ProxyTimeoutError: connect-timeout)
    WebSocketProtocol/PayloadException    protocol-error
    WebSocketException                    by its message (TLS, DNS, proxy, bad header),
                                          else a cause's mapping, else protocol-error
    EADDRINUSE, EACCES (local phase)      local-port-in-use
    other OSError                         network-unreachable; connection-lost in the session
    KeyboardInterrupt                     interrupted
    anything else                         internal-error

An OSError subclass wins over its errno (Python picks the subclass from the
errno, so the two agree for every OSError it raises).
"""

from __future__ import annotations

import contextlib
import errno
import re
import socket
import ssl
import sys
from collections.abc import Callable, Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from tether.classify.httpparse import as_body_bytes, clean_peer, safe_str
from tether.classify.peer import classify_handshake
from tether.classify.status import read_status
from tether.classify.wording import Seen, build, host_of, redacted_url, sentence
from tether.errors import Code, Failure, Phase, TetherError

_MAX_CHAIN = 16


@dataclass(frozen=True)
class _Context:
    phase: Phase
    url: str | None  # redacted, for the Failure
    raw_url: str | None  # for host names in messages
    service: str | None
    command: str | None
    role: str | None
    gateway: str | None
    now: float | None
    root: BaseException

    def seen(self, what: str) -> Seen:
        seen = Seen.of(self.phase, service=self.service, command=self.command, role=self.role,
                       gateway=self.gateway, url=self.raw_url)
        seen.what = what
        return seen

    def fail(self, code: Code, message: str, hint: str | None = None,
             phase: Phase | None = None) -> Failure:
        fields: dict[str, Any] = {"url": self.url, "cause": self.root}
        if hint:
            fields["hint"] = hint
        return Failure.of(code, phase or self.phase, sentence(message), **fields)

    @property
    def gateway_words(self) -> str:
        host = host_of(self.raw_url)
        return f"the gateway at {host}" if host else "the gateway"


Handler = Callable[[BaseException, _Context], "Failure | None"]
Fallback = Callable[[BaseException, _Context], Failure]


def _attr(obj: object, name: str) -> Any:
    """``getattr(obj, name, None)`` that survives properties that raise."""
    try:
        return getattr(obj, name, None)
    except Exception:
        return None


def _exc_text(exc: BaseException, limit: int = 200) -> str:
    """A short, cleaned text of an exception; never for bad-status exceptions (raw body)."""
    return clean_peer(safe_str(exc), limit)


def _with_text(lead: str, text: str) -> str:
    """``lead: text``, or the lead alone when there is no text."""
    return f"{lead}: {text}" if text else lead


# --- handlers, one per kind of exception -----------------------------------------------


def _on_tether(exc: BaseException, ctx: _Context) -> Failure | None:
    failure = _attr(exc, "failure")
    return failure if isinstance(failure, Failure) else None


def _on_interrupt(exc: BaseException, ctx: _Context) -> Failure:
    return ctx.fail(Code.INTERRUPTED, "Interrupted (SIGINT)", phase=Phase.LOCAL)


def _on_timeout(exc: BaseException, ctx: _Context) -> Failure:
    if ctx.phase is Phase.SESSION:
        return ctx.fail(Code.KEEPALIVE_TIMEOUT,
                        "Nothing arrived from the gateway within the keepalive limit")
    what = ("the WebSocket handshake with " if ctx.phase is Phase.HANDSHAKE
            else "connecting to ")
    return ctx.fail(Code.CONNECT_TIMEOUT, f"Timed out {what}{ctx.gateway_words}")


def _errnos(*names: str) -> frozenset[int]:
    return frozenset(getattr(socket, name) for name in names if hasattr(socket, name))


_DNS_MISSING = _errnos("EAI_NONAME", "EAI_NODATA", "EAI_ADDRFAMILY")
_DNS_UNREACHABLE = _errnos("EAI_AGAIN", "EAI_FAIL")


def name_does_not_exist(failure: Failure) -> bool:
    """Whether ``failure`` is a dns-failure because DNS has no such name (NXDOMAIN), not
    because no DNS server answered."""
    return failure.code is Code.DNS_FAILURE and failure.cause is not None and any(
        isinstance(exc, socket.gaierror) and exc.errno in _DNS_MISSING
        for exc in _chain(failure.cause))


def _on_gaierror(exc: BaseException, ctx: _Context) -> Failure:
    number = _attr(exc, "errno")
    host = host_of(ctx.raw_url, with_port=False)
    name = f"`{host}`" if host else "the gateway's host name"
    if number in _DNS_MISSING:
        return ctx.fail(Code.DNS_FAILURE, f"The host name {name} does not exist (DNS has no "
                        "such name)", "Check the gateway address for a typo "
                        "(`tether auth status`).")
    if number in _DNS_UNREACHABLE:
        return ctx.fail(Code.DNS_FAILURE, f"Could not resolve {name}: no DNS server answered "
                        "(temporary failure in name resolution)",
                        "Check this machine's network connection, VPN and DNS settings; "
                        "tether retries for a short while.")
    words = clean_peer(_attr(exc, "strerror") or "", 120)
    return ctx.fail(Code.DNS_FAILURE, f"Could not resolve {name}"
                    + (f" ({words})" if words else ""))


def _on_address(exc: BaseException, ctx: _Context) -> Failure:
    inner = next((e for e in _chain(exc) if isinstance(e, socket.gaierror)), None)
    if inner is not None and inner is not exc:
        return _on_gaierror(inner, ctx)
    return ctx.fail(Code.DNS_FAILURE, f"Could not resolve the address of {ctx.gateway_words}",
                    phase=Phase.CONNECT)


def _on_bad_status(exc: BaseException, ctx: _Context) -> Failure:
    status = _attr(exc, "status_code")
    headers = _attr(exc, "resp_headers")
    body = _attr(exc, "resp_body")
    failure = classify_handshake(
        status if isinstance(status, int) else -1,
        headers if isinstance(headers, Mapping | list | tuple) else None,
        as_body_bytes(body) if body is not None else None,
        url=ctx.raw_url, service=ctx.service, command=ctx.command, role=ctx.role,
        gateway=ctx.gateway, now=ctx.now)
    return failure.replace(cause=ctx.root)


def _on_closed(exc: BaseException, ctx: _Context) -> Failure:
    if ctx.phase is Phase.SESSION:
        return ctx.fail(Code.CONNECTION_LOST, "The connection to the gateway was lost")
    return ctx.fail(Code.CONNECTION_LOST, f"The connection to {ctx.gateway_words} closed "
                    "before the WebSocket handshake finished")


_PROXY_STATUS = re.compile(r"status:?\s*(\d{3})")


def _on_proxy(exc: BaseException, ctx: _Context) -> Failure:
    text = _exc_text(exc)
    match = _PROXY_STATUS.search(text)
    if not match or match.group(1) != "407":
        return ctx.fail(Code.PROXY_ERROR, _with_text("The proxy refused the connection", text))
    seen = ctx.seen("HTTP 407 from the proxy")
    seen.http_status = 407
    seen.read_as(read_status(407))
    return build(Code.PROXY_ERROR, seen, cause=ctx.root).replace(phase=ctx.phase)


def _on_proxy_timeout(exc: BaseException, ctx: _Context) -> Failure:
    return ctx.fail(Code.CONNECT_TIMEOUT, "Timed out connecting through the proxy",
                    "Check the proxy settings (HTTPS_PROXY, NO_PROXY) and that the proxy is up.")


def _on_protocol(exc: BaseException, ctx: _Context) -> Failure:
    return ctx.fail(Code.PROTOCOL_ERROR, _with_text("The gateway broke the WebSocket protocol",
                                                    _exc_text(exc)))


#: websocket-client's base class: its message says which of its many cases it is. Words
#: in the lowercased message, the code, the lead, and whether the message follows the lead.
_WS_MESSAGES: tuple[tuple[tuple[str, ...], Code, str, bool], ...] = (
    (("invalid websocket header",), Code.PROTOCOL_ERROR,
     "{Gateway} switched protocols but did not complete a WebSocket upgrade: it is not a "
     "WebSocket endpoint", False),
    (("ssl",), Code.TLS_ERROR, "TLS could not be set up", True),
    (("host not found",), Code.DNS_FAILURE, "Could not resolve {gateway}", False),
    (("python socks", "proxy"), Code.PROXY_ERROR, "The proxy could not be used", True),
    (("status line", "invalid header", "content-length"), Code.PROTOCOL_ERROR,
     "The gateway's HTTP answer could not be read", True),
)


def _on_ws_base(exc: BaseException, ctx: _Context) -> Failure | None:
    text = _exc_text(exc)
    lower = text.lower()
    for needles, code, lead, with_text in _WS_MESSAGES:
        if any(needle in lower for needle in needles):
            gateway = ctx.gateway_words
            message = lead.format(gateway=gateway, Gateway=gateway.capitalize())
            return ctx.fail(code, _with_text(message, text if with_text else ""))
    return None


def _ws_generic(exc: BaseException, ctx: _Context) -> Failure:
    return ctx.fail(Code.PROTOCOL_ERROR, _with_text("The WebSocket connection failed",
                                                    _exc_text(exc)))


def _on_ssl(exc: BaseException, ctx: _Context) -> Failure:
    host = host_of(ctx.raw_url)
    if isinstance(exc, ssl.SSLCertVerificationError):
        words = clean_peer(_attr(exc, "verify_message") or _attr(exc, "reason") or "", 200)
        whose = f"of {host} " if host else ""
        return ctx.fail(Code.TLS_ERROR, _with_text(
            f"The TLS certificate {whose}could not be verified", words))
    if isinstance(exc, ssl.SSLZeroReturnError | ssl.SSLEOFError) and ctx.phase is Phase.SESSION:
        return ctx.fail(Code.CONNECTION_LOST, "The TLS connection to the gateway was closed")
    reason = clean_peer(_attr(exc, "reason") or "", 120)
    text = _exc_text(exc)
    if "timed out" in text.lower():
        return _on_timeout(exc, ctx)
    if isinstance(exc, ssl.SSLEOFError):
        return ctx.fail(Code.TLS_ERROR, f"{(host or 'The gateway')} closed the connection "
                        "during the TLS handshake")
    if reason.upper() in ("WRONG_VERSION_NUMBER", "HTTP_REQUEST", "RECORD_LAYER_FAILURE"):
        return ctx.fail(Code.TLS_ERROR, f"{host or 'The gateway'} does not speak TLS on that "
                        f"port ({reason})",
                        "Check the port, or use ws:// or http:// if the gateway has no TLS.")
    return ctx.fail(Code.TLS_ERROR, "The TLS handshake with the gateway failed"
                    + (f" ({reason or text})" if reason or text else ""))


# --- OSErrors, by class and by errno ------------------------------------------------------


def _os_detail(exc: BaseException) -> str:
    """`` (ECONNREFUSED: Connection refused)``, or as much of it as is known."""
    number = _attr(exc, "errno")
    name = errno.errorcode.get(number, "") if isinstance(number, int) else ""
    words = clean_peer(_attr(exc, "strerror") or "", 120)
    if name and words:
        return f" ({name}: {words})"
    return f" ({name or words})" if name or words else ""


def _on_refused(exc: BaseException, ctx: _Context) -> Failure:
    return ctx.fail(Code.CONNECTION_REFUSED, f"Nothing accepts connections at "
                    f"{host_of(ctx.raw_url) or 'the gateway'}{_os_detail(exc)}")


def _on_unreachable(exc: BaseException, ctx: _Context) -> Failure:
    return ctx.fail(Code.NETWORK_UNREACHABLE, f"No route to {ctx.gateway_words}{_os_detail(exc)}")


def _on_reset(exc: BaseException, ctx: _Context) -> Failure:
    lead = ("The connection to the gateway was lost" if ctx.phase is Phase.SESSION
            else f"The connection to {ctx.gateway_words} was closed during the handshake")
    return ctx.fail(Code.CONNECTION_LOST, lead + _os_detail(exc))


def _on_local_port(exc: BaseException, ctx: _Context) -> Failure | None:
    if ctx.phase is not Phase.LOCAL:
        return None
    return ctx.fail(Code.LOCAL_PORT_IN_USE, f"The local port could not be bound{_os_detail(exc)}")


_ERRNO_HANDLERS: dict[int, Handler] = {
    errno.ETIMEDOUT: _on_timeout,
    errno.ECONNREFUSED: _on_refused,
    **dict.fromkeys((errno.ENETUNREACH, errno.EHOSTUNREACH, errno.ENETDOWN, errno.EHOSTDOWN,
                     errno.EADDRNOTAVAIL), _on_unreachable),
    **dict.fromkeys((errno.ECONNRESET, errno.EPIPE, errno.ECONNABORTED, errno.ENOTCONN,
                     errno.ESHUTDOWN), _on_reset),
    **dict.fromkeys((errno.EADDRINUSE, errno.EACCES), _on_local_port),
}


def _on_os_error(exc: BaseException, ctx: _Context) -> Failure | None:
    """An OSError of no more specific class, by its errno; None for an errno with no meaning."""
    handler = _ERRNO_HANDLERS.get(_attr(exc, "errno"))
    return handler(exc, ctx) if handler else None


def _os_generic(exc: BaseException, ctx: _Context) -> Failure:
    number = _attr(exc, "errno")
    name = errno.errorcode.get(number, "") if isinstance(number, int) else ""
    words = clean_peer(_attr(exc, "strerror") or safe_str(exc), 120)
    detail = ": " + ", ".join(x for x in (name, words) if x) if name or words else ""
    if ctx.phase is Phase.SESSION:
        return ctx.fail(Code.CONNECTION_LOST, f"The connection to the gateway failed{detail}")
    return ctx.fail(Code.NETWORK_UNREACHABLE, f"Could not connect to {ctx.gateway_words}{detail}")


# --- the map --------------------------------------------------------------------------------


@dataclass(frozen=True)
class Rule:
    """How one exception class is classified.

    ``specific`` answers for one exception of the chain, or returns None to let
    the exceptions further down the chain answer; ``generic`` answers for the
    outermost exception when none of the chain did (internal-error when None).
    """

    specific: Handler
    generic: Fallback | None = None


_OS = Rule(_on_os_error, _os_generic)
_PROXY = Rule(_on_proxy)
_PROXY_TIMEOUT = Rule(_on_proxy_timeout)
_PROXY_CLASSES = {"ProxyTimeoutError": _PROXY_TIMEOUT, "ProxyConnectionError": _PROXY,
                  "ProxyError": _PROXY}

#: The standard library's exceptions.
_BUILTIN: dict[type[BaseException], Rule] = {
    TetherError: Rule(_on_tether),
    KeyboardInterrupt: Rule(_on_interrupt),
    EOFError: Rule(_on_closed),
    ssl.SSLError: Rule(_on_ssl),
    socket.gaierror: Rule(_on_gaierror),
    TimeoutError: Rule(_on_timeout),
    ConnectionRefusedError: Rule(_on_refused),
    ConnectionResetError: Rule(_on_reset),
    ConnectionAbortedError: Rule(_on_reset),
    BrokenPipeError: Rule(_on_reset),
    OSError: _OS,
}

#: The libraries' exceptions: the module that exports them, and each class's rule by name.
_LIBRARIES: dict[str, dict[str, Rule]] = {
    "websocket": {
        "WebSocketBadStatusException": Rule(_on_bad_status),
        "WebSocketAddressException": Rule(_on_address),
        "WebSocketTimeoutException": Rule(_on_timeout),
        "WebSocketConnectionClosedException": Rule(_on_closed),
        "WebSocketProxyException": _PROXY,
        "WebSocketPayloadException": Rule(_on_protocol),
        "WebSocketProtocolException": Rule(_on_protocol),
        "WebSocketException": Rule(_on_ws_base, _ws_generic),
    },
    "websocket._http": _PROXY_CLASSES,  # websocket-client's own, without python-socks
    "python_socks": _PROXY_CLASSES,
}

_built: dict[tuple[object, ...], dict[type[BaseException], Rule]] = {}


def exception_map() -> Mapping[type[BaseException], Rule]:
    """Every exception class classified specifically, to its rule.

    The standard library's, and the libraries' of :data:`_LIBRARIES` that are
    loaded; rebuilt when one more of them is.
    """
    modules = tuple(sys.modules.get(name) for name in _LIBRARIES)
    found = _built.get(modules)
    if found is None:
        found = dict(_BUILTIN)
        for module, rules in zip(modules, _LIBRARIES.values(), strict=True):
            for name, rule in rules.items():
                cls = getattr(module, name, None)
                if isinstance(cls, type) and issubclass(cls, BaseException):
                    found[cls] = rule
        _built.clear()
        _built[modules] = found
    return found


def _rule(exc: BaseException, rules: Mapping[type[BaseException], Rule]) -> Rule | None:
    """The rule of the most specific class of ``exc`` in ``rules``."""
    return next((rules[cls] for cls in type(exc).__mro__ if cls in rules), None)


def _chain(exc: BaseException) -> list[BaseException]:
    """``exc``, its causes and contexts, and exceptions given as its arguments; bounded."""
    out: list[BaseException] = []
    seen: set[int] = set()
    queue: list[BaseException] = [exc]
    while queue and len(out) < _MAX_CHAIN:
        current = queue.pop(0)
        if id(current) in seen:
            continue
        seen.add(id(current))
        out.append(current)
        nxt = _attr(current, "__cause__") or _attr(current, "__context__")
        if isinstance(nxt, BaseException):
            queue.append(nxt)
        args = _attr(current, "args")
        if isinstance(args, tuple):
            queue.extend(a for a in args[:4] if isinstance(a, BaseException))
    return out


def _classify(exc: BaseException, ctx: _Context) -> Failure:
    rules = exception_map()
    for item in _chain(exc):
        rule = _rule(item, rules)
        found = rule.specific(item, ctx) if rule else None
        if found is not None:
            return found
    rule = _rule(exc, rules)
    if rule is not None and rule.generic is not None:
        return rule.generic(exc, ctx)
    kind = clean_peer(type(exc).__qualname__, 80)
    return ctx.fail(Code.INTERNAL_ERROR, f"Unexpected {kind} while talking to the gateway")


def classify_exception(exc: BaseException, *, phase: Phase | None = None, url: str | None = None,
                       service: str | None = None, command: str | None = None,
                       role: str | None = None, gateway: str | None = None,
                       now: float | None = None) -> Failure:
    """The Failure for an exception raised while dialing or during a session; never raises.

    ``phase`` is where the caller was (connect when not given): a timeout in
    the session phase is a keepalive timeout, elsewhere a connect timeout.
    """
    ctx = _Context(phase=phase if isinstance(phase, Phase) else Phase.CONNECT,
                   url=redacted_url(url), raw_url=url if isinstance(url, str) else None,
                   service=service, command=command, role=role, gateway=gateway, now=now,
                   root=exc)
    try:
        return _classify(exc, ctx)
    except Exception:  # a hostile exception object; classify by type alone
        if isinstance(exc, OSError):
            code = Code.CONNECTION_LOST if ctx.phase is Phase.SESSION else Code.NETWORK_UNREACHABLE
            return ctx.fail(code, "The connection to the gateway failed")
        return ctx.fail(Code.INTERNAL_ERROR, "An unexpected error happened")


@contextlib.contextmanager
def classified(*, phase: Phase = Phase.CONNECT, url: str | None = None,
               service: str | None = None, command: str | None = None,
               role: str | None = None, gateway: str | None = None,
               request_id: str | None = None) -> Iterator[None]:
    """Raise any exception of the block as ``TetherError(its Failure) from exc``.

    A TetherError passes through; ``request_id`` is given to a Failure that has none.
    KeyboardInterrupt and other BaseExceptions pass through untouched.
    """
    try:
        yield
    except TetherError as err:
        if request_id is None or err.failure.request_id is not None:
            raise
        raise TetherError(err.failure.replace(request_id=request_id)) from err
    except Exception as exc:
        failure = classify_exception(exc, phase=phase, url=url, service=service,
                                     command=command, role=role, gateway=gateway)
        if failure.request_id is None and request_id is not None:
            failure = failure.replace(request_id=request_id)
        raise TetherError(failure) from exc
