"""A TCP proxy on 127.0.0.1 that misbehaves on demand: cut, stall, delay, trickle.

    with ChaosProxy(upstream_port) as proxy:   # proxy.port is where clients connect
        proxy.cut()                # reset every open connection (new ones still work)
        proxy.stall(True)          # hold every byte (both ways) until stall(False)
        proxy.delay = 0.05         # wait this long before forwarding each chunk
        proxy.trickle = 16         # forward at most this many bytes per 10 ms
        proxy.refuse = True        # accept new connections and reset them at once

Every thread is a daemon, waits in bounded slices and ends when the proxy stops.
"""

from __future__ import annotations

import contextlib
import socket
import struct
import threading
import time
from types import TracebackType

_SLICE = 0.05


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

    def cut(self) -> int:
        """Reset every open connection; the number reset."""
        with self._lock:
            victims, self._open = self._open, []
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
            for src, dst in ((client, upstream), (upstream, client)):
                threading.Thread(target=self._pump, args=(src, dst), name="chaos-pump",
                                 daemon=True).start()

    def _pump(self, src: socket.socket, dst: socket.socket) -> None:
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
                self._forward(chunk, dst)
        except OSError:
            _reset(dst)

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
