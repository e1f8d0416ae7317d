"""Tables for the classifier: statuses, close codes and exceptions to catalog codes."""

from __future__ import annotations

import errno
import inspect
import json
import socket
import ssl
import subprocess
import sys
import threading
from collections.abc import Iterator
from email.utils import formatdate
from typing import Any

import pytest
import trustme
import websocket
from websocket import _exceptions as ws_exceptions

from tether.classify import (
    MAX_BODY,
    MAX_RETRY_AFTER,
    Challenge,
    Problem,
    classified,
    classify_close,
    classify_exception,
    classify_handshake,
    exception_map,
    parse_problem,
    parse_retry_after,
    parse_www_authenticate,
)
from tether.classify.status import Situation
from tether.classify.wording import SITUATION_WORDS
from tether.errors import Code, Failure, Phase, TetherError

NOW = 1_800_000_000.0
PROBLEM = {"Content-Type": "application/problem+json"}


def problem(**fields: Any) -> bytes:
    return json.dumps(fields).encode()


def assert_row(f: Failure, code: Code, phase: Phase, retryable: bool, exit_code: int) -> None:
    assert (f.code, f.phase, f.retryable, f.exit_code) == (code, phase, retryable, exit_code), f


# --- handshake ---------------------------------------------------------------------------

HANDSHAKE_ROWS = [
    # status, headers, body, code, retryable, exit
    (400, PROBLEM, problem(detail="missing service"), Code.INVALID_REQUEST, False, 64),
    (401, {}, None, Code.UNAUTHORIZED, False, 77),
    (403, {}, b"", Code.PERMISSION_DENIED, False, 77),
    (404, {}, b"", Code.NOT_FOUND, False, 69),
    (407, {}, b"", Code.PROXY_ERROR, False, 78),
    (429, {"Retry-After": "7"}, b"", Code.RATE_LIMITED, True, 75),
    (500, {}, b"", Code.GATEWAY_ERROR, True, 69),
    (502, {}, b"", Code.BACKEND_UNAVAILABLE, True, 69),
    (504, {}, b"", Code.BACKEND_UNAVAILABLE, True, 69),
    (503, {}, b"", Code.GATEWAY_UNAVAILABLE, True, 69),
    (200, {"Content-Type": "text/html"}, b"<html></html>", Code.PROTOCOL_ERROR, False, 65),
    (204, {}, b"", Code.PROTOCOL_ERROR, False, 65),
    (101, {}, b"", Code.PROTOCOL_ERROR, False, 65),
    (301, {"Location": "https://x/"}, b"", Code.UNEXPECTED_STATUS, False, 69),
    (405, {}, b"", Code.UNEXPECTED_STATUS, False, 69),
    (418, {}, b"", Code.UNEXPECTED_STATUS, False, 69),
    (100, {}, b"", Code.UNEXPECTED_STATUS, False, 69),
    (599, {}, b"", Code.UNEXPECTED_STATUS, False, 69),
]


@pytest.mark.parametrize(("status", "headers", "body", "code", "retryable", "exit_code"),
                         HANDSHAKE_ROWS)
def test_handshake_status_table(status: int, headers: dict[str, str], body: bytes | None,
                                code: Code, retryable: bool, exit_code: int) -> None:
    f = classify_handshake(status, headers, body, url="https://gw.example/v1/shell?service=api",
                           now=NOW)
    assert_row(f, code, Phase.HANDSHAKE, retryable, exit_code)
    assert f.http_status == status
    assert f.url == "https://gw.example/v1/shell?service=api"
    assert str(status) in f.message


def test_handshake_problem_fields_and_request_id() -> None:
    body = problem(type="https://tether.dev/errors/invalid-request", title="Bad request",
                   status=400, detail="cols must be a number", code="invalid-request",
                   request_id="body-id")
    f = classify_handshake(400, {"content-type": "application/problem+json",
                                 "X-REQUEST-ID": "hdr-id"}, body)
    assert f.problem_code == "invalid-request"
    assert f.problem_title == "Bad request"
    assert f.problem_detail == "cols must be a number"
    assert "cols must be a number" in f.message
    assert f.request_id == "hdr-id"  # the header wins
    f2 = classify_handshake(400, PROBLEM, body)
    assert f2.request_id == "body-id"


def test_handshake_headers_as_pairs_and_case_insensitive() -> None:
    pairs = [("x-request-id", "abc"), ("RETRY-AFTER", "3")]
    f = classify_handshake(503, pairs, None, now=NOW)
    assert (f.request_id, f.retry_after) == ("abc", 3.0)


def test_401_expired_from_www_authenticate() -> None:
    header = ('Bearer realm="tether", error="invalid_token", '
              'error_description="The access token expired"')
    f = classify_handshake(401, {"WWW-Authenticate": header}, None)
    assert_row(f, Code.TOKEN_EXPIRED, Phase.HANDSHAKE, False, 77)
    assert f.retry.value == "refresh-once"
    assert "expired" in f.message


def test_401_expired_from_problem_code() -> None:
    f = classify_handshake(401, PROBLEM, problem(code="token-expired", detail="too late"))
    assert f.code is Code.TOKEN_EXPIRED
    assert f.problem_code == "token-expired"


def test_401_invalid_token_not_expired_stays_unauthorized() -> None:
    header = 'Bearer error="invalid_token", error_description="signature mismatch"'
    f = classify_handshake(401, {"WWW-Authenticate": header}, None)
    assert f.code is Code.UNAUTHORIZED
    assert "signature mismatch" in f.message


