"""Every refusal of docs/protocol.md section 2, produced for real and read off the wire."""

from __future__ import annotations

import json
import logging
import time
import uuid
from collections.abc import Callable

import jwt
import pytest

from tests.gateway_client import dial, http_request, refusal
from tether.gateway.runner import RunningGateway

PROBLEM_KEYS = {"type", "title", "status", "detail", "code", "request_id"}


def _problem(status: int, refused_status: int, headers: dict[str, str], body: bytes) -> dict:
    assert refused_status == status
    assert headers["content-type"] == "application/problem+json"
    problem = json.loads(body)
    assert set(problem) >= PROBLEM_KEYS
    assert problem["status"] == status
    assert problem["request_id"] == headers["x-request-id"]
    assert problem["type"].endswith("/" + problem["code"])
    return problem


def test_401_without_token_has_www_authenticate_and_echoes_request_id(
        gateway: RunningGateway) -> None:
    rid = str(uuid.uuid4())
    r = refusal(gateway.url, "/v1/shell", None, request_id=rid, service="api")
    problem = _problem(401, r.status, r.headers, r.body)
    assert r.headers["x-request-id"] == rid
    assert problem["code"] == "unauthorized"
    assert r.headers["www-authenticate"].startswith("Bearer ")
    assert 'error="invalid_token"' in r.headers["www-authenticate"]


def test_401_expired_says_expired(gateway: RunningGateway) -> None:
    token = gateway.mint_token("Deployer", ttl=-5)
    r = refusal(gateway.url, "/v1/logs", token, service="api")
    problem = _problem(401, r.status, r.headers, r.body)
    assert problem["code"] == "token-expired"
    header = r.headers["www-authenticate"]
    assert 'error="invalid_token"' in header and "expired" in header


@pytest.mark.parametrize("forge", ["none", "bad-signature", "wrong-aud", "wrong-iss", "junk",
                                   "unknown-api-token"])
def test_401_forged_or_foreign_tokens(gateway: RunningGateway, forge: str) -> None:
    now = int(time.time())
    claims = {"sub": "mallory", "role": "Admin", "iss": gateway.url, "aud": "tether",
              "iat": now, "exp": now + 300, "jti": "x"}
    if forge == "none":
        token = jwt.encode(claims, key=None, algorithm="none")
    elif forge == "bad-signature":
        token = jwt.encode(claims, "not-the-gateway-secret-but-long-enough-32b", algorithm="HS256")
    elif forge == "wrong-aud":
        good = gateway.gateway.state.secret
        token = jwt.encode({**claims, "aud": "someone-else"}, good, algorithm="HS256")
    elif forge == "wrong-iss":
        good = gateway.gateway.state.secret
        token = jwt.encode({**claims, "iss": "https://evil.invalid"}, good, algorithm="HS256")
    elif forge == "junk":
        token = "not.a.jwt"
    else:
        token = "tth_" + "A" * 40
    r = refusal(gateway.url, "/v1/shell", token, service="api")
    problem = _problem(401, r.status, r.headers, r.body)
    assert problem["code"] == "unauthorized"
    assert "expired" not in r.headers["www-authenticate"]
    assert token not in r.body.decode()


def test_403_viewer_on_shell_names_required_role(gateway: RunningGateway,
                                                 viewer_token: str) -> None:
    r = refusal(gateway.url, "/v1/shell", viewer_token, service="api", tty=0)
    problem = _problem(403, r.status, r.headers, r.body)
    assert problem["code"] == "permission-denied"
    assert problem["required_role"] == "Deployer"
    assert 'error="insufficient_scope"' in r.headers["www-authenticate"]


def test_422_port_not_forwarded(gateway: RunningGateway, deployer_token: str) -> None:
    r = refusal(gateway.url, "/v1/port-forward", deployer_token, service="api", port=1)
    problem = _problem(422, r.status, r.headers, r.body)
    assert problem["code"] == "port-not-forwarded"
    assert "port 1" in problem["detail"] and problem["port"] == 1


def test_api_tokens_work_and_carry_their_role(gateway: RunningGateway) -> None:
    viewer = gateway.create_api_token("Viewer", "ci")
    assert viewer.startswith("tth_")
    r = refusal(gateway.url, "/v1/shell", viewer, service="api")
    assert r.status == 403
    ws = dial(gateway.url, "/v1/logs", viewer, service="api")
    ws.close()


@pytest.mark.parametrize("params, fragment", [
    ({}, "service"),
    ({"service": "api", "tail": "-3"}, "tail"),
    ({"service": "api", "since": "yesterday-ish"}, "since"),
    ({"service": "api", "after": "%%%not-a-cursor"}, "cursor"),
    ({"service": "api", "follow": "maybe"}, "follow"),
    ({"service": "api", "access_token": "sneaky"}, "query string"),
])
def test_400_bad_parameters(gateway: RunningGateway, viewer_token: str, params: dict,
                            fragment: str) -> None:
    r = refusal(gateway.url, "/v1/logs", viewer_token, **params)
    problem = _problem(400, r.status, r.headers, r.body)
    assert problem["code"] == "invalid-request"
    assert fragment in problem["detail"]


def test_400_missing_port(gateway: RunningGateway, deployer_token: str) -> None:
    r = refusal(gateway.url, "/v1/port-forward", deployer_token, service="api")
    assert _problem(400, r.status, r.headers, r.body)["code"] == "invalid-request"


