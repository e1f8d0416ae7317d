"""Plain HTTP to the gateway (health, OAuth endpoints), and what it shares with the dialer.

One place for what every request of tether does alike: TLS verified against the
system store or ``--ca-cert`` (skipped only with ``--insecure``), the
``User-Agent``, a fresh ``X-Request-Id``, proxies from the environment but never
for loopback, no redirects (a token request is never replayed elsewhere), bodies
read to 64 KiB, and connection failures classified as the dialer classifies them.
"""

from __future__ import annotations

import ipaddress
import platform
import ssl
import sys
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tether import __version__
from tether.errors import Code, Failure, Phase, TetherError
from tether.text import redact_url, strip_control

MAX_BODY = 64 * 1024


def user_agent() -> str:
    """``tether/<version> (python <x.y>; <os>)``."""
    system = platform.system().lower() or sys.platform
    return f"tether/{__version__} (python {sys.version_info[0]}.{sys.version_info[1]}; {system})"


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine (localhost, 127.0.0.0/8, ::1)."""
    name = host.lower()
    if name in ("localhost", "localhost.") or name.endswith(".localhost"):
        return True
    try:
        return ipaddress.ip_address(name.strip("[]")).is_loopback
    except ValueError:
        return False


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


@dataclass(frozen=True)
class HttpOptions:
    """Timeout and TLS settings, the same as the dialer's."""

    timeout: float = 10.0
    ca_cert: str | None = None  # a PEM bundle; SSL_CERT_FILE is honoured when unset
    insecure: bool = False  # skip verification: only when the user asked, loudly

    def ssl_context(self) -> ssl.SSLContext:
        """The TLS context for https requests."""
        return tls_context(self.ca_cert, self.insecure)


@dataclass(frozen=True)
class Response:
    """An HTTP answer: status, headers (lowercased names), at most MAX_BODY bytes of body."""

    status: int
    headers: dict[str, str]
    body: bytes

    @property
    def request_id(self) -> str | None:
        """The gateway's ``X-Request-Id``, made safe to show."""
        value = strip_control(self.headers.get("x-request-id", ""), limit=100)
        return value or None


class _NoRedirect(urllib.request.HTTPRedirectHandler):
    def redirect_request(self, *args: Any, **kwargs: Any) -> None:
        return None


def request(url: str, http: HttpOptions, *, form: Mapping[str, str] | None = None) -> Response:
    """``GET url``, or ``POST`` of ``form`` (url-encoded); any status comes back as a Response.

    Raises TetherError: invalid-url for a scheme other than http/https, tls-error
    for an unusable ``ca_cert``, or the classified connection failure.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TetherError(Failure.of(Code.INVALID_URL, Phase.CONFIG,
                                     f"{redact_url(url)!r} is not an http:// or https:// URL"))
    handlers: list[urllib.request.BaseHandler] = [
        _NoRedirect(), urllib.request.HTTPSHandler(context=http.ssl_context())]
    if is_loopback(parts.hostname or ""):
        handlers.append(urllib.request.ProxyHandler({}))
    headers = {"Accept": "application/json", "User-Agent": user_agent(),
               "X-Request-Id": str(uuid.uuid4())}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers,  # noqa: S310 - checked above
                                 method="POST" if form is not None else "GET")
    try:
        with urllib.request.build_opener(*handlers).open(req, timeout=http.timeout) as answer:
            return Response(answer.status, _lower(answer.headers.items()),
                            answer.read(MAX_BODY))
    except urllib.error.HTTPError as exc:
        try:
            body = exc.read(MAX_BODY)
        except OSError:
            body = b""
        finally:
            exc.close()
        return Response(exc.code, _lower((exc.headers or {}).items()), body)
    except (urllib.error.URLError, OSError, ValueError) as exc:
        from tether.classify.core import classify_exception

        reason = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(
            exc.reason, BaseException) else exc
        raise TetherError(classify_exception(reason, phase=Phase.CONNECT, url=url)
                          .replace(cause=exc)) from exc


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}
