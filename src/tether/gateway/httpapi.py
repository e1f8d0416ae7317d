"""The plain HTTP endpoints: health, device authorization, token, and the verification page.

``GET /v1/health`` needs no credential. It shows the gateway's status and
version, and each service's name, instances, backend status and the ports
open for port-forward (none of it is secret here: ``tether status`` lists the
services to help with a typo, and the ports to pick from).
"""

from __future__ import annotations

import html
import logging
from typing import Any
from urllib.parse import parse_qs

from websockets.http11 import Request, Response

from tether import __version__
from tether.errors import Code
from tether.gateway.oauth import DEVICE_GRANT, REFRESH_GRANT, GrantError
from tether.gateway.problems import Refusal, json_response, raw_response, state_unavailable
from tether.gateway.state import Access
from tether.store import StateUnavailable

log = logging.getLogger("tether.gateway.http")


def _form(body: bytes, too_large: bool) -> dict[str, str]:
    if too_large:
        raise Refusal(413, Code.INVALID_REQUEST, "the request body is larger than 64 KiB")
    try:
        parsed = parse_qs(body.decode("utf-8"), keep_blank_values=True, max_num_fields=50)
    except (UnicodeDecodeError, ValueError):
        raise Refusal(400, Code.INVALID_REQUEST, "the body must be form-encoded UTF-8") from None
    return {key: values[-1] for key, values in parsed.items()}


def _oauth_error(error: str, description: str, request_id: str) -> Response:
    return json_response(400, {"error": error, "error_description": description,
                               "request_id": request_id})


async def device_authorization(access: Access, base_url: str, request: Request) -> Response:
    """``POST /v1/auth/device``: a new device code and user code."""
    if request.method != "POST":
        raise Refusal(405, Code.INVALID_REQUEST, "use POST", headers={"Allow": "POST"})
    try:
        answer = await access.call(access.oauth.start_device, base_url + "/v1/auth/verify")
    except StateUnavailable as exc:
        raise state_unavailable(str(exc)) from None
    return json_response(200, answer)


async def token(access: Access, request: Request, body: bytes, too_large: bool,
                request_id: str) -> Response:
    """``POST /v1/auth/token``: the device-code grant or the refresh grant."""
    if request.method != "POST":
        raise Refusal(405, Code.INVALID_REQUEST, "use POST", headers={"Allow": "POST"})
    form = _form(body, too_large)
    grant = form.get("grant_type", "")
    try:
        if grant == DEVICE_GRANT:
            answer = await access.call(access.oauth.poll_device, form.get("device_code", ""))
        elif grant == REFRESH_GRANT:
            answer = await access.call(access.oauth.refresh, form.get("refresh_token", ""))
        else:
            return _oauth_error("unsupported_grant_type",
                                f"grant_type must be {DEVICE_GRANT} or {REFRESH_GRANT}", request_id)
    except GrantError as exc:
        log.info("request %s: token request refused: %s", request_id, exc.error)
        return _oauth_error(exc.error, exc.description, request_id)
    except StateUnavailable as exc:
        raise state_unavailable(str(exc)) from None
    return json_response(200, answer)


def verify_page(request: Request) -> Response:
    """``GET /v1/auth/verify``: tells the user how their login gets approved."""
    query = request.path.partition("?")[2]
    code = parse_qs(query).get("user_code", [""])[0]
    shown = html.escape(code[:16]) or "YOUR-CODE"
    page = (f"<!doctype html><title>tether login</title><h1>tether login</h1>"
            f"<p>Ask an operator of this gateway to approve your login with:</p>"
            f"<pre>tether gateway approve {shown} --role Viewer</pre>")
    return raw_response(200, page.encode("utf-8"), content_type="text/html; charset=utf-8")


def health(services: dict[str, dict[str, Any]], sessions: int) -> Response:
    """``GET /v1/health``."""
    status = "ok" if all(s["status"] == "ok" for s in services.values()) else "degraded"
    return json_response(200, {"status": status, "version": __version__, "sessions": sessions,
                               "services": services})

