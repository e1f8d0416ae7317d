"""Two gateway processes on one PostgreSQL database, behind HAProxy.

Real parts only: a throwaway PostgreSQL cluster (tests/pg.py), HAProxy with
its own config (tests/middleboxes.py), ``tether gateway serve`` as
subprocesses, and the installed CLI or an independent wire client.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import psycopg
import pytest

from tests.cli import Follower, assert_no_secrets, json_events, run_tether, tether_env
from tests.gateway_client import collect, dial, http_request, refusal
from tests.gateways import Deployment, deployment, gateway_cli, gateway_toml
from tests.integration.test_auth import Login
from tests.pg import PostgresCluster
from tether.gateway.oauth import DEVICE_GRANT, REFRESH_GRANT

pytestmark = pytest.mark.timeout(120)


@pytest.fixture
def toml(tmp_path: Path, log_dir: Path, echo_server: int) -> Callable[..., str]:
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)

    def make(**overrides: Any) -> str:
        return gateway_toml(issuer="{issuer}", log_dir=log_dir, work=work, echo=echo_server,
                            **overrides)
    return make


@pytest.fixture
def shared(tmp_path: Path, pg_url: str, toml: Callable[..., str]) -> Iterator[Deployment]:
    with deployment(tmp_path / "deploy", pg_url, toml()) as running:
        yield running


def _post(base: str, path: str, **form: str) -> tuple[int, dict[str, Any]]:
    answer = http_request(base, "POST", path, form=form)
    return answer.status, json.loads(answer.body)


def _device_login(start_on: str, poll_on: str, state: str, directory: Path,
                  role: str = "Deployer") -> dict[str, Any]:
    """A device login started on one gateway, approved from the CLI, polled on another."""
    status, device = _post(start_on, "/v1/auth/device")
    assert status == 200
    gateway_cli("approve", device["user_code"], "--role", role, "--user", "dana",
                state=state, directory=directory)
    status, tokens = _post(poll_on, "/v1/auth/token", grant_type=DEVICE_GRANT,
                           device_code=device["device_code"])
    assert status == 200, tokens
    return tokens


def _opens(base: str, token: str) -> None:
    dial(base, "/v1/logs", token, service="api").close()


def test_a_token_made_through_one_gateway_is_accepted_by_both(
        shared: Deployment, tmp_path: Path) -> None:
    a, b = shared.gateways
    tokens = _device_login(a.url, b.url, shared.state, tmp_path)
    for gateway in (a, b):
        _opens(gateway.url, tokens["access_token"])
    status, rotated = _post(b.url, "/v1/auth/token", grant_type=REFRESH_GRANT,
                            refresh_token=tokens["refresh_token"])
    assert status == 200
    api = gateway_cli("token", "create", "--role", "Viewer", "--name", "ci", state=shared.state,
                      directory=tmp_path).strip()
    assert "ci  Viewer  active" in gateway_cli("token", "list", state=shared.state,
                                               directory=tmp_path)
    gateway_cli("keys", "rotate", state=shared.state, directory=tmp_path)
    status, after = _post(a.url, "/v1/auth/token", grant_type=REFRESH_GRANT,
                          refresh_token=rotated["refresh_token"])
    assert status == 200
    for gateway in (a, b):  # the old key still verifies; the new one is known everywhere
        for token in (rotated["access_token"], after["access_token"], api):
            _opens(gateway.url, token)
    assert "signing" in gateway_cli("keys", "list", state=shared.state, directory=tmp_path)


def _writer(log_dir: Path, per_file: int, kill_at: int, killed: threading.Event) -> None:
    files = {name: (log_dir / f"{name}.log").open("a") for name in ("api-1", "api-2")}
    try:
        for start in range(0, per_file, 100):
            if start == kill_at:
                killed.wait(20)
            for name, handle in files.items():
                handle.write("".join(f"{name} seq {i:05d}\n" for i in range(start, start + 100)))
                handle.flush()
            time.sleep(0.02)
    finally:
        for handle in files.values():
            handle.close()


def _holder(shared: Deployment) -> int:
    """The index of the gateway holding the one open session (bounded wait)."""
    for _ in range(200):
        for i, gateway in enumerate(shared.gateways):
            body = json.loads(http_request(gateway.url, "GET", "/v1/health").body)
            if body["sessions"] == 1:
                return i
        time.sleep(0.05)
    raise AssertionError("no gateway holds the session")


def test_logs_follow_through_haproxy_survives_sigkill_of_its_gateway(
        shared: Deployment, tmp_path: Path, log_dir: Path,
        follower: Callable[..., Follower]) -> None:
    token = gateway_cli("token", "create", "--role", "Viewer", "--name", "follow",
                        state=shared.state, directory=tmp_path).strip()
    run = follower("api", "-f", "-o", "json", env=tether_env(shared.url, token, tmp_path))
    run.wait_for(6, timeout=20)
    per_file, killed = 2000, threading.Event()
    writer = threading.Thread(target=_writer, args=(log_dir, per_file, per_file // 2, killed))
    writer.start()
    try:
        run.wait_for(6 + per_file // 2, timeout=30)  # half of it streamed, then the kill
        shared.gateways[_holder(shared)].kill()
    finally:
        killed.set()
        writer.join(60)
    total = 6 + 2 * per_file
    records = [json.loads(line) for line in run.wait_for(total, timeout=40)]
    time.sleep(0.5)  # anything more would be a duplicate
    assert len(run.lines) == total
    assert run.interrupt() == 130
    for name in ("api-1", "api-2"):
        source = (log_dir / f"{name}.log").read_text().splitlines()
        got = [r["message"] for r in records if r["instance"] == name]
        assert got[3:] == source[3:]  # every record once, in order (first three: timestamped)
    assert any(e["event"] == "reconnected" for e in run.events())
    assert_no_secrets([token], bytes(run.out), bytes(run.err))


def test_revoking_an_api_token_ends_its_session_on_the_other_gateway(
        shared: Deployment, tmp_path: Path, follower: Callable[..., Follower]) -> None:
    a, b = shared.gateways
    token = gateway_cli("token", "create", "--role", "Viewer", "--name", "doomed",
                        state=shared.state, directory=tmp_path).strip()
    run = follower("api", "-f", "-o", "json", env=tether_env(b.url, token, tmp_path))
    run.wait_for(6, timeout=20)
    gateway_cli("token", "revoke", "doomed", state=shared.state, directory=tmp_path)
    assert run.wait(2.0) == 77  # pushed by NOTIFY: no poll interval to wait for
    final = run.events()[-1]
    assert final["code"] == "unauthorized" and "revoked" in json.dumps(final)
    assert refusal(a.url, "/v1/logs", token, service="api").status == 401


def test_a_reused_refresh_token_ends_its_familys_sessions_everywhere(
        shared: Deployment, tmp_path: Path) -> None:
    a, b = shared.gateways
    tokens = _device_login(a.url, a.url, shared.state, tmp_path)
    ws = dial(b.url, "/v1/logs", tokens["access_token"], service="api", follow=1)
    for _ in range(2):  # the second use of the same refresh token is a reuse
        _post(a.url, "/v1/auth/token", grant_type=REFRESH_GRANT,
              refresh_token=tokens["refresh_token"])
    closed = collect(ws, timeout=2.0)
    assert closed.code == 1008 and closed.reason.startswith("unauthorized")
    assert refusal(a.url, "/v1/logs", tokens["access_token"], service="api").status == 401


def test_revoking_a_users_logins_from_the_cli_ends_their_sessions(
        shared: Deployment, tmp_path: Path) -> None:
    a, b = shared.gateways
    tokens = _device_login(a.url, b.url, shared.state, tmp_path)
    ws = dial(b.url, "/v1/logs", tokens["access_token"], service="api", follow=1)
    assert "dana  Deployer  active" in gateway_cli("logins", "list", state=shared.state,
                                                   directory=tmp_path)
    gateway_cli("logins", "revoke", "dana", state=shared.state, directory=tmp_path)
    closed = collect(ws, timeout=2.0)
    assert closed.code == 1008 and "login was revoked" in closed.reason
    status, body = _post(a.url, "/v1/auth/token", grant_type=REFRESH_GRANT,
                         refresh_token=tokens["refresh_token"])
    assert status == 400 and body["error"] == "invalid_grant"


def test_the_rate_limit_holds_across_both_gateways(
        tmp_path: Path, pg_url: str, toml: Callable[..., str]) -> None:
    with deployment(tmp_path / "deploy", pg_url, toml(rate=0.001, burst=3)) as running:
        a, b = running.gateways
        token = gateway_cli("token", "create", "--role", "Viewer", state=pg_url,
                            directory=tmp_path).strip()
        for gateway in (a, b, a):
            _opens(gateway.url, token)
        for gateway in (b, a):
            refused = refusal(gateway.url, "/v1/logs", token, service="api")
            assert refused.status == 429 and json.loads(refused.body)["code"] == "rate-limited"
            assert int(refused.headers["retry-after"]) >= 1
        other = gateway_cli("token", "create", "--role", "Viewer", state=pg_url,
                            directory=tmp_path).strip()
        _opens(b.url, other)  # one budget per credential


def test_device_login_through_the_balancer(shared: Deployment, tmp_path: Path) -> None:
    env = tether_env(None, None, tmp_path)
    login = Login(env, "-o", "json", "auth", "login", shared.url)
    gateway_cli("approve", login.user_code(), "--role", "Viewer", "--user", "erin",
                state=shared.state, directory=tmp_path)
    code, _, err = login.finish()
    assert code == 0, err
    for _ in range(2):  # round robin: each gateway answers one
        done = run_tether("logs", "api", env=env)
        assert done.returncode == 0, done.stderr
        assert len(done.stdout.splitlines()) == 6


def _wait_until_admitted(base: str, token: str) -> None:
    """Dial until a session opens: at most 40 tries, 0.25 s apart."""
    for _ in range(40):
        try:
            _opens(base, token)
            return
        except Exception:  # a 503 while the database comes back
            time.sleep(0.25)
    raise AssertionError("the gateway did not admit a session after the database came back")


def test_database_lost_mid_run_is_a_clear_503_and_service_resumes(
        shared: Deployment, tmp_path: Path, postgres: PostgresCluster,
        follower: Callable[..., Follower]) -> None:
    token = gateway_cli("token", "create", "--role", "Viewer", "--name", "outage",
                        state=shared.state, directory=tmp_path).strip()
    tokens = _device_login(shared.url, shared.url, shared.state, tmp_path, role="Viewer")
    live = follower("api", "-f", "-o", "json",
                    env=tether_env(shared.url, tokens["access_token"], tmp_path))
    live.wait_for(6, timeout=20)
    postgres.stop()
    try:
        for gateway in shared.gateways:
            refused = refusal(gateway.url, "/v1/logs", token, service="api", open_timeout=10)
            assert refused.status == 503
            problem = json.loads(refused.body)
            assert problem["code"] == "state-unavailable" and refused.headers["retry-after"]
            assert "postgres" not in refused.body.decode().lower()
        done = run_tether("-o", "json", "--retry-for", "1s", "logs", "api",
                          env=tether_env(shared.url, token, tmp_path), timeout=30)
        assert done.returncode == 69
        assert json_events(done.stderr)[-1]["code"] == "state-unavailable"
        status, body = _post(shared.url, "/v1/auth/device")
        assert status == 503 and body["code"] == "state-unavailable"
        assert live.proc.poll() is None  # a session already open does not need the database
    finally:
        postgres.start()
    _wait_until_admitted(shared.url, token)
    for gateway in shared.gateways:
        _wait_until_admitted(gateway.url, token)
    assert live.proc.poll() is None
    assert live.interrupt() == 130


def test_a_slow_database_is_a_503_not_a_stall(shared: Deployment, tmp_path: Path) -> None:
    token = gateway_cli("token", "create", "--role", "Viewer", "--name", "slow",
                        state=shared.state, directory=tmp_path).strip()
    with psycopg.connect(shared.state) as conn:  # a transaction holding every bucket
        conn.execute("LOCK TABLE rate_buckets IN ACCESS EXCLUSIVE MODE")
        refused = refusal(shared.url, "/v1/logs", token, service="api", open_timeout=10)
        assert refused.status == 503 and json.loads(refused.body)["code"] == "state-unavailable"
        conn.rollback()
    _opens(shared.url, token)


def test_the_audit_table_says_who_opened_what_from_where_and_how_it_ended(
        shared: Deployment, tmp_path: Path) -> None:
    a, _ = shared.gateways
    token = gateway_cli("token", "create", "--role", "Deployer", "--name", "auditor",
                        state=shared.state, directory=tmp_path).strip()
    ws = dial(shared.url, "/v1/shell", token, service="api", tty=0, command=["true"],
              headers={"X-Forwarded-For": "203.0.113.7"})
    collect(ws)
    ws = dial(a.url, "/v1/logs", token, service="api")
    collect(ws)
    rows: list[Any] = []
    for _ in range(40):  # written in the background
        with psycopg.connect(shared.state) as conn:
            rows = conn.execute("SELECT sub, endpoint, service, peer, forwarded_for, close_code "
                                "FROM audit WHERE ended IS NOT NULL ORDER BY opened").fetchall()
        if len(rows) == 2:
            break
        time.sleep(0.1)
    assert [(r[0], r[1], r[2], r[5]) for r in rows] == [
        ("token:auditor", "shell", "api", 1000), ("token:auditor", "logs", "api", 1000)]
    assert rows[0][3].startswith("127.0.0.1:") and "203.0.113.7" in rows[0][4]
    listing = gateway_cli("audit", state=shared.state, directory=tmp_path)
    assert "token:auditor (Deployer)  shell api" in listing and "203.0.113.7" in listing
    assert token not in listing
