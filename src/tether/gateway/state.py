"""The gateway's state as a running gateway uses it: off the event loop, with a time limit.

:class:`Access` runs every store call in its own small pool of threads and
gives up after ``state_timeout``: a lost or slow database becomes a 503
``state-unavailable`` for that request, never a stalled loop. It also

- admits a bearer token: verifies it and takes one upgrade from its rate
  budget (one thread hop; for PostgreSQL one statement, shared by gateways);
- wakes the sessions of a credential when an event says it was revoked or
  changed (the store's event watcher; ``watch`` / ``unwatch``);
- writes the audit table: who opened which session on which service, when,
  from where, and how it ended.
"""

from __future__ import annotations

import asyncio
import concurrent.futures
import contextlib
import logging
import os
import socket
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from tether.errors import Code
from tether.gateway.config import GatewayConfig, require_issuer
from tether.gateway.oauth import OAuth
from tether.gateway.problems import Refusal, state_unavailable, unauthorized
from tether.gateway.tokens import AuthError, Principal, TokenService
from tether.store import StateUnavailable, Store, is_url, open_store
from tether.store.events import Event, EventWatcher
from tether.store.ratelimit import retry_after_header
from tether.store.sqlite import SQLiteStore

ENV_STATE_DIR = "TETHER_GATEWAY_STATE"
StateStore = SQLiteStore  # the embedded store, by its older name
T = TypeVar("T")
log = logging.getLogger("tether.gateway.state")
_AUDIT_TEXT = 200


def default_state_dir() -> Path:
    """``$TETHER_GATEWAY_STATE`` (a directory), else the user state directory's tether/gateway."""
    override = os.environ.get(ENV_STATE_DIR)
    if override and not is_url(override):
        return Path(override).expanduser()
    import platformdirs

    return Path(platformdirs.user_state_dir("tether")) / "gateway"


def default_state() -> str | Path:
    """``$TETHER_GATEWAY_STATE`` (a directory or a URL), else the default directory."""
    override = os.environ.get(ENV_STATE_DIR)
    if override and is_url(override):
        return override
    return default_state_dir()


def open_state(location: str | Path | Store, config: GatewayConfig) -> Store:
    """The store at ``location`` (or ``location`` itself), with the config's limits.

    Raises ConfigError when a shared store has no ``issuer``.
    """
    if not isinstance(location, Store):
        require_issuer(config, shared=is_url(location))
        location = open_store(location, timeout=config.state_timeout,
                              pool_size=config.state_pool)
    require_issuer(config, shared=location.shared)
    return location


