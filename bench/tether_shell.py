"""Shell: tether's keystroke echo and terminal output throughput, beside `ssh -tt`.

The reference gateway runs in its own process (``tether gateway serve``), as
sshd does for ssh, with one service whose shell is ``/bin/sh``; the figures go
into bench.shell's sections, so the ratios to ``ssh -tt`` appear when both
suites run (``python -m bench --only shell --only tether_shell``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import shell
from bench.harness import Results
from bench.startup import tether_command

SERVICE = "bench"
_SCRUB = ("TETHER_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
          "all_proxy", "NO_PROXY", "no_proxy")
_CONFIG = """
[gateway]
rate_limit = {{ rate = 100.0, burst = 100 }}

[services.{service}]
shell = ["/bin/sh"]
cwd = "{cwd}"
"""


def _environment(directory: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(NO_COLOR="1", TETHER_CONFIG_DIR=str(directory / "config"),
               TETHER_STATE_DIR=str(directory / "client"), **extra)
    return env


@contextlib.contextmanager
def running_gateway(directory: Path) -> Iterator[dict[str, str]]:
    """A gateway process on a free loopback port; yields the client's environment."""
    work, state = directory / "work", directory / "state"
    work.mkdir()
    config = directory / "gateway.toml"
    config.write_text(_CONFIG.format(service=SERVICE, cwd=work), encoding="utf-8")
    tether = tether_command()
    plain = _environment(directory)
    token = subprocess.run([*tether, "gateway", "token", "create", "--role", "Deployer",
                            "--name", "bench", "--state-dir", str(state)], env=plain,
                           capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    proc = subprocess.Popen([*tether, "gateway", "serve", "--config", str(config), "--port", "0",
                             "--state-dir", str(state)], env=plain, stdin=subprocess.DEVNULL,
                            stdout=subprocess.PIPE, stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "tether gateway: listening on URL (state in ...)"
        if "listening on " not in line:
            raise RuntimeError(f"the gateway did not start: {line.strip()!r}")
        url = line.split("listening on ", 1)[1].split()[0]
        yield _environment(directory, TETHER_GATEWAY=url, TETHER_TOKEN=token)
    finally:
        proc.terminate()
        try:
            proc.wait(timeout=5)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=5)


def run(results: Results, runs: int, quick: bool = False) -> None:
    """``tether shell`` through a local gateway, compared with ssh -tt."""
    keys, mib = (50, 10) if quick else (300, 200)
    with tempfile.TemporaryDirectory(prefix="tether-bench-shell-") as tmp, \
            running_gateway(Path(tmp)) as env:
        prefix = [*tether_command(), "shell", SERVICE, "--", "sh", "-c"]
        shell.measure(results, runs, "tether shell", prefix, keys=keys, mib=mib,
                      peer="ssh -tt", env=env)
