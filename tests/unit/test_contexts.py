"""Contexts: --context, TETHER_CONTEXT, `tether auth switch` and `status`, unknown names."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from tests.cli import assert_no_secrets, run_tether, tether_env
from tether.auth.contexts import (
    Config,
    Context,
    load_config,
    resolve_gateway,
    save_config,
    switch_context,
)
from tether.errors import Code, TetherError

PROD = Context("prod", "https://gw.example.com")
STAGING = Context("staging", "https://staging.example.com:8443")
CONFIG = Config(current_context="prod", contexts={"prod": PROD, "staging": STAGING})
TOKEN = "tth_" + "c" * 40


def env(tmp_path: Path, **extra: str) -> dict[str, str]:
    save_config(CONFIG, tmp_path / "config" / "config.toml")
    return tether_env(None, TOKEN, tmp_path, **extra)


@pytest.mark.parametrize(("flag", "context", "variables", "gateway", "origin"), [
    (None, None, {}, PROD.gateway, "context prod"),
    (None, "staging", {}, STAGING.gateway, "--context staging"),
    (None, None, {"TETHER_CONTEXT": "staging"}, STAGING.gateway, "TETHER_CONTEXT"),
    ("https://flag.example", "staging", {}, "https://flag.example", "--gateway"),
    (None, "staging", {"TETHER_GATEWAY": "https://env.example"}, STAGING.gateway,
     "--context staging"),
    (None, None, {"TETHER_GATEWAY": "https://env.example", "TETHER_CONTEXT": "staging"},
     "https://env.example", "TETHER_GATEWAY"),
])
def test_which_gateway_wins(flag: str | None, context: str | None, variables: dict[str, str],
                            gateway: str, origin: str) -> None:
    resolved = resolve_gateway(flag, context=context, env=variables, config=CONFIG)
    assert (resolved.gateway, resolved.origin) == (gateway, origin)


@pytest.mark.parametrize(("context", "variables", "said"), [
    ("nope", {}, "--context names the context 'nope'"),
    (None, {"TETHER_CONTEXT": "nope"}, "TETHER_CONTEXT names the context 'nope'"),
])
def test_an_unknown_context_lists_the_known_ones(context: str | None, variables: dict[str, str],
                                                 said: str) -> None:
    with pytest.raises(TetherError) as caught:
        resolve_gateway(None, context=context, env=variables, config=CONFIG)
    failure = caught.value.failure
    assert failure.code is Code.UNKNOWN_CONTEXT and failure.exit_code == 78
    assert said in failure.message and "the contexts are: prod, staging" in failure.message
    assert "`tether auth status`" in failure.hint


def test_a_current_context_that_is_gone_is_unknown_too(tmp_path: Path) -> None:
    dangling = Config(current_context="old", contexts={"prod": PROD})
    with pytest.raises(TetherError) as caught:
        resolve_gateway(None, env={"TETHER_CONFIG_DIR": str(tmp_path)}, config=dangling)
    assert caught.value.failure.code is Code.UNKNOWN_CONTEXT
    assert "current-context" in caught.value.failure.message
    with pytest.raises(TetherError) as none_at_all:
        resolve_gateway(None, env={}, config=Config())
    assert none_at_all.value.failure.code is Code.NOT_CONFIGURED


def test_switch_changes_the_current_context_only(tmp_path: Path,
                                                 monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("TETHER_CONFIG_DIR", str(tmp_path))
    save_config(CONFIG)
    assert switch_context("staging") == STAGING
    assert load_config() == Config(current_context="staging", contexts=CONFIG.contexts)
    with pytest.raises(TetherError) as caught:
        switch_context("prd")
    assert caught.value.failure.code is Code.UNKNOWN_CONTEXT
    assert load_config().current_context == "staging"


# --- through the CLI -----------------------------------------------------------------------------


def test_auth_status_lists_every_context_and_marks_the_current_one(tmp_path: Path) -> None:
    proc = run_tether("auth", "status", env=env(tmp_path))
    assert proc.returncode == 0, proc.stderr
    lines = proc.stdout.decode().splitlines()
    assert lines[:3] == ["Contexts:", f"* prod     {PROD.gateway}", f"  staging  {STAGING.gateway}"]
    assert f"Gateway:  {PROD.gateway}" in lines and "Context:  prod" in lines
    data = json.loads(run_tether("auth", "status", "-o", "json", "--context", "staging",
                                 env=env(tmp_path)).stdout)
    assert data["gateway"] == STAGING.gateway and data["context"] == "staging"
    assert data["contexts"] == [{"name": "prod", "gateway": PROD.gateway, "current": True},
                                {"name": "staging", "gateway": STAGING.gateway,
                                 "current": False}]
    assert_no_secrets([TOKEN], proc.stdout, proc.stderr)


def test_auth_switch_then_status(tmp_path: Path) -> None:
    variables = env(tmp_path)
    proc = run_tether("auth", "switch", "staging", env=variables)
    assert proc.returncode == 0, proc.stderr
    assert proc.stdout.decode() == f"Switched to context 'staging' ({STAGING.gateway}).\n"
    status = run_tether("auth", "status", env=variables).stdout.decode().splitlines()
    assert status[1:3] == [f"  prod     {PROD.gateway}", f"* staging  {STAGING.gateway}"]
    again = run_tether("-o", "json", "auth", "switch", "prod", env=variables)
    assert json.loads(again.stdout) == {"context": "prod", "gateway": PROD.gateway}


def test_tether_context_selects_and_tether_gateway_is_noted(tmp_path: Path) -> None:
    picked = run_tether("auth", "status", env=env(tmp_path, TETHER_CONTEXT="staging"))
    assert f"Gateway:  {STAGING.gateway}" in picked.stdout.decode()
    switched = run_tether("auth", "switch", "staging",
                          env=env(tmp_path, TETHER_GATEWAY="https://env.example"))
    assert "TETHER_GATEWAY is set, and is used instead of the current context" in (
        switched.stderr.decode())


@pytest.mark.parametrize("args", [["--context", "nope", "logs", "api"],
                                  ["logs", "api", "--context", "nope"],
                                  ["auth", "switch", "nope"]])
def test_an_unknown_context_is_one_record_listing_the_known_ones(args: list[str],
                                                                 tmp_path: Path) -> None:
    proc = run_tether("-o", "json", *args, env=env(tmp_path))
    assert proc.returncode == 78
    (record,) = [json.loads(line) for line in proc.stderr.decode().splitlines()]
    assert record["code"] == "unknown-context" and record["exit_code"] == 78
    assert "prod, staging" in record["message"]
    text = run_tether(*args, env=env(tmp_path))
    assert text.returncode == 78 and "Unknown context" in text.stderr.decode()


def test_login_takes_the_name_to_save_from_the_global_option(tmp_path: Path) -> None:
    proc = run_tether("auth", "login", "--help", env=env(tmp_path))
    assert "--context" not in proc.stdout.decode().partition("Options:")[2]  # it is global
    assert "named by --context" in " ".join(proc.stdout.decode().split())
