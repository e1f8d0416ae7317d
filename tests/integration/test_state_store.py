"""The state stores: migrations, atomic grants across gateways, events, and the event loop.

PostgreSQL tests use a throwaway cluster (tests/pg.py); SQLite ones a
temporary directory. Two stores on one database stand for two gateways.
"""

from __future__ import annotations

import dataclasses
import json
import sqlite3
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli import Follower, tether_env
from tests.gateway_client import collect, dial, http_request, refusal
from tether.gateway.config import ConfigError, GatewayConfig
from tether.gateway.oauth import GrantError, OAuth
from tether.gateway.runner import RunningGateway, start_in_thread
from tether.gateway.tokens import TokenService
from tether.store import Store, open_store
from tether.store.events import EventWatcher
from tether.store.migrations import LATEST

pytestmark = pytest.mark.timeout(60)


def _oauth(store: Store) -> OAuth:
    return OAuth(TokenService(store, issuer="https://gw.test"), access_ttl=60, refresh_ttl=600,
                 device_interval=0, device_expires=60)


def _together(calls: list[Callable[[], Any]]) -> list[Any]:
    """Run ``calls`` in threads released at once; each one's result or exception."""
    barrier = threading.Barrier(len(calls))
    out: list[Any] = [None] * len(calls)

    def run(i: int) -> None:
        barrier.wait(10)
        try:
            out[i] = calls[i]()
        except Exception as exc:
            out[i] = exc

    threads = [threading.Thread(target=run, args=(i,)) for i in range(len(calls))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(30)
    return out


def test_gateways_starting_at_once_migrate_once(pg_url: str) -> None:
    stores = _together([lambda: open_store(pg_url, timeout=5)] * 6)
    try:
        assert all(isinstance(s, Store) for s in stores), stores
        with stores[0].read() as db:
            versions = db.execute("SELECT version FROM schema_migrations").fetchall()
            keys = db.execute("SELECT COUNT(*) FROM signing_keys").fetchone()[0]
        assert sorted(v[0] for v in versions) == list(range(1, LATEST + 1))
        assert keys == 1
    finally:
        for store in stores:
            if isinstance(store, Store):
                store.close()


def _device_tokens(oauth: OAuth) -> tuple[dict[str, Any], str]:
    device = oauth.start_device("https://gw.test/v1/auth/verify")
    assert oauth.decide(device["user_code"], approve=True, role="Viewer", sub="ann")
    return device, device["device_code"]


def test_a_refresh_token_used_on_two_gateways_at_once_revokes_its_family(pg_url: str) -> None:
    one, two = open_store(pg_url), open_store(pg_url)
    try:
        first, second = _oauth(one), _oauth(two)
        _, code = _device_tokens(first)
        tokens = first.poll_device(code)
        results = _together([lambda: first.refresh(tokens["refresh_token"]),
                             lambda: second.refresh(tokens["refresh_token"])])
        granted = [r for r in results if isinstance(r, dict)]
        refused = [r for r in results if isinstance(r, GrantError)]
        assert len(granted) == 1 and len(refused) == 1, results
        assert "family is revoked" in refused[0].description
        with pytest.raises(GrantError, match="revoked"):
            second.refresh(granted[0]["refresh_token"])
    finally:
        one.close()
        two.close()


def test_an_approved_device_code_polled_on_two_gateways_at_once_is_granted_once(
        pg_url: str) -> None:
    one, two = open_store(pg_url), open_store(pg_url)
    try:
        first, second = _oauth(one), _oauth(two)
        _, code = _device_tokens(first)
        results = _together([lambda: first.poll_device(code), lambda: second.poll_device(code)])
        assert sum(isinstance(r, dict) for r in results) == 1, results
        with one.read() as db:
            assert db.execute("SELECT COUNT(*) FROM refresh_families").fetchone()[0] == 1
    finally:
        one.close()
        two.close()


def test_the_rate_budget_is_one_row_shared_by_gateways(pg_url: str) -> None:
    stores = [open_store(pg_url) for _ in range(2)]
    try:
        waits = [stores[i % 2].admit("api:x", 0.001, 5, None)[0] for i in range(8)]
        assert waits[:5] == [0.0] * 5 and all(w > 0 for w in waits[5:])
        assert stores[1].admit("api:y", 0.001, 5, None) == (0.0, False)
    finally:
        for store in stores:
            store.close()


def test_a_shared_state_needs_an_issuer(pg_url: str, tmp_path: Path,
                                        gateway_config: GatewayConfig) -> None:
    with pytest.raises(ConfigError, match=r"gateway\.issuer"):
        start_in_thread(gateway_config, pg_url)
    config = tmp_path / "gateway.toml"
    config.write_text('[services.api]\nshell = "/bin/sh"\n')
    done = subprocess.run([sys.executable, "-m", "tether", "gateway", "serve", "--config",
                           str(config), "--port", "0"], env=tether_env(
                               None, None, tmp_path, TETHER_GATEWAY_STATE=pg_url),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 78
    assert "gateway.issuer" in done.stderr and "PostgreSQL" in done.stderr


def test_round_trips_per_handshake(pg_url: str, gateway_config: GatewayConfig) -> None:
    config = dataclasses.replace(gateway_config, issuer="https://gw.test")
    with start_in_thread(config, pg_url) as running:
        store = running.gateway.state
        jwt, api = running.mint_token("Viewer"), running.create_api_token("Viewer")
        # The event watcher's own reads (its first ones come whenever its listening
        # connection is up) would land in the counts: only the handshakes read now.
        running.call(running.gateway.access.stop())
        for token, trips in ((jwt, 1), (api, 2)):
            before = store.round_trips
            refusal(running.url, "/v1/shell", token, service="api")  # 403 after admission
            assert store.round_trips - before == trips


def test_events_committed_out_of_order_are_each_delivered_once(tmp_path: Path) -> None:
    store = open_store(tmp_path / "state")
    seen: list[int] = []
    watcher = EventWatcher(store, lambda events: seen.extend(e[0] for e in events), interval=1)
    watcher.poll()  # starts from the newest event

    def insert(ident: int) -> None:
        with store.transaction() as db:
            db.execute("INSERT INTO events (id, kind, ident, at) VALUES (?, 'x', '', 0)",
                       (ident,))
    try:
        insert(3)
        watcher.poll()
        insert(2)  # committed after 3 (as concurrent transactions may)
        watcher.poll()
        insert(1)
        watcher.poll()
        watcher.poll()
        assert seen == [3, 2, 1]
    finally:
        store.close()


# --- SQLite: the embedded default -------------------------------------------------------


def test_a_held_sqlite_write_lock_stalls_no_session(
        make_gateway: Callable[..., RunningGateway]) -> None:
    gateway = make_gateway(state_timeout=0.5)
    api = gateway.create_api_token("Viewer", "reader")
    jwt = gateway.mint_token("Viewer")
    assert gateway.gateway.state.directory is not None
    holder = sqlite3.connect(gateway.gateway.state.directory / "gateway.sqlite3",
                             isolation_level=None)
    holder.execute("BEGIN IMMEDIATE")  # as a slow `tether gateway approve` would
    try:
        for token in (jwt, api):  # reads never wait for the writer
            collect(dial(gateway.url, "/v1/logs", token, service="api"))
        answer = http_request(gateway.url, "POST", "/v1/auth/device")
        assert answer.status == 503
        assert json.loads(answer.body)["code"] == "state-unavailable"
    finally:
        holder.execute("ROLLBACK")
        holder.close()
    assert http_request(gateway.url, "POST", "/v1/auth/device").status == 200


def test_a_revocation_from_another_process_ends_the_session(
        gateway: RunningGateway, tmp_path: Path, follower: Callable[..., Follower]) -> None:
    token = gateway.create_api_token("Viewer", "elsewhere")
    run = follower("api", "-f", "-o", "json", env=tether_env(gateway.url, token, tmp_path))
    run.wait_for(6)
    assert gateway.gateway.state.directory is not None
    done = subprocess.run([sys.executable, "-m", "tether", "gateway", "token", "revoke",
                           "elsewhere", "--state", str(gateway.gateway.state.directory)],
                          env=tether_env(None, None, tmp_path), capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    assert run.wait(10) == 77
    assert run.events()[-1]["code"] == "unauthorized"


def test_an_unreachable_database_is_exit_69_and_its_password_is_never_shown(
        tmp_path: Path) -> None:
    from tests.servers import free_port

    url = f"postgresql://ops:s3cretpw@127.0.0.1:{free_port()}/tether?password=s3cretpw"
    done = subprocess.run([sys.executable, "-m", "tether", "gateway", "token", "list",
                           "--state", url], env=tether_env(None, None, tmp_path),
                          capture_output=True, text=True, timeout=30, check=False)
    assert done.returncode == 69
    assert "cannot reach the state postgresql://ops@127.0.0.1:" in done.stderr
    assert "s3cretpw" not in done.stderr + done.stdout
