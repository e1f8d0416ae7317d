"""The demo: a gateway in this process with one service, ``demo``, that has something to show.

- shell: the user's shell (or /bin/sh) in a temporary directory with a README;
- logs: two instances, ``web-1`` and ``web-2``, written by a thread every second;
- port-forward: a small HTTP server on a loopback port.

Everything lives in one temporary directory, removed by ``stop()``.
"""

from __future__ import annotations

import contextlib
import http.server
import itertools
import os
import random
import shutil
import tempfile
import threading
from datetime import UTC, datetime
from pathlib import Path

from tether.gateway.config import GatewayConfig, LogSource, ServiceConfig
from tether.gateway.runner import RunningGateway, start_in_thread

SERVICE = "demo"
_README = """This is the tether demo service's working directory.
Try: ls, cat README.txt, echo $TETHER_INSTANCE, exit 3 (and look at tether's exit status).
"""
_MESSAGES = ("GET /api/orders 200 12ms", "GET /healthz 200 1ms", "POST /api/login 401 3ms",
             "cache miss for user:42", "GET /api/orders/7 404 2ms", "worker heartbeat ok")


class _Page(http.server.BaseHTTPRequestHandler):
    def do_GET(self) -> None:
        body = b"hello from the tether demo service\n"
        self.send_response(200)
        self.send_header("Content-Type", "text/plain")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

    def log_message(self, format: str, *args: object) -> None:
        """Quiet."""


class Demo:
    """The demo's gateway, HTTP server and log writer."""

    def __init__(self, *, interval: float = 1.0) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="tether-demo-"))
        self.interval = interval
        self._stop = threading.Event()
        self._threads: list[threading.Thread] = []
        self.http: http.server.ThreadingHTTPServer | None = None
        self.gateway: RunningGateway | None = None

    @property
    def http_port(self) -> int:
        """The port of the demo's HTTP server."""
        assert self.http is not None
        return self.http.server_address[1]

    def start(self, *, access_ttl: float = 3600.0) -> RunningGateway:
        """Set up the service and start the gateway on an ephemeral loopback port."""
        work, logs = self.root / "work", self.root / "logs"
        work.mkdir()
        logs.mkdir()
        (work / "README.txt").write_text(_README)
        for name in ("web-1", "web-2"):
            self._write(logs / f"{name}.log", name, "started")
        self.http = http.server.ThreadingHTTPServer(("127.0.0.1", 0), _Page)
        self.http.daemon_threads = True
        self._spawn(self.http.serve_forever)
        self._spawn(self._generate)
        login = os.environ.get("SHELL") or "/bin/sh"
        argv = (login if os.path.exists(login) else "/bin/sh",)
        sources = (LogSource(files=str(logs / "*.log")),)
        service = ServiceConfig(name=SERVICE, shell=argv, cwd=work,
                                env={"PS1": "demo$ "}, host="127.0.0.1", ports=(self.http_port,),
                                logs=sources)
        config = GatewayConfig(services={SERVICE: service}, access_ttl=access_ttl,
                               source="<demo>")
        self.gateway = start_in_thread(config, self.root / "state")
        return self.gateway

    def _spawn(self, target: object) -> None:
        thread = threading.Thread(target=target, daemon=True)  # type: ignore[arg-type]
        thread.start()
        self._threads.append(thread)

    @staticmethod
    def _write(path: Path, instance: str, message: str) -> None:
        stamp = datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        with path.open("a", encoding="utf-8") as handle:
            handle.write(f"{stamp} {instance} {message}\n")

    def _generate(self) -> None:
        names = itertools.cycle(("web-1", "web-2"))
        while not self._stop.wait(self.interval / 2):
            name = next(names)
            self._write(self.root / "logs" / f"{name}.log", name, random.choice(_MESSAGES))

    def stop(self) -> None:
        """Stop everything and remove the temporary directory."""
        self._stop.set()
        if self.gateway is not None:
            self.gateway.stop()
        if self.http is not None:
            self.http.shutdown()
            self.http.server_close()
        for thread in self._threads:
            thread.join(2)
        with contextlib.suppress(OSError):
            shutil.rmtree(self.root)
