"""Real middleboxes for tests: nginx, HAProxy and tinyproxy from Debian's packages.

Each is started by the test in a temporary directory with a config of its own,
on a free port of 127.0.0.1, and stopped by its PID at the end. When a program
is missing its tests skip with a message naming the Debian package, except
under ``CI=true``, where a missing one fails the run.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import signal
import socket
import subprocess
import time
from collections.abc import Iterator, Sequence
from pathlib import Path

import pytest

from tests.servers import free_port

_SBIN = ("/usr/sbin", "/usr/bin", "/sbin", "/usr/local/sbin", "/usr/local/bin")


def require(program: str, package: str) -> str:
    """The path of ``program``; skips (fails under CI=true) naming ``package`` when missing."""
    found = shutil.which(program) or next(
        (f"{d}/{program}" for d in _SBIN if os.access(f"{d}/{program}", os.X_OK)), None)
    if found:
        return found
    message = f"{program} is not installed (Debian package {package})"
    if os.environ.get("CI", "").lower() == "true":
        pytest.fail(message + ": .ci/run must install it")
    pytest.skip(message)


def wait_listening(port: int, proc: subprocess.Popen[bytes], log: Path,
                   timeout: float = 10.0) -> None:
    """Return once 127.0.0.1:``port`` accepts; fail with the program's log if it died."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            pytest.fail(f"{proc.args[0]} exited {proc.returncode}: {log.read_text()[-2000:]}")
        with contextlib.suppress(OSError), socket.create_connection(("127.0.0.1", port), 0.2):
            return
        time.sleep(0.05)
    pytest.fail(f"{proc.args[0]} did not listen on {port} within {timeout} s")


def stop(proc: subprocess.Popen[bytes]) -> None:
    """End a program this test started, by its PID: SIGTERM, then SIGKILL after 5 s."""
    if proc.poll() is None:
        with contextlib.suppress(ProcessLookupError):
            os.kill(proc.pid, signal.SIGTERM)
        try:
            proc.wait(5)
        except subprocess.TimeoutExpired:
            with contextlib.suppress(ProcessLookupError):
                os.kill(proc.pid, signal.SIGKILL)
            proc.wait(5)


@contextlib.contextmanager
def _run(argv: Sequence[str], port: int, directory: Path) -> Iterator[int]:
    log = directory / "output.log"
    with log.open("wb") as out:
        proc = subprocess.Popen(list(argv), stdout=out, stderr=subprocess.STDOUT,
                                stdin=subprocess.DEVNULL, cwd=directory)
    try:
        wait_listening(port, proc, log)
        yield port
    finally:
        stop(proc)


class Middlebox:
    """A running middlebox: its port and the directory holding its config and log."""

    def __init__(self, port: int, directory: Path) -> None:
        self.port = port
        self.directory = directory

    @property
    def url(self) -> str:
        """``http://127.0.0.1:PORT``."""
        return f"http://127.0.0.1:{self.port}"

    def log(self) -> str:
        """What the program printed so far."""
        path = self.directory / "output.log"
        return path.read_text(errors="replace") if path.exists() else ""


@contextlib.contextmanager
def nginx(directory: Path, upstream: int, *, read_timeout: str = "60s") -> Iterator[Middlebox]:
    """nginx as a WebSocket reverse proxy to 127.0.0.1:``upstream``."""
    binary = require("nginx", "nginx-light")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    temp = directory / "temp"
    temp.mkdir(exist_ok=True)
    user = "user root;\n" if os.geteuid() == 0 else ""
    (directory / "nginx.conf").write_text(f"""{user}worker_processes 1;
daemon off;
master_process on;
error_log {directory}/error.log warn;
pid {directory}/nginx.pid;
events {{ worker_connections 256; }}
http {{
  access_log off;
  client_body_temp_path {temp}/body;
  proxy_temp_path {temp}/proxy;
  fastcgi_temp_path {temp}/fastcgi;
  uwsgi_temp_path {temp}/uwsgi;
  scgi_temp_path {temp}/scgi;
  map $http_upgrade $connection_upgrade {{ default upgrade; '' close; }}
  server {{
    listen 127.0.0.1:{port};
    location / {{
      proxy_pass http://127.0.0.1:{upstream};
      proxy_http_version 1.1;
      proxy_set_header Upgrade $http_upgrade;
      proxy_set_header Connection $connection_upgrade;
      proxy_set_header Host $host;
      proxy_read_timeout {read_timeout};
      proxy_connect_timeout 2s;
    }}
  }}
}}
""")
    argv = [binary, "-p", str(directory), "-c", str(directory / "nginx.conf")]
    with _run(argv, port, directory):
        yield Middlebox(port, directory)


@contextlib.contextmanager
def haproxy(directory: Path, backends: Sequence[int], *,
            balance: str = "roundrobin", extra_backend: str = "") -> Iterator[Middlebox]:
    """HAProxy in HTTP mode in front of gateways on 127.0.0.1:``backends``."""
    binary = require("haproxy", "haproxy")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    servers = "\n".join(f"  server g{i} 127.0.0.1:{backend}"
                        for i, backend in enumerate(backends, 1))
    (directory / "haproxy.cfg").write_text(f"""global
  maxconn 512
defaults
  mode http
  timeout connect 2s
  timeout client 60s
  timeout server 60s
  timeout tunnel 1h
frontend gateways
  bind 127.0.0.1:{port}
  default_backend gateways
backend gateways
  balance {balance}
{extra_backend}{servers}
""")
    argv = [binary, "-db", "-f", str(directory / "haproxy.cfg")]
    with _run(argv, port, directory):
        yield Middlebox(port, directory)


@contextlib.contextmanager
def tinyproxy(directory: Path, *, connect_ports: Sequence[int] = (),
              basic_auth: tuple[str, str] | None = None) -> Iterator[Middlebox]:
    """tinyproxy as a forward proxy; with ``connect_ports``, CONNECT only to those ports;
    with ``basic_auth`` (user, password), 407 to a client that does not give them."""
    binary = require("tinyproxy", "tinyproxy")
    directory.mkdir(parents=True, exist_ok=True)
    port = free_port()
    allowed = "".join(f"ConnectPort {p}\n" for p in connect_ports)  # none: every port
    if basic_auth is not None:
        allowed += f"BasicAuth {basic_auth[0]} {basic_auth[1]}\n"
    user = "User nobody\nGroup nogroup\n" if os.geteuid() == 0 else ""
    (directory / "tinyproxy.conf").write_text(f"""{user}Port {port}
Listen 127.0.0.1
Timeout 60
MaxClients 64
LogLevel Info
Allow 127.0.0.1
DisableViaHeader No
{allowed}""")
    argv = [binary, "-d", "-c", str(directory / "tinyproxy.conf")]
    with _run(argv, port, directory):
        yield Middlebox(port, directory)
