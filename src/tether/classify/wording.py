"""The words of a classified failure: one formatter per code, one per situation. Pure.

:class:`Seen` holds everything known about one failure, cleaned; :func:`build`
turns it into a :class:`~tether.errors.Failure` whose message leads with the
sentence of the :class:`~tether.classify.status.Situation` the status or close
code names, else with the sentence of its code (:data:`CODE_WORDS`), else with
the catalog's title.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit

from tether.classify.httpparse import NAME_LIMIT, Problem, optional_peer
from tether.classify.status import Reading, Situation
from tether.errors import CATALOG, Code, Failure, Phase
from tether.protocol import lost_bytes
from tether.text import redact_url

DETAIL_LIMIT = 300  # peer text inside a message

# --- small, safe text functions ------------------------------------------------------


def words(value: object, limit: int = DETAIL_LIMIT) -> str | None:
    """Cleaned peer text for a message: None unless it has a letter or a digit."""
    text = optional_peer(value, limit)
    return text if text and any(c.isalnum() for c in text) else None


def sentence(text: str) -> str:
    return text if text.endswith((".", "!", "?", "…")) else text + "."


def duration(seconds: float) -> str:
    """``45 s``, ``2 min 5 s``, ``3 h 20 min``."""
    if seconds < 1:
        return "less than a second"
    whole = round(seconds)
    if whole < 90:
        return f"{whole} s"
    if whole < 3600:
        minutes, secs = divmod(whole, 60)
        return f"{minutes} min {secs} s" if secs else f"{minutes} min"
    hours, rest = divmod(whole, 3600)
    minutes = rest // 60
    return f"{hours} h {minutes} min" if minutes else f"{hours} h"


def redacted_url(url: object) -> str | None:
    if not isinstance(url, str) or not url:
        return None
    return optional_peer(redact_url(url[:4096]), 500)


def host_of(url: object, *, with_port: bool = True) -> str | None:
    """``host:port`` (or ``host``) of a URL, for messages."""
    if not isinstance(url, str) or not url:
        return None
    try:
        parts = urlsplit(url[:4096])
        host = parts.hostname
        port = parts.port
    except ValueError:
        return None
    if not host:
        return None
    return optional_peer(f"{host}:{port}" if port and with_port else host, 200)


# --- what was seen ---------------------------------------------------------------------


def _name(value: object) -> str | None:
    return optional_peer(value, NAME_LIMIT) if value else None


@dataclass
class Seen:
    """Everything known about one failure, cleaned; worded by :func:`build`."""

    phase: Phase
    what: str = ""  # "HTTP 403 Forbidden", "close 1011 INTERNAL_ERROR"
    service: str | None = None
    command: str | None = None
    role: str | None = None
    gateway: str | None = None
    url: str | None = None
    reading: Reading | None = None  # what the status or close code says by itself
    port: int | None = None
    http_status: int | None = None
    close_code: int | None = None
    close_reason: str | None = None
    problem: Problem | None = None
    detail: str | None = None  # the peer's own words, for the message
    required_role: str | None = None
    retry_after: float | None = None
    request_id: str | None = None
    location: str | None = None
    services: tuple[str, ...] = ()
    body_kind: str | None = None  # "an HTML page titled ...", for non-WebSocket answers
    answered_by: str | None = None  # "nginx at HOST:PORT": a middlebox answered, not the gateway

    @classmethod
    def of(cls, phase: Phase, *, service: object, command: object, role: object,
           gateway: object, url: object) -> Seen:
        """A Seen with the caller's context, cleaned (URLs redacted)."""
        gw = gateway if isinstance(gateway, str) else None
        if gw and "://" in gw:
            gw = redact_url(gw[:4096])
        return cls(phase=phase, service=_name(service), command=_name(command),
                   role=_name(role), gateway=optional_peer(gw, 200) if gw else None,
                   url=redacted_url(url))

    def read_as(self, reading: Reading) -> None:
        """Take what a status or close code says (its ``what`` unless one is set)."""
        self.reading = reading
        self.what = self.what or reading.what


