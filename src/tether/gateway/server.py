"""The reference gateway: routing, authentication, roles, limits, sessions and shutdown.

Checks before an upgrade, in order (the first that fails answers)::

    unknown path 404 -> not a WebSocket upgrade 426 -> credential 401
    -> rate limit 429 -> parameters 400 -> service, instance 404 -> role 403 -> port 422
    -> session limit 503 -> injected faults 500/502/503/504 -> 101

Every response carries ``X-Request-Id``. After the upgrade, a guard closes the
session 1008 when its token expires (or an API token is revoked) and 1007 when
its role no longer allows it; ``stop()`` closes every session 1001.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
import socket
import ssl
import time
from collections import Counter
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from websockets.asyncio.server import Server, ServerConnection, serve
from websockets.exceptions import ConnectionClosed
from websockets.http11 import Request, Response
from websockets.protocol import State
from websockets.typing import Subprotocol

from tether import __version__
from tether.errors import Code
from tether.gateway import httpapi
from tether.gateway.config import GatewayConfig, ServiceConfig
from tether.gateway.connection import GatewayConnection
from tether.gateway.faults import AGENT_TIMEOUT_REASON, Faults
from tether.gateway.forward import serve_forward
from tether.gateway.logs import serve_logs
from tether.gateway.logsources import LogHub
from tether.gateway.params import (
    bad,
    flag,
    integer,
    log_request,
    one,
    parse_query,
    terminal_modes,
)
from tether.gateway.problems import (
    Refusal,
    forbidden,
    port_not_forwarded,
    problem_response,
    request_id_from,
    unauthorized,
)
from tether.gateway.resumable import Registry
from tether.gateway.session import SessionContext, ShellRequest, close_with
from tether.gateway.shell import serve_shell
from tether.gateway.state import Access, open_state
from tether.gateway.tokens import AuthError
from tether.protocol import (
    ENDPOINTS,
    MINIMUM_ROLES,
    NODE_PARAM,
    PORT_FORWARD_SUBPROTOCOLS,
    RESUME_PARAM,
    SUBPROTOCOL,
    SUBPROTOCOL_V2,
    CloseCode,
    parse_close_reason,
    role_allows,
)
from tether.store import StateUnavailable, Store

log = logging.getLogger("tether.gateway")
_PATHS = {path: name for name, path in ENDPOINTS.items()}
_VERBS = {"shell": "open a shell", "logs": "read logs", "port-forward": "forward ports"}
GOING_AWAY_REASON = "gateway-restarting: the gateway is shutting down"
_SECRET = re.compile(r"(?i)(bearer\s+)(?!realm=)\S+|tth[r]?_[A-Za-z0-9_-]+|eyJ[A-Za-z0-9_.-]+"
                     r'|"id":\s*"[^"]*"?')  # session ids in frame logs


class _Redact(logging.Filter):
    """Keeps bearer tokens, API tokens and JWTs out of the websockets library's log lines."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        cleaned = _SECRET.sub(lambda m: (m.group(1) or "") + "REDACTED", message)
        if cleaned != message:
            record.msg, record.args = cleaned, None
        return True


_wire_log = logging.getLogger("tether.gateway.websockets")
_wire_log.addFilter(_Redact())


def _is_upgrade(request: Request) -> bool:
    connection = ",".join(request.headers.get_all("Connection")).lower()
    upgrade = ",".join(request.headers.get_all("Upgrade")).lower()
    return "upgrade" in connection and "websocket" in upgrade


