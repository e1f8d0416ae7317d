"""``GET /v1/health``: the gateway's health and each service's backend health.

Shared by ``tether status``, ``tether doctor`` and service-name completion.
The request goes through :func:`tether.client.http.request` (TLS as the dialer does
it, no proxy for loopback, no redirects, at most 64 KiB read), under one
deadline over the whole of it (DNS included): it runs in a daemon thread that
is abandoned when the deadline passes.

The reference gateway answers::

    {"status": "ok" | "degraded", "version": "0.1.0", "sessions": 0,
     "services": {"api": {"status": "ok" | "unavailable", "instances": ["api-1"],
                          "ports": [8080]}}}

``ports`` lists the ports open for port-forward (a gateway that does not say
leaves it out: None here, ``null`` in ``-o json``).
"""

from __future__ import annotations

import json
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlsplit, urlunsplit

from tether.errors import Code, Failure, Phase, TetherError
from tether.text import redact_url, strip_control

HEALTH_PATH = "/v1/health"
_NAME_LIMIT = 128
_MAX_SERVICES = 1000
_MAX_INSTANCES = 100
_MAX_PORTS = 100
_SCHEMES = {"http": "http", "https": "https", "ws": "http", "wss": "https"}


@dataclass(frozen=True)
class ServiceHealth:
    """One service as the gateway reports it; every string already cleaned."""

    name: str
    status: str  # "ok" when its backend answers; anything else is unhealthy
    instances: tuple[str, ...] = ()
    ports: tuple[int, ...] | None = None  # open for port-forward; None when not said

    @property
    def healthy(self) -> bool:
        """Whether the gateway says the backend is ok."""
        return self.status == "ok"

    def as_dict(self) -> dict[str, Any]:
        """For ``-o json``."""
        return {"name": self.name, "status": self.status, "healthy": self.healthy,
                "instances": list(self.instances),
                "ports": list(self.ports) if self.ports is not None else None}


@dataclass(frozen=True)
class Health:
    """The answer of ``GET /v1/health``."""

    gateway: str
    status: str
    version: str | None
    sessions: int | None
    services: tuple[ServiceHealth, ...]
    request_id: str | None = None

    def service(self, name: str) -> ServiceHealth | None:
        """The service called ``name``, if the gateway knows it."""
        return next((s for s in self.services if s.name == name), None)

    @property
    def names(self) -> list[str]:
        """The services' names, in the gateway's order."""
        return [s.name for s in self.services]

    def as_dict(self) -> dict[str, Any]:
        """For ``-o json``."""
        return {"gateway": self.gateway, "status": self.status, "version": self.version,
                "sessions": self.sessions, "services": [s.as_dict() for s in self.services]}


def health_url(gateway: str) -> str:
    """The http(s) URL of ``/v1/health`` on ``gateway`` (ws becomes http, wss https)."""
    parts = urlsplit(gateway.strip())
    scheme = _SCHEMES.get(parts.scheme.lower())
    if scheme is None or not parts.hostname:
        shown = strip_control(redact_url(gateway), limit=200)
        raise TetherError(Failure.of(
            Code.INVALID_URL, Phase.CONFIG, f"The gateway URL {shown!r} is not valid."))
    netloc = parts.netloc.rpartition("@")[2]
    return urlunsplit((scheme, netloc, parts.path.rstrip("/") + HEALTH_PATH, "", ""))


def _text(value: object, limit: int = _NAME_LIMIT) -> str:
    return strip_control(value, limit=limit) if isinstance(value, str) else ""


def _ports(value: object) -> tuple[int, ...] | None:
    """The port numbers of a ``ports`` list; None when it is not a list."""
    if not isinstance(value, list):
        return None
    return tuple(p for p in value[:_MAX_PORTS] if type(p) is int and 0 < p < 65536)


def parse_health(gateway: str, body: bytes, request_id: str | None = None) -> Health:
    """The Health in ``body``; raises ValueError when it is not the health JSON."""
    data = json.loads(body)
    if not isinstance(data, dict) or not isinstance(data.get("services"), dict):
        raise ValueError("not a health object")
    services: list[ServiceHealth] = []
    for name, raw in list(data["services"].items())[:_MAX_SERVICES]:
        shown = _text(name)
        if not shown:
            continue
        entry = raw if isinstance(raw, dict) else {}
        instances = entry.get("instances")
        listed = [_text(i) for i in instances[:_MAX_INSTANCES]] if isinstance(instances,
                                                                               list) else []
        services.append(ServiceHealth(shown, _text(entry.get("status"), 40) or "unknown",
                                      tuple(i for i in listed if i),
                                      _ports(entry.get("ports"))))
    sessions = data.get("sessions")
    return Health(gateway=gateway, status=_text(data.get("status"), 40) or "unknown",
                  version=_text(data.get("version"), 40) or None,
                  sessions=sessions if isinstance(sessions, int) and not isinstance(
                      sessions, bool) else None,
                  services=tuple(services), request_id=request_id)


def _fetch(gateway: str, url: str, timeout: float, ca_cert: str | None,
           insecure: bool) -> Health:
    from tether.classify import classify_handshake
    from tether.client.http import HttpOptions, request

    answer = request(url, HttpOptions(timeout=timeout, ca_cert=ca_cert, insecure=insecure))
    status, headers, body, request_id = (answer.status, answer.headers, answer.body,
                                         answer.request_id)
    if status != 200:
        failure = classify_handshake(status, headers, body, url=url, gateway=gateway,
                                     now=time.time())
        raise TetherError(failure.replace(request_id=failure.request_id or request_id))
    try:
        return parse_health(gateway, body, request_id)
    except ValueError as exc:
        raise TetherError(Failure.of(
            Code.PROTOCOL_ERROR, Phase.HANDSHAKE,
            f"{redact_url(url)} answered 200 but not with the health JSON of a tether gateway.",
            http_status=200, url=redact_url(url), request_id=request_id, cause=exc)) from exc


def fetch_health(gateway: str, *, timeout: float, ca_cert: str | None = None,
                 insecure: bool = False) -> Health:
    """``GET /v1/health`` on ``gateway`` within ``timeout`` seconds in total.

    Raises TetherError: invalid-url, a classified connection failure, the
    classified HTTP status, or protocol-error when the answer is not the health JSON.
    """
    url = health_url(gateway)
    result: list[Health | BaseException] = []
    done = threading.Event()

    def run() -> None:
        try:
            result.append(_fetch(gateway, url, timeout, ca_cert, insecure))
        except BaseException as exc:
            result.append(exc)
        finally:
            done.set()

    threading.Thread(target=run, name="tether-health", daemon=True).start()
    if not done.wait(max(timeout, 0.0)):
        host = urlsplit(url).netloc
        raise TetherError(Failure.of(
            Code.CONNECT_TIMEOUT, Phase.CONNECT,
            f"The gateway at {host} did not answer {HEALTH_PATH} within {timeout:g} s.",
            url=redact_url(url)))
    outcome = result[0]
    if isinstance(outcome, BaseException):
        raise outcome
    return outcome