# --- the words, per code and per situation -----------------------------------------------

Words = tuple[str, str | None]  # the lead sentence, and a hint when it differs from the catalog's
Formatter = Callable[[Seen], Words]


def _fixed(lead: str, hint: str | None = None) -> Formatter:
    return lambda seen: (lead, hint)


def _svc(seen: Seen) -> str:
    return f"`{seen.service}`" if seen.service else "the service"


def _status_cmd(seen: Seen) -> str:
    return f"`tether status {seen.service}`" if seen.service else "`tether status`"


def _gateway(seen: Seen) -> str:
    return seen.gateway or "the gateway"


def _role_lead(seen: Seen) -> str:
    needed, have, command = seen.required_role, seen.role, seen.command
    what = f"`{command}`" if command else "This command"
    if needed:
        return f"{what} needs role {needed}" + (f"; you have {have}" if have else "")
    if have:
        return f"Role {have} may not do this" + (f" with `{command}`" if command else "")
    return "Permission denied" + (f" for `{command}`" if command else "")


def _permission_denied(seen: Seen) -> Words:
    needed, have = seen.required_role, seen.role
    if not needed:
        return _role_lead(seen), None
    if needed == have:
        return _role_lead(seen), (f"Your role {have} should allow this; the gateway may deny "
                                  f"it for this service or port. Ask an Admin of "
                                  f"{_gateway(seen)}.")
    return _role_lead(seen), f"Ask an Admin of {_gateway(seen)} for the {needed} role."


def _not_found(seen: Seen) -> Words:
    lead = (f"Service {_svc(seen)} (or the instance asked for) was not found on the gateway"
            if seen.service else "The gateway found nothing at this address")
    if seen.services:
        return lead, "Services the gateway knows: " + ", ".join(seen.services) + "."
    if seen.problem is None and seen.http_status is not None:
        return lead, ("Check the service name; if it is right, the URL may not point at a "
                      "tether gateway (check --gateway / TETHER_GATEWAY).")
    return lead, None


def _waiting(lead: str, advice: str) -> Formatter:
    """The words of a code whose peer may ask to wait: the wait in the lead and the hint."""

    def worded(seen: Seen) -> Words:
        if seen.retry_after is None:
            return lead, None
        wait = duration(seen.retry_after)
        return (f"{lead} and asks to wait {wait}",
                f"Wait {wait} {advice}; tether waits at least that long.")

    return worded


def _gateway_error(seen: Seen) -> Words:
    hint = (f"If it persists, report it to the gateway's operators with request id "
            f"{seen.request_id}." if seen.request_id else None)
    return "The gateway failed while handling the request", hint


def _backend_unavailable(seen: Seen) -> Words:
    return (f"The gateway could not reach the backend of {_svc(seen)}",
            f"Verify that the cluster hosting {seen.service or 'the service'} is running and "
            f"healthy ({_status_cmd(seen)}); tether retries meanwhile.")


def _agent_timeout(seen: Seen) -> Words:
    return (f"The agent timed out reaching the pod of {_svc(seen)}",
            f"The agent could not reach the pod in time; tether retries. If it persists, "
            f"check the pod with {_status_cmd(seen)}.")


def _port_not_forwarded(seen: Seen) -> Words:
    problem = seen.problem
    port = seen.port or (problem.port if problem else None)
    which = f"Port {port}" if port is not None else "That port"
    lead = f"{which} of {_svc(seen)} is not open for forwarding"
    ports = problem.ports if problem else ()
    if ports:
        listed = ", ".join(map(str, ports))
        return lead, (f"Ports open for forwarding on {seen.service or 'the service'}: {listed}. "
                      f"Forward one of them, e.g. `tether port-forward {seen.service or 'SERVICE'}"
                      f" :{ports[0]}`.")
    return lead, (f"{_status_cmd(seen)} lists the ports open for forwarding"
                  + (f" on {seen.service}." if seen.service else "."))


