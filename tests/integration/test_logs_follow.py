"""``tether logs -f`` as a subprocess against the real gateway: restarts, expiry, giving up.

The output is compared record for record with what was written to the log
files: every record exactly once, in order per instance.
"""

from __future__ import annotations

import json
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli import Follower, assert_no_secrets, tether_env
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(60)


def _records(lines: list[bytes]) -> list[dict[str, str]]:
    return [json.loads(line) for line in lines]


def test_follow_survives_three_gateway_restarts_during_100k_records(
        gateway: RunningGateway, viewer_token: str, log_dir: Path, tmp_path: Path,
        follower: Callable[..., Follower]) -> None:
    per_file, chunk = 50_000, 500
    env = tether_env(gateway.url, viewer_token, tmp_path)
    run = follower("api", "-f", "-o", "json", env=env)
    run.wait_for(6)
    progress = threading.Event()
    written = [0]
    boundaries = (per_file // 4, per_file // 2, 3 * per_file // 4)
    restarted = [threading.Event() for _ in boundaries]

    def generate() -> None:
        files = {name: (log_dir / f"{name}.log").open("a") for name in ("api-1", "api-2")}
        try:
            for start in range(0, per_file, chunk):
                if start in boundaries:  # the rest only once the gateway has restarted
                    restarted[boundaries.index(start)].wait(20)
                for name, handle in files.items():
                    handle.write("".join(f"{name} seq {i:06d}\n"
                                         for i in range(start, start + chunk)))
                    handle.flush()
                written[0] = start + chunk
                progress.set()
                time.sleep(0.01)
        finally:
            for handle in files.values():
                handle.close()

    generator = threading.Thread(target=generate)
    generator.start()
    try:
        for restarts, boundary in enumerate(boundaries):
            deadline = time.monotonic() + 15
            while time.monotonic() < deadline and not (
                    written[0] >= boundary and gateway.session_count == 1
                    and gateway.dial_count["/v1/logs"] > restarts):  # following again
                progress.wait(0.02)
            gateway.restart()
            restarted[restarts].set()
    finally:
        for event in restarted:
            event.set()
        generator.join(30)
    total = 6 + 2 * per_file
    records = _records(run.wait_for(total, timeout=25))
    time.sleep(0.3)  # anything more would be a duplicate
    assert len(run.lines) == total
    assert run.interrupt() == 130
    for name in ("api-1", "api-2"):
        source = (log_dir / f"{name}.log").read_text().splitlines()
        got = [r["message"] for r in records if r["instance"] == name]
        assert len(got) == len(source)
        assert got[3:] == source[3:]  # the first three had their timestamp taken off
    events = run.events()
    reconnects = [e for e in events if e["event"] == "reconnected"]
    assert len(reconnects) == 3, events
    assert {e["code"] for e in events if e["event"] == "retry"} <= {
        "gateway-restarting", "connection-refused", "connection-lost"}
    assert gateway.dial_count["/v1/logs"] >= 4
    assert_no_secrets([viewer_token], bytes(run.out), bytes(run.err))


def test_a_follow_beyond_its_retry_budget_exits_with_the_catalog_code(
        gateway: RunningGateway, viewer_token: str, tmp_path: Path,
        follower: Callable[..., Follower]) -> None:
    env = tether_env(gateway.url, viewer_token, tmp_path)
    run = follower("api", "-f", "-o", "json", "--retry-for", "1s", env=env)
    run.wait_for(6)
    gateway.stop()
    code = run.wait(15)
    assert code == 69
    events = run.events()
    assert events[-1]["event"] == "error"
    assert events[-1]["code"] in {"connection-refused", "gateway-restarting"}
    assert any(e["event"] == "retry" for e in events)
    assert len(run.lines) == 6


def _device_login(gateway: RunningGateway, role: str) -> tuple[str, str]:
    from tether.auth.oauth import Endpoints, HttpOptions, poll_device_token, start_device_flow

    endpoints, http = Endpoints.for_gateway(gateway.url), HttpOptions(timeout=5)
    device = start_device_flow(endpoints, http)
    assert gateway.gateway.oauth.decide(device.user_code, approve=True, role=role, sub="erin")
    response = poll_device_token(endpoints, device, http)
    assert response.refresh_token
    return response.access_token, response.refresh_token


def test_expiry_mid_stream_is_refreshed_once_and_resumes_without_a_gap(
        make_gateway: Callable[..., RunningGateway], log_dir: Path, tmp_path: Path,
        monkeypatch: pytest.MonkeyPatch, follower: Callable[..., Follower]) -> None:
    from tether.auth.store import KeyringStore, StoredTokens

    gateway = make_gateway(device_interval=0.1)
    env = tether_env(gateway.url, None, tmp_path)
    for name in ("PYTHON_KEYRING_BACKEND", "XDG_DATA_HOME", "TETHER_CONFIG_DIR",
                 "TETHER_STATE_DIR"):
        monkeypatch.setenv(name, env[name])
    access, refresh = _device_login(gateway, "Viewer")
    KeyringStore().save(gateway.url, StoredTokens(access, refresh))

    run = follower("api", "-f", "-o", "json", env=env)
    run.wait_for(6)
    gateway.expire_sessions()
    with (log_dir / "api-1.log").open("a") as handle:
        handle.write("during the refresh\n")
    records = _records(run.wait_for(7))
    with (log_dir / "api-2.log").open("a") as handle:
        handle.write("after the refresh\n")
    records = _records(run.wait_for(8))
    time.sleep(0.3)
    assert run.interrupt() == 130
    assert len(run.lines) == 8
    assert [r["message"] for r in records[6:]] == ["during the refresh", "after the refresh"]
    events = run.events()
    assert [e["event"] for e in events if e["event"] in ("refresh", "reconnected")] == [
        "refresh", "reconnected"]
    assert next(e for e in events if e["event"] == "refresh")["code"] in {
        "token-expired", "unauthorized"}
    stored = KeyringStore().load(gateway.url)
    assert stored is not None and stored.access_token != access
    assert stored.refresh_token not in (None, refresh)
    assert gateway.dial_count["/v1/logs"] == 2
    secrets = [access, refresh, stored.access_token, stored.refresh_token or ""]
    secrets += [t.rsplit(".", 1)[1] for t in (access, stored.access_token)]  # JWT signatures
    assert_no_secrets(secrets, bytes(run.out), bytes(run.err))


def test_quiet_follow_stays_open_on_keepalive(make_gateway: Callable[..., RunningGateway],
                                              log_dir: Path, tmp_path: Path,
                                              follower: Callable[..., Follower]) -> None:
    gateway = make_gateway(ping_interval=0.2, ping_timeout=0.5)
    env = tether_env(gateway.url, gateway.mint_token("Viewer"), tmp_path,
                     TETHER_KEEPALIVE_INTERVAL="0.2", TETHER_KEEPALIVE_TIMEOUT="0.6")
    run = follower("api", "-f", "--tail", "0", env=env)
    time.sleep(2.5)  # quiet for many keepalive timeouts
    with (log_dir / "api-1.log").open("a") as handle:
        handle.write("still here\n")
    assert run.wait_for(1) == [b"[api-1] still here\n"]
    assert run.interrupt() == 130
    assert gateway.dial_count["/v1/logs"] == 1
    assert b"Reconnect" not in bytes(run.err)
