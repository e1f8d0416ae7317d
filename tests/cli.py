"""Running the installed ``tether`` as a subprocess, the way a user does, and reading what it said.

- ``tether_env(gateway, token, tmp)``: a clean environment: no TETHER_* or proxy
  variables from outside, config and state in ``tmp``, no colour, the given
  gateway and token.
- ``run_tether(*args, env=..., input=..., timeout=...)``: run to completion (bounded).
- ``spawn_tether(*args, env=...)``: a Popen for tests that interrupt or watch it.
- ``json_events(stderr)``: the JSON objects of ``--output json`` stderr, in order.
- ``assert_no_secrets(secrets, *texts)``: none of the token values appears anywhere.
- ``Follower(*args, env=...)``: ``tether logs ARGS`` running, its output gathered
  by two threads (the ``follower`` fixture starts them and kills them afterwards).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any

from tests import secrets_guard

TETHER = [sys.executable, "-m", "tether"]
_SCRUB = ("TETHER_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
          "all_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE", "FORCE_COLOR")


def tether_env(gateway: str | None, token: str | None, tmp: Path, **extra: str) -> dict[str, str]:
    """An environment for one tether process, isolated from the machine's own settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update({
        "NO_COLOR": "1",
        "TETHER_CONFIG_DIR": str(tmp / "config"),
        "TETHER_STATE_DIR": str(tmp / "state"),
        "PYTHON_KEYRING_BACKEND": "keyrings.alt.file.PlaintextKeyring",
        "XDG_DATA_HOME": str(tmp / "data"),
        "PYTHONUNBUFFERED": "1",
    })
    if gateway is not None:
        env["TETHER_GATEWAY"] = gateway
    if token is not None:
        env["TETHER_TOKEN"] = token
    env.update(extra)
    secrets_guard.register_secret(env.get("TETHER_TOKEN"), "TETHER_TOKEN")
    return env


def run_tether(*args: str, env: dict[str, str], input: bytes | None = None,
               timeout: float = 30.0) -> subprocess.CompletedProcess[bytes]:
    """Run ``tether ARGS`` to completion; TimeoutExpired (the child killed) past ``timeout``."""
    done = subprocess.run([*TETHER, *args], env=env, input=input, capture_output=True,
                          timeout=timeout, check=False)
    secrets_guard.record_output("the output of a tether subprocess", done.stdout, done.stderr)
    return done


class _Recorded(subprocess.Popen[bytes]):
    """A Popen whose ``communicate()`` results are kept for the secrets guard."""

    def communicate(self, input: Any = None, timeout: float | None = None) -> Any:
        out, err = super().communicate(input, timeout)
        secrets_guard.record_output("the output of a tether subprocess", out, err)
        return out, err


def spawn_tether(*args: str, env: dict[str, str], **popen: Any) -> subprocess.Popen[bytes]:
    """Start ``tether ARGS`` with pipes for stdin, stdout and stderr unless told otherwise."""
    popen.setdefault("stdin", subprocess.PIPE)
    popen.setdefault("stdout", subprocess.PIPE)
    popen.setdefault("stderr", subprocess.PIPE)
    return _Recorded([*TETHER, *args], env=env, **popen)


def json_events(stderr: bytes | str) -> list[dict[str, Any]]:
    """Each line of ``stderr`` that is a JSON object, parsed; other lines are an error."""
    text = stderr.decode() if isinstance(stderr, bytes) else stderr
    events = []
    for line in text.splitlines():
        if line.strip():
            value = json.loads(line)
            assert isinstance(value, dict), line
            events.append(value)
    return events


def assert_no_secrets(secrets: list[str], *texts: bytes | str) -> None:
    """Fail when any secret value appears in any of ``texts``."""
    for text in texts:
        blob = text.decode(errors="replace") if isinstance(text, bytes) else text
        for secret in secrets:
            assert secret and secret not in blob, "a token value appeared in the output"


class Gathered:
    """``tether ARGS`` running; its stdout lines and stderr gathered by two threads."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        self.proc = spawn_tether(*args, env=env, stdin=subprocess.DEVNULL)
        self.lines: list[bytes] = []
        self.out = bytearray()
        self.err = bytearray()
        self._threads = [threading.Thread(target=self._read_out, daemon=True),
                         threading.Thread(target=self._read_err, daemon=True)]
        for thread in self._threads:
            thread.start()

    def _read_out(self) -> None:
        assert self.proc.stdout is not None
        for line in self.proc.stdout:
            self.out += line
            self.lines.append(line)

    def _read_err(self) -> None:
        assert self.proc.stderr is not None
        fd = self.proc.stderr.fileno()
        while chunk := os.read(fd, 65536):
            self.err += chunk

    def kill(self) -> None:
        """End it (by PID) if it still runs; its output goes to the secrets guard."""
        if self.proc.poll() is None:
            self.proc.kill()
            self.proc.wait(5)
        self.record()

    def record(self) -> None:
        """Hand what it printed to the secrets guard."""
        secrets_guard.record_output("the output of a tether subprocess", bytes(self.out),
                                    bytes(self.err))


class Follower(Gathered):
    """``tether logs ARGS`` running, as Gathered."""

    def __init__(self, *args: str, env: dict[str, str]) -> None:
        super().__init__("logs", *args, env=env)

    def wait_for(self, count: int, timeout: float = 10.0) -> list[bytes]:
        """The first ``count`` lines, once they are there (fails after ``timeout``)."""
        deadline = time.monotonic() + timeout
        while len(self.lines) < count:
            assert self.proc.poll() is None or len(self.lines) >= count, (
                f"exited {self.proc.returncode} after {len(self.lines)} lines: "
                f"{bytes(self.err[-2000:])!r}")
            assert time.monotonic() < deadline, (
                f"{len(self.lines)} of {count} lines; stderr {bytes(self.err[-2000:])!r}")
            time.sleep(0.02)
        return self.lines[:count]

    def events(self) -> list[dict[str, object]]:
        return json_events(bytes(self.err))

    def interrupt(self, timeout: float = 5.0) -> int:
        """SIGINT, as Ctrl+C sends it; the exit status."""
        self.proc.send_signal(signal.SIGINT)
        return self.wait(timeout)

    def wait(self, timeout: float) -> int:
        code = self.proc.wait(timeout)
        for thread in self._threads:
            thread.join(timeout)
        return code