def test_problem_code_inconsistent_with_status_does_not_refine() -> None:
    f = classify_handshake(500, PROBLEM, problem(code="token-expired"))
    assert f.code is Code.GATEWAY_ERROR
    f = classify_handshake(404, PROBLEM, problem(code="internal-error"))
    assert f.code is Code.NOT_FOUND


def test_504_refined_to_agent_timeout_by_problem_code() -> None:
    f = classify_handshake(504, PROBLEM, problem(code="agent-timeout"), service="api")
    assert f.code is Code.AGENT_TIMEOUT


def test_403_names_required_role_and_your_role() -> None:
    body = problem(title="Permission denied", status=403, code="permission-denied",
                   detail="role Viewer cannot open a shell on service api",
                   required_role="Deployer")
    f = classify_handshake(403, PROBLEM, body, service="api", command="shell", role="Viewer",
                           gateway="https://gw.example.com")
    assert f.message.startswith("`shell` needs role Deployer; you have Viewer")
    assert f.hint == "Ask an Admin of https://gw.example.com for the Deployer role."
    assert f.required_role == "Deployer"
    assert f.problem_detail == "role Viewer cannot open a shell on service api"


def test_403_required_role_from_minimum_roles_when_body_lacks_it() -> None:
    f = classify_handshake(403, {}, b"", command="port-forward", role="Viewer", gateway="gw")
    assert f.required_role == "Deployer"
    assert "`port-forward` needs role Deployer; you have Viewer" in f.message
    assert f.hint == "Ask an Admin of gw for the Deployer role."


def test_403_when_role_suffices_does_not_invent_a_role() -> None:
    body = problem(detail="port 22 is not allowed")
    f = classify_handshake(403, PROBLEM, body, command="port-forward", role="Deployer")
    assert f.required_role is None
    assert "needs role" not in f.message
    assert "port 22 is not allowed" in f.message


def test_404_lists_services() -> None:
    body = problem(detail="no service apx", services=["api", "web", 3, {"name": "db"}])
    f = classify_handshake(404, PROBLEM, body, service="apx")
    assert "`apx`" in f.message
    assert f.hint == "Services the gateway knows: api, web, db."


def test_429_retry_after_seconds_and_date() -> None:
    f = classify_handshake(429, {"Retry-After": "90"}, None, now=NOW)
    assert f.retry_after == 90.0
    assert "1 min 30 s" in f.message
    date = formatdate(NOW + 30, usegmt=True)
    f = classify_handshake(429, {"Retry-After": date}, None, now=NOW)
    assert f.retry_after == pytest.approx(30.0)
    assert "30 s" in f.message
    f = classify_handshake(429, {}, None, now=NOW)
    assert f.retry_after is None
    assert f.code is Code.RATE_LIMITED


def test_429_retry_after_from_problem_body() -> None:
    f = classify_handshake(429, PROBLEM, problem(retry_after=12), now=NOW)
    assert f.retry_after == 12.0


def test_502_cluster_health_hint() -> None:
    f = classify_handshake(502, {}, b"", service="api")
    assert f.hint == ("Verify that the cluster hosting api is running and healthy "
                      "(`tether status api`); tether retries meanwhile.")
    f = classify_handshake(504, {}, b"")
    assert "`tether status`" in f.hint


def test_500_hint_names_request_id() -> None:
    f = classify_handshake(500, {"X-Request-Id": "r-42"}, None)
    assert "r-42" in f.hint


def test_redirect_names_redacted_sanitized_location() -> None:
    location = "https://user:pw@login.example.com/sso?token=SECRET&next=/x\x1b[2J"
    f = classify_handshake(302, {"Location": location}, b"<html><title>Sign in</title></html>")
    assert f.code is Code.UNEXPECTED_STATUS
    assert "login.example.com" in f.message
    assert "login page" in f.message
    assert "SECRET" not in f.message and "pw" not in f.message
    assert "\x1b" not in f.message


def test_200_html_is_not_a_websocket_endpoint() -> None:
    body = b"<!doctype html><html><head><title>Welcome to nginx!</title></head></html>"
    f = classify_handshake(200, {"Content-Type": "text/html"}, body)
    assert "not a WebSocket endpoint" in f.message
    assert "Welcome to nginx!" in f.message


@pytest.mark.parametrize("body", [
    None, b"", b"   ", b"<html><body>Bad gateway</body></html>", b"not json at all",
    b"[1, 2, 3]", b'{"detail": ', b"\xff\xfe\xfa invalid utf-8 \xc3",
    b'{"detail": 5, "title": ["x"], "code": null, "status": "403", "required_role": 1}',
    b"[" * 50_000 + b"]" * 50_000,
    b'{"detail": "' + b"x" * (MAX_BODY * 4) + b'"}',
])
def test_handshake_any_body(body: bytes | None) -> None:
    f = classify_handshake(403, {"Content-Type": "application/problem+json"}, body,
                           command="shell", role="Viewer")
    assert f.code is Code.PERMISSION_DENIED
    assert len(f.message) < 1000


def test_invalid_status_values() -> None:
    for status in (-1, 0, 10_000, True, "abc", None):
        f = classify_handshake(status, None, None)  # type: ignore[arg-type]
        assert f.code is Code.UNEXPECTED_STATUS
        assert f.phase is Phase.HANDSHAKE


