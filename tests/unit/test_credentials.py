"""Credentials without a gateway: URLs, the config file, JWT claims, the keyring store, locks."""

from __future__ import annotations

import itertools
import json
import os
import subprocess
import sys
import textwrap
import threading
import time
from pathlib import Path

import jwt
import pytest

from tether.auth.contexts import (
    Config,
    Context,
    config_path,
    dump_config,
    load_config,
    normalize_gateway_url,
    resolve_gateway,
    save_config,
    websocket_url,
)
from tether.auth.credentials import (
    EnvCredential,
    KeyringCredential,
    needs_refresh,
    read_claims,
    refresh_margin,
    resolve_credential,
)
from tether.auth.oauth import Endpoints, HttpOptions, is_token_text
from tether.auth.refresh import gateway_lock, lock_path
from tether.auth.store import KeyringStore, StoredTokens
from tether.errors import Code, TetherError

PLAINTEXT = "keyrings.alt.file.PlaintextKeyring"
GATEWAY = "https://gw.example.test"


def make_jwt(*, sub: str = "alice", role: str = "Deployer", ttl: float = 900.0,
             iat: float | None = None, **extra: object) -> str:
    now = time.time() if iat is None else iat
    claims = {"sub": sub, "role": role, "iat": int(now), "exp": int(now + ttl),
              "aud": "tether", "iss": "test", **extra}
    return jwt.encode(claims, "k" * 32, algorithm="HS256")


