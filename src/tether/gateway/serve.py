"""Running a gateway in the foreground until SIGTERM or SIGINT (then every session gets 1001).

The event loop is uvloop's when it is installed (the ``fast`` extra), unless
``TETHER_GATEWAY_LOOP=asyncio`` asks for the standard one; glibc's allocator is
set for large messages (:mod:`tether.gateway.allocator`).
"""

from __future__ import annotations

import asyncio
import ipaddress
import os
import signal
import ssl
from collections.abc import Callable
from pathlib import Path

from tether.gateway import allocator
from tether.gateway.faults import Faults
from tether.gateway.server import Gateway


class ListenRefused(ValueError):
    """Raised when asked to listen on a non-loopback address without TLS or an explicit opt-in."""


def is_loopback(host: str) -> bool:
    """Whether ``host`` is a loopback address (or ``localhost``)."""
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


def check_listen(host: str, *, tls: bool, insecure_listen: bool) -> None:
    """Refuse a plain-text listener that other machines could reach, unless told otherwise."""
    if not is_loopback(host) and not tls and not insecure_listen:
        raise ListenRefused(
            f"refusing to listen on {host} without TLS: tokens would cross the network in "
            "clear text; pass --tls-cert and --tls-key, or --insecure-listen to do it anyway")


def tls_context(cert: Path, key: Path) -> ssl.SSLContext:
    """A server TLS context from a PEM certificate chain and key."""
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.load_cert_chain(str(cert), str(key))
    return context


def new_event_loop() -> asyncio.AbstractEventLoop:
    """uvloop's event loop when it is installed and not turned off, else asyncio's."""
    if os.environ.get("TETHER_GATEWAY_LOOP", "").lower() != "asyncio":
        try:
            import uvloop
        except ImportError:
            pass
        else:
            return uvloop.new_event_loop()
    return asyncio.new_event_loop()


def run_forever(gateway: Gateway, host: str, port: int, *,
                on_ready: Callable[[Gateway], None] | None = None) -> None:
    """Serve until SIGTERM or SIGINT, then close every session 1001 and return."""
    allocator.tune()

    async def main() -> None:
        loop = asyncio.get_running_loop()
        stop = asyncio.Event()
        for signum in (signal.SIGTERM, signal.SIGINT):
            loop.add_signal_handler(signum, stop.set)
        try:
            await gateway.start(host, port)
            if on_ready is not None:
                on_ready(gateway)
            await stop.wait()
        finally:
            await gateway.stop()
            for signum in (signal.SIGTERM, signal.SIGINT):
                loop.remove_signal_handler(signum)

    try:
        with asyncio.Runner(loop_factory=new_event_loop) as runner:
            runner.run(main())
    finally:
        gateway.close_state()


def load_faults(path: Path | None) -> Faults | None:
    """Faults from a JSON file, for tests; None without a file."""
    return Faults.from_json(path) if path is not None else None
