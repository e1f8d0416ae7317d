"""Single-flight refresh against a real gateway: threads of one process, and two processes.

The gateway rotates refresh tokens and revokes the whole family when an old
one is presented again, so spending one refresh token twice shows up as a
failed refresh afterwards; the gateway's table of issued refresh tokens
counts how many refreshes really happened.
"""

from __future__ import annotations

import hashlib
import os
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tether.auth.credentials import KeyringCredential, resolve_credential
from tether.auth.oauth import Endpoints, HttpOptions, poll_device_token, start_device_flow
from tether.auth.store import KeyringStore, StoredTokens
from tether.gateway.runner import RunningGateway

PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"


@pytest.fixture
def keyring_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> dict[str, str]:
    """A real file keyring and lock directory in tmp, for this process and its children."""
    for key in [k for k in os.environ if k.startswith("TETHER_")]:
        monkeypatch.delenv(key)
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", PLAINTEXT)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("TETHER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("TETHER_STATE_DIR", str(tmp_path / "state"))
    return dict(os.environ)


@pytest.fixture
def gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    return make_gateway(device_interval=0.1)


def login(gateway: RunningGateway) -> StoredTokens:
    endpoints, http = Endpoints.for_gateway(gateway.url), HttpOptions(timeout=5)
    device = start_device_flow(endpoints, http)
    assert gateway.gateway.oauth.decide(device.user_code, approve=True, role="Deployer",
                                        sub="dana")
    response = poll_device_token(endpoints, device, http)
    tokens = StoredTokens(response.access_token, response.refresh_token)
    KeyringStore().save(gateway.url, tokens)
    return tokens


def credential(gateway: RunningGateway) -> KeyringCredential:
    cred = resolve_credential(gateway.url, env=dict(os.environ))
    assert isinstance(cred, KeyringCredential)
    return cred


def refreshes(gateway: RunningGateway) -> int:
    """Refresh grants the gateway answered: issued refresh tokens beyond the login's one."""
    with gateway.gateway.state.transaction() as db:
        count: int = db.execute("SELECT COUNT(*) FROM refresh_tokens").fetchone()[0]
    return count - 1


def digest(token: str) -> str:
    return hashlib.sha256(token.encode()).hexdigest()[:16]


def test_threads_refresh_once_and_share_the_result(gateway: RunningGateway,
                                                   keyring_env: dict[str, str]) -> None:
    first = login(gateway)
    cred = credential(gateway)
    count = 8
    barrier = threading.Barrier(count, timeout=10)
    results: list[str] = []
    errors: list[BaseException] = []

    def connection() -> None:
        try:
            assert cred.authorization() == f"Bearer {first.access_token}"
            barrier.wait()
            cred.refresh()  # every forwarded connection got a 1008 at once
            results.append(cred.authorization())
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=connection) for _ in range(count)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=20)
    assert errors == []
    assert len(results) == count and len(set(results)) == 1
    assert results[0] != f"Bearer {first.access_token}"
    assert refreshes(gateway) == 1
    stored = KeyringStore().load(gateway.url)
    assert stored is not None and results[0] == f"Bearer {stored.access_token}"
    credential(gateway).refresh()  # the stored refresh token is still the live one
    assert refreshes(gateway) == 2


def test_a_second_credential_uses_the_pair_already_rotated(gateway: RunningGateway,
                                                           keyring_env: dict[str, str]) -> None:
    login(gateway)
    one, two = credential(gateway), credential(gateway)
    two.authorization()
    one.refresh()
    two.refresh()  # read the keyring under the lock: already renewed, nothing spent
    assert refreshes(gateway) == 1
    assert one.authorization() == two.authorization()


_REFRESHER = textwrap.dedent("""
    import hashlib, os, sys, time
    from tether.auth.credentials import resolve_credential
    cred = resolve_credential(sys.argv[1], env=dict(os.environ))
    before = cred.authorization()
    time.sleep(max(0.0, float(sys.argv[2]) - time.time()))
    cred.refresh()
    after = cred.authorization()
    assert after != before
    print(hashlib.sha256(after.removeprefix("Bearer ").encode()).hexdigest()[:16])
""")


def test_two_processes_refreshing_at_once_both_succeed(gateway: RunningGateway,
                                                       keyring_env: dict[str, str]) -> None:
    first = login(gateway)
    start_at = str(time.time() + 1.5)  # both are loaded and waiting by then
    procs = [subprocess.Popen([sys.executable, "-c", _REFRESHER, gateway.url, start_at],
                              env=keyring_env, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                              text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=30) for p in procs]
    for proc, (out, err) in zip(procs, outputs, strict=True):
        assert proc.returncode == 0, err
        assert first.access_token not in out + err
    hashes = {out.strip() for out, _ in outputs}
    assert len(hashes) == 1  # one refreshed, the other took its result
    assert refreshes(gateway) == 1
    stored = KeyringStore().load(gateway.url)
    assert stored is not None and digest(stored.access_token) in hashes
    assert stored.refresh_token != first.refresh_token
    credential(gateway).refresh()  # one valid refresh token remains
    assert refreshes(gateway) == 2
