"""The reference gateway in its own process, as sshd is for ssh, for the suites that need one."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from bench.harness import stop_process
from bench.startup import tether_command

_SCRUB = ("TETHER_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
          "all_proxy", "NO_PROXY", "no_proxy")


def client_environment(directory: Path, **extra: str) -> dict[str, str]:
    """An environment for tether processes: none of the machine's TETHER_ or proxy settings."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(NO_COLOR="1", TETHER_CONFIG_DIR=str(directory / "config"),
               TETHER_STATE_DIR=str(directory / "client"), **extra)
    return env


@dataclass(frozen=True)
class GatewayProcess:
    """A running gateway: its URL, PID, and a Deployer API token for it."""

    url: str
    pid: int
    token: str
    directory: Path

    def client_env(self, **extra: str) -> dict[str, str]:
        """The environment of a tether client that reaches this gateway with the token."""
        return client_environment(self.directory, TETHER_GATEWAY=self.url,
                                  TETHER_TOKEN=self.token, **extra)


@contextlib.contextmanager
def running_gateway(directory: Path, config: str, *, role: str = "Deployer",
                    extra_args: tuple[str, ...] = (),
                    state: str | None = None) -> Iterator[GatewayProcess]:
    """``tether gateway serve`` with ``config`` (TOML) on a free loopback port; stopped by PID.

    The token handed out is an API token with ``role``. ``state``: a directory or a
    ``postgresql://`` URL (default: ``directory/state``).
    """
    state = state or str(directory / "state")
    config_file = directory / "gateway.toml"
    config_file.write_text(config, encoding="utf-8")
    tether = tether_command()
    plain = client_environment(directory)
    token = subprocess.run([*tether, "gateway", "token", "create", "--role", role,
                            "--name", "bench", "--state", state], env=plain,
                           capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    proc = subprocess.Popen([*tether, "gateway", "serve", "--config", str(config_file),
                             "--port", "0", "--state", state, *extra_args],
                            env=plain, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "tether gateway: listening on URL (state in ...)"
        if "listening on " not in line:
            raise RuntimeError(f"the gateway did not start: {line.strip()!r}")
        yield GatewayProcess(line.split("listening on ", 1)[1].split()[0], proc.pid, token,
                             directory)
    finally:
        stop_process(proc)


def rss_mib(pid: int, field: str = "VmRSS") -> float:
    """``field`` of /proc/PID/status (VmRSS: resident now, VmHWM: its peak) in MiB.

    NaN where the process or /proc is gone.
    """
    try:
        lines = Path(f"/proc/{pid}/status").read_text().splitlines()
    except OSError:
        return float("nan")
    for line in lines:
        if line.startswith(f"{field}:"):
            return int(line.split()[1]) / 1024
    return float("nan")
