"""OAuth over HTTP: the device flow (RFC 8628) and the refresh_token grant (RFC 6749 s. 6).

The gateway serves both at ``/v1/auth/device`` and ``/v1/auth/token``; a
context may name another issuer's endpoints instead. Requests go through
:func:`tether.client.http.request`: TLS as the dialer does it, no redirects (a token
request is never replayed elsewhere), bodies read up to 64 KiB.

Exceptions::

    TetherError           every failure, classified (connect codes, refresh-failed, ...)
    OAuthError            raised when the token endpoint answers an RFC 6749 error;
                          the device-flow poll consumes the pending ones
"""

from __future__ import annotations

import json
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from tether.classify import classify_handshake
from tether.client.http import HttpOptions, Response, request
from tether.errors import Code, Failure, Phase, TetherError
from tether.text import redact_url, strip_control

DEVICE_GRANT = "urn:ietf:params:oauth:grant-type:device_code"
DEFAULT_CLIENT_ID = "tether"
SLOW_DOWN_STEP = 5.0
MAX_POLL_FAILURES = 5  # transient network failures in a row while polling
#: The characters of an RFC 6750 ``b64token``: anything else could break the header.
_TOKEN_CHARS = frozenset("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-._~+/=")


def is_token_text(token: str) -> bool:
    """Whether ``token`` can travel in an ``Authorization: Bearer`` header as it is."""
    return 0 < len(token) <= 16384 and set(token) <= _TOKEN_CHARS


@dataclass(frozen=True)
class Endpoints:
    """Where the device flow and the token grant go."""

    device: str
    token: str
    client_id: str = DEFAULT_CLIENT_ID

    @classmethod
    def for_gateway(cls, gateway: str, *, device: str | None = None, token: str | None = None,
                    client_id: str | None = None) -> Endpoints:
        """The gateway's own endpoints, or the issuer's ones given in a context."""
        return cls(device or f"{gateway}/v1/auth/device", token or f"{gateway}/v1/auth/token",
                   client_id or DEFAULT_CLIENT_ID)


@dataclass(frozen=True, repr=False)
class DeviceAuthorization:
    """The answer of the device endpoint (RFC 8628 s. 3.2)."""

    device_code: str
    user_code: str
    verification_uri: str
    verification_uri_complete: str | None
    expires_in: float
    interval: float

    def __repr__(self) -> str:
        return f"DeviceAuthorization(user_code={self.user_code!r}, device_code=<redacted>)"


@dataclass(frozen=True, repr=False)
class TokenResponse:
    """A successful token answer."""

    access_token: str
    refresh_token: str | None
    expires_in: float | None

    def __repr__(self) -> str:
        return "TokenResponse(<redacted>)"


class OAuthError(Exception):
    """Raised when the token endpoint answers an RFC 6749 error such as invalid_grant."""

    def __init__(self, error: str, description: str, status: int) -> None:
        self.error = strip_control(error, limit=64)
        self.description = strip_control(description, limit=300)
        self.status = status
        super().__init__(f"{self.error}: {self.description}" if self.description else self.error)


def _status_failure(url: str, answer: Response) -> Failure:
    """A refused OAuth request, classified like any other answer (a proxy in between named)."""
    failure = classify_handshake(answer.status, answer.headers, answer.body,
                                 url=redact_url(url), now=time.time())
    return failure.replace(phase=Phase.CREDENTIALS,
                           request_id=failure.request_id or answer.request_id)


def post_form(url: str, form: dict[str, str], http: HttpOptions) -> tuple[int, dict[str, Any]]:
    """POST ``form`` to ``url``; the status and the JSON object answered.

    Raises TetherError for network failures, and for answers that are not JSON
    objects unless they are an OAuth error status (400, 401).
    """
    if urllib.parse.urlsplit(url).scheme not in ("http", "https"):
        raise TetherError(Failure.of(
            Code.INVALID_URL, Phase.CONFIG,
            f"the OAuth endpoint {redact_url(url)!r} is not an http:// or https:// URL",
            hint="Fix the context's device-endpoint / token-endpoint in the config file."))
    answer = request(url, http, form=form)
    status, body, request_id = answer.status, answer.body, answer.request_id
    try:
        data = json.loads(body)
    except ValueError:
        data = None
    if not isinstance(data, dict):
        if status in (200, 400, 401):
            raise TetherError(Failure.of(
                Code.PROTOCOL_ERROR, Phase.CREDENTIALS,
                f"{redact_url(url)} answered HTTP {status} without a JSON object",
                http_status=status, url=redact_url(url), request_id=request_id))
        raise TetherError(_status_failure(url, answer))
    if status not in (200, 400, 401):
        raise TetherError(_status_failure(url, answer))
    return status, data


def _token_error(data: dict[str, Any], status: int, sent: str) -> OAuthError | None:
    """The error in a token answer; ``sent`` (the grant's secret) is scrubbed from its text."""
    error = data.get("error")
    if status == 200 and error is None:
        return None
    description = data.get("error_description")
    description = description if isinstance(description, str) else ""
    return OAuthError(str(error or "invalid_response").replace(sent, "REDACTED"),
                      description.replace(sent, "REDACTED"), status)


