"""The port-forward machinery in this process against a real gateway on loopback.

Each test binds real listeners, runs :class:`Forwarder.serve` in a thread and
talks to it with plain sockets; output is what the real reporter wrote to stderr.
"""

from __future__ import annotations

import contextlib
import os
import socket
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

import pytest

from tests.servers import echo, free_port, tcp_server
from tether.auth.credentials import Credential, EnvCredential, KeyringCredential
from tether.cli.options import Settings
from tether.cli.output.reporters import ForwardReporter
from tether.client.dial import DialOptions, dial
from tether.errors import Code, TetherError
from tether.gateway.config import RateLimit
from tether.gateway.runner import RunningGateway
from tether.session.forward import Forwarder, probe_close
from tether.session.link import REJECTED_ENV_HINT, Link
from tether.session.listeners import BindAddress, Listener, Route, bind_listeners

OPTIONS = DialOptions(connect_timeout=5.0, keepalive_interval=0, keepalive_timeout=0)
MB = 1 << 20


# --- helpers ------------------------------------------------------------------------------


def count_then_reply(conn: socket.socket) -> None:
    """Read until the client's EOF, then answer with the byte count."""
    total = 0
    while data := conn.recv(65536):
        total += len(data)
    conn.sendall(f"got {total} bytes".encode())


@dataclass
class Running:
    forwarder: Forwarder
    listeners: list[Listener]
    thread: threading.Thread
    errors: list[BaseException]

    @property
    def port(self) -> int:
        return self.listeners[0].port


@contextlib.contextmanager
def forwarding(gateway_url: str, credential: Credential, remote: int, *,
               settings: Settings | None = None,
               options: DialOptions = OPTIONS) -> Iterator[Running]:
    """Bind ``:remote`` on 127.0.0.1, probe once, and serve in a thread until the block ends."""
    settings = settings or Settings(retry_for=5.0)
    link = Link(gateway_url, credential, options, retry_for=settings.retry_for)
    route = Route("api", remote)
    listeners = bind_listeners([(0, route)], [BindAddress("127.0.0.1")])
    with dial(gateway_url, "port-forward", route.params(), credential, options) as conn:
        probe_close(conn, None)  # type: ignore[arg-type]
    forwarder = Forwarder(link, listeners, ForwardReporter(settings))
    errors: list[BaseException] = []

    def run() -> None:
        try:
            forwarder.serve()
        except BaseException as exc:
            errors.append(exc)

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield Running(forwarder, listeners, thread, errors)
    finally:
        forwarder.shutdown()
        thread.join(5)
        assert not thread.is_alive()


def exchange(port: int, payload: bytes, timeout: float = 20.0) -> bytes:
    """Send ``payload``, half-close, and read everything that comes back until EOF."""
    with socket.create_connection(("127.0.0.1", port), timeout=timeout) as sock:
        def send() -> None:
            sock.sendall(payload)
            sock.shutdown(socket.SHUT_WR)

        sender = threading.Thread(target=send, daemon=True)
        sender.start()
        chunks = []
        while data := sock.recv(256 * 1024):
            chunks.append(data)
        sender.join(timeout)
        return b"".join(chunks)


def read_until_closed(sock: socket.socket) -> bytes:
    """What arrives before EOF or a reset."""
    out = b""
    with contextlib.suppress(ConnectionResetError):
        while data := sock.recv(65536):
            out += data
    return out


def wait_for(predicate: Callable[[], bool], timeout: float = 5.0) -> bool:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return predicate()


@pytest.fixture
def roomy_gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    """A gateway that takes 100 sessions at once from one credential."""
    return make_gateway(session_limit=256, rate_limit=RateLimit(rate=1000.0, burst=1000))


# --- tests --------------------------------------------------------------------------------