class Gateway:
    """One gateway: its state, its services and, once started, its listening socket."""

    def __init__(self, config: GatewayConfig, state: Path | str | Store, *,
                 faults: Faults | None = None, ssl_context: ssl.SSLContext | None = None) -> None:
        self.config = config
        self.state = open_state(state, config)  # a directory (SQLite) or postgresql:// URL
        self.access = Access(self.state, config)
        self.tokens, self.oauth = self.access.tokens, self.access.oauth
        self.faults = faults if faults is not None else Faults()
        self.ssl_context = ssl_context
        self.logs = LogHub(config.services)
        self.resumable = Registry(buffer=config.resume_buffer, grace=config.resume_grace,
                                  open_timeout=config.open_timeout,
                                  close_timeout=config.close_timeout, node=config.node)
        self.sessions: set[ServerConnection] = set()
        self._pending: set[ServerConnection] = set()
        self.dial_count: Counter[str] = Counter()
        self.host = config.listen
        self.port = config.port
        self._server: Server | None = None

    # --- lifecycle -------------------------------------------------------------------

    @property
    def url(self) -> str:
        """``http://HOST:PORT`` (``https`` with TLS)."""
        scheme = "https" if self.ssl_context else "http"
        host = f"[{self.host}]" if ":" in self.host else self.host
        return f"{scheme}://{host}:{self.port}"

    async def start(self, host: str | None = None, port: int | None = None) -> None:
        """Listen on ``host:port`` (port 0: any free port) and start the log commands."""
        host = host or self.config.listen
        port = self.config.port if port is None else port
        config = self.config
        self._server = await serve(
            self._handle, host, port,
            create_connection=GatewayConnection,
            process_request=self._process_request,
            process_response=self._process_response,
            select_subprotocol=self._select_subprotocol,
            server_header=f"tether-gateway/{__version__}",
            compression=None,  # permessage-deflate costs CPU and latency on every frame
            max_size=config.max_message_size,
            ping_interval=config.ping_interval,
            ping_timeout=config.ping_timeout,
            open_timeout=config.open_timeout,
            close_timeout=config.close_timeout,
            logger=_wire_log,
            ssl=self.ssl_context,
        )
        self.host, self.port = host, self._server.sockets[0].getsockname()[1]
        if not self.tokens.issuer:
            self.tokens.issuer = self.url
        self.access.start(f"{socket.gethostname()}:{self.port}")
        self.logs.start()
        log.info("gateway listening on %s (node %s)", self.url, self.config.node)

    async def stop(self) -> None:
        """Close every session with 1001, stop listening, and stop the log commands."""
        server, self._server = self._server, None
        if server is not None:
            server.close(code=CloseCode.GOING_AWAY, reason=GOING_AWAY_REASON)
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(server.wait_closed(), self.config.close_timeout + 5.0)
        await self.logs.stop()
        await self.resumable.close_all()
        await self.access.stop()
        log.info("gateway stopped")

    async def serve_forever(self) -> None:
        """Run until the listening server closes."""
        if self._server is not None:
            await self._server.wait_closed()

    async def expire_sessions(self) -> None:
        """Close every open session 1008 token-expired, as if every token expired now."""
        for ws in list(self.sessions):
            await close_with(ws, CloseCode.POLICY_VIOLATION, "token-expired",
                             "the access token expired during the session")

    def close_state(self) -> None:
        """Close the state database (after ``stop``)."""
        self.access.close()

    @property
    def session_count(self) -> int:
        """How many sessions are open now."""
        return len(self.sessions)

    # --- handshake -------------------------------------------------------------------

    def _select_subprotocol(self, connection: ServerConnection,
                            offered: Any) -> Subprotocol | None:
        request = connection.request
        path = urlsplit(request.path).path if request is not None else ""
        choices = PORT_FORWARD_SUBPROTOCOLS if path == ENDPOINTS["port-forward"] else (SUBPROTOCOL,)
        if self.config.resume and path in (ENDPOINTS["shell"], ENDPOINTS["port-forward"]):
            choices = (SUBPROTOCOL_V2, *choices)
        for choice in choices:
            if choice in offered:
                return Subprotocol(choice)
        return None

    async def _process_request(self, connection: ServerConnection,
                               request: Request) -> Response | None:
        rid = request_id_from(request.headers.get("X-Request-Id"))
        assert isinstance(connection, GatewayConnection)
        connection.request_id = rid
        split = urlsplit(request.path)
        try:
            endpoint = _PATHS.get(split.path)
            if endpoint is not None:
                self.dial_count[split.path] += 1
                await self._admit(connection, request, endpoint, split.query, rid)
                return None
            return await self._http(connection, request, split.path, rid)
        except Refusal as refusal:
            log.info("request %s %s refused %d %s: %s%s", rid, split.path, refusal.status,
                     refusal.code, refusal.detail, f" ({refusal.log})" if refusal.log else "")
            return problem_response(refusal, rid)
        except Exception:
            log.exception("request %s %s failed", rid, split.path)
            return problem_response(Refusal(500, Code.GATEWAY_ERROR,
                                            "the gateway failed; report the request id"), rid)

    def _process_response(self, connection: ServerConnection, request: Request,
                          response: Response) -> None:
        rid = getattr(connection, "request_id", None) or request_id_from(None)
        if "X-Request-Id" not in response.headers:
            response.headers["X-Request-Id"] = rid
        if response.status_code != 101:
            self._pending.discard(connection)

    async def _http(self, connection: GatewayConnection, request: Request, path: str,
                    rid: str) -> Response:
        if path == "/v1/health":
            return httpapi.health(self._health(), len(self.sessions))
        if path == "/v1/auth/device":
            return await httpapi.device_authorization(self.access, self.tokens.issuer or self.url,
                                                      request)
        if path == "/v1/auth/token":
            return await httpapi.token(self.access, request, connection.http_body,
                                       connection.body_too_large, rid)
        if path == "/v1/auth/verify":
            return httpapi.verify_page(request)
        raise Refusal(404, Code.NOT_FOUND, "no such endpoint on this gateway")

    def _bearer(self, request: Request) -> str:
        values = request.headers.get_all("Authorization")
        if not values:
            raise unauthorized("no bearer token: send Authorization: Bearer TOKEN")
        if len(values) > 1:
            raise bad("more than one Authorization header")
        scheme, _, token = values[0].strip().partition(" ")
        if scheme.lower() != "bearer" or not token.strip():
            raise unauthorized("the Authorization header must be Bearer TOKEN")
        return token.strip()

    def service_instances(self, service: ServiceConfig) -> list[str]:
        """A service's instances: configured, else its log instances, else its own name."""
        return list(service.instances) or self.logs.instances(service.name) or [service.name]

    async def _admit(self, connection: GatewayConnection, request: Request, endpoint: str,
                     query: str, rid: str) -> None:
        """Check an upgrade request; raises Refusal, or sets the session's context."""
        if request.method != "GET":
            raise Refusal(405, Code.INVALID_REQUEST, "use GET with a WebSocket upgrade",
                          headers={"Allow": "GET"})
        if not _is_upgrade(request):
            raise Refusal(426, Code.INVALID_REQUEST,
                          f"{ENDPOINTS[endpoint]} speaks WebSocket only: send an upgrade request",
                          headers={"Upgrade": "websocket"})
        principal = await self.access.admit(self._bearer(request))  # 401, 429, 503
        params = parse_query(query, endpoint)
        name = one(params, "service")
        if not name:
            raise bad("the service parameter is required")
        service = self.config.services.get(name)
        if service is None:
            known = ", ".join(sorted(self.config.services))
            shown = name if len(name) <= 64 and name.isprintable() else "(unprintable)"
            raise Refusal(404, Code.NOT_FOUND,
                          f"no service named {shown!r} on this gateway; it has: {known}")
        instance = one(params, "instance") or None
        instances = (self.logs.instances(name) if endpoint == "logs"
                     else self.service_instances(service))
        if instance is not None and instance not in instances:
            shown = instance if len(instance) <= 64 and instance.isprintable() else "(unprintable)"
            raise Refusal(404, Code.NOT_FOUND, f"service {name} has no instance {shown!r}; "
                          f"it has: {', '.join(instances) or 'none'}")
        ctx = SessionContext(request_id=rid, endpoint=endpoint, service=service,
                             instance=instance, principal=principal)
        self._fill(ctx, params, instances)
        if not role_allows(principal.role, endpoint):
            required = MINIMUM_ROLES[endpoint]
            raise forbidden(f"role {principal.role} cannot {_VERBS[endpoint]} on service {name} "
                            f"(requires {required})", required)
        if ctx.port is not None and ctx.port not in service.ports:
            raise port_not_forwarded(name, ctx.port, service.ports)
        if not ctx.resume and self._active() >= self.config.session_limit:
            raise Refusal(503, Code.GATEWAY_UNAVAILABLE,
                          "the gateway is at its session limit; try again shortly",
                          headers={"Retry-After": "1"})
        await self._injected(name)
        connection.context = ctx
        self._pending.add(connection)
        log.info("request %s: %s on %s/%s for %s (%s)", rid, endpoint, name, ctx.instance,
                 principal.sub, principal.role)

    def _fill(self, ctx: SessionContext, params: dict[str, list[str]],
              instances: list[str]) -> None:
        """The endpoint's own parameters, checked, into ``ctx``."""
        if ctx.endpoint == "logs":
            ctx.logs = log_request(params, ctx.service.name)
            return
        ctx.instance = ctx.instance or (instances[0] if instances else ctx.service.name)
        ctx.resume = flag(params, RESUME_PARAM, False)
        node = one(params, NODE_PARAM)
        if ctx.resume and node and node != self.config.node:  # its gateway died, or misrouted
            log.info("request %s: a resume for node %.63r reached node %s", ctx.request_id,
                     node, self.config.node)
        if ctx.endpoint == "shell":
            tty = flag(params, "tty", False)
            cols = integer(params, "cols", 80, 1, 65535)
            rows = integer(params, "rows", 24, 1, 65535)
            argv = params.get("command") or list(ctx.service.shell)
            if not argv[0]:
                raise bad("command must not be empty")
            assert cols is not None and rows is not None
            ctx.shell = ShellRequest(argv=argv, tty=tty, cols=cols, rows=rows,
                                     modes=terminal_modes(params) if tty else None)
            return
        port = integer(params, "port", None, 1, 65535)
        if port is None:
            raise bad("the port parameter is required (1 to 65535)")
        ctx.port = port

    def _active(self) -> int:
        stale = {c for c in self._pending if c.state not in (State.CONNECTING, State.OPEN)}
        self._pending -= stale
        return len(self.sessions) + len(self._pending - self.sessions) + self.resumable.detached

    async def _injected(self, service: str) -> None:
        faults = self.faults
        if faults.delay_before_upgrade:
            await asyncio.sleep(faults.delay_before_upgrade)
        status = faults.refuse_status
        if status is not None:
            code = {500: Code.GATEWAY_ERROR, 503: Code.GATEWAY_UNAVAILABLE, 429: Code.RATE_LIMITED,
                    }.get(status, Code.BACKEND_UNAVAILABLE)
            raise Refusal(status, code, "refused by an injected fault")
        mode = faults.backend_down.get(service)
        if mode == "refuse":
            raise Refusal(502, Code.BACKEND_UNAVAILABLE,
                          f"the cluster hosting service {service} is not answering")
        if mode == "timeout":
            raise Refusal(504, Code.BACKEND_UNAVAILABLE,
                          f"the cluster hosting service {service} did not answer in time")

    # --- sessions --------------------------------------------------------------------

    async def _handle(self, ws: ServerConnection) -> None:
        ctx: SessionContext | None = getattr(ws, "context", None)
        self._pending.discard(ws)
        if ctx is None:
            await close_with(ws, CloseCode.INTERNAL_ERROR, "gateway-error", "no session context")
            return
        self.sessions.add(ws)
        audit = self.access.opened(ws, ctx)
        tasks: list[asyncio.Task[None]] = []
        try:
            if await self._fault_after_upgrade(ws, ctx):
                return
            main = asyncio.create_task(self._endpoint(ws, ctx))
            guard = asyncio.create_task(self._guard(ws, ctx))
            tasks = [main, guard]
            await asyncio.wait(tasks, return_when=asyncio.FIRST_COMPLETED)
            if not main.done():
                await asyncio.wait([main], timeout=self.config.close_timeout + 2.0)
            if main.done() and not main.cancelled() and main.exception() is not None:
                exc = main.exception()
                if not isinstance(exc, ConnectionClosed):
                    log.error("request %s: session failed", ctx.request_id, exc_info=exc)
                    await close_with(ws, CloseCode.INTERNAL_ERROR, "backend-unavailable",
                                     f"the backend of service {ctx.service.name} failed")
        finally:
            for task in tasks:
                task.cancel()
            for task in tasks:
                with contextlib.suppress(asyncio.CancelledError, Exception):
                    await task
            self.sessions.discard(ws)
            self.access.ended(audit, ws.close_code, ws.close_reason)
            log.info("request %s: session ended (%s %s)", ctx.request_id, ws.close_code,
                     ws.close_reason)

    async def _fault_after_upgrade(self, ws: ServerConnection, ctx: SessionContext) -> bool:
        faults, name = self.faults, ctx.service.name
        if faults.delay_after_upgrade:
            await asyncio.sleep(faults.delay_after_upgrade)
        if faults.backend_down.get(name) == "close":
            await close_with(ws, CloseCode.INTERNAL_ERROR, "backend-unavailable",
                             f"the cluster hosting service {name} is not answering")
            return True
        reason = faults.agent_timeout.get(name)
        if reason is not None:
            code, text = parse_close_reason(reason or AGENT_TIMEOUT_REASON)
            await close_with(ws, CloseCode.INTERNAL_ERROR, code or "", text)
            return True
        return False

    async def _endpoint(self, ws: ServerConnection, ctx: SessionContext) -> None:
        service = ctx.service
        assert isinstance(ws, GatewayConnection)
        if ctx.resume or ws.subprotocol == SUBPROTOCOL_V2:
            await self.resumable.serve(ws, ctx)
        elif ctx.shell is not None:
            await serve_shell(ws, service, ctx.instance or service.name, ctx.shell,
                              request_id=ctx.request_id, close_timeout=self.config.close_timeout)
        elif ctx.logs is not None:
            budget = self.faults.take_close_after()
            await serve_logs(ws, self.logs, ctx.logs, budget,
                             (self.faults.close_code, self.faults.close_reason))
        elif ctx.port is not None:
            await serve_forward(ws, service.name, service.host, ctx.port,
                                request_id=ctx.request_id, close_timeout=self.config.close_timeout)

    async def _guard(self, ws: ServerConnection, ctx: SessionContext) -> None:
        """Close the session when its credential expires, is revoked, or loses its role.

        Revocations and role changes are pushed (``Access.watch``), never polled here.
        """
        changed = self.access.watch(ctx.principal)
        try:
            await self._guard_until_closed(ws, ctx, changed)
        finally:
            self.access.unwatch(ctx.principal, changed)

    async def _guard_until_closed(self, ws: ServerConnection, ctx: SessionContext,
                                  changed: asyncio.Event) -> None:
        principal = ctx.principal
        started = time.time()
        while ws.state is State.OPEN:
            now = time.time()
            deadline = principal.expires_at
            if self.faults.expire_after is not None:
                forced = started + self.faults.expire_after
                deadline = forced if deadline is None else min(deadline, forced)
            if deadline is not None and now >= deadline:
                await close_with(ws, CloseCode.POLICY_VIOLATION, "token-expired",
                                 "the access token expired during the session")
                return
            if changed.is_set():
                changed.clear()
                try:
                    principal = await self.access.recheck(principal)
                except AuthError as exc:
                    await close_with(ws, CloseCode.POLICY_VIOLATION, "unauthorized",
                                     f"{exc.description} during the session")
                    return
                except StateUnavailable as exc:
                    log.warning("request %s: credential not re-checked: %s", ctx.request_id, exc)
                if not role_allows(principal.role, ctx.endpoint):
                    required = MINIMUM_ROLES[ctx.endpoint]
                    await close_with(ws, CloseCode.INVALID_DATA, "permission-denied",
                                     f"role {principal.role} may no longer {_VERBS[ctx.endpoint]} "
                                     f"(requires {required})")
                    return
            wait = 0.5
            if deadline is not None:
                wait = min(wait, max(0.0, deadline - now))
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(changed.wait(), wait)

    def _health(self) -> dict[str, dict[str, Any]]:
        out: dict[str, dict[str, Any]] = {}
        for name, service in self.config.services.items():
            down = name in self.faults.backend_down or (
                service.cwd is not None and not service.cwd.is_dir())
            out[name] = {"status": "unavailable" if down else "ok",
                         "instances": self.service_instances(service),
                         "ports": list(service.ports)}
        return out