def test_odd_headers() -> None:
    weird: Any = [("a",), ("b", "c", "d"), 5, (b"Retry-After", b"4"), ("x", ["1", "2"]), None]
    f = classify_handshake(429, weird, None, now=NOW)
    assert f.retry_after == 4.0
    assert classify_handshake(429, "nonsense", None).code is Code.RATE_LIMITED  # type: ignore[arg-type]
    assert classify_handshake(429, 12, None).code is Code.RATE_LIMITED  # type: ignore[arg-type]


def test_peer_text_is_stripped_of_controls() -> None:
    body = problem(detail="bad\x1b[31m red\x07\r\n next\u202e", title="T\x9bitle")
    f = classify_handshake(400, PROBLEM, body, service="a\x1bpi")
    for text in (f.message, f.hint, f.title, f.problem_detail or "", f.problem_title or ""):
        assert not any(ord(c) < 32 or 0x7F <= ord(c) <= 0x9F for c in text), text
    assert "bad red next" in f.message


# --- parse_problem ------------------------------------------------------------------------


def test_parse_problem_full() -> None:
    p = parse_problem(problem(type="t", title="Forbidden", status=403, detail="d",
                              instance="/i", code="Permission-Denied", required_role="Deployer",
                              request_id="r", services=["a"], retry_after=3.5),
                      "application/problem+json; charset=utf-8")
    assert p == Problem(type="t", title="Forbidden", status=403, detail="d", instance="/i",
                        code="permission-denied", required_role="Deployer", request_id="r",
                        retry_after=3.5, services=("a",))


@pytest.mark.parametrize(("body", "ctype"), [
    (None, None), (b"", "application/json"), (b"<html>{}</html>", "text/html"),
    (b'{"a": 1}', "text/html"), (b"[1]", "application/json"), (b"nope", None),
    (b"\xff\xff", "application/problem+json"), (b"{" * 100_000, None), (b'"str"', None),
])
def test_parse_problem_none(body: bytes | None, ctype: str | None) -> None:
    assert parse_problem(body, ctype) is None


def test_parse_problem_wrong_types_ignored() -> None:
    p = parse_problem(b'{"title": 1, "status": true, "detail": null, "services": "api",'
                      b' "retry_after": -3, "code": ["x"]}', None)
    assert p == Problem()


def test_parse_problem_reads_only_max_body() -> None:
    # a valid object that ends after MAX_BODY: cut, so no longer valid JSON
    body = b'{"detail": "' + b"a" * MAX_BODY + b'"}'
    assert parse_problem(body, "application/json") is None
    # valid within the limit, with junk after it that would make it invalid
    head = b'{"detail": "ok"}'
    body = head + b" " * (MAX_BODY - len(head)) + b"trailing junk"
    assert parse_problem(body, "application/json") == Problem(detail="ok")


def test_parse_problem_invalid_utf8_replaced() -> None:
    p = parse_problem(b'{"detail": "caf\xe9 \xff"}', None)
    assert p is not None and p.detail == "caf\ufffd \ufffd"


def test_parse_problem_bounds_fields() -> None:
    p = parse_problem(problem(detail="x" * 50_000, services=[f"s{i}" for i in range(500)]), None)
    assert p is not None and p.detail is not None
    assert len(p.detail) <= 1000
    assert len(p.services) == 50


# --- WWW-Authenticate ----------------------------------------------------------------------


def test_www_authenticate_bearer_rfc6750() -> None:
    [c] = parse_www_authenticate('Bearer realm="example", error="invalid_token", '
                                 'error_description="The access token expired"')
    assert c.scheme == "Bearer"
    assert c.get("realm") == "example"
    assert c.get("ERROR") == "invalid_token"
    assert c.get("error_description") == "The access token expired"
    assert c.token68 is None


def test_www_authenticate_several_challenges_and_token68() -> None:
    cs = parse_www_authenticate('Newauth realm="apps", type=1, title="Login to \\"apps\\"", '
                                'Basic realm="simple", Negotiate abc+/def==, Bearer')
    assert [c.scheme for c in cs] == ["Newauth", "Basic", "Negotiate", "Bearer"]
    assert cs[0].params == (("realm", "apps"), ("type", "1"), ("title", 'Login to "apps"'))
    assert cs[1].get("realm") == "simple"
    assert cs[2].token68 == "abc+/def=="
    assert cs[3] == Challenge("Bearer")


def test_www_authenticate_quoted_comma_and_escapes() -> None:
    [c] = parse_www_authenticate(r'Bearer error_description="a, b \\ c \"d\"", error=x')
    assert c.get("error_description") == 'a, b \\ c "d"'
    assert c.get("error") == "x"


def test_www_authenticate_spaces_around_equals_and_case() -> None:
    [c] = parse_www_authenticate('bearer  Error = "invalid_token" ,scope=read')
    assert c.get("error") == "invalid_token"
    assert c.get("scope") == "read"


@pytest.mark.parametrize("value", [
    "", "   ", ",,,", "=", '"', 'Bearer error="unterminated', "Bearer error=", "\x00\x01",
    "Bearer ==== ,", "Bearer a=b=c", '"quoted" Bearer', "Basic, , Bearer x=\"y\"", "a" * 20_000,
])
def test_www_authenticate_garbage_never_raises(value: str) -> None:
    result = parse_www_authenticate(value)
    assert isinstance(result, list)
    assert all(isinstance(c, Challenge) for c in result)


