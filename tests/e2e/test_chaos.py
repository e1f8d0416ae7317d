"""Chaos between the client and the gateway: a proxy that cuts, stalls and trickles.

The installed ``tether`` talks to a real gateway through :class:`ChaosProxy`.
``logs -f`` must print every record exactly once however often the connection
is cut; port-forward must keep its listener; shell must reconnect to a new
shell; a stalled path must be declared dead within the keepalive bound; and
Ctrl+C must end every command within a second, connected or waiting to
reconnect, with the terminal as it was.
"""

from __future__ import annotations

import contextlib
import json
import os
import signal
import socket
import threading
import time
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from tests.chaos import ChaosProxy, cli_env
from tests.cli import Gathered, assert_no_secrets, json_events
from tests.e2e.test_shell import Term, assert_terminal_restored, wrapped_term
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(45)

N_RECORDS = 2000


class Watched(Gathered):
    """Any tether command running, as Gathered, with waits for what it prints."""

    def until(self, what: str, check: Callable[[], bool], timeout: float = 10.0) -> float:
        """Wait until ``check()``; the moment it held (AssertionError after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while not check():
            assert self.proc.poll() is None, (
                f"tether ended ({self.proc.returncode}) waiting for {what}: "
                f"{bytes(self.err[-1500:])!r}")
            assert time.monotonic() < deadline, (
                f"no {what} in {timeout} s: {len(self.lines)} lines, "
                f"{bytes(self.err[-1500:])!r}")
            time.sleep(0.01)
        return time.monotonic()

    def lines_at_least(self, count: int, timeout: float = 10.0) -> float:
        return self.until(f"{count} lines", lambda: len(self.lines) >= count, timeout)

    def events(self) -> list[dict[str, Any]]:
        text = bytes(self.err)
        complete = text[: text.rfind(b"\n") + 1]
        return json_events(complete)

    def event(self, name: str, code: str | None = None, after: int = 0) -> Callable[[], bool]:
        """A check: an event ``name`` (with ``code``) beyond the first ``after`` events."""
        def check() -> bool:
            return any(e["event"] == name and (code is None or e.get("code") == code)
                       for e in self.events()[after:])
        return check

    def interrupt(self) -> tuple[int, float]:
        """SIGINT; the exit status and the seconds it took to exit."""
        started = time.monotonic()
        self.proc.send_signal(signal.SIGINT)
        status = self.proc.wait(5)
        elapsed = time.monotonic() - started
        for thread in self._threads:
            thread.join(5)
        self.record()
        return status, elapsed



@pytest.fixture
def proxy(gateway: RunningGateway) -> Iterator[ChaosProxy]:
    with ChaosProxy(gateway.port) as chaos:
        yield chaos


@pytest.fixture
def v1_gateway(make_gateway: Callable[..., RunningGateway]) -> RunningGateway:
    """A gateway without tether.v2 (``resume = false``): a cut costs the session, as
    tests/e2e/test_resume_cli.py shows it does not with v2."""
    return make_gateway(resume=False)


@pytest.fixture
def v1_proxy(v1_gateway: RunningGateway) -> Iterator[ChaosProxy]:
    with ChaosProxy(v1_gateway.port) as chaos:
        yield chaos


@pytest.fixture
def watch() -> Iterator[Callable[..., Watched]]:
    started: list[Watched] = []

    def start(*args: str, env: dict[str, str]) -> Watched:
        started.append(Watched(*args, env=env))
        return started[-1]

    yield start
    for one in started:
        one.kill()




def stamp() -> str:
    return datetime.now(UTC).strftime("%Y-%m-%dT%H:%M:%S.%fZ")


def messages(lines: list[bytes]) -> list[tuple[str, str]]:
    out = []
    for line in lines:
        record = json.loads(line)
        out.append((record["instance"], record["message"]))
    return out


def echo_round(port: int, payload: bytes) -> bytes:
    with socket.create_connection(("127.0.0.1", port), timeout=10) as sock:
        sock.sendall(payload)
        sock.shutdown(socket.SHUT_WR)
        out = b""
        while data := sock.recv(65536):
            out += data
        return out


# --- logs -f: nothing lost, nothing repeated ---------------------------------------------------


def test_logs_follow_loses_and_repeats_nothing_through_cuts_stalls_and_trickles(
        gateway: RunningGateway, proxy: ChaosProxy, viewer_token: str, log_dir: Path,
        tmp_path: Path, watch: Callable[..., Watched]) -> None:
    run = watch("logs", "api", "-f", "-o", "json", env=cli_env(proxy, viewer_token, tmp_path))
    run.lines_at_least(6)
    done = threading.Event()

    def write() -> None:
        with (log_dir / "api-1.log").open("a") as handle:
            for start in range(0, N_RECORDS, 25):
                handle.write("".join(f"{stamp()} rec {i:05d}\n"
                                     for i in range(start, min(start + 25, N_RECORDS))))
                handle.flush()
                if done.wait(0.04):
                    return

    writer = threading.Thread(target=write, daemon=True)
    writer.start()
    try:
        cuts = 0
        for seen in (300, 800, 1300):
            run.lines_at_least(6 + seen, timeout=15)
            # records just flowed, so the live connection is among those reset (with perhaps
            # a dial the stall made the client give up): one cut, one reconnect
            cuts += min(1, proxy.cut())
            if seen == 800:
                proxy.stall(True)
                time.sleep(0.4)
                proxy.stall(False)
            if seen == 300:
                proxy.trickle = 512
            else:
                proxy.trickle = 0
        assert cuts >= 3
        run.lines_at_least(6 + N_RECORDS, timeout=25)
        # the last cut may come after the last record, and its reconnect waits out a backoff
        run.until(f"{cuts} reconnects", lambda: sum(
            e["event"] == "reconnected" for e in run.events()) >= cuts, timeout=15)
        time.sleep(0.3)  # a repeat would arrive now
        status, elapsed = run.interrupt()
    finally:
        done.set()
        writer.join(10)
    assert status == 130 and elapsed < 1.0
    got = messages(run.lines)
    assert len(got) == len(set(got)), "a record was printed twice"
    first = [m for i, m in got if i == "api-1"]
    assert first == [f"api-1 line {n}" for n in (1, 2, 3)] + [
        f"rec {i:05d}" for i in range(N_RECORDS)]
    assert [m for i, m in got if i == "api-2"] == [f"api-2 line {n}" for n in (1, 2, 3)]
    events = run.events()
    assert sum(e["event"] == "reconnected" for e in events) >= 3
    assert events[-1]["code"] == "interrupted"
    assert proxy.accepted >= 4
    assert_no_secrets([viewer_token], b"".join(run.lines), bytes(run.err))


def test_stalled_path_is_declared_dead_within_the_keepalive_bound_then_resumes(
        gateway: RunningGateway, proxy: ChaosProxy, viewer_token: str, log_dir: Path,
        tmp_path: Path, watch: Callable[..., Watched]) -> None:
    run = watch("logs", "api", "-f", "-o", "json", "--keepalive-interval", "0.5s",
                "--keepalive-timeout", "2s", "--connect-timeout", "2s",
                env=cli_env(proxy, viewer_token, tmp_path))
    run.lines_at_least(6)
    proxy.stall(True)
    stalled = time.monotonic()
    with (log_dir / "api-2.log").open("a") as handle:
        handle.write(f"{stamp()} written while stalled\n")
    dead = run.until("keepalive-timeout", run.event("retry", "keepalive-timeout"), timeout=6)
    assert dead - stalled < 3.0
    proxy.stall(False)
    proxy.cut()
    back = run.until("reconnected", run.event("reconnected"), timeout=6)
    assert back - dead < 3.0
    run.lines_at_least(7, timeout=5)
    time.sleep(0.3)
    status, elapsed = run.interrupt()
    assert status == 130 and elapsed < 1.0
    got = messages(run.lines)
    assert got.count(("api-2", "written while stalled")) == 1
    assert len(got) == 7 == len(set(got))


# --- port-forward: the listener survives ---------------------------------------------------------


def test_port_forward_keeps_listening_and_later_connections_work_after_cuts(
        v1_gateway: RunningGateway, v1_proxy: ChaosProxy, echo_server: int,
        tmp_path: Path, watch: Callable[..., Watched]) -> None:
    proxy, deployer_token = v1_proxy, v1_gateway.mint_token("Deployer", sub="deployer")
    run = watch("port-forward", "api", f":{echo_server}", "-o", "json",
                env=cli_env(proxy, deployer_token, tmp_path))
    run.lines_at_least(1)
    port = int(json.loads(run.lines[0])["local_port"])
    assert echo_round(port, b"before") == b"before"
    for n in range(3):
        held = socket.create_connection(("127.0.0.1", port), timeout=5)
        held.sendall(b"held")
        assert held.recv(10) == b"held"
        assert proxy.cut() >= 1
        held.settimeout(5)
        with contextlib.suppress(ConnectionResetError):
            assert held.recv(10) == b""  # the cut connection is closed, not left hanging
        held.close()
        payload = f"after cut {n}".encode() * 1000
        assert echo_round(port, payload) == payload
    assert run.proc.poll() is None
    status, elapsed = run.interrupt()
    assert status == 130 and elapsed < 1.0
    failed = [e for e in run.events() if e["event"] == "connection-failed"]
    assert len(failed) == 3
    assert_no_secrets([deployer_token], b"".join(run.lines), bytes(run.err))


# --- shell: a new shell after a cut ---------------------------------------------------------------


def test_shell_reconnects_to_a_new_shell_after_a_cut(
        v1_gateway: RunningGateway, v1_proxy: ChaosProxy, tmp_path: Path,
        terms: list[Term]) -> None:
    proxy, deployer_token = v1_proxy, v1_gateway.mint_token("Deployer", sub="deployer")
    gateway = v1_gateway
    term = Term(["/bin/sh", "-c", "exec \"$0\" -m tether shell api", _python()],
                cli_env(proxy, deployer_token, tmp_path), tmp_path)
    terms.append(term)
    term.prompt()
    term.child.sendline("echo up-$((1+1))")
    term.expect("up-2")
    assert proxy.cut() >= 1
    term.expect("NEW shell")
    term.prompt()
    term.child.sendline("echo back-$((2+2))")
    term.expect("back-4")
    term.child.sendline("exit 5")
    assert term.status() == 5
    assert gateway.dial_count["/v1/shell"] == 2
    assert_no_secrets([deployer_token], term.output)


def _python() -> str:
    from tests.cli import TETHER

    return TETHER[0]


# --- Ctrl+C: within a second, connected or waiting ------------------------------------------------


def _wait_to_reconnect(proxy: ChaosProxy) -> None:
    proxy.refuse = True
    proxy.cut()


@pytest.mark.parametrize("state", ["connected", "waiting"])
def test_ctrl_c_ends_logs_within_a_second(
        state: str, gateway: RunningGateway, proxy: ChaosProxy, viewer_token: str,
        tmp_path: Path, watch: Callable[..., Watched]) -> None:
    run = watch("logs", "api", "-f", "-o", "json", env=cli_env(proxy, viewer_token, tmp_path))
    run.lines_at_least(6)
    if state == "waiting":
        _wait_to_reconnect(proxy)
        run.until("a retry", run.event("retry"))
    status, elapsed = run.interrupt()
    assert status == 130 and elapsed < 1.0
    assert run.events()[-1]["code"] == "interrupted"


@pytest.mark.parametrize("state", ["connected", "waiting"])
def test_ctrl_c_ends_port_forward_within_a_second(
        state: str, gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str,
        echo_server: int, tmp_path: Path, watch: Callable[..., Watched]) -> None:
    run = watch("port-forward", "api", f":{echo_server}", "-o", "json",
                env=cli_env(proxy, deployer_token, tmp_path))
    run.lines_at_least(1)
    port = int(json.loads(run.lines[0])["local_port"])
    with socket.create_connection(("127.0.0.1", port), timeout=5) as held:
        if state == "connected":
            held.sendall(b"x")
            assert held.recv(1) == b"x"
        else:
            _wait_to_reconnect(proxy)
            with socket.create_connection(("127.0.0.1", port), timeout=5):
                run.until("a retry", run.event("connection-retry"))
        status, elapsed = run.interrupt()
    assert status == 130 and elapsed < 1.0
    assert run.events()[-1]["code"] == "interrupted"


def _tether_pid(term: Term) -> int:
    shell_pid = term.child.pid
    children = Path(f"/proc/{shell_pid}/task/{shell_pid}/children").read_text().split()
    assert len(children) == 1
    return int(children[0])


def test_ctrl_c_ends_a_shell_waiting_to_reconnect_with_the_terminal_restored(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str, tmp_path: Path,
        terms: list[Term]) -> None:
    term = wrapped_term(terms, cli_env(proxy, deployer_token, tmp_path), tmp_path, "shell", "api")
    term.prompt()
    _wait_to_reconnect(proxy)
    term.expect("Reconnecting in")
    started = time.monotonic()
    term.child.sendcontrol("c")  # the terminal is cooked while waiting: this is SIGINT
    term.expect("tether-rc=130")
    assert time.monotonic() - started < 1.0
    assert term.status() == 0
    assert_terminal_restored(tmp_path)
    assert_no_secrets([deployer_token], term.output)


def test_sigint_ends_a_connected_shell_with_the_terminal_restored(
        gateway: RunningGateway, proxy: ChaosProxy, deployer_token: str, tmp_path: Path,
        terms: list[Term]) -> None:
    # Connected, the terminal is raw and the Ctrl+C key goes to the remote program
    # (test_shell.py); the signal SIGINT is what ends tether itself.
    term = wrapped_term(terms, cli_env(proxy, deployer_token, tmp_path), tmp_path, "shell", "api")
    term.prompt()
    term.child.sendline("echo live-$((4+4))")
    term.expect("live-8")
    started = time.monotonic()
    os.kill(_tether_pid(term), signal.SIGINT)
    term.expect("tether-rc=130")
    assert time.monotonic() - started < 1.0
    assert term.status() == 0
    assert_terminal_restored(tmp_path)