class Access:
    """Credentials, admission, revocations and the audit trail of one running gateway."""

    def __init__(self, store: Store, config: GatewayConfig) -> None:
        self.store = store
        self.config = config
        self.timeout = config.state_timeout
        self.tokens = TokenService(store, issuer=config.issuer or "",
                                   access_ttl=config.access_ttl)
        self.oauth = OAuth(self.tokens, access_ttl=config.access_ttl,
                           refresh_ttl=config.refresh_ttl, device_interval=config.device_interval,
                           device_expires=config.device_expires)
        self.name = socket.gethostname()
        self._executor = concurrent.futures.ThreadPoolExecutor(
            max_workers=max(4, config.state_pool), thread_name_prefix="tether-state")
        self._watched: dict[str, set[asyncio.Event]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._loop: asyncio.AbstractEventLoop | None = None
        interval = config.credential_check if store.shared else min(config.credential_check, 1.0)
        self._watcher = EventWatcher(store, self._deliver, interval=max(0.05, interval))

    @property
    def available(self) -> bool:
        """Whether the state database answered the event watcher's last read."""
        return self._watcher.available

    # --- lifecycle -------------------------------------------------------------------

    def start(self, name: str) -> None:
        """Start watching for events; ``name`` identifies this gateway in the audit table."""
        self.name = name
        self._loop = asyncio.get_running_loop()
        self._watcher.start()

    async def stop(self) -> None:
        """Stop watching, and wait (a little) for the audit writes still under way."""
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=self.timeout)
        await asyncio.get_running_loop().run_in_executor(self._executor, self._watcher.stop)
        self._loop = None

    def close(self) -> None:
        """Close the store and the threads (after ``stop``)."""
        self._watcher.stop()
        self._executor.shutdown(wait=False, cancel_futures=True)
        self.store.close()

    # --- calls -----------------------------------------------------------------------

    async def call(self, fn: Callable[..., T], *args: Any) -> T:
        """``fn(*args)`` in a state thread; StateUnavailable past the time limit."""
        future = asyncio.get_running_loop().run_in_executor(self._executor, fn, *args)
        try:
            return await asyncio.wait_for(future, self.timeout)
        except TimeoutError:
            raise StateUnavailable(f"no answer within {self.timeout:g} s") from None

    async def admit(self, token: str) -> Principal:
        """The principal of ``token``, one upgrade taken from its budget; raises Refusal."""
        try:
            principal, wait, revoked = await self.call(self._admit, token)
        except AuthError as exc:
            raise unauthorized(exc.description, expired=exc.expired) from None
        except StateUnavailable as exc:
            raise state_unavailable(str(exc)) from None
        if revoked:
            raise unauthorized("the login was revoked")
        if wait > 0:
            after = retry_after_header(wait)
            raise Refusal(429, Code.RATE_LIMITED,
                          f"too many sessions opened with this credential; retry in {after} s",
                          headers={"Retry-After": after}, log=f"principal {principal.sub}")
        return principal

    def _admit(self, token: str) -> tuple[Principal, float, bool]:
        principal = self.tokens.verify(token)
        limit = self.config.rate_limit
        wait, revoked = self.store.admit(principal.key, limit.rate, limit.burst,
                                         principal.family)
        return principal, wait, revoked

    async def recheck(self, principal: Principal) -> Principal:
        """The principal as it stands now; AuthError when revoked, StateUnavailable if unknown."""
        return await self.call(self.tokens.recheck, principal)

    # --- revocations -----------------------------------------------------------------

    def watch(self, principal: Principal) -> asyncio.Event:
        """An event set whenever ``principal``'s credential is revoked or changed."""
        changed = asyncio.Event()
        key = principal.revocable
        if key is not None:
            self._watched.setdefault(key, set()).add(changed)
        return changed

    def unwatch(self, principal: Principal, changed: asyncio.Event) -> None:
        """Stop watching (the session ended)."""
        key = principal.revocable
        if key is not None and key in self._watched:
            self._watched[key].discard(changed)
            if not self._watched[key]:
                del self._watched[key]

    def _deliver(self, events: list[Event]) -> None:
        """From the watcher's thread: hand the events to the loop."""
        loop = self._loop
        if loop is not None and not loop.is_closed():
            with contextlib.suppress(RuntimeError):  # the loop closed meanwhile
                loop.call_soon_threadsafe(self._on_events, events)

    def _on_events(self, events: list[Event]) -> None:
        for _, kind, ident in events:
            if kind in ("revoked", "changed"):
                for changed in self._watched.get(ident, ()):
                    changed.set()
            elif kind == "keys":
                self._spawn(self._reload_keys())

    async def _reload_keys(self) -> None:
        try:
            await self.call(self.tokens.keys.load)
        except StateUnavailable as exc:
            log.warning("could not reload the signing keys: %s", exc)

    # --- audit -----------------------------------------------------------------------

    def opened(self, ws: Any, ctx: Any) -> asyncio.Task[str | None]:
        """Record a session that opened (in the background); its audit row id, when written."""
        request = getattr(ws, "request", None)
        forwarded = request.headers.get("X-Forwarded-For") if request is not None else None
        peer = ws.remote_address
        row = (uuid.uuid4().hex, ctx.request_id, self.name, ctx.principal.sub,
               ctx.principal.key, ctx.principal.role, ctx.endpoint, ctx.service.name,
               ctx.instance, _clean(f"{peer[0]}:{peer[1]}" if peer else None), _clean(forwarded),
               time.time())
        return self._spawn(self._audit_open(row))

    def ended(self, opened: asyncio.Task[str | None], code: int | None,
              reason: str | None) -> None:
        """Record how a session ended (in the background)."""
        self._spawn(self._audit_end(opened, code, _clean(reason)))

    async def _audit_open(self, row: tuple[Any, ...]) -> str | None:
        try:
            await self.call(self._insert_audit, row)
        except StateUnavailable as exc:
            log.warning("request %s: audit record not written: %s", row[1], exc)
            return None
        return str(row[0])

    def _insert_audit(self, row: tuple[Any, ...]) -> None:
        self.store.write_one("INSERT INTO audit (id, request_id, gateway, sub, credential, role, "
                             "endpoint, service, instance, peer, forwarded_for, opened) "
                             "VALUES (?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)", row)

    async def _audit_end(self, opened: asyncio.Task[str | None], code: int | None,
                         reason: str | None) -> None:
        ident = await opened
        if ident is None:
            return
        try:
            await self.call(self._end_audit, ident, time.time(), code, reason)
        except StateUnavailable as exc:
            log.warning("audit record %s not closed: %s", ident, exc)

    def _end_audit(self, ident: str, ended: float, code: int | None, reason: str | None) -> None:
        self.store.write_one("UPDATE audit SET ended = ?, close_code = ?, close_reason = ? "
                             "WHERE id = ?", (ended, code, reason, ident))

    def _spawn(self, coro: Any) -> asyncio.Task[Any]:
        task: asyncio.Task[Any] = asyncio.get_running_loop().create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._tasks.discard)
        return task


def _clean(text: str | None) -> str | None:
    """Peer-supplied text for the audit table: printable, bounded."""
    if text is None:
        return None
    return "".join(c for c in text if c.isprintable())[:_AUDIT_TEXT]
