"""Query parameters of the WebSocket endpoints, checked; a bad one is a 400 refusal."""

from __future__ import annotations

from urllib.parse import parse_qs

from tether.errors import Code
from tether.gateway.cursor import CursorError, decode_cursor
from tether.gateway.problems import Refusal
from tether.gateway.session import LogRequest
from tether.gateway.timestamps import parse_since
from tether.ttymodes import Modes, ModesError, parse

_SECRET_PARAMS = {"token", "access_token", "authorization", "jwt", "api_key"}
_KNOWN = {
    "shell": {"service", "instance", "tty", "cols", "rows", "modes", "command"},
    "logs": {"service", "instance", "follow", "tail", "since", "after"},
    "port-forward": {"service", "instance", "port"},
}
_REPEATABLE = {"command"}


def bad(detail: str) -> Refusal:
    """A 400 refusal."""
    return Refusal(400, Code.INVALID_REQUEST, detail)


def parse_query(query: str, endpoint: str) -> dict[str, list[str]]:
    """The parameters of ``query``; repeated or secret-bearing ones are refused.

    Unknown parameters are ignored, so that newer clients work with this gateway.
    """
    try:
        params = parse_qs(query, keep_blank_values=True, max_num_fields=200)
    except ValueError:
        raise bad("too many or malformed query parameters") from None
    for name, values in params.items():
        if name.lower() in _SECRET_PARAMS:
            raise bad("a token must not travel in the query string; send it in the "
                      "Authorization header")
        if name in _KNOWN[endpoint] and len(values) > 1 and name not in _REPEATABLE:
            raise bad(f"parameter {name!r} given more than once")
    return params


def one(params: dict[str, list[str]], name: str) -> str | None:
    """The single value of ``name``, or None."""
    values = params.get(name)
    return values[0] if values else None


def flag(params: dict[str, list[str]], name: str, default: bool) -> bool:
    """A ``1``/``0`` (or true/false) parameter."""
    value = one(params, name)
    if value is None:
        return default
    if value.lower() in ("1", "true", "yes"):
        return True
    if value.lower() in ("0", "false", "no"):
        return False
    raise bad(f"{name} must be 1 or 0")


def integer(params: dict[str, list[str]], name: str, default: int | None, low: int,
            high: int) -> int | None:
    """An integer parameter within ``low..high``."""
    value = one(params, name)
    if value is None or value == "":
        return default
    if not value.isdigit() or not low <= int(value) <= high:
        raise bad(f"{name} must be an integer from {low} to {high}")
    return int(value)


def log_request(params: dict[str, list[str]], service: str) -> LogRequest:
    """The parameters of ``/v1/logs``."""
    since_text = one(params, "since")
    try:
        since = parse_since(since_text) if since_text else None
    except ValueError as exc:
        raise bad(str(exc)) from None
    after_text = one(params, "after")
    try:
        after = decode_cursor(after_text) if after_text else None
    except CursorError as exc:
        raise bad(str(exc)) from None
    return LogRequest(service=service, instance=one(params, "instance") or None,
                      follow=flag(params, "follow", False),
                      tail=integer(params, "tail", None, 0, 1_000_000),
                      since=since, after=after)


def terminal_modes(params: dict[str, list[str]]) -> Modes | None:
    """The client terminal's ``modes`` for the pty (tether.ttymodes), or None."""
    value = one(params, "modes")
    if value is None:
        return None
    try:
        return parse(value)
    except ModesError as exc:
        raise bad(str(exc)) from None