def test_www_authenticate_unterminated_quote_runs_to_end() -> None:
    [c] = parse_www_authenticate('Bearer error="invalid_token')
    assert c.get("error") == "invalid_token"


# --- Retry-After ---------------------------------------------------------------------------


@pytest.mark.parametrize(("value", "expected"), [
    ("0", 0.0), ("120", 120.0), (" 5 ", 5.0), ("1.5", 1.5), ("99999999", MAX_RETRY_AFTER),
    ("9" * 400, MAX_RETRY_AFTER), ("-5", None), ("soon", None), ("", None), ("1e3", None),
    ("0x10", None), ("Fri, 31 Dec 9999 23:59:59 GMT", MAX_RETRY_AFTER),
    ("Mon, 32 Foo 2024 99:99:99 GMT", None), ("NaN", None), ("inf", None),
])
def test_retry_after_values(value: str, expected: float | None) -> None:
    assert parse_retry_after(value, NOW) == expected


def test_retry_after_http_date_forms() -> None:
    # IMF-fixdate, obsolete RFC 850 and asctime forms of the same instant
    now = 784_111_777.0 - 60  # 1994-11-06 08:49:37 GMT minus a minute
    for value in ("Sun, 06 Nov 1994 08:49:37 GMT", "Sunday, 06-Nov-94 08:49:37 GMT",
                  "Sun Nov  6 08:49:37 1994"):
        got = parse_retry_after(value, now)
        assert got == pytest.approx(60.0), value


def test_retry_after_past_date_is_zero() -> None:
    assert parse_retry_after(formatdate(NOW - 3600, usegmt=True), NOW) == 0.0


# --- close frames ---------------------------------------------------------------------------

CLOSE_ROWS = [
    # code, reason, expected code, retryable, exit
    (None, None, Code.CONNECTION_LOST, True, 69),
    (1000, "", Code.CONNECTION_LOST, True, 69),
    (1001, "going away", Code.GATEWAY_RESTARTING, True, 69),
    (1012, "", Code.GATEWAY_RESTARTING, True, 69),
    (1002, "bad frame", Code.PROTOCOL_ERROR, False, 65),
    (1003, "", Code.PROTOCOL_ERROR, False, 65),
    (1005, "", Code.CONNECTION_LOST, True, 69),
    (1006, "", Code.CONNECTION_LOST, True, 69),
    (1015, "", Code.TLS_ERROR, False, 78),
    (1007, "permission-denied: role Viewer cannot open a shell (requires Deployer)",
     Code.PERMISSION_DENIED, False, 77),
    (1008, "token-expired: the token expired", Code.TOKEN_EXPIRED, False, 77),
    (1008, "Token has EXPIRED", Code.TOKEN_EXPIRED, False, 77),
    (1008, "token revoked", Code.UNAUTHORIZED, False, 77),
    (1009, "", Code.MESSAGE_TOO_BIG, False, 65),
    (1010, "", Code.PROTOCOL_ERROR, False, 65),
    (1011, "", Code.BACKEND_UNAVAILABLE, True, 69),
    (1011, "backend-unavailable: cluster eu-1 is not answering", Code.BACKEND_UNAVAILABLE, True,
     69),
    (1011, "Timeout exceeded for receiving agent response", Code.AGENT_TIMEOUT, True, 69),
    (1011, "error while connecting to pod api-7", Code.AGENT_TIMEOUT, True, 69),
    (1011, "failure while setting up port forward", Code.AGENT_TIMEOUT, True, 69),
    (1011, "retry budget exhausted", Code.AGENT_TIMEOUT, True, 69),
    (1011, "read TIMED OUT", Code.AGENT_TIMEOUT, True, 69),
    (1011, "agent-timeout: the agent did not answer", Code.AGENT_TIMEOUT, True, 69),
    (1011, "target-unreachable: nothing listens on 5432", Code.TARGET_UNREACHABLE, True, 69),
    (1013, "", Code.OVERLOADED, True, 75),
    (1014, "", Code.BACKEND_UNAVAILABLE, True, 69),
    (4400, "", Code.INVALID_REQUEST, False, 64),
    (4401, "", Code.UNAUTHORIZED, False, 77),
    (4401, "token-expired: exp passed", Code.TOKEN_EXPIRED, False, 77),
    (4403, "", Code.PERMISSION_DENIED, False, 77),
    (4404, "not-found: no instance api-9", Code.NOT_FOUND, False, 69),
    (4429, "", Code.RATE_LIMITED, True, 75),
    (4500, "", Code.GATEWAY_ERROR, True, 69),
    (4502, "", Code.BACKEND_UNAVAILABLE, True, 69),
    (4503, "", Code.GATEWAY_UNAVAILABLE, True, 69),
    (4504, "", Code.BACKEND_UNAVAILABLE, True, 69),
    (4405, "", Code.UNEXPECTED_STATUS, False, 69),
    (4000, "", Code.PROTOCOL_ERROR, False, 65),
    (4999, "", Code.PROTOCOL_ERROR, False, 65),
    (4001, "unauthorized: bad token", Code.UNAUTHORIZED, False, 77),
    (3000, "", Code.CONNECTION_LOST, True, 69),
    (3999, "rate-limited: slow down", Code.RATE_LIMITED, True, 75),
    (3001, "internal-error: not a peer's word", Code.CONNECTION_LOST, True, 69),
    (0, "", Code.PROTOCOL_ERROR, False, 65),
    (999, "", Code.PROTOCOL_ERROR, False, 65),
    (1004, "", Code.PROTOCOL_ERROR, False, 65),
    (2500, "", Code.PROTOCOL_ERROR, False, 65),
    (5000, "", Code.PROTOCOL_ERROR, False, 65),
    (65535, "", Code.PROTOCOL_ERROR, False, 65),
]


