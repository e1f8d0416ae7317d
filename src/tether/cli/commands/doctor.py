"""``tether doctor``: check every step from the configuration to each command's role.

Checks, in order (a check whose prerequisite failed is skipped):

- ``config``: the gateway URL, and where it came from;
- ``dns``, ``tcp``, ``tls`` (https/wss only): the transport, step by step,
  with the dialer's own helpers (proxy from the environment included);
- ``gateway``: ``GET /v1/health`` answers as a tether gateway; picks the
  service the probes below dial (the first with a healthy backend);
- ``handshake``: a WebSocket upgrade of ``/v1/logs`` without a token; the
  gateway must answer it (401, or 101), not with a page or a 404;
- ``credential``: where the token comes from, its kind, subject, role and
  expiry, and a real dial of ``/v1/logs`` (``follow=0 tail=0``, closed at
  once) to see the gateway accept it;
- ``role:logs``, ``role:shell``, ``role:port-forward``: the role claim
  against the minimum roles; for a credential without a known role (an API
  token) each endpoint is dialed and the refusal, if any, read.

Exit status: 0 when every check passes, else the exit code of the first
failure's record. ``-o json`` prints one object: ``{"checks": [...], "ok": bool}``.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, Any

import typer

from tether.cli.options import Settings, settings
from tether.errors import Code, Failure, Phase, TetherError

if TYPE_CHECKING:
    import socket

    from tether.auth.credentials import Credential, CredentialInfo
    from tether.client.dial import DialOptions
    from tether.client.health import Health
    from tether.client.transport import Proxy

COMMANDS = ("logs", "shell", "port-forward")
#: The port a port-forward probe asks for (only dialed when no shell probe passed).
PROBE_PORT = 1
#: Codes of a dial that got past authentication: the credential was accepted.
_PAST_AUTH = frozenset({Code.NOT_FOUND, Code.BACKEND_UNAVAILABLE, Code.AGENT_TIMEOUT,
                        Code.TARGET_UNREACHABLE, Code.PORT_NOT_FORWARDED})


@dataclass(frozen=True)
class Check:
    """The outcome of one check."""

    name: str
    state: str  # "ok", "failed" or "skipped"
    detail: str
    failure: Failure | None = None

    @property
    def ok(self) -> bool:
        """Whether the check passed."""
        return self.state == "ok"

    def as_dict(self) -> dict[str, Any]:
        """For ``-o json``."""
        failure = self.failure
        return {"name": self.name, "ok": self.ok, "status": self.state, "detail": self.detail,
                "code": str(failure.code) if failure else None,
                "hint": failure.hint or None if failure else None,
                "exit_code": failure.exit_code if failure else None}


class Skip(Exception):
    """Raised by a check that cannot run for a reason it words itself."""


class _Anonymous:
    """No credential at all: the handshake check asks the gateway without a token."""

    refreshable = False

    def authorization(self) -> str:
        return ""

    def refresh(self) -> None:
        raise NotImplementedError("no credential to refresh")


def _sentence(text: str) -> str:
    from tether.cli.output.render import clean

    text = clean(text, limit=500).strip()
    return text[:1].upper() + text[1:] if text else text


class Doctor:
    """Runs the checks in order and keeps what each one learnt for the next."""

    def __init__(self, s: Settings, report: Callable[[Check], None], *,
                 gateway_flag: str | None) -> None:
        self.s = s
        self.report = report
        self.gateway_flag = gateway_flag  # --gateway as typed (None when from the environment)
        self.results: dict[str, Check] = {}
        self.gateway = ""
        self.scheme = "ws"
        self.host = ""
        self.port = 0
        self.proxy: Proxy | None = None
        self.sock: socket.socket | None = None
        self.health: Health | None = None
        self.service = ""
        self.credential: Credential | None = None
        self.info: CredentialInfo | None = None
        self.verified = False
        self.logs_outcome: Failure | None = None
        self.allowed: list[str] = []  # commands a dial showed this credential may use

    # --- running ---------------------------------------------------------------------

    def steps(self) -> list[tuple[str, Callable[[], str], tuple[str, ...]]]:
        """(name, check, names it needs) in order; tls only for https/wss gateways."""
        steps: list[tuple[str, Callable[[], str], tuple[str, ...]]] = [
            ("config", self.check_config, ()),
            ("dns", self.check_dns, ("config",)),
            ("tcp", self.check_tcp, ("dns",)),
            ("tls", self.check_tls, ("tcp",)),
            ("gateway", self.check_gateway, ("tcp", "tls")),
            ("handshake", self.check_handshake, ("gateway",)),
            ("credential", self.check_credential, ("config",)),
        ]
        steps += [(f"role:{c}", partial(self.check_role, c), ("credential",)) for c in COMMANDS]
        return steps

    def run(self) -> list[Check]:
        """Every check, in order; each reported as soon as it is known."""
        try:
            for name, check, needs in self.steps():
                if name == "tls" and self.results["config"].ok and self.scheme != "wss":
                    continue
                missing = [n for n in needs if n in self.results and not self.results[n].ok]
                if missing:
                    result = Check(name, "skipped", f"needs {missing[0]}")
                else:
                    result = self._one(name, check)
                self.results[name] = result
                self.report(result)
        finally:
            self._close_socket()
        return list(self.results.values())

    def _one(self, name: str, check: Callable[[], str]) -> Check:
        try:
            return Check(name, "ok", check())
        except Skip as skip:
            return Check(name, "skipped", str(skip))
        except TetherError as exc:
            failure = exc.failure
            return Check(name, "failed", _sentence(failure.message), failure)

    def _close_socket(self) -> None:
        if self.sock is not None:
            self.sock.close()
            self.sock = None

    # --- helpers ---------------------------------------------------------------------

    def _options(self) -> DialOptions:
        from tether.client.dial import DialOptions

        return DialOptions(connect_timeout=self.s.connect_timeout, ca_cert=self.s.ca_cert,
                           insecure=self.s.insecure, keepalive_interval=0.0,
                           keepalive_timeout=0.0)

    def _url(self) -> str:
        from tether.client.dial import request_url

        return request_url(self.gateway, "", {})

    def _classified(self, exc: BaseException, url: str | None = None) -> TetherError:
        from tether.classify import classify_exception

        failure = classify_exception(exc, phase=Phase.CONNECT, url=url or self._url(),
                                     gateway=self.gateway, now=time.time())
        return TetherError(failure)

    def _dial(self, command: str, credential: Any) -> Failure | None:
        """Dial ``command`` on the probe service and close at once; None when upgraded."""
        from tether.client.dial import dial

        params: dict[str, str | int] = {"service": self.service}
        if command == "logs":
            params.update(follow="0", tail="0")
        elif command == "shell":
            params.update(tty="0")
        else:
            params.update(port=PROBE_PORT)
        role = self.info.role if self.info else None
        try:
            connection = dial(self.gateway, command, params, credential, self._options(),
                              role=role, warn=lambda _text: None)
        except TetherError as exc:
            return exc.failure
        connection.close()
        return None

    # --- the checks --------------------------------------------------------------------

    def check_config(self) -> str:
        """The gateway URL resolves, and where it came from."""
        from urllib.parse import urlsplit

        from tether.auth.contexts import resolve_gateway
        from tether.client.dial import request_url

        resolved = resolve_gateway(self.gateway_flag, context=self.s.context)
        self.gateway = resolved.gateway
        parts = urlsplit(request_url(self.gateway, "", {}))
        self.scheme = parts.scheme
        self.host = parts.hostname or ""
        self.port = parts.port or (443 if self.scheme == "wss" else 80)
        return f"{self.gateway} (from {resolved.origin})"

    def check_dns(self) -> str:
        """The gateway's host name (or the proxy's) resolves."""
        from tether.client import transport

        self.proxy = transport.proxy_for(self.scheme, self.host)
        host, port = (self.proxy.host, self.proxy.port) if self.proxy else (self.host, self.port)
        url = f"http://{self.proxy.address}" if self.proxy else self._url()
        try:
            infos = transport.resolve(host, port, transport.Deadline(self.s.connect_timeout))
        except Exception as exc:
            raise self._classified(exc, url) from exc
        addresses = list(dict.fromkeys(str(info[4][0]) for info in infos))
        shown = ", ".join(addresses[:4]) + (" ..." if len(addresses) > 4 else "")
        if self.proxy:
            return (f"proxy {host} (from {self.proxy.source}) -> {shown}; the proxy resolves "
                    f"{self.host}")
        return f"{host} -> {shown}"

    def check_tcp(self) -> str:
        """A TCP connection to the gateway (through the proxy when one applies)."""
        from tether.client import transport

        deadline = transport.Deadline(self.s.connect_timeout)
        started = time.monotonic()
        try:
            if self.proxy:
                self.sock = transport.tunnel(self.proxy, self.host, self.port, deadline,
                                             self._url())
            else:
                self.sock = transport.open_tcp(self.host, self.port, deadline)
        except TetherError:
            raise
        except Exception as exc:
            raise self._classified(exc) from exc
        took = (time.monotonic() - started) * 1000
        peer = self.sock.getpeername()
        via = f" through the proxy {self.proxy.host}:{self.proxy.port}" if self.proxy else ""
        if self.scheme != "wss":
            self._close_socket()
        return f"connected to {peer[0]}:{peer[1]}{via} in {took:.0f} ms"

    def check_tls(self) -> str:
        """The TLS handshake, with the certificate verified as the dialer verifies it."""
        import os

        from tether.client import transport

        sock, self.sock = self.sock, None
        if sock is None:
            raise Skip("no TCP connection")
        try:
            context = transport.tls_context(self.s.ca_cert, self.s.insecure)
            sock.settimeout(self.s.connect_timeout)
            tls = context.wrap_socket(sock, server_hostname=self.host)
        except TetherError:
            sock.close()
            raise
        except Exception as exc:
            sock.close()
            raise self._classified(exc) from exc
        with tls:
            version = tls.version() or "TLS"
            cert = tls.getpeercert() or {}
        if self.s.insecure:
            return f"{version}; the certificate was NOT verified (--insecure)"
        trust = (f"--ca-cert {self.s.ca_cert}" if self.s.ca_cert
                 else "SSL_CERT_FILE" if os.environ.get("SSL_CERT_FILE")
                 else "the system trust store")
        until = cert.get("notAfter")
        valid = f", valid until {until}" if isinstance(until, str) else ""
        return f"{version}; certificate for {self.host} verified against {trust}{valid}"

    def check_gateway(self) -> str:
        """``GET /v1/health`` answers with the health of a tether gateway."""
        from tether.cli.output.render import clean
        from tether.client.health import fetch_health

        health = fetch_health(self.gateway, timeout=self.s.connect_timeout,
                              ca_cert=self.s.ca_cert, insecure=self.s.insecure)
        self.health = health
        if not health.services:
            raise TetherError(Failure.of(
                Code.NOT_FOUND, Phase.HANDSHAKE, "The gateway lists no services: there is "
                "nothing to connect to.", hint="Ask the gateway's operators which services "
                "it should serve.", request_id=health.request_id))
        healthy = [s for s in health.services if s.healthy]
        self.service = (healthy or list(health.services))[0].name
        names = clean(", ".join(health.names), limit=300)
        detail = (f"tether {health.version or '(version unknown)'}, status {health.status}; "
                  f"services: {names}")
        down = [s.name for s in health.services if not s.healthy]
        if down:
            detail += (f"; backend unavailable: {clean(', '.join(down), limit=200)} "
                       f"(`tether status {down[0]}`)")
        return detail

    def check_handshake(self) -> str:
        """``/v1/logs`` answers a WebSocket upgrade the way a tether gateway does."""
        from tether.protocol import ENDPOINTS

        outcome = self._dial("logs", _Anonymous())
        path = ENDPOINTS["logs"]
        if outcome is None:
            return f"{path} upgraded to a WebSocket without a token"
        if outcome.http_status == 401:
            return f"{path} answers the WebSocket upgrade (401 without a token, as it should)"
        raise TetherError(outcome)

    def check_credential(self) -> str:
        """The credential loads, has not expired, and the gateway accepts it."""
        from tether.auth.credentials import resolve_credential
        from tether.client.http import HttpOptions

        http = HttpOptions(timeout=self.s.connect_timeout, ca_cert=self.s.ca_cert,
                           insecure=self.s.insecure)
        credential = resolve_credential(self.gateway, http=http)
        self.credential = credential
        credential.authorization()  # token-expired, or refreshed first when due
        self.info = credential.describe()
        summary = _describe(self.info)
        handshake = self.results.get("handshake")
        if handshake is None or not handshake.ok:
            return f"{summary}; not checked with the gateway (needs handshake)"
        outcome = self._dial("logs", credential)
        if (outcome is not None and outcome.code in (Code.UNAUTHORIZED, Code.TOKEN_EXPIRED)
                and credential.refreshable):
            credential.refresh()
            self.info = credential.describe()
            summary = _describe(self.info)
            outcome = self._dial("logs", credential)
        if outcome is not None and outcome.code is Code.PERMISSION_DENIED:
            self.logs_outcome = outcome
        elif outcome is not None and outcome.code not in _PAST_AUTH:
            raise TetherError(outcome)
        self.verified = True
        return f"{summary}; accepted by the gateway"

    def check_role(self, command: str) -> str:
        """Whether the credential's role may use ``command``."""
        from tether.protocol import MINIMUM_ROLES, ROLES, role_allows

        info = self.info
        if info is None:
            raise Skip("needs credential")
        needed = MINIMUM_ROLES[command]
        if command == "logs" and self.verified:
            if self.logs_outcome is not None:
                raise TetherError(self.logs_outcome)
            self.allowed.append("logs")
            return f"{info.role or 'this credential'} may use logs (dialed /v1/logs)"
        if info.role in ROLES:
            if role_allows(info.role, command):
                return f"role {info.role} may use {command} (needs {needed})"
            raise TetherError(Failure.of(
                Code.PERMISSION_DENIED, Phase.CREDENTIALS,
                f"`{command}` needs role {needed}; you have {info.role}.",
                hint=f"Ask an Admin of {self.gateway} for the {needed} role.",
                required_role=needed))
        if not self.verified:
            raise Skip("role not in the token; needs handshake")
        return self._probe_role(command, needed)

    def _probe_role(self, command: str, needed: str) -> str:
        """Dial ``command`` and read the refusal, for a credential whose role is unknown.

        A command needing no more than one already dialed with success is not
        dialed again (a port-forward probe could be refused for its port alone).
        """
        from tether.protocol import MINIMUM_ROLES, ROLES

        rank = ROLES.index(needed)
        for other in self.allowed:
            if ROLES.index(MINIMUM_ROLES[other]) >= rank:
                return (f"this credential may use {command}: it may use {other}, which "
                        f"needs {MINIMUM_ROLES[other]} too" if MINIMUM_ROLES[other] == needed
                        else f"this credential may use {command}: it may use {other}")
        outcome = self._dial(command, self.credential)
        if outcome is None or outcome.code in _PAST_AUTH:
            self.allowed.append(command)
            return f"the gateway lets this credential use {command} (dialed and closed)"
        raise TetherError(outcome)


