"""``tether doctor`` against a real gateway and against each broken set-up: the failing check
is named, with its catalog code, and the checks that depend on it are skipped."""

from __future__ import annotations

import json
import socket
from pathlib import Path
from typing import Any

from tests.cli import assert_no_secrets, run_tether, tether_env
from tests.hostile import HostileServer, respond

ALL = ["config", "dns", "tcp", "gateway", "handshake", "credential", "role:logs",
       "role:shell", "role:port-forward"]


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def doctor(env: dict[str, str], *args: str, secrets: list[str] | None = None
           ) -> tuple[int, dict[str, dict[str, Any]], str]:
    """Run doctor twice (JSON and text); the exit status, the checks by name, the text."""
    data = run_tether("doctor", "-o", "json", *args, env=env, timeout=60)
    text = run_tether("doctor", *args, env=env, timeout=60)
    assert data.returncode == text.returncode
    assert data.stderr == b"", data.stderr
    assert_no_secrets(secrets or [], data.stdout, data.stderr, text.stdout, text.stderr)
    report = json.loads(data.stdout)
    checks = {c["name"]: c for c in report["checks"]}
    assert report["ok"] is (data.returncode == 0)
    return data.returncode, checks, text.stdout.decode()


def line_of(text: str, name: str) -> str:
    return next(line for line in text.splitlines() if line[2:].split()[0:1] == [name])


def test_doctor_passes_against_the_gateway(gateway, deployer_token: str, tmp_path: Path) -> None:
    status, checks, text = doctor(tether_env(gateway.url, deployer_token, tmp_path),
                                  secrets=[deployer_token])
    assert status == 0
    assert list(checks) == ALL
    assert all(c["ok"] and c["code"] is None for c in checks.values()), checks
    assert "TETHER_GATEWAY" in checks["config"]["detail"]
    assert "role Deployer" in checks["credential"]["detail"]
    lines = [line for line in text.splitlines() if line.strip()]
    assert len(lines) == len(ALL)
    assert all(line.startswith("✓ ") for line in lines)


def test_nothing_listening_fails_at_tcp(deployer_token: str, tmp_path: Path) -> None:
    env = tether_env(f"http://127.0.0.1:{_free_port()}", deployer_token, tmp_path)
    status, checks, text = doctor(env, secrets=[deployer_token])
    assert status == 69
    assert checks["dns"]["ok"]
    assert checks["tcp"]["code"] == "connection-refused"
    assert checks["tcp"]["hint"]
    for name in ("gateway", "handshake"):
        assert checks[name]["status"] == "skipped"
    assert line_of(text, "tcp").startswith("✗ tcp")
    assert "connection-refused" in line_of(text, "tcp")
    assert line_of(text, "handshake").startswith("- handshake")


def test_wrong_certificate_fails_at_tls(tls_gateway, tls_ca_file: Path, tmp_path: Path) -> None:
    token = tls_gateway.mint_token("Deployer", ttl=300)
    env = tether_env(tls_gateway.url, token, tmp_path)
    status, checks, text = doctor(env, secrets=[token])
    assert status == 78
    assert checks["tcp"]["ok"]
    assert checks["tls"]["code"] == "tls-error"
    assert "--ca-cert" in checks["tls"]["hint"]
    assert checks["gateway"]["status"] == "skipped"
    assert "tls-error" in line_of(text, "tls")
    status, checks, _ = doctor(env, "--ca-cert", str(tls_ca_file), secrets=[token])
    assert status == 0, checks
    assert "verified" in checks["tls"]["detail"]


def test_expired_token_fails_at_credential(gateway, tmp_path: Path) -> None:
    token = gateway.mint_token("Deployer", ttl=-10)
    status, checks, text = doctor(tether_env(gateway.url, token, tmp_path), secrets=[token])
    assert status == 77
    assert checks["handshake"]["ok"]
    assert checks["credential"]["code"] == "token-expired"
    assert all(checks[f"role:{c}"]["status"] == "skipped"
               for c in ("logs", "shell", "port-forward"))
    assert "token-expired" in line_of(text, "credential")


def test_viewer_asking_for_shell_fails_at_the_shell_role(gateway, viewer_token: str,
                                                         tmp_path: Path) -> None:
    status, checks, text = doctor(tether_env(gateway.url, viewer_token, tmp_path),
                                  secrets=[viewer_token])
    assert status == 77
    assert checks["credential"]["ok"]
    assert checks["role:logs"]["ok"]
    shell = checks["role:shell"]
    assert shell["code"] == "permission-denied"
    assert "Deployer" in shell["detail"] and "Viewer" in shell["detail"]
    assert line_of(text, "role:logs").startswith("✓")
    assert line_of(text, "role:shell").startswith("✗")
    assert "permission-denied" in line_of(text, "role:shell")


def test_api_tokens_roles_are_checked_by_dialing(gateway, tmp_path: Path) -> None:
    viewer = gateway.create_api_token("Viewer", "ci")
    status, checks, _ = doctor(tether_env(gateway.url, viewer, tmp_path), secrets=[viewer])
    assert status == 77
    assert "API token" in checks["credential"]["detail"]
    assert checks["role:logs"]["ok"]
    assert checks["role:shell"]["code"] == "permission-denied"
    assert "403" in checks["role:shell"]["detail"]
    deployer = gateway.create_api_token("Deployer", "cd")
    status, checks, _ = doctor(tether_env(gateway.url, deployer, tmp_path), secrets=[deployer])
    assert status == 0, checks


def test_a_server_that_is_not_a_gateway_fails_at_gateway(deployer_token: str,
                                                         tmp_path: Path) -> None:
    page = respond(200, [("Content-Type", "text/html")], b"<html><title>Login</title></html>")
    with HostileServer(page, lifetime=30) as server:
        status, checks, _ = doctor(tether_env(server.url, deployer_token, tmp_path),
                                   secrets=[deployer_token])
    assert status == 65
    assert checks["tcp"]["ok"]
    assert checks["gateway"]["code"] == "protocol-error"
    assert checks["handshake"]["status"] == "skipped"