@pytest.mark.parametrize(("close", "reason", "code", "retryable", "exit_code"), CLOSE_ROWS)
def test_close_table(close: int | None, reason: str | None, code: Code, retryable: bool,
                     exit_code: int) -> None:
    f = classify_close(close, reason, service="api", command="shell", role="Viewer",
                       url="wss://gw.example/v1/shell?token=abc")
    assert_row(f, code, Phase.SESSION, retryable, exit_code)
    assert f.close_code == close
    assert f.close_reason == (reason or None)
    assert f.url == "wss://gw.example/v1/shell?token=REDACTED"
    if close is not None:
        assert str(close) in f.message


def test_target_unreachable_is_per_connection() -> None:
    f = classify_close(1011, "target-unreachable: refused", service="db", port=5432)
    assert f.retry.value == "per-connection"
    assert "port 5432" in f.message and "db" in f.hint


def test_close_1000_says_ended_before_done() -> None:
    f = classify_close(1000, "")
    assert "ended the session before it was done" in f.message


def test_close_1011_cluster_hint_names_service() -> None:
    f = classify_close(1011, "", service="api")
    assert "cluster hosting api" in f.hint and "`tether status api`" in f.hint


def test_close_1007_names_roles() -> None:
    f = classify_close(1007, "permission-denied: role Viewer cannot open a shell (requires "
                       "Deployer)", command="shell", role="Viewer", gateway="gw.example")
    assert f.required_role == "Deployer"
    assert f.message.startswith("`shell` needs role Deployer; you have Viewer")
    assert f.hint == "Ask an Admin of gw.example for the Deployer role."


def test_close_4429_retry_after_in_reason() -> None:
    f = classify_close(4429, "rate-limited: retry after 12 s")
    assert f.retry_after == 12.0
    assert "12 s" in f.message


def test_close_reason_bytes_not_utf8_replaced() -> None:
    f = classify_close(1011, b"boom \xff\xfe")
    assert f.close_reason == "boom \ufffd\ufffd"


def test_close_reason_controls_stripped_and_bounded() -> None:
    f = classify_close(1008, "\x1b]0;owned\x07expired\x00" + "x" * 5000)
    assert f.code is Code.TOKEN_EXPIRED
    assert f.close_reason is not None and "\x1b" not in f.close_reason
    assert len(f.close_reason) <= 1000
    assert len(f.message) < 600


def test_close_odd_values() -> None:
    for code in (-1, 70_000, "1011", 1011.0, True):
        f = classify_close(code, None)  # type: ignore[arg-type]
        assert f.phase is Phase.SESSION
    assert classify_close("1011", None).code is Code.BACKEND_UNAVAILABLE  # type: ignore[arg-type]
    assert classify_close("x", 5).code is Code.CONNECTION_LOST  # type: ignore[arg-type]


# --- exceptions -----------------------------------------------------------------------------

URL = "wss://gw.example.com:8443/v1/shell?service=api&token=SECRET"


def test_gaierror_name_missing_vs_resolver_unreachable() -> None:
    missing = classify_exception(socket.gaierror(socket.EAI_NONAME, "Name or service not known"),
                                 url=URL)
    down = classify_exception(socket.gaierror(socket.EAI_AGAIN, "Temporary failure"), url=URL)
    fail = classify_exception(socket.gaierror(socket.EAI_FAIL, "Non-recoverable"), url=URL)
    for f in (missing, down, fail):
        assert_row(f, Code.DNS_FAILURE, Phase.CONNECT, True, 69)
        assert f.url is not None and "SECRET" not in f.url
        assert "`gw.example.com`" in f.message
    assert "does not exist" in missing.message
    assert "no DNS server answered" in down.message
    assert down.message == fail.message
    assert missing.hint != down.hint
    if hasattr(socket, "EAI_NODATA"):
        nodata = classify_exception(socket.gaierror(socket.EAI_NODATA, "No address"), url=URL)
        assert nodata.message == missing.message


def test_real_lookup_of_invalid_name() -> None:
    try:
        socket.getaddrinfo("tether-test.invalid", 443)
    except socket.gaierror as exc:
        f = classify_exception(exc, url="wss://tether-test.invalid/v1/shell")
    else:
        pytest.skip("a resolver answered for .invalid")
    assert f.code is Code.DNS_FAILURE
    assert "tether-test.invalid" in f.message


def test_websocket_address_exception_wrapping_gaierror() -> None:
    try:
        try:
            raise socket.gaierror(socket.EAI_NONAME, "Name or service not known")
        except socket.gaierror as inner:
            raise websocket.WebSocketAddressException(inner)
    except websocket.WebSocketAddressException as exc:
        f = classify_exception(exc, url=URL)
    assert f.code is Code.DNS_FAILURE and "does not exist" in f.message
    assert f.cause is not None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def test_real_connection_refused() -> None:
    port = free_port()
    with socket.socket() as s, pytest.raises(ConnectionRefusedError) as info:
        s.connect(("127.0.0.1", port))
    f = classify_exception(info.value, url=f"ws://127.0.0.1:{port}/v1/logs")
    assert_row(f, Code.CONNECTION_REFUSED, Phase.CONNECT, True, 69)
    assert f"127.0.0.1:{port}" in f.message
    assert f.cause is info.value