def _describe(info: CredentialInfo) -> str:
    """``JWT from TETHER_TOKEN: subject X, role Y, expires in 4 min, never refreshed``."""
    from tether.cli.commands.auth import relative
    from tether.cli.output.render import clean

    kind = {"api-token": "API token", "jwt": "JWT"}.get(info.kind, "opaque token")
    source = "TETHER_TOKEN" if info.source == "environment" else f"the {info.source}"
    if info.expires_at is None:
        expiry = "no expiry"
    else:
        left = info.expires_at.timestamp() - time.time()
        expiry = f"expires {relative(left)}" if left >= 0 else f"expired {relative(left)}"
    parts = [f"subject {clean(info.subject, limit=100)}" if info.subject else None,
             f"role {clean(info.role, limit=40)}" if info.role else "role not in the token",
             expiry, "refreshed automatically" if info.refreshable else "never refreshed"]
    return f"{kind} from {source}: " + ", ".join(p for p in parts if p)


# --- output -------------------------------------------------------------------------------

_MARKS = {"ok": ("✓", "green"), "failed": ("✗", "red"), "skipped": ("-", "dim")}
_WIDTH = max(len(n) for n in ("config", "handshake", "credential",
                              *(f"role:{c}" for c in COMMANDS)))


def print_check(check: Check) -> None:
    """One line per check (and the hint of a failure under it), on stdout."""
    from rich.text import Text

    from tether.cli.output.render import clean, get_stdout_console

    mark, style = _MARKS[check.state]
    line = Text(f"{mark} ", style=style)
    line.append(f"{check.name:<{_WIDTH}}  ", style="bold" if check.state != "skipped" else "dim")
    if check.failure is not None:
        line.append(f"{check.failure.code}: ", style="red")
        line.append(check.detail)
    elif check.state == "skipped":
        line.append(f"skipped ({clean(check.detail, limit=200)})", style="dim")
    else:
        line.append(clean(check.detail, limit=500))
    console = get_stdout_console()
    console.print(line, soft_wrap=True)
    if check.failure is not None and check.failure.hint:
        console.print(Text(" " * (_WIDTH + 4) + clean(check.failure.hint, limit=500)),
                      soft_wrap=True)


def doctor_command(ctx: typer.Context) -> None:
    """Check configuration, network, TLS, handshake, credential and roles, one line each.

    Exits 0 when every check passes, else with the exit code of the first failure.
    """
    s = settings(ctx)
    source = ctx.find_root().get_parameter_source("gateway")
    typed = s.gateway if source is not None and source.name == "COMMANDLINE" else None
    checks = Doctor(s, (lambda _check: None) if s.json else print_check,
                    gateway_flag=typed).run()
    failed = [c for c in checks if c.failure is not None]
    if s.json:
        import json

        from tether.cli.output.render import sanitize

        data = {"checks": [c.as_dict() for c in checks], "ok": not failed}
        typer.echo(json.dumps(sanitize(data), ensure_ascii=False, separators=(",", ":")))
    if failed:
        assert failed[0].failure is not None
        raise typer.Exit(failed[0].failure.exit_code)
