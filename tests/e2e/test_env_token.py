"""A TETHER_TOKEN the gateway rejects: one dial, no refresh, and a hint to make a new one."""

from __future__ import annotations

from pathlib import Path

from tests.cli import json_events, run_tether, tether_env
from tether.gateway.runner import RunningGateway


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
