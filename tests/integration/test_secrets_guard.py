"""The secrets guard (tests/secrets_guard.py) is active and catches a planted leak."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests import secrets_guard
from tests.cli import run_tether, tether_env
from tether.gateway.runner import RunningGateway

pytest_plugins = ["pytester"]


def test_the_guard_is_registered(request: pytest.FixtureRequest) -> None:
    assert request.config.pluginmanager.get_plugin(secrets_guard.PLUGIN_NAME) is secrets_guard


def test_a_token_printed_by_a_subprocess_is_caught(gateway: RunningGateway,
                                                   tmp_path: Path) -> None:
    token = gateway.create_api_token("Viewer", "planted")
    done = run_tether("auth", "token", env=tether_env(gateway.url, token, tmp_path))
    assert done.returncode == 0 and done.stdout.strip() == token.encode()  # the planted leak
    found = secrets_guard.leaks()
    assert found == ["a secret (API token) appeared in the output of a tether subprocess"]
    assert all(token not in line for line in found)
    secrets_guard.forget_outputs()  # the leak was planted: this test itself must pass
    assert secrets_guard.leaks() == []


def test_minted_jwts_and_their_signatures_are_secrets(gateway: RunningGateway) -> None:
    token = gateway.mint_token("Viewer", ttl=60)
    signature = token.rsplit(".", 1)[1]
    assert secrets_guard.find_leaks({token: "JWT"}, [("a log", f"sig={signature}")]) == [
        "a secret (JWT) appeared in a log"]
    assert secrets_guard.find_leaks({token: "JWT"}, [("a log", "nothing here")]) == []
    secret = gateway.gateway.state.secret.decode()
    assert secrets_guard.find_leaks(dict(secrets_guard._state.secrets),
                                    [("x", f"{token} {secret}")]) == [
        "a secret (JWT) appeared in x", "a secret (signing secret) appeared in x"]


def test_a_leak_fails_the_test_without_showing_the_secret(
        pytester: pytest.Pytester, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHONPATH", str(Path(__file__).resolve().parents[2]))
    pytester.makepyfile(test_leaky="""
        import logging
        from tests import secrets_guard

        def test_prints():
            secrets_guard.register_secret("tth_planted_secret_value_0123456789", "API token")
            print("here it is: tth_planted_secret_value_0123456789")

        def test_logs():
            secrets_guard.register_secret("tth_other_planted_secret_9876543210", "API token")
            logging.getLogger("tether.gateway").info("tth_other_planted_secret_9876543210")

        def test_clean():
            secrets_guard.register_secret("tth_never_shown_0123456789abcdef", "API token")
            print("nothing to see")
    """)
    result = pytester.runpytest_subprocess("-p", "tests.secrets_guard", "-p", "no:cacheprovider",
                                           timeout=60)
    result.assert_outcomes(passed=1, failed=2)
    text = result.stdout.str()
    assert "secrets guard: a secret (API token) appeared in the captured stdout call" in text
    assert "a secret (API token) appeared in a log record" in text
    assert "tth_planted_secret_value_0123456789" not in text
    assert "tth_other_planted_secret_9876543210" not in text