def test_hundred_concurrent_connections_echo_one_megabyte_each(
        roomy_gateway: RunningGateway, echo_server: int) -> None:
    token = roomy_gateway.mint_token("Deployer")
    credential = EnvCredential(roomy_gateway.url, token)
    payloads = [os.urandom(MB) for _ in range(100)]
    with forwarding(roomy_gateway.url, credential, echo_server) as running:
        started = time.monotonic()
        with ThreadPoolExecutor(max_workers=100) as pool:
            answers = list(pool.map(lambda p: exchange(running.port, p), payloads))
        elapsed = time.monotonic() - started
        assert [len(a) for a in answers] == [MB] * 100
        assert all(a == p for a, p in zip(answers, payloads, strict=True))
        assert elapsed < 30
        assert running.forwarder.accepted == 100
        assert wait_for(lambda: running.forwarder.open_connections == 0)
        assert wait_for(lambda: roomy_gateway.session_count == 0)
    assert not running.errors
    assert roomy_gateway.dial_count["/v1/port-forward"] == 101  # the probe, then one each


def test_wss_carries_both_directions_at_once(tls_gateway: RunningGateway, tls_ca_file: Path,
                                            echo_server: int) -> None:
    """Reads and writes of one TLS connection come from two threads: none may corrupt it."""
    credential = EnvCredential(tls_gateway.url, tls_gateway.mint_token("Deployer"))
    options = DialOptions(connect_timeout=5.0, ca_cert=str(tls_ca_file))
    with forwarding(tls_gateway.url, credential, echo_server, options=options) as running, \
            socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
        sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
        for i in range(5000):  # ping-pong: each side's send races the other side's read
            message = i.to_bytes(4, "big") * 16
            sock.sendall(message)
            got = b""
            while len(got) < len(message):
                got += sock.recv(len(message) - len(got))
            assert got == message
        payload = os.urandom(4 * MB)
        assert exchange(running.port, payload) == payload
        assert not running.errors


def test_half_close_still_gets_the_reply(make_gateway: Callable[..., RunningGateway],
                                         gateway_config: object) -> None:
    with tcp_server(count_then_reply) as target:
        gw = make_gateway(services={"api": _service(gateway_config, target)})
        credential = EnvCredential(gw.url, gw.mint_token("Deployer"))
        with forwarding(gw.url, credential, target) as running:
            assert exchange(running.port, b"x" * 300_000) == b"got 300000 bytes"


def _service(gateway_config: object, port: int) -> object:
    import dataclasses

    api = gateway_config.services["api"]  # type: ignore[attr-defined]
    return dataclasses.replace(api, ports=(port,))


def test_target_down_fails_that_connection_and_the_next_one_works(
        make_gateway: Callable[..., RunningGateway], gateway_config: object,
        capsys: pytest.CaptureFixture[str]) -> None:
    target = free_port()
    gw = make_gateway(services={"api": _service(gateway_config, target)})
    credential = EnvCredential(gw.url, gw.mint_token("Deployer"))
    with forwarding(gw.url, credential, target) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            sock.sendall(b"hello")
            assert read_until_closed(sock) == b""
            local = f"127.0.0.1:{sock.getsockname()[1]}"
        err = _wait_err(capsys, "target-unreachable")
        line = next(x for x in err.splitlines() if "target-unreachable" in x)
        assert line.startswith(f"connection {local} -> api:{target} failed: target-unreachable: ")
        assert f"port {target}" in line and "request id" in line
        with tcp_server(echo, port=target):
            assert exchange(running.port, b"second") == b"second"
        assert running.thread.is_alive() and not running.errors


def _wait_err(capsys: pytest.CaptureFixture[str], needle: str, timeout: float = 5.0) -> str:
    seen = ""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        seen += capsys.readouterr().err
        if needle in seen:
            return seen
        time.sleep(0.02)
    raise AssertionError(f"{needle!r} not in stderr: {seen!r}")


def test_gateway_restart_fails_open_connections_and_later_ones_work(
        gateway: RunningGateway, deployer_token: str, echo_server: int,
        capsys: pytest.CaptureFixture[str]) -> None:
    credential = EnvCredential(gateway.url, deployer_token)
    with forwarding(gateway.url, credential, echo_server) as running:
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as open_one:
            open_one.sendall(b"before")
            assert open_one.recv(100) == b"before"
            gateway.restart()
            assert read_until_closed(open_one) == b""
        err = _wait_err(capsys, "failed: session-expired")  # the restart lost its session
        assert "detached: gateway-restarting" in err
        assert exchange(running.port, b"after the restart") == b"after the restart"
        assert running.thread.is_alive() and not running.errors


