"""``tether status [SERVICE]`` against a real gateway: the table, JSON, and each exit status."""

from __future__ import annotations

import json
import socket
from pathlib import Path

from tests.cli import assert_no_secrets, json_events, run_tether, tether_env


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def test_status_lists_api_healthy(gateway, deployer_token: str, tmp_path: Path) -> None:
    env = tether_env(gateway.url, deployer_token, tmp_path)
    text = run_tether("status", env=env, timeout=20)
    assert text.returncode == 0, text.stderr
    out = text.stdout.decode()
    assert gateway.url in out
    row = next(line for line in out.splitlines() if line.strip().startswith("api"))
    assert "✓ ok" in row
    data = run_tether("status", "-o", "json", env=env, timeout=20)
    assert data.returncode == 0
    health = json.loads(data.stdout)
    assert health["status"] == "ok"
    assert health["services"] == [{"name": "api", "status": "ok", "healthy": True,
                                   "instances": health["services"][0]["instances"],
                                   "ports": list(gateway.gateway.config.services["api"].ports)}]
    assert run_tether("status", "api", env=env, timeout=20).returncode == 0
    assert_no_secrets([deployer_token], text.stdout, text.stderr, data.stdout, data.stderr)


def test_status_shows_a_backend_that_is_down(gateway, tmp_path: Path) -> None:
    gateway.faults.backend_down["api"] = "refuse"
    env = tether_env(gateway.url, None, tmp_path)
    overall = run_tether("status", env=env, timeout=20)
    assert overall.returncode == 0  # the gateway answered: the table tells the rest
    row = next(line for line in overall.stdout.decode().splitlines()
               if line.strip().startswith("api"))
    assert "✗ unavailable" in row
    one = run_tether("status", "api", "-o", "json", env=env, timeout=20)
    assert one.returncode == 69
    assert json.loads(one.stdout)["services"][0]["healthy"] is False
    error = json_events(one.stderr)[-1]
    assert error["event"] == "error" and error["code"] == "backend-unavailable"
    assert "api" in error["message"]
    text = run_tether("status", "api", env=env, timeout=20)
    assert text.returncode == 69
    assert "Backend unavailable" in text.stderr.decode()


def test_status_of_an_unknown_service_names_the_known_ones(gateway, tmp_path: Path) -> None:
    proc = run_tether("status", "apu", "-o", "json", env=tether_env(gateway.url, None, tmp_path),
                      timeout=20)
    assert proc.returncode == 69
    assert proc.stdout == b""
    error = json_events(proc.stderr)[-1]
    assert error["code"] == "not-found"
    assert "api" in error["hint"]


def test_status_with_nothing_listening_is_connection_refused(tmp_path: Path) -> None:
    env = tether_env(f"http://127.0.0.1:{_free_port()}", None, tmp_path)
    proc = run_tether("status", "-o", "json", env=env, timeout=20)
    assert proc.returncode == 69
    assert json_events(proc.stderr)[-1]["code"] == "connection-refused"


def test_status_over_tls_uses_the_ca_cert_option(tls_gateway, tls_ca_file: Path,
                                                 tmp_path: Path) -> None:
    env = tether_env(tls_gateway.url, None, tmp_path)
    refused = run_tether("status", "-o", "json", env=env, timeout=20)
    assert refused.returncode == 78
    assert json_events(refused.stderr)[-1]["code"] == "tls-error"
    trusted = run_tether("status", "--ca-cert", str(tls_ca_file), env=env, timeout=20)
    assert trusted.returncode == 0, trusted.stderr
    assert "api" in trusted.stdout.decode()
