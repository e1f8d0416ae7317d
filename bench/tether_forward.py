"""Port-forward through tether, over ws:// and wss://, beside `ssh -L` (bench.forward).

The reference gateway runs in its own process (``tether gateway serve``), as
sshd does for ssh, allowing the target's port; ``tether port-forward`` runs as
a subprocess and the figures go into bench.forward's sections, so the ratios to
``ssh -L`` appear when both suites run
(``python -m bench --only forward --only tether_forward``). tether speaks
tether.v2 (resumable) with the reference gateway; the ``v1`` row is the same
with ``resume = false`` (over ws:// and wss://), so that its ratio is what v2's
bookkeeping costs; v1 and v2 run side by side and their samples alternate.
"""

from __future__ import annotations

import contextlib
import functools
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

from bench import forward
from bench.gateway_proc import running_gateway
from bench.harness import Results, stop_process
from bench.startup import tether_command

SERVICE = "bench"
V1_NAME = "tether ws:// v1 (resume = false)"
V1_TLS_NAME = "tether wss:// v1 (resume = false)"
V2_GOAL = "v2 costs under 5%: at most 1.05x"
RUNS_FACTOR = 3  # v1 and v2 take more samples: their ratio must be finer than 5%
_CONFIG = """
[gateway]
rate_limit = {{ rate = 1000.0, burst = 1000 }}
resume = {resume}

[services.{service}]
shell = ["/bin/sh"]
host = "127.0.0.1"
ports = [{port}]
"""


def tls_files(directory: Path) -> tuple[Path, Path, Path]:
    """trustme certificates for 127.0.0.1 in ``directory``: the chain, its key, the CA file."""
    import trustme

    ca = trustme.CA()
    cert = ca.issue_cert("127.0.0.1", "localhost")
    chain, key, ca_file = directory / "cert.pem", directory / "key.pem", directory / "ca.pem"
    cert.private_key_pem.write_to_path(str(key))
    chain.write_bytes(b"".join(blob.bytes() for blob in cert.cert_chain_pems))
    ca.cert_pem.write_to_path(str(ca_file))
    return chain, key, ca_file


@contextlib.contextmanager
def _gateway(directory: Path, port: int, tls: bool, resume: bool) -> Iterator[dict[str, str]]:
    """A gateway process allowing ``port``; yields the client's environment."""
    tls_args: tuple[str, ...] = ()
    ca_file = None
    if tls:
        chain, key, ca_file = tls_files(directory)
        tls_args = ("--tls-cert", str(chain), "--tls-key", str(key))
    config = _CONFIG.format(service=SERVICE, port=port, resume=str(resume).lower())
    with running_gateway(directory, config, extra_args=tls_args) as gateway:
        yield gateway.client_env(**({"TETHER_CA_CERT": str(ca_file)} if ca_file else {}))


@contextlib.contextmanager
def tether_forward(remote_port: int, *, tls: bool = False, resume: bool = True) -> Iterator[int]:
    """A gateway (with tether.v2 unless ``resume`` is False) and ``tether port-forward
    :REMOTE``; yields the local port it printed."""
    with tempfile.TemporaryDirectory(prefix="tether-bench-forward-") as tmp, \
            _gateway(Path(tmp), remote_port, tls, resume) as env:
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
            stop_process(proc)


def run(results: Results, runs: int, quick: bool = False) -> None:
    """tether over ws:// and wss://, compared with ssh -L; v1 sampled in turn with v2."""
    size = (16 if quick else 512) << 20
    count = 200 if quick else 2000
    for tls, name, v1_name in ((False, "tether ws://", V1_NAME),
                               (True, "tether wss://", V1_TLS_NAME)):
        forward.measure_together(results, runs * RUNS_FACTOR, [
            forward.Row(name, functools.partial(tether_forward, tls=tls), "ssh -L"),
            forward.Row(v1_name, functools.partial(tether_forward, tls=tls, resume=False),
                        name, V2_GOAL, V2_GOAL),
        ], size=size, count=count)
    results.notes.append(
        f"tether's port-forward figures: {RUNS_FACTOR}x the runs, v1 and v2 in turn; one "
        "sample moves by up to 15% against its neighbour, more than the 5% asked of v2")
