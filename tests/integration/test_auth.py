"""`tether auth` against a real gateway, as subprocesses, with a real file keyring in tmp.

The keyring is keyrings.alt's PlaintextKeyring, chosen explicitly with
PYTHON_KEYRING_BACKEND and kept under XDG_DATA_HOME in the test's tmp_path.
"""

from __future__ import annotations

import json
import os
import queue
import re
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any

import pytest

from tests.hostile import HostileServer, problem, respond
from tether.auth.contexts import load_config
from tether.auth.credentials import (
    EnvCredential,
    KeyringCredential,
    read_claims,
    resolve_credential,
)
from tether.auth.oauth import Endpoints
from tether.auth.store import KeyringStore, StoredTokens
from tether.client.dial import Connection, DialOptions, dial
from tether.client.http import HttpOptions
from tether.client.supervisor import Attempt, Supervisor
from tether.errors import Code, TetherError
from tether.gateway.runner import RunningGateway

PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"
DIAL = DialOptions(connect_timeout=3.0, keepalive_interval=0, keepalive_timeout=0)
USER_CODE = re.compile(r"\b([A-Z]{4}-[A-Z]{4})\b")


@pytest.fixture
def cli_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """The environment of the CLI subprocesses; this process gets the same keyring and config."""
    values = {"PYTHON_KEYRING_BACKEND": PLAINTEXT,
              "XDG_DATA_HOME": str(tmp_path / "data"),
              "XDG_CONFIG_HOME": str(tmp_path / "xdg-config"),
              "TETHER_CONFIG_DIR": str(tmp_path / "config"),
              "TETHER_STATE_DIR": str(tmp_path / "state")}
    for key in [k for k in os.environ if k.startswith("TETHER_")]:
        monkeypatch.delenv(key)
    for key, value in values.items():
        monkeypatch.setenv(key, value)
    env = dict(os.environ)
    env.update(NO_COLOR="1", COLUMNS="200")
    return env


@pytest.fixture
def fast_gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    """A gateway whose device flow polls every 0.2 s."""
    return make_gateway(device_interval=0.2, device_expires=30)


def tether(env: dict[str, str], *args: str, timeout: float = 20
           ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "tether", *args], env=env, capture_output=True,
                          text=True, timeout=timeout, check=False)