_BEHIND = {502: "it could not reach the gateway behind it",
           503: "it has no gateway available behind it",
           504: "it timed out waiting for the gateway behind it"}


def _who(seen: Seen) -> str:
    return seen.answered_by or "a proxy in front of the gateway"


def _gateway_unreachable(seen: Seen) -> Words:
    doing = _BEHIND.get(seen.http_status or 0, "it could not reach the gateway behind it")
    who = _who(seen)
    return (f"The answer came from {who}, in front of the gateway, not from the gateway: "
            f"{doing}",
            f"The gateway behind {who} is down, unreachable from it or too slow (this says "
            f"nothing about the service's cluster): check that the gateway is running and that "
            f"the proxy forwards to it; tether retries meanwhile.")


def _target_unreachable(seen: Seen) -> Words:
    port = f"port {seen.port}" if seen.port is not None else "the forwarded port"
    return (f"The gateway could not connect to {port} of {_svc(seen)}",
            f"Check that {seen.service or 'the service'} is listening on {port}.")


def _session_expired(seen: Seen) -> Words:
    return (f"The session on {_svc(seen)} could not be resumed: the gateway no longer has it, "
            "and its state is lost"), None


def _resume_lost(seen: Seen) -> Words:
    lost = lost_bytes(seen.close_reason or "")
    count = f"{lost:,} bytes of output" if lost is not None else "Output"
    return (f"{count} from {_svc(seen)} could not be delivered: while the connection was down "
            "more came than the gateway's replay buffer holds, so the session was ended "
            "rather than shown with a gap"), None


#: The lead sentence (and hint) of each code, when no situation says more.
CODE_WORDS: dict[Code, Formatter] = {
    Code.INVALID_REQUEST: _fixed("The gateway rejected the request as invalid"),
    Code.UNAUTHORIZED: _fixed("The gateway did not accept the credential"),
    Code.TOKEN_EXPIRED: _fixed("The token has expired"),
    Code.PERMISSION_DENIED: _permission_denied,
    Code.NOT_FOUND: _not_found,
    Code.PORT_NOT_FORWARDED: _port_not_forwarded,
    Code.GATEWAY_UNREACHABLE: _gateway_unreachable,
    Code.RATE_LIMITED: _waiting("The gateway is rate limiting requests", "before trying again"),
    Code.GATEWAY_ERROR: _gateway_error,
    Code.GATEWAY_UNAVAILABLE: _waiting("The gateway is at capacity or in maintenance",
                                       "and try again"),
    Code.STATE_UNAVAILABLE: _waiting("The gateway cannot reach its state database",
                                     "and try again"),
    Code.BACKEND_UNAVAILABLE: _backend_unavailable,
    Code.AGENT_TIMEOUT: _agent_timeout,
    Code.TARGET_UNREACHABLE: _target_unreachable,
    Code.GATEWAY_RESTARTING: _fixed("The gateway is restarting"),
    Code.SESSION_EXPIRED: _session_expired,
    Code.RESUME_LOST: _resume_lost,
    Code.OVERLOADED: _fixed("The gateway is overloaded and asked to try again later"),
    Code.MESSAGE_TOO_BIG: _fixed("A message was larger than the gateway accepts"),
    Code.PROTOCOL_ERROR: _fixed("The gateway broke the WebSocket protocol"),
    Code.UNEXPECTED_STATUS: _fixed("The gateway gave an answer tether does not expect"),
    Code.PROXY_ERROR: _fixed("The proxy refused the connection"),
    Code.TLS_ERROR: _fixed("The TLS handshake with the gateway failed"),
}


def _not_websocket(seen: Seen) -> Words:
    kind = f" ({seen.body_kind})" if seen.body_kind else ""
    return (f"The server answered instead of upgrading to a WebSocket{kind}: it is not a "
            "WebSocket endpoint"), None


def _redirect(seen: Seen) -> Words:
    to = f"to {seen.location}" if seen.location else "without a Location"
    return (f"The gateway answered with a redirect {to}; it may be a login page or a proxy, "
            "not a tether gateway"), None


