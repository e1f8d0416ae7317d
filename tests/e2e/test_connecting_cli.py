"""What ``tether`` shows while a dial waits: the stage it waits for, and nothing once it is over.

Against servers of the suite's own that accept and do not answer until the
test lets them (:mod:`tests.hostile`): with ``-o json`` one ``connecting``
event per stage; on a real terminal (pexpect) one live line naming the stage,
erased when connected or replaced by the final error; in a pipe, no line.
Each server is held until the test has seen what tether shows, so nothing
depends on timing.
"""

from __future__ import annotations

import ssl
import threading
import time
from pathlib import Path
from typing import Any

import pexpect
import pytest

from tests.cli import TETHER, Gathered, assert_no_secrets, json_events, run_tether, tether_env
from tests.hostile import HostileServer, Peer, close, mute, send, silent
from tether.protocol import LogRecord, encode_log_record

pytestmark = pytest.mark.timeout(60)

TOKEN = "tth_connecting-test-token"
RECORD = encode_log_record(LogRecord("c1", "2026-01-02T03:04:05.000000Z", "web-1", "stdout",
                                     "hello")).encode() + b"\n"


def held_tls(context: ssl.SSLContext, gate: threading.Event) -> Any:
    """Accept TCP; start TLS only once ``gate`` is set; then read the request and stay silent."""
    def run(peer: Peer) -> None:
        if not gate.wait(20):
            return
        peer.sock = context.wrap_socket(peer.sock, server_side=True)
        peer.read_request()
        peer.wait()
    return run


def held_answer(gate: threading.Event) -> Any:
    """Read the request; answer (101, one record, close 1000) only once ``gate`` is set."""
    def run(peer: Peer) -> None:
        peer.read_request()
        if not gate.wait(20):
            return
        peer.upgrade()
        send(0x1, RECORD)(peer)
        close(1000)(peer)
    return run


def wait_for_events(run: Gathered, count: int, timeout: float = 15.0) -> list[dict[str, Any]]:
    """The first ``count`` JSON events on stderr, once they are there."""
    deadline = time.monotonic() + timeout
    while True:
        text = bytes(run.err)
        complete = text[:text.rfind(b"\n") + 1]
        events = json_events(complete)
        if len(events) >= count:
            return events
        assert run.proc.poll() is None, f"ended early: {text[-2000:]!r}"
        assert time.monotonic() < deadline, f"{len(events)} of {count} events: {text!r}"
        time.sleep(0.02)


def test_json_names_each_stage_as_it_changes(tls_ca: Any, tls_ca_file: Path,
                                             tmp_path: Path) -> None:
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    tls_ca.issue_cert("127.0.0.1").configure_cert(context)
    gate = threading.Event()
    with HostileServer(held_tls(context, gate)) as server:
        env = tether_env(f"https://127.0.0.1:{server.port}", TOKEN, tmp_path)
        run = Gathered("-o", "json", "--ca-cert", str(tls_ca_file), "--connect-timeout", "20s",
                       "logs", "api", env=env)
        try:
            first = wait_for_events(run, 1)
            gate.set()  # TLS goes through; the gateway then never answers the upgrade
            second = wait_for_events(run, 2)
        finally:
            run.kill()
    where = f"127.0.0.1:{server.port}"
    assert first[0]["event"] == "connecting" and first[0]["stage"] == "tls"
    assert first[0]["target"] == where and first[0]["elapsed"] >= 0.5
    assert second[1]["event"] == "connecting" and second[1]["stage"] == "handshake"
    assert second[1]["target"] == where
    assert_no_secrets([TOKEN], bytes(run.out), bytes(run.err))


def test_json_names_the_proxy_stage(tmp_path: Path) -> None:
    with HostileServer(mute()) as proxy:
        env = tether_env("http://gw.tether.invalid", TOKEN, tmp_path,
                         HTTP_PROXY=f"http://127.0.0.1:{proxy.port}")
        done = run_tether("-o", "json", "--connect-timeout", "2s", "--retry-for", "0",
                          "logs", "api", env=env)
    events = json_events(done.stderr)
    assert_no_secrets([TOKEN], done.stdout, done.stderr)
    assert events[0]["event"] == "connecting" and events[0]["stage"] == "proxy"
    assert events[0]["target"] == f"127.0.0.1:{proxy.port}"
    assert [e["event"] for e in events[1:]] == ["error"]
    assert events[-1]["code"] in ("connect-timeout", "proxy-error")


def test_a_pipe_gets_no_connecting_line(tmp_path: Path) -> None:
    with HostileServer(silent()) as server:
        done = run_tether("--connect-timeout", "1.5s", "--retry-for", "0", "logs", "api",
                          env=tether_env(server.url, TOKEN, tmp_path))
    assert done.returncode == 69
    text = done.stderr.decode()
    assert "Connecting" not in text and "\x1b[2K" not in text
    assert "Connection timed out" in text


def _spawn(env: dict[str, str], *args: str) -> pexpect.spawn:
    return pexpect.spawn(TETHER[0], [*TETHER[1:], *args], env=env, timeout=15,
                         dimensions=(24, 200))


def test_on_a_terminal_the_line_names_the_stage_and_is_erased_once_connected(
        tmp_path: Path) -> None:
    gate = threading.Event()
    with HostileServer(held_answer(gate)) as server:
        child = _spawn(tether_env(server.url, TOKEN, tmp_path), "logs", "api")
        try:
            child.expect(rb"Connecting: waiting for the gateway's answer from "
                         rb"127\.0\.0\.1:\d+ \(\d+\.\d s\)")
            gate.set()
            child.expect(rb"\[web-1\] hello")
            shown: bytes = child.before
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
    assert shown.rfind(b"\r\x1b[2K") > shown.rfind(b"Connecting")  # erased before the record
    assert_no_secrets([TOKEN], shown)
    assert child.exitstatus == 0


def test_on_a_terminal_the_line_is_replaced_by_the_final_error(tmp_path: Path) -> None:
    with HostileServer(silent()) as server:
        child = _spawn(tether_env(server.url, TOKEN, tmp_path), "--connect-timeout", "2s",
                       "--retry-for", "0", "logs", "api")
        try:
            child.expect(rb"Connecting: waiting for the gateway's answer")
            child.expect(rb"Connection timed out")
            shown: bytes = child.before
            child.expect(pexpect.EOF)
        finally:
            child.close(force=True)
    assert shown.rfind(b"\r\x1b[2K") > shown.rfind(b"Connecting")  # erased before the error
    assert_no_secrets([TOKEN], shown)
    assert child.exitstatus == 69