def test_real_read_timeout_by_phase() -> None:
    a, b = socket.socketpair()
    with a, b:
        a.settimeout(0.01)
        with pytest.raises(TimeoutError) as info:
            a.recv(1)
    assert classify_exception(info.value).code is Code.CONNECT_TIMEOUT
    assert classify_exception(info.value, phase=Phase.HANDSHAKE).code is Code.CONNECT_TIMEOUT
    f = classify_exception(info.value, phase=Phase.SESSION)
    assert_row(f, Code.KEEPALIVE_TIMEOUT, Phase.SESSION, True, 69)


def test_real_broken_pipe() -> None:
    a, b = socket.socketpair()
    with a:
        b.close()
        with pytest.raises(OSError) as info:
            for _ in range(100):
                a.send(b"x" * 65536)
    f = classify_exception(info.value, phase=Phase.SESSION)
    assert_row(f, Code.CONNECTION_LOST, Phase.SESSION, True, 69)


@pytest.mark.parametrize(("exc", "code"), [
    (ConnectionResetError(errno.ECONNRESET, "reset"), Code.CONNECTION_LOST),
    (BrokenPipeError(errno.EPIPE, "pipe"), Code.CONNECTION_LOST),
    (ConnectionAbortedError(errno.ECONNABORTED, "aborted"), Code.CONNECTION_LOST),
    (EOFError(), Code.CONNECTION_LOST),
    (OSError(errno.ENETUNREACH, "Network is unreachable"), Code.NETWORK_UNREACHABLE),
    (OSError(errno.EHOSTUNREACH, "No route to host"), Code.NETWORK_UNREACHABLE),
    (OSError(errno.ECONNREFUSED, "refused"), Code.CONNECTION_REFUSED),
    (OSError(errno.ETIMEDOUT, "timed out"), Code.CONNECT_TIMEOUT),
    (OSError(errno.EMFILE, "Too many open files"), Code.NETWORK_UNREACHABLE),
    (OSError("no errno"), Code.NETWORK_UNREACHABLE),
    (TimeoutError("timed out"), Code.CONNECT_TIMEOUT),
    (ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number"), Code.TLS_ERROR),
    (ssl.SSLEOFError(8, "EOF occurred in violation of protocol"), Code.TLS_ERROR),
    (KeyboardInterrupt(), Code.INTERRUPTED),
    (ValueError("a bug"), Code.INTERNAL_ERROR),
])
def test_exception_table(exc: BaseException, code: Code) -> None:
    f = classify_exception(exc, url=URL)
    assert f.code is code
    assert f.phase is (Phase.LOCAL if code is Code.INTERRUPTED else Phase.CONNECT)
    assert f.cause is exc
    assert "SECRET" not in f.message


def test_unknown_oserror_in_session_is_connection_lost() -> None:
    f = classify_exception(OSError(errno.EMFILE, "Too many open files"), phase=Phase.SESSION)
    assert f.code is Code.CONNECTION_LOST
    assert "EMFILE" in f.message


def test_local_phase_port_in_use() -> None:
    with socket.socket() as a:
        a.bind(("127.0.0.1", 0))
        a.listen()
        with socket.socket() as b, pytest.raises(OSError) as info:
            b.bind(a.getsockname())
    f = classify_exception(info.value, phase=Phase.LOCAL)
    assert_row(f, Code.LOCAL_PORT_IN_USE, Phase.LOCAL, False, 71)


def test_ssl_eof_in_session_is_connection_lost() -> None:
    f = classify_exception(ssl.SSLEOFError(8, "EOF"), phase=Phase.SESSION)
    assert f.code is Code.CONNECTION_LOST


@pytest.fixture(scope="module")
def ca() -> trustme.CA:
    return trustme.CA()


def tls_handshake_error(ca: trustme.CA, trust: bool, server_hostname: str) -> BaseException:
    server_ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("gw.test").configure_cert(server_ctx)
    client_ctx = ssl.create_default_context()
    if trust:
        ca.configure_trust(client_ctx)
    a, b = socket.socketpair()
    a.settimeout(5)
    b.settimeout(5)

    def serve() -> None:
        try:
            with server_ctx.wrap_socket(b, server_side=True):
                pass
        except (OSError, ssl.SSLError):
            pass

    thread = threading.Thread(target=serve)
    thread.start()
    try:
        with client_ctx.wrap_socket(a, server_hostname=server_hostname):
            pass
    except ssl.SSLError as exc:
        return exc
    finally:
        a.close()
        thread.join()
        b.close()
    raise AssertionError("the TLS handshake succeeded")


def test_real_tls_untrusted_certificate(ca: trustme.CA) -> None:
    exc = tls_handshake_error(ca, trust=False, server_hostname="gw.test")
    assert isinstance(exc, ssl.SSLCertVerificationError)
    f = classify_exception(exc, url="wss://gw.test/v1/shell")
    assert_row(f, Code.TLS_ERROR, Phase.CONNECT, False, 78)
    assert exc.verify_message in f.message
    assert "--ca-cert" in f.hint


def test_real_tls_hostname_mismatch(ca: trustme.CA) -> None:
    exc = tls_handshake_error(ca, trust=True, server_hostname="other.test")
    f = classify_exception(exc, url="wss://other.test/v1/shell")
    assert f.code is Code.TLS_ERROR
    assert "Hostname mismatch" in f.message


def test_tls_wrong_version_number_hints_at_plain_port() -> None:
    exc = ssl.SSLError(1, "[SSL: WRONG_VERSION_NUMBER] wrong version number")
    exc.reason = "WRONG_VERSION_NUMBER"
    f = classify_exception(exc, url=URL)
    assert "does not speak TLS" in f.message and "ws://" in f.hint


# --- websocket-client exceptions -----------------------------------------------------------


def websocket_exception_classes() -> list[type[BaseException]]:
    return [cls for _, cls in inspect.getmembers(ws_exceptions, inspect.isclass)
            if issubclass(cls, Exception) and cls.__module__ == ws_exceptions.__name__]


def make(cls: type[BaseException]) -> BaseException:
    if cls is websocket.WebSocketBadStatusException:
        return cls("Handshake status 502", 502, "Bad Gateway", {}, b"")
    return cls("something failed")


def test_every_websocket_exception_has_an_explicit_mapping() -> None:
    classes = websocket_exception_classes()
    assert len(classes) >= 8
    for cls in classes:
        assert cls in exception_map(), cls
        f = classify_exception(make(cls), url=URL)
        assert f.code is not Code.INTERNAL_ERROR, cls


@pytest.mark.parametrize(("exc", "code", "phase"), [
    (websocket.WebSocketTimeoutException("timed out"), Code.CONNECT_TIMEOUT, Phase.CONNECT),
    (websocket.WebSocketConnectionClosedException("lost"), Code.CONNECTION_LOST, Phase.CONNECT),
    (websocket.WebSocketProxyException("failed CONNECT via proxy status: 403"), Code.PROXY_ERROR,
     Phase.CONNECT),
    (websocket.WebSocketPayloadException("bad utf-8"), Code.PROTOCOL_ERROR, Phase.CONNECT),
    (websocket.WebSocketProtocolException("rsv bits"), Code.PROTOCOL_ERROR, Phase.CONNECT),
    (websocket.WebSocketException("Invalid WebSocket Header"), Code.PROTOCOL_ERROR,
     Phase.CONNECT),
    (websocket.WebSocketException("SSL CA certificate loading failed: nope"), Code.TLS_ERROR,
     Phase.CONNECT),
    (websocket.WebSocketException("Host not found.: x:1"), Code.DNS_FAILURE, Phase.CONNECT),
    (websocket.WebSocketException("Invalid status line: 'HTTP/9'"), Code.PROTOCOL_ERROR,
     Phase.CONNECT),
    (websocket.WebSocketException("???"), Code.PROTOCOL_ERROR, Phase.CONNECT),
    (websocket.WebSocketAddressException(TypeError("bad")), Code.DNS_FAILURE, Phase.CONNECT),
])
def test_websocket_exceptions(exc: BaseException, code: Code, phase: Phase) -> None:
    f = classify_exception(exc, url=URL)
    assert (f.code, f.phase) == (code, phase)
    assert f.cause is exc


def test_websocket_timeout_in_session_is_keepalive() -> None:
    exc = websocket.WebSocketTimeoutException("Connection timed out")
    assert classify_exception(exc, phase=Phase.SESSION).code is Code.KEEPALIVE_TIMEOUT


def test_websocket_proxy_407() -> None:
    exc = websocket.WebSocketProxyException("failed CONNECT via proxy status: 407")
    f = classify_exception(exc)
    assert f.code is Code.PROXY_ERROR and f.http_status == 407
    assert "authentication" in f.message


def test_bad_status_goes_through_handshake_and_never_shows_raw_body() -> None:
    body = b"\x1b]0;pwned\x07 RAW-BODY-MARKER " * 20_000
    headers = {"content-type": "text/plain", "retry-after": "9", "x-request-id": "rid-1"}
    exc = websocket.WebSocketBadStatusException(
        f"Handshake status 429 -+-+- {headers} -+-+- {body.decode()}", 429, "Too Many Requests",
        headers, body)
    f = classify_exception(exc, url=URL, now=NOW)
    assert_row(f, Code.RATE_LIMITED, Phase.HANDSHAKE, True, 75)
    assert (f.retry_after, f.request_id, f.http_status) == (9.0, "rid-1", 429)
    assert f.cause is exc
    assert "-+-+-" not in f.message
    assert len(f.message) < 600
    assert "\x1b" not in f.message and "\x07" not in f.message


def test_bad_status_403_uses_role_context() -> None:
    exc = websocket.WebSocketBadStatusException("x", 403, "Forbidden", None, None)
    f = classify_exception(exc, command="shell", role="Viewer", gateway="gw")
    assert f.required_role == "Deployer" and "you have Viewer" in f.message


def test_bad_status_with_odd_fields() -> None:
    exc = websocket.WebSocketBadStatusException("x", "nope", None, "headers?", 12)  # type: ignore[arg-type]
    f = classify_exception(exc)
    assert f.code is Code.UNEXPECTED_STATUS


def test_python_socks_style_errors_by_name() -> None:
    from websocket import _http

    names = vars(_http)
    assert classify_exception(names["ProxyError"]("x")).code is Code.PROXY_ERROR
    assert classify_exception(names["ProxyConnectionError"]("x")).code is Code.PROXY_ERROR
    assert classify_exception(names["ProxyTimeoutError"]("x")).code is Code.CONNECT_TIMEOUT


def test_exception_map_most_specific_class_wins() -> None:
    rules = exception_map()
    assert rules[websocket.WebSocketTimeoutException] is not rules[websocket.WebSocketException]
    assert rules[ConnectionRefusedError] is not rules[OSError]
    timeout = classify_exception(websocket.WebSocketTimeoutException("x"), url=URL)
    assert timeout.code is Code.CONNECT_TIMEOUT


def test_import_loads_no_websocket_library_and_the_map_follows_it_in() -> None:
    script = (
        "import sys\n"
        "from tether.classify import classify_exception, exception_map\n"
        "from tether.errors import Code\n"
        "assert 'websocket' not in sys.modules\n"
        "assert classify_exception(ConnectionRefusedError(111, 'x')).code is "
        "Code.CONNECTION_REFUSED\n"
        "assert 'websocket' not in sys.modules\n"
        "assert not any(c.__module__.startswith('websocket') for c in exception_map())\n"
        "import websocket\n"
        "assert websocket.WebSocketTimeoutException in exception_map()\n"
        "assert classify_exception(websocket.WebSocketTimeoutException('x')).code is "
        "Code.CONNECT_TIMEOUT\n")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=60, check=False)
    assert done.returncode == 0, done.stderr


