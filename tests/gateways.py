"""Several ``tether gateway serve`` processes on one state, behind HAProxy, for tests.

- ``gateway_toml(...)``: the TOML of service ``api`` (shell, logs of ``log_dir``,
  the port ``echo``), with the issuer and limits given.
- ``GatewayProcess.start(config, state, port, log, node=...)``: a gateway subprocess on
  127.0.0.1 (``port`` 0: any); ``.url``, ``.node``, ``.kill()`` (SIGKILL), ``.stop()``.
- ``deployment(directory, state, toml)``: HAProxy on a free port in front of two
  gateways sharing ``state``, nodes ``g1`` and ``g2`` as HAProxy names them, a
  resume routed by its ``node`` parameter; the gateways' issuer is HAProxy's URL.
- ``gateway_cli(*args, state=...)``: ``tether gateway ARGS --state STATE``, checked.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

from tests.cli import TETHER, tether_env
from tests.middleboxes import Middlebox, haproxy, stop
from tests.servers import free_port

#: HAProxy in front of gateways: health checks on /v1/health, a refused connection
#: retried on the other gateway, WebSocket tunnels kept open.
HAPROXY_BACKEND = """  option httpchk GET /v1/health
  option redispatch
  retries 3
  default-server check inter 200ms fall 1 rise 1
"""


def routing(count: int) -> str:
    """HAProxy rules sending a resume to the gateway its ``node`` parameter names (gN), while
    that gateway is up; a rule naming a server that is down is skipped (load-balanced)."""
    return "".join(f"  use-server g{i} if {{ urlp(node) -m str g{i} }}\n"
                   for i in range(1, count + 1))


def gateway_toml(*, issuer: str, log_dir: Path, work: Path, echo: int, rate: float = 1000.0,
                 burst: int = 1000, state_timeout: str = "1s") -> str:
    """The configuration every gateway of a deployment shares."""
    return f"""[gateway]
issuer = "{issuer}"
state_timeout = "{state_timeout}"
device_interval = "200ms"
close_timeout = 2
rate_limit = {{ rate = {rate}, burst = {burst} }}

[services.api]
shell = ["/bin/sh"]
cwd = "{work}"
host = "127.0.0.1"
ports = [{echo}]

[[services.api.logs]]
files = "{log_dir}/*.log"
"""


@dataclass
class GatewayProcess:
    """``tether gateway serve`` running; its URL and its log file."""

    proc: subprocess.Popen[str]
    url: str
    log: Path
    node: str

    @classmethod
    def start(cls, config: Path, state: str, port: int, log: Path, *,
              node: str | None = None) -> GatewayProcess:
        """Start a gateway (named ``node``, else by its config) and wait until it listens."""
        env = tether_env(None, None, log.parent)
        named = ["--node", node] if node else []
        with log.open("w") as err:
            proc = subprocess.Popen(
                [*TETHER, "gateway", "serve", "--config", str(config), "--state", state,
                 "--port", str(port), *named], env=env, stdin=subprocess.DEVNULL,
                stdout=subprocess.PIPE, stderr=err, text=True)
        assert proc.stdout is not None
        line = proc.stdout.readline()  # listening on URL (node NAME, state in ...)
        if "listening on " not in line:
            stop(proc)
            raise AssertionError(f"the gateway did not start: {line!r} {log.read_text()[-3000:]}")
        url = line.split("listening on ", 1)[1].split()[0]
        return cls(proc, url, log, line.split("(node ", 1)[1].split(",")[0])

    @property
    def ws_url(self) -> str:
        """``ws://127.0.0.1:PORT``."""
        return "ws" + self.url.removeprefix("http")

    def kill(self) -> None:
        """SIGKILL, by PID: no close frames, no goodbyes."""
        if self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGKILL)
            self.proc.wait(5)

    def stop(self) -> None:
        """SIGTERM (then SIGKILL), by PID."""
        stop(self.proc)
        if self.proc.stdout is not None:
            self.proc.stdout.close()


@dataclass
class Deployment:
    """HAProxy and the gateways behind it."""

    balancer: Middlebox
    gateways: list[GatewayProcess]
    state: str

    @property
    def url(self) -> str:
        """HAProxy's URL: the deployment's public URL."""
        return self.balancer.url


@contextlib.contextmanager
def deployment(directory: Path, state: str, toml: str, *, count: int = 2) -> Iterator[Deployment]:
    """HAProxy in front of ``count`` gateways on ``state``; ``{issuer}`` in ``toml`` is its URL."""
    ports = [free_port() for _ in range(count)]
    with haproxy(directory / "haproxy", ports,
                 extra_backend=HAPROXY_BACKEND + routing(count)) as balancer:
        config = directory / "gateway.toml"
        config.write_text(toml.replace("{issuer}", balancer.url))
        started: list[GatewayProcess] = []
        try:
            for i, port in enumerate(ports):
                started.append(GatewayProcess.start(config, state, port,
                                                    directory / f"gateway{i}.log",
                                                    node=f"g{i + 1}"))
            yield Deployment(balancer, started, state)
        finally:
            for gateway in started:
                gateway.stop()


def gateway_cli(*args: str, state: str, directory: Path) -> str:
    """``tether gateway ARGS --state STATE``; its stdout (the run must succeed)."""
    done = subprocess.run([*TETHER, "gateway", *args, "--state", state],
                          env=tether_env(None, None, directory), capture_output=True, text=True,
                          timeout=30, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout

