"""`tether port-forward` as a user runs it: a subprocess against a real gateway on loopback."""

from __future__ import annotations

import contextlib
import json
import os
import select
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from tests.cli import assert_no_secrets, json_events, run_tether, spawn_tether, tether_env
from tether.gateway.runner import RunningGateway


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


def read_lines(proc: subprocess.Popen[bytes], count: int, timeout: float = 15.0) -> list[str]:
    """The first ``count`` lines of the child's stdout, or AssertionError with its stderr."""
    assert proc.stdout is not None
    fd = proc.stdout.fileno()
    buf = b""
    deadline = time.monotonic() + timeout
    while buf.count(b"\n") < count:
        left = deadline - time.monotonic()
        ready, _, _ = select.select([fd], [], [], max(left, 0))
        if not ready:
            proc.kill()
            raise AssertionError(f"no output in time; stderr: {proc.communicate()[1]!r}")
        data = os.read(fd, 65536)
        if not data:
            raise AssertionError(f"tether ended: {proc.wait(5)} {proc.communicate()[1]!r}")
        buf += data
    return buf.decode().splitlines()[:count]


def local_port(line: str) -> int:
    """The port of ``Forwarding from 127.0.0.1:PORT -> ...``."""
    return int(line.split()[2].rsplit(":", 1)[1])


@contextlib.contextmanager
def forward(env: dict[str, str], *args: str) -> Iterator[subprocess.Popen[bytes]]:
    proc = spawn_tether("port-forward", *args, env=env)
    try:
        yield proc
    finally:
        if proc.poll() is None:
            proc.kill()
        proc.communicate(timeout=10)


def echo_round(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while data := sock.recv(65536):
            out += data
        return out


def refused(port: int) -> bool:
    try:
        socket.create_connection(("127.0.0.1", port), timeout=2).close()
    except ConnectionRefusedError:
        return True
    return False


@pytest.fixture
def env(gateway: RunningGateway, deployer_token: str, tmp_path: Path) -> dict[str, str]:
    return tether_env(gateway.url, deployer_token, tmp_path)


def test_free_port_printed_forwarding_works_and_ctrl_c_says_how_many_were_closed(
        gateway: RunningGateway, deployer_token: str, echo_server: int,
        env: dict[str, str]) -> None:
    with forward(env, "api", f":{echo_server}") as proc:
        [line] = read_lines(proc, 1)
        assert line.startswith("Forwarding from 127.0.0.1:")
        assert line.endswith(f" -> api:{echo_server}")
        port = local_port(line)
        assert port != echo_server
        assert echo_round(port, b"hello through tether") == b"hello through tether"
        held = [socket.create_connection(("127.0.0.1", port), timeout=5) for _ in range(3)]
        for sock in held:
            sock.sendall(b"ping")
            assert sock.recv(10) == b"ping"
        proc.send_signal(signal.SIGINT)
        out, err = proc.communicate(timeout=10)
        assert proc.returncode == 130
        assert "Closed 3 connections." in err.decode()
        for sock in held:
            assert sock.recv(10) == b""  # closed, not left hanging
            sock.close()
        assert refused(port)
    assert_no_secrets([deployer_token], line, out, err)


def test_sigterm_exits_143(env: dict[str, str], echo_server: int) -> None:
    with forward(env, "api", f":{echo_server}") as proc:
        port = local_port(read_lines(proc, 1)[0])
        proc.send_signal(signal.SIGTERM)
        _, err = proc.communicate(timeout=10)
        assert proc.returncode == 143
        assert "Closed 0 connections." in err.decode()
        assert refused(port)


def test_viewer_gets_the_role_panel_before_anything_listens(
        gateway: RunningGateway, viewer_token: str, echo_server: int, tmp_path: Path) -> None:
    port = free_port()
    started = time.monotonic()
    proc = run_tether("port-forward", "api", f"{port}:{echo_server}",
                      env=tether_env(gateway.url, viewer_token, tmp_path))
    assert proc.returncode == 77
    err = proc.stderr.decode()
    assert "Deployer" in err and "Viewer" in err
    assert proc.stdout == b""  # nothing was announced
    assert gateway.dial_count["/v1/port-forward"] == 1
    assert refused(port)
    assert time.monotonic() - started < 10
    assert_no_secrets([viewer_token], proc.stdout, proc.stderr)


def test_unknown_service_exits_69_with_one_dial(gateway: RunningGateway, env: dict[str, str],
                                                echo_server: int) -> None:
    proc = run_tether("port-forward", "nope", f":{echo_server}", env=env)
    assert proc.returncode == 69
    assert "not-found" in proc.stderr.decode() or "Not found" in proc.stderr.decode()
    assert gateway.dial_count["/v1/port-forward"] == 1


def test_local_port_in_use_exits_71_before_any_dial(gateway: RunningGateway,
                                                     env: dict[str, str],
                                                     echo_server: int) -> None:
    with socket.create_server(("127.0.0.1", 0)) as taken:
        port = taken.getsockname()[1]
        proc = run_tether("port-forward", "api", f"{port}:{echo_server}", env=env)
    assert proc.returncode == 71
    err = proc.stderr.decode()
    assert f"127.0.0.1:{port} is already in use" in err
    assert ":REMOTE" in err  # the hint
    assert gateway.dial_count.get("/v1/port-forward", 0) == 0


@pytest.mark.parametrize(("spec", "words"), [
    ("99999", "from 1 to 65535"),
    ("0", "from 1 to 65535"),
    ("http", "is not a number"),
    ("1:2:3", "one colon"),
])
def test_bad_specs_are_usage_errors(gateway: RunningGateway, env: dict[str, str], spec: str,
                                    words: str) -> None:
    proc = run_tether("port-forward", "api", spec, env=env)
    assert proc.returncode == 2
    assert words in proc.stderr.decode()
    assert gateway.dial_count.get("/v1/port-forward", 0) == 0


def test_bad_address_is_a_usage_error(env: dict[str, str]) -> None:
    proc = run_tether("port-forward", "api", "5432", "--address", "example.com", env=env)
    assert proc.returncode == 2
    assert "not an IP address or localhost" in proc.stderr.decode()


def test_several_mappings_and_addresses(env: dict[str, str], echo_server: int) -> None:
    ipv6 = socket.has_ipv6
    try:
        socket.create_server(("::1", 0), family=socket.AF_INET6).close()
    except OSError:
        ipv6 = False
    addresses = ["--address", "127.0.0.1"] + (["--address", "::1"] if ipv6 else [])
    per = 2 if ipv6 else 1
    with forward(env, "api", f":{echo_server}", f"0:{echo_server}", *addresses) as proc:
        lines = read_lines(proc, 2 * per)
        assert all(x.endswith(f" -> api:{echo_server}") for x in lines)
        ports = {local_port(x) for x in lines}
        assert len(ports) == 2  # one free port per mapping, the same on every address
        if ipv6:
            assert sum("from [::1]:" in x for x in lines) == 2
        for port in ports:
            assert echo_round(port, b"each") == b"each"
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=10)
        assert proc.returncode == 130


def test_failed_connection_is_one_json_event_and_the_forward_goes_on(
        make_gateway: Callable[..., RunningGateway], gateway_config: object,
        tmp_path: Path) -> None:
    import dataclasses

    target = free_port()
    api = dataclasses.replace(gateway_config.services["api"],  # type: ignore[attr-defined]
                              ports=(target,))
    gw = make_gateway(services={"api": api})
    token = gw.mint_token("Deployer")
    env = tether_env(gw.url, token, tmp_path)
    with forward(env, "-o", "json", "api", f":{target}") as proc:
        [line] = read_lines(proc, 1)
        announced = json.loads(line)
        assert announced["event"] == "forwarding" and announced["remote_port"] == target
        port = announced["local_port"]
        for _ in range(2):
            with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
                    contextlib.suppress(ConnectionResetError):
                assert sock.recv(10) == b""
        time.sleep(0.3)
        assert proc.poll() is None  # still serving
        proc.send_signal(signal.SIGINT)
        _, err = proc.communicate(timeout=10)
    assert proc.returncode == 130
    events = json_events(err)
    failed = [e for e in events if e["event"] == "connection-failed"]
    assert len(failed) == 2
    assert {e["code"] for e in failed} == {"target-unreachable"}
    assert all(e["target"] == f"api:{target}" and e["connection"].startswith("127.0.0.1:")
               for e in failed)
    assert {"event": "closed", "connections": 0} in events
    assert events[-1]["code"] == "interrupted"
    assert_no_secrets([token], line, err)


def test_revoked_token_stops_the_forward_with_the_panel(gateway: RunningGateway,
                                                        echo_server: int,
                                                        tmp_path: Path) -> None:
    token = gateway.create_api_token("Deployer", name="ci")
    env = tether_env(gateway.url, token, tmp_path)
    with forward(env, "api", f":{echo_server}") as proc:
        port = local_port(read_lines(proc, 1)[0])
        assert echo_round(port, b"before") == b"before"
        gateway.gateway.tokens.revoke_api_token("ci")
        with socket.create_connection(("127.0.0.1", port), timeout=5) as sock, \
                contextlib.suppress(ConnectionResetError):
            sock.recv(10)
        out, err = proc.communicate(timeout=10)
    assert proc.returncode == 77
    assert "Not authenticated" in err.decode() or "unauthorized" in err.decode()
    assert refused(port)
    assert_no_secrets([token], out, err)