def test_every_situation_a_code_names_has_its_words() -> None:
    assert set(SITUATION_WORDS) == set(Situation)


# --- the boundary -----------------------------------------------------------------------------


def test_classified_raises_the_failure_from_the_exception() -> None:
    refused = ConnectionRefusedError(errno.ECONNREFUSED, "Connection refused")
    with pytest.raises(TetherError) as info, classified(phase=Phase.CONNECT, url=URL,
                                                        request_id="rid-7"):
        raise refused
    f = info.value.failure
    assert (f.code, f.phase, f.request_id, f.cause) == (Code.CONNECTION_REFUSED, Phase.CONNECT,
                                                        "rid-7", refused)
    assert info.value.__cause__ is refused
    assert "SECRET" not in f.message and "SECRET" not in str(info.value)


def test_classified_passes_tether_errors_through_with_a_request_id() -> None:
    own = TetherError(Failure.of(Code.NOT_FOUND, Phase.HANDSHAKE, "Nothing here."))
    with pytest.raises(TetherError) as info, classified(request_id="rid-8"):
        raise own
    assert info.value.failure.code is Code.NOT_FOUND
    assert info.value.failure.request_id == "rid-8"
    with pytest.raises(TetherError) as again, classified():
        raise own
    assert again.value is own


def test_classified_lets_keyboard_interrupt_through() -> None:
    with pytest.raises(KeyboardInterrupt), classified():
        raise KeyboardInterrupt


