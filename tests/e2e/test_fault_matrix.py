"""The fault matrix: every catalog code that can happen, produced by a real fault.

Parametrized from ``tests/fault_table.CASES`` (the README's "Fault coverage"
table is generated from the same list). Each case builds its fault (a real
gateway with faults, roles or tokens; the hostile server; a port nothing listens
on; a ``.invalid`` host; a TLS server with the wrong certificate; a refusing
proxy), runs the installed ``tether`` with ``-o json`` as a subprocess, and
checks the final JSON error record's code, the exit status, the number of dials
and that the process ended in bounded time.
"""

from __future__ import annotations

import contextlib
import dataclasses
import os
import select
import signal
import socket
import ssl
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jwt
import pytest

from tests import fault_table, secrets_guard
from tests.cli import assert_no_secrets, json_events, run_tether, spawn_tether, tether_env
from tests.fault_table import CASES, FaultCase
from tests.gateway_client import dial as raw_dial
from tests.hostile import (
    ConnectProxy,
    HostileServer,
    drop,
    problem,
    respond,
    silent,
    stay_silent,
    upgrade_then,
)
from tests.middleboxes import nginx
from tether.errors import CATALOG, Code
from tether.gateway.config import GatewayConfig
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(30)

STARTUP = 4.0  # seconds a tether process may take to start, decide and exit on a busy machine


@dataclass
class Setup:
    """What a case's fault left for the run: the environment, and how to count dials."""

    env: dict[str, str]
    dials: Callable[[], int] | None = None  # None: read the record's attempts
    fill: dict[str, str] = field(default_factory=dict)  # placeholders in the case's arguments
    input: bytes | None = None
    #: for runs that must be driven (Ctrl+C): gets the process and returns the moment of the
    #: last action, from which the end is timed; may return early stdout it read.
    drive: Callable[[subprocess.Popen[bytes]], tuple[float, bytes]] | None = None
    secrets: list[str] = field(default_factory=list)


class Harness:
    """Fixtures and clean-up shared by the scenarios."""

    def __init__(self, request: pytest.FixtureRequest, tmp_path: Path,
                 make_gateway: Callable[..., RunningGateway], gateway_config: GatewayConfig,
                 stack: contextlib.ExitStack) -> None:
        self.request = request
        self.tmp = tmp_path
        self.make_gateway = make_gateway
        self.config = gateway_config
        self.stack = stack

    def env(self, gateway: str | None, token: str | None, **extra: str) -> dict[str, str]:
        return tether_env(gateway, token, self.tmp, **extra)

    def hostile(self, *behaviours: Any, **kwargs: Any) -> HostileServer:
        return self.stack.enter_context(HostileServer(*behaviours, **kwargs))

    def gateway_env(self, role: str = "Viewer", **overrides: Any
                    ) -> tuple[RunningGateway, dict[str, str], str]:
        gw = self.make_gateway(**overrides)
        token = gw.mint_token(role, ttl=300, sub=f"matrix-{role.lower()}")
        return gw, self.env(gw.url, token), token

    def stored_login(self, gw: RunningGateway, role: str, access: str | None = None
                     ) -> tuple[dict[str, str], list[str]]:
        """A device-flow login saved in the test's file keyring, as `tether auth login` does;
        ``access`` replaces the access token that is stored."""
        oauth = gw.gateway.oauth
        device = oauth.start_device(gw.url + "/v1/auth/verify")
        assert oauth.decide(device["user_code"], approve=True, role=role, sub="matrix-login")
        tokens = oauth.poll_device(device["device_code"])
        access = access or tokens["access_token"]
        env = self.env(gw.url, None)
        saved = subprocess.run(
            [sys.executable, "-c",
             "import sys\n"
             "from tether.auth.store import KeyringStore, StoredTokens\n"
             "KeyringStore().save(sys.argv[1], StoredTokens(sys.argv[2], sys.argv[3]))",
             gw.url, access, tokens["refresh_token"]],
            env=env, capture_output=True, timeout=20, check=False)
        assert saved.returncode == 0, saved.stderr
        return env, [access, tokens["access_token"], tokens["refresh_token"]]


