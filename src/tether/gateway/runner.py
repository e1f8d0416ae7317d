"""A gateway in a background thread with its own event loop: for tests and ``tether demo``.

    running = start_in_thread(config, state_dir)
    token = running.mint_token("Deployer", ttl=60)
    ...  # dial running.ws_url + "/v1/shell?service=api"
    running.stop()
"""

from __future__ import annotations

import asyncio
import ssl
import threading
from collections.abc import Coroutine
from pathlib import Path
from typing import Any, TypeVar

from tether.gateway.config import GatewayConfig
from tether.gateway.faults import Faults
from tether.gateway.serve import new_event_loop
from tether.gateway.server import Gateway

T = TypeVar("T")


class RunningGateway:
    """A Gateway serving from a daemon thread; every method is safe to call from other threads."""

    def __init__(self, gateway: Gateway, loop: asyncio.AbstractEventLoop,
                 thread: threading.Thread, timeout: float) -> None:
        self.gateway = gateway
        self._loop = loop
        self._thread = thread
        self._timeout = timeout
        self._stopped = False

    def call(self, coro: Coroutine[Any, Any, T]) -> T:
        """Run ``coro`` in the gateway's loop and return its result."""
        return asyncio.run_coroutine_threadsafe(coro, self._loop).result(self._timeout)

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT`` (``https`` with TLS)."""
        return self.gateway.url

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT`` (``wss`` with TLS)."""
        return "ws" + self.gateway.url.removeprefix("http")

    @property
    def port(self) -> int:
        """The port it listens on."""
        return self.gateway.port

    @property
    def faults(self) -> Faults:
        """The faults to inject; set its fields to turn them on."""
        return self.gateway.faults

    @property
    def session_count(self) -> int:
        """How many sessions are open now."""
        return self.gateway.session_count

    @property
    def dial_count(self) -> dict[str, int]:
        """Upgrade requests seen per path (``/v1/shell`` ...), refused ones included."""
        return dict(self.gateway.dial_count)

    def mint_token(self, role: str, ttl: float = 300.0, sub: str = "test-user") -> str:
        """A JWT access token this gateway accepts."""
        return self.gateway.tokens.mint_jwt(sub, role, ttl)

    def create_api_token(self, role: str, name: str = "test") -> str:
        """A new API token (``tth_...``)."""
        return self.gateway.tokens.create_api_token(role, name)

    def expire_sessions(self) -> None:
        """Close every open session 1008 token-expired now."""
        self.call(self.gateway.expire_sessions())

    def restart(self) -> None:
        """Stop (every session gets 1001), then listen again on the same port, same state."""
        port = self.gateway.port
        self.call(self.gateway.stop())
        self.call(self.gateway.start(self.gateway.host, port))

    def stop(self) -> None:
        """Close every session 1001, stop listening, end the thread. Idempotent."""
        if self._stopped:
            return
        self._stopped = True
        try:
            self.call(self.gateway.stop())
        finally:
            self._loop.call_soon_threadsafe(self._loop.stop)
            self._thread.join(self._timeout)
            self.gateway.close_state()

    def __enter__(self) -> RunningGateway:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop()


def start_in_thread(config: GatewayConfig, state_dir: Path | str, *, host: str = "127.0.0.1",
                    port: int = 0, faults: Faults | None = None,
                    ssl_context: ssl.SSLContext | None = None,
                    timeout: float = 15.0) -> RunningGateway:
    """Start a gateway on ``host:port`` (0: a free port) in a daemon thread, once listening."""
    gateway = Gateway(config, state_dir, faults=faults, ssl_context=ssl_context)
    loop = new_event_loop()
    started = threading.Event()
    failure: list[BaseException] = []

    def run() -> None:
        asyncio.set_event_loop(loop)
        try:
            loop.run_until_complete(gateway.start(host, port))
        except BaseException as exc:
            failure.append(exc)
            started.set()
            loop.close()
            return
        started.set()
        try:
            loop.run_forever()
        finally:
            loop.run_until_complete(loop.shutdown_asyncgens())
            loop.close()

    thread = threading.Thread(target=run, name="tether-gateway", daemon=True)
    thread.start()
    if not started.wait(timeout):
        raise TimeoutError("the gateway did not start in time")
    if failure:
        gateway.close_state()
        raise failure[0]
    return RunningGateway(gateway, loop, thread, timeout)