class Login:
    """``tether auth login`` running as a subprocess; its stderr read line by line."""

    def __init__(self, env: dict[str, str], *args: str) -> None:
        self.proc = subprocess.Popen([sys.executable, "-m", "tether", *args], env=env,
                                     stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
        self.lines: queue.Queue[str] = queue.Queue()
        self.err: list[str] = []
        self._reader = threading.Thread(target=self._read, args=(self.proc.stderr,), daemon=True)
        self._reader.start()

    def _read(self, stream: IO[str]) -> None:
        for line in stream:
            self.lines.put(line)

    def user_code(self, timeout: float = 10) -> str:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            try:
                line = self.lines.get(timeout=max(0.01, deadline - time.monotonic()))
            except queue.Empty:
                break
            self.err.append(line)
            if line.startswith("{"):
                event = json.loads(line)
                if event.get("event") == "device-code":
                    return str(event["user_code"])
            elif match := USER_CODE.search(line):
                return match.group(1)
        self.proc.kill()
        raise AssertionError(f"no user code within {timeout} s: {self.err!r}")

    def finish(self, timeout: float = 15) -> tuple[int, str, str]:
        assert self.proc.stdout is not None
        out = self.proc.stdout.read()
        code = self.proc.wait(timeout)
        self._reader.join(timeout)
        while not self.lines.empty():
            self.err.append(self.lines.get())
        return code, out, "".join(self.err)


def approve(gateway: RunningGateway, env: dict[str, str], code: str, role: str = "Deployer",
            user: str = "alice") -> None:
    done = tether(env, "gateway", "approve", code, "--role", role, "--user", user,
                  "--state-dir", str(gateway.gateway.state.directory))
    assert done.returncode == 0, done.stderr


def assert_secret_free(texts: list[str], *secrets: str | None) -> None:
    """No token, nor the signature part of a JWT, in any of ``texts``."""
    pieces = {s for s in secrets if s}
    pieces |= {s.rsplit(".", 1)[1] for s in secrets if s and s.count(".") == 2}
    for text in texts:
        for piece in pieces:
            assert piece not in text


def last_json(text: str) -> dict[str, Any]:
    lines = [line for line in text.splitlines() if line.startswith("{")]
    assert lines, text
    record: dict[str, Any] = json.loads(lines[-1])
    return record


@pytest.fixture
def logged_in(fast_gateway: RunningGateway, cli_env: dict[str, str]
              ) -> Iterator[tuple[RunningGateway, StoredTokens, list[str]]]:
    """Logged in to ``fast_gateway`` as alice (Deployer) with `tether auth login URL`."""
    login = Login(cli_env, "auth", "login", fast_gateway.url)
    approve(fast_gateway, cli_env, login.user_code())
    code, out, err = login.finish()
    assert code == 0, err
    tokens = KeyringStore().load(fast_gateway.url)
    assert tokens is not None
    yield fast_gateway, tokens, [out, err]


# --- login ---------------------------------------------------------------------------------


def test_login_by_device_code_saves_to_keyring_and_config(
        logged_in: tuple[RunningGateway, StoredTokens, list[str]]) -> None:
    gateway, tokens, outputs = logged_in
    claims = read_claims(tokens.access_token)
    assert claims is not None
    assert (claims.subject, claims.role) == ("alice", "Deployer")
    assert tokens.refresh_token and tokens.refresh_token.startswith("tthr_")
    config = load_config()
    assert config.current is not None and config.current.gateway == gateway.url
    config_text = (Path(os.environ["TETHER_CONFIG_DIR"]) / "config.toml").read_text()
    assert_secret_free([config_text, *outputs], tokens.access_token, tokens.refresh_token)
    assert "/v1/auth/verify" in outputs[1] and "Logged in" in outputs[1]


def test_status_token_logout(logged_in: tuple[RunningGateway, StoredTokens, list[str]],
                             cli_env: dict[str, str]) -> None:
    gateway, tokens, _ = logged_in
    text = tether(cli_env, "auth", "status")
    assert text.returncode == 0, text.stderr
    assert re.search(r"Role:\s+Deployer", text.stdout)
    assert re.search(r"Subject:\s+alice", text.stdout)
    assert re.search(r"Expires:\s+in \d+ min \(\d{4}-\d\d-\d\d", text.stdout)
    assert "keyring" in text.stdout
    as_json = tether(cli_env, "-o", "json", "auth", "status")
    status = json.loads(as_json.stdout)
    assert status["gateway"] == gateway.url
    assert (status["source"], status["subject"], status["role"]) == ("keyring", "alice",
                                                                      "Deployer")
    assert status["refreshable"] is True and 0 < status["expires_in"] <= 15 * 60
    printed = tether(cli_env, "auth", "token")
    assert printed.returncode == 0
    assert printed.stdout == tokens.access_token + "\n"
    assert_secret_free([text.stdout, text.stderr, as_json.stdout, as_json.stderr,
                        printed.stderr], tokens.access_token, tokens.refresh_token)

    out = tether(cli_env, "auth", "logout")
    assert out.returncode == 0 and "Logged out" in out.stderr
    assert KeyringStore().load(gateway.url) is None
    after = tether(cli_env, "-o", "json", "auth", "status")
    assert after.returncode == 77
    assert last_json(after.stderr)["code"] == "no-credentials"
    again = tether(cli_env, "auth", "logout")
    assert again.returncode == 0 and "nothing to remove" in again.stderr


def test_two_gateways_logged_in_at_once(
        logged_in: tuple[RunningGateway, StoredTokens, list[str]],
        make_gateway: Callable[..., RunningGateway], cli_env: dict[str, str]) -> None:
    first, _, _ = logged_in
    second = make_gateway(device_interval=0.2)
    login = Login(cli_env, "-o", "json", "auth", "login", "--gateway", second.url)
    approve(second, cli_env, login.user_code(), role="Viewer", user="bob")
    code, out, err = login.finish()
    assert code == 0, err
    assert json.loads(out)["role"] == "Viewer"
    config = load_config()
    assert config.current is not None and config.current.gateway == first.url  # unchanged
    assert {c.gateway for c in config.contexts.values()} == {first.url, second.url}
    mine = json.loads(tether(cli_env, "-o", "json", "auth", "status").stdout)
    theirs = json.loads(tether(cli_env, "-o", "json", "--gateway", second.url, "auth",
                               "status").stdout)
    assert (mine["subject"], theirs["subject"]) == ("alice", "bob")


def test_login_denied_saves_nothing(fast_gateway: RunningGateway,
                                    cli_env: dict[str, str]) -> None:
    login = Login(cli_env, "-v", "-o", "json", "auth", "login", fast_gateway.url)
    assert fast_gateway.gateway.oauth.decide(login.user_code(), approve=False)
    code, out, err = login.finish()
    assert code == 77
    record = last_json(err)
    assert record["code"] == "permission-denied" and record["title"] == "Login denied"
    assert out == ""
    assert KeyringStore().load(fast_gateway.url) is None
    assert not (Path(os.environ["TETHER_CONFIG_DIR"]) / "config.toml").exists()


def test_login_code_expiry(make_gateway: Callable[..., RunningGateway],
                           cli_env: dict[str, str]) -> None:
    gateway = make_gateway(device_interval=0.2, device_expires=1)
    started = time.monotonic()
    login = Login(cli_env, "-o", "json", "auth", "login", gateway.url)
    login.user_code()
    code, _, err = login.finish()
    assert code == 77
    assert time.monotonic() - started < 10
    record = last_json(err)
    assert record["code"] == "refresh-failed" and "expired" in record["message"]
    assert KeyringStore().load(gateway.url) is None


def test_ctrl_c_cancels_login(fast_gateway: RunningGateway, cli_env: dict[str, str]) -> None:
    login = Login(cli_env, "auth", "login", fast_gateway.url)
    login.user_code()
    login.proc.send_signal(signal.SIGINT)
    code, _, err = login.finish()
    assert code == 130
    assert "nothing was saved" in err
    assert KeyringStore().load(fast_gateway.url) is None
    assert not (Path(os.environ["TETHER_CONFIG_DIR"]) / "config.toml").exists()


class _Stop(Exception):
    pass


def test_slow_down_adds_five_seconds(make_gateway: Callable[..., RunningGateway]) -> None:
    """Polled too soon, the gateway answers slow_down; the next wait is 5 s longer."""
    from tether.auth.oauth import poll_device_token, start_device_flow

    gateway = make_gateway(device_interval=0.5, device_expires=30)
    endpoints, http = Endpoints.for_gateway(gateway.url), HttpOptions(timeout=5)
    device = start_device_flow(endpoints, http)
    waits: list[float] = []

    def sleep(seconds: float) -> None:
        waits.append(seconds)
        if len(waits) == 3:
            raise _Stop
        # no real wait: the second poll comes too soon on purpose

    with pytest.raises(_Stop):
        poll_device_token(endpoints, device, http, sleep=sleep)
    assert waits[:2] == [0.5, 0.5]
    assert waits[2] == pytest.approx(5.5)


# --- configuration and keyring failures -------------------------------------------------------


def test_not_configured_and_invalid_url(cli_env: dict[str, str]) -> None:
    none = tether(cli_env, "-o", "json", "auth", "status")
    assert none.returncode == 78 and last_json(none.stderr)["code"] == "not-configured"
    bad = tether(cli_env, "-o", "json", "auth", "login", "gopher://x.test")
    assert bad.returncode == 78 and last_json(bad.stderr)["code"] == "invalid-url"
    leak = tether(cli_env, "-o", "json", "auth", "login", "https://u:pa55word@x.test")
    assert leak.returncode == 78 and "pa55word" not in leak.stderr + leak.stdout


def test_keyring_unavailable(fast_gateway: RunningGateway, cli_env: dict[str, str]) -> None:
    env = {**cli_env, "PYTHON_KEYRING_BACKEND": "keyring.backends.fail.Keyring",
           "TETHER_GATEWAY": fast_gateway.url}
    status = tether(env, "-o", "json", "auth", "status")
    assert status.returncode == 78
    record = last_json(status.stderr)
    assert record["code"] == "keyring-unavailable" and "TETHER_TOKEN" in record["hint"]
    login = tether(env, "-o", "json", "auth", "login")
    assert login.returncode == 78
    assert last_json(login.stderr)["code"] == "keyring-unavailable"
    assert fast_gateway.gateway.oauth.pending() == []  # failed before asking for a code
    text = tether(env, "auth", "status")
    assert text.returncode == 78 and "No keyring available" in text.stderr


# --- tokens from the environment ----------------------------------------------------------------


def test_env_api_token_is_never_refreshed_or_stored(fast_gateway: RunningGateway,
                                                    cli_env: dict[str, str]) -> None:
    api_token = fast_gateway.create_api_token("Viewer", "ci")
    env = {**cli_env, "TETHER_TOKEN": api_token, "TETHER_GATEWAY": fast_gateway.url}
    status = tether(env, "-o", "json", "auth", "status")
    assert status.returncode == 0, status.stderr
    info = json.loads(status.stdout)
    assert (info["source"], info["kind"], info["refreshable"]) == ("environment", "api-token",
                                                                  False)
    text = tether(env, "-v", "auth", "status")
    assert "TETHER_TOKEN" in text.stdout
    assert_secret_free([status.stdout, status.stderr, text.stdout, text.stderr], api_token)
    assert tether(env, "auth", "token").stdout == api_token + "\n"

    rejected = resolve_credential(fast_gateway.url, env={"TETHER_TOKEN": "tth_" + "x" * 40})
    assert isinstance(rejected, EnvCredential) and rejected.refreshable is False

    def open_logs(attempt: Attempt) -> Connection:
        return dial(fast_gateway.url, "logs", {"service": "api"}, rejected, DIAL)

    with pytest.raises(TetherError) as excinfo:
        Supervisor(open_logs, lambda conn, attempt: None, credential=rejected).run()
    assert excinfo.value.failure.code is Code.UNAUTHORIZED
    assert fast_gateway.dial_count.get("/v1/logs") == 1  # not refreshed, not retried
    assert not (Path(os.environ["XDG_DATA_HOME"]) / "python_keyring").exists()


# --- refresh ------------------------------------------------------------------------------------


def _keyring_credential(gateway: RunningGateway, tokens: StoredTokens) -> KeyringCredential:
    store = KeyringStore()
    store.save(gateway.url, tokens)
    cred = resolve_credential(gateway.url, env=dict(os.environ), store=store)
    assert isinstance(cred, KeyringCredential)
    return cred


def _device_login(gateway: RunningGateway, role: str = "Deployer") -> StoredTokens:
    from tether.auth.oauth import poll_device_token, start_device_flow

    endpoints, http = Endpoints.for_gateway(gateway.url), HttpOptions(timeout=5)
    device = start_device_flow(endpoints, http)
    assert gateway.gateway.oauth.decide(device.user_code, approve=True, role=role, sub="carol")
    response = poll_device_token(endpoints, device, http)
    return StoredTokens(response.access_token, response.refresh_token)


def test_expired_token_is_refreshed_before_dialing(make_gateway: Callable[..., RunningGateway],
                                                   cli_env: dict[str, str]) -> None:
    gateway = make_gateway(device_interval=0.1, access_ttl=1)
    first = _device_login(gateway)
    cred = _keyring_credential(gateway, first)
    time.sleep(1.1)
    gateway.gateway.oauth.access_ttl = 60.0  # what refresh mints outlives a slow machine
    header = cred.authorization()
    assert header != f"Bearer {first.access_token}"
    stored = KeyringStore().load(gateway.url)
    assert stored is not None and header == f"Bearer {stored.access_token}"
    assert stored.refresh_token != first.refresh_token
    with dial(gateway.url, "logs", {"service": "api", "follow": "0"}, cred, DIAL) as conn:
        assert conn.recv() is not None
    cred.refresh()  # after a 1008 the transport asks; a new pair arrives
    newer = KeyringStore().load(gateway.url)
    assert newer is not None and newer.access_token != stored.access_token


def test_auth_token_refreshes_an_expired_token(make_gateway: Callable[..., RunningGateway],
                                               cli_env: dict[str, str]) -> None:
    gateway = make_gateway(device_interval=0.1, access_ttl=1)
    first = _device_login(gateway)
    KeyringStore().save(gateway.url, first)
    time.sleep(1.1)
    env = {**cli_env, "TETHER_GATEWAY": gateway.url}
    printed = tether(env, "-v", "auth", "token")
    assert printed.returncode == 0, printed.stderr
    stored = KeyringStore().load(gateway.url)
    assert stored is not None and stored.access_token != first.access_token
    assert printed.stdout == stored.access_token + "\n"
    assert_secret_free([printed.stderr], stored.access_token, stored.refresh_token,
                       first.refresh_token)


def test_session_expiry_1008_is_refreshed_once_and_resumes(
        make_gateway: Callable[..., RunningGateway], cli_env: dict[str, str]) -> None:
    gateway = make_gateway(device_interval=0.1)
    cred = _keyring_credential(gateway, _device_login(gateway))
    before = cred.authorization()
    seen: list[int] = []

    def open_logs(attempt: Attempt) -> Connection:
        return dial(gateway.url, "logs", {"service": "api", "follow": "1"}, cred, DIAL)

    def handler(conn: Connection, attempt: Attempt) -> str:
        seen.append(attempt.number)
        assert conn.recv() is not None
        if attempt.number == 1:
            gateway.expire_sessions()
            deadline = time.monotonic() + 10
            while time.monotonic() < deadline:
                conn.recv()  # raises the classified 1008 once the close arrives
            raise AssertionError("the session was not closed")
        return "resumed"

    assert Supervisor(open_logs, handler, credential=cred).run() == "resumed"
    assert seen == [1, 2]
    assert cred.authorization() != before
    assert refresh_tokens_issued(gateway) == 2  # the login's, and one refresh


def refresh_tokens_issued(gateway: RunningGateway) -> int:
    with gateway.gateway.state.transaction() as db:
        count: int = db.execute("SELECT COUNT(*) FROM refresh_tokens").fetchone()[0]
    return count


def test_invalid_grant_is_refresh_failed_and_keeps_the_entry(
        make_gateway: Callable[..., RunningGateway], cli_env: dict[str, str]) -> None:
    gateway = make_gateway(device_interval=0.1)
    tokens = _device_login(gateway)
    assert tokens.refresh_token is not None
    gateway.gateway.oauth.refresh(tokens.refresh_token)  # spent elsewhere: reuse revokes
    cred = _keyring_credential(gateway, tokens)
    with pytest.raises(TetherError) as excinfo:
        cred.refresh()
    failure = excinfo.value.failure
    assert failure.code is Code.REFRESH_FAILED and failure.exit_code == 77
    assert "tether auth login" in failure.hint
    assert KeyringStore().load(gateway.url) == tokens  # nothing deleted or rewritten
    assert_secret_free([str(excinfo.value), failure.hint, json.dumps(failure.as_dict()),
                        repr(cred)], tokens.access_token, tokens.refresh_token)
    with pytest.raises(TetherError) as again:  # not sent a second time
        cred.refresh()
    assert again.value.failure.code is Code.REFRESH_FAILED


# --- the OAuth client against misbehaving servers ------------------------------------------------


def _json(status: int, body: object, headers: list[tuple[str, str]] | None = None) -> Any:
    return respond(status, [("Content-Type", "application/json"), *(headers or [])],
                   json.dumps(body).encode())


@pytest.mark.parametrize(("behaviour", "code"), [
    (lambda: _json(302, {}, [("Location", "http://127.0.0.1:9/steal")]), Code.UNEXPECTED_STATUS),
    (lambda: respond(200, body=b"<html>login</html>"), Code.PROTOCOL_ERROR),
    (lambda: problem(503, "gateway-unavailable", "maintenance"), Code.GATEWAY_UNAVAILABLE),
    # not the gateway's problem+json: a proxy in front of the token endpoint answered
    (lambda: _json(503, {}), Code.GATEWAY_UNREACHABLE),
    (lambda: respond(502, [("Server", "nginx")], b"<html>502 Bad Gateway</html>"),
     Code.GATEWAY_UNREACHABLE),
    (lambda: _json(429, {}), Code.RATE_LIMITED),
    (lambda: _json(200, {"access_token": "eyJ.a b.c", "refresh_token": "r"}),
     Code.PROTOCOL_ERROR),
    (lambda: _json(400, {"error": "invalid_grant",
                         "error_description": "\x1b[2Jgone: tthr_secret_value"}),
     Code.REFRESH_FAILED),
])
def test_refresh_grant_against_odd_answers(behaviour: Callable[[], Any], code: Code) -> None:
    from tether.auth.oauth import refresh_grant

    with HostileServer(behaviour()) as server:
        with pytest.raises(TetherError) as excinfo:
            refresh_grant(Endpoints.for_gateway(server.url), "tthr_secret_value",
                          HttpOptions(timeout=3))
        assert server.dials == 1  # no redirect followed, no retry
    failure = excinfo.value.failure
    assert failure.code is code
    assert "\x1b" not in failure.message
    assert_secret_free([str(excinfo.value), json.dumps(failure.as_dict())], "tthr_secret_value")


def test_gateway_down_during_refresh(make_gateway: Callable[..., RunningGateway],
                                     cli_env: dict[str, str]) -> None:
    gateway = make_gateway(device_interval=0.1, access_ttl=4)
    tokens = _device_login(gateway)
    cred = _keyring_credential(gateway, tokens)
    gateway.stop()
    time.sleep(2.1)  # within the refresh margin (half of 4 s), not expired
    assert cred.authorization() == f"Bearer {tokens.access_token}"  # still valid: used
    with pytest.raises(TetherError) as excinfo:
        cred.refresh()
    assert excinfo.value.failure.code is Code.CONNECTION_REFUSED
    assert excinfo.value.failure.retryable
    assert KeyringStore().load(gateway.url) == tokens


def test_login_over_tls_with_ca_cert(tls_ca: Any, tls_ca_file: Path,
                                     make_gateway: Callable[..., RunningGateway],
                                     cli_env: dict[str, str]) -> None:
    import ssl

    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    gateway = make_gateway(ssl_context=context, device_interval=0.2)
    assert gateway.url.startswith("https://")
    untrusted = tether(cli_env, "-o", "json", "auth", "login", gateway.url)
    assert untrusted.returncode == 78
    assert last_json(untrusted.stderr)["code"] == "tls-error"
    login = Login(cli_env, "--ca-cert", str(tls_ca_file), "auth", "login", gateway.url)
    approve(gateway, cli_env, login.user_code())
    code, _, err = login.finish()
    assert code == 0, err
    assert KeyringStore().load(gateway.url) is not None


def test_login_rides_out_a_gateway_restart(fast_gateway: RunningGateway,
                                           cli_env: dict[str, str]) -> None:
    login = Login(cli_env, "auth", "login", fast_gateway.url)
    user_code = login.user_code()
    inner, port = fast_gateway.gateway, fast_gateway.port
    fast_gateway.call(inner.stop())
    time.sleep(0.5)  # two or three polls meet a refused connection
    fast_gateway.call(inner.start(inner.host, port))
    approve(fast_gateway, cli_env, user_code)
    code, _, err = login.finish()
    assert code == 0, err
    assert KeyringStore().load(fast_gateway.url) is not None
