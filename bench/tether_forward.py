"""Port-forward through tether, over ws:// and wss://, beside `ssh -L` (bench.forward).

The reference gateway runs in its own process (``tether gateway serve``), as
sshd does for ssh, allowing the target's port; ``tether port-forward`` runs as
a subprocess and the figures go into bench.forward's sections, so the ratios to
``ssh -L`` appear when both suites run
(``python -m bench --only forward --only tether_forward``).
"""

from __future__ import annotations

import contextlib
import os
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import forward
from bench.harness import Results
from bench.startup import tether_command

SERVICE = "bench"
_SCRUB = ("TETHER_", "HTTP_PROXY", "HTTPS_PROXY", "http_proxy", "https_proxy", "ALL_PROXY",
          "all_proxy", "NO_PROXY", "no_proxy", "SSL_CERT_FILE")
_CONFIG = """
[gateway]
rate_limit = {{ rate = 1000.0, burst = 1000 }}

[services.{service}]
shell = ["/bin/sh"]
host = "127.0.0.1"
ports = [{port}]
"""


def _environment(directory: Path, **extra: str) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(_SCRUB)}
    env.update(NO_COLOR="1", TETHER_CONFIG_DIR=str(directory / "config"),
               TETHER_STATE_DIR=str(directory / "client"), **extra)
    return env


def _stop(proc: subprocess.Popen[str]) -> None:
    proc.terminate()
    try:
        proc.wait(timeout=5)
    except subprocess.TimeoutExpired:
        proc.kill()
        proc.wait(timeout=5)


def _tls_files(directory: Path) -> tuple[list[str], Path]:
    """trustme certificates for 127.0.0.1: the gateway's TLS options and the CA file."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    return ["--tls-cert", str(chain), "--tls-key", str(key)], ca_file


@contextlib.contextmanager
def _gateway(directory: Path, port: int, tls: bool) -> Iterator[dict[str, str]]:
    """A gateway process allowing ``port``; yields the client's environment."""
    state = directory / "state"
    config = directory / "gateway.toml"
    config.write_text(_CONFIG.format(service=SERVICE, port=port), encoding="utf-8")
    tether = tether_command()
    plain = _environment(directory)
    token = subprocess.run([*tether, "gateway", "token", "create", "--role", "Deployer",
                            "--name", "bench", "--state-dir", str(state)], env=plain,
                           capture_output=True, text=True, timeout=30, check=True).stdout.strip()
    tls_args, ca_file = _tls_files(directory) if tls else ([], None)
    proc = subprocess.Popen([*tether, "gateway", "serve", "--config", str(config), "--port", "0",
                             "--state-dir", str(state), *tls_args], env=plain,
                            stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                            stderr=subprocess.DEVNULL, text=True)
    try:
        assert proc.stdout is not None
        line = proc.stdout.readline()  # "tether gateway: listening on URL (state in ...)"
        if "listening on " not in line:
            raise RuntimeError(f"the gateway did not start: {line.strip()!r}")
        url = line.split("listening on ", 1)[1].split()[0]
        extra = {"TETHER_CA_CERT": str(ca_file)} if ca_file else {}
        yield _environment(directory, TETHER_GATEWAY=url, TETHER_TOKEN=token, **extra)
    finally:
        _stop(proc)


@contextlib.contextmanager
def tether_forward(remote_port: int, *, tls: bool = False) -> Iterator[int]:
    """A gateway and ``tether port-forward :REMOTE``; yields the local port it printed."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-forward-") as tmp, \
            _gateway(Path(tmp), remote_port, tls) as env:
        proc = subprocess.Popen([*tether_command(), "port-forward", SERVICE, f":{remote_port}"],
                                env=env, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE,
                                stderr=subprocess.DEVNULL, text=True)
        try:
            assert proc.stdout is not None
            line = proc.stdout.readline()  # "Forwarding from 127.0.0.1:PORT -> bench:REMOTE"
            if not line.startswith("Forwarding from "):
                raise RuntimeError(f"tether port-forward did not start (exit {proc.poll()})")
            yield int(line.split()[2].rsplit(":", 1)[1])
        finally:
            _stop(proc)


def run(results: Results, runs: int, quick: bool = False) -> None:
    """tether over ws:// and wss://, compared with ssh -L."""
    size = (16 if quick else 512) << 20
    count = 200 if quick else 2000
    forward.measure(results, runs, "tether ws://", tether_forward, size=size, count=count,
                    peer="ssh -L")
    forward.measure(results, runs, "tether wss://",
                    lambda port: tether_forward(port, tls=True), size=size, count=count,
                    peer="ssh -L")