@pytest.fixture
def keyring_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """A real file keyring, config and lock directories, all under ``tmp_path``."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", PLAINTEXT)
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg-config"))
    monkeypatch.setenv("TETHER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("TETHER_STATE_DIR", str(tmp_path / "state"))
    for name in ("TETHER_TOKEN", "TETHER_GATEWAY"):
        monkeypatch.delenv(name, raising=False)
    return tmp_path / "data" / "python_keyring" / "keyring_pass.cfg"


def code_of(excinfo: pytest.ExceptionInfo[TetherError]) -> Code:
    return excinfo.value.failure.code


# --- gateway URLs -------------------------------------------------------------------------


@pytest.mark.parametrize(("given", "canonical"), [
    ("https://GW.Example.test/", "https://gw.example.test"),
    ("wss://gw.example.test:443", "https://gw.example.test"),
    ("ws://127.0.0.1:80", "http://127.0.0.1"),
    ("ws://127.0.0.1:7443//", "http://127.0.0.1:7443"),
    ("HTTP://[::1]:8443/tether/", "http://[::1]:8443/tether"),
    ("  https://gw.example.test:8443/a//b  ", "https://gw.example.test:8443/a/b"),
])
def test_gateway_urls_normalize_to_one_form(given: str, canonical: str) -> None:
    assert normalize_gateway_url(given) == canonical
    assert normalize_gateway_url(canonical) == canonical


@pytest.mark.parametrize("given", [
    "", "gw.example.test", "ftp://gw.example.test", "file:///etc/passwd", "https://",
    "https://gw.example.test:99999", "https://gw.example.test/?token=x", "https://gw/#x",
    "https://gw.example.test/a b", "https://gw\x1b[31m.test",
])
def test_bad_gateway_urls_are_invalid_url(given: str) -> None:
    with pytest.raises(TetherError) as excinfo:
        normalize_gateway_url(given)
    assert code_of(excinfo) is Code.INVALID_URL
    assert excinfo.value.failure.exit_code == 78
    assert "\x1b" not in str(excinfo.value)


def test_a_password_in_the_url_is_refused_and_not_echoed() -> None:
    with pytest.raises(TetherError) as excinfo:
        normalize_gateway_url("https://bob:hunter2@gw.example.test")
    assert code_of(excinfo) is Code.INVALID_URL
    assert "hunter2" not in str(excinfo.value)
    assert "hunter2" not in json.dumps(excinfo.value.failure.as_dict())


def test_websocket_url_keeps_tls() -> None:
    assert websocket_url("https://gw:8443/p", "/v1/shell") == "wss://gw:8443/p/v1/shell"
    assert websocket_url("http://127.0.0.1:7443", "/v1/logs") == "ws://127.0.0.1:7443/v1/logs"


# --- the config file ----------------------------------------------------------------------


def test_config_round_trips_through_toml(tmp_path: Path) -> None:
    odd = 'we"ird\\name.with dots:1 é'
    config = Config(current_context=odd, contexts={
        odd: Context(odd, "https://gw.example.test"),
        "issuer": Context("issuer", "http://127.0.0.1:7443", device_endpoint="https://id/dev",
                          token_endpoint="https://id/token", client_id="cli\tent"),
    })
    path = tmp_path / "c" / "config.toml"
    save_config(config, path)
    assert load_config(path) == config
    assert "\t" not in path.read_text()
    assert dump_config(load_config(path)) == path.read_text()


def test_missing_config_is_empty_and_broken_config_is_named(tmp_path: Path) -> None:
    path = tmp_path / "config.toml"
    assert load_config(path) == Config()
    path.write_text("current-context = [\n")
    with pytest.raises(TetherError) as excinfo:
        load_config(path)
    assert code_of(excinfo) is Code.NOT_CONFIGURED
    assert str(path) in excinfo.value.failure.hint
    path.write_text('[contexts.a]\nclient-id = "x"\n')
    with pytest.raises(TetherError, match="without a gateway"):
        load_config(path)


def test_gateway_resolution_order(tmp_path: Path) -> None:
    config = Config("prod", {"prod": Context("prod", "https://prod.test/"),
                             "dev": Context("dev", "http://127.0.0.1:7443")})
    env = {"TETHER_GATEWAY": "wss://env.test"}
    assert resolve_gateway("ws://127.0.0.1:7443", env=env, config=config).gateway == \
        "http://127.0.0.1:7443"
    assert resolve_gateway("ws://127.0.0.1:7443", env=env, config=config).context == \
        config.contexts["dev"]
    assert resolve_gateway(None, env=env, config=config).origin == "TETHER_GATEWAY"
    resolved = resolve_gateway(None, env={}, config=config)
    assert (resolved.gateway, resolved.origin) == ("https://prod.test", "context prod")
    with pytest.raises(TetherError) as excinfo:
        resolve_gateway(None, env={}, config=Config())
    assert code_of(excinfo) is Code.NOT_CONFIGURED
    with pytest.raises(TetherError) as excinfo:
        resolve_gateway(None, env={"TETHER_GATEWAY": "gopher://x"}, config=config)
    assert code_of(excinfo) is Code.INVALID_URL


def test_config_dir_is_overridable(tmp_path: Path) -> None:
    assert config_path({"TETHER_CONFIG_DIR": str(tmp_path)}) == tmp_path / "config.toml"
    assert config_path({}).name == "config.toml"
    assert config_path({}).parent.name == "tether"


# --- JWT claims ----------------------------------------------------------------------------


def test_claims_are_read_without_verification() -> None:
    token = make_jwt(sub="alice", role="Viewer", ttl=600)
    claims = read_claims(token)
    assert claims is not None
    assert (claims.subject, claims.role) == ("alice", "Viewer")
    assert claims.expires_at is not None
    assert 590 <= claims.expires_at - time.time() <= 601
    assert read_claims("tth_abcdef") is None
    assert read_claims("a.b.c") is None
    assert read_claims(make_jwt(sub="\x1b]0;pwn\x07bob")).subject == "bob"  # type: ignore[union-attr]


def test_refresh_is_due_within_the_margin() -> None:
    now = time.time()
    assert not needs_refresh(make_jwt(ttl=900), now)
    assert needs_refresh(make_jwt(ttl=900, iat=now - 850), now)
    assert needs_refresh(make_jwt(ttl=-5), now)
    short = make_jwt(ttl=20, iat=now)
    assert refresh_margin(read_claims(short)) == pytest.approx(10, abs=1)  # type: ignore[arg-type]
    assert not needs_refresh(short, now)
    assert needs_refresh(short, now + 11)
    assert not needs_refresh("tth_opaque", now)


def test_token_text_excludes_header_injection() -> None:
    assert is_token_text(make_jwt())
    assert is_token_text("tth_abc-DEF_123")
    for bad in ("", "a b", "a\r\nX-Evil: 1", "Bearer x", "é"):
        assert not is_token_text(bad)


# --- the environment credential ------------------------------------------------------------


def test_env_api_token_is_used_as_is_and_never_stored(keyring_env: Path) -> None:
    secret = "tth_" + "s3cr3t" * 6
    cred = resolve_credential(GATEWAY, env={"TETHER_TOKEN": secret})
    assert isinstance(cred, EnvCredential)
    assert cred.refreshable is False
    assert cred.authorization() == f"Bearer {secret}"
    info = cred.describe()
    assert (info.source, info.kind, info.refreshable) == ("environment", "api-token", False)
    assert secret not in repr(cred) and secret not in repr(info)
    with pytest.raises(TetherError) as excinfo:
        cred.refresh()
    assert code_of(excinfo) is Code.REFRESH_FAILED
    assert "new API token" in excinfo.value.failure.hint
    assert not keyring_env.exists()


def test_env_jwt_reports_claims_and_expiry(keyring_env: Path) -> None:
    cred = resolve_credential(GATEWAY, env={"TETHER_TOKEN": make_jwt(role="Viewer")})
    info = cred.describe()
    assert (info.kind, info.subject, info.role) == ("jwt", "alice", "Viewer")
    assert info.as_dict()["expires_in"] > 800
    expired = resolve_credential(GATEWAY, env={"TETHER_TOKEN": make_jwt(ttl=-10)})
    with pytest.raises(TetherError) as excinfo:
        expired.authorization()
    assert code_of(excinfo) is Code.TOKEN_EXPIRED


def test_env_token_with_bad_characters_is_refused_without_echo(keyring_env: Path) -> None:
    with pytest.raises(TetherError) as excinfo:
        resolve_credential(GATEWAY, env={"TETHER_TOKEN": "tth_abc\r\nX-Injected: yes"})
    assert code_of(excinfo) is Code.NO_CREDENTIALS
    assert "tth_abc" not in str(excinfo.value) + excinfo.value.failure.hint


# --- the keyring store -----------------------------------------------------------------------


def test_store_round_trip_in_a_real_file_keyring(keyring_env: Path) -> None:
    store = KeyringStore()
    assert store.load(GATEWAY) is None
    tokens = StoredTokens(make_jwt(), "tthr_refresh")
    store.save(GATEWAY, tokens)
    assert keyring_env.exists()
    assert store.backend_name() == PLAINTEXT
    again = KeyringStore().load(GATEWAY)
    assert again == tokens
    assert "tthr_refresh" not in repr(again)
    assert KeyringStore().load("https://other.test") is None
    assert store.delete(GATEWAY) is True
    assert store.delete(GATEWAY) is False
    assert store.load(GATEWAY) is None


def test_keyring_credential_from_store(keyring_env: Path) -> None:
    store = KeyringStore()
    store.save(GATEWAY, StoredTokens(make_jwt(role="Admin"), "tthr_x"))
    cred = resolve_credential(GATEWAY + "/", env={}, store=store)
    assert isinstance(cred, KeyringCredential)
    assert cred.refreshable is True
    assert cred.describe().role == "Admin"
    assert cred.describe().source == "keyring"
    assert "tthr_x" not in repr(cred)
    store.save(GATEWAY, StoredTokens(make_jwt(), None))
    assert resolve_credential(GATEWAY, env={}, store=store).refreshable is False


def test_not_logged_in_and_unreadable_entry(keyring_env: Path) -> None:
    with pytest.raises(TetherError) as excinfo:
        resolve_credential(GATEWAY, env={})
    assert code_of(excinfo) is Code.NO_CREDENTIALS
    assert excinfo.value.failure.exit_code == 77
    import keyring

    keyring.get_keyring().set_password("tether", GATEWAY, "not json at all")
    with pytest.raises(TetherError) as excinfo:
        KeyringStore().load(GATEWAY)
    assert code_of(excinfo) is Code.NO_CREDENTIALS
    assert "not json" not in str(excinfo.value)
    assert KeyringStore().delete(GATEWAY) is True  # logout still clears it
    assert keyring.get_keyring().get_password("tether", GATEWAY) is None


def test_expired_token_without_refresh_token_is_token_expired(keyring_env: Path) -> None:
    store = KeyringStore()
    store.save(GATEWAY, StoredTokens(make_jwt(ttl=-30), None))
    cred = resolve_credential(GATEWAY, env={}, store=store)
    with pytest.raises(TetherError) as excinfo:
        cred.authorization()
    assert code_of(excinfo) is Code.TOKEN_EXPIRED


def test_fail_backend_is_keyring_unavailable(keyring_env: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyring.backends.fail.Keyring")
    with pytest.raises(TetherError) as excinfo:
        resolve_credential(GATEWAY, env={})
    failure = excinfo.value.failure
    assert failure.code is Code.KEYRING_UNAVAILABLE
    assert failure.exit_code == 78
    assert "TETHER_TOKEN" in failure.hint


def test_no_silent_fallback_to_a_plaintext_file(keyring_env: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("PYTHON_KEYRING_BACKEND")
    try:
        backend = KeyringStore().backend
    except TetherError as exc:
        assert exc.failure.code is Code.KEYRING_UNAVAILABLE
    else:  # a machine with a real keyring: it must be a recommended one
        assert backend.priority >= 1
        assert "Plaintext" not in type(backend).__name__
    assert not keyring_env.exists()


# --- locks --------------------------------------------------------------------------------------


def test_lock_file_names_are_safe(tmp_path: Path) -> None:
    path = lock_path("https://gw.example.test/../../etc", tmp_path)
    assert path.parent == tmp_path
    assert lock_path("https://a.test", tmp_path) != lock_path("https://b.test", tmp_path)


def test_threads_take_the_gateway_lock_one_at_a_time(tmp_path: Path) -> None:
    spans: list[tuple[float, float]] = []

    def work() -> None:
        with gateway_lock(GATEWAY, tmp_path):
            start = time.monotonic()
            time.sleep(0.03)
            spans.append((start, time.monotonic()))

    threads = [threading.Thread(target=work) for _ in range(5)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(timeout=10)
    assert len(spans) == 5
    spans.sort()
    assert all(a_end <= b_start for (_, a_end), (b_start, _) in itertools.pairwise(spans))


_HOLDER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from tether.auth.refresh import gateway_lock
    with gateway_lock(sys.argv[1], Path(sys.argv[2])):
        print("held", time.time(), flush=True)
        time.sleep(float(sys.argv[3]))
        print("released", time.time(), flush=True)
""")


