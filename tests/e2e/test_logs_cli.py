"""``tether logs`` as a user runs it: on a terminal (pexpect), piped into head, and Ctrl+C'd."""

from __future__ import annotations

import json
import shlex
import signal
import subprocess
import threading
import time
from collections.abc import Callable
from pathlib import Path

import pexpect
import pytest

from tests.cli import TETHER, Follower, assert_no_secrets, spawn_tether, tether_env
from tether.cli.output.logprint import color_of
from tether.gateway.runner import RunningGateway

pytestmark = pytest.mark.timeout(30)


def _on_terminal(env: dict[str, str], *args: str) -> bytes:
    child = pexpect.spawn(TETHER[0], [*TETHER[1:], "logs", *args], env=env, timeout=15,
                          dimensions=(24, 200))
    child.expect(pexpect.EOF)
    child.wait()
    assert child.exitstatus == 0, child.before
    output: bytes = child.before
    return output


def test_prefixes_are_coloured_per_instance_on_a_terminal_only(
        gateway: RunningGateway, viewer_token: str, tmp_path: Path) -> None:
    env = tether_env(gateway.url, viewer_token, tmp_path)
    del env["NO_COLOR"]
    env["TERM"] = "xterm-256color"
    shown = _on_terminal(env, "api", "--tail", "1")
    for name in ("api-1", "api-2"):
        assert f"\x1b[{color_of(name)}m[{name}]\x1b[0m {name} line 3".encode() in shown
    plain = _on_terminal({**env, "NO_COLOR": "1"}, "api", "--tail", "1")
    assert b"\x1b[" not in plain and b"[api-1] api-1 line 3" in plain
    assert_no_secrets([viewer_token], shown, plain)


def test_ctrl_c_mid_stream_exits_130_promptly_with_whole_lines(
        gateway: RunningGateway, viewer_token: str, log_dir: Path, tmp_path: Path,
        follower: Callable[..., Follower]) -> None:
    stop = threading.Event()

    def generate() -> None:
        with (log_dir / "api-1.log").open("a") as handle:
            for n in range(2000):
                if stop.is_set():
                    return
                handle.write("".join(f"busy {n} {i} " + "y" * 80 + "\n" for i in range(200)))
                handle.flush()
                time.sleep(0.005)

    generator = threading.Thread(target=generate)
    generator.start()
    try:
        run = follower("api", "-f", "-o", "json", env=tether_env(gateway.url, viewer_token,
                                                                 tmp_path))
        run.wait_for(5000)
        started = time.monotonic()
        code = run.interrupt()
        elapsed = time.monotonic() - started
    finally:
        stop.set()
        generator.join(10)
    assert code == 130
    assert elapsed < 2.0
    out = bytes(run.out)
    assert out.endswith(b"\n")
    records = [json.loads(line) for line in out.splitlines()]
    assert len(records) >= 5000
    assert json.loads(bytes(run.err).splitlines()[-1])["code"] == "interrupted"
    assert_no_secrets([viewer_token], out, bytes(run.err))


def test_ctrl_c_while_waiting_to_reconnect_exits_at_once(
        gateway: RunningGateway, viewer_token: str, tmp_path: Path,
        follower: Callable[..., Follower]) -> None:
    run = follower("api", "-f", env=tether_env(gateway.url, viewer_token, tmp_path))
    run.wait_for(6)
    gateway.stop()
    deadline = time.monotonic() + 10
    while b"Reconnecting" not in run.err and time.monotonic() < deadline:
        time.sleep(0.02)
    assert b"Reconnecting" in run.err
    started = time.monotonic()
    assert run.interrupt() == 130
    assert time.monotonic() - started < 1.0
    assert bytes(run.err).rstrip().endswith(b"Interrupted (SIGINT).")


def test_a_closed_pipe_ends_it_quietly_like_head_expects(
        gateway: RunningGateway, viewer_token: str, log_dir: Path, tmp_path: Path) -> None:
    proc = spawn_tether("logs", "api", "-f", env=tether_env(gateway.url, viewer_token, tmp_path),
                        stdin=subprocess.DEVNULL)
    try:
        assert proc.stdout is not None and proc.stderr is not None
        assert proc.stdout.readline().startswith(b"[api-")
        proc.stdout.close()  # what `| head -1` does after its line
        with (log_dir / "api-1.log").open("a") as handle:
            for i in range(100):
                handle.write(f"more {i}\n")
                handle.flush()
                if proc.poll() is not None:
                    break
                time.sleep(0.05)
        code = proc.wait(10)
        assert (code, proc.stderr.read()) == (141, b"")
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)


def test_the_real_pipeline_into_head(gateway: RunningGateway, viewer_token: str,
                                     tmp_path: Path) -> None:
    env = tether_env(gateway.url, viewer_token, tmp_path)
    command = " ".join(shlex.quote(a) for a in [*TETHER, "logs", "api", "--tail", "3"])
    done = subprocess.run(["bash", "-c", f"{command} | head -1; echo \"${{PIPESTATUS[0]}}\" >&2"],
                          env=env, capture_output=True, timeout=20, check=False)
    assert done.stdout.count(b"\n") == 1 and done.stdout.startswith(b"[api-")
    assert done.stderr.strip() in (b"0", b"141")  # 0 when all fit in the pipe before head quit
    assert_no_secrets([viewer_token], done.stdout, done.stderr)


def test_sigterm_is_143(gateway: RunningGateway, viewer_token: str, tmp_path: Path,
                        follower: Callable[..., Follower]) -> None:
    run = follower("api", "-f", env=tether_env(gateway.url, viewer_token, tmp_path))
    run.wait_for(6)
    run.proc.send_signal(signal.SIGTERM)
    assert run.wait(5) == 143
