"""Port-forward: throughput and 64-byte round trips, direct TCP vs `ssh -L` vs tether, beside
the floor of any Python forward here (two bare relays, bench.relay)."""

from __future__ import annotations

import contextlib
import functools
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import dataclass

from bench import sshd, tcp
from bench.harness import Figure, Results, stop_process
from bench.relay import relay_pair

SECTION_RATE = "Port-forward throughput (MiB/s, higher is better)"
SECTION_RTT = "Port-forward round trip of 64 bytes (µs, lower is better)"
FLOOR = "Python floor: two bare relays, no WebSocket"
FLOOR_TLS = "Python floor: two bare relays, TLS between"


@contextlib.contextmanager
def ssh_forward(server: sshd.Sshd, remote_port: int) -> Iterator[int]:
    """``ssh -N -L`` to ``remote_port``; yields the local port."""
    local = sshd.free_port()
    proc = subprocess.Popen([*server.ssh_args()[:-1], "-N", "-o", "ExitOnForwardFailure=yes",
                             "-L", f"127.0.0.1:{local}:127.0.0.1:{remote_port}",
                             server.ssh_args()[-1]],
                            stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL)
    try:
        tcp.wait_listening(local)
        yield local
    finally:
        stop_process(proc)


Forwarder = Callable[[int], contextlib.AbstractContextManager[int]]


@contextlib.contextmanager
def direct(remote_port: int) -> Iterator[int]:
    """No forward at all: the target itself."""
    yield remote_port


@dataclass(frozen=True)
class Row:
    """One forward to measure: its name, how to open it, and what it is compared with."""

    name: str
    forwarder: Forwarder
    peer: str | None
    rate_goal: str = ""
    rtt_goal: str = ""


def measure(results: Results, runs: int, name: str, forwarder: Forwarder, *, size: int,
            count: int, peer: str | None, rate_goal: str = "", rtt_goal: str = "") -> None:
    """Throughput and round trip through ``forwarder``, each in a fresh connection per run."""
    measure_together(results, runs, [Row(name, forwarder, peer, rate_goal, rtt_goal)],
                     size=size, count=count)


def measure_together(results: Results, runs: int, rows: list[Row], *, size: int,
                     count: int) -> None:
    """Several forwards open at once, their samples taken in turn (run 1 of each, then run 2
    of each...), so that a ratio between them is not a ratio between two moments."""
    rates = [results.add(Figure(row.name, "MiB/s", higher_is_better=True, peer=row.peer,
                                goal=row.rate_goal), SECTION_RATE) for row in rows]
    rtts = [results.add(Figure(row.name, "µs", peer=row.peer, goal=row.rtt_goal), SECTION_RTT)
            for row in rows]
    for kind, figures in (("sink", rates), ("echo", rtts)):
        with tcp.target(kind) as target, contextlib.ExitStack() as stack:
            ports = [stack.enter_context(row.forwarder(target)) for row in rows]
            for _ in range(runs):
                for figure, port in zip(figures, ports, strict=True):
                    figure.samples.append(tcp.throughput(port, size) if kind == "sink"
                                          else tcp.round_trip(port, count))


def _floor(peer: str | None) -> list[Row]:
    """Two bare Python relays in tether's places (bench.relay), without and with TLS."""
    return [Row(FLOOR, relay_pair, peer),
            Row(FLOOR_TLS, functools.partial(relay_pair, tls=True), peer)]


def run(results: Results, runs: int, quick: bool = False) -> None:
    """Direct TCP, ssh -L and the Python floor, sampled in turn; tether's forwards are
    measured by bench.tether_forward."""
    size = (16 if quick else 512) << 20
    count = 200 if quick else 2000
    measure(results, runs, "direct TCP", direct, size=size, count=count, peer=None)
    if not sshd.available():
        results.notes.append("ssh -L not measured: openssh-server is not installed")
        measure_together(results, runs, _floor(None), size=size, count=count)
        return
    with sshd.running_sshd() as server:
        measure_together(results, runs, [
            Row("ssh -L", functools.partial(ssh_forward, server), "direct TCP"),
            *_floor("ssh -L"),
        ], size=size, count=count)
