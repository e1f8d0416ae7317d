"""Device flow, refresh rotation and family revocation, API tokens, state across restarts."""

from __future__ import annotations

import json
import os
import stat
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path

import jwt
import pytest

from tests.gateway_client import dial, http_request, refusal
from tether.gateway.oauth import DEVICE_GRANT
from tether.gateway.runner import RunningGateway


def _post(gw: RunningGateway, path: str, **form: str) -> tuple[int, dict]:
    r = http_request(gw.url, "POST", path, form=form)
    assert r.headers["cache-control"] == "no-store"
    assert "x-request-id" in r.headers
    return r.status, json.loads(r.body)


def _approve_via_cli(state_dir: Path, user_code: str, role: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-m", "tether", "gateway", "approve", user_code,
                           "--role", role, "--user", "alice", "--state-dir", str(state_dir)],
                          check=False, capture_output=True, text=True, timeout=30)


def test_device_flow_then_refresh_rotation_and_reuse_revokes_family(
        make_gateway: Callable[..., RunningGateway], tmp_path: Path) -> None:
    gw = make_gateway(device_interval=0.0)
    status, device = _post(gw, "/v1/auth/device")
    assert status == 200
    assert {"device_code", "user_code", "verification_uri", "expires_in", "interval"} <= set(device)
    status, body = _post(gw, "/v1/auth/token", grant_type=DEVICE_GRANT,
                         device_code=device["device_code"])
    assert (status, body["error"]) == (400, "authorization_pending")

    done = _approve_via_cli(gw.gateway.state.directory, device["user_code"].lower(), "Deployer")
    assert done.returncode == 0, done.stderr

    status, tokens = _post(gw, "/v1/auth/token", grant_type=DEVICE_GRANT,
                           device_code=device["device_code"])
    assert status == 200 and tokens["token_type"] == "Bearer"
    claims = jwt.decode(tokens["access_token"], options={"verify_signature": False})
    assert claims["sub"] == "alice" and claims["role"] == "Deployer"
    assert claims["aud"] == "tether" and claims["iss"] == gw.url
    assert {"iat", "exp", "jti"} <= set(claims)
    dial(gw.url, "/v1/shell", tokens["access_token"], service="api", tty=0,
         command=["true"]).close()

    status, again = _post(gw, "/v1/auth/token", grant_type=DEVICE_GRANT,
                          device_code=device["device_code"])
    assert (status, again["error"]) == (400, "invalid_grant")  # a device code works once

    first_refresh = tokens["refresh_token"]
    status, rotated = _post(gw, "/v1/auth/token", grant_type="refresh_token",
                            refresh_token=first_refresh)
    assert status == 200 and rotated["refresh_token"] != first_refresh
    status, reuse = _post(gw, "/v1/auth/token", grant_type="refresh_token",
                          refresh_token=first_refresh)
    assert (status, reuse["error"]) == (400, "invalid_grant")
    status, family = _post(gw, "/v1/auth/token", grant_type="refresh_token",
                           refresh_token=rotated["refresh_token"])
    assert (status, family["error"]) == (400, "invalid_grant")  # the whole family is revoked


def test_slow_down_denied_and_expired(make_gateway: Callable[..., RunningGateway]) -> None:
    gw = make_gateway(device_interval=30.0)
    _, device = _post(gw, "/v1/auth/device")
    code = device["device_code"]
    assert _post(gw, "/v1/auth/token", grant_type=DEVICE_GRANT,
                 device_code=code)[1]["error"] == "authorization_pending"
    assert _post(gw, "/v1/auth/token", grant_type=DEVICE_GRANT,
                 device_code=code)[1]["error"] == "slow_down"
    assert gw.gateway.oauth.decide(device["user_code"], approve=False)
    gw.gateway.oauth.device_interval = 0.0
    _, denied = _post(gw, "/v1/auth/device")
    gw.gateway.oauth.decide(denied["user_code"], approve=False)
    assert _post(gw, "/v1/auth/token", grant_type=DEVICE_GRANT,
                 device_code=denied["device_code"])[1]["error"] == "access_denied"
    gw.gateway.oauth.device_expires = 0.2
    _, short = _post(gw, "/v1/auth/device")
    time.sleep(0.4)
    assert _post(gw, "/v1/auth/token", grant_type=DEVICE_GRANT,
                 device_code=short["device_code"])[1]["error"] == "expired_token"
    assert _post(gw, "/v1/auth/token", grant_type="password")[1]["error"] == \
        "unsupported_grant_type"


