"""The floor of a forward written in Python: two bare relays, no WebSocket, no session.

``python -m bench.relay LISTEN TARGET [--serve-tls CHAIN KEY | --to-tls CA]``
listens on 127.0.0.1:LISTEN and copies bytes both ways to 127.0.0.1:TARGET in
the event loop's read callbacks (uvloop's loop when installed, as the gateway
uses). Two of them in a row, TLS between them or not, stand where tether's
client and gateway stand in the port-forward bench (bench.forward): whatever
tether costs beyond them is its framing, its sessions and its threads; what
they cost beyond ``ssh -L`` is Python's price per hop on this machine.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import socket
import ssl
import subprocess
import sys
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import cast

from bench.harness import stop_process
from bench.sshd import free_port
from tether.gateway.serve import new_event_loop


def nodelay(transport: asyncio.BaseTransport) -> None:
    """TCP_NODELAY on a transport's socket, as tether and ssh set it."""
    sock = transport.get_extra_info("socket")
    if sock is not None:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)


class _Side(asyncio.Protocol):
    """One socket of a relayed connection: what it reads goes to the other side."""

    def __init__(self) -> None:
        self.transport: asyncio.Transport | None = None
        self.other: _Side | None = None
        self.early: list[bytes] = []  # read before the other side was connected

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = cast(asyncio.Transport, transport)  # uvloop's too
        nodelay(transport)

    def data_received(self, data: bytes) -> None:
        other = self.other
        if other is None or other.transport is None:
            self.early.append(data)
        else:
            other.transport.write(data)

    def connection_lost(self, exc: Exception | None) -> None:
        other = self.other
        if other is not None and other.transport is not None:
            other.transport.close()


async def _serve(listen: int, target: int, serve_tls: ssl.SSLContext | None,
                 to_tls: ssl.SSLContext | None) -> None:
    loop = asyncio.get_running_loop()
    connects: set[asyncio.Task[None]] = set()

    def accepted() -> _Side:
        inbound = _Side()

        async def connect() -> None:
            try:
                _, outbound = await loop.create_connection(
                    _Side, "127.0.0.1", target, ssl=to_tls,
                    server_hostname="127.0.0.1" if to_tls else None)
            except OSError:
                if inbound.transport is not None:
                    inbound.transport.close()
                return
            outbound.other, inbound.other = inbound, outbound
            assert outbound.transport is not None
            for data in inbound.early:
                outbound.transport.write(data)
            inbound.early.clear()

        task = loop.create_task(connect())
        connects.add(task)
        task.add_done_callback(connects.discard)
        return inbound

    server = await loop.create_server(accepted, "127.0.0.1", listen, ssl=serve_tls)
    print(f"ready {listen}", flush=True)
    async with server:
        await server.serve_forever()


def main() -> None:
    """Relay until terminated."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("listen", type=int)
    parser.add_argument("target", type=int)
    parser.add_argument("--serve-tls", nargs=2, metavar=("CHAIN", "KEY"))
    parser.add_argument("--to-tls", metavar="CA")
    args = parser.parse_args()
    serve_tls = to_tls = None
    if args.serve_tls:
        serve_tls = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
        serve_tls.load_cert_chain(*args.serve_tls)
    if args.to_tls:
        to_tls = ssl.create_default_context(cafile=args.to_tls)
    with contextlib.suppress(KeyboardInterrupt), \
            asyncio.Runner(loop_factory=new_event_loop) as runner:
        runner.run(_serve(args.listen, args.target, serve_tls, to_tls))


@contextlib.contextmanager
def _relay(listen: int, target: int, *tls: str) -> Iterator[None]:
    proc = subprocess.Popen([sys.executable, "-m", "bench.relay", str(listen), str(target), *tls],
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        if not proc.stdout.readline().startswith("ready"):
            raise RuntimeError(f"the relay did not start (exit {proc.poll()})")
        yield
    finally:
        stop_process(proc)


@contextlib.contextmanager
def relay_pair(remote_port: int, *, tls: bool = False) -> Iterator[int]:
    """A relay in front of ``remote_port`` (the gateway's place) and one in front of it (the
    client's), TLS between them when ``tls``; yields the client relay's port."""
    from bench.tether_forward import tls_files  # the same certificates as tether's

    with tempfile.TemporaryDirectory(prefix="tether-bench-relay-") as tmp:
        serve_args: list[str] = []
        to_args: list[str] = []
        if tls:
            chain, key, ca_file = tls_files(Path(tmp))
            serve_args, to_args = ["--serve-tls", str(chain), str(key)], ["--to-tls", str(ca_file)]
        far, near = free_port(), free_port()
        with _relay(far, remote_port, *serve_args), _relay(near, far, *to_args):
            yield near


if __name__ == "__main__":
    main()
