"""Ports open for forwarding, against a real gateway: its 422 refusal and ``tether status``.

A forward to a port the service does not open is its own failure,
``port-not-forwarded`` (exit 69), with a hint naming the ports that are open;
the role check still comes first. ``tether status`` lists each service's open
ports, in its table and in ``-o json``.
"""

from __future__ import annotations

import dataclasses
import json
import socket
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli import assert_no_secrets, json_events, run_tether, tether_env
from tests.gateway_client import refusal
from tether.errors import CATALOG, Code
from tether.gateway.config import GatewayConfig
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(60)


def closed_port() -> int:
    """A loopback port nothing listens on (and that no service opens)."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_the_gateway_refuses_422_with_the_open_ports(gateway: RunningGateway,
                                                    deployer_token: str, echo_server: int) -> None:
    port = closed_port()
    r = refusal(gateway.url, "/v1/port-forward", deployer_token, service="api", port=port)
    assert r.status == 422
    assert r.headers["content-type"] == "application/problem+json"
    body = r.json()
    assert body["type"] == "https://tether.dev/errors/port-not-forwarded"
    assert body["code"] == "port-not-forwarded"
    assert body["title"] == CATALOG[Code.PORT_NOT_FORWARDED].title
    assert (body["port"], body["ports"]) == (port, [echo_server])
    assert "required_role" not in body


def test_the_role_is_checked_before_the_port(gateway: RunningGateway, viewer_token: str) -> None:
    r = refusal(gateway.url, "/v1/port-forward", viewer_token, service="api", port=closed_port())
    assert r.status == 403 and r.json()["code"] == "permission-denied"


def test_forward_to_a_closed_port_is_port_not_forwarded(gateway: RunningGateway,
                                                        deployer_token: str, echo_server: int,
                                                        tmp_path: Path) -> None:
    env = tether_env(gateway.url, deployer_token, tmp_path)
    port = closed_port()
    done = run_tether("-o", "json", "port-forward", "api", f":{port}", env=env, timeout=30)
    assert done.returncode == 69, done.stderr
    assert done.stdout == b""
    events = json_events(done.stderr)
    error = events[-1]
    assert error["event"] == "error" and error["code"] == "port-not-forwarded"
    assert error["exit_code"] == 69 and error["http_status"] == 422
    assert f"Port {port}" in error["message"] and "`api`" in error["message"]
    assert str(echo_server) in error["hint"] and "tether port-forward api" in error["hint"]
    assert not [e for e in events if e["event"] == "retry"]
    assert gateway.dial_count.get("/v1/port-forward") == 1

    text = run_tether("port-forward", "api", f":{port}", env=env, timeout=30)
    assert text.returncode == 69
    err = text.stderr.decode()
    assert "Port not open for forwarding" in err
    assert "role" not in err.lower()  # not worded as a missing role any more
    assert str(echo_server) in err
    assert_no_secrets([deployer_token], done.stdout, done.stderr, text.stdout, text.stderr)


def test_status_lists_the_open_ports(make_gateway: Callable[..., RunningGateway],
                                     gateway_config: GatewayConfig, echo_server: int,
                                     tmp_path: Path) -> None:
    api = gateway_config.services["api"]
    web = dataclasses.replace(api, name="web", ports=(echo_server, 5432))
    closed = dataclasses.replace(api, name="jobs", ports=())
    gw = make_gateway(services={"api": api, "web": web, "jobs": closed})
    env = tether_env(gw.url, None, tmp_path)

    one = run_tether("status", "api", env=env, timeout=20)
    assert one.returncode == 0, one.stderr
    lines = one.stdout.decode().splitlines()
    assert "PORTS" in next(line for line in lines if "SERVICE" in line)
    row = next(line for line in lines if line.strip().startswith("api"))
    assert row.rstrip().endswith(str(echo_server))

    data = run_tether("status", "api", "-o", "json", env=env, timeout=20)
    assert data.returncode == 0
    assert [s["ports"] for s in json.loads(data.stdout)["services"]] == [[echo_server]]

    every = json.loads(run_tether("status", "-o", "json", env=env, timeout=20).stdout)
    assert {s["name"]: s["ports"] for s in every["services"]} == {
        "api": [echo_server], "web": [echo_server, 5432], "jobs": []}
    table = run_tether("status", env=env, timeout=20).stdout.decode().splitlines()
    assert next(line for line in table if line.strip().startswith("jobs")).rstrip().endswith(
        "none")
    assert f"{echo_server}, 5432" in next(line for line in table
                                          if line.strip().startswith("web"))
