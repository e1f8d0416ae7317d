"""A TCP proxy on 127.0.0.1 that misbehaves on demand: cut, stall, delay, trickle.

    with ChaosProxy(upstream_port) as proxy:   # proxy.port is where clients connect
        proxy.cut()                # reset every open connection (new ones still work)
        proxy.stall(True)          # hold every byte (both ways) until stall(False)
        proxy.delay = 0.05         # wait this long before forwarding each chunk
        proxy.trickle = 16         # forward at most this many bytes per 10 ms
        proxy.refuse = True        # accept new connections and reset them at once
        proxy.arm("down", 1000)    # after 1000 more bytes toward the client: cut (exactly there)
        proxy.arm("up", 50, "stall")  # ... or stall, after 50 more bytes toward the upstream
        proxy.arm("up", 450, next_connection=2)  # 450 bytes into the 2nd connection from now
        proxy.forwarded["down"]    # bytes forwarded each way so far, over every connection
        proxy.cuts                 # cuts made so far (by cut() or an armed offset)

Every thread is a daemon, waits in bounded slices and ends when the proxy stops.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from pathlib import Path
from types import TracebackType

_SLICE = 0.05
UP, DOWN = "up", "down"  # toward the upstream (client to server), toward the client


def _reset(sock: socket.socket) -> None:
    """Close with RST rather than FIN, like a dropped NAT entry or a killed peer."""
    with contextlib.suppress(OSError):
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    with contextlib.suppress(OSError):
        sock.close()


class ChaosProxy:
    """Forwards 127.0.0.1:port to 127.0.0.1:upstream, with faults switched on and off live."""

    def __init__(self, upstream: int) -> None:
        self.upstream = upstream
        self.delay = 0.0
        self.trickle = 0
        self.refuse = False
        self.accepted = 0
        self.cuts = 0
        self.forwarded = {UP: 0, DOWN: 0}
        #: (direction, connection number or None for all): (offset, "cut" or "stall")
        self._armed: dict[tuple[str, int | None], tuple[int, str]] = {}
        self._counts: dict[tuple[str, int], int] = {}  # bytes of one connection, each way
        self._running = threading.Event()
        self._flowing = threading.Event()
        self._flowing.set()
        self._lock = threading.Lock()
        self._open: list[socket.socket] = []
        self._listener = socket.create_server(("127.0.0.1", 0))
        self._listener.settimeout(_SLICE)
        self.port = int(self._listener.getsockname()[1])
        self._thread = threading.Thread(target=self._accept_loop, name="chaos-accept",
                                        daemon=True)

    @property
    def url(self) -> str:
        """The gateway's URL as reached through this proxy."""
        return f"http://127.0.0.1:{self.port}"

    def __enter__(self) -> ChaosProxy:
        self._running.set()
        self._thread.start()
        return self

    def __exit__(self, kind: type[BaseException] | None, exc: BaseException | None,
                 tb: TracebackType | None) -> None:
        self.stop()

    def stop(self) -> None:
        """Stop accepting, reset every connection, and join the accept thread."""
        self._running.clear()
        self._flowing.set()
        self.cut()
        with contextlib.suppress(OSError):
            self._listener.close()
        self._thread.join(timeout=2)

    def arm(self, direction: str, after: int, action: str = "cut", *,
            next_connection: int | None = None) -> None:
        """Cut (or stall) once ``after`` more bytes went ``direction`` (UP or DOWN): those
        bytes are forwarded, the rest of their chunk is not. Fires once. With
        ``next_connection`` N, the bytes are those of the N-th connection accepted from now."""
        if direction not in (UP, DOWN) or action not in ("cut", "stall") or after < 0:
            raise ValueError(f"cannot arm {direction} {after} {action}")
        with self._lock:
            if next_connection is None:
                self._armed[direction, None] = (self.forwarded[direction] + after, action)
            else:
                self._armed[direction, self.accepted + next_connection] = (after, action)

    def armed(self, direction: str) -> bool:
        """Whether an offset armed in ``direction`` has not fired yet."""
        with self._lock:
            return any(key[0] == direction for key in self._armed)

    def cut(self) -> int:
        """Reset every open connection; the number reset."""
        with self._lock:
            victims, self._open = self._open, []
            self.cuts += 1
        for sock in victims:
            _reset(sock)
        return len(victims) // 2

    def stall(self, on: bool) -> None:
        """Hold (True) or release (False) every byte in flight, both ways."""
        if on:
            self._flowing.clear()
        else:
            self._flowing.set()

    @property
    def open_connections(self) -> int:
        """How many client connections are being proxied now."""
        with self._lock:
            return len(self._open) // 2

    def _accept_loop(self) -> None:
        while self._running.is_set():
            try:
                client, _ = self._listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            self.accepted += 1
            number = self.accepted
            if self.refuse:
                _reset(client)
                continue
            try:
                upstream = socket.create_connection(("127.0.0.1", self.upstream), timeout=5)
            except OSError:
                _reset(client)
                continue
            for sock in (client, upstream):
                sock.settimeout(_SLICE)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            with self._lock:
                self._open += [client, upstream]
            for src, dst, direction in ((client, upstream, UP), (upstream, client, DOWN)):
                threading.Thread(target=self._pump, args=(src, dst, direction, number),
                                 name="chaos-pump", daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket, direction: str,
              number: int) -> None:
        try:
            while self._running.is_set():
                try:
                    chunk = src.recv(65536)
                except TimeoutError:
                    continue
                if not chunk:
                    with contextlib.suppress(OSError):
                        dst.shutdown(socket.SHUT_WR)
                    return
                if not self._counted(chunk, dst, direction, number):
                    return
        except OSError:
            _reset(dst)

    def _counted(self, chunk: bytes, dst: socket.socket, direction: str, number: int) -> bool:
        """Forward ``chunk`` up to an armed offset, and fire it there; False after a cut."""
        with self._lock:
            mine = self._counts.get((direction, number), 0)
            take, fired = len(chunk), None
            for key, done in (((direction, None), self.forwarded[direction]),
                              ((direction, number), mine)):
                armed = self._armed.get(key)
                if armed is not None and armed[0] - done <= take:
                    take, fired = max(armed[0] - done, 0), armed
                    del self._armed[key]
                    break
            self.forwarded[direction] += take
            self._counts[direction, number] = mine + take
        if take:
            self._forward(chunk[:take], dst)
        if fired is None:
            return True
        if fired[1] == "stall":
            self.stall(True)
            self._forward(chunk[take:], dst)  # held until stall(False)
            return True
        self.cut()
        return False

    def _forward(self, chunk: bytes, dst: socket.socket) -> None:
        while not self._flowing.wait(_SLICE):
            if not self._running.is_set():
                return
        if self.delay:
            time.sleep(self.delay)
        if not self.trickle:
            self._send(dst, chunk)
            return
        for i in range(0, len(chunk), self.trickle):
            self._send(dst, chunk[i : i + self.trickle])
            time.sleep(0.01)

    @staticmethod
    def _send(dst: socket.socket, data: bytes) -> None:
        view = memoryview(data)
        while view:
            try:
                sent = dst.send(view)
            except TimeoutError:
                continue
            view = view[sent:]


def cli_env(proxy: ChaosProxy, token: str, tmp: Path) -> dict[str, str]:
    """The environment of a ``tether`` run whose gateway is reached through ``proxy``."""
    from tests.cli import tether_env

    return tether_env(f"http://127.0.0.1:{proxy.port}", token, tmp)