def test_processes_take_the_gateway_lock_one_at_a_time(tmp_path: Path) -> None:
    def run(gateway: str, hold: str) -> subprocess.CompletedProcess[str]:
        return subprocess.run([sys.executable, "-c", _HOLDER, gateway, str(tmp_path), hold],
                              check=True, capture_output=True, text=True, timeout=20)

    first = subprocess.Popen([sys.executable, "-c", _HOLDER, GATEWAY, str(tmp_path), "0.8"],
                             stdout=subprocess.PIPE, text=True)
    assert first.stdout is not None
    assert first.stdout.readline().startswith("held")
    other = run("https://other.test", "0")  # another gateway is not held up
    same = run(GATEWAY, "0")
    out, _ = first.communicate(timeout=20)
    released = float(out.split()[1])
    assert first.returncode == 0
    assert float(other.stdout.split()[1]) < released
    assert float(same.stdout.split()[1]) >= released


def test_credentials_use_the_given_endpoints(keyring_env: Path) -> None:
    store = KeyringStore()
    store.save(GATEWAY, StoredTokens(make_jwt(), "tthr_x"))
    save_config(Config("id", {"id": Context("id", GATEWAY, token_endpoint="https://id.test/t")}))
    cred = resolve_credential(GATEWAY, env=dict(os.environ), store=store)
    assert isinstance(cred, KeyringCredential)
    assert cred._endpoints == Endpoints("https://gw.example.test/v1/auth/device",
                                        "https://id.test/t", "tether")
    assert cred._http == HttpOptions()
