"""``/v1/shell``: a real pty with resize and eof, and pipes with stdout and stderr apart."""

from __future__ import annotations

import json
import subprocess
import time

from tests.gateway_client import collect, dial, refusal
from tether.gateway.runner import RunningGateway


def _read_until(ws, needle: bytes, timeout: float = 5.0) -> bytes:
    out = b""
    deadline = time.monotonic() + timeout
    while needle not in out:
        left = deadline - time.monotonic()
        assert left > 0, f"{needle!r} not seen in {out[-300:]!r}"
        message = ws.recv(timeout=left)
        if isinstance(message, bytes):
            assert message[0] == 1
            out += message[1:]
    return out


def test_tty_echo_resize_and_exit(gateway: RunningGateway, deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=1, cols=100, rows=30)
    session = json.loads(ws.recv(timeout=5))
    assert session["type"] == "session"
    ws.send(b"\x00stty size; tty; echo $TETHER_SERVICE-$APP_ENV\n")
    out = _read_until(ws, b"api-test")
    assert b"30 100" in out and b"/dev/" in out
    ws.send(json.dumps({"type": "resize", "cols": 120, "rows": 40}))
    ws.send(b"\x00stty size\n")
    assert b"40 120" in _read_until(ws, b"40 120")
    ws.send(b"\x00exit 5\n")
    closed = collect(ws)
    assert closed.code == 1000
    assert json.loads(closed.text[-1]) == {"type": "exit", "code": 5}


def test_tty_takes_the_client_terminals_modes(gateway: RunningGateway,
                                              deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=1,
              modes="erase=8,iutf8,-ixon,-onlcr,-futuremode,vfuture=3",
              command=["sh", "-c", "stty -a; echo done-$((6*7))"])
    ws.recv(timeout=5)
    out = _read_until(ws, b"done-42").decode()
    assert "erase = ^H" in out
    assert " iutf8" in out and " -ixon" in out and " -onlcr" in out
    assert "\r\n" not in out  # -onlcr: the pty leaves newlines alone
    collect(ws)


def test_tty_refuses_malformed_modes(gateway: RunningGateway, deployer_token: str) -> None:
    r = refusal(gateway.url, "/v1/shell", deployer_token, service="api", tty=1,
                modes="erase=999")
    assert r.status == 400
    detail = json.loads(r.body)["detail"]
    assert "erase" in detail and "0 to 255" in detail


def test_tty_eof_sends_the_terminal_eof_character(gateway: RunningGateway,
                                                  deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=1, command=["cat"])
    ws.recv(timeout=5)
    ws.send(b"\x00hello\n")
    _read_until(ws, b"hello\r\nhello")  # the terminal's echo, then cat's copy
    ws.send(json.dumps({"type": "eof"}))
    closed = collect(ws)
    assert json.loads(closed.text[-1]) == {"type": "exit", "code": 0}


def test_tty_has_a_controlling_terminal_and_ctrl_c_interrupts(gateway: RunningGateway,
                                                               deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=1,
              command=["sh", "-c", "sleep 20; echo not-interrupted"])
    ws.recv(timeout=5)
    time.sleep(0.3)
    ws.send(b"\x00\x03")  # ^C: SIGINT to the foreground process group
    closed = collect(ws, timeout=5)
    assert b"not-interrupted" not in closed.binary
    assert json.loads(closed.text[-1]) == {"type": "exit", "code": 130}


def test_pipes_keep_stdout_and_stderr_apart(gateway: RunningGateway, deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["sh", "-c", "echo out; echo err >&2; exit 3"])
    closed = collect(ws)
    frames = [m for m in closed.messages if isinstance(m, bytes)]
    stdout = b"".join(m[1:] for m in frames if m[0] == 1)
    stderr = b"".join(m[1:] for m in frames if m[0] == 2)
    assert stdout == b"out\n" and stderr == b"err\n"
    assert json.loads(closed.text[-1]) == {"type": "exit", "code": 3}


def test_pipes_stdin_and_eof(gateway: RunningGateway, deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0, command=["wc", "-c"])
    ws.recv(timeout=5)
    ws.send(b"\x00" + b"x" * 100_000)
    ws.send(json.dumps({"type": "eof"}))
    closed = collect(ws)
    assert closed.binary[1:].strip() == b"100000"
    assert json.loads(closed.text[-1])["code"] == 0


def test_signal_exit_status_is_128_plus_signal(gateway: RunningGateway,
                                               deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["sh", "-c", "kill -TERM $$"])
    closed = collect(ws)
    assert json.loads(closed.text[-1]) == {"type": "exit", "code": 143}


def test_missing_command_exits_127(gateway: RunningGateway, deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["/no/such/program"])
    closed = collect(ws)
    assert json.loads(closed.text[-1]) == {"type": "exit", "code": 127}
    assert closed.code == 1000


def test_large_output_arrives_whole(gateway: RunningGateway, deployer_token: str) -> None:
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["sh", "-c", "head -c 5000000 /dev/zero"])
    closed = collect(ws, timeout=20)
    assert len(closed.binary) - sum(1 for m in closed.messages if isinstance(m, bytes)) == 5_000_000
    assert json.loads(closed.text[-1])["code"] == 0


def test_client_leaving_kills_the_process(gateway: RunningGateway, deployer_token: str,
                                          tmp_path) -> None:
    marker = tmp_path / "pid"
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["sh", "-c", f"echo $$ > {marker}; exec sleep 30"])
    ws.recv(timeout=5)
    for _ in range(50):
        if marker.exists() and marker.read_text().strip():
            break
        time.sleep(0.05)
    pid = int(marker.read_text())
    ws.close()
    import os

    for _ in range(60):
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            break
        time.sleep(0.05)
    else:
        raise AssertionError("the shell process outlived its session")
    for _ in range(40):
        if gateway.session_count == 0:
            break
        time.sleep(0.05)
    assert gateway.session_count == 0


def test_stdin_beyond_the_pipe_waits_for_a_late_reader(gateway: RunningGateway,
                                                       deployer_token: str) -> None:
    """A process that reads its stdin late: the gateway's writes wait (and it stops
    reading the client) instead of dropping; every byte arrives, in order."""
    ws = dial(gateway.url, "/v1/shell", deployer_token, service="api", tty=0,
              command=["sh", "-c", "sleep 1; cksum"])
    ws.recv(timeout=5)
    payload = bytes(range(256)) * 8192  # 2 MiB: far beyond a pipe's 64 KiB
    for start in range(0, len(payload), 65536):
        ws.send(b"\x00" + payload[start:start + 65536])
    ws.send(json.dumps({"type": "eof"}))
    closed = collect(ws, timeout=30)
    expected = subprocess.run(["cksum"], input=payload, capture_output=True, check=True).stdout
    assert closed.binary[1:] == expected
    assert json.loads(closed.text[-1])["code"] == 0
