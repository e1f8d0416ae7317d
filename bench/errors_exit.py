"""Errors: time from a permanent refusal to process exit, and the number of dials made.

A server in this process answers every upgrade with 403 and a problem body,
noting the moment it finished sending; the tether process is timed from that
moment to its exit, on the same clock.
"""

from __future__ import annotations

import contextlib
import json
import os
import socket
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Iterator
from pathlib import Path

from bench.harness import Figure, Results
from bench.startup import tether_command

BODY = json.dumps({"type": "about:blank", "title": "Permission denied", "status": 403,
                   "detail": "role Viewer cannot open a shell on service api",
                   "code": "permission-denied", "required_role": "Deployer"}).encode()
RESPONSE = (b"HTTP/1.1 403 Forbidden\r\nContent-Type: application/problem+json\r\n"
            b"WWW-Authenticate: Bearer error=\"insufficient_scope\"\r\n"
            b"X-Request-Id: bench\r\nConnection: close\r\n"
            b"Content-Length: " + str(len(BODY)).encode() + b"\r\n\r\n" + BODY)


class RefusingServer:
    """Answers each request with 403; records when each answer was sent."""

    def __init__(self) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.listener.settimeout(0.2)
        self.port = int(self.listener.getsockname()[1])
        self.refused_at: list[float] = []
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._serve, daemon=True)

    def _serve(self) -> None:
        while not self._stop.is_set():
            try:
                conn, _ = self.listener.accept()
            except TimeoutError:
                continue
            except OSError:
                return
            with conn:
                conn.settimeout(5)
                head = b""
                with contextlib.suppress(OSError):
                    while b"\r\n\r\n" not in head and len(head) < 65536:
                        piece = conn.recv(4096)
                        if not piece:
                            break
                        head += piece
                    conn.sendall(RESPONSE)
                    self.refused_at.append(time.perf_counter())

    @contextlib.contextmanager
    def running(self) -> Iterator[RefusingServer]:
        """Serve for the duration of the block."""
        self._thread.start()
        try:
            yield self
        finally:
            self._stop.set()
            self.listener.close()
            self._thread.join(timeout=2)


def one_run(server: RefusingServer, env: dict[str, str]) -> tuple[float, int]:
    """Seconds from the refusal to the exit of ``tether logs api``, and the dials it made."""
    before = len(server.refused_at)
    proc = subprocess.Popen([*tether_command(), "logs", "api"], env=env,
                            stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    status = proc.wait(timeout=30)
    exited = time.perf_counter()
    if status != 77:
        raise RuntimeError(f"expected exit 77 (permission-denied), got {status}")
    dials = len(server.refused_at) - before
    return exited - server.refused_at[-1], dials


def run(results: Results, runs: int) -> None:
    """Refusal-to-exit time and dials, for an API token (never refreshed)."""
    section = "Errors: a permanent refusal (403)"
    with tempfile.TemporaryDirectory(prefix="tether-bench-") as tmp, \
            RefusingServer().running() as server:
        env = {k: v for k, v in os.environ.items() if not k.startswith("TETHER_")}
        env.update(TETHER_GATEWAY=f"http://127.0.0.1:{server.port}",
                   TETHER_TOKEN="tth_bench_not_a_real_token",
                   TETHER_CONFIG_DIR=str(Path(tmp) / "config"),
                   TETHER_STATE_DIR=str(Path(tmp) / "state"), NO_COLOR="1")
        one_run(server, env)  # warm-up
        samples = [one_run(server, env) for _ in range(runs)]
    results.add(Figure("refusal to exit", "s", [s for s, _ in samples],
                       goal="under 0.3 s"), section)
    results.add(Figure("dials per run", "dials", [float(d) for _, d in samples],
                       goal="one"), section)
    if sys.platform != "linux":
        results.notes.append("refusal-to-exit was measured off Linux")