def _number(data: dict[str, Any], key: str, default: float) -> float:
    value = data.get(key)
    return float(value) if isinstance(value, int | float) and value > 0 else default


def _token_response(url: str, data: dict[str, Any]) -> TokenResponse:
    access, refresh = data.get("access_token"), data.get("refresh_token")
    if not isinstance(access, str) or not is_token_text(access) or (
            refresh is not None and (not isinstance(refresh, str) or not is_token_text(refresh))):
        raise TetherError(Failure.of(Code.PROTOCOL_ERROR, Phase.CREDENTIALS,
                                     f"{redact_url(url)} answered without a usable token",
                                     url=redact_url(url)))
    expires = data.get("expires_in")
    return TokenResponse(access, refresh, float(expires) if isinstance(expires, int | float)
                         else None)


def start_device_flow(endpoints: Endpoints, http: HttpOptions) -> DeviceAuthorization:
    """Ask for a device code and a user code (RFC 8628 s. 3.1)."""
    status, data = post_form(endpoints.device, {"client_id": endpoints.client_id}, http)
    fields = [data.get(k) for k in ("device_code", "user_code", "verification_uri")]
    if status != 200 or not all(isinstance(v, str) and v for v in fields):
        error = data.get("error")
        detail = f" ({strip_control(str(error), limit=64)})" if error else ""
        raise TetherError(Failure.of(
            Code.PROTOCOL_ERROR, Phase.CREDENTIALS,
            f"{redact_url(endpoints.device)} did not start a device login{detail}",
            http_status=status, url=redact_url(endpoints.device)))
    complete = data.get("verification_uri_complete")
    return DeviceAuthorization(
        device_code=str(fields[0]), user_code=strip_control(str(fields[1]), limit=64),
        verification_uri=strip_control(str(fields[2]), limit=500),
        verification_uri_complete=strip_control(complete, limit=500)
        if isinstance(complete, str) and complete else None,
        expires_in=_number(data, "expires_in", 600.0),
        interval=_number(data, "interval", 5.0))


def _login_failure(title: str, message: str, hint: str, code: Code = Code.REFRESH_FAILED,
                   ) -> TetherError:
    return TetherError(Failure.of(code, Phase.CREDENTIALS, message, title=title, hint=hint))


def poll_device_token(endpoints: Endpoints, device: DeviceAuthorization, http: HttpOptions, *,
                      sleep: Callable[[float], None] = time.sleep,
                      clock: Callable[[], float] = time.monotonic) -> TokenResponse:
    """Poll the token endpoint until the user approves, denies, or the code expires.

    Waits ``interval`` between polls, 5 s more after each ``slow_down``; never
    past ``expires_in``. Up to ``MAX_POLL_FAILURES`` transient network failures
    in a row are ridden out. KeyboardInterrupt from ``sleep`` propagates.
    """
    deadline = clock() + device.expires_in
    interval = device.interval
    form = {"grant_type": DEVICE_GRANT, "device_code": device.device_code,
            "client_id": endpoints.client_id}
    max_polls = int(device.expires_in / max(interval, 0.05)) + 2
    failures: list[TetherError] = []
    for _ in range(max_polls):
        remaining = deadline - clock()
        if remaining <= 0:
            break
        sleep(min(interval, remaining))
        try:
            status, data = post_form(endpoints.token, form, http)
        except TetherError as exc:
            failures.append(exc)
            if not exc.failure.retryable or len(failures) >= MAX_POLL_FAILURES:
                raise
            continue
        failures.clear()
        error = _token_error(data, status, device.device_code)
        if error is None:
            return _token_response(endpoints.token, data)
        if error.error == "authorization_pending":
            continue
        if error.error == "slow_down":
            interval += SLOW_DOWN_STEP
            continue
        if error.error == "access_denied":
            raise _login_failure(
                "Login denied", "the login request was denied on the approval page",
                "Ask an Admin of the gateway to approve your login, then run "
                "`tether auth login` again.", Code.PERMISSION_DENIED)
        if error.error == "expired_token":
            break
        raise _login_failure("Login failed", f"the token endpoint refused the login: {error}",
                             "Run `tether auth login` again.")
    if failures:
        raise failures[-1]
    raise _login_failure("Login code expired", "the login code expired before it was approved",
                         "Run `tether auth login` again and approve the new code in time.")


def refresh_grant(endpoints: Endpoints, refresh_token: str, http: HttpOptions) -> TokenResponse:
    """Trade ``refresh_token`` for a new pair (RFC 6749 s. 6).

    Raises TetherError(refresh-failed) when the endpoint refuses it (invalid_grant).
    """
    form = {"grant_type": "refresh_token", "refresh_token": refresh_token,
            "client_id": endpoints.client_id}
    status, data = post_form(endpoints.token, form, http)
    error = _token_error(data, status, refresh_token)
    if error is not None:
        raise TetherError(Failure.of(
            Code.REFRESH_FAILED, Phase.CREDENTIALS,
            f"the token endpoint refused to refresh the token: {error}",
            http_status=status, problem_code=error.error, url=redact_url(endpoints.token)))
    return _token_response(endpoints.token, data)
