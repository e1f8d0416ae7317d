"""One proxy rule for both HTTP stacks: the dialer and plain HTTP read NO_PROXY alike.

The rule (:func:`tether.client.transport.proxy_for`) is checked case by case
first, CIDR ranges on addresses like 10.1.2.3 among them. Then a real gateway on
127.0.0.1 and the suite's own proxy show that ``tether auth login``, ``tether
status`` and ``tether logs`` (a token refresh, then a dial) all follow it. They
reach the gateway as ``http://0.0.0.0:PORT``: 0.0.0.0 is not a loopback address,
so the rule applies to it (a proxy is used unless NO_PROXY covers it), yet the
kernel delivers a connection to it on this machine, so going direct never leaves
loopback.
"""

from __future__ import annotations

import base64
import socket
import time
from collections.abc import Callable
from pathlib import Path

import pytest

from tests.cli import Gathered, json_events, run_tether, tether_env
from tests.hostile import ConnectProxy
from tether.client.credential import StaticCredential
from tether.client.dial import DialOptions, dial
from tether.client.http import HttpOptions, request
from tether.client.transport import Proxy, no_proxy_covers, proxy_for
from tether.errors import Code, TetherError
from tether.gateway.runner import RunningGateway

PROXY_VARIABLES = ("http_proxy", "https_proxy", "no_proxy", "HTTP_PROXY", "HTTPS_PROXY",
                   "NO_PROXY", "all_proxy", "ALL_PROXY", "REQUEST_METHOD")


@pytest.fixture
def proxy_env(monkeypatch: pytest.MonkeyPatch) -> pytest.MonkeyPatch:
    for name in PROXY_VARIABLES:
        monkeypatch.delenv(name, raising=False)
    return monkeypatch


# --- the rule ---------------------------------------------------------------------------------

COVERS = [
    ("10.1.2.3", "10.0.0.0/8", True),
    ("10.1.2.3", "192.168.0.0/16, 10.0.0.0/8", True),
    ("10.255.255.255", "10.0.0.0/8", True),
    ("11.1.2.3", "10.0.0.0/8", False),
    ("10.1.2.3", "10.1.0.0/16", True),
    ("10.2.2.3", "10.1.0.0/16", False),
    ("10.1.2.3", "10.1.2.3", True),
    ("10.1.2.3", "10.1.2.4", False),
    ("10.1.2.3", "10.1.2.3:8443", True),  # a port in a rule: the host alone is matched
    ("10.1.2.3", "10.0.0.0/33", False),  # not a network: ignored
    ("10.1.2.3", "10.example", False),
    ("fd00::1", "fd00::/8", True),
    ("[fd00::1]", "fd00::/8", True),
    ("fd00::1", "[fd00::1]:443", True),
    ("fe80::1", "fd00::/8", False),
    ("gw.internal", "10.0.0.0/8", False),  # a name is not resolved to match a range
    ("api.example.com", "example.com", True),
    ("api.example.com", ".example.com", True),
    ("api.example.com", "*.example.com", True),
    ("api.example.com", "example.com:8080", True),
    ("API.Example.COM.", "example.com", True),
    ("example.com", ".example.com", True),
    ("badexample.com", "example.com", False),
    ("example.com", "api.example.com", False),
    ("anything.test", "*", True),
    ("10.1.2.3", "other.test,*", True),
    ("api.example.com", "", False),
    ("api.example.com", " , ,", False),
]


@pytest.mark.parametrize(("host", "rules", "covered"), COVERS)
def test_no_proxy_rules(host: str, rules: str, covered: bool) -> None:
    assert no_proxy_covers(host, rules) is covered


@pytest.mark.parametrize("scheme", ["ws", "wss", "http", "https"])
def test_a_cidr_in_no_proxy_sends_every_scheme_direct(proxy_env: pytest.MonkeyPatch,
                                                      scheme: str) -> None:
    proxy_env.setenv("HTTP_PROXY", "http://proxy.test:3128")
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.test:3129")
    assert proxy_for(scheme, "10.1.2.3") is not None
    proxy_env.setenv("NO_PROXY", "10.0.0.0/8")
    assert proxy_for(scheme, "10.1.2.3") is None
    assert proxy_for(scheme, "11.1.2.3") is not None
    proxy_env.delenv("NO_PROXY")
    proxy_env.setenv("no_proxy", "10.0.0.0/8")
    assert proxy_for(scheme, "10.1.2.3") is None