def _total(gw: RunningGateway) -> Callable[[], int]:
    return lambda: sum(gw.dial_count.values())


def _path(gw: RunningGateway, path: str, less: int = 0) -> Callable[[], int]:
    return lambda: gw.dial_count.get(path, 0) - less


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def forged_jwt(gw: RunningGateway) -> str:
    now = int(time.time())
    claims = {"sub": "mallory", "role": "Admin", "iss": gw.url, "aud": "tether", "iat": now,
              "exp": now + 600, "jti": "forged"}
    token = jwt.encode(claims, "another-key-entirely-at-least-32-bytes!", algorithm="HS256")
    secrets_guard.register_secret(token, "forged JWT")
    return token


def read_some(proc: subprocess.Popen[bytes], until: bytes, timeout: float = 10.0) -> bytes:
    """Stdout of ``proc`` until ``until`` appears in it (AssertionError after ``timeout``)."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while until not in buf:
        left = deadline - time.monotonic()
        assert left > 0, f"no {until!r} in time: {buf[-500:]!r}"
        ready, _, _ = select.select([fd], [], [], left)
        if ready:
            chunk = os.read(fd, 65536)
            assert chunk, f"tether ended early ({proc.wait(5)}): {buf[-500:]!r}"
            buf += chunk
    secrets_guard.record_output("the output of a tether subprocess", buf)
    return buf


# --- the scenarios: one per covered code ------------------------------------------------------


def s_usage_error(h: Harness) -> Setup:
    gw, env, token = h.gateway_env()
    return Setup(env, _total(gw), secrets=[token])


def s_unknown_context(h: Harness) -> Setup:
    gw = h.make_gateway()
    token = gw.mint_token("Viewer", ttl=300, sub="matrix-viewer")
    config = h.tmp / "config"
    config.mkdir(parents=True, exist_ok=True)
    (config / "config.toml").write_text(
        f'current-context = "prod"\n\n[contexts.prod]\ngateway = "{gw.url}"\n')
    return Setup(h.env(None, token), _total(gw), secrets=[token])


def s_not_configured(h: Harness) -> Setup:
    return Setup(h.env(None, None))


def s_invalid_url(h: Harness) -> Setup:
    return Setup(h.env("gopher://gw.example.invalid", "tth_" + "x" * 40))


def s_no_credentials(h: Harness) -> Setup:
    gw = h.make_gateway()
    return Setup(h.env(gw.url, None), _total(gw))


def s_keyring_unavailable(h: Harness) -> Setup:
    gw = h.make_gateway()
    env = h.env(gw.url, None, PYTHON_KEYRING_BACKEND="keyring.backends.fail.Keyring")
    return Setup(env, _total(gw))


def s_dns_failure(h: Harness) -> Setup:
    return Setup(h.env("http://tether-gw.invalid:7443", "tth_" + "d" * 40))


def s_connection_refused(h: Harness) -> Setup:
    return Setup(h.env(f"http://127.0.0.1:{free_port()}", "tth_" + "r" * 40))


def s_connect_timeout(h: Harness) -> Setup:
    server = h.hostile(silent())
    return Setup(h.env(server.url, "tth_" + "t" * 40), lambda: server.dials)


def s_tls_error(h: Harness) -> Setup:
    ca = h.request.getfixturevalue("tls_ca")
    ca_file = h.request.getfixturevalue("tls_ca_file")
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ca.issue_cert("gateway.other.example").configure_cert(context)
    server = h.hostile(silent(), tls=context)
    return Setup(h.env(server.url, "tth_" + "s" * 40), lambda: server.dials,
                 fill={"CA_FILE": str(ca_file)})


def s_proxy_error(h: Harness) -> Setup:
    proxy = h.stack.enter_context(ConnectProxy(refuse=407))
    env = h.env("http://gw.tether.invalid", "tth_" + "p" * 40, HTTP_PROXY=proxy.url)
    return Setup(env, lambda: proxy.uses)


def s_invalid_request(h: Harness) -> Setup:
    gw, env, token = h.gateway_env()
    return Setup(env, _path(gw, "/v1/logs"), secrets=[token])


def s_unauthorized(h: Harness) -> Setup:
    gw = h.make_gateway()
    token = forged_jwt(gw)
    return Setup(h.env(gw.url, token), _path(gw, "/v1/logs"), secrets=[token])


def s_token_expired(h: Harness) -> Setup:
    gw, env, token = h.gateway_env()
    gw.faults.expire_after = 0.3
    return Setup(env, _path(gw, "/v1/logs"), secrets=[token])


def s_refresh_failed(h: Harness) -> Setup:
    gw = h.make_gateway()
    forged = forged_jwt(gw)
    env, secrets = h.stored_login(gw, "Viewer", access=forged)
    gw.gateway.oauth.refresh(secrets[2])  # spent elsewhere: its reuse is invalid_grant
    return Setup(env, _path(gw, "/v1/logs"), secrets=secrets)


def s_permission_denied(h: Harness) -> Setup:
    gw = h.make_gateway()
    env, secrets = h.stored_login(gw, "Viewer")
    return Setup(env, _path(gw, "/v1/shell"), secrets=secrets)


def s_not_found(h: Harness) -> Setup:
    gw, env, token = h.gateway_env()
    return Setup(env, _path(gw, "/v1/logs"), secrets=[token])


def s_port_not_forwarded(h: Harness) -> Setup:
    gw, env, token = h.gateway_env("Deployer")
    return Setup(env, _path(gw, "/v1/port-forward"), fill={"PORT": str(free_port())},
                 secrets=[token])


def s_rate_limited(h: Harness) -> Setup:
    server = h.hostile(problem(429, "rate-limited", "slow down", retry_after=1))
    return Setup(h.env(server.url, "tth_" + "q" * 40), lambda: server.dials)


def s_gateway_error(h: Harness) -> Setup:
    gw, env, token = h.gateway_env()
    gw.faults.refuse_status = 500
    return Setup(env, _path(gw, "/v1/logs"), secrets=[token])


def s_gateway_unavailable(h: Harness) -> Setup:
    gw, env, token = h.gateway_env(session_limit=1)
    holder = gw.mint_token("Viewer", sub="holder")
    held = raw_dial(gw.url, "/v1/logs", holder, service="api", follow=1)
    h.stack.callback(held.close)
    return Setup(env, _path(gw, "/v1/logs", less=1), secrets=[token, holder])


def s_gateway_unreachable(h: Harness) -> Setup:
    gw = h.make_gateway()
    port = gw.port
    gw.stop()
    box = h.stack.enter_context(nginx(h.tmp / "nginx", port))
    return Setup(h.env(box.url, "tth_" + "g" * 40))


def s_backend_unavailable(h: Harness) -> Setup:
    gw, env, token = h.gateway_env()
    gw.faults.backend_down["api"] = "refuse"
    return Setup(env, _path(gw, "/v1/logs"), secrets=[token])


def s_agent_timeout(h: Harness) -> Setup:
    gw, env, token = h.gateway_env()
    gw.faults.agent_timeout["api"] = ""
    return Setup(env, _path(gw, "/v1/logs"), secrets=[token])


def _closing(h: Harness, close_code: int, reason: str) -> Setup:
    gw, env, token = h.gateway_env()
    faults = gw.faults
    faults.close_after_frames, faults.close_sessions = 0, 1000
    faults.close_code, faults.close_reason = close_code, reason
    return Setup(env, _path(gw, "/v1/logs"), secrets=[token])


def s_gateway_restarting(h: Harness) -> Setup:
    return _closing(h, 1012, "gateway-restarting: the service is restarting")


def s_overloaded(h: Harness) -> Setup:
    return _closing(h, 1013, "overloaded: try again later")


def s_connection_lost(h: Harness) -> Setup:
    server = h.hostile(upgrade_then(drop()))
    return Setup(h.env(server.url, "tth_" + "l" * 40), lambda: server.dials)


def s_keepalive_timeout(h: Harness) -> Setup:
    server = h.hostile(upgrade_then(stay_silent()))
    return Setup(h.env(server.url, "tth_" + "k" * 40), lambda: server.dials)


def s_target_unreachable(h: Harness) -> Setup:
    target = free_port()
    api = dataclasses.replace(h.config.services["api"], ports=(target,))
    gw, env, token = h.gateway_env("Deployer", services={"api": api})

    def drive(proc: subprocess.Popen[bytes]) -> tuple[float, bytes]:
        early = read_some(proc, b"\n")
        port = int(json_events(early.splitlines()[0])[0]["local_port"])
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
                contextlib.suppress(ConnectionResetError):
            assert sock.recv(10) == b""  # the connection is closed, not left hanging
        time.sleep(0.3)
        assert proc.poll() is None  # the forward goes on
        proc.send_signal(signal.SIGINT)
        return time.monotonic(), early

    return Setup(env, _path(gw, "/v1/port-forward"), fill={"PORT": str(target)}, drive=drive,
                 secrets=[token])


def s_message_too_big(h: Harness) -> Setup:
    gw, env, token = h.gateway_env("Deployer", max_message_size=1024)
    return Setup(env, _path(gw, "/v1/shell"), input=b"x" * 200_000, secrets=[token])


def s_protocol_error(h: Harness) -> Setup:
    server = h.hostile(respond(200, [("Content-Type", "text/html")], b"<html>login</html>"))
    return Setup(h.env(server.url, "tth_" + "h" * 40), lambda: server.dials)


def s_unexpected_status(h: Harness) -> Setup:
    server = h.hostile(respond(302, [("Location", "http://127.0.0.1:9/login")]))
    return Setup(h.env(server.url, "tth_" + "u" * 40), lambda: server.dials)


def s_local_port_in_use(h: Harness) -> Setup:
    gw, env, token = h.gateway_env("Deployer")
    taken = h.stack.enter_context(socket.create_server(("127.0.0.1", 0)))
    remote = h.config.services["api"].ports[0]
    return Setup(env, _path(gw, "/v1/port-forward"),
                 fill={"TAKEN": str(taken.getsockname()[1]), "PORT": str(remote)},
                 secrets=[token])


def s_interrupted(h: Harness) -> Setup:
    gw, env, token = h.gateway_env()

    def drive(proc: subprocess.Popen[bytes]) -> tuple[float, bytes]:
        early = read_some(proc, b"line 3")
        proc.send_signal(signal.SIGINT)
        return time.monotonic(), early

    return Setup(env, _path(gw, "/v1/logs"), drive=drive, secrets=[token])


SCENARIOS: dict[Code, Callable[[Harness], Setup]] = {
    Code.USAGE_ERROR: s_usage_error,
    Code.NOT_CONFIGURED: s_not_configured,
    Code.UNKNOWN_CONTEXT: s_unknown_context,
    Code.INVALID_URL: s_invalid_url,
    Code.NO_CREDENTIALS: s_no_credentials,
    Code.KEYRING_UNAVAILABLE: s_keyring_unavailable,
    Code.DNS_FAILURE: s_dns_failure,
    Code.CONNECTION_REFUSED: s_connection_refused,
    Code.CONNECT_TIMEOUT: s_connect_timeout,
    Code.TLS_ERROR: s_tls_error,
    Code.PROXY_ERROR: s_proxy_error,
    Code.INVALID_REQUEST: s_invalid_request,
    Code.UNAUTHORIZED: s_unauthorized,
    Code.TOKEN_EXPIRED: s_token_expired,
    Code.REFRESH_FAILED: s_refresh_failed,
    Code.PERMISSION_DENIED: s_permission_denied,
    Code.NOT_FOUND: s_not_found,
    Code.PORT_NOT_FORWARDED: s_port_not_forwarded,
    Code.RATE_LIMITED: s_rate_limited,
    Code.GATEWAY_ERROR: s_gateway_error,
    Code.GATEWAY_UNAVAILABLE: s_gateway_unavailable,
    Code.GATEWAY_UNREACHABLE: s_gateway_unreachable,
    Code.BACKEND_UNAVAILABLE: s_backend_unavailable,
    Code.AGENT_TIMEOUT: s_agent_timeout,
    Code.GATEWAY_RESTARTING: s_gateway_restarting,
    Code.OVERLOADED: s_overloaded,
    Code.CONNECTION_LOST: s_connection_lost,
    Code.KEEPALIVE_TIMEOUT: s_keepalive_timeout,
    Code.TARGET_UNREACHABLE: s_target_unreachable,
    Code.MESSAGE_TOO_BIG: s_message_too_big,
    Code.PROTOCOL_ERROR: s_protocol_error,
    Code.UNEXPECTED_STATUS: s_unexpected_status,
    Code.LOCAL_PORT_IN_USE: s_local_port_in_use,
    Code.INTERRUPTED: s_interrupted,
}


@pytest.fixture
def harness(request: pytest.FixtureRequest, tmp_path: Path,
            make_gateway: Callable[..., RunningGateway],
            gateway_config: GatewayConfig) -> Iterator[Harness]:
    with contextlib.ExitStack() as stack:
        yield Harness(request, tmp_path, make_gateway, gateway_config, stack)


def _filled(args: tuple[str, ...], fill: dict[str, str]) -> list[str]:
    out = []
    for arg in args:
        filled = arg
        for name, value in fill.items():
            filled = filled.replace(name, value)
        out.append(filled)
    return out


def test_every_code_has_a_case_or_a_reason_and_every_case_a_scenario() -> None:
    assert fault_table.coverage_problems() == []
    assert set(SCENARIOS) == {case.code for case in CASES}


def test_the_readme_table_is_generated_from_the_cases() -> None:
    text = fault_table.README.read_text(encoding="utf-8")
    assert fault_table.render_readme(text) == text, (
        "README.md's fault table is stale: run `python -m tests.fault_table --write`")
    for case in CASES:
        assert f"| `{case.code}` |" in text


@pytest.mark.parametrize("case", CASES, ids=lambda case: case.id)
def test_fault(case: FaultCase, harness: Harness) -> None:
    setup = SCENARIOS[case.code](harness)
    args = ["-o", "json", *_filled(case.options, setup.fill), *_filled(case.args, setup.fill)]
    budget = case.budget_seconds()
    bound = STARTUP + budget + (2.0 if budget else 0.0)
    early = b""
    if setup.drive is None:
        started = time.monotonic()
        done = run_tether(*args, env=setup.env, input=setup.input, timeout=bound + 10)
        elapsed = time.monotonic() - started
        status, out, err = done.returncode, done.stdout, done.stderr
    else:
        proc = spawn_tether(*args, env=setup.env, stdin=subprocess.DEVNULL)
        try:
            acted, early = setup.drive(proc)
            out, err = proc.communicate(timeout=10)
        finally:
            if proc.poll() is None:
                proc.kill()
                proc.communicate(timeout=5)
        elapsed = time.monotonic() - acted
        bound = 1.5  # Ctrl+C ends it at once
        status = proc.returncode
    assert status == case.exit_status, err.decode(errors="replace")[-2000:]
    assert elapsed < bound, f"took {elapsed:.2f} s, bound {bound} s"

    events = json_events(err)
    assert events, "no JSON on stderr"
    last = events[-1]
    assert last["event"] == "error", last
    if case.final:
        assert last["code"] == case.code
        assert last["exit_code"] == case.exit_status == CATALOG[case.code].exit_status
    else:
        assert last["code"] == Code.INTERRUPTED
        assert any(e.get("code") == case.code for e in events[:-1]), events

    dials = setup.dials() if setup.dials is not None else int(last.get("attempts", 0))
    retries = [e for e in events if e["event"] == "retry"]
    if case.dials == ">1":
        assert dials >= 2
        assert len(retries) == dials - 1
        assert {e["code"] for e in retries} == {case.code}
        assert last["attempts"] == dials
    else:
        assert dials == case.exact_dials()
        assert retries == []
    if case.dials == "2":
        assert [e["event"] for e in events].count("refresh") == 1
    assert_no_secrets(setup.secrets, early, out, err)
