"""Plain HTTP to the gateway (health, OAuth endpoints), and what it shares with the dialer.

One place for what every request of tether does alike: TLS verified against the
system store or ``--ca-cert`` (skipped only with ``--insecure``), the
``User-Agent``, a fresh ``X-Request-Id``, the proxy the dialer would use
(:func:`tether.client.transport.proxy_for`: NO_PROXY read the same way, loopback
never proxied), no redirects (a token request is never replayed elsewhere),
bodies read to 64 KiB, and connection failures classified as the dialer
classifies them.
"""

from __future__ import annotations

import ssl
import urllib.error
import urllib.parse
import urllib.request
import uuid
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from tether.classify import MAX_BODY, classify_exception
from tether.client.handshake import user_agent
from tether.client.transport import proxy_for, tls_context
from tether.errors import Code, Failure, Phase, TetherError
from tether.text import redact_url, strip_control


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
    for an unusable ``ca_cert``, proxy-error for an unusable proxy variable, or
    the classified connection failure.
    """
    parts = urllib.parse.urlsplit(url)
    if parts.scheme not in ("http", "https"):
        raise TetherError(Failure.of(Code.INVALID_URL, Phase.CONFIG,
                                     f"{redact_url(url)!r} is not an http:// or https:// URL"))
    # urllib's own proxy handling is off: the proxy is the dialer's (transport.proxy_for).
    handlers: list[urllib.request.BaseHandler] = [
        _NoRedirect(), urllib.request.HTTPSHandler(context=http.ssl_context()),
        urllib.request.ProxyHandler({})]
    headers = {"Accept": "application/json", "User-Agent": user_agent(),
               "X-Request-Id": str(uuid.uuid4())}
    data = None
    if form is not None:
        data = urllib.parse.urlencode(form).encode()
        headers["Content-Type"] = "application/x-www-form-urlencoded"
    req = urllib.request.Request(url, data=data, headers=headers,  # noqa: S310 - checked above
                                 method="POST" if form is not None else "GET")
    proxy = proxy_for(parts.scheme, parts.hostname or "")
    if proxy is not None:
        req.set_proxy(proxy.address, "http")  # https: a CONNECT tunnel; http: absolute-form
        if proxy.authorization:
            req.add_unredirected_header("Proxy-Authorization", proxy.authorization)
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
        reason = exc.reason if isinstance(exc, urllib.error.URLError) and isinstance(
            exc.reason, BaseException) else exc
        raise TetherError(classify_exception(reason, phase=Phase.CONNECT, url=url)
                          .replace(cause=exc)) from exc


def _lower(items: Any) -> dict[str, str]:
    return {str(k).lower(): str(v) for k, v in items}
