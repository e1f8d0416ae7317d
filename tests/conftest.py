"""Shared fixtures: a real gateway on loopback, and what it serves.

Everything binds 127.0.0.1 port 0 and is torn down after its test.

- ``echo_server`` -> int: port of a TCP echo server; when the client shuts down
  its writing half, the server finishes echoing and shuts down its own.
- ``log_dir`` -> Path: ``api-1.log`` and ``api-2.log``, three timestamped lines each
  (``line 1`` .. ``line 3``, instance name in each).
- ``gateway_config`` -> GatewayConfig: service ``api`` (shell ``/bin/sh`` in
  ``tmp_path/work``, logs ``log_dir/*.log``, port ``echo_server`` on 127.0.0.1),
  short timeouts (close 2 s, credential re-check 0.2 s).
- ``make_gateway(config=None, *, faults=None, **overrides)`` -> RunningGateway:
  a gateway in a thread, with GatewayConfig fields replaced by ``overrides``
  (``session_limit=1``, ``access_ttl=1``...); stopped at teardown.
- ``gateway`` -> RunningGateway: ``make_gateway()``. ``.url`` is http://127.0.0.1:PORT,
  ``.ws_url`` ws://...; ``.mint_token(role, ttl=, sub=)``, ``.create_api_token(role, name)``,
  ``.faults``, ``.session_count``, ``.dial_count``, ``.restart()``, ``.stop()``.
- ``deployer_token`` / ``viewer_token`` -> str: JWTs for ``gateway`` (5 minutes).
- ``tls_ca`` -> trustme.CA; ``tls_ca_file`` -> Path of its PEM (for ``--ca-cert``);
  ``tls_client_context`` -> ssl.SSLContext trusting it; ``tls_gateway`` ->
  RunningGateway serving wss with a certificate for 127.0.0.1 and localhost.
"""

from __future__ import annotations

import dataclasses
import ssl
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.cli import Follower
from tests.servers import echo, tcp_server
from tether.gateway.config import GatewayConfig, LogSource, ServiceConfig
from tether.gateway.faults import Faults
from tether.gateway.runner import RunningGateway, start_in_thread

LOG_STAMP = "2026-01-02T03:04:0{n}.000000Z"


def pytest_configure(config: pytest.Config) -> None:
    from tests import secrets_guard
    config.pluginmanager.register(secrets_guard, secrets_guard.PLUGIN_NAME)


@pytest.fixture
def echo_server() -> Iterator[int]:
    with tcp_server(echo) as port:
        yield port


@pytest.fixture
def log_dir(tmp_path: Path) -> Path:
    directory = tmp_path / "logs"
    directory.mkdir()
    for name in ("api-1", "api-2"):
        lines = [f"{LOG_STAMP.format(n=i)} {name} line {i}\n" for i in (1, 2, 3)]
        (directory / f"{name}.log").write_text("".join(lines))
    return directory


@pytest.fixture
def gateway_config(tmp_path: Path, log_dir: Path, echo_server: int) -> GatewayConfig:
    work = tmp_path / "work"
    work.mkdir()
    api = ServiceConfig(name="api", shell=("/bin/sh",), cwd=work, env={"APP_ENV": "test"},
                        host="127.0.0.1", ports=(echo_server,),
                        logs=(LogSource(files=str(log_dir / "*.log")),))
    return GatewayConfig(services={"api": api}, close_timeout=2.0, credential_check=0.2,
                         open_timeout=5.0)


@pytest.fixture
def make_gateway(tmp_path: Path, gateway_config: GatewayConfig
                 ) -> Iterator[Callable[..., RunningGateway]]:
    started: list[RunningGateway] = []

    def make(config: GatewayConfig | None = None, *, faults: Faults | None = None,
             ssl_context: ssl.SSLContext | None = None, **overrides: Any) -> RunningGateway:
        base = dataclasses.replace(config or gateway_config, **overrides)
        state = tmp_path / f"state{len(started)}"
        running = start_in_thread(base, state, faults=faults, ssl_context=ssl_context)
        started.append(running)
        return running

    yield make
    for running in started:
        running.stop()


@pytest.fixture
def gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway()


@pytest.fixture
def deployer_token(gateway: RunningGateway) -> str:
    return gateway.mint_token("Deployer", ttl=300, sub="deployer")


@pytest.fixture
def viewer_token(gateway: RunningGateway) -> str:
    return gateway.mint_token("Viewer", ttl=300, sub="viewer")


@pytest.fixture
def tls_ca() -> Any:
    trustme = pytest.importorskip("trustme")
    return trustme.CA()


@pytest.fixture
def tls_ca_file(tls_ca: Any, tmp_path: Path) -> Path:
    path = tmp_path / "ca.pem"
    tls_ca.cert_pem.write_to_path(str(path))
    return path


@pytest.fixture
def tls_client_context(tls_ca: Any) -> ssl.SSLContext:
    context = ssl.create_default_context()
    tls_ca.configure_trust(context)
    return context


@pytest.fixture
def tls_gateway(tls_ca: Any, make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    cert = tls_ca.issue_cert("127.0.0.1", "localhost")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    cert.configure_cert(context)
    return make_gateway(ssl_context=context)


@pytest.fixture
def follower() -> Iterator[Callable[..., Follower]]:
    started: list[Follower] = []

    def start(*args: str, env: dict[str, str]) -> Follower:
        started.append(Follower(*args, env=env))
        return started[-1]

    yield start
    for one in started:
        one.kill()