# --- chains -----------------------------------------------------------------------------------


def test_chain_finds_specific_cause_under_generic_wrapper() -> None:
    try:
        try:
            raise ConnectionResetError(errno.ECONNRESET, "Connection reset by peer")
        except ConnectionResetError as inner:
            raise RuntimeError("wrapped") from inner
    except RuntimeError as exc:
        f = classify_exception(exc, phase=Phase.SESSION)
    assert f.code is Code.CONNECTION_LOST
    assert isinstance(f.cause, RuntimeError)


def test_chain_cycle_is_safe() -> None:
    a, b = ValueError("a"), ValueError("b")
    a.__context__ = b
    b.__context__ = a
    assert classify_exception(a).code is Code.INTERNAL_ERROR


def test_chain_depth_is_bounded() -> None:
    exc: BaseException = ConnectionRefusedError(errno.ECONNREFUSED, "refused")
    for i in range(1000):
        outer = ValueError(str(i))
        outer.__cause__ = exc
        exc = outer
    assert classify_exception(exc).code is Code.INTERNAL_ERROR  # the refusal is too deep


def test_tether_error_in_chain_keeps_its_failure() -> None:
    inner = Failure.of(Code.NO_CREDENTIALS, Phase.CONFIG, "not logged in")
    try:
        try:
            raise TetherError(inner)
        except TetherError as err:
            raise RuntimeError("outer") from err
    except RuntimeError as exc:
        assert classify_exception(exc) == inner


class Hostile(OSError):
    @property
    def errno(self) -> int:  # type: ignore[override]
        raise RuntimeError("no errno for you")

    def __str__(self) -> str:
        raise RuntimeError("no str either")


class HostileValue(Exception):
    def __str__(self) -> str:
        raise RuntimeError("no str")


def test_hostile_exceptions_never_raise() -> None:
    assert classify_exception(Hostile()).code is Code.NETWORK_UNREACHABLE
    assert classify_exception(Hostile(), phase=Phase.SESSION).code is Code.CONNECTION_LOST
    assert classify_exception(HostileValue()).code is Code.INTERNAL_ERROR


def iter_failures() -> Iterator[Failure]:
    yield classify_handshake(403, None, None)
    yield classify_close(None, None)
    yield classify_exception(EOFError())


def test_failures_serialise() -> None:
    for f in iter_failures():
        json.dumps(f.as_dict())
