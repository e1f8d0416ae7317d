"""A TETHER_TOKEN the gateway rejects: no refresh, and a hint to make a new one.

logs and shell stop at their one dial; port-forward stops at the first dial
after the rejection, however long it has been serving.
"""

from __future__ import annotations

import contextlib
import json
import socket
from pathlib import Path

from tests.cli import assert_no_secrets, json_events, run_tether, tether_env
from tests.e2e.test_port_forward_cli import echo_round, forward, read_lines, refused
from tether.gateway.runner import RunningGateway
from tether.session.link import REJECTED_ENV_HINT


def test_rejected_api_token_is_not_refreshed_and_says_to_make_a_new_one(
        gateway: RunningGateway, tmp_path: Path) -> None:
    token = gateway.create_api_token("Deployer", "soon-revoked")
    gateway.call(gateway_revoke(gateway, "soon-revoked"))
    env = tether_env(gateway.url, token, tmp_path)
    proc = run_tether("-o", "json", "logs", "api", env=env, timeout=20)
    assert proc.returncode == 77
    final = json_events(proc.stderr)[-1]
    assert final["event"] == "error" and final["code"] == "unauthorized"
    assert "make a new API token" in final["hint"]
    assert gateway.dial_count["/v1/logs"] == 1
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").rglob("*.cfg"))


async def gateway_revoke(gateway: RunningGateway, name: str) -> None:
    """Revoke an API token by name, as the operator would."""
    gateway.gateway.tokens.revoke_api_token(name)


def test_rejected_api_token_gets_the_same_hint_from_shell(
        gateway: RunningGateway, tmp_path: Path) -> None:
    token = gateway.create_api_token("Deployer", "soon-revoked")
    gateway.gateway.tokens.revoke_api_token("soon-revoked")
    env = tether_env(gateway.url, token, tmp_path)
    proc = run_tether("-o", "json", "shell", "-T", "api", "--", "true", env=env, timeout=20)
    assert proc.returncode == 77
    final = json_events(proc.stderr)[-1]
    assert final["code"] == "unauthorized" and final["hint"] == REJECTED_ENV_HINT
    assert gateway.dial_count["/v1/shell"] == 1


def test_token_revoked_mid_forward_ends_it_with_the_hint_and_exit_77(
        gateway: RunningGateway, echo_server: int, tmp_path: Path) -> None:
    token = gateway.create_api_token("Deployer", "soon-revoked")
    env = tether_env(gateway.url, token, tmp_path)
    with forward(env, "-o", "json", "api", f":{echo_server}") as proc:
        [line] = read_lines(proc, 1)
        port = json.loads(line)["local_port"]
        assert echo_round(port, b"served") == b"served"
        gateway.gateway.tokens.revoke_api_token("soon-revoked")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
                contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""
        out, err = proc.communicate(timeout=15)
    assert proc.returncode == 77
    final = json_events(err)[-1]
    assert final["event"] == "error" and final["code"] == "unauthorized"
    assert final["hint"] == REJECTED_ENV_HINT
    assert gateway.dial_count["/v1/port-forward"] == 3  # the probe, the one served, the refused
    assert refused(port)
    assert_no_secrets([token], line, out, err)