def _proxy_auth(seen: Seen) -> Words:
    who = f" ({seen.answered_by})" if seen.answered_by else ""
    return (f"The HTTP proxy{who} asks for authentication",
            "Put the proxy's credentials in HTTPS_PROXY (http://USER:PASSWORD@HOST:PORT), or the "
            "gateway in NO_PROXY to bypass the proxy.")


def _portal(seen: Seen) -> Words:
    page = seen.body_kind or "an HTML page"
    return (f"The answer came from {seen.answered_by or 'something in between'}: {page} "
            "instead of the WebSocket upgrade, as a captive portal or a sign-in page sends; it "
            "is not a WebSocket endpoint",
            "If this network or its proxy asks you to sign in, open a web page in a browser, "
            "sign in, and try again; otherwise check the gateway URL (--gateway / "
            "TETHER_GATEWAY).")


def _middlebox(seen: Seen) -> Words:
    who = _who(seen)
    return (f"The answer came from {who}, in front of the gateway, not from the gateway itself",
            f"The request did not reach the gateway: check that {who} forwards tether's paths "
            "(/v1/) to the gateway, with WebSocket upgrades.")


#: The lead sentence (and hint) of each situation a status or close code names.
SITUATION_WORDS: dict[Situation, Formatter] = {
    Situation.BAD_UPGRADE: _fixed("The server switched protocols but not to a valid WebSocket"),
    Situation.NOT_WEBSOCKET: _not_websocket,
    Situation.REDIRECT: _redirect,
    Situation.PROXY_AUTH: _proxy_auth,
    Situation.PORTAL: _portal,
    Situation.MIDDLEBOX: _middlebox,
    Situation.NORMAL_CLOSE: _fixed("The gateway ended the session before it was done"),
    Situation.NO_CLOSE_FRAME: _fixed("The connection dropped without a close frame"),
    Situation.LOCAL_ONLY_CLOSE: _fixed("The connection dropped without a proper close"),
    Situation.UNSUPPORTED_DATA: _fixed(
        "The gateway closed the session: it does not accept the data sent"),
    Situation.PROTOCOL_CLOSE: _fixed("The gateway closed the session for a protocol error"),
    Situation.UNDEFINED_CLOSE: _fixed(
        "The gateway closed the session with a close code tether.v1 does not define"),
    Situation.UNKNOWN_CLOSE: _fixed(
        "The gateway closed the session with a close code tether does not know"),
}


def lead(code: Code, seen: Seen) -> Words:
    """The message's first sentence for ``code``, and a hint when it differs from the catalog's."""
    situation = seen.reading.says.get(code) if seen.reading else None
    if situation is not None:
        return SITUATION_WORDS[situation](seen)
    formatter = CODE_WORDS.get(code)
    return formatter(seen) if formatter else (CATALOG[code].title, None)


def build(code: Code, seen: Seen, *, cause: BaseException | None = None) -> Failure:
    """The Failure for ``code``, worded from what was seen."""
    first, hint = lead(code, seen)
    message = f"{first} ({seen.what})." if seen.what else sentence(first)
    if seen.detail:
        speaker = "It says: " if seen.answered_by else "The gateway says: "
        message += " " + speaker + sentence(seen.detail)
    fields: dict[str, Any] = {
        "http_status": seen.http_status,
        "close_code": seen.close_code,
        "close_reason": seen.close_reason,
        "required_role": seen.required_role if code is Code.PERMISSION_DENIED else None,
        "retry_after": seen.retry_after,
        "request_id": seen.request_id,
        "answered_by": seen.answered_by,
        "url": seen.url,
        "cause": cause,
    }
    if seen.problem is not None:
        fields["problem_code"] = seen.problem.code
        fields["problem_title"] = seen.problem.title
        fields["problem_detail"] = seen.problem.detail
    if hint:
        fields["hint"] = hint
    return Failure.of(code, seen.phase, message, **fields)
