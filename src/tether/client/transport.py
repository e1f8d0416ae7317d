"""Reaching the gateway: one deadline, DNS, TCP, the proxy rule, HTTP CONNECT and TLS.

Each step is public so that ``tether doctor`` can run them one at a time, and
:func:`proxy_for` is the one proxy rule of tether: the dialer and the plain
HTTP requests (:mod:`tether.client.http`) both ask it. Loopback is never
proxied; otherwise ``HTTPS_PROXY`` (wss, https) or ``HTTP_PROXY`` (ws, http),
in either case, unless ``NO_PROXY`` covers the host: ``*``, a name, a
``.suffix`` (or ``*.suffix``), a name with a port (the host alone is matched),
an IP address or a CIDR range such as ``10.0.0.0/8``.
"""

from __future__ import annotations

import base64
import contextlib
import enum
import ipaddress
import socket
import ssl
import threading
import time
import urllib.request
from dataclasses import dataclass
from typing import Any, Protocol
from urllib.parse import unquote, urlsplit

from tether.classify import classify_proxy_refusal, classify_proxy_unreachable
from tether.client.handshake import parse_head, read_body, read_head, user_agent
from tether.errors import Code, Failure, Phase, TetherError

__all__ = [
    "Deadline",
    "OnStage",
    "Proxy",
    "Stage",
    "authority",
    "is_loopback",
    "no_proxy_covers",
    "open_tcp",
    "proxy_for",
    "resolve",
    "tls_context",
    "tunnel",
]


def authority(host: str, port: int) -> str:
    """``host:port``, with an IPv6 address in brackets."""
    return f"[{host}]:{port}" if ":" in host else f"{host}:{port}"


class Deadline:
    """One time limit over several steps: each asks for what is left of it."""

    def __init__(self, seconds: float) -> None:
        self.seconds = seconds
        self.end = time.monotonic() + seconds

    def remaining(self) -> float:
        """Seconds left; TimeoutError once none are."""
        left = self.end - time.monotonic()
        if left <= 0:
            raise TimeoutError(f"timed out after {self.seconds:g} s")
        return left


def resolve(host: str, port: int, deadline: Deadline) -> list[Any]:
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


class Stage(enum.StrEnum):
    """The step a dial is in, for telling the user what it waits for."""

    RESOLVING = "resolving"
    TCP = "tcp"
    PROXY = "proxy"
    TLS = "tls"
    HANDSHAKE = "handshake"


class OnStage(Protocol):
    """Called as each step of a dial begins, with what it talks to (a host, ``host:port``)."""

    def __call__(self, stage: Stage, where: str) -> None: ...


def open_tcp(host: str, port: int, deadline: Deadline,
             on_stage: OnStage | None = None) -> socket.socket:
    """A TCP connection to the first address of ``host`` that accepts, within the deadline."""
    last: OSError | None = None
    if on_stage is not None:
        on_stage(Stage.RESOLVING, host)
    addresses = resolve(host, port, deadline)
    if on_stage is not None:
        on_stage(Stage.TCP, authority(host, port))
    for family, kind, proto, _, address in addresses:
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


# --- the proxy rule ------------------------------------------------------------------------


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    name = host.lower()
    if name in ("localhost", "localhost.") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


def no_proxy_covers(host: str, rules: str) -> bool:
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
class Proxy:
    """An HTTP proxy from the environment."""

    host: str
    port: int
    authorization: str | None  # a Proxy-Authorization value, from the URL's user info
    source: str  # the variable it came from, for messages

    @property
    def address(self) -> str:
        """``host:port`` of the proxy."""
        return authority(self.host, self.port)


def proxy_for(scheme: str, host: str) -> Proxy | None:
    """The proxy for ``host`` (a ws, wss, http or https URL's), None to go direct.

    Raises TetherError(proxy-error) when the variable that applies holds
    something other than an http:// proxy.
    """
    if is_loopback(host):
        return None
    proxies = urllib.request.getproxies_environment()
    key = "https" if scheme in ("wss", "https") else "http"
    url = proxies.get(key)
    if not url or no_proxy_covers(host, proxies.get("no", "")):
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
    return Proxy(parts.hostname, parts.port or 8080, auth, source)


def tunnel(proxy: Proxy, host: str, port: int, deadline: Deadline, url: str) -> socket.socket:
    """A TCP connection to host:port through an HTTP CONNECT proxy (``url`` words failures)."""
    try:
        sock = open_tcp(proxy.host, proxy.port, deadline)
    except TimeoutError:
        raise
    except OSError as exc:
        raise TetherError(classify_proxy_unreachable(exc, proxy=proxy.address,
                                                     source=proxy.source, url=url)) from exc
    target = authority(host, port)
    lines = [f"CONNECT {target} HTTP/1.1", f"Host: {target}", f"User-Agent: {user_agent()}"]
    if proxy.authorization:
        lines.append(f"Proxy-Authorization: {proxy.authorization}")
    try:
        sock.settimeout(deadline.remaining())
        sock.sendall(("\r\n".join(lines) + "\r\n\r\n").encode("latin-1"))
        head, rest = read_head(sock, deadline)
        status, pairs, headers = parse_head(head)
        body = read_body(sock, headers, status, rest, deadline) if status != 200 else b""
    except BaseException:
        sock.close()
        raise
    if status != 200:
        sock.close()
        raise TetherError(classify_proxy_refusal(status, pairs, body, proxy=proxy.address,
                                                 source=proxy.source, target=target, url=url))
    return sock


# --- TLS ---------------------------------------------------------------------------------


def tls_context(ca_cert: str | None, insecure: bool) -> ssl.SSLContext:
    """A client TLS context; TetherError(tls-error) when ``ca_cert`` cannot be loaded."""
    try:
        context = ssl.create_default_context(cafile=ca_cert)
    except (OSError, ssl.SSLError) as exc:
        raise TetherError(Failure.of(
            Code.TLS_ERROR, Phase.CONNECT,
            f"The CA certificate file {ca_cert!r} could not be loaded: "
            f"{getattr(exc, 'strerror', None) or type(exc).__name__}.", cause=exc)) from exc
    if insecure:
        context.check_hostname = False
        context.verify_mode = ssl.CERT_NONE
    return context