def test_revoked_api_token_stops_the_forward_at_the_next_dial(
        gateway: RunningGateway, echo_server: int) -> None:
    """A TETHER_TOKEN rejected after the forward served: exit 77 with the make-a-new-token
    hint that logs and shell give, and the listener closed."""
    token = gateway.create_api_token("Deployer", name="ci")
    credential = EnvCredential(gateway.url, token)
    with forwarding(gateway.url, credential, echo_server) as running:
        assert exchange(running.port, b"works") == b"works"
        gateway.gateway.tokens.revoke_api_token("ci")
        with socket.create_connection(("127.0.0.1", running.port), timeout=10) as sock:
            assert read_until_closed(sock) == b""
        running.thread.join(5)
        assert not running.thread.is_alive()
        [error] = running.errors
        assert isinstance(error, TetherError) and error.failure.code is Code.UNAUTHORIZED
        assert error.failure.exit_code == 77
        assert error.failure.hint == REJECTED_ENV_HINT
        with pytest.raises(OSError):
            socket.create_connection(("127.0.0.1", running.port), timeout=2).close()


# --- one refresh for many connections ---------------------------------------------------------


@pytest.fixture
def keyring_env(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """A file keyring and state directory in tmp_path, for a refreshable login."""
    monkeypatch.setenv("PYTHON_KEYRING_BACKEND", "keyrings.alt.file.PlaintextKeyring")
    monkeypatch.setenv("XDG_DATA_HOME", str(tmp_path / "data"))
    monkeypatch.setenv("TETHER_CONFIG_DIR", str(tmp_path / "config"))
    monkeypatch.setenv("TETHER_STATE_DIR", str(tmp_path / "state"))
    monkeypatch.delenv("TETHER_TOKEN", raising=False)


def _login_with_rejected_access_token(gateway: RunningGateway) -> KeyringCredential:
    """A keyring credential whose access token the gateway rejects and whose refresh works."""
    from tether.auth.credentials import resolve_credential
    from tether.auth.oauth import Endpoints, HttpOptions, poll_device_token, start_device_flow
    from tether.auth.store import KeyringStore, StoredTokens

    endpoints, http = Endpoints.for_gateway(gateway.url), HttpOptions(timeout=5)
    device = start_device_flow(endpoints, http)
    assert gateway.gateway.oauth.decide(device.user_code, approve=True, role="Deployer",
                                        sub="carol")
    response = poll_device_token(endpoints, device, http)
    store = KeyringStore()
    store.save(gateway.url, StoredTokens("not-a-token-the-gateway-knows",
                                         response.refresh_token))
    credential = resolve_credential(gateway.url, env=dict(os.environ), store=store)
    assert isinstance(credential, KeyringCredential) and credential.refreshable
    return credential


def _refresh_tokens_issued(gateway: RunningGateway) -> int:
    with gateway.gateway.state.transaction() as db:
        count: int = db.execute("SELECT COUNT(*) FROM refresh_tokens").fetchone()[0]
    return count


def test_hundred_connections_rejected_at_once_share_one_refresh(
        make_gateway: Callable[..., RunningGateway], echo_server: int, keyring_env: None,
        capsys: pytest.CaptureFixture[str]) -> None:
    gw = make_gateway(session_limit=256, rate_limit=RateLimit(rate=1000.0, burst=1000),
                      device_interval=0.1)
    good = EnvCredential(gw.url, gw.mint_token("Deployer"))
    with forwarding(gw.url, good, echo_server) as running:
        credential = _login_with_rejected_access_token(gw)
        assert _refresh_tokens_issued(gw) == 1
        running.forwarder.link = Link(gw.url, credential, OPTIONS,
                                      retry_for=running.forwarder.link.retry_for)
        payloads = [os.urandom(64 * 1024) for _ in range(100)]
        with ThreadPoolExecutor(max_workers=100) as pool:
            answers = list(pool.map(lambda p: exchange(running.port, p), payloads))
        assert answers == payloads
        assert _refresh_tokens_issued(gw) == 2  # the login's, and exactly one refresh
        dials = gw.dial_count["/v1/port-forward"]
        assert 101 < dials <= 201  # the probe, 100 accepted, and those refused before the refresh
        assert not running.errors
    err = capsys.readouterr().err
    assert err.count("refreshing the token") == 1
    assert "failed" not in err
