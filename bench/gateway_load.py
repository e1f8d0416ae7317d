"""Gateway: memory held by idle and by detached sessions, and how many new sessions it
accepts per second.

The gateway runs in its own process; the sessions are opened from this one
with the websockets client (not tether's), so the figures are the gateway's.
A detached session is a tether.v2 shell whose connection dropped (aborted,
no close frame): the gateway keeps it, its replay buffer and its process for
the grace period.
"""

from __future__ import annotations

import asyncio
import resource
import tempfile
import time
from pathlib import Path

from websockets.typing import Subprotocol

from bench.gateway_proc import GatewayProcess, rss_mib, running_gateway
from bench.harness import Figure, Results

_PROTOCOLS = [Subprotocol("tether.v1")]
_V2 = [Subprotocol("tether.v2")]
_CONFIG = """
[gateway]
session_limit = {limit}
rate_limit = {{ rate = 100000.0, burst = 100000 }}

[services.idle]
shell = ["/bin/sh"]

[[services.idle.logs]]
files = "{logs}/*.log"
"""


def _raise_file_limit(needed: int) -> None:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    want = min(hard, max(soft, needed))
    if want > soft:
        resource.setrlimit(resource.RLIMIT_NOFILE, (want, hard))


def _ws(gateway: GatewayProcess, query: str, path: str = "/v1/logs"
        ) -> tuple[str, dict[str, str]]:
    url = gateway.url.replace("http://", "ws://", 1) + path + "?service=idle&" + query
    return url, {"Authorization": f"Bearer {gateway.token}"}


async def _detached_memory(gateway: GatewayProcess, sessions: int) -> tuple[float, float]:
    """Gateway RSS (MiB) before and with ``sessions`` detached v2 shells (each has printed
    its prompt-less start, and keeps its process for the grace period)."""
    from websockets.asyncio.client import connect

    url, headers = _ws(gateway, "tty=0", "/v1/shell")
    before = rss_mib(gateway.pid)
    for start in range(0, sessions, 25):
        batch = [connect(url, additional_headers=headers, subprotocols=_V2, open_timeout=30,
                         ping_interval=None) for _ in range(start, min(start + 25, sessions))]
        opened = await asyncio.gather(*batch)
        await asyncio.gather(*(ws.recv() for ws in opened))  # the session message
        for ws in opened:
            ws.transport.abort()  # no close frame: the session detaches
    await asyncio.sleep(1.0)
    return before, rss_mib(gateway.pid)


async def _idle_memory(gateway: GatewayProcess, sessions: int) -> tuple[float, float]:
    """Gateway RSS (MiB) before and with ``sessions`` idle follows open."""
    from websockets.asyncio.client import connect

    url, headers = _ws(gateway, "follow=1")
    before = rss_mib(gateway.pid)
    opened = []
    try:
        for start in range(0, sessions, 50):
            batch = [connect(url, additional_headers=headers, subprotocols=_PROTOCOLS,
                             open_timeout=30, ping_interval=None)
                     for _ in range(start, min(start + 50, sessions))]
            opened += await asyncio.gather(*batch)
        await asyncio.sleep(1.0)
        return before, rss_mib(gateway.pid)
    finally:
        await asyncio.gather(*(ws.close() for ws in opened), return_exceptions=True)


async def _session_rate(gateway: GatewayProcess, count: int, workers: int = 8) -> float:
    """New sessions per second: each a finite log stream, opened and read to its close."""
    from websockets.asyncio.client import connect
    from websockets.exceptions import ConnectionClosedOK

    url, headers = _ws(gateway, "follow=0&tail=0")
    left = count

    async def worker() -> None:
        nonlocal left
        while left > 0:
            left -= 1
            async with connect(url, additional_headers=headers, subprotocols=_PROTOCOLS,
                               open_timeout=30) as ws:
                try:
                    while True:
                        await ws.recv()
                except ConnectionClosedOK:
                    pass

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(workers)))
    return count / (time.perf_counter() - start)


def run(results: Results, runs: int, quick: bool = False) -> None:
    """Idle- and detached-session memory and new-session rate of one gateway process."""
    sessions, count = (100, 100) if quick else (1000, 1000)
    detached = 20 if quick else 200  # each keeps a shell process running
    _raise_file_limit(sessions * 2 + 256)
    section = "Gateway"
    memory = results.add(Figure(f"RSS with {sessions} idle log follows", "MiB"), section)
    per_session = results.add(Figure("memory per idle session", "KiB"), section)
    per_detached = results.add(Figure(f"memory per detached v2 shell ({detached} kept)", "KiB",
                                      note="a detached tether.v2 shell: its replay buffer "
                                           "grows only with unacknowledged output (bounded by "
                                           "resume_buffer); this one printed nothing"), section)
    rate = results.add(Figure("new sessions per second (8 clients)", "sessions/s",
                              higher_is_better=True), section)
    with tempfile.TemporaryDirectory(prefix="tether-bench-gw-") as tmp:
        logs = Path(tmp) / "logs"
        logs.mkdir()
        (logs / "idle-1.log").write_text("")
        config = _CONFIG.format(limit=sessions + 100, logs=logs)
        for _ in range(runs):
            with running_gateway(Path(tmp), config) as gateway:
                before, after = asyncio.run(_idle_memory(gateway, sessions))
                memory.samples.append(after)
                per_session.samples.append((after - before) * 1024 / sessions)
                rate.samples.append(asyncio.run(_session_rate(gateway, count)))
            with running_gateway(Path(tmp), config) as gateway:
                before, after = asyncio.run(_detached_memory(gateway, detached))
                per_detached.samples.append((after - before) * 1024 / detached)