def test_refreshed_access_token_has_the_configured_ttl(
        make_gateway: Callable[..., RunningGateway]) -> None:
    gw = make_gateway(device_interval=0.0, access_ttl=1.0)
    _, device = _post(gw, "/v1/auth/device")
    gw.gateway.oauth.decide(device["user_code"], approve=True, role="Viewer", sub="bob")
    _, tokens = _post(gw, "/v1/auth/token", grant_type=DEVICE_GRANT,
                      device_code=device["device_code"])
    assert tokens["expires_in"] == 1
    time.sleep(1.2)
    r = refusal(gw.url, "/v1/logs", tokens["access_token"], service="api")
    assert r.status == 401 and "expired" in r.headers["www-authenticate"]
    # A longer life for what refresh mints, so that a slow machine does not race it.
    gw.gateway.oauth.access_ttl = 30.0
    _, fresh = _post(gw, "/v1/auth/token", grant_type="refresh_token",
                     refresh_token=tokens["refresh_token"])
    assert fresh["expires_in"] == 30
    claims = jwt.decode(fresh["access_token"], options={"verify_signature": False})
    assert claims["exp"] - claims["iat"] == pytest.approx(30.0, abs=1.0)
    dial(gw.url, "/v1/logs", fresh["access_token"], service="api").close()


def test_state_survives_restart(gateway: RunningGateway) -> None:
    api = gateway.create_api_token("Viewer", "ci")
    gateway.gateway.oauth.device_interval = 0.0
    _, device = _post(gateway, "/v1/auth/device")
    gateway.gateway.oauth.decide(device["user_code"], approve=True, role="Viewer", sub="carol")
    _, tokens = _post(gateway, "/v1/auth/token", grant_type=DEVICE_GRANT,
                      device_code=device["device_code"])
    gateway.restart()
    dial(gateway.url, "/v1/logs", api, service="api").close()
    status, rotated = _post(gateway, "/v1/auth/token", grant_type="refresh_token",
                            refresh_token=tokens["refresh_token"])
    assert status == 200
    dial(gateway.url, "/v1/logs", rotated["access_token"], service="api").close()


def test_state_dir_secret_is_private_and_tokens_are_hashed(gateway: RunningGateway) -> None:
    token = gateway.create_api_token("Deployer", "hashed")
    directory = gateway.gateway.state.directory
    assert stat.S_IMODE(os.stat(directory / "secret").st_mode) == 0o600
    database = (directory / "gateway.sqlite3").read_bytes()
    assert token.encode() not in database
    assert token[4:].encode() not in database


def test_token_create_cli_prints_a_working_token(gateway: RunningGateway) -> None:
    done = subprocess.run([sys.executable, "-m", "tether", "gateway", "token", "create",
                           "--role", "Viewer", "--name", "cli", "--state-dir",
                           str(gateway.gateway.state.directory)],
                          check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 0, done.stderr
    token = done.stdout.strip()
    assert token.startswith("tth_")
    dial(gateway.url, "/v1/logs", token, service="api").close()
    assert refusal(gateway.url, "/v1/shell", token, service="api").status == 403


def test_bad_config_names_file_key_and_expectation(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[services.api]\nshell = "/bin/sh"\nports = ["http"]\n')
    done = subprocess.run([sys.executable, "-m", "tether", "gateway", "serve", "--config",
                           str(config), "--state-dir", str(tmp_path / "s")],
                          check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 78
    assert str(config) in done.stderr and "services.api.ports" in done.stderr
    assert "port numbers" in done.stderr


def test_non_loopback_listen_needs_tls(tmp_path: Path) -> None:
    config = tmp_path / "gateway.toml"
    config.write_text('[services.api]\nshell = "/bin/sh"\n')
    done = subprocess.run([sys.executable, "-m", "tether", "gateway", "serve", "--config",
                           str(config), "--listen", "0.0.0.0", "--state-dir", str(tmp_path / "s")],
                          check=False, capture_output=True, text=True, timeout=30)
    assert done.returncode == 78 and "--tls-cert" in done.stderr