def test_each_scheme_takes_its_variable(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("http_proxy", "http://plain.test:3128")
    proxy_env.setenv("HTTPS_PROXY", "secure.test")
    plain = Proxy("plain.test", 3128, None, "HTTP_PROXY")
    secure = Proxy("secure.test", 8080, None, "HTTPS_PROXY")
    assert [proxy_for(s, "gw.test") for s in ("ws", "http", "wss", "https")] == \
        [plain, plain, secure, secure]


@pytest.mark.parametrize("host", ["127.0.0.1", "127.9.9.9", "::1", "[::1]", "localhost",
                                  "api.localhost"])
def test_loopback_is_never_proxied(proxy_env: pytest.MonkeyPatch, host: str) -> None:
    proxy_env.setenv("HTTP_PROXY", "http://proxy.test:3128")
    proxy_env.setenv("HTTPS_PROXY", "http://proxy.test:3128")
    assert proxy_for("http", host) is None
    assert proxy_for("wss", host) is None


def test_proxy_credentials_and_unusable_proxies(proxy_env: pytest.MonkeyPatch) -> None:
    proxy_env.setenv("HTTPS_PROXY", "http://user:p%40ss@proxy.test:3128")
    proxy = proxy_for("https", "gw.test")
    assert proxy is not None and proxy.address == "proxy.test:3128"
    assert proxy.authorization == "Basic " + base64.b64encode(b"user:p@ss").decode()
    proxy_env.setenv("HTTPS_PROXY", "socks5://proxy.test:1080")
    with pytest.raises(TetherError) as info:
        proxy_for("https", "gw.test")
    assert info.value.failure.code == Code.PROXY_ERROR
    assert "HTTPS_PROXY" in info.value.failure.message


# --- both stacks, end to end ------------------------------------------------------------------


def test_both_stacks_proxy_an_address_outside_the_range(
        gateway: RunningGateway, deployer_token: str, proxy_env: pytest.MonkeyPatch) -> None:
    """10.1.2.3 is not in NO_PROXY's ranges: both go through the proxy, with its credentials
    (the proxy routes to the gateway on loopback, so nothing is sent to 10.1.2.3)."""
    url = f"http://10.1.2.3:{gateway.port}"
    with ConnectProxy(route_to=gateway.port) as proxy:
        proxy_env.setenv("HTTP_PROXY", proxy.url.replace("://", "://user:p%40ss@"))
        proxy_env.setenv("NO_PROXY", "192.168.0.0/16,10.1.2.4,fd00::/8")
        assert request(f"{url}/v1/health", HttpOptions(timeout=5)).status == 200
        options = DialOptions(connect_timeout=5, keepalive_interval=0, keepalive_timeout=0)
        with dial(url, "logs", {"service": "api", "follow": "0", "tail": "0"},
                  StaticCredential(deployer_token), options) as conn:
            assert conn.subprotocol is not None
        seen = [f"{r.method} {r.target}" for r in proxy.requests]
        credentials = {r.headers.get("proxy-authorization") for r in proxy.requests}
    assert seen == [f"GET {url}/v1/health", f"CONNECT 10.1.2.3:{gateway.port}"]
    assert credentials == {"Basic " + base64.b64encode(b"user:p@ss").decode()}


def _zero_reaches_loopback() -> bool:
    """Whether a connection to 0.0.0.0 arrives at a listener on 127.0.0.1 (Linux, macOS)."""
    with socket.create_server(("127.0.0.1", 0)) as server:
        try:
            socket.create_connection(("0.0.0.0", server.getsockname()[1]), timeout=2).close()
        except OSError:
            return False
    return True


def _device_code(login: Gathered, timeout: float = 15.0) -> str:
    """The user code ``tether -o json auth login`` printed (bounded)."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        lines = bytes(login.err).decode(errors="replace").splitlines(keepends=True)
        for event in json_events("".join(line for line in lines if line.endswith("\n"))):
            if event.get("event") == "device-code":
                return str(event["user_code"])
        assert login.proc.poll() is None, bytes(login.err).decode(errors="replace")
        time.sleep(0.02)
    raise AssertionError(f"no user code: {bytes(login.err)!r}")


@pytest.mark.skipif(not _zero_reaches_loopback(),
                    reason="this system does not deliver connections to 0.0.0.0 locally")
@pytest.mark.parametrize(("no_proxy", "via_proxy"), [("10.0.0.0/8,::1", True),
                                                     ("10.0.0.0/8, 0.0.0.0/8", False)])
def test_status_login_refresh_and_dial_follow_the_same_rule(
        make_gateway: Callable[..., RunningGateway], tmp_path: Path, no_proxy: str,
        via_proxy: bool) -> None:
    gateway = make_gateway(device_interval=0.2, access_ttl=1)
    url = f"http://0.0.0.0:{gateway.port}"
    with ConnectProxy(route_to=gateway.port, lifetime=120.0) as proxy:
        env = tether_env(None, None, tmp_path, HTTP_PROXY=proxy.url, NO_PROXY=no_proxy)
        seen: dict[str, list[str]] = {}

        def through_proxy(step: str, since: int) -> None:
            seen[step] = [f"{r.method} {r.target}" for r in proxy.requests[since:]]

        since = len(proxy.requests)
        login = Gathered("-o", "json", "auth", "login", url, env=env)
        try:
            assert gateway.gateway.oauth.decide(_device_code(login), approve=True,
                                                role="Deployer", sub="alice")
            assert login.proc.wait(20) == 0, bytes(login.err)
        finally:
            login.kill()
        through_proxy("login", since)

        since = len(proxy.requests)
        status = run_tether("status", env=env, timeout=30)
        assert status.returncode == 0, status.stderr
        through_proxy("status", since)

        time.sleep(1.1)  # the access token (1 s) has expired: it is refreshed before the dial
        gateway.gateway.oauth.access_ttl = 60.0  # and the new one outlives a slow machine
        since = len(proxy.requests)
        logs = run_tether("-v", "logs", "api", "--tail", "1", env=env, timeout=30)
        assert logs.returncode == 0, logs.stderr
        through_proxy("refresh and dial", since)

    if not via_proxy:
        assert proxy.uses == 0, seen
        return
    base = f"http://0.0.0.0:{gateway.port}"
    assert seen["login"][0] == f"POST {base}/v1/auth/device", seen
    assert set(seen["login"][1:]) == {f"POST {base}/v1/auth/token"}, seen
    assert seen["status"] and set(seen["status"]) == {f"GET {base}/v1/health"}, seen
    assert seen["refresh and dial"] == [f"POST {base}/v1/auth/token",
                                        f"CONNECT 0.0.0.0:{gateway.port}"], seen
