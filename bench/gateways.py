"""Several gateways on one PostgreSQL: new sessions per second, and database round trips.

The rates come from gateway processes (``tether gateway serve``) with 8
clients each opening finite log streams: one gateway on SQLite (the
embedded default, the peer), one on PostgreSQL, and two on the same
PostgreSQL with the clients split between them. The round trips are
counted by the store of a gateway in this process: per handshake (a JWT,
an API token) and per whole session (the audit rows included).

PostgreSQL is a throwaway cluster (tests/pg.py); without it the suite says
so in the notes and measures nothing.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
import time
from pathlib import Path

from websockets.sync.client import connect

from bench.gateway_load import _PROTOCOLS, _session_rate
from bench.gateway_proc import running_gateway
from bench.harness import Figure, Results
from tests.pg import PostgresCluster, find_bin
from tether.gateway.config import parse_config
from tether.gateway.runner import RunningGateway, start_in_thread

SECTION = "Gateways on PostgreSQL"
_CONFIG = """
[gateway]
issuer = "http://gateways.bench"
session_limit = 10000
credential_check = 600
rate_limit = {{ rate = 100000.0, burst = 100000 }}

[services.idle]
shell = ["/bin/sh"]

[[services.idle.logs]]
files = "{logs}/*.log"
"""


def _rate(directory: Path, config: str, states: list[str], count: int) -> float:
    """Sessions per second over ``len(states)`` gateway processes, 8 clients in all."""
    with contextlib.ExitStack() as stack:
        gateways = []
        for i, state in enumerate(states):
            (directory / f"g{i}").mkdir(parents=True)
            gateways.append(stack.enter_context(running_gateway(directory / f"g{i}", config,
                                                                state=state)))
        workers = 8 // len(gateways)

        async def everyone() -> None:
            await asyncio.gather(*(_session_rate(g, count // len(gateways), workers)
                                   for g in gateways))

        start = time.perf_counter()
        asyncio.run(everyone())
        return count / (time.perf_counter() - start)


def _refused(running: RunningGateway, token: str) -> None:
    """One handshake that is admitted (credential, budget) and then refused (a Viewer's shell)."""
    with contextlib.suppress(Exception):
        connect(running.ws_url + "/v1/shell?service=idle", subprotocols=_PROTOCOLS,
                additional_headers={"Authorization": f"Bearer {token}"}, proxy=None,
                open_timeout=10).close()


def _session(running: RunningGateway, token: str) -> None:
    """One finite log stream, read to its close."""
    with connect(running.ws_url + "/v1/logs?service=idle&follow=0&tail=0",
                 subprotocols=_PROTOCOLS,
                 additional_headers={"Authorization": f"Bearer {token}"}, proxy=None,
                 open_timeout=10) as ws, contextlib.suppress(Exception):
        while True:
            ws.recv(timeout=10)


def _trips(running: RunningGateway, action: object, token: str, count: int) -> float:
    """Round trips per call of ``action``, once the background writes have settled."""
    store = running.gateway.state

    def settled() -> int:
        last = store.round_trips
        for _ in range(50):
            time.sleep(0.05)
            if store.round_trips == last:
                return last
            last = store.round_trips
        return last

    before = settled()
    for _ in range(count):
        action(running, token)  # type: ignore[operator]
    return (settled() - before) / count


def run(results: Results, runs: int, quick: bool = False) -> None:
    """Session rates with one and two gateways, and round trips per handshake."""
    bindir = find_bin()
    if bindir is None:
        results.notes.append("gateways on PostgreSQL: not measured, PostgreSQL is not installed "
                             "(Debian package postgresql)")
        return
    count = 100 if quick else 1000
    sqlite = results.add(Figure("new sessions/s, 1 gateway, SQLite", "sessions/s",
                                higher_is_better=True), SECTION)
    one = results.add(Figure("new sessions/s, 1 gateway, PostgreSQL", "sessions/s",
                             higher_is_better=True, peer=sqlite.name), SECTION)
    two = results.add(Figure("new sessions/s, 2 gateways, one PostgreSQL", "sessions/s",
                             higher_is_better=True, peer=one.name,
                             note="8 clients in all, split between the gateways; "
                                  "2 cores shared by clients, gateways and PostgreSQL"), SECTION)
    jwt_trips = results.add(Figure("database round trips per handshake, JWT",
                                   "round trips"), SECTION)
    api_trips = results.add(Figure("database round trips per handshake, API token",
                                   "round trips"), SECTION)
    session_trips = results.add(Figure("database round trips per session, JWT, audit included",
                                       "round trips"), SECTION)
    cluster = PostgresCluster(bindir)
    try:
        cluster.start()
        with tempfile.TemporaryDirectory(prefix="tether-bench-gws-") as tmp:
            root = Path(tmp)
            logs = root / "logs"
            logs.mkdir()
            (logs / "idle-1.log").write_text("")
            config = _CONFIG.format(logs=logs)
            for i in range(runs):
                url = cluster.create_database()
                sqlite.samples.append(_rate(root / f"sqlite{i}", config,
                                            [str(root / f"state{i}")], count))
                one.samples.append(_rate(root / f"one{i}", config, [url], count))
                two.samples.append(_rate(root / f"two{i}", config, [url, url], count))
            settings = parse_config(_from_toml(config), file="<bench>")
            with start_in_thread(settings, cluster.create_database()) as running:
                jwt, api = running.mint_token("Viewer"), running.create_api_token("Viewer")
                _refused(running, jwt)  # the event watcher's first read is done
                per = 20 if quick else 100
                for _ in range(runs):
                    jwt_trips.samples.append(_trips(running, _refused, jwt, per))
                    api_trips.samples.append(_trips(running, _refused, api, per))
                    session_trips.samples.append(_trips(running, _session, jwt, per))
    finally:
        cluster.remove()


def _from_toml(text: str) -> dict[str, object]:
    import tomllib

    return tomllib.loads(text)