def test_404_unknown_service_and_instance(gateway: RunningGateway, viewer_token: str) -> None:
    r = refusal(gateway.url, "/v1/logs", viewer_token, service="nope")
    problem = _problem(404, r.status, r.headers, r.body)
    assert problem["code"] == "not-found" and "api" in problem["detail"]
    r = refusal(gateway.url, "/v1/logs", viewer_token, service="api", instance="api-9")
    problem = _problem(404, r.status, r.headers, r.body)
    assert "api-1" in problem["detail"]


def test_404_unknown_path(gateway: RunningGateway) -> None:
    r = http_request(gateway.url, "GET", "/v1/nothing-here")
    assert _problem(404, r.status, r.headers, r.body)["code"] == "not-found"


def test_426_plain_http_get_on_websocket_path(gateway: RunningGateway) -> None:
    rid = "req-426-abc"
    r = http_request(gateway.url, "GET", "/v1/shell?service=api", headers={"X-Request-Id": rid})
    problem = _problem(426, r.status, r.headers, r.body)
    assert r.headers["upgrade"] == "websocket"
    assert r.headers["x-request-id"] == rid
    assert problem["code"] == "invalid-request"


def test_insane_request_id_is_replaced(gateway: RunningGateway) -> None:
    r = http_request(gateway.url, "GET", "/v1/health", headers={"X-Request-Id": "a b" * 100})
    assert r.status == 200
    uuid.UUID(r.headers["x-request-id"])


def test_429_with_retry_after(make_gateway: Callable[..., RunningGateway]) -> None:
    from tether.gateway.config import RateLimit

    gw = make_gateway(rate_limit=RateLimit(rate=0.2, burst=2))
    token = gw.mint_token("Viewer")
    for _ in range(2):
        dial(gw.url, "/v1/logs", token, service="api").close()
    r = refusal(gw.url, "/v1/logs", token, service="api")
    problem = _problem(429, r.status, r.headers, r.body)
    assert problem["code"] == "rate-limited"
    assert int(r.headers["retry-after"]) >= 1
    other = gw.mint_token("Viewer", sub="someone-else")  # the limit is per credential
    dial(gw.url, "/v1/logs", other, service="api").close()


def test_503_at_session_limit(make_gateway: Callable[..., RunningGateway]) -> None:
    gw = make_gateway(session_limit=1)
    token = gw.mint_token("Viewer")
    first = dial(gw.url, "/v1/logs", token, service="api", follow=1)
    try:
        r = refusal(gw.url, "/v1/logs", token, service="api")
        problem = _problem(503, r.status, r.headers, r.body)
        assert problem["code"] == "gateway-unavailable"
        assert "retry-after" in r.headers
    finally:
        first.close()


@pytest.mark.parametrize("mode, status", [("refuse", 502), ("timeout", 504)])
def test_502_504_backend_down(gateway: RunningGateway, deployer_token: str, mode: str,
                              status: int) -> None:
    gateway.faults.backend_down["api"] = mode
    r = refusal(gateway.url, "/v1/shell", deployer_token, service="api")
    problem = _problem(status, r.status, r.headers, r.body)
    assert problem["code"] == "backend-unavailable"
    health = json.loads(http_request(gateway.url, "GET", "/v1/health").body)
    assert health["services"]["api"]["status"] == "unavailable"


def test_500_by_injected_fault(gateway: RunningGateway, deployer_token: str) -> None:
    gateway.faults.refuse_status = 500
    r = refusal(gateway.url, "/v1/shell", deployer_token, service="api")
    assert _problem(500, r.status, r.headers, r.body)["code"] == "gateway-error"


def test_dial_count_counts_each_upgrade_request(gateway: RunningGateway,
                                                viewer_token: str) -> None:
    before = gateway.dial_count.get("/v1/shell", 0)
    refusal(gateway.url, "/v1/shell", viewer_token, service="api")
    assert gateway.dial_count["/v1/shell"] == before + 1


def test_no_secret_in_refusals_or_logs(gateway: RunningGateway,
                                       caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="tether.gateway")
    expired = gateway.mint_token("Deployer", ttl=-1)
    viewer = gateway.create_api_token("Viewer", "leaky")
    bodies = []
    for token, path in ((expired, "/v1/shell"), (viewer, "/v1/shell"),
                        ("tth_" + "Z" * 43, "/v1/logs")):
        r = refusal(gateway.url, path, token, service="api")
        bodies.append(r.body.decode() + json.dumps(r.headers))
    secret = gateway.gateway.state.secret.decode()
    text = caplog.text + "".join(bodies)
    assert "refused" in caplog.text  # the refusals were logged
    for value in (expired, viewer, "Z" * 43, secret):
        assert value not in text
    for body in bodies:
        assert "Traceback" not in body and "/tmp" not in body and "sqlite" not in body.lower()


def test_health_without_credentials(gateway: RunningGateway) -> None:
    r = http_request(gateway.url, "GET", "/v1/health")
    body = json.loads(r.body)
    assert r.status == 200 and body["status"] == "ok"
    assert body["services"]["api"]["instances"] == ["api-1", "api-2"]
    assert "x-request-id" in r.headers


def test_tls_gateway_serves_wss(tls_gateway: RunningGateway, tls_client_context) -> None:
    assert tls_gateway.url.startswith("https://")
    token = tls_gateway.mint_token("Viewer")
    ws = dial(tls_gateway.url, "/v1/logs", token, ssl_context=tls_client_context, service="api")
    ws.close()
    r = refusal(tls_gateway.url, "/v1/logs", None, ssl_context=tls_client_context, service="api")
    assert r.status == 401
